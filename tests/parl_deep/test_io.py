"""parl_deep.io's seeds: every component of a run draws from its own stream."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings, strategies as st

from parl_deep.io import ENV_SEED_TAG, SEED_TAGS, derived_seed


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_the_components_seeds_are_distinct_and_below_the_environments(seed):
    """No two components share a tag or a derived seed, none collides with an environment copy's tag (ENV_SEED_TAG +
    k, k >= 1), and the derivation is a pure function of (seed, tag)."""
    tags = list(SEED_TAGS.values())
    assert len(set(tags)) == len(tags) and max(tags) <= ENV_SEED_TAG
    seeds = [derived_seed(seed, t) for t in tags + [ENV_SEED_TAG + k for k in range(1, 9)]]
    assert len(set(seeds)) == len(seeds) and seeds[0] == derived_seed(seed, tags[0])
    assert derived_seed(seed, tags[0]) == int(np.random.SeedSequence([seed, tags[0]]).generate_state(1)[0])

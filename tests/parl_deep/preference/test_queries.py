"""Query selection: uniform without replacement, the top scores of the ensemble, and greedy k-center."""
from __future__ import annotations

from functools import partial

import numpy as np
import pytest

from parl_deep.preference.dataset import PreferenceDataset
from parl_deep.preference.queries import select_queries

from .common import random_segments, small_ensemble

OBS, ACT = 4, 2
D = OBS + ACT
_small = partial(small_ensemble, OBS, ACT)
_segments = partial(random_segments, dim=D, T=10)


# --------------------------------------------------------- query selection
def test_select_uniform():
    rng = np.random.default_rng(10)
    s0, s1 = _segments(rng, 30), _segments(rng, 30)
    idx = select_queries("uniform", 10, s0, s1, rng=rng)
    assert len(set(idx.tolist())) == 10 and idx.min() >= 0 and idx.max() < 30
    with pytest.raises(ValueError):
        select_queries("uniform", 31, s0, s1, rng=rng)
    with pytest.raises(ValueError):
        select_queries("bogus", 3, s0, s1, rng=rng)
    # uniform over candidates: each index chosen ~ 10/30 of the time
    counts = np.zeros(30)
    for _ in range(600):
        counts[select_queries("uniform", 10, s0, s1, rng=rng)] += 1
    p = 1 / 3
    se = np.sqrt(p * (1 - p) / 600)
    assert np.all(np.abs(counts / 600 - p) < 4.5 * se)


@pytest.mark.parametrize("method", ["disagreement", "entropy"])
def test_select_uncertainty_picks_top_scores(method):
    rng = np.random.default_rng(11)
    ens = _small(seed=4)
    s0, s1 = _segments(rng, 50, spread=1.5), _segments(rng, 50, spread=1.5)
    score = ens.disagreement(s0, s1) if method == "disagreement" else ens.entropy(s0, s1)
    idx = select_queries(method, 8, s0, s1, ensemble=ens)
    assert len(set(idx.tolist())) == 8
    rest = np.setdiff1d(np.arange(50), idx)
    assert score[idx].min() >= score[rest].max()
    with pytest.raises(ValueError):
        select_queries(method, 8, s0, s1)


def test_entropy_prefers_uncertain_pairs():
    ens = _small(seed=5)
    rng = np.random.default_rng(12)
    a = _segments(rng, 10, spread=2.0)
    # identical segments: P = 0.5 for every member, maximal entropy
    s0 = np.concatenate([a, a[:5]])
    s1 = np.concatenate([_segments(rng, 10, spread=2.0), a[:5]])
    idx = select_queries("entropy", 5, s0, s1, ensemble=ens)
    assert sorted(idx.tolist()) == list(range(10, 15))


def test_select_kcenter_spreads_and_avoids_labelled():
    rng = np.random.default_rng(13)
    T = 3
    centres = np.array([0.0, 10.0, 20.0, 30.0])
    # 4 tight clusters of 5 candidate pairs each (obs part), actions random noise
    c = np.repeat(centres, 5)
    s0 = np.zeros((20, T, D), np.float32)
    s0[:, :, :OBS] = c[:, None, None] + 0.01 * rng.normal(size=(20, T, OBS))
    s0[:, :, OBS:] = 100 * rng.normal(size=(20, T, ACT))  # ignored by kcenter
    s1 = s0.copy()
    idx = select_queries("kcenter", 4, s0, s1, obs_dim=OBS)
    assert sorted(c[idx].tolist()) == centres.tolist()
    labelled = PreferenceDataset()
    labelled.add(s0[:10], s1[:10], np.ones(10))  # clusters 0 and 10 already labelled
    idx = select_queries("kcenter", 2, s0, s1, obs_dim=OBS, labelled=labelled)
    assert sorted(c[idx].tolist()) == [20.0, 30.0]

"""Network pieces against numpy: the k-NN distance and the running statistics of PEBBLE's intrinsic reward."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from parl_deep.nets import RunningMeanStd, knn_distance


# ------------------------------------------------------------------------------------- pieces vs numpy
def test_knn_distance_equals_brute_force_numpy():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(300, 7)).astype(np.float32)
    ref[10] = ref[11]  # a duplicate state: its nearest other state is at distance 0
    qi = np.r_[rng.choice(300, size=40, replace=True), 10]  # queries are stored states (with repeats)
    for k in (1, 5):
        got = knn_distance(torch.from_numpy(ref[qi]), torch.from_numpy(ref), k, chunk=64).numpy()
        d = np.sqrt(((ref[qi].astype(np.float64)[:, None, :] - ref[None, :, :]) ** 2).sum(-1))
        expected = np.sort(d, axis=1)[:, k]  # index 0 is the query itself
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError):
        knn_distance(torch.zeros(2, 3), torch.zeros(5, 3), 5)


@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.integers(1, 50), min_size=1, max_size=8), seed=st.integers(0, 2**31 - 1),
       scale=st.floats(1e-3, 1e3))
def test_running_mean_std_matches_numpy(sizes, seed, scale):
    rng = np.random.default_rng(seed)
    batches = [rng.normal(loc=scale, scale=scale, size=n) for n in sizes]
    rms = RunningMeanStd()
    for b in batches:
        rms.update(b)
    allv = np.concatenate(batches)
    assert rms.count == allv.size
    np.testing.assert_allclose(rms.mean, allv.mean(), rtol=1e-9, atol=1e-12 * scale)
    np.testing.assert_allclose(rms.std, allv.std(), rtol=1e-7, atol=1e-9 * scale)
    clone = RunningMeanStd()
    clone.load_state_dict(rms.state_dict())
    assert clone.std == rms.std

"""Segment-pair stores: validation, FIFO capacity and file round trips."""
from __future__ import annotations

from functools import partial

import numpy as np
import pytest

from parl_deep.preference.dataset import PreferenceDataset, SegmentPairBuffer

from .common import random_segments

OBS, ACT = 4, 2
D = OBS + ACT
_segments = partial(random_segments, dim=D, T=10)


# ---------------------------------------------------------------- datasets
def test_dataset_validation_and_fifo(tmp_path):
    rng = np.random.default_rng(8)
    ds = PreferenceDataset(capacity=5)
    s0, s1 = _segments(rng, 3, T=4), _segments(rng, 3, T=4)
    ds.add(s0, s1, [1, 0, 0.5])
    with pytest.raises(ValueError):
        ds.add(s0, s1, [1, np.nan, 0])  # skipped pairs must be filtered out
    with pytest.raises(ValueError):
        ds.add(s0, s1, [1, 0.3, 0])
    with pytest.raises(ValueError):
        ds.add(s0, s1, [1, 0])
    with pytest.raises(ValueError):
        ds.add(s0[:, :3], s1[:, :3], [1, 0, 1])  # different T than stored
    bad = s0.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError):
        ds.add(bad, s1, [1, 0, 1])
    with pytest.raises(ValueError):
        ds.add(s0[0], s1[0], [1])
    t0, t1 = _segments(rng, 4, T=4), _segments(rng, 4, T=4)
    ds.add(t0, t1, [0, 0, 1, 1])
    assert len(ds) == 5  # oldest two dropped
    np.testing.assert_array_equal(ds.seg0[:1], s0[2:])
    np.testing.assert_array_equal(ds.labels, [0.5, 0, 0, 1, 1])
    path = str(tmp_path / "prefs.npz")
    ds.save(path)
    back = PreferenceDataset.load(path)
    assert back.capacity == 5 and len(back) == 5
    for k in ("seg0", "seg1", "labels"):
        np.testing.assert_array_equal(getattr(back, k), getattr(ds, k))
    u = SegmentPairBuffer(capacity=10)
    u.add(t0, t1)
    assert len(u) == 4 and len(u.sample_indices(3, rng)) == 3
    assert len(set(u.sample_indices(10, rng).tolist())) == 4

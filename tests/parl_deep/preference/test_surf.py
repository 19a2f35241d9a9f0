"""Tests for parl_deep.preference.surf (temporal crops, pseudo-labels, SURF training round)."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from parl_deep.preference.dataset import PreferenceDataset, SegmentPairBuffer
from parl_deep.preference.reward_model import bt_loss
from parl_deep.preference.surf import SURF, SURFConfig, pseudo_label, temporal_crop
from parl_deep.preference.teacher import SimulatedTeacher

from .common import random_segments, small_ensemble

OBS, ACT = 3, 1
D = OBS + ACT


_ens = partial(small_ensemble, OBS, ACT)
_segments = partial(random_segments, dim=D, T=60)


# ------------------------------------------------------------------ crops
@settings(max_examples=80, deadline=None)
@given(
    B=st.integers(1, 20),
    T=st.integers(1, 80),
    lo=st.integers(1, 80),
    span=st.integers(0, 20),
    seed=st.integers(0, 2**31 - 1),
)
def test_crops_have_stated_lengths_and_lie_inside(B, T, lo, span, seed):
    hi = lo + span
    seg = np.zeros((B, T, 2), np.float32)
    rng = np.random.default_rng(seed)
    if hi > T:
        with pytest.raises(ValueError):
            temporal_crop(seg, seg, rng, lo, hi)
        return
    cr = temporal_crop(seg, seg, rng, lo, hi)
    assert np.all((cr.length >= lo) & (cr.length <= hi))
    for s in (cr.start0, cr.start1):
        assert np.all(s >= 0) and np.all(s + cr.length <= T)
    for s, m in ((cr.start0, cr.mask0), (cr.start1, cr.mask1)):
        assert m.shape == (B, T)
        np.testing.assert_array_equal(m.sum(1), cr.length)  # both segments of a pair: same length
        for b in range(B):
            expected = np.zeros(T, np.float32)
            expected[s[b] : s[b] + cr.length[b]] = 1
            np.testing.assert_array_equal(m[b], expected)  # one contiguous window


def test_default_crop_lengths_uniform_on_45_to_55():
    rng = np.random.default_rng(0)
    seg = np.zeros((22000, 60, 1), np.float32)
    cr = temporal_crop(seg, seg, rng)  # defaults 45..55
    vals, counts = np.unique(cr.length, return_counts=True)
    assert vals.tolist() == list(range(45, 56))
    p = 1 / 11
    se = np.sqrt(p * (1 - p) / 22000)
    assert np.all(np.abs(counts / 22000 - p) < 4.5 * se)
    # starts of the two segments are independent draws
    assert (cr.start0 != cr.start1).mean() > 0.8
    assert cr.start0.max() <= 15 and cr.start0.min() == 0


def test_surf_crop_masks_use_config():
    s = SURF(crop_min=50, crop_max=50)
    seg = np.zeros((10, 60, D), np.float32)
    m0, m1 = s.crop_masks(seg, seg, np.random.default_rng(1))
    np.testing.assert_array_equal(m0.sum(1), 50)
    np.testing.assert_array_equal(m1.sum(1), 50)


# ---------------------------------------------------------- pseudo-labels
@settings(max_examples=100, deadline=None)
@given(
    p=hnp.arrays(np.float64, st.integers(0, 50), elements=st.floats(0.0, 1.0)),
    tau=st.floats(0.5, 1.0),
)
def test_pseudo_labels_only_where_confident(p, tau):
    y, conf = pseudo_label(p, tau)
    np.testing.assert_array_equal(conf, np.maximum(p, 1 - p) >= tau)
    np.testing.assert_array_equal(y, (p >= 0.5).astype(np.float32))
    assert np.all(np.maximum(p[conf], 1 - p[conf]) >= tau)
    yt, ct = pseudo_label(torch.as_tensor(p), tau)
    np.testing.assert_array_equal(yt.numpy(), y)
    np.testing.assert_array_equal(ct.numpy(), conf)


def test_member_pseudo_labels_use_central_window_and_threshold():
    rng = np.random.default_rng(2)
    ens = _ens(seed=3)
    surf = SURF(tau=0.9)
    u0, u1 = _segments(rng, 200, spread=1.5), _segments(rng, 200, spread=1.5)
    t0, t1 = ens.to_tensor(u0), ens.to_tensor(u1)
    for m in range(ens.n_members):
        y, conf, p = surf.pseudo_labels(ens, m, t0, t1)
        # p is the member's BT probability on steps 5..54 only
        p_ref = ens.preference_probs(u0[:, 5:55], u1[:, 5:55])[m]
        np.testing.assert_allclose(p.numpy(), p_ref, rtol=1e-4, atol=1e-6)
        assert torch.all(torch.maximum(p[conf], 1 - p[conf]) >= 0.9)
        assert torch.all(torch.maximum(p[~conf], 1 - p[~conf]) < 0.9)
        assert 0 < int(conf.sum()) < 200  # the test exercises both branches
        np.testing.assert_array_equal(y.numpy(), (p_ref >= 0.5).astype(np.float32))
    # the outer 5 steps on each side do not influence pseudo-labels
    v0 = u0.copy()
    v0[:, :5] += 100.0
    v0[:, 55:] -= 100.0
    _, _, p2 = surf.pseudo_labels(ens, 0, ens.to_tensor(v0), t1)
    _, _, p1 = surf.pseudo_labels(ens, 0, t0, t1)
    torch.testing.assert_close(p1, p2)


def test_unlabelled_loss_matches_definition():
    rng = np.random.default_rng(4)
    ens = _ens(seed=5)
    u0, u1 = _segments(rng, 64, spread=1.5), _segments(rng, 64, spread=1.5)
    surf = SURF(tau=0.8, lam=0.7)
    g = np.random.default_rng(6)
    loss, stats = surf.unlabelled_loss(ens, 1, u0, u1, g)
    # recompute by hand with the same crop draw
    g = np.random.default_rng(6)
    cr = temporal_crop(u0, u1, g, 45, 55)
    with torch.no_grad():
        p = torch.sigmoid(ens.member_logits(1, ens.to_tensor(u0[:, 5:55]), ens.to_tensor(u1[:, 5:55])))
        logits = ens.member_logits(
            1, ens.to_tensor(u0), ens.to_tensor(u1), ens.to_tensor(cr.mask0), ens.to_tensor(cr.mask1)
        )
    conf = torch.maximum(p, 1 - p) >= 0.8
    y = (p >= 0.5).float()
    ref = 0.7 * (bt_loss(logits, y, reduction="none") * conf.float()).sum() / 64
    torch.testing.assert_close(loss.detach(), ref)
    assert stats["pseudo_frac"] == pytest.approx(float(conf.float().mean()))
    assert 0 < stats["pseudo_frac"] < 1


def test_no_confident_pairs_gives_zero_loss_and_gradient():
    rng = np.random.default_rng(7)
    ens = _ens(seed=8)
    u0, u1 = _segments(rng, 32), _segments(rng, 32)
    surf = SURF(tau=1.0)
    loss, stats = surf.unlabelled_loss(ens, 0, u0, u1, rng)
    assert stats["pseudo_frac"] == 0.0 and loss.item() == 0.0
    loss.backward()
    for prm in ens.members[0].parameters():
        assert prm.grad is None or torch.all(prm.grad == 0)


# ---------------------------------------------------------------- config
def test_config_defaults_and_validation():
    c = SURFConfig()
    assert (c.tau, c.lam, c.crop_min, c.crop_max, c.segment, c.window) == (0.99, 1.0, 45, 55, 50, 5)
    assert c.stored_length == 60
    assert SURF().label_slice() == slice(5, 55)
    with pytest.raises(ValueError):
        SURF().label_slice(50)
    for bad in (dict(tau=0.3), dict(mu=0), dict(crop_max=61), dict(crop_min=0), dict(lam=-1.0)):
        with pytest.raises(ValueError):
            SURFConfig(**bad)
    s = SURF(tau=0.95, mu=2)
    s2 = SURF()
    s2.load_state_dict(s.state_dict())
    assert s2.config == s.config


# ------------------------------------------------------------ train round
def test_surf_round_learns_linear_reward():
    """Few labels + many unlabelled pairs: SURF round trains on 60-step pairs labelled on the centre."""
    rng = np.random.default_rng(9)
    w = rng.normal(size=D)
    w /= np.linalg.norm(w)
    surf = SURF(tau=0.95, mu=2)
    sl = surf.label_slice()
    teacher = SimulatedTeacher.preset("oracle", seed=1)
    s0, s1 = _segments(rng, 150), _segments(rng, 150)
    y, m = teacher.label((s0[:, sl] @ w) * 0.3, (s1[:, sl] @ w) * 0.3)
    ds = PreferenceDataset()
    ds.add(s0[m], s1[m], y[m])
    unl = SegmentPairBuffer()
    unl.add(_segments(rng, 1500), _segments(rng, 1500))
    ens = _ens(seed=10, hidden=64)
    stats = ens_stats = ens.train_round(ds, max_epochs=40, mask_fn=surf.crop_masks,
                                        extra_loss=surf.unlabelled_term(unl, ens.batch_size))
    assert ens_stats["epochs"] >= 1 and "pseudo_frac" in stats and 0 <= stats["pseudo_frac"] <= 1
    h0, h1 = _segments(rng, 1000), _segments(rng, 1000)
    yh, _ = SimulatedTeacher(seed=2).label(h0[:, sl] @ w, h1[:, sl] @ w)
    acc = ens.accuracy(h0[:, sl], h1[:, sl], yh)
    print(f"SURF held-out accuracy {acc:.4f}, stats {stats}")
    assert acc > 0.9, acc


def test_surf_round_rejects_wrong_length():
    rng = np.random.default_rng(11)
    ds = PreferenceDataset()
    ds.add(_segments(rng, 4, T=50), _segments(rng, 4, T=50), [1, 0, 1, 0])
    with pytest.raises(ValueError, match="crop lengths"):
        _ens().train_round(ds, mask_fn=SURF().crop_masks)


def test_surf_without_unlabelled_data_is_cropped_pebble():
    rng = np.random.default_rng(12)
    ds = PreferenceDataset()
    ds.add(_segments(rng, 20), _segments(rng, 20), rng.integers(0, 2, 20))
    surf, ens = SURF(), _ens()
    assert surf.unlabelled_term(SegmentPairBuffer(), ens.batch_size) is None
    st = ens.train_round(ds, max_epochs=2, acc_threshold=None, mask_fn=surf.crop_masks,
                         extra_loss=surf.unlabelled_term(SegmentPairBuffer(), ens.batch_size))
    assert st["epochs"] == 2 and "pseudo_frac" not in st

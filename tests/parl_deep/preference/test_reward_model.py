"""Tests for parl_deep.preference.reward_model (reward ensemble, dataset, query selection)."""

from __future__ import annotations

from functools import partial

import io

import numpy as np
import pytest
import torch

from parl_deep.preference.dataset import PreferenceDataset
from parl_deep.preference.reward_model import RewardEnsemble, bt_loss
from parl_deep.preference.teacher import SimulatedTeacher

from .common import random_segments, small_ensemble

OBS, ACT = 4, 2
D = OBS + ACT


_small = partial(small_ensemble, OBS, ACT)
_segments = partial(random_segments, dim=D, T=10)


# ---------------------------------------------------------------- recovery
def test_ensemble_recovers_linear_reward_from_rational_labels():
    """PEBBLE-style rounds on a known linear reward; held-out preference accuracy > 95%."""
    rng = np.random.default_rng(0)
    T = 50
    w = rng.normal(size=D)
    w /= np.linalg.norm(w)

    def true_r(seg):
        return seg.astype(np.float64) @ w * 0.3

    teacher = SimulatedTeacher.preset("oracle", seed=1)
    ens = RewardEnsemble(OBS, ACT, n_members=3, hidden=64, layers=2, seed=0)
    ds = PreferenceDataset()
    for _ in range(4):  # 4 feedback sessions of 250 queries
        s0, s1 = _segments(rng, 250, T=T), _segments(rng, 250, T=T)
        y, m = teacher.label(true_r(s0), true_r(s1))
        ds.add(s0[m], s1[m], y[m])
        stats = ens.train_round(ds, max_epochs=50)
        assert stats["epochs"] >= 1 and np.isfinite(stats["loss"])
    assert len(ds) == 1000

    h0, h1 = _segments(rng, 2000, T=T), _segments(rng, 2000, T=T)
    yh, _ = SimulatedTeacher(seed=2).label(true_r(h0), true_r(h1))
    member_acc = ens.accuracy(h0, h1, yh)
    p_mean = ens.preference_probs(h0, h1).mean(axis=0)
    ens_acc = float(((p_mean >= 0.5) == (yh == 1)).mean())
    print(f"held-out accuracy: members {member_acc:.4f}, ensemble mean {ens_acc:.4f}")
    assert member_acc > 0.95, member_acc
    assert ens_acc > 0.95, ens_acc
    # the learned per-step reward is (up to a monotone map) the true one
    x = h0.reshape(-1, D)[:5000]
    corr = np.corrcoef(ens.r_hat(x[:, :OBS], x[:, OBS:]), x @ w)[0, 1]
    print(f"corr(r_hat, true r) = {corr:.4f}")
    assert corr > 0.95, corr


# --------------------------------------------------------------- forward/API
def test_r_hat_shapes_mean_and_range():
    ens = _small(n_members=3)
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(7, OBS))
    act = rng.normal(size=(7, ACT))
    r = ens.r_hat(obs, act)
    assert r.shape == (7,) and r.dtype == np.float32
    members = ens.r_hat_members(np.concatenate([obs, act], -1))
    assert members.shape == (3, 7)
    np.testing.assert_allclose(r, members.mean(0), rtol=1e-6)
    # members differ (independent initialisation)
    assert np.abs(members[0] - members[1]).max() > 1e-4
    assert np.all(np.abs(members) <= 1.0)  # tanh output
    assert ens.r_hat(obs[0], act[0]).shape == ()
    assert ens.r_hat(obs.reshape(7, 1, OBS), act.reshape(7, 1, ACT)).shape == (7, 1)
    # chunked prediction equals unchunked
    ens.predict_chunk = 3
    np.testing.assert_allclose(ens.r_hat(obs, act), r, rtol=1e-6)
    with pytest.raises(ValueError):
        ens.r_hat(obs[:, :3], act)
    with pytest.raises(ValueError):
        ens.r_hat(obs, act[:5])


def test_preference_probs_match_manual_bradley_terry():
    ens = _small(n_members=2)
    rng = np.random.default_rng(1)
    s0, s1 = _segments(rng, 5, T=6), _segments(rng, 5, T=6)
    p = ens.preference_probs(s0, s1)
    assert p.shape == (2, 5)
    for m in range(2):
        R0 = ens.r_hat_members(s0)[m].sum(-1).astype(np.float64)
        R1 = ens.r_hat_members(s1)[m].sum(-1).astype(np.float64)
        np.testing.assert_allclose(p[m], 1 / (1 + np.exp(-(R0 - R1))), rtol=1e-5)
    np.testing.assert_allclose(ens.disagreement(s0, s1), p.std(0))
    ent = -(p * np.log(p) + (1 - p) * np.log(1 - p))
    np.testing.assert_allclose(ens.entropy(s0, s1), ent.mean(0), rtol=1e-6)


def test_bt_loss_is_two_way_softmax_cross_entropy():
    R = torch.tensor([[1.3, -0.2], [0.0, 2.0], [0.5, 0.5], [-1.0, 3.0]])
    y = torch.tensor([1.0, 0.0, 0.5, 0.5])
    logp = torch.log_softmax(R, dim=1)
    target = torch.stack([y, 1 - y], dim=1)
    ref = -(target * logp).sum(1).mean()
    torch.testing.assert_close(bt_loss(R[:, 0] - R[:, 1], y), ref)
    # the 0.5 target is minimised at logit 0 with value log 2
    z = torch.zeros(1, requires_grad=True)
    loss = bt_loss(z, torch.tensor([0.5]))
    loss.backward()
    assert loss.item() == pytest.approx(np.log(2))
    assert z.grad.abs().item() < 1e-7


def test_equal_labels_drive_logits_to_zero():
    rng = np.random.default_rng(2)
    s0, s1 = _segments(rng, 64, T=5, spread=1.0), _segments(rng, 64, T=5, spread=1.0)
    ds = PreferenceDataset()
    ds.add(s0, s1, np.full(64, 0.5))
    ens = _small(seed=3)
    before = np.abs(ens.preference_probs(s0, s1) - 0.5).mean()
    stats = ens.train_round(ds, max_epochs=150)
    after = np.abs(ens.preference_probs(s0, s1) - 0.5).mean()
    assert np.isnan(stats["accuracy"]) and stats["epochs"] == 150  # no strict labels: no early stop
    assert after < 0.25 * before


def test_early_stop_at_97_percent():
    rng = np.random.default_rng(4)
    w = rng.normal(size=D)
    s0, s1 = _segments(rng, 256, T=5, spread=2.0), _segments(rng, 256, T=5, spread=2.0)
    y, _ = SimulatedTeacher(seed=0).label(s0 @ w, s1 @ w)
    ds = PreferenceDataset()
    ds.add(s0, s1, y)
    ens = _small(seed=5)
    st = ens.train_round(ds, max_epochs=200)
    assert st["accuracy"] > 0.97 and st["epochs"] < 200
    assert len(st["member_accuracy"]) == 3
    ens2 = _small(seed=5)
    st2 = ens2.train_round(ds, max_epochs=st["epochs"] + 3, acc_threshold=None)
    assert st2["epochs"] == st["epochs"] + 3
    ens3 = _small(seed=5)
    st3 = ens3.train_round(ds, max_epochs=st["epochs"] + 2, acc_threshold=1.0)  # unreachable
    assert st3["epochs"] == st["epochs"] + 2


def test_train_round_empty_dataset():
    st = _small().train_round(PreferenceDataset())
    assert st["epochs"] == 0 and st["n_labels"] == 0


def test_same_seed_same_init_and_training():
    rng = np.random.default_rng(6)
    s0, s1 = _segments(rng, 40), _segments(rng, 40)
    ds = PreferenceDataset()
    ds.add(s0, s1, rng.integers(0, 2, size=40))
    a, b = _small(seed=9), _small(seed=9)
    a.train_round(ds, max_epochs=3, acc_threshold=None)
    b.train_round(ds, max_epochs=3, acc_threshold=None)
    np.testing.assert_array_equal(a.r_hat_members(s0), b.r_hat_members(s0))
    c = _small(seed=10)
    assert not np.array_equal(_small(seed=9).r_hat_members(s0), c.r_hat_members(s0))


# ------------------------------------------------------------- checkpointing
def test_state_dict_roundtrip_continues_identically():
    rng = np.random.default_rng(7)
    s0, s1 = _segments(rng, 60), _segments(rng, 60)
    ds = PreferenceDataset()
    ds.add(s0, s1, rng.integers(0, 2, size=60).astype(np.float32))
    a = _small(seed=1)
    a.train_round(ds, max_epochs=2, acc_threshold=None)
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b = _small(seed=2)
    b.load_state_dict(torch.load(buf, weights_only=False))
    np.testing.assert_array_equal(a.r_hat_members(s0), b.r_hat_members(s0))
    # optimiser moments and shuffling RNG restored: further training is identical
    a.train_round(ds, max_epochs=2, acc_threshold=None)
    b.train_round(ds, max_epochs=2, acc_threshold=None)
    np.testing.assert_array_equal(a.r_hat_members(s0), b.r_hat_members(s0))
    with pytest.raises(ValueError):
        _small(hidden=16).load_state_dict(a.state_dict())


def test_wrong_segment_feature_dim_raises():
    ens = _small()
    rng = np.random.default_rng(9)
    s = rng.normal(size=(3, 5, D + 1)).astype(np.float32)
    with pytest.raises(ValueError):
        ens.preference_probs(s, s)
    ds = PreferenceDataset()
    ds.add(s, s, [1, 0, 1])
    with pytest.raises(ValueError):
        ens.train_round(ds)




def test_chain_losses_sums_terms_in_order_and_merges_stats():
    from parl_deep.preference.reward_model import chain_losses

    calls = []

    def term(value, key):
        def f(ens, member, rng):
            calls.append(key)
            return torch.tensor(value), {key: value}
        return f

    assert chain_losses() is None and chain_losses(None, None) is None
    one = term(1.0, "a")
    assert chain_losses(None, one) is one  # a single term is used as it is
    loss, stats = chain_losses(term(1.0, "a"), None, term(2.5, "b"))(None, 0, None)
    assert float(loss) == 3.5 and stats == {"a": 1.0, "b": 2.5} and calls == ["a", "b"]

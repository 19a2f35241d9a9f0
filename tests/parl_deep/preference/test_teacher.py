"""Tests for parl_deep.preference.teacher.SimulatedTeacher (B-Pref style simulated teacher).

Statistical tests use fixed seeds and a tolerance of 4.5 binomial standard
errors (two-sided false-alarm probability ~7e-6 per check for a correct
implementation; since seeds are fixed the outcome is deterministic anyway).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from parl_deep.preference.teacher import PRESETS, SimulatedTeacher, myopic_weights

Z = 4.5  # tolerance in binomial standard errors


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _pairs_with_difference(rng, n, T, d, gamma=1.0):
    """Random reward pairs whose myopically weighted returns differ by exactly d."""
    r0 = rng.normal(size=(n, T))
    r1 = rng.normal(size=(n, T))
    w = myopic_weights(T, gamma)
    # shift the last step of segment 0 (weight 1) to set W0 - W1 = d
    cur = r0 @ w - r1 @ w
    r0[:, -1] += d - cur
    return r0, r1


def _assert_rate(k, n, p, what):
    se = math.sqrt(p * (1 - p) / n)
    assert abs(k / n - p) <= Z * se, f"{what}: rate {k / n:.4f}, expected {p:.4f} +- {Z * se:.4f}"


# --------------------------------------------------------------------- weights
def test_myopic_weights_hand_computed():
    np.testing.assert_array_equal(myopic_weights(3, 0.5), [0.25, 0.5, 1.0])
    np.testing.assert_array_equal(myopic_weights(1, 0.9), [1.0])
    w = myopic_weights(50, 0.9)
    assert w[-1] == 1.0
    assert w[0] == pytest.approx(0.9**49, rel=1e-12)


def test_myopic_label_hand_computed_example():
    # T=3, gamma=0.5 -> weights [0.25, 0.5, 1]
    # seg0 = [4, 0, 0]: S0 = 4, W0 = 1.0 ; seg1 = [0, 0, 2]: S1 = 2, W1 = 2.0
    r0 = np.array([[4.0, 0.0, 0.0]])
    r1 = np.array([[0.0, 0.0, 2.0]])
    myopic = SimulatedTeacher(gamma=0.5, seed=0)
    np.testing.assert_allclose(myopic.weighted_returns(r0), [1.0])
    np.testing.assert_allclose(myopic.weighted_returns(r1), [2.0])
    y, m = myopic.label(r0, r1)
    assert m.tolist() == [True] and y.tolist() == [0.0]  # myopic teacher prefers segment 1
    y, m = SimulatedTeacher(gamma=1.0, seed=0).label(r0, r1)
    assert y.tolist() == [1.0]  # far-sighted teacher prefers segment 0
    # swapping the segments swaps the label
    y, _ = myopic.label(r1, r0)
    assert y.tolist() == [1.0]


def test_myopic_bradley_terry_uses_weighted_returns():
    # finite beta with gamma < 1: P(y=1) = sigmoid(beta * (W0 - W1)), not of plain sums
    gamma, beta = 0.8, 2.0
    rng = np.random.default_rng(1)
    n = 6000
    r0, r1 = _pairs_with_difference(rng, n, T=10, d=0.3, gamma=gamma)
    teacher = SimulatedTeacher(beta=beta, gamma=gamma, seed=2)
    np.testing.assert_allclose(teacher.preference_probability(r0, r1), _sigmoid(beta * 0.3), rtol=1e-9)
    y, m = teacher.label(r0, r1)
    assert m.all()
    _assert_rate(int((y == 1).sum()), n, _sigmoid(beta * 0.3), "myopic BT")


# -------------------------------------------------------------- Bradley-Terry
@pytest.mark.parametrize("beta", [1.0, 0.4])
@pytest.mark.parametrize("d", [-2.0, -0.5, 0.0, 0.7, 1.5])
def test_bradley_terry_label_rate(beta, d):
    n = 5000
    rng = np.random.default_rng(100 + int(10 * d) + int(10 * beta))
    r0, r1 = _pairs_with_difference(rng, n, T=8, d=d)
    teacher = SimulatedTeacher(beta=beta, seed=7)
    y, m = teacher.label(r0, r1)
    assert m.all()
    assert set(np.unique(y)) <= {0.0, 1.0}
    _assert_rate(int((y == 1).sum()), n, float(_sigmoid(beta * d)), f"BT beta={beta} d={d}")


def test_noisy_preset_is_not_rational():
    # beta=1 with a modest difference must produce a sizeable share of
    # "wrong" labels (guards against treating finite beta as rational)
    rng = np.random.default_rng(3)
    r0, r1 = _pairs_with_difference(rng, 4000, T=5, d=1.0)
    y, _ = SimulatedTeacher.preset("noisy", seed=4).label(r0, r1)
    _assert_rate(int((y == 0).sum()), 4000, float(_sigmoid(-1.0)), "noisy wrong-label rate")


# -------------------------------------------------------------------- mistake
def test_mistake_flip_rate_matches_eps():
    n = 20000
    rng = np.random.default_rng(5)
    r0 = rng.normal(size=(n, 6))
    r1 = rng.normal(size=(n, 6))
    rational = (r0.sum(1) >= r1.sum(1)).astype(np.float32)
    teacher = SimulatedTeacher.preset("mistake", seed=6)
    assert teacher.eps_mistake == 0.1
    y, m = teacher.label(r0, r1)
    assert m.all()
    _assert_rate(int((y != rational).sum()), n, 0.1, "mistake flip rate")


def test_mistake_combined_with_bradley_terry():
    eps, beta, d = 0.25, 1.0, 1.2
    n = 8000
    rng = np.random.default_rng(8)
    r0, r1 = _pairs_with_difference(rng, n, T=4, d=d)
    y, _ = SimulatedTeacher(beta=beta, eps_mistake=eps, seed=9).label(r0, r1)
    p = _sigmoid(beta * d)
    _assert_rate(int((y == 1).sum()), n, float((1 - eps) * p + eps * (1 - p)), "BT + mistake")


# ------------------------------------------------------------ equal and skip
def _teacher_with_rbar(rbar=1.0, **kw):
    t = SimulatedTeacher(seed=0, **kw)
    for _ in range(3):
        t.observe_episode(true_return=100.0 * rbar, length=100)
    return t


def test_equal_threshold_and_labels():
    t = _teacher_with_rbar(1.0, eps_equal=0.1)
    T = 10
    assert t.thresholds(T) == pytest.approx((0.0, 0.1 * T * 1.0))  # thres_equal = 1.0
    base = np.zeros((4, T))
    r0 = base.copy()
    r1 = base.copy()
    r0[:, 0] = [0.5, -0.9, 1.5, -3.0]  # S0 - S1 = 0.5, -0.9, 1.5, -3.0
    y, m = t.label(r0, r1)
    assert m.all()
    assert y.tolist() == [0.5, 0.5, 1.0, 0.0]


def test_equal_overrides_mistake():
    t = _teacher_with_rbar(1.0, eps_equal=0.1, eps_mistake=1.0)
    r0 = np.zeros((3, 10))
    r1 = np.zeros((3, 10))
    r0[:, 0] = [0.2, 5.0, -5.0]
    y, _ = t.label(r0, r1)
    assert y.tolist() == [0.5, 0.0, 1.0]  # equal stays equal; others flipped for sure


def test_skip_drops_pairs_with_both_returns_below_threshold():
    t = _teacher_with_rbar(1.0, eps_skip=0.1)
    T = 10
    assert t.thresholds(T)[0] == pytest.approx(1.0)
    r0 = np.zeros((4, T))
    r1 = np.zeros((4, T))
    r0[:, 0] = [0.9, 1.1, -4.0, 0.2]
    r1[:, 0] = [0.3, -2.0, 3.0, 0.95]
    y, m = t.label(r0, r1)
    assert m.tolist() == [False, True, True, False]
    assert np.isnan(y[~m]).all()
    assert y[m].tolist() == [1.0, 0.0]


def test_threshold_uses_last_window_episodes():
    t = SimulatedTeacher(eps_skip=0.5, eps_equal=0.2, seed=0, window=10)
    t.observe_episode(1000.0, 10)  # pushed out of the window below
    for _ in range(10):
        t.observe_episode(20.0, 10)  # rbar = 2
    assert t.mean_step_reward() == pytest.approx(2.0)
    assert t.thresholds(50) == pytest.approx((0.5 * 50 * 2.0, 0.2 * 50 * 2.0))


def test_threshold_fallback_to_segments_seen_so_far():
    t = SimulatedTeacher(eps_equal=0.1, seed=0)
    assert t.mean_step_reward() is None and t.thresholds(5) == (0.0, 0.0)
    r0 = np.full((2, 5), 3.0)
    r1 = np.full((2, 5), 1.0)
    t.label(r0, r1)
    assert t.mean_step_reward() == pytest.approx(2.0)
    t.label(np.full((1, 5), 5.0), np.full((1, 5), 5.0))
    assert t.mean_step_reward() == pytest.approx((30 + 10 + 25 + 25) / 30)
    # once episodes are observed they take over
    t.observe_episode(4.0, 4)
    assert t.mean_step_reward() == pytest.approx(1.0)


def test_equal_threshold_uses_magnitude_for_negative_rewards():
    t = _teacher_with_rbar(-1.0, eps_equal=0.1, eps_skip=0.1)
    skip, equal = t.thresholds(10)
    assert skip == pytest.approx(-1.0) and equal == pytest.approx(1.0)
    r0 = np.full((1, 10), -5.0)
    r1 = np.full((1, 10), -5.02)
    y, m = t.label(r0, r1)
    assert m.all() and y.tolist() == [0.5]  # skip inactive for negative threshold


# -------------------------------------------------------------- rational/props
@settings(max_examples=60, deadline=None)
@given(
    r=hnp.arrays(
        np.float64,
        st.tuples(st.integers(1, 6), st.integers(1, 12)).map(lambda s: (2, *s)),
        elements=st.floats(-100, 100, allow_nan=False, allow_infinity=False),
    ),
    gamma=st.floats(0.05, 1.0),
)
def test_rational_label_is_sign_of_weighted_return_difference(r, gamma):
    r0, r1 = r[0], r[1]
    t = SimulatedTeacher(gamma=gamma, seed=0)
    y, m = t.label(r0, r1)
    w = myopic_weights(r0.shape[1], gamma)
    expected = np.where(r0 @ w >= r1 @ w, 1.0, 0.0)
    assert m.all()
    np.testing.assert_array_equal(y, expected)


def test_convention_segment0_better_gives_one():
    r0 = np.ones((1, 50))
    r1 = np.zeros((1, 50))
    for name in PRESETS:
        y, m = SimulatedTeacher.preset(name, seed=0).label(r0, r1)
        if m[0] and y[0] != 0.5:
            if name != "noisy":  # BT with d=50 is certain in float64 anyway
                assert y[0] == 1.0, name
    y, _ = SimulatedTeacher.preset("oracle").label(r1, r0)
    assert y[0] == 0.0


# ------------------------------------------------------------------- presets
def test_preset_values():
    assert PRESETS["oracle"] == dict(beta=math.inf, gamma=1.0, eps_mistake=0.0, eps_skip=0.0, eps_equal=0.0)
    assert PRESETS["noisy"]["beta"] == 1.0
    assert PRESETS["mistake"]["eps_mistake"] == 0.1
    assert PRESETS["skip"]["eps_skip"] == 0.1
    assert PRESETS["myopic"]["gamma"] == 0.9
    assert PRESETS["equal"]["eps_equal"] == 0.1
    for name, cfg in PRESETS.items():
        non_default = {k for k, v in cfg.items() if v != PRESETS["oracle"][k]}
        assert len(non_default) == (0 if name == "oracle" else 1), name
    t = SimulatedTeacher.preset("myopic", seed=3)
    assert t.gamma == 0.9 and math.isinf(t.beta)
    with pytest.raises(ValueError):
        SimulatedTeacher.preset("bogus")


# --------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "r0,r1",
    [
        (np.zeros(5), np.zeros(5)),
        (np.zeros((2, 5, 1)), np.zeros((2, 5, 1))),
        (np.zeros((2, 5)), np.zeros((3, 5))),
        (np.zeros((2, 5)), np.zeros((2, 4))),
        (np.zeros((2, 0)), np.zeros((2, 0))),
    ],
)
def test_wrong_shapes_raise(r0, r1):
    with pytest.raises(ValueError):
        SimulatedTeacher(seed=0).label(r0, r1)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_rewards_raise(bad):
    r0 = np.zeros((3, 4))
    r1 = np.zeros((3, 4))
    r1[1, 2] = bad
    with pytest.raises(ValueError):
        SimulatedTeacher(seed=0).label(r0, r1)
    with pytest.raises(ValueError):
        SimulatedTeacher(seed=0).label(r1, r0)


@pytest.mark.parametrize(
    "kw",
    [dict(beta=-1.0), dict(beta=float("nan")), dict(gamma=0.0), dict(gamma=1.5),
     dict(eps_mistake=-0.1), dict(eps_skip=1.1), dict(eps_equal=float("nan")), dict(window=0)],
)
def test_bad_parameters_raise(kw):
    with pytest.raises(ValueError):
        SimulatedTeacher(**kw)


def test_observe_episode_validation():
    t = SimulatedTeacher()
    with pytest.raises(ValueError):
        t.observe_episode(float("nan"), 10)
    with pytest.raises(ValueError):
        t.observe_episode(1.0, 0)


# -------------------------------------------------------------- checkpointing
def test_state_dict_roundtrip_reproduces_stream():
    rng = np.random.default_rng(11)
    batches = [(rng.normal(size=(64, 10)), rng.normal(size=(64, 10))) for _ in range(4)]
    kw = dict(beta=0.5, eps_mistake=0.2, eps_equal=0.3, eps_skip=0.1)
    a = SimulatedTeacher(seed=12, **kw)
    a.label(*batches[0])
    a.observe_episode(30.0, 100)
    state = a.state_dict()
    b = SimulatedTeacher(seed=999, **kw)
    b.load_state_dict(state)
    for r0, r1 in batches[1:]:
        ya, ma = a.label(r0, r1)
        yb, mb = b.label(r0, r1)
        np.testing.assert_array_equal(ma, mb)
        np.testing.assert_array_equal(ya, yb)
    assert a.thresholds(10) == b.thresholds(10)
    with pytest.raises(ValueError):
        SimulatedTeacher(seed=0, beta=2.0).load_state_dict(state)


def test_same_seed_same_labels_different_seed_differs():
    rng = np.random.default_rng(13)
    r0, r1 = rng.normal(size=(500, 5)), rng.normal(size=(500, 5))
    y1, _ = SimulatedTeacher(beta=1.0, seed=1).label(r0, r1)
    y2, _ = SimulatedTeacher(beta=1.0, seed=1).label(r0, r1)
    y3, _ = SimulatedTeacher(beta=1.0, seed=2).label(r0, r1)
    np.testing.assert_array_equal(y1, y2)
    assert (y1 != y3).any()

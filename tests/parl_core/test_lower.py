import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from parl_core import LinearReward, SoftLowerLevel, garnet, softmax
from parl_core.policy import log_softmax
from parl_core.trajectories import enumerate_trajectories

from parl_core.strategies import logits, mdps


def _lower(mdp, seed, lam, n=3):
    rng = np.random.default_rng(seed)
    S, A = mdp.shape
    return SoftLowerLevel(mdp, LinearReward(rng.normal(size=(S, A, n))), lam), rng.normal(size=n)


def _power_series_value(lower, phi, theta, terms):
    """sum_h gamma^h mu^T P_pi^h r_pi by repeated multiplication: no linear solve."""
    mdp, lam = lower.mdp, lower.temperature
    pi = softmax(theta)
    r_pi = np.sum(pi * (lower.reward.table(phi) - lam * log_softmax(theta)), axis=1)
    P_pi = np.einsum("sa,sat->st", pi, mdp.dense_transitions())
    d, total = mdp.initial.copy(), 0.0
    for h in range(terms):
        total += mdp.gamma**h * d @ r_pi
        d = d @ P_pi
    return total


@settings(max_examples=40, deadline=None)
@given(mdps(max_states=3, max_actions=3), st.floats(0.05, 2.0), st.integers(0, 10_000), st.data())
def test_value_equals_trajectory_enumeration(mdp, lam, seed, data):
    lower, phi = _lower(mdp, seed, lam)
    theta = data.draw(logits(mdp.shape))
    H = 4
    # enumeration of the H-step truncation, compared with the truncated power series: same quantity, two routes
    traj = enumerate_trajectories(mdp, H)
    logpi = log_softmax(theta)
    rho = np.exp(traj.log_prob(logpi))
    r_lam = lower.reward.table(phi) - lam * logpi
    disc = mdp.gamma ** np.arange(H)
    enum = rho @ (r_lam[traj.states, traj.actions] * disc).sum(1)
    assert enum == pytest.approx(_power_series_value(lower, phi, theta, H), abs=1e-10)
    # the engine's exact value equals the (converged) series
    terms = int(np.ceil(np.log(1e-16) / np.log(max(mdp.gamma, 1e-3)))) + 1
    assert lower.value(phi, theta) == pytest.approx(_power_series_value(lower, phi, theta, terms), abs=1e-9)


@settings(max_examples=30, deadline=None)
@given(mdps(max_states=6, max_actions=4), st.floats(0.05, 3.0), st.integers(0, 10_000))
def test_solve_is_a_stationary_gauge_fixed_optimum(mdp, lam, seed):
    lower, phi = _lower(mdp, seed, lam)
    theta = lower.solve(phi)
    assert np.abs(theta.sum(axis=1)).max() < 1e-12
    scale = 1 + np.abs(lower.reward.table(phi)).max() / (1 - mdp.gamma)
    assert np.abs(lower.policy_gradient(phi, theta)).max() < 1e-10 * scale
    # soft Bellman optimality: V*(s) = lam logsumexp(Q*/lam) and theta* = (Q* - mean Q*)/lam
    ev = lower.evaluate(phi, softmax(theta))
    lse = lam * np.log(np.exp(ev.q / lam - (ev.q / lam).max(1, keepdims=True)).sum(1)) + ev.q.max(1)
    np.testing.assert_allclose(ev.v, lse, atol=1e-10 * scale)
    # no perturbation does better
    v_star = lower.value(phi, theta)
    rng = np.random.default_rng(seed)
    for _ in range(5):
        assert lower.value(phi, theta + rng.normal(scale=0.3, size=theta.shape)) <= v_star + 1e-12 * scale


@settings(max_examples=25, deadline=None)
@given(mdps(max_states=5, max_actions=3), st.floats(0.05, 2.0), st.integers(0, 10_000), st.data())
def test_policy_gradient_matches_autodiff_and_finite_differences(mdp, lam, seed, data):
    lower, phi = _lower(mdp, seed, lam)
    theta = data.draw(logits(mdp.shape, scale=1.5))
    g = lower.policy_gradient(phi, theta)
    th = torch.as_tensor(theta).requires_grad_(True)
    (g_ad,) = torch.autograd.grad(lower.torch_value(torch.as_tensor(phi), th), th)
    np.testing.assert_allclose(g, g_ad.numpy(), atol=1e-9, rtol=1e-7)
    i, j = seed % mdp.n_states, seed % mdp.n_actions
    e = np.zeros_like(theta)
    e[i, j] = 1e-6
    fd = (lower.value(phi, theta + e) - lower.value(phi, theta - e)) / 2e-6
    assert g[i, j] == pytest.approx(fd, abs=1e-6)


@settings(max_examples=20, deadline=None)
@given(mdps(max_states=4, max_actions=3), st.floats(0.1, 2.0), st.integers(0, 10_000), st.data())
def test_gauge_hessian_matches_finite_differences_of_the_exact_gradient(mdp, lam, seed, data):
    lower, phi = _lower(mdp, seed, lam)
    theta = data.draw(logits(mdp.shape, scale=1.5))
    Hg, B = lower.gauge_hessian(phi, theta, reachable_only=False)
    S, A = mdp.shape
    assert B.shape == (S * A, S * (A - 1)) and Hg.shape == (S * (A - 1),) * 2
    np.testing.assert_allclose(B.T @ B, np.eye(B.shape[1]), atol=1e-12)
    np.testing.assert_allclose(B.reshape(S, A, -1).sum(axis=1), 0, atol=1e-12)  # gauge directions
    np.testing.assert_allclose(Hg, Hg.T, atol=1e-9)
    # B^T H B column by column: central differences of the closed-form policy gradient along B's columns
    h = 1e-5
    fd = np.stack([B.T @ (lower.policy_gradient(phi, theta + h * b.reshape(S, A))
                          - lower.policy_gradient(phi, theta - h * b.reshape(S, A))).ravel() / (2 * h)
                   for b in B.T] or [np.zeros(0)], axis=1)[:, :B.shape[1]]
    np.testing.assert_allclose(Hg, fd, atol=1e-6 * max(1.0, np.abs(Hg).max(initial=0.0)))
    Hr, Br = lower.gauge_hessian(phi, theta)  # reachable states only: a principal block of the same matrix
    keep = lower.evaluate(phi, softmax(theta)).d > 0
    assert Br.shape[1] == keep.sum() * (A - 1)
    idx = np.flatnonzero(np.repeat(keep, A - 1))
    np.testing.assert_allclose(Hr, Hg[np.ix_(idx, idx)], atol=1e-12)


@pytest.mark.parametrize("lam", [0.0, -1.0, float("nan")])
def test_nonpositive_temperature_says_why(lam):
    with pytest.raises(ValueError, match="no finite optimum"):
        SoftLowerLevel(garnet(3, 2, 2), LinearReward.tabular(3, 2), lam)


def test_reward_shape_mismatch_and_bad_phi_theta():
    with pytest.raises(ValueError, match="reward"):
        SoftLowerLevel(garnet(3, 2, 2), LinearReward.tabular(4, 2), 1.0)
    low = SoftLowerLevel(garnet(3, 2, 2), LinearReward.tabular(3, 2), 1.0)
    with pytest.raises(ValueError, match="phi"):
        low.solve(np.zeros(5))
    with pytest.raises(ValueError, match="theta"):
        low.value(np.zeros(6), np.zeros((2, 2)))


@pytest.mark.parametrize("kind,lr", [("pg", 5.0), ("npg", 0.5)])
def test_inner_loop_converges_to_theta_star_monotonically(kind, lr):
    mdp = garnet(15, 3, 4, gamma=0.8, seed=5)
    lower, phi = _lower(mdp, 1, 1.0)
    # pg: lr = 5 is inside the ascent region for this MDP (lr = 20 diverges); safe_pg_lr is far smaller
    assert lower.safe_pg_lr(phi) < lr
    theta, star = np.zeros(mdp.shape), lower.solve(phi)
    values, errors = [], []
    for _ in range(60):
        theta = lower.improve(phi, theta, 5, lr, kind)
        values.append(lower.value(phi, theta))
        errors.append(np.linalg.norm(theta - star))
    assert np.all(np.diff(values) >= -1e-12)
    assert errors[-1] < 1e-3 * errors[0]


def test_soft_policy_iteration_handles_a_large_sparse_mdp():
    mdp = garnet(20_000, 3, 6, gamma=0.95, seed=0, sparse=True)
    lower, phi = _lower(mdp, 0, 0.5)
    theta = lower.solve(phi)
    g = lower.policy_gradient(phi, theta)
    assert np.abs(g).max() < 1e-9

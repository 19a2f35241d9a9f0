"""Matrix-free IFT (parl_core.ift): exact Hessian-vector and mixed products against automatic differentiation,
and the matrix-free route against the dense IFT route, the soft-Bellman closed form and finite differences."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch.func import hessian, jacfwd, jacrev

from parl_core import AdditiveUtility, BilevelProblem, LinearReward, SoftLowerLevel, garnet, gridworld
from parl_core.examples import maze_goal_problem
from parl_core.ift import GaugeSystem, SoftDerivatives

from parl_core.strategies import logits, mdps


def _autodiff(lower, phi, theta):
    """Dense H (S*A, S*A) and M = d2V/dtheta dphi (S*A, n) by torch.func."""
    S, A = lower.mdp.shape
    lower.torch_transitions()
    p, t = torch.as_tensor(phi), torch.as_tensor(theta)
    H = hessian(lower.torch_value, argnums=1)(p, t).reshape(S * A, S * A).numpy()
    M = jacfwd(jacrev(lower.torch_value, argnums=1), argnums=0)(p, t).reshape(S * A, -1).numpy()
    return H, M


def _problem(S, A, branching, lam, seed, n=5, sparse=False):
    rng = np.random.default_rng(seed)
    mdp = garnet(S, A, branching, gamma=0.9, seed=seed, sparse=sparse)
    lower = SoftLowerLevel(mdp, LinearReward(rng.normal(size=(S, A, n))), lam)
    return BilevelProblem(lower, AdditiveUtility(rng.normal(size=(S, A)), 6)), 0.5 * rng.normal(size=n)


@settings(max_examples=25, deadline=None)
@given(mdps(max_states=4, max_actions=3), st.floats(0.2, 2.0), st.integers(0, 10_000), st.data())
def test_products_equal_autodiff(mdp, lam, seed, data):
    rng = np.random.default_rng(seed)
    S, A = mdp.shape
    lower = SoftLowerLevel(mdp, LinearReward(rng.normal(size=(S, A, 3))), lam)
    phi, theta = rng.normal(size=3), data.draw(logits(mdp.shape, scale=2.0))
    H, M = _autodiff(lower, phi, theta)
    deriv = SoftDerivatives(lower, phi, theta)
    x = rng.normal(size=(S, A))
    scale = max(np.abs(H).max(), 1e-12)
    np.testing.assert_allclose(deriv.hvp(x).ravel(), H @ x.ravel(), atol=1e-10 * scale * np.abs(x).sum())
    np.testing.assert_allclose(deriv.mixed_vp(x, lower.reward.jacobian(phi)), M.T @ x.ravel(),
                               atol=1e-10 * max(np.abs(M).max(), 1e-12) * np.abs(x).sum())


@pytest.mark.parametrize("lam", [2.0, 0.5, 0.1])
def test_hessian_is_block_diagonal_at_the_optimum_and_the_block_condition_is_exact(lam):
    prob, phi = _problem(10, 3, 4, lam, 0)
    lower = prob.lower
    theta = lower.solve(phi)
    Hg, B = lower.gauge_hessian(phi, theta)
    system = GaugeSystem(SoftDerivatives(lower, phi, theta))
    Kb = np.column_stack([system.operator() @ e for e in np.eye(system.n)])
    np.testing.assert_allclose(Kb, -Hg, atol=1e-12 * np.abs(Hg).max())
    _same_condition(system.block_condition_number(), np.linalg.cond(Hg))


def _same_condition(estimate, dense):
    """Equal where the dense SVD resolves the smallest eigenvalue (its error is ~ eps * cond relative)."""
    if dense < 1e10:
        assert estimate == pytest.approx(dense, rel=1e-5)
    else:
        assert estimate > 1e9


CASES = [(50, 5, 4, 1.0, 0), (30, 3, 5, 0.5, 2), (12, 2, 3, 1.0, 3), (40, 4, 10, 0.2, 4)]


@pytest.mark.parametrize("S,A,branching,lam,seed", CASES)
def test_matrix_free_ift_agrees_with_dense_ift_and_soft_bellman(S, A, branching, lam, seed):
    prob, phi = _problem(S, A, branching, lam, seed)
    dense = prob.hypergradient(phi, "ift", solver="dense")
    cond = prob.last_info["condition_number"]
    cg = prob.hypergradient(phi, "ift", solver="cg")
    assert prob.last_info["solver"] == "cg" and prob.last_info["residual"] < 1e-10
    _same_condition(prob.last_info["condition_estimate"], cond)
    sb = prob.hypergradient(phi, "soft_bellman")
    scale = np.abs(sb).max()
    assert np.abs(cg - dense).max() <= 1e-8 * scale and np.abs(cg - sb).max() <= 1e-8 * scale


def test_matrix_free_ift_at_a_plugin_theta_equals_dense_ift():
    # away from theta* the Hessian is no longer block diagonal: CG needs several iterations
    prob, phi = _problem(20, 3, 4, 0.7, 5)
    theta = prob.lower.solve(phi) + 0.4 * np.random.default_rng(1).normal(size=(20, 3))
    dense = prob.hypergradient(phi, "ift", theta=theta, solver="dense")
    cg = prob.hypergradient(phi, "ift", theta=theta, solver="cg")
    assert prob.last_info["iterations"] > 1
    np.testing.assert_allclose(cg, dense, rtol=1e-8, atol=1e-10 * np.abs(dense).max())


def test_matrix_free_ift_skips_unreachable_states_like_the_dense_route():
    prob = maze_goal_problem(5, wall_density=0.3, seed=1)
    assert not prob.lower.mdp.reachable.all()
    phi = np.array([2.3, 3.1])
    np.testing.assert_allclose(prob.hypergradient(phi, "ift", solver="cg"), prob.hypergradient(phi, "ift", solver="dense"),
                               rtol=1e-8, atol=1e-12)


def test_reachable_states_are_the_support_of_the_occupancy():
    for mdp in (gridworld(5, wall_density=0.4, seed=3), gridworld(4, wall_density=0.2, seed=1), garnet(6, 2, 2, seed=0)):
        lower = SoftLowerLevel(mdp, LinearReward.tabular(*mdp.shape), 1.0)
        d = lower.evaluate(np.zeros(mdp.n_states * mdp.n_actions), np.full(mdp.shape, 1.0 / mdp.n_actions)).d
        np.testing.assert_array_equal(mdp.reachable, d > 1e-12)
    assert not gridworld(5, wall_density=0.4, seed=3).reachable.all()


def test_matrix_free_ift_beyond_the_dense_limit():
    # 5,000 states: the dense autodiff routes refuse, the matrix-free IFT route agrees with soft-Bellman and FD
    prob, phi = _problem(5000, 4, 10, 1.0, 0, n=8, sparse=True)
    with pytest.raises(ValueError, match="too many"):
        prob.hypergradient(phi, "ift", solver="dense")
    g = prob.hypergradient(phi, "ift")
    assert prob.last_info["solver"] == "cg"
    sb = prob.hypergradient(phi, "soft_bellman")
    np.testing.assert_allclose(g, sb, rtol=1e-8, atol=1e-10 * np.abs(sb).max())
    e = np.zeros(8)
    e[3] = 1e-4
    fd = (prob.objective(phi + e) - prob.objective(phi - e)) / 2e-4
    assert g[3] == pytest.approx(fd, rel=1e-6, abs=1e-9)


def test_ift_rejects_an_unknown_solver():
    prob, phi = _problem(5, 2, 2, 1.0, 0)
    with pytest.raises(ValueError, match="solver"):
        prob.hypergradient(phi, "ift", solver="lu")


def test_matrix_free_ift_refuses_a_nearly_deterministic_policy_with_a_clear_error():
    from parl_core.linalg import SolveError
    prob, phi = _problem(9, 3, 3, 0.002, 1)
    with pytest.raises(SolveError, match="soft_bellman"):
        prob.hypergradient(phi, "ift", solver="cg")

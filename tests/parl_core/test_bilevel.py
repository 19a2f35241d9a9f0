"""The four hypergradient routes agree (Done-when of the parl_core issue), and the objectives are exact."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from parl_core import (AdditiveUtility, BilevelProblem, LinearReward, PreferenceObjective, SoftLowerLevel,
                       garnet, softmax)
from parl_core.examples import maze_goal_problem
from parl_core.trajectories import EnumerationTooLarge, enumerate_trajectories

from parl_core.strategies import logits, mdps

CASES = [(50, 5, 4, 1.0, 0), (50, 5, 3, 2.0, 1), (30, 3, 5, 0.5, 2), (12, 2, 3, 1.0, 3), (40, 4, 10, 1.0, 4)]


def _problem(S, A, branching, lam, seed, kind, n=8):
    rng = np.random.default_rng(seed)
    mdp = garnet(S, A, branching, gamma=0.9, seed=seed)
    lower = SoftLowerLevel(mdp, LinearReward(rng.normal(size=(S, A, n))), lam)
    if kind == "additive":
        upper = AdditiveUtility(rng.normal(size=(S, A)), 6)
    else:  # enumeration must stay under the pair limit
        H = 2 if S * A * branching * A <= 2000 else 1
        upper = PreferenceObjective(rng.normal(size=(S, A)), H, beta=2.0)
    return BilevelProblem(lower, upper), 0.5 * rng.normal(size=n)


@pytest.mark.parametrize("kind", ["additive", "preference"])
@pytest.mark.parametrize("S,A,branching,lam,seed", CASES)
def test_all_methods_agree_with_finite_differences(S, A, branching, lam, seed, kind):
    prob, phi = _problem(S, A, branching, lam, seed, kind)
    fd = prob.hypergradient(phi, "finite_difference")
    scale = np.abs(fd).max()
    assert scale > 1e-6  # a non-trivial gradient
    for method in ("soft_bellman", "ift", "unrolled"):
        g = prob.hypergradient(phi, method, **({"steps": 150} if method == "unrolled" else {}))
        assert np.abs(g - fd).max() <= 1e-6 * scale, method


def test_unrolled_with_few_steps_is_biased_and_improves_with_k():
    prob, phi = _problem(20, 3, 4, 1.0, 7, "additive")
    exact = prob.hypergradient(phi, "soft_bellman")
    errs = [np.abs(prob.hypergradient(phi, "unrolled", steps=k, lr=0.3) - exact).max() for k in (1, 5, 20, 80)]
    assert errs[0] > 1e-3 * np.abs(exact).max()
    assert all(a > b for a, b in zip(errs, errs[1:]))


def test_ift_condition_number_grows_as_temperature_shrinks():
    rng = np.random.default_rng(0)
    mdp = garnet(10, 3, 4, seed=0)
    feats = rng.normal(size=(10, 3, 4))
    conds = []
    for lam in (2.0, 0.5, 0.1, 0.03):
        prob = BilevelProblem(SoftLowerLevel(mdp, LinearReward(feats), lam), AdditiveUtility(np.ones((10, 3)), 3))
        prob.hypergradient(np.ones(4), "ift")
        conds.append(prob.last_info["condition_number"])
    assert all(b > 3 * a for a, b in zip(conds, conds[1:])), conds


def test_soft_bellman_and_ift_accept_a_plugin_theta():
    prob, phi = _problem(10, 3, 3, 1.0, 3, "additive")
    theta = prob.lower.solve(phi) + 0.3
    a, b = prob.hypergradient(phi, "soft_bellman", theta=theta), prob.hypergradient(phi, "soft_bellman")
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)  # a per-state shift is the same policy
    theta[0, 0] += 1.0
    assert np.abs(prob.hypergradient(phi, "soft_bellman", theta=theta) - b).max() > 1e-6
    with pytest.raises(ValueError, match="theta"):
        prob.hypergradient(phi, "finite_difference", theta=theta)
    with pytest.raises(ValueError, match="method"):
        prob.hypergradient(phi, "newton")


def test_callable_reward_maze_routes_agree():
    prob = maze_goal_problem(4, wall_density=0.0)
    phi = np.array([2.2, 1.4])
    fd = prob.hypergradient(phi, "finite_difference")
    for m in ("soft_bellman", "ift", "unrolled"):
        np.testing.assert_allclose(prob.hypergradient(phi, m), fd, rtol=1e-6, atol=1e-9 * np.abs(fd).max())


@settings(max_examples=25, deadline=None)
@given(mdps(max_states=3, max_actions=2), st.integers(1, 3), st.integers(0, 10_000), st.data())
def test_additive_utility_equals_enumeration(mdp, H, seed, data):
    rng = np.random.default_rng(seed)
    u = rng.normal(size=mdp.shape)
    theta = data.draw(logits(mdp.shape))
    lower = SoftLowerLevel(mdp, LinearReward.tabular(*mdp.shape), 1.0)
    traj = enumerate_trajectories(mdp, H)
    rho = np.exp(traj.log_prob(np.log(softmax(theta))))
    assert AdditiveUtility(u, H).value(lower, None, theta) == pytest.approx(rho @ traj.sum_table(u), abs=1e-12)


def test_preference_objective_by_hand_on_a_one_step_bandit():
    # S = 1, A = 2, H = 1: two trajectories, four ordered pairs
    from parl_core import TabularMDP
    mdp = TabularMDP(np.ones((1, 2, 1)), [1.0], 0.5)
    lower = SoftLowerLevel(mdp, LinearReward.tabular(1, 2), 1.0)
    true = np.array([[1.0, 0.0]])
    phi, theta = np.array([0.3, -0.2]), np.array([[0.4, -0.4]])
    p = softmax(theta)[0]
    sig = lambda x: 1 / (1 + np.exp(-x))
    ls = lambda x: np.log(sig(x))
    total = 0.0
    for i in range(2):
        for j in range(2):
            q = sig(2.0 * (true[0, i] - true[0, j]))
            total += p[i] * p[j] * (q * ls(phi[i] - phi[j]) + (1 - q) * ls(phi[j] - phi[i]))
    assert PreferenceObjective(true, 1, beta=2.0).value(lower, phi, theta) == pytest.approx(total, abs=1e-14)


def test_preference_monte_carlo_matches_exact_within_standard_error():
    prob, phi = _problem(8, 2, 3, 1.0, 11, "preference")
    exact_g, exact_v = prob.hypergradient(phi), prob.objective(phi)
    up = prob.upper
    mc = BilevelProblem(prob.lower, PreferenceObjective(up.true_reward, up.horizon, up.beta, mode="monte_carlo",
                                                        n_samples=100_000, seed=3))
    assert mc.objective(phi) == pytest.approx(exact_v, abs=0.01)  # per-pair sd < 2.5 -> se < 0.008
    g = mc.hypergradient(phi)
    assert np.abs(g - exact_g).max() < 0.05 * np.abs(exact_g).max() + 0.01


def test_exact_preference_refuses_above_the_enumeration_limit():
    mdp = garnet(20, 4, 5, seed=0)
    lower = SoftLowerLevel(mdp, LinearReward.tabular(20, 4), 1.0)
    up = PreferenceObjective(np.zeros((20, 4)), 3, mode="exact")
    with pytest.raises(EnumerationTooLarge, match="max_trajectories"):
        up.value(lower, np.zeros(80), np.zeros((20, 4)))
    with pytest.raises(ValueError, match="beta"):
        PreferenceObjective(np.zeros((20, 4)), 3, beta=0.0)
    with pytest.raises(ValueError, match="horizon"):
        AdditiveUtility(np.zeros((20, 4)), 0)


def test_soft_bellman_scales_to_sparse_mdps():
    # a scaled-down twin of the 100,000-state benchmark: agreement with finite differences of G
    rng = np.random.default_rng(0)
    mdp = garnet(5000, 4, 10, gamma=0.9, seed=0, sparse=True)
    lower = SoftLowerLevel(mdp, LinearReward(rng.normal(size=(5000, 4, 16))), 1.0)
    prob = BilevelProblem(lower, AdditiveUtility(rng.normal(size=(5000, 4)), 10))
    phi = 0.3 * rng.normal(size=16)
    g = prob.hypergradient(phi, "soft_bellman")
    for i in (0, 7):
        e = np.zeros(16)
        e[i] = 1e-4
        fd = (prob.objective(phi + e) - prob.objective(phi - e)) / 2e-4
        assert g[i] == pytest.approx(fd, rel=1e-6, abs=1e-9)

"""The upper-objective family of parl_core.preference: exact values against a second formula, hypergradients
against finite differences, the entropy/KL split, the win rate's symmetry, and stationarity at the truth."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from parl_core import (BilevelProblem, LinearReward, PreferenceObjective, SoftLowerLevel, WeightedObjective,
                       WinRateObjective, garnet, softmax)
from parl_core.trajectories import enumerate_trajectories
from validation.checks.rlhf import make_problem

from parl_core.strategies import logits, mdps

SCORES = ("likelihood", "excess_kl", "brier")


def _sig(x):
    return 1 / (1 + np.exp(-x))


def _pair_score(score, p, d):
    """Second formula, numpy: the per-pair score from the labeller's p and the model difference d."""
    P = _sig(d)
    ent = -sum(q * np.log(q) for q in (p, 1 - p) if q > 0)
    lik = p * np.log(P) + (1 - p) * np.log(1 - P)
    return {"likelihood": lik, "excess_kl": lik + ent, "brier": -(P - p) ** 2, "win_rate": p}[score]


def _by_loops(mdp, true_r, r_phi, H, beta, theta, score, ref=None):
    """Double loop over the enumerated trajectories (independent of the torch implementation)."""
    traj = enumerate_trajectories(mdp, H)
    rho0 = np.exp(traj.log_prob(np.log(softmax(theta))))
    rho1 = rho0 if ref is None else np.exp(traj.log_prob(np.log(ref)))
    R, Rt = traj.sum_table(r_phi), traj.sum_table(true_r)
    total = 0.0
    for i in range(len(traj)):
        for j in range(len(traj)):
            dt = Rt[i] - Rt[j]
            p = (dt > 0) + 0.5 * (dt == 0) if np.isinf(beta) else _sig(beta * dt)
            total += rho0[i] * rho1[j] * _pair_score(score, p, R[i] - R[j])
    return total


def _objective(kind, true_r, H, beta=1.0, **kw):
    if kind in SCORES:
        return PreferenceObjective(true_r, H, beta, score=kind, **kw)
    if kind == "win_rate":
        return WinRateObjective(true_r, H, beta, **kw)
    return WeightedObjective([(0.7, PreferenceObjective(true_r, H, beta, **kw)),
                              (-1.3, PreferenceObjective(true_r, H, beta, score="brier", **kw)),
                              (2.0, WinRateObjective(true_r, H, beta, **kw))])


KINDS = SCORES + ("win_rate", "weighted")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed,beta", [(0, 1.0), (1, 3.0), (2, np.inf)])
def test_every_route_matches_finite_differences(kind, seed, beta):
    rng = np.random.default_rng(seed)
    mdp = garnet(4, 2, 2, gamma=0.85, seed=seed)
    lower = SoftLowerLevel(mdp, LinearReward(rng.normal(size=(4, 2, 5))), 0.6)
    prob = BilevelProblem(lower, _objective(kind, rng.normal(size=(4, 2)), 3, beta, mode="exact"))
    phi = 0.5 * rng.normal(size=5)
    fd = prob.hypergradient(phi, "finite_difference")
    scale = np.abs(fd).max()
    assert scale > 1e-4
    for method in ("soft_bellman", "ift", "unrolled"):
        g = prob.hypergradient(phi, method, **({"steps": 150} if method == "unrolled" else {}))
        assert np.abs(g - fd).max() <= 1e-6 * scale, method


@settings(max_examples=20, deadline=None)
@given(mdps(max_states=3, max_actions=2), st.integers(1, 2), st.sampled_from(KINDS[:4]),
       st.sampled_from([0.5, 2.0, np.inf]), st.integers(0, 10_000), st.data())
def test_values_equal_a_double_loop(mdp, H, kind, beta, seed, data):
    rng = np.random.default_rng(seed)
    S, A = mdp.shape
    true_r, phi = rng.normal(size=(S, A)), rng.normal(size=S * A)
    theta = data.draw(logits((S, A)))
    ref = softmax(rng.normal(size=(S, A))) if kind == "win_rate" else None
    lower = SoftLowerLevel(mdp, LinearReward.tabular(S, A), 1.0)
    up = _objective(kind, true_r, H, beta, **({"reference": ref} if ref is not None else {}))
    expected = _by_loops(mdp, true_r, phi.reshape(S, A), H, beta, theta, kind, ref)
    assert up.value(lower, phi, theta) == pytest.approx(expected, abs=1e-12)


@settings(max_examples=25, deadline=None)
@given(mdps(max_states=3, max_actions=3), st.integers(1, 3), st.sampled_from([0.3, 1.0, np.inf]),
       st.integers(0, 10_000))
def test_decompose_sums_to_the_likelihood(mdp, H, beta, seed):
    rng = np.random.default_rng(seed)
    S, A = mdp.shape
    lower = SoftLowerLevel(mdp, LinearReward(rng.normal(size=(S, A, 3))), 0.8)
    up = PreferenceObjective(rng.normal(size=(S, A)), H, beta, mode="exact")
    phi = rng.normal(size=3)
    parts = up.decompose(lower, phi)
    assert abs(parts.total - BilevelProblem(lower, up).objective(phi)) <= 1e-12
    assert parts.entropy <= 1e-15 and parts.kl <= 1e-15  # -E[H] and -E[KL] are both non-positive
    kl = PreferenceObjective(up.true_reward, H, beta, score="excess_kl", mode="exact")
    assert parts.kl == pytest.approx(kl.value(lower, phi, lower.solve(phi)), abs=1e-12)


@settings(max_examples=25, deadline=None)
@given(mdps(max_states=4, max_actions=3), st.integers(1, 3), st.sampled_from([0.5, 1.0, np.inf]),
       st.integers(0, 10_000), st.data())
def test_win_rate_against_itself_is_one_half(mdp, H, beta, seed, data):
    rng = np.random.default_rng(seed)
    S, A = mdp.shape
    theta = data.draw(logits((S, A)))
    lower = SoftLowerLevel(mdp, LinearReward.tabular(S, A), 1.0)
    up = WinRateObjective(rng.normal(size=(S, A)), H, beta, reference=softmax(theta), mode="exact")
    assert abs(up.value(lower, np.zeros(S * A), theta) - 0.5) <= 1e-12


@pytest.mark.parametrize("seed", range(4))
def test_proper_scores_have_a_local_maximum_at_the_truth_and_the_likelihood_is_not_stationary(seed):
    from validation.checks.rlhf_truth import fd_hessian
    problem, true_r = make_problem(seed)
    lower, phi_true = problem.lower, problem.upper.truth(problem.lower)
    assert np.array_equal(phi_true, true_r.ravel())
    assert np.linalg.norm(problem.hypergradient(phi_true)) > 1e-3  # eq. (5): Term 2 at the truth
    term1 = problem.direct_gradient(phi_true, lower.solve(phi_true))
    assert np.linalg.norm(term1) < 1e-12  # ... while Term 1 vanishes there
    for score in ("excess_kl", "brier"):
        pb = BilevelProblem(lower, PreferenceObjective(true_r, 3, 1.0, score=score, mode="exact"))
        assert np.linalg.norm(pb.hypergradient(phi_true)) < 1e-12
        assert np.linalg.norm(pb.hypergradient(phi_true, "finite_difference")) < 1e-8
        eig = np.linalg.eigvalsh(fd_hessian(pb, phi_true))
        assert eig[-1] <= 1e-6 * np.abs(eig).max() and eig[0] < -1e-4  # negative semidefinite, not zero
        g0 = pb.objective(phi_true)
        assert abs(g0) < 1e-15
        for d in np.random.default_rng(seed).normal(size=(5, len(phi_true))):
            assert pb.objective(phi_true + 0.05 * d) < g0


def test_monte_carlo_matches_exact_for_every_score_and_the_win_rate():
    rng = np.random.default_rng(5)
    mdp = garnet(6, 2, 2, gamma=0.9, seed=5)
    lower = SoftLowerLevel(mdp, LinearReward(rng.normal(size=(6, 2, 4))), 1.0)
    true_r, phi = rng.normal(size=(6, 2)), 0.5 * rng.normal(size=4)
    ref = softmax(rng.normal(size=(6, 2)))
    for kind in KINDS[:4]:
        kw = {"reference": ref} if kind == "win_rate" else {}
        exact = BilevelProblem(lower, _objective(kind, true_r, 2, 1.0, mode="exact", **kw))
        mc = BilevelProblem(lower, _objective(kind, true_r, 2, 1.0, mode="monte_carlo", n_samples=100_000,
                                              seed=1, **kw))
        assert mc.objective(phi) == pytest.approx(exact.objective(phi), abs=0.01), kind
        g, ge = mc.hypergradient(phi), exact.hypergradient(phi)
        assert np.abs(g - ge).max() < 0.05 * np.abs(ge).max() + 0.01, kind


def test_default_score_keeps_the_original_numbers():
    # numbers computed by the single-score PreferenceObjective before the family existed (same seeds, same calls)
    rng = np.random.default_rng(0)
    mdp = garnet(4, 2, 2, gamma=0.9, seed=0)
    lower = SoftLowerLevel(mdp, LinearReward(rng.normal(size=(4, 2, 5))), 0.7)
    got = {}
    for mode in ("exact", "monte_carlo"):
        for beta in (1.0, np.inf):
            up = PreferenceObjective(rng.normal(size=(4, 2)), 3, beta=beta, mode=mode, n_samples=500, seed=0)
            phi = rng.normal(size=5)
            th = lower.solve(phi)
            got[(mode, beta)] = (up.value(lower, phi, th + 0.1), BilevelProblem(lower, up).hypergradient(phi))
            up.grad_theta(lower, phi, th + 0.3)
    assert got[("exact", 1.0)][0] == pytest.approx(-2.417614098012142, rel=1e-13)
    np.testing.assert_allclose(got[("exact", 1.0)][1], [-0.5327781715887813, -0.47064537088613434,
                                                        -0.5094054656935404, 0.399116377274549,
                                                        -0.06492770222252768], rtol=1e-12)
    assert got[("exact", np.inf)][0] == pytest.approx(-0.6773034246891436, rel=1e-13)
    assert got[("monte_carlo", 1.0)][0] == pytest.approx(-1.4379102814772489, rel=1e-13)
    np.testing.assert_allclose(got[("monte_carlo", 1.0)][1], [0.06868551790039276, -0.10281141647911346,
                                                              0.5222453024369513, -0.6828275780512418,
                                                              -1.0823367790254868], rtol=1e-12)


def test_brier_is_estimable_from_two_labels():
    # E_{y, y' iid Bernoulli(p)}[P^2 - P (y + y') + y y'] = (P - p)^2, by enumerating the four label outcomes
    for p, P in ((0.3, 0.8), (0.5, 0.5), (1.0, 0.2), (0.9, 0.1)):
        est = sum((p if y else 1 - p) * (p if z else 1 - p) * (P * P - P * (y + z) + y * z)
                  for y in (0, 1) for z in (0, 1))
        assert est == pytest.approx((P - p) ** 2, abs=1e-15)


def test_bad_input_is_rejected():
    true_r = np.zeros((3, 2))
    with pytest.raises(ValueError, match="score"):
        PreferenceObjective(true_r, 2, score="hinge")
    with pytest.raises(ValueError, match="reference"):
        WinRateObjective(true_r, 2, reference=np.ones((3, 2)))
    with pytest.raises(ValueError, match="reference"):
        WinRateObjective(true_r, 2, reference=np.full((2, 2), 0.5))
    with pytest.raises(ValueError, match="terms"):
        WeightedObjective([])
    with pytest.raises(ValueError, match="terms"):
        WeightedObjective([(np.nan, PreferenceObjective(true_r, 2))])
    lower = SoftLowerLevel(garnet(3, 2, 2, seed=0), LinearReward(np.ones((3, 2, 2))), 1.0)
    with pytest.raises(ValueError, match="tabular"):
        PreferenceObjective(true_r, 2).truth(lower)
    with pytest.raises(ValueError, match="beta"):
        PreferenceObjective(true_r, 2, beta=np.inf).truth(lower)
    assert WeightedObjective([(1.0, PreferenceObjective(true_r, 2)), (1.0, WinRateObjective(true_r, 4))]).horizon == 4

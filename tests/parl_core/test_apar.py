import numpy as np
import pytest

from parl_core import (AdditiveUtility, BilevelProblem, ExactMonitor, ExactPolicyGradient, LinearReward,
                       PluginHypergradient, SoftLowerLevel, a_parl, garnet, schedule)


def _problem():
    rng = np.random.default_rng(0)
    mdp = garnet(10, 3, 3, gamma=0.8, seed=0)
    lower = SoftLowerLevel(mdp, LinearReward(rng.normal(size=(10, 3, 4))), 1.0)
    return BilevelProblem(lower, AdditiveUtility(rng.normal(size=(10, 3)), 5),
                          regularizer=lambda p: -0.5 * (p**2).sum())


def test_a_parl_with_exact_oracles_ascends_and_records_everything():
    prob = _problem()
    phi, theta, hist = a_parl(np.ones(4), np.zeros((10, 3)), ExactPolicyGradient(prob, lr=2.0),
                              PluginHypergradient(prob), iterations=30, step_size=0.2,
                              inner_steps=schedule("linear"), monitor=ExactMonitor(prob))
    assert len(hist.phi) == len(hist.objective) == len(hist.grad_norm) == len(hist.inner_error) == 30
    assert hist.inner_steps == list(range(1, 31))
    assert hist.objective[-1] > hist.objective[0] + 1e-3
    assert hist.grad_norm[-1] < 0.2 * hist.grad_norm[0]
    assert hist.inner_error[-1] < hist.inner_error[0]
    # the plug-in estimate approaches the true gradient as theta_K -> theta*
    true = prob.hypergradient(phi, "soft_bellman")
    est = PluginHypergradient(prob)(phi, prob.lower.solve(phi))
    np.testing.assert_allclose(est, true, rtol=1e-10, atol=1e-12)


def test_dropping_term2_changes_the_estimate():
    prob = _problem()
    phi, theta = np.ones(4), prob.lower.solve(np.ones(4))
    full, drop = PluginHypergradient(prob)(phi, theta), PluginHypergradient(prob, drop_term2=True)(phi, theta)
    np.testing.assert_allclose(drop, prob.direct_gradient(phi, theta))
    assert np.linalg.norm(full - drop) > 1e-3


def test_schedules():
    assert [schedule("linear")(t) for t in range(3)] == [1, 2, 3]
    assert [schedule("constant", 4)(t) for t in range(3)] == [4, 4, 4]
    assert [schedule("log", 1)(t) for t in (0, 1, 9)] == [1, 2, 4]
    with pytest.raises(ValueError, match="schedule"):
        schedule("cubic")


def test_custom_update_with_opaque_handles_matches_plain_ascent():
    """parl_deep drives a_parl with handles and an optimiser step; the same loop with arrays must agree."""
    prob = _problem()
    solver, est = ExactPolicyGradient(prob, lr=2.0), PluginHypergradient(prob)
    phi_a, _, _ = a_parl(np.ones(4), np.zeros((10, 3)), solver, est, iterations=8, step_size=0.1)

    class Handle:  # a mutable stand-in for a torch module holding phi
        def __init__(self, phi):
            self.phi = phi

    h = Handle(np.ones(4))
    seen = []

    def update(handle, e, t):
        seen.append(t)
        handle.phi = handle.phi + 0.1 * e
        return handle

    class HandleSolver:
        def __init__(self):
            self.theta = np.zeros((10, 3))

        def improve(self, handle, theta, K):
            self.theta = solver.improve(handle.phi, self.theta, K)
            return self.theta

    h, _, hist = a_parl(h, None, HandleSolver(), lambda handle, th: est(handle.phi, th), iterations=8,
                        update=update)
    np.testing.assert_allclose(h.phi, phi_a, rtol=1e-12)
    assert seen == list(range(8)) and hist.phi == [None] * 8

"""Appendix C examples 1 and 2 (parl_core.examples): valid MDPs, every hypergradient route against finite
differences, and A-PARL's designer optimum against a grid search."""
import numpy as np
import pytest

from parl_core import TabularMDP
from parl_core.examples import (Economy, arm_mdp, compare_routes, designer_a_parl, grid_search, household_mdp,
                                max_relative_difference, tax_problem, workbench_problem)
from parl_core.examples.workbench import ACCELERATIONS, arm_coordinates

ROUTE_OPTIONS = {"ift": {"solver": "dense"}}


def _all_routes(prob, phi):
    routes = compare_routes(prob, phi, ("finite_difference", "soft_bellman", "ift", "unrolled"), **ROUTE_OPTIONS)
    routes["ift-cg"] = compare_routes(prob, phi, ("ift",), ift={"solver": "cg"})["ift"]
    return routes


@pytest.mark.parametrize("prob,phi", [
    (workbench_problem(), np.array([7.3])),
    (workbench_problem(9, temperature=0.5, cost=0.1), np.array([2.6])),
    (tax_problem(), np.array([0.3, 0.2])),
    (tax_problem(Economy(n_skills=4, psi=2.0), temperature=0.3, horizon=6), np.array([0.05, 0.6])),
], ids=["workbench", "workbench-small", "tax", "tax-small"])
def test_every_route_agrees_with_finite_differences(prob, phi):
    routes = _all_routes(prob, phi)
    assert np.abs(routes["finite_difference"].gradient).max() > 1e-3  # a non-trivial gradient
    rel = max_relative_difference(routes)
    assert all(rel[m] <= 1e-6 for m in routes), rel
    exact = max_relative_difference(routes, reference="soft_bellman")
    assert all(exact[m] <= 1e-9 for m in ("ift", "ift-cg", "unrolled")), exact


@pytest.mark.parametrize("name", ["workbench", "tax"])
def test_a_parl_optimum_matches_the_grid_search(name):
    if name == "workbench":
        prob, axes, phi0, kw = workbench_problem(), (np.linspace(0, 14, 57),), np.array([14.0]), {"step_size": 3.0}
    else:
        axis = np.linspace(0, 0.9, 19)
        prob, axes, phi0, kw = tax_problem(), (axis, axis), np.array([0.1, 0.1]), {"step_size": 0.05, "iterations": 150}
    grid = grid_search(prob, axes)
    phi, hist = designer_a_parl(prob, phi0, **kw)
    assert np.all(np.abs(phi - grid.best) <= grid.resolution)
    assert prob.objective(phi) >= grid.values.max() - 1e-12  # at least as good as every grid point
    assert np.linalg.norm(prob.hypergradient(phi)) < 1e-4 * max(1.0, np.linalg.norm(prob.hypergradient(phi0)))
    assert np.all(np.isfinite(hist.estimate_norm))


@pytest.mark.parametrize("mdp", [arm_mdp(), arm_mdp(5, 1, slip=0.0, gamma=0.5), household_mdp(),
                                 household_mdp(Economy(n_skills=1))], ids=["arm", "arm-small", "tax", "tax-one"])
def test_example_mdps_pass_the_tabular_validation(mdp, tmp_path):
    again = TabularMDP(mdp.dense_transitions(), mdp.initial, mdp.gamma)  # through the dense-input validator
    assert (again.P != mdp.P).nnz == 0
    mdp.save(tmp_path / "m.npz")
    loaded = TabularMDP.load(tmp_path / "m.npz")
    assert (loaded.P != mdp.P).nnz == 0 and np.array_equal(loaded.initial, mdp.initial)
    T = mdp.dense_transitions()
    T[0, 0] *= 1.01
    with pytest.raises(ValueError, match="sums to"):
        TabularMDP(T, mdp.initial, mdp.gamma)


def test_arm_dynamics_follow_the_paper():
    mdp = arm_mdp(6, 2, slip=0.0)
    j, w = arm_coordinates(6, 2)
    T = mdp.dense_transitions()
    for s in range(mdp.n_states):
        for i, a in enumerate(ACCELERATIONS):
            s2 = int(np.argmax(T[s, i]))
            j2 = j[s] + w[s]
            if 0 <= j2 <= 5:  # (theta, w) -> (theta + w, w + a), velocity clipped to [-W, W]
                assert (j[s2], w[s2]) == (j2, np.clip(w[s] + a, -2, 2))
            else:  # the joint limit stops the arm
                assert (j[s2], w[s2]) == (np.clip(j2, 0, 5), 0)
    assert mdp.initial[np.flatnonzero((j == 0) & (w == 0))[0]] == 1.0


def test_tax_welfare_counts_revenue_and_utility():
    prob = tax_problem()
    phi = np.array([0.2, 0.1])
    n, c = Economy().actions()
    wage = Economy().wages()[:, None]
    u = prob.lower.reward.table(phi)
    revenue = 0.2 * wage * n + 0.1 * c
    np.testing.assert_allclose(prob.upper.table(phi), u + np.log1p(revenue), rtol=1e-14)
    np.testing.assert_allclose(u, c**0.5 - 0.6 * n**2 + 0.5 * (0.8 * wage * n - 1.1 * c), rtol=1e-14)


def test_example_parameters_are_validated():
    with pytest.raises(ValueError, match="slip"):
        arm_mdp(slip=1.0)
    with pytest.raises(ValueError, match="n_angles"):
        arm_mdp(1)
    with pytest.raises(ValueError, match="growth"):
        Economy(growth=1.5)
    with pytest.raises(ValueError, match="temperature"):
        tax_problem(temperature=0.0)

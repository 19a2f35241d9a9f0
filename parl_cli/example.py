"""`parl example maze`: Appendix C, example 3 (goal placement in an N x N maze), solved exactly."""
from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.optimize

from parl_core import METHODS
from parl_core.examples import maze_goal_problem


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", choices=["maze"], help="which example to run")
    p.add_argument("--n", type=int, default=5, help="maze side N (default 5)")
    p.add_argument("--cost", type=float, default=0.2, help="cost c of moving the goal from (N-1, N-1)")
    p.add_argument("--temperature", type=float, default=0.1, help="entropy temperature of the robot")
    p.add_argument("--horizon", type=int, default=12, help="upper horizon H_u")
    p.add_argument("--seed", type=int, default=0, help="seed of the maze walls")


def run(args: argparse.Namespace) -> int:
    if args.n < 2:
        raise SystemExit("parl example maze: --n must be at least 2")
    prob = maze_goal_problem(args.n, cost=args.cost, temperature=args.temperature, horizon=args.horizon,
                             seed=args.seed)
    corner = np.array([args.n - 1.0, args.n - 1.0])
    print(f"Goal placement in a {args.n}x{args.n} maze (Appendix C, example 3): the designer maximises")
    print("  G(phi) = E_rho(theta*(phi))[sum_h r_phi] - c ||phi - (N-1, N-1)||^2")
    # G is not concave in phi: start the local search from the best cell of a grid search
    grid = [np.array([r, c], dtype=float) for r in range(args.n) for c in range(args.n)]
    start = max(grid, key=prob.objective)
    res = scipy.optimize.minimize(lambda p: -prob.objective(p), start,
                                  jac=lambda p: -prob.hypergradient(p, "soft_bellman"), method="L-BFGS-B")
    phi_opt = res.x
    print("\nDesigner's optimum (grid search over cells, then L-BFGS on the exact soft-Bellman hypergradient,")
    print(f"  {res.nit} iterations, final |grad G| = {np.linalg.norm(prob.hypergradient(phi_opt)):.1e}):")
    print(f"  goal phi* = ({phi_opt[0]:.4f}, {phi_opt[1]:.4f})   G(phi*) = {prob.objective(phi_opt):.6f}"
          f"   G(corner) = {prob.objective(corner):.6f}")
    probe = corner - 0.5
    print(f"\nHypergradient at phi = ({probe[0]:.2f}, {probe[1]:.2f}), every method:")
    print(f"  {'method':<18} {'dG/dphi_row':>14} {'dG/dphi_col':>14} {'max rel. diff vs FD':>20} {'time [ms]':>10}")
    results = {}
    for m in ("finite_difference",) + tuple(x for x in METHODS if x != "finite_difference"):
        t0 = time.perf_counter()
        results[m] = prob.hypergradient(probe, m)
        dt = 1e3 * (time.perf_counter() - t0)
        fd = results["finite_difference"]
        rel = np.abs(results[m] - fd).max() / max(np.abs(fd).max(), 1e-300)
        extra = f"  cond(H) = {prob.last_info['condition_number']:.3g}" if m == "ift" else ""
        print(f"  {m:<18} {results[m][0]:>14.8f} {results[m][1]:>14.8f} {rel:>20.2e} {dt:>10.1f}{extra}")
    return 0

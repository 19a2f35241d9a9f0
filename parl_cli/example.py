"""`parl example maze|workbench|tax`: the designer problems of the paper's Appendix C, solved exactly.

Each example finds the designer's optimum by A-PARL (Algorithm 1 with exact oracles), confirms it by a grid
search of G, prints the hypergradient of every route side by side at a probe point, and (with --out) writes a
figure of G over phi with the optimum marked.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from parl_cli.common import fail
ROUTES = ("finite_difference", "soft_bellman", "ift", "ift-cg", "unrolled")


@dataclass(frozen=True)
class Example:
    help: str
    formula: str
    params: tuple[str, ...]
    defaults: dict  # A-PARL step size, iterations and grid points per axis


EXAMPLES = {
    "maze": Example("Appendix C, example 3: goal placement in an N x N maze",
                    "G(phi) = E_rho(theta*(phi))[sum_h r_phi] - c ||phi - (N-1, N-1)||^2",
                    ("goal row", "goal col"), {"step_size": 0.1, "iterations": 60, "grid": 9}),
    "workbench": Example("Appendix C, example 1: energy-aware workbench placement for a one-joint arm",
                         "G(phi) = -E_rho(theta*(phi))[sum_h |a_h w_h|] - c (phi - phi_line)^2",
                         ("bench angle",), {"step_size": 3.0, "iterations": 60, "grid": 57}),
    "tax": Example("Appendix C, example 2: income and consumption taxes for social welfare",
                   "G(phi) = E_rho(theta*(phi))[sum_h u_phi + psi log(1 + revenue_phi)],  phi = (x, y)",
                   ("income tax x", "consumption tax y"), {"step_size": 0.05, "iterations": 150, "grid": 19}),
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = __doc__.split("\n\n")[1].replace("\n", " ")
    sub = p.add_subparsers(dest="name", metavar="EXAMPLE", required=True)
    for name, ex in EXAMPLES.items():
        q = sub.add_parser(name, help=ex.help, description=f"{ex.help}. The designer maximises {ex.formula}.")
        if name == "maze":
            q.add_argument("--n", type=int, default=5, help="maze side N (default 5)")
            q.add_argument("--cost", type=float, default=0.2, help="cost c of moving the goal from (N-1, N-1)")
            q.add_argument("--seed", type=int, default=0, help="seed of the maze walls")
        elif name == "workbench":
            q.add_argument("--angles", type=int, default=15, help="number N of joint angles (default 15)")
            q.add_argument("--cost", type=float, default=0.03, help="placement cost c per squared angle away from "
                                                                   "the production line at N-1 (default 0.03)")
        else:
            q.add_argument("--psi", type=float, default=1.0, help="value psi of public goods (default 1.0)")
            q.add_argument("--eta", type=float, default=0.5, help="households' marginal utility of money (0.5)")
        default_lam = {"maze": 0.1, "workbench": 0.2, "tax": 0.1}[name]
        q.add_argument("--temperature", type=float, default=default_lam,
                       help=f"entropy temperature lam > 0 of the lower level (default {default_lam})")
        q.add_argument("--horizon", type=int, default={"maze": 12, "workbench": 20, "tax": 10}[name],
                       help="upper horizon H_u (steps of the optimal policy's trajectories)")
        q.add_argument("--grid", type=int, default=ex.defaults["grid"],
                       help=f"grid points per parameter of the confirming grid search (default {ex.defaults['grid']})")
        q.add_argument("--iterations", type=int, default=ex.defaults["iterations"],
                       help=f"A-PARL iterations T (default {ex.defaults['iterations']})")
        q.add_argument("--step-size", type=float, default=ex.defaults["step_size"],
                       help=f"A-PARL upper step size alpha_u (default {ex.defaults['step_size']})")
        q.add_argument("--out", metavar="PNG", default=None, help="write the figure of G over phi to this path")
        q.add_argument("--no-progress", action="store_true", help="no progress bars")


class InputError(ValueError):
    pass


def _check(args: argparse.Namespace) -> None:
    checks = [(args.temperature > 0 and np.isfinite(args.temperature), f"--temperature must be > 0, got {args.temperature}"),
              (args.horizon >= 1, f"--horizon must be at least 1, got {args.horizon}"),
              (args.grid >= 2, f"--grid must be at least 2, got {args.grid}"),
              (args.iterations >= 1, f"--iterations must be at least 1, got {args.iterations}"),
              (args.step_size > 0, f"--step-size must be > 0, got {args.step_size}")]
    if args.name == "maze":
        checks.append((args.n >= 2, "--n must be at least 2"))
    if args.name == "workbench":
        checks.append((args.angles >= 3, f"--angles must be at least 3, got {args.angles}"))
    if args.name in ("maze", "workbench"):
        checks.append((args.cost >= 0, f"--cost must be >= 0, got {args.cost}"))
    if args.name == "tax":
        checks.append((args.psi > 0 and args.eta > 0, f"--psi and --eta must be > 0, got {args.psi}, {args.eta}"))
    if args.out is not None and not Path(args.out).resolve().parent.is_dir():
        checks.append((False, f"--out: directory {str(Path(args.out).parent)!r} does not exist"))
    for ok, message in checks:
        if not ok:
            raise InputError(message)


def _setup(args: argparse.Namespace):
    """(problem, grid axes, A-PARL start, probe point) of the chosen example."""
    from parl_core.examples import Economy, maze_goal_problem, tax_problem, workbench_problem

    if args.name == "maze":
        prob = maze_goal_problem(args.n, cost=args.cost, temperature=args.temperature, horizon=args.horizon,
                                 seed=args.seed)
        axis = np.linspace(0.0, args.n - 1.0, args.grid)
        return prob, (axis, axis), None, np.full(2, args.n - 1.5)
    if args.name == "workbench":
        prob = workbench_problem(args.angles, cost=args.cost, temperature=args.temperature, horizon=args.horizon)
        line = args.angles - 1.0
        return prob, (np.linspace(0.0, line, args.grid),), np.array([line]), np.array([line / 2 + 0.3])
    prob = tax_problem(Economy(psi=args.psi, eta=args.eta), temperature=args.temperature, horizon=args.horizon)
    axis = np.linspace(0.0, 0.9, args.grid)
    return prob, (axis, axis), np.array([0.1, 0.1]), np.array([0.3, 0.2])


def _bar(args, total: int, desc: str):
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, disable=args.no_progress, leave=False, ncols=90, file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    try:
        _check(args)
        prob, axes, start, probe = _setup(args)
    except ValueError as exc:
        return fail("example", str(exc))
    from parl_core.examples import designer_a_parl, grid_search

    ex = EXAMPLES[args.name]
    print(f"{ex.help} (exact, float64). The designer maximises\n  {ex.formula}")
    with _bar(args, int(np.prod([a.size for a in axes])), "grid search") as bar:
        grid = grid_search(prob, axes, progress=lambda it: _tick(it, bar))
    phi0 = grid.best if start is None else start  # the maze's G is not concave: start from the grid's best cell
    with _bar(args, args.iterations, "A-PARL") as bar:
        phi, hist = designer_a_parl(prob, phi0, iterations=args.iterations, step_size=args.step_size,
                                    callback=lambda t, h: bar.update(1))
    _print_optimum(prob, ex, phi0, phi, grid)
    _print_routes(prob, ex, probe)
    if args.out is not None:
        _figure(args, ex, prob, grid, phi, np.array(hist.phi))
        print(f"\nwrote {args.out}")
    return 0


def _tick(iterable, bar):
    for item in iterable:
        yield item
        bar.update(1)


def _fmt(v: np.ndarray) -> str:
    return "(" + ", ".join(f"{x:.4f}" for x in np.atleast_1d(v)) + ")"


def _print_optimum(prob, ex: Example, phi0, phi, grid) -> None:
    g_opt, g_grid = prob.objective(phi), float(grid.values.max())
    dist = np.abs(phi - grid.best)
    near = bool(np.all(dist <= grid.resolution + 1e-12))
    verdict = ("NOT confirmed: a grid point is better, A-PARL stopped at another (local) optimum"
               if g_opt < g_grid - 1e-9 else "confirmed: at least as good as every grid point, "
               + ("within one grid step of the best" if near else "but the grid is too coarse to locate it"))
    print(f"\nDesigner's optimum by A-PARL from phi0 = {_fmt(phi0)} (exact natural-PG inner steps, plug-in "
          f"soft-Bellman hypergradient of eq. 14):")
    print(f"  phi* = {_fmt(phi)}  [{', '.join(ex.params)}]   G(phi*) = {g_opt:.6f}   "
          f"|grad G(phi*)| = {np.linalg.norm(prob.hypergradient(phi)):.1e}")
    print(f"Grid search ({' x '.join(str(a.size) for a in grid.axes)} points, spacing {_fmt(grid.resolution)}):")
    print(f"  best point {_fmt(grid.best)}   G = {g_grid:.6f}   |phi* - best| = {_fmt(dist)}   "
          + verdict)


def _print_routes(prob, ex: Example, probe) -> None:
    from parl_core.examples import compare_routes, max_relative_difference

    routes = compare_routes(prob, probe, ("finite_difference", "soft_bellman", "ift", "unrolled"),
                            ift={"solver": "dense"})
    routes["ift-cg"] = compare_routes(prob, probe, ("ift",), ift={"solver": "cg"})["ift"]
    rel = max_relative_difference(routes)
    print(f"\nHypergradient at phi = {_fmt(probe)}, every route (ift: dense Hessian; ift-cg: matrix-free CG):")
    width = max(22, *(len(p) + 8 for p in ex.params))
    cols = "".join(f"{'dG/d ' + p:>{width}}" for p in ex.params)
    print(f"  {'route':<18}{cols}{'max rel. diff vs FD':>21}{'time [ms]':>11}")
    for m in ROUTES:
        r = routes[m]
        extra = ""
        if "condition_number" in r.info:
            extra = f"  cond(H) = {r.info['condition_number']:.3g}"
        elif "condition_estimate" in r.info:
            extra = f"  cond(H) ~ {r.info['condition_estimate']:.3g}, {r.info['iterations']} CG iteration(s)"
        vals = "".join(f"{x:>{width}.10f}" for x in r.gradient)
        print(f"  {m:<18}{vals}{rel[m]:>21.2e}{1e3 * r.seconds:>11.1f}{extra}")


def _figure(args, ex: Example, prob, grid, phi, path: np.ndarray) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    if len(grid.axes) == 1:
        ax.plot(grid.axes[0], grid.values, "-", color="C0", label="G(phi) (exact, on the grid)")
        ax.plot(path[:, 0], [prob.objective(p) for p in path], ".", color="C1", ms=4, label="A-PARL iterates")
        ax.axvline(phi[0], color="C3", ls="--", label=f"A-PARL optimum phi* = {phi[0]:.3f}")
        ax.set_xlabel(ex.params[0])
        ax.set_ylabel("G(phi)")
    else:
        X, Y = np.meshgrid(*grid.axes, indexing="ij")
        cs = ax.contourf(X, Y, grid.values, levels=20, cmap="viridis")
        fig.colorbar(cs, ax=ax, label="G(phi)")
        ax.plot(path[:, 0], path[:, 1], ".-", color="w", ms=3, lw=0.8, label="A-PARL iterates")
        ax.plot(*grid.best, "s", mfc="none", mec="k", ms=9, label="grid search best")
        ax.plot(*phi, "*", color="C3", ms=14, label=f"A-PARL optimum {_fmt(phi)}")
        ax.set_xlabel(ex.params[0])
        ax.set_ylabel(ex.params[1])
    ax.set_title(ex.help, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    plt.close(fig)

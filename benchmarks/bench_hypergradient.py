"""Time and accuracy of every hypergradient route, side by side in one run (a benchmark, not a test).

Part 1: S = 200, A = 5 Garnet, AdditiveUtility, 8-dimensional linear reward, at several temperatures.
        Accuracy is the max relative deviation from the median of the exact routes' answers
        (soft_bellman, ift, unrolled agree to ~1e-10 when well conditioned), and from finite differences.
        torchopt's implicit differentiation (custom_root + conjugate gradient) is included when it imports.
Part 2: the soft_bellman route on a sparse MDP with 100,000 states, 4 actions, 10 successors per (s, a) and a
        16-dimensional linear reward (target < 10 s on a 2-core machine), checked against central differences
        of G in two coordinates.

Part 3 (``--scaling``): soft_bellman (S = 10^3 .. 10^6) and the matrix-free ift route (S = 10^3 .. 10^5) on the
        same sparse Garnets, each size in a fresh process: wall time (solving theta* included), peak resident
        memory, ift's agreement with soft_bellman, the fitted exponents of time and memory against S, and the
        ift / soft_bellman time ratio.

Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_hypergradient.py [--quick] [--scaling]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
import torch

from parl_core import AdditiveUtility, BilevelProblem, LinearReward, SoftLowerLevel, garnet
from validation.checks.hypergradient import best_time as timed


def torchopt_route(prob: BilevelProblem, phi: np.ndarray, maxiter: int = 500):
    """grad G by torchopt.diff.implicit.custom_root on grad_theta V = 0, with CG for the linear system."""
    import torchopt

    lower = prob.lower

    lower.torch_transitions()  # build outside the functorch transforms

    def optimality(theta, phi_t):
        return torch.func.grad(lower.torch_value, argnums=1)(phi_t, theta)

    # the Hessian is singular along per-state shifts; a tiny ridge makes CG well defined on that null space
    solve = torchopt.linear_solve.solve_cg(ridge=1e-10, maxiter=maxiter)

    @torchopt.diff.implicit.custom_root(optimality, argnums=1, solve=solve)
    def inner(theta0, phi_t):
        return torch.as_tensor(lower.solve(phi_t.detach().numpy()))

    phi_t = torch.as_tensor(phi).clone().requires_grad_(True)
    theta = inner(torch.zeros(lower.mdp.shape, dtype=torch.float64), phi_t)
    (g,) = torch.autograd.grad(prob.upper.torch_value(lower, phi_t, theta), phi_t)
    return g.numpy()


def part1(S: int, A: int, temperatures, repeat: int) -> None:
    rng = np.random.default_rng(0)
    mdp = garnet(S, A, 8, gamma=0.9, seed=0)
    feats, u = rng.normal(size=(S, A, 8)), rng.normal(size=(S, A))
    phi = 0.5 * rng.normal(size=8)
    try:
        import torchopt  # noqa: F401
        have_torchopt = True
    except Exception as exc:  # pragma: no cover - optional
        print(f"(torchopt unavailable: {exc})")
        have_torchopt = False
    print(f"\n== Part 1: S={S}, A={A}, n=8, H_u=10, gamma=0.9 (best of {repeat}) ==")
    for lam in temperatures:
        prob = BilevelProblem(SoftLowerLevel(mdp, LinearReward(feats), lam), AdditiveUtility(u, 10))
        prob.objective(phi)  # solve once; every route below reuses the cached theta*
        if lam == temperatures[0]:
            prob.hypergradient(phi, "ift")  # warm up torch.func once
        routes = {
            "soft_bellman": lambda: prob.hypergradient(phi, "soft_bellman"),
            "ift": lambda: prob.hypergradient(phi, "ift"),
            "finite_difference": lambda: prob.hypergradient(phi, "finite_difference"),
            "unrolled (K=100 npg)": lambda: prob.hypergradient(phi, "unrolled", steps=100),
        }
        if have_torchopt:
            routes["torchopt implicit CG"] = lambda: torchopt_route(prob, phi)
        res = {name: timed(fn, repeat) for name, fn in routes.items()}
        cond = BilevelProblem(prob.lower, prob.upper).ift_jacobian(phi)[1]
        ref = np.median([res[k][0] for k in ("soft_bellman", "ift", "unrolled (K=100 npg)")], axis=0)
        fd = res["finite_difference"][0]
        t_sb = res["soft_bellman"][1]
        print(f"\n temperature {lam}: cond(restricted Hessian) = {cond:.3g}")
        print(f"  {'route':<22}{'time [s]':>10}{'x soft_bellman':>16}{'rel.err vs exact':>18}{'rel.err vs FD':>15}")
        for name, (g, t) in res.items():
            e_ref = np.abs(g - ref).max() / np.abs(ref).max()
            e_fd = np.abs(g - fd).max() / np.abs(fd).max()
            print(f"  {name:<22}{t:>10.4f}{t / t_sb:>16.1f}{e_ref:>18.2e}{e_fd:>15.2e}")


def sparse_problem(S: int) -> tuple[BilevelProblem, np.ndarray]:
    """The sparse benchmark problem: Garnet (A=4, 10 successors), 16-dim linear reward, H_u = 10, lam = 1."""
    mdp = garnet(S, 4, 10, gamma=0.9, seed=0, sparse=True)
    rng = np.random.default_rng(0)
    prob = BilevelProblem(SoftLowerLevel(mdp, LinearReward(rng.normal(size=(S, 4, 16))), 1.0),
                          AdditiveUtility(rng.normal(size=(S, 4)), 10))
    return prob, 0.3 * rng.normal(size=16)


def part2(S: int) -> None:
    print(f"\n== Part 2: soft_bellman on a sparse Garnet, S={S:,}, A=4, 10 successors, n=16, H_u=10 ==")
    t0 = time.perf_counter()
    prob, phi = sparse_problem(S)
    print(f"  build: {time.perf_counter() - t0:.2f} s")
    g, t = timed(lambda: prob.hypergradient(phi, "soft_bellman"))
    print(f"  hypergradient (including solving theta*): {t:.2f} s   (target < 10 s)")
    for i in (0, 5):
        e = np.zeros(16)
        e[i] = 1e-4
        fd = (prob.objective(phi + e) - prob.objective(phi - e)) / 2e-4
        print(f"  coordinate {i}: soft_bellman {g[i]:+.10f}  central difference {fd:+.10f}  "
              f"rel.diff {abs(g[i] - fd) / abs(fd):.1e}")


def child(route: str, S: int) -> None:
    """One (route, S) measurement in this process; prints one JSON line."""
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    prob, phi = sparse_problem(S)
    t0, c0 = time.perf_counter(), time.process_time()
    prob.lower.solve(phi)
    t1 = time.perf_counter()
    g = prob.hypergradient(phi, route, **({"solver": "cg"} if route == "ift" else {}))
    t2, c2 = time.perf_counter(), time.process_time()
    info = {k: v for k, v in prob.last_info.items() if isinstance(v, (int, float, str))}
    print(json.dumps({"solve_s": t1 - t0, "route_s": t2 - t1, "cpu_s": c2 - c0, "rss_mib": resource.getrusage(
        resource.RUSAGE_SELF).ru_maxrss / 1024, "rss0_mib": rss0 / 1024, "grad": g.tolist(), "info": info}))


def measure(route: str, S: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", route, str(S)], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def part3(sizes_sb, sizes_ift) -> None:
    from validation.core import fit_loglog_slope

    print("\n== Part 3: scaling on sparse Garnets (A=4, 10 successors, n=16, H_u=10, lam=1), one process per size ==")
    print("   time = solving theta* + the route (wall and CPU seconds); peak RSS of the process (baseline after imports")
    print(f"   in brackets); load average at the start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    res = {(r, S): measure(r, S) for r, sizes in (("soft_bellman", sizes_sb), ("ift", sizes_ift)) for S in sizes}
    print(f"  {'S':>9} {'route':<13}{'total [s]':>10}{'CPU [s]':>9}{'route [s]':>10}{'peak RSS [MiB]':>20}{'ift/sb wall, CPU':>18}"
          f"{'rel.diff vs sb':>16}  ift solver")
    for S in sorted(set(sizes_sb) | set(sizes_ift)):
        sb = res.get(("soft_bellman", S))
        for r in ("soft_bellman", "ift"):
            m = res.get((r, S))
            if m is None:
                continue
            total = m["solve_s"] + m["route_s"]
            ratio = diff = extra = ""
            if r == "ift" and sb is not None:
                ratio = f"{total / (sb['solve_s'] + sb['route_s']):.2f}, {m['cpu_s'] / sb['cpu_s']:.2f}"
                g, ref = np.array(m["grad"]), np.array(sb["grad"])
                diff = f"{np.abs(g - ref).max() / np.abs(ref).max():.1e}"
                extra = f"  {m['info']['iterations']} CG iteration(s), cond ~ {m['info']['condition_estimate']:.3g}"
            print(f"  {S:>9,} {r:<13}{total:>10.2f}{m['cpu_s']:>9.2f}{m['route_s']:>10.2f}{m['rss_mib']:>12.0f} [{m['rss0_mib']:>4.0f}]"
                  f"{ratio:>18}{diff:>16}{extra}")
    for r, sizes in (("soft_bellman", sizes_sb), ("ift", sizes_ift)):
        big = [S for S in sizes if S >= 10_000]  # below that, fixed costs dominate
        t = [res[(r, S)]["solve_s"] + res[(r, S)]["route_s"] for S in big]
        mem = [res[(r, S)]["rss_mib"] - res[(r, S)]["rss0_mib"] for S in big]
        cpu = [res[(r, S)]["cpu_s"] for S in big]
        print(f"  fitted exponents ({r}, S >= 10^4): wall time ~ S^{fit_loglog_slope(big, t):.2f}, CPU time ~ "
              f"S^{fit_loglog_slope(big, cpu):.2f}, memory above baseline ~ S^{fit_loglog_slope(big, mem):.2f}")
    print(f"  load average at the end: {os.getloadavg()[0]:.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller sizes (S=50, 10,000 sparse states)")
    ap.add_argument("--scaling", action="store_true", help="run part 3 only (S up to 10^6; several minutes)")
    ap.add_argument("--child", nargs=2, metavar=("ROUTE", "S"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]))
    elif args.scaling:
        small = (1_000, 10_000) if args.quick else (1_000, 3_000, 10_000, 30_000, 100_000)
        part3(small + (() if args.quick else (300_000, 1_000_000)), small)
    elif args.quick:
        part1(50, 5, (1.0, 0.1), 1)
        part2(10_000)
    else:
        part1(200, 5, (2.0, 0.5, 0.1, 0.03), 3)
        part2(100_000)


if __name__ == "__main__":
    main()

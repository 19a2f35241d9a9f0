"""Error of every Term 2 estimator against parl_core's exact Term 2 as the number of sampled trajectories grows.

Tabular problem (Garnet S=5, A=3, gamma=0.8, lam=1, 4-dim linear reward, segments of 3 steps plus 40 steps of
continuation, Bradley-Terry teacher beta=2), policy at theta*(phi). For each N (trajectories = 2 x pairs) and
repeat, the estimators run on the same batch. Prints mean relative error and cosine, fits the slope of
log(error) against log(N) (1/sqrt(N) is slope -0.5) and writes docs/figures/term2_convergence.png.

Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/term2_convergence.py [--repeats R]
"""
from __future__ import annotations

import argparse
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from validation.term2_estimators import ESTIMATORS, exact_case, run_estimators  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(pathlib.Path(__file__).resolve().parents[1] / "docs/figures/term2_convergence.png"))
    args = ap.parse_args()
    case = exact_case()
    Ns = [500, 1000, 2000, 4000, 10_000, 20_000]
    exact = case["term2"]
    errs = {k: np.zeros((len(Ns), args.repeats)) for k in ESTIMATORS}
    coss = {k: np.zeros((len(Ns), args.repeats)) for k in ESTIMATORS}
    for i, N in enumerate(Ns):
        for r in range(args.repeats):
            for k, res in run_estimators(case, N // 2, 1000 * i + r).items():
                v = res.term2.numpy()
                errs[k][i, r] = np.linalg.norm(v - exact) / np.linalg.norm(exact)
                coss[k][i, r] = v @ exact / (np.linalg.norm(v) * np.linalg.norm(exact))
    print(f"exact Term 2 = {np.round(exact, 5)}  (|Term 1| = {np.linalg.norm(case['term1']):.4f}, "
          f"|Term 2| = {np.linalg.norm(exact):.4f})")
    print(f"{'N traj':>8}" + "".join(f"{k + ' err':>18}{k + ' cos':>16}" for k in errs))
    for i, N in enumerate(Ns):
        print(f"{N:>8}" + "".join(f"{errs[k][i].mean():>18.4f}{coss[k][i].mean():>16.4f}" for k in errs))
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for k, e in errs.items():
        slope = np.polyfit(np.log(Ns), np.log(e.mean(1)), 1)[0]
        print(f"{k}: fitted slope of log error vs log N = {slope:.2f}")
        ax.errorbar(Ns, e.mean(1), yerr=e.std(1) / np.sqrt(args.repeats), marker="o", capsize=3,
                    label=f"{k} (slope {slope:.2f})")
    ref = errs["soft-bellman"].mean(1)[0] * np.sqrt(Ns[0] / np.array(Ns))
    ax.plot(Ns, ref, "k--", lw=1, label=r"$\propto 1/\sqrt{N}$")
    ax.set(xscale="log", yscale="log", xlabel="sampled trajectories N",
           ylabel="relative error of Term 2", title="Term 2 estimators vs exact (parl_core), tabular RLHF")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=130)
    print(f"figure: {args.out}")


if __name__ == "__main__":
    main()

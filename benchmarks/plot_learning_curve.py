"""Plot the evaluation curve(s) of training runs (their ``eval.csv``) into a PNG.

    .venv/bin/python benchmarks/plot_learning_curve.py runs/walker-walk-oracle-cpu-s0 --out docs/figures/walker-walk-oracle-cpu.png

Several run directories can be given (one line each). Meta-World runs get a second panel with the success rate.
The training-episode returns (``episodes.csv``) are drawn faintly behind the evaluation curve.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--title", default=None)
    args = p.parse_args()
    has_success = False
    data = []
    for run in args.runs:
        cfg = json.loads((run / "config.json").read_text())
        ev, eps = read(run / "eval.csv"), read(run / "episodes.csv")
        if not ev:
            print(f"{run}: no evaluations yet", file=sys.stderr)
            continue
        has_success |= any(r.get("success_rate") not in (None, "") for r in ev)
        data.append((run, cfg, ev, eps))
    if not data:
        return 1
    ncols = 2 if has_success else 1
    fig, axes = plt.subplots(1, ncols, figsize=(5.5 * ncols, 3.8), squeeze=False)
    for run, cfg, ev, eps in data:
        label = f"{cfg['env']} {cfg['method']} ({cfg['preset']}, seed {cfg['seed']})"
        steps = [int(r["step"]) for r in ev]
        ret = [float(r["return_mean"]) for r in ev]
        std = [float(r["return_std"]) for r in ev]
        ax = axes[0, 0]
        if eps:
            ax.plot([int(r["step"]) for r in eps], [float(r["env_return"]) for r in eps], alpha=0.25, lw=0.8)
        line, = ax.plot(steps, ret, marker="o", ms=3, label=label)
        ax.fill_between(steps, [m - s for m, s in zip(ret, std)], [m + s for m, s in zip(ret, std)],
                        color=line.get_color(), alpha=0.15)
        if has_success:
            sr = [float(r["success_rate"]) if r.get("success_rate") else float("nan") for r in ev]
            axes[0, 1].plot(steps, sr, marker="o", ms=3, color=line.get_color(), label=label)
        print(f"{run}: {len(ev)} evaluations, last at step {steps[-1]}: return {ret[-1]:.1f}"
              + (f", success {ev[-1]['success_rate']}" if ev[-1].get("success_rate") else ""))
    axes[0, 0].set_xlabel("environment steps")
    axes[0, 0].set_ylabel(f"eval return (mean ± std over {data[0][1]['eval_episodes']} episodes)")
    axes[0, 0].legend(fontsize=7)
    axes[0, 0].grid(alpha=0.3)
    if has_success:
        axes[0, 1].set_xlabel("environment steps")
        axes[0, 1].set_ylabel("eval success rate")
        axes[0, 1].set_ylim(-0.05, 1.05)
        axes[0, 1].grid(alpha=0.3)
    if args.title:
        fig.suptitle(args.title)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The report's figures: learning curves (Figure 2 style, one panel per task) and the aggregate final scores
with their rliable intervals; one colour per method, the paper's methods in fixed colours."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from parl_deep.envs import suite_of
from parl_deep.report.load import Run
from parl_deep.report.stats import AGGREGATE_STATISTICS, bootstrap_mean_ci

PALETTE = {"oracle": "#222222", "pebble": "#1f77b4", "pebble-surf": "#2ca02c", "a-parl": "#d62728"}
EXTRA_COLORS = ["#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"]
SUITE_TITLES = {"dmc": "DMC", "metaworld": "Meta-World"}
CURVE_BAND_REPS = 1000  # bootstrap resamples of each learning-curve point's band
BOUNDS = {(False, False): "", (True, False): "lower", (False, True): "upper", (True, True): "neither"}
BOUND_MARKERS = {"": ("o", True), "lower": ("o", False), "upper": ("s", False), "neither": ("X", True)}


def _colors(methods: list[str]) -> dict[str, str]:
    out, k = {}, 0
    for m in methods:
        if m in PALETTE:
            out[m] = PALETTE[m]
        else:
            out[m] = EXTRA_COLORS[k % len(EXTRA_COLORS)]
            k += 1
    return out


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _mean_and_band(rs: list[Run], metric: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Evaluation steps, the mean over seeds at each, and its bootstrap band (NaN where a single seed has it)."""
    by_step: dict[int, list[float]] = {}
    for r in rs:
        for s, v in zip(r.steps, r.curve(metric)):
            by_step.setdefault(int(s), []).append(float(v))
    xs = np.array(sorted(by_step))
    mean = np.array([np.mean(by_step[s]) for s in xs])
    band = np.array([bootstrap_mean_ci(np.array(by_step[s]), CURVE_BAND_REPS, rng) if len(by_step[s]) > 1
                     else (math.nan, math.nan) for s in xs])
    return xs, mean, band


def plot_learning_curves(runs: list[Run], analysis: dict, path_stem: Path, formats: tuple[str, ...]) -> list[Path]:
    plt = _pyplot()
    metric, tasks, methods = analysis["metric"], analysis["tasks"], analysis["methods"]
    rng = np.random.default_rng(analysis["seed"])
    colors = _colors(methods)
    ncols = min(3, len(tasks))
    nrows = math.ceil(len(tasks) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.6 * nrows), squeeze=False)
    for ax, t in zip(axes.flat, tasks):
        for m in methods:
            rs = [r for r in runs if r.task == t and r.method == m and r.steps.size]
            if not rs:
                continue
            xs, mean, band = _mean_and_band(rs, metric, rng)
            dashed = m == analysis.get("oracle")
            ax.plot(xs, mean, color=colors[m], lw=1.8, ls="--" if dashed else "-", label=f"{m} ({len(rs)} seeds)")
            ax.fill_between(xs, band[:, 0], band[:, 1], color=colors[m], alpha=0.2, lw=0)
        prefix, name = t.split(":", 1) if ":" in t else ("", t)
        ax.set_title(f"{name} ({SUITE_TITLES.get(suite_of(t), prefix)})")
        ax.set_xlabel("environment steps")
        is_succ = metric == "success" and suite_of(t) == "metaworld"
        ax.set_ylabel("success rate" if is_succ else "episode return (ground truth)")
        ax.grid(alpha=0.3)
        ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 3))
    for ax in list(axes.flat)[len(tasks):]:
        ax.set_visible(False)
    seen = {}  # one legend entry per method, without its per-panel seed count
    for ax in list(axes.flat)[: len(tasks)]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(lab.split(" (")[0], h)
    ncol = min(len(seen), 5)
    legend_in = 0.28 * math.ceil(len(seen) / max(ncol, 1)) + 0.2  # the legend's rows, below the axes' labels
    fig.set_figheight(3.6 * nrows + legend_in)
    fig.legend(list(seen.values()), list(seen), loc="lower center", ncol=max(ncol, 1), frameon=False)
    fig.suptitle("Mean over seeds with 95% bootstrap band", fontsize=10)
    fig.tight_layout(rect=(0, legend_in / fig.get_figheight(), 1, 0.97))
    return _save_figure(fig, path_stem, formats)


def _save_figure(fig, path_stem: Path, formats: tuple[str, ...]) -> list[Path]:
    """Write ``fig`` once per format next to ``path_stem`` and close it."""
    import matplotlib.pyplot as plt

    paths = []
    for fmt in formats:
        p = path_stem.with_suffix(f".{fmt}")
        fig.savefig(p, dpi=150)
        paths.append(p)
    plt.close(fig)
    return paths


def plot_aggregates(analysis: dict, path_stem: Path, formats: tuple[str, ...]) -> list[Path]:
    plt = _pyplot()
    rows = analysis["aggregates"]
    if not rows:
        return []
    methods = [m for m in analysis["methods"] if any(r["method"] == m for r in rows)]
    colors = _colors(analysis["methods"])
    fig, axes = plt.subplots(1, 3, figsize=(10, 0.6 * len(methods) + 1.4), sharey=True)
    for ax, st in zip(axes, AGGREGATE_STATISTICS):
        for i, m in enumerate(methods):
            r = next(x for x in rows if x["method"] == m and x["statistic"] == st)
            ax.barh(i, r["ci_high"] - r["ci_low"], left=r["ci_low"], height=0.6, color=colors[m], alpha=0.75)
            ax.plot([r["value"]] * 2, [i - 0.3, i + 0.3], color="k", lw=1.5)
        ax.set_title(st)
        ax.set_yticks(range(len(methods)), methods)
        ax.grid(axis="x", alpha=0.3)
        ax.set_xlabel("normalised score" if analysis["oracle"] else "score")
    fig.suptitle("Final scores: point estimate and 95% stratified bootstrap CI (rliable)", fontsize=10)
    fig.tight_layout()
    return _save_figure(fig, path_stem, formats)


def ratio_forest_rows(analysis: dict) -> list[dict]:
    """The rows of the steps-ratio figure, top to bottom: per task, one per comparison A/B, with its ratio, 95% CI
    and ``bound``: censored runs (counted at their last step) make the ratio a lower bound when only A has them,
    an upper bound when only B has them, and neither when both do ("" when none is censored)."""
    rows = analysis["sample_efficiency_ratio"]
    present = list(dict.fromkeys(r["task"] for r in rows))  # the tasks, then "all tasks (geometric mean)"
    tasks = [t for t in analysis["tasks"] if t in present] + [t for t in present if t not in analysis["tasks"]]
    return [{"task": t, "label": f"{r['a']} / {r['b']}", "a": r["a"], "ratio": r["ratio"], "ci_low": r["ci_low"],
             "ci_high": r["ci_high"], "bound": BOUNDS[(r["censored_a"] > 0, r["censored_b"] > 0)]}
            for t in tasks for r in rows if r["task"] == t]


def plot_ratios(analysis: dict, path_stem: Path, formats: tuple[str, ...]) -> list[Path]:
    """Steps to the threshold, A over B, per task and comparison on a log axis (1: as many steps as B; left of 1:
    fewer), with the bootstrap CI."""
    rows = ratio_forest_rows(analysis)
    if not rows:
        return []
    plt = _pyplot()
    colors = _colors(analysis["methods"])
    fig, ax = plt.subplots(figsize=(9.0, 0.32 * len(rows) + 1.5))
    ys = np.arange(len(rows))[::-1]
    for y, r in zip(ys, rows):
        c = colors.get(r["a"], "#444444")
        ax.plot([r["ci_low"], r["ci_high"]], [y, y], color=c, lw=2)
        marker, filled = BOUND_MARKERS[r["bound"]]
        ax.plot(r["ratio"], y, marker, color=c, mfc=c if filled else "white", ms=6)
    ax.axvline(1.0, color="k", lw=1)
    ax.set_xscale("log")
    from matplotlib.ticker import FuncFormatter

    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    lo, hi = ax.get_xlim()
    if hi / lo < 10:  # within a decade the minor ticks are the only labels there are
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_yticks(ys, [f"{r['task']}: {r['label']}" for r in rows], fontsize=8)
    ax.set_xlabel(f"steps to reach {analysis['fraction']:g} x the final IQM of '{analysis['threshold_ref']}', "
                  "ratio A / B (log)")
    ax.grid(axis="x", alpha=0.3, which="both")
    fig.suptitle("Steps ratio A / B with 95% bootstrap CI. Runs that never reach the threshold count at their "
                 "last step:\nhollow circle, only A has such runs (a lower bound); square, only B (an upper bound); "
                 "X, both", fontsize=8)
    fig.tight_layout()
    return _save_figure(fig, path_stem, formats)

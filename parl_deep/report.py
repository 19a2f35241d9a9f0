"""``parl report DIR``: statistics, tables and figures for a ``parl bench`` directory.

What is computed (every choice here is also written at the top of the report's ``summary.md``):

Score. ``--metric return`` (default): the ground-truth episodic return of the deterministic policy (eval.csv's
``return_mean``) on every task, as in the paper's Figure 2. ``--metric success``: the success rate on Meta-World
tasks (PEBBLE's usual Meta-World metric) and the return on DMC tasks. The *final score* of a run is its last
evaluation (at the run's last step); only finished runs enter final scores and sample efficiency, while the
learning curves also draw unfinished runs up to where they are.

Normalisation (aggregates only). Scores are divided, task by task, by the oracle's final IQM on that task (so
1.0 = the oracle's level; the oracle is the method labelled ``oracle``, or ``--oracle LABEL``). Without oracle
runs the aggregates use raw scores; a task whose oracle IQM is not positive is left out of the aggregates (and
said so). Per-task tables are always raw.

Aggregates (rliable). For each method a (runs x tasks) matrix of normalised final scores, over the seeds that
finished on every aggregated task. Interquartile mean (IQM: the 25%-trimmed mean of all runs x tasks scores,
``rliable.metrics.aggregate_iqm``), mean and median of the per-task means, each with a 95% stratified-bootstrap
confidence interval (``rliable.library.get_interval_estimates``, percentile method, ``--reps`` resamples of the
runs within each task). Probability of improvement P(X > Y) (``rliable.metrics.probability_of_improvement``: per
task the Mann-Whitney statistic over all pairs of runs, ties counting one half, averaged over tasks) with a 95%
stratified independent-bootstrap interval, for every pair of methods.

Per-task final scores: mean over seeds with a 95% percentile-bootstrap interval over seeds, IQM, median, std.

Learning curves (Figure 2 style): one panel per task, one line per method: the mean over seeds at each
evaluation step, with a 95% percentile-bootstrap band of that mean over seeds (drawn where at least 2 seeds
have the step).

Sample efficiency. Threshold per task: ``--fraction`` (default 0.8) x the final IQM, on that task, of the
reference method: the oracle by default, or ``--threshold-ref LABEL`` (``--threshold-ref pebble --fraction 1``:
the steps each method needs to reach PEBBLE's final return). For
each finished run: the first evaluation step at which its score curve reaches the threshold; by default the raw
curve (each point is already a mean over ``eval_episodes`` episodes), ``--smooth W`` uses a trailing mean over W
evaluations. A run that never reaches it is *censored*: reported as "> its last step", and counted at its last
step in means and ratios (so a ratio with censored runs is a bound, flagged in the table). Ratio A/B
(``--compare A:B``, default ``a-parl:pebble``): mean steps of A over mean steps of B, per task, with a 95%
percentile-bootstrap interval (seeds resampled independently within each method); "all tasks" is the geometric
mean of the per-task ratios (same bootstrap, all tasks resampled together). ``1 - ratio`` is the fraction of
samples saved: the quantity behind the paper's "up to 63% fewer samples".

Reproducibility: every bootstrap is seeded (``--seed``); rliable draws from numpy's global generator, which is
seeded too.
"""
from __future__ import annotations

import csv
import json
import math
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

METRICS = ("return", "success")
PALETTE = {"oracle": "#222222", "pebble": "#1f77b4", "pebble-surf": "#2ca02c", "a-parl": "#d62728"}
EXTRA_COLORS = ["#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"]


class ReportError(ValueError):
    pass


@dataclass
class Run:
    run_id: str
    task: str
    method: str  # label
    method_registry: str
    seed: int
    status: str  # finished | failed | unfinished
    planned_steps: int | None
    steps: np.ndarray  # evaluation steps
    returns: np.ndarray
    success: np.ndarray | None  # Meta-World only
    error: str | None = None
    dir: str = ""

    def curve(self, metric: str) -> np.ndarray:
        if metric == "success" and self.success is not None:
            return self.success
        return self.returns


# ============================================================================================ loading


def _read_eval(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    steps, rets, succ = [], [], []
    try:
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                try:
                    steps.append(int(row["step"]))
                    rets.append(float(row["return_mean"]))
                    s = row.get("success_rate", "")
                    succ.append(float(s) if s not in ("", None) else math.nan)
                except (KeyError, ValueError, TypeError):
                    continue
    except OSError:
        pass
    succ_arr = np.array(succ, dtype=float)
    has_succ = succ_arr.size > 0 and not np.all(np.isnan(succ_arr))
    return np.array(steps, dtype=int), np.array(rets, dtype=float), (succ_arr if has_succ else None)


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def load_runs(root: str | os.PathLike) -> list[Run]:
    """Every run under ``root`` (a ``parl bench`` directory, i.e. ``root/runs/*``, or a folder of run dirs)."""
    root = Path(root)
    base = root / "runs" if (root / "runs").is_dir() else root
    runs = []
    for d in sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else []:
        meta = _read_json(d / "run.json")
        summary = _read_json(d / "summary.json") or {}
        if meta:
            task, label, reg, seed = meta["task"], meta["method_name"], meta["method"], int(meta["seed"])
            planned = int(meta["config"]["steps"])
        else:
            cfg = _read_json(d / "config.json")
            if not cfg:
                continue
            task, label, reg, seed, planned = cfg["env"], cfg["method"], cfg["method"], int(cfg["seed"]), int(cfg["steps"])
        steps, rets, succ = _read_eval(d / "eval.csv")
        status = summary.get("status", "unfinished")
        if status == "finished" and planned is not None and int(summary.get("steps", planned)) < planned:
            status = "unfinished"
        runs.append(Run(d.name, task, label, reg, seed, status, planned, steps, rets, succ,
                        summary.get("error"), str(d)))
    return runs


APARL_DIAGNOSTICS = ("term1_norm", "term2_norm", "clipped", "cosine", "seconds", "query_window")
FEEDBACK_DIAGNOSTICS = ("labels", "eval_acc", "reward_corr")


def _read_columns(path: Path, names: tuple[str, ...]) -> dict[str, np.ndarray] | None:
    """Numeric columns of a per-session CSV log (``aparl.csv``, ``feedback.csv``), or None without the file."""
    cols: dict[str, list[float]] = {k: [] for k in names}
    try:
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                for k in names:
                    try:
                        cols[k].append(float(row.get(k, "nan")))
                    except (TypeError, ValueError):
                        cols[k].append(math.nan)
    except OSError:
        return None
    return {k: np.array(v, dtype=float) for k, v in cols.items()}


def _logs_by_cell(runs: list[Run], filename: str, names: tuple[str, ...],
                  key: str) -> dict[tuple[str, str], list[dict[str, np.ndarray]]]:
    """The per-session logs ``filename`` of the runs that have one (non-empty ``key`` column), by (task, method)."""
    logs: dict[tuple[str, str], list[dict[str, np.ndarray]]] = {}
    for r in runs:
        log = _read_columns(Path(r.dir) / filename, names) if r.dir else None
        if log is not None and log[key].size:
            logs.setdefault((r.task, r.method), []).append(log)
    return logs


def _finite_mean(xs) -> float:
    x = np.asarray(xs, dtype=float)
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else math.nan


def aparl_diagnostics(runs: list[Run], tasks: list[str], methods: list[str]) -> list[dict[str, Any]]:
    """Per (task, method) with ``aparl.csv`` logs: how large the raw Term 2 estimate is against Term 1
    (median over sessions of |Term 2| / |Term 1|), the fraction of member estimates clipped to |Term 1|, the
    mean cosine between Term 1 and Term 2, and the estimator's seconds per session (all runs, all sessions)."""
    logs = _logs_by_cell(runs, "aparl.csv", APARL_DIAGNOSTICS, "term1_norm")
    rows = []
    for t in tasks:
        for m in methods:
            if (t, m) not in logs:
                continue
            cat = {k: np.concatenate([lg[k] for lg in logs[(t, m)]]) for k in APARL_DIAGNOSTICS}
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = cat["term2_norm"] / cat["term1_norm"]
            finite = lambda x: x[np.isfinite(x)]  # noqa: E731
            med = lambda x: float(np.median(finite(x))) if finite(x).size else math.nan  # noqa: E731
            mean = _finite_mean
            rows.append({"task": t, "method": m, "n_runs": len(logs[(t, m)]), "sessions": int(cat["term1_norm"].size),
                         "median_term1_norm": med(cat["term1_norm"]), "median_term2_norm": med(cat["term2_norm"]),
                         "median_ratio": med(ratio), "clipped_fraction": mean(cat["clipped"]),
                         "mean_cosine": mean(cat["cosine"]), "mean_seconds": mean(cat["seconds"]),
                         "query_window": med(cat["query_window"])})
    return rows


def feedback_diagnostics(runs: list[Run], tasks: list[str], methods: list[str]) -> list[dict[str, Any]]:
    """Per (task, method) of the preference-based methods (runs with ``feedback.csv``): the quality of the
    learned reward, averaged over runs: ``eval_acc`` (accuracy on fresh pairs labelled by the true return,
    after each session's update) at the first session, over all sessions and at the last one, and the Pearson
    correlation of r_hat with the true reward at the last session; labels used at the last session."""
    logs = _logs_by_cell(runs, "feedback.csv", FEEDBACK_DIAGNOSTICS, "labels")
    mean = _finite_mean
    rows = []
    for t in tasks:
        for m in methods:
            lg = logs.get((t, m))
            if not lg:
                continue
            rows.append({"task": t, "method": m, "n_runs": len(lg), "sessions": mean([len(x["labels"]) for x in lg]),
                         "labels": mean([x["labels"][-1] for x in lg]),
                         "first_eval_acc": mean([x["eval_acc"][0] for x in lg]),
                         "mean_eval_acc": mean([mean(x["eval_acc"]) for x in lg]),
                         "last_eval_acc": mean([x["eval_acc"][-1] for x in lg]),
                         "last_reward_corr": mean([x["reward_corr"][-1] for x in lg])})
    return rows


def _spec_order(root: Path) -> tuple[list[str], list[str]]:
    try:
        data = tomllib.loads((root / "spec.toml").read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return [], []
    tasks = [t if isinstance(t, str) else t.get("env") for t in data.get("tasks", [])]
    methods = [m.get("name", m.get("method")) for m in data.get("methods", []) if isinstance(m, dict)]
    return [t for t in tasks if t], [m for m in methods if m]


# ============================================================================================ statistics


def bootstrap_mean_ci(x: np.ndarray, reps: int, rng: np.random.Generator, size: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``x`` (resampling its entries)."""
    x = np.asarray(x, dtype=float)
    if x.size == 0:
        return math.nan, math.nan
    if x.size == 1:
        return float(x[0]), float(x[0])
    boot = x[rng.integers(0, x.size, (reps, x.size))].mean(axis=1)
    lo, hi = np.percentile(boot, [100 * (1 - size) / 2, 100 * (1 + size) / 2])
    return float(lo), float(hi)


def _trim(x) -> float:
    from scipy.stats import trim_mean

    return float(trim_mean(np.asarray(x, dtype=float), 0.25, axis=None))


def smooth_curve(v: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over ``window`` evaluations (window 1: the raw curve)."""
    if window <= 1 or v.size == 0:
        return v
    c = np.cumsum(np.insert(v, 0, 0.0))
    out = np.empty_like(v, dtype=float)
    for i in range(v.size):
        lo = max(0, i + 1 - window)
        out[i] = (c[i + 1] - c[lo]) / (i + 1 - lo)
    return out


def steps_to_threshold(steps: np.ndarray, values: np.ndarray, threshold: float) -> int | None:
    """First evaluation step whose value reaches ``threshold`` (None: never, i.e. censored)."""
    hit = np.nonzero(values >= threshold)[0]
    return int(steps[hit[0]]) if hit.size else None


def import_rliable():
    """``(rliable.library, rliable.metrics)``. rliable imports ``arch``, whose 7.x releases break on pandas 3;
    the bench extra pins ``pandas<3`` (constraints.txt: 2.3.3)."""
    from rliable import library, metrics

    return library, metrics


def analyse(runs: list[Run], *, metric: str = "return", fraction: float = 0.8, smooth: int = 1, reps: int = 2000,
            seed: int = 0, oracle: str | None = None, compare: tuple[str, str] | None = None,
            threshold_ref: str | None = None, task_order: list[str] | None = None, method_order: list[str] | None = None) -> dict[str, Any]:
    """All the numbers of the report, as plain dicts/lists (tested against direct numpy computations)."""
    rly, rmetrics = import_rliable()

    if metric not in METRICS:
        raise ReportError(f"unknown metric {metric!r}; use one of {', '.join(METRICS)}")
    if not 0 < fraction <= 1:
        raise ReportError(f"--fraction must lie in (0, 1], got {fraction}")
    if not runs:
        raise ReportError("no runs found")
    rng = np.random.default_rng(seed)
    tasks = [t for t in (task_order or []) if any(r.task == t for r in runs)]
    tasks += sorted({r.task for r in runs} - set(tasks))
    methods = [m for m in (method_order or []) if any(r.method == m for r in runs)]
    known = {"oracle": 0, "pebble": 1, "pebble-surf": 2, "a-parl": 3}
    methods += sorted({r.method for r in runs} - set(methods), key=lambda m: (known.get(m, 4), m))
    notes: list[str] = []

    if oracle is None:
        if "oracle" in methods:
            oracle = "oracle"
        else:
            cands = sorted({r.method for r in runs if r.method_registry == "oracle"})
            oracle = cands[0] if len(cands) == 1 else None
    elif oracle not in methods:
        raise ReportError(f"--oracle {oracle!r} is not a method of these runs ({', '.join(methods)})")
    if threshold_ref is not None and threshold_ref not in methods:
        raise ReportError(f"--threshold-ref {threshold_ref!r} is not a method of these runs ({', '.join(methods)})")

    finished = [r for r in runs if r.status == "finished" and r.steps.size]
    final: dict[tuple[str, str], dict[int, float]] = {}
    for r in finished:
        final.setdefault((r.task, r.method), {})[r.seed] = float(r.curve(metric)[-1])

    # per-task final table (raw)
    final_rows = []
    for t in tasks:
        for m in methods:
            vals = final.get((t, m))
            if not vals:
                continue
            x = np.array([vals[s] for s in sorted(vals)])
            lo, hi = bootstrap_mean_ci(x, reps, rng)
            row = {"task": t, "method": m, "n_runs": int(x.size), "mean": float(x.mean()), "ci_low": lo,
                   "ci_high": hi, "iqm": _trim(x), "median": float(np.median(x)), "std": float(x.std(ddof=0)),
                   "seeds": " ".join(str(s) for s in sorted(vals))}
            final_rows.append(row)

    # oracle reference and normalisation
    oracle_iqm = {t: _trim(list(final[(t, oracle)].values())) for t in tasks if oracle and final.get((t, oracle))}
    if oracle is None:
        notes.append("no oracle runs: aggregates use raw scores and there is no sample-efficiency threshold")
        norm = {t: 1.0 for t in tasks}
        normalisation = "raw scores (no oracle runs to normalise by)"
    else:
        norm = {}
        for t in tasks:
            ref = oracle_iqm.get(t)
            if ref is None:
                notes.append(f"{t}: no finished oracle runs: left out of the aggregates and of sample efficiency")
            elif not ref > 0:
                notes.append(f"{t}: the oracle's final IQM is {ref:.4g} (not positive): left out of the aggregates "
                             f"and of sample efficiency")
            else:
                norm[t] = ref
        normalisation = f"final score / final IQM of '{oracle}' on the same task (1.0 = the oracle's level)"

    # aggregates with rliable
    agg_tasks = [t for t in tasks if t in norm and all(final.get((t, m)) for m in methods)]
    for t in tasks:
        if t in norm and t not in agg_tasks:
            notes.append(f"{t}: not every method has finished runs there: left out of the aggregates")
    matrices: dict[str, np.ndarray] = {}
    matrix_seeds: dict[str, list[int]] = {}
    if agg_tasks:
        for m in methods:
            seeds = sorted(set.intersection(*[set(final[(t, m)]) for t in agg_tasks]))
            if not seeds:
                notes.append(f"{m}: no seed finished on every aggregated task: left out of the aggregates")
                continue
            matrices[m] = np.array([[final[(t, m)][s] / norm[t] for t in agg_tasks] for s in seeds])
            matrix_seeds[m] = seeds
    aggregate_rows, poi_rows = [], []
    if matrices:
        np.random.seed(seed)  # rliable's bootstrap draws indices from numpy's global generator
        func = lambda x: np.array([rmetrics.aggregate_iqm(x), rmetrics.aggregate_mean(x),  # noqa: E731
                                   rmetrics.aggregate_median(x)])
        with warnings.catch_warnings():  # arch: "random_state is deprecated" (rliable passes it)
            warnings.simplefilter("ignore", FutureWarning)
            points, intervals = rly.get_interval_estimates(matrices, func, reps=reps,
                                                           random_state=np.random.RandomState(seed))
        for m in matrices:
            for k, name in enumerate(("IQM", "Mean", "Median")):
                aggregate_rows.append({"method": m, "statistic": name, "value": float(points[m][k]),
                                       "ci_low": float(intervals[m][0, k]), "ci_high": float(intervals[m][1, k]),
                                       "n_runs": int(matrices[m].shape[0]), "n_tasks": len(agg_tasks)})
        order = _poi_order(list(matrices))
        pairs = {f"{x} > {y}": (x, y) for i, x in enumerate(order) for y in order[i + 1:]}
        if pairs:
            np.random.seed(seed + 1)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                pp, pi = rly.get_interval_estimates(
                    {k: [matrices[x], matrices[y]] for k, (x, y) in pairs.items()},
                    rmetrics.probability_of_improvement, reps=reps, random_state=np.random.RandomState(seed + 1))
            for k, (x, y) in pairs.items():
                poi_rows.append({"x": x, "y": y, "p_x_better": float(pp[k]), "ci_low": float(np.ravel(pi[k])[0]),
                                 "ci_high": float(np.ravel(pi[k])[1]), "n_tasks": len(agg_tasks)})

    # sample efficiency
    se_runs, se_rows, ratio_rows = [], [], []
    ref = threshold_ref if threshold_ref is not None else oracle
    ref_iqm = {t: _trim(list(final[(t, ref)].values())) for t in tasks if ref and final.get((t, ref))}
    if threshold_ref is None:
        thresholds = {t: fraction * oracle_iqm[t] for t in tasks if t in norm and oracle is not None}
    else:
        thresholds = {}
        for t in tasks:
            if t not in ref_iqm:
                notes.append(f"{t}: no finished '{ref}' runs: no sample-efficiency threshold")
            elif not ref_iqm[t] > 0:
                notes.append(f"{t}: the final IQM of '{ref}' is {ref_iqm[t]:.4g} (not positive): no "
                             f"sample-efficiency threshold")
            else:
                thresholds[t] = fraction * ref_iqm[t]
    per: dict[tuple[str, str], list[tuple[int, float, bool]]] = {}
    for r in sorted(finished, key=lambda r: (tasks.index(r.task), methods.index(r.method), r.seed)):
        if r.task not in thresholds:
            continue
        thr = thresholds[r.task]
        hit = steps_to_threshold(r.steps, smooth_curve(r.curve(metric), smooth), thr)
        last = int(r.steps[-1])
        se_runs.append({"task": r.task, "method": r.method, "seed": r.seed, "threshold": thr,
                        "steps_to_threshold": hit, "censored": hit is None, "last_step": last})
        per.setdefault((r.task, r.method), []).append((r.seed, float(hit if hit is not None else last), hit is None))
    for t in tasks:
        for m in methods:
            xs = per.get((t, m))
            if not xs:
                continue
            v = np.array([x[1] for x in xs])
            reached = [x[1] for x in xs if not x[2]]
            se_rows.append({"task": t, "method": m, "threshold": thresholds[t], "n_runs": len(xs),
                            "n_reached": len(reached), "mean_steps": float(v.mean()),
                            "median_steps": float(np.median(v)),
                            "censored_note": "" if len(reached) == len(xs) else
                            f"{len(xs) - len(reached)} run(s) never reached it (counted at their last step)"})
    if compare is None and oracle is not None and {"a-parl", "pebble"} <= set(methods):
        compare = ("a-parl", "pebble")
    if compare is not None:
        a, b = compare
        for lab in compare:
            if lab not in methods:
                raise ReportError(f"--compare: {lab!r} is not a method of these runs ({', '.join(methods)})")
        ctasks = [t for t in tasks if per.get((t, a)) and per.get((t, b))]
        if ctasks:
            A = {t: np.array([x[1] for x in per[(t, a)]]) for t in ctasks}
            B = {t: np.array([x[1] for x in per[(t, b)]]) for t in ctasks}
            cens = {t: (sum(x[2] for x in per[(t, a)]), sum(x[2] for x in per[(t, b)])) for t in ctasks}
            boot = {t: (A[t][rng.integers(0, A[t].size, (reps, A[t].size))].mean(1) /
                        B[t][rng.integers(0, B[t].size, (reps, B[t].size))].mean(1)) for t in ctasks}
            for t in ctasks:
                ratio = float(A[t].mean() / B[t].mean())
                lo, hi = np.percentile(boot[t], [2.5, 97.5])
                ratio_rows.append({"task": t, "a": a, "b": b, "ratio": ratio, "ci_low": float(lo),
                                   "ci_high": float(hi), "samples_saved": 1 - ratio,
                                   "censored_a": int(cens[t][0]), "censored_b": int(cens[t][1]),
                                   "n_a": int(A[t].size), "n_b": int(B[t].size)})
            if len(ctasks) > 1:
                gm = float(np.exp(np.mean([math.log(r["ratio"]) for r in ratio_rows])))
                gboot = np.exp(np.mean(np.log(np.stack([boot[t] for t in ctasks])), axis=0))
                lo, hi = np.percentile(gboot, [2.5, 97.5])
                ratio_rows.append({"task": "all tasks (geometric mean)", "a": a, "b": b, "ratio": gm,
                                   "ci_low": float(lo), "ci_high": float(hi), "samples_saved": 1 - gm,
                                   "censored_a": sum(c[0] for c in cens.values()),
                                   "censored_b": sum(c[1] for c in cens.values()),
                                   "n_a": sum(int(A[t].size) for t in ctasks),
                                   "n_b": sum(int(B[t].size) for t in ctasks)})

    status = {s: sum(1 for r in runs if r.status == s) for s in ("finished", "failed", "unfinished")}
    return {
        "metric": metric, "fraction": fraction, "smooth": smooth, "reps": reps, "seed": seed, "oracle": oracle,
        "threshold_ref": ref, "threshold_ref_final_iqm": ref_iqm,
        "compare": list(compare) if compare else None, "normalisation": normalisation, "tasks": tasks,
        "methods": methods, "aggregate_tasks": agg_tasks, "oracle_final_iqm": oracle_iqm, "notes": notes,
        "status": status,
        "failed_runs": [{"run_id": r.run_id, "error": r.error} for r in runs if r.status == "failed"],
        "unfinished_runs": [r.run_id for r in runs if r.status == "unfinished"],
        "final_scores": final_rows, "aggregates": aggregate_rows, "probability_of_improvement": poi_rows,
        "matrices": {m: {"seeds": matrix_seeds[m], "scores": matrices[m].tolist()} for m in matrices},
        "sample_efficiency_runs": se_runs, "sample_efficiency": se_rows, "sample_efficiency_ratio": ratio_rows,
        "aparl_diagnostics": aparl_diagnostics(runs, tasks, methods),
        "feedback_diagnostics": feedback_diagnostics(runs, tasks, methods),
    }


def _poi_order(methods: list[str]) -> list[str]:
    """Pairs are reported as P(X > Y) with X the newer method: a-parl, pebble-surf, pebble, others, oracle last."""
    rank = {"a-parl": 0, "pebble-surf": 1, "pebble": 2}
    return sorted(methods, key=lambda m: (m == "oracle", rank.get(m, 3), methods.index(m)))


# ============================================================================================ figures


def _colors(methods: list[str]) -> dict[str, str]:
    out, k = {}, 0
    for m in methods:
        if m in PALETTE:
            out[m] = PALETTE[m]
        else:
            out[m] = EXTRA_COLORS[k % len(EXTRA_COLORS)]
            k += 1
    return out


def plot_learning_curves(runs: list[Run], analysis: dict, path_stem: Path, formats: tuple[str, ...]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
            by_step: dict[int, list[float]] = {}
            for r in rs:
                for s, v in zip(r.steps, r.curve(metric)):
                    by_step.setdefault(int(s), []).append(float(v))
            xs = np.array(sorted(by_step))
            mean = np.array([np.mean(by_step[s]) for s in xs])
            band = np.array([bootstrap_mean_ci(np.array(by_step[s]), 1000, rng) if len(by_step[s]) > 1
                             else (math.nan, math.nan) for s in xs])
            dashed = m == analysis.get("oracle")
            ax.plot(xs, mean, color=colors[m], lw=1.8, ls="--" if dashed else "-", label=f"{m} ({len(rs)} seeds)")
            ax.fill_between(xs, band[:, 0], band[:, 1], color=colors[m], alpha=0.2, lw=0)
        suite, name = t.split(":", 1) if ":" in t else ("", t)
        ax.set_title(f"{name} ({'DMC' if suite == 'dmc' else 'Meta-World' if suite == 'metaworld' else suite})")
        ax.set_xlabel("environment steps")
        is_succ = metric == "success" and t.startswith("metaworld:")
        ax.set_ylabel("success rate" if is_succ else "episode return (ground truth)")
        ax.grid(alpha=0.3)
        ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 3))
    for ax in list(axes.flat)[len(tasks):]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    seen = {}
    for ax in list(axes.flat)[: len(tasks)]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(lab.split(" (")[0], h)
    fig.legend(list(seen.values()), list(seen), loc="lower center", ncol=min(len(seen), 5), frameon=False)
    fig.suptitle("Mean over seeds with 95% bootstrap band", fontsize=10)
    fig.tight_layout(rect=(0, 0.08 if nrows == 1 else 0.05, 1, 0.97))
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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = analysis["aggregates"]
    if not rows:
        return []
    methods = [m for m in analysis["methods"] if any(r["method"] == m for r in rows)]
    colors = _colors(analysis["methods"])
    stats = ["IQM", "Mean", "Median"]
    fig, axes = plt.subplots(1, 3, figsize=(10, 0.6 * len(methods) + 1.4), sharey=True)
    for ax, st in zip(axes, stats):
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


# ============================================================================================ tables


def _write_csv(path: Path, rows: list[dict], fields: list[str] | None = None) -> Path:
    fields = fields or (list(rows[0]) if rows else [])
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else (f"{r[k]:.6g}" if isinstance(r.get(k), float) else r[k]))
                        for k in fields})
    return path


def _g(x, digits=3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}g}" if abs(x) < 1e3 else f"{x:,.0f}"
    return str(x)


def _steps(x) -> str:
    return f"{x:,.0f}" if isinstance(x, (int, float)) and not math.isnan(x) else "-"


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def markdown_summary(an: dict, root: Path, figures: list[Path]) -> str:
    metric_txt = ("ground-truth episode return of the deterministic policy on every task" if an["metric"] == "return"
                  else "success rate on Meta-World tasks, episode return on DMC tasks")
    st = an["status"]
    out = [f"# Benchmark report: {root}", "",
           f"Runs: {st['finished']} finished, {st['failed']} failed, {st['unfinished']} unfinished.", "",
           "## Definitions", "",
           f"- Score: {metric_txt}. Final score = the run's last evaluation (finished runs only).",
           f"- Normalisation of the aggregates: {an['normalisation']}.",
           "- Aggregates: rliable IQM (25% trimmed mean over runs x tasks), mean and median of per-task means, "
           f"95% stratified bootstrap CIs ({an['reps']} resamples, percentile).",
           "- Probability of improvement P(X > Y): rliable (Mann-Whitney over pairs of runs per task, ties 1/2, "
           "averaged over tasks), 95% stratified independent bootstrap CI.",
           f"- Sample efficiency: first evaluation step where the {'raw' if an['smooth'] <= 1 else 'trailing-mean (window %d)' % an['smooth']} "
           f"score reaches {an['fraction']:g} x the final IQM of '{an['threshold_ref']}' on the task; runs that never reach it are "
           "censored ('> last step') and counted at their last step in means and ratios.",
           ""]
    if an["notes"]:
        out += ["Notes:", ""] + [f"- {n}" for n in an["notes"]] + [""]
    if an["aggregates"]:
        out += [f"## Aggregate final scores ({len(an['aggregate_tasks'])} tasks: {', '.join(an['aggregate_tasks'])})", ""]
        rows = []
        for m in an["methods"]:
            rs = {r["statistic"]: r for r in an["aggregates"] if r["method"] == m}
            if rs:
                rows.append([m, str(rs["IQM"]["n_runs"])] +
                            [f"{_g(rs[s]['value'])} [{_g(rs[s]['ci_low'])}, {_g(rs[s]['ci_high'])}]"
                             for s in ("IQM", "Mean", "Median")])
        out += [_md_table(["method", "runs/task", "IQM [95% CI]", "mean [95% CI]", "median [95% CI]"], rows), ""]
    if an["probability_of_improvement"]:
        out += ["## Probability of improvement", ""]
        out += [_md_table(["X", "Y", "P(X > Y) [95% CI]"],
                          [[r["x"], r["y"], f"{_g(r['p_x_better'])} [{_g(r['ci_low'])}, {_g(r['ci_high'])}]"]
                           for r in an["probability_of_improvement"]]), ""]
    if an["final_scores"]:
        out += ["## Final scores per task (raw)", ""]
        out += [_md_table(["task", "method", "runs", "mean [95% CI]", "IQM", "median", "std"],
                          [[r["task"], r["method"], str(r["n_runs"]),
                            f"{_g(r['mean'])} [{_g(r['ci_low'])}, {_g(r['ci_high'])}]", _g(r["iqm"]),
                            _g(r["median"]), _g(r["std"])] for r in an["final_scores"]]), ""]
    if an["sample_efficiency"]:
        out += [f"## Sample efficiency: steps to reach {an['fraction']:g} x the final IQM of '{an['threshold_ref']}'", ""]
        by = {}
        for r in an["sample_efficiency_runs"]:
            by.setdefault((r["task"], r["method"]), []).append(
                _steps(r["steps_to_threshold"]) if not r["censored"] else f"> {_steps(r['last_step'])}")
        out += [_md_table(["task", "method", "threshold", "reached", "mean steps", "per seed"],
                          [[r["task"], r["method"], _g(r["threshold"]), f"{r['n_reached']}/{r['n_runs']}",
                            _steps(r["mean_steps"]) + (" *" if r["censored_note"] else ""),
                            ", ".join(by[(r["task"], r["method"])])] for r in an["sample_efficiency"]]),
                "", "`*`: includes censored runs counted at their last step (a lower bound).", ""]
    if an["sample_efficiency_ratio"]:
        a, b = an["compare"]
        out += [f"### Ratio of steps {a} / {b} (samples saved = 1 - ratio)", ""]
        out += [_md_table(["task", "ratio [95% CI]", "samples saved", "censored runs (a, b)"],
                          [[r["task"], f"{_g(r['ratio'])} [{_g(r['ci_low'])}, {_g(r['ci_high'])}]",
                            f"{100 * r['samples_saved']:.0f}%", f"{r['censored_a']}/{r['n_a']}, {r['censored_b']}/{r['n_b']}"]
                           for r in an["sample_efficiency_ratio"]]), ""]
    if an.get("feedback_diagnostics"):
        out += ["## Learned reward quality (per feedback session, from `feedback.csv`)", "",
                "eval acc: accuracy of r_hat on fresh pairs from the query window labelled by the true return, "
                "after the session's update; reward corr: Pearson correlation of r_hat with the true reward over "
                "the latest transitions. Means over runs.", ""]
        out += [_md_table(["task", "method", "runs", "sessions", "labels", "eval acc (first)", "eval acc (mean)",
                           "eval acc (last)", "reward corr (last)"],
                          [[r["task"], r["method"], str(r["n_runs"]), _g(r["sessions"]), _steps(r["labels"]),
                            _g(r["first_eval_acc"]), _g(r["mean_eval_acc"]), _g(r["last_eval_acc"]),
                            _g(r["last_reward_corr"])] for r in an["feedback_diagnostics"]]), ""]
    if an.get("aparl_diagnostics"):
        out += ["## A-PARL's Term 2 (per feedback session, from `aparl.csv`)", "",
                "|Term 1| is the Bradley-Terry gradient's norm, |Term 2| the raw estimate's (before clipping to "
                "`term2_clip` x |Term 1|); medians over all runs' sessions and ensemble members' means.", ""]
        out += [_md_table(["task", "method", "runs", "sessions", "median |T1|", "median |T2|", "median |T2|/|T1|",
                           "clipped", "mean cos(T1, T2)", "estimator s/session", "query window"],
                          [[r["task"], r["method"], str(r["n_runs"]), str(r["sessions"]), _g(r["median_term1_norm"]),
                            _g(r["median_term2_norm"]), _g(r["median_ratio"]), f"{100 * r['clipped_fraction']:.0f}%",
                            _g(r["mean_cosine"]), _g(r["mean_seconds"]), _steps(r["query_window"])]
                           for r in an["aparl_diagnostics"]]), ""]
    if an["failed_runs"]:
        out += ["## Failed runs", ""] + [f"- `{r['run_id']}`: {r['error']}" for r in an["failed_runs"]] + [""]
    if an["unfinished_runs"]:
        out += ["## Unfinished runs (drawn in the curves, not in the tables)", "",
                ", ".join(f"`{x}`" for x in an["unfinished_runs"]), ""]
    if figures:
        out += ["## Figures", ""] + [f"![{p.stem}]({p.name})" for p in figures if p.suffix == ".png"] + [""]
    return "\n".join(out)


def write_report(root: str | os.PathLike, out: str | os.PathLike | None = None, *,
                 formats: tuple[str, ...] = ("png", "pdf"), methods: list[str] | None = None,
                 seeds: list[int] | None = None, **kwargs) -> dict[str, Any]:
    """Analyse the runs under ``root`` and write tables, figures and ``summary.md`` to ``out``
    (default ``root/report``). ``methods``: only the runs of these method labels (e.g. to aggregate over the
    tasks where they all ran); ``seeds``: only the runs of these seeds (e.g. the seeds every method has).
    Returns the analysis dict with ``files`` (the paths written)."""
    root = Path(root)
    out = Path(out) if out else root / "report"
    runs = load_runs(root)
    if not runs:
        raise ReportError(f"no runs found under {root} (expected run directories under {root}/runs/)")
    if methods is not None:
        missing = [m for m in methods if not any(r.method == m for r in runs)]
        if missing:
            raise ReportError(f"--methods: no runs of {', '.join(map(repr, missing))} under {root} (methods there: "
                              f"{', '.join(sorted({r.method for r in runs}))})")
        runs = [r for r in runs if r.method in methods]
    if seeds is not None:
        missing_seeds = sorted(set(seeds) - {r.seed for r in runs})
        if missing_seeds:
            raise ReportError(f"--seeds: no runs of seed(s) {', '.join(map(str, missing_seeds))} under {root} "
                              f"(seeds there: {', '.join(map(str, sorted({r.seed for r in runs})))})")
        runs = [r for r in runs if r.seed in seeds]
    tasks, methods = _spec_order(root)
    an = analyse(runs, task_order=tasks, method_order=methods, **kwargs)
    out.mkdir(parents=True, exist_ok=True)
    files = [
        _write_csv(out / "final_scores.csv", an["final_scores"],
                   ["task", "method", "n_runs", "mean", "ci_low", "ci_high", "iqm", "median", "std", "seeds"]),
        _write_csv(out / "aggregate.csv", an["aggregates"],
                   ["method", "statistic", "value", "ci_low", "ci_high", "n_runs", "n_tasks"]),
        _write_csv(out / "probability_of_improvement.csv", an["probability_of_improvement"],
                   ["x", "y", "p_x_better", "ci_low", "ci_high", "n_tasks"]),
        _write_csv(out / "sample_efficiency_runs.csv", an["sample_efficiency_runs"],
                   ["task", "method", "seed", "threshold", "steps_to_threshold", "censored", "last_step"]),
        _write_csv(out / "sample_efficiency.csv", an["sample_efficiency"],
                   ["task", "method", "threshold", "n_runs", "n_reached", "mean_steps", "median_steps",
                    "censored_note"]),
        _write_csv(out / "sample_efficiency_ratio.csv", an["sample_efficiency_ratio"],
                   ["task", "a", "b", "ratio", "ci_low", "ci_high", "samples_saved", "censored_a", "censored_b",
                    "n_a", "n_b"]),
    ]
    if an["feedback_diagnostics"]:
        files.append(_write_csv(out / "feedback_diagnostics.csv", an["feedback_diagnostics"],
                                ["task", "method", "n_runs", "sessions", "labels", "first_eval_acc", "mean_eval_acc",
                                 "last_eval_acc", "last_reward_corr"]))
    if an["aparl_diagnostics"]:
        files.append(_write_csv(out / "aparl_diagnostics.csv", an["aparl_diagnostics"],
                                ["task", "method", "n_runs", "sessions", "median_term1_norm", "median_term2_norm",
                                 "median_ratio", "clipped_fraction", "mean_cosine", "mean_seconds",
                                 "query_window"]))
    figs = plot_learning_curves(runs, an, out / "learning_curves", formats)
    figs += plot_aggregates(an, out / "aggregate", formats)
    files += figs
    md = out / "summary.md"
    md.write_text(markdown_summary(an, root, figs))
    files.append(md)
    rj = out / "report.json"
    rj.write_text(json.dumps(an, indent=2, default=float) + "\n")
    files.append(rj)
    an["files"] = [str(p) for p in files]
    return an

"""The numbers of the report (definitions: :mod:`parl_deep.report`): bootstrap intervals, smoothing and
steps-to-threshold of single curves, and :func:`analyse`, which turns a list of runs into every table as plain
dicts and lists (per-task final scores, rliable aggregates and probabilities of improvement, sample efficiency)."""
from __future__ import annotations

import math
import warnings
import zlib
from typing import Any

import numpy as np

from parl_deep.report.diagnostics import aparl_diagnostics, feedback_diagnostics
from parl_deep.report.load import ReportError, Run, cells

METRICS = ("return", "success")
KNOWN_METHODS = ("oracle", "pebble", "pebble-surf", "a-parl")  # the paper's methods, in the report's default order
AGGREGATE_STATISTICS = ("IQM", "Mean", "Median")
ALL_TASKS = "all tasks (geometric mean)"  # the task of a steps-ratio row over every task

# (task, method) -> {seed: final score}
Finals = dict[tuple[str, str], dict[int, float]]
# (task, method) -> [(seed, steps to threshold or the last step when censored, censored)]
PerRun = dict[tuple[str, str], list[tuple[int, float, bool]]]


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


def cell_rng(seed: int, *labels: str) -> np.random.Generator:
    """The bootstrap generator of one table cell (e.g. ``"ratio", A, B, task``): a function of the report's seed and
    the cell's labels alone, so a cell's interval does not move when other runs or comparisons join the report."""
    return np.random.default_rng([int(seed), *(zlib.crc32(label.encode()) for label in labels)])


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
    the bench extra pins ``pandas<3`` (constraints.txt: 2.3.3). Without rliable (or pandas) this raises
    ``ModuleNotFoundError``: ``parl report`` turns it into a one-line error naming the extra."""
    from rliable import library, metrics

    return library, metrics


# ============================================================================================ analyse


def analyse(runs: list[Run], *, metric: str = "return", fraction: float = 0.8, smooth: int = 1, reps: int = 2000,
            seed: int = 0, oracle: str | None = None,
            compare: tuple[str, str] | list[tuple[str, str]] | None = None,
            threshold_ref: str | None = None, task_order: list[str] | None = None,
            method_order: list[str] | None = None) -> dict[str, Any]:
    """All the numbers of the report, as plain dicts/lists (tested against direct numpy computations).
    ``compare``: one pair ``(A, B)`` or a list of them for the steps ratios A/B; ``("*", B)`` is every other
    method against B. The result's ``comparisons`` lists the pairs, and each ``sample_efficiency_ratio`` row
    names its own; ``compare`` is the first pair only, kept for readers of single-pair reports."""
    rly, rmetrics = import_rliable()
    _check_options(runs, metric, fraction)
    tasks, methods = _orders(runs, task_order, method_order)
    oracle = _pick_oracle(runs, methods, oracle)
    if threshold_ref is not None and threshold_ref not in methods:
        raise ReportError(f"--threshold-ref {threshold_ref!r} is not a method of these runs ({', '.join(methods)})")
    notes: list[str] = []

    finished = [r for r in runs if r.status == "finished" and r.steps.size]
    final: Finals = {}
    for r in finished:
        final.setdefault((r.task, r.method), {})[r.seed] = float(r.curve(metric)[-1])
    final_rows = _final_table(final, tasks, methods, reps, seed)

    oracle_iqm = {t: _trim(list(final[(t, oracle)].values())) for t in tasks if oracle and final.get((t, oracle))}
    norm, normalisation = _normalisation(tasks, oracle, oracle_iqm, notes)
    agg_tasks, matrices, matrix_seeds = _matrices(final, tasks, methods, norm, notes)
    aggregate_rows, poi_rows = _rliable_rows(rly, rmetrics, matrices, len(agg_tasks), reps, seed)

    ref = threshold_ref if threshold_ref is not None else oracle
    ref_iqm = {t: _trim(list(final[(t, ref)].values())) for t in tasks if ref and final.get((t, ref))}
    if threshold_ref is None:
        thresholds = {t: fraction * oracle_iqm[t] for t in tasks if t in norm and oracle is not None}
    else:
        thresholds = _thresholds(tasks, ref, ref_iqm, fraction, notes)
    se_runs, per = _steps_per_run(finished, tasks, methods, thresholds, metric, smooth)
    se_rows = _sample_efficiency_table(per, tasks, methods, thresholds)
    if compare is None and oracle is not None and {"a-parl", "pebble"} <= set(methods):
        compare = ("a-parl", "pebble")
    pairs = comparison_pairs(compare, methods)
    ratio_rows = [row for pair in pairs for row in _ratio_rows(per, tasks, methods, pair, reps, seed)]

    status = {s: sum(1 for r in runs if r.status == s) for s in ("finished", "failed", "unfinished")}
    return {
        "metric": metric, "fraction": fraction, "smooth": smooth, "reps": reps, "seed": seed, "oracle": oracle,
        "threshold_ref": ref, "threshold_ref_final_iqm": ref_iqm,
        "compare": list(pairs[0]) if pairs else None, "comparisons": [list(p) for p in pairs],
        "normalisation": normalisation, "tasks": tasks,
        "methods": methods, "aggregate_tasks": agg_tasks, "oracle_final_iqm": oracle_iqm, "notes": notes,
        "status": status,
        "failed_runs": [{"run_id": r.run_id, "error": r.error} for r in runs if r.status == "failed"],
        "unfinished_runs": [r.run_id for r in runs if r.status == "unfinished"],
        "final_scores": final_rows, "aggregates": aggregate_rows, "probability_of_improvement": poi_rows,
        "matrices": {m: {"seeds": matrix_seeds[m], "scores": matrices[m].tolist()} for m in matrices},
        "sample_efficiency_runs": se_runs, "sample_efficiency": se_rows, "sample_efficiency_ratio": ratio_rows,
        "aparl_diagnostics": aparl_diagnostics(finished, tasks, methods),
        "feedback_diagnostics": feedback_diagnostics(finished, tasks, methods),
    }


def _check_options(runs: list[Run], metric: str, fraction: float) -> None:
    if metric not in METRICS:
        raise ReportError(f"unknown metric {metric!r}; use one of {', '.join(METRICS)}")
    if not 0 < fraction <= 1:
        raise ReportError(f"--fraction must lie in (0, 1], got {fraction}")
    if not runs:
        raise ReportError("no runs found")


def _orders(runs: list[Run], task_order: list[str] | None,
            method_order: list[str] | None) -> tuple[list[str], list[str]]:
    """Tasks and methods in the given (spec) order, then the others: tasks sorted, methods the paper's first."""
    tasks = [t for t in (task_order or []) if any(r.task == t for r in runs)]
    tasks += sorted({r.task for r in runs} - set(tasks))
    methods = [m for m in (method_order or []) if any(r.method == m for r in runs)]
    known = {m: k for k, m in enumerate(KNOWN_METHODS)}
    methods += sorted({r.method for r in runs} - set(methods), key=lambda m: (known.get(m, len(known)), m))
    return tasks, methods


def _pick_oracle(runs: list[Run], methods: list[str], oracle: str | None) -> str | None:
    """``--oracle``, else the method labelled ``oracle``, else the one label of the oracle registry method."""
    if oracle is None:
        if "oracle" in methods:
            return "oracle"
        cands = sorted({r.method for r in runs if r.method_registry == "oracle"})
        return cands[0] if len(cands) == 1 else None
    if oracle not in methods:
        raise ReportError(f"--oracle {oracle!r} is not a method of these runs ({', '.join(methods)})")
    return oracle


def _final_table(final: Finals, tasks: list[str], methods: list[str], reps: int, seed: int) -> list[dict[str, Any]]:
    """Per-task final scores (raw): mean with its bootstrap interval over seeds, IQM, median, std, and the
    scores themselves in the order of ``seeds``."""
    rows = []
    for t, m, vals in cells(tasks, methods, final):
        x = np.array([vals[s] for s in sorted(vals)])
        lo, hi = bootstrap_mean_ci(x, reps, cell_rng(seed, "final", t, m))
        rows.append({"task": t, "method": m, "n_runs": int(x.size), "mean": float(x.mean()), "ci_low": lo,
                     "ci_high": hi, "iqm": _trim(x), "median": float(np.median(x)), "std": float(x.std(ddof=0)),
                     "seeds": " ".join(str(s) for s in sorted(vals)), "scores": x.tolist()})
    return rows


def _normalisation(tasks: list[str], oracle: str | None, oracle_iqm: dict[str, float],
                   notes: list[str]) -> tuple[dict[str, float], str]:
    """The divisor of every aggregated task's scores (tasks without a positive oracle IQM are left out)."""
    if oracle is None:
        notes.append("no oracle runs: aggregates use raw scores and there is no sample-efficiency threshold")
        return {t: 1.0 for t in tasks}, "raw scores (no oracle runs to normalise by)"
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
    return norm, f"final score / final IQM of '{oracle}' on the same task (1.0 = that method's level)"


def _matrices(final: Finals, tasks: list[str], methods: list[str], norm: dict[str, float],
              notes: list[str]) -> tuple[list[str], dict[str, np.ndarray], dict[str, list[int]]]:
    """The aggregated tasks and, per method, its (seeds x tasks) matrix of normalised final scores over the
    seeds that finished on every aggregated task."""
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
    return agg_tasks, matrices, matrix_seeds


def _interval_estimates(rly, scores: dict, func, reps: int, seed: int):
    """rliable's stratified bootstrap, seeded: it draws indices from numpy's global generator."""
    np.random.seed(seed)
    with warnings.catch_warnings():  # arch: "random_state is deprecated" (rliable passes it)
        warnings.simplefilter("ignore", FutureWarning)
        return rly.get_interval_estimates(scores, func, reps=reps, random_state=np.random.RandomState(seed))


def _rliable_rows(rly, rmetrics, matrices: dict[str, np.ndarray], n_tasks: int, reps: int,
                  seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """IQM / mean / median with their intervals per method, and P(X > Y) for every pair of methods."""
    aggregate_rows: list[dict[str, Any]] = []
    poi_rows: list[dict[str, Any]] = []
    if not matrices:
        return aggregate_rows, poi_rows
    func = lambda x: np.array([rmetrics.aggregate_iqm(x), rmetrics.aggregate_mean(x),  # noqa: E731
                               rmetrics.aggregate_median(x)])
    points, intervals = _interval_estimates(rly, matrices, func, reps, seed)
    for m in matrices:
        for k, name in enumerate(AGGREGATE_STATISTICS):
            aggregate_rows.append({"method": m, "statistic": name, "value": float(points[m][k]),
                                   "ci_low": float(intervals[m][0, k]), "ci_high": float(intervals[m][1, k]),
                                   "n_runs": int(matrices[m].shape[0]), "n_tasks": n_tasks})
    order = _poi_order(list(matrices))
    pairs = {f"{x} > {y}": (x, y) for i, x in enumerate(order) for y in order[i + 1:]}
    if pairs:
        pp, pi = _interval_estimates(rly, {k: [matrices[x], matrices[y]] for k, (x, y) in pairs.items()},
                                     rmetrics.probability_of_improvement, reps, seed + 1)
        for k, (x, y) in pairs.items():
            poi_rows.append({"x": x, "y": y, "p_x_better": float(pp[k]), "ci_low": float(np.ravel(pi[k])[0]),
                             "ci_high": float(np.ravel(pi[k])[1]), "n_tasks": n_tasks})
    return aggregate_rows, poi_rows


def _poi_order(methods: list[str]) -> list[str]:
    """Pairs are reported as P(X > Y) with X the newer method: a-parl, pebble-surf, pebble, others, oracle last."""
    rank = {"a-parl": 0, "pebble-surf": 1, "pebble": 2}
    return sorted(methods, key=lambda m: (m == "oracle", rank.get(m, 3), methods.index(m)))


def _thresholds(tasks: list[str], ref: str, ref_iqm: dict[str, float], fraction: float,
                notes: list[str]) -> dict[str, float]:
    """``--threshold-ref``: ``fraction`` x the reference method's final IQM, on the tasks where it is positive."""
    thresholds = {}
    for t in tasks:
        if t not in ref_iqm:
            notes.append(f"{t}: no finished '{ref}' runs: no sample-efficiency threshold")
        elif not ref_iqm[t] > 0:
            notes.append(f"{t}: the final IQM of '{ref}' is {ref_iqm[t]:.4g} (not positive): no "
                         f"sample-efficiency threshold")
        else:
            thresholds[t] = fraction * ref_iqm[t]
    return thresholds


def _steps_per_run(finished: list[Run], tasks: list[str], methods: list[str], thresholds: dict[str, float],
                   metric: str, smooth: int) -> tuple[list[dict[str, Any]], PerRun]:
    """Every finished run's steps to its task's threshold (rows), and the same by (task, method)."""
    se_runs: list[dict[str, Any]] = []
    per: PerRun = {}
    for r in sorted(finished, key=lambda r: (tasks.index(r.task), methods.index(r.method), r.seed)):
        if r.task not in thresholds:
            continue
        thr = thresholds[r.task]
        hit = steps_to_threshold(r.steps, smooth_curve(r.curve(metric), smooth), thr)
        last = int(r.steps[-1])
        se_runs.append({"task": r.task, "method": r.method, "seed": r.seed, "threshold": thr,
                        "steps_to_threshold": hit, "censored": hit is None, "last_step": last})
        per.setdefault((r.task, r.method), []).append((r.seed, float(hit if hit is not None else last), hit is None))
    return se_runs, per


def _sample_efficiency_table(per: PerRun, tasks: list[str], methods: list[str],
                             thresholds: dict[str, float]) -> list[dict[str, Any]]:
    rows = []
    for t, m, xs in cells(tasks, methods, per):
        v = np.array([x[1] for x in xs])
        reached = [x[1] for x in xs if not x[2]]
        rows.append({"task": t, "method": m, "threshold": thresholds[t], "n_runs": len(xs),
                     "n_reached": len(reached), "mean_steps": float(v.mean()),
                     "median_steps": float(np.median(v)),
                     "censored_note": "" if len(reached) == len(xs) else
                     f"{len(xs) - len(reached)} run(s) never reached it (counted at their last step)"})
    return rows


def comparison_pairs(compare: tuple[str, str] | list[tuple[str, str]] | None,
                     methods: list[str]) -> list[tuple[str, str]]:
    """The (A, B) pairs of ``compare`` (one pair or a list), with ``("*", B)`` expanded to every method but B in
    report order; a label that is not among ``methods``, or A = B, is a ReportError."""
    if not compare:
        return []
    given = [tuple(compare)] if isinstance(compare[0], str) else [tuple(p) for p in compare]
    pairs: list[tuple[str, str]] = []
    for a, b in given:
        if a == b:
            raise ReportError(f"--compare: {a}:{b} compares a method with itself")
        for lab in (b,) if a == "*" else (a, b):
            if lab not in methods:
                raise ReportError(f"--compare: {lab!r} is not a method of these runs ({', '.join(methods)})")
        for x in ([m for m in methods if m != b] if a == "*" else [a]):
            if (x, b) not in pairs:
                pairs.append((x, b))
    return pairs


def _ratio_rows(per: PerRun, tasks: list[str], methods: list[str], compare: tuple[str, str], reps: int,
                seed: int) -> list[dict[str, Any]]:
    """Mean steps of A over mean steps of B per task, and their geometric mean over tasks, with bootstrap CIs."""
    a, b = compare
    ctasks = [t for t in tasks if per.get((t, a)) and per.get((t, b))]
    rows: list[dict[str, Any]] = []
    if not ctasks:
        return rows
    A = {t: np.array([x[1] for x in per[(t, a)]]) for t in ctasks}
    B = {t: np.array([x[1] for x in per[(t, b)]]) for t in ctasks}
    cens = {t: (sum(x[2] for x in per[(t, a)]), sum(x[2] for x in per[(t, b)])) for t in ctasks}
    rngs = {t: cell_rng(seed, "ratio", a, b, t) for t in ctasks}
    boot = {t: (A[t][rngs[t].integers(0, A[t].size, (reps, A[t].size))].mean(1) /
                B[t][rngs[t].integers(0, B[t].size, (reps, B[t].size))].mean(1)) for t in ctasks}
    for t in ctasks:
        ratio = float(A[t].mean() / B[t].mean())
        lo, hi = np.percentile(boot[t], [2.5, 97.5])
        rows.append({"task": t, "a": a, "b": b, "ratio": ratio, "ci_low": float(lo),
                     "ci_high": float(hi), "samples_saved": 1 - ratio,
                     "censored_a": int(cens[t][0]), "censored_b": int(cens[t][1]),
                     "n_a": int(A[t].size), "n_b": int(B[t].size)})
    if len(ctasks) > 1:
        gm = float(np.exp(np.mean([math.log(r["ratio"]) for r in rows])))
        gboot = np.exp(np.mean(np.log(np.stack([boot[t] for t in ctasks])), axis=0))
        lo, hi = np.percentile(gboot, [2.5, 97.5])
        rows.append({"task": ALL_TASKS, "a": a, "b": b, "ratio": gm,
                     "ci_low": float(lo), "ci_high": float(hi), "samples_saved": 1 - gm,
                     "censored_a": sum(c[0] for c in cens.values()),
                     "censored_b": sum(c[1] for c in cens.values()),
                     "n_a": sum(int(A[t].size) for t in ctasks),
                     "n_b": sum(int(B[t].size) for t in ctasks)})
    return rows

"""What the report writes: the CSV tables, ``summary.md`` (definitions, then one section per table), the
figures and ``report.json``, all from :func:`write_report`."""
from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any

from parl_deep.report.figures import BOUNDS, plot_aggregates, plot_learning_curves, plot_ratios
from parl_deep.io import RUNS_DIR
from parl_deep.report.load import ReportError, Run, load_runs, spec_order
from parl_deep.report.reproduce import REPRODUCTION_FIELDS, read_published, reproduction
from parl_deep.report.stats import AGGREGATE_STATISTICS, ALL_TASKS, analyse

REPORT_DIR = "report"  # default output directory, under the bench directory
SUMMARY_MD = "summary.md"
REPORT_JSON = "report.json"

# file name, key of the analysis, columns: written always (with a header only when empty)
TABLES = (
    ("final_scores.csv", "final_scores",
     ["task", "method", "n_runs", "mean", "ci_low", "ci_high", "iqm", "median", "std", "seeds"]),
    ("aggregate.csv", "aggregates", ["method", "statistic", "value", "ci_low", "ci_high", "n_runs", "n_tasks"]),
    ("probability_of_improvement.csv", "probability_of_improvement",
     ["x", "y", "p_x_better", "ci_low", "ci_high", "n_tasks"]),
    ("sample_efficiency_runs.csv", "sample_efficiency_runs",
     ["task", "method", "seed", "threshold", "steps_to_threshold", "censored", "last_step"]),
    ("sample_efficiency.csv", "sample_efficiency",
     ["task", "method", "threshold", "n_runs", "n_reached", "mean_steps", "median_steps", "censored_note"]),
    ("sample_efficiency_ratio.csv", "sample_efficiency_ratio",
     ["task", "a", "b", "ratio", "ci_low", "ci_high", "samples_saved", "censored_a", "censored_b", "n_a", "n_b"]),
)
# the same, written only when the runs have the per-session logs
DIAGNOSTIC_TABLES = (
    ("feedback_diagnostics.csv", "feedback_diagnostics",
     ["task", "method", "n_runs", "sessions", "labels", "first_eval_acc", "mean_eval_acc", "last_eval_acc",
      "last_reward_corr"]),
    ("aparl_diagnostics.csv", "aparl_diagnostics",
     ["task", "method", "n_runs", "sessions", "median_term1_norm", "median_term2_norm", "median_ratio",
      "clipped_fraction", "mean_cosine", "mean_seconds", "query_window"]),
)


def _write_csv(path: Path, rows: list[dict], fields: list[str] | None = None) -> Path:
    fields = fields or (list(rows[0]) if rows else [])
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else (f"{r[k]:.6g}" if isinstance(r.get(k), float) else r[k]))
                        for k in fields})
    return path


# ============================================================================================ summary.md


def _g(x, digits=3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if isinstance(x, float):  # no thousands separator: the tables list numbers with ", "
        return f"{x:.{digits}g}" if abs(x) < 1e3 else f"{x:.0f}"
    return str(x)


def _steps(x) -> str:
    return f"{x:.0f}" if isinstance(x, (int, float)) and not math.isnan(x) else "-"


def _ci(value, low, high) -> str:
    return f"{_g(value)} [{_g(low)}, {_g(high)}]"


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _md_definitions(an: dict, root: Path) -> list[str]:
    metric_txt = ("ground-truth episode return of the deterministic policy on every task" if an["metric"] == "return"
                  else "success rate on Meta-World tasks, episode return on DMC tasks")
    st = an["status"]
    smoothing = "raw" if an["smooth"] <= 1 else "trailing-mean (window %d)" % an["smooth"]
    out = [f"# Benchmark report: {root}", "",
           f"Runs: {st['finished']} finished, {st['failed']} failed, {st['unfinished']} unfinished.", "",
           "## Definitions", "",
           f"- Score: {metric_txt}. Final score = the run's last evaluation (finished runs only).",
           f"- Normalisation of the aggregates: {an['normalisation']}.",
           "- Aggregates: rliable IQM (25% trimmed mean over runs x tasks), mean and median of per-task means, "
           f"95% stratified bootstrap CIs ({an['reps']} resamples, percentile).",
           "- Probability of improvement P(X > Y): rliable (Mann-Whitney over pairs of runs per task, ties 1/2, "
           "averaged over tasks), 95% stratified independent bootstrap CI.",
           f"- Sample efficiency: first evaluation step where the {smoothing} "
           f"score reaches {an['fraction']:g} x the final IQM of '{an['threshold_ref']}' on the task; "
           "runs that never reach it are "
           "censored ('> last step') and counted at their last step in means and ratios.",
           ""]
    if an["notes"]:
        out += ["Notes:", ""] + [f"- {n}" for n in an["notes"]] + [""]
    return out


def _md_scores(an: dict) -> list[str]:
    out = []
    if an["aggregates"]:
        agg = an["aggregate_tasks"]
        out += [f"## Aggregate final scores ({len(agg)} tasks: {', '.join(agg)})", ""]
        rows = []
        for m in an["methods"]:
            rs = {r["statistic"]: r for r in an["aggregates"] if r["method"] == m}
            if rs:
                rows.append([m, str(rs["IQM"]["n_runs"])] +
                            [_ci(rs[s]["value"], rs[s]["ci_low"], rs[s]["ci_high"]) for s in AGGREGATE_STATISTICS])
        out += [_md_table(["method", "runs/task", "IQM [95% CI]", "mean [95% CI]", "median [95% CI]"], rows), ""]
    if an["probability_of_improvement"]:
        out += ["## Probability of improvement", ""]
        out += [_md_table(["X", "Y", "P(X > Y) [95% CI]"],
                          [[r["x"], r["y"], _ci(r["p_x_better"], r["ci_low"], r["ci_high"])]
                           for r in an["probability_of_improvement"]]), ""]
    if an["final_scores"]:
        out += ["## Final scores per task (raw)", ""]
        out += [_md_table(["task", "method", "runs", "mean [95% CI]", "IQM", "median", "std"],
                          [[r["task"], r["method"], str(r["n_runs"]), _ci(r["mean"], r["ci_low"], r["ci_high"]),
                            _g(r["iqm"]), _g(r["median"]), _g(r["std"])] for r in an["final_scores"]]), ""]
    return out


def _md_sample_efficiency(an: dict) -> list[str]:
    out = []
    if an["sample_efficiency"]:
        out += [f"## Sample efficiency: steps to reach {an['fraction']:g} x the final IQM of "
                f"'{an['threshold_ref']}'", ""]
        by: dict[tuple[str, str], list[str]] = {}
        for r in an["sample_efficiency_runs"]:
            by.setdefault((r["task"], r["method"]), []).append(
                _steps(r["steps_to_threshold"]) if not r["censored"] else f"> {_steps(r['last_step'])}")
        out += [_md_table(["task", "method", "threshold", "reached", "mean steps", "per seed"],
                          [[r["task"], r["method"], _g(r["threshold"]), f"{r['n_reached']}/{r['n_runs']}",
                            _steps(r["mean_steps"]) + (" *" if r["censored_note"] else ""),
                            ", ".join(by[(r["task"], r["method"])])] for r in an["sample_efficiency"]]),
                "", "`*`: includes censored runs counted at their last step (a lower bound).", ""]
    for a, b in an["comparisons"]:
        rows = [r for r in an["sample_efficiency_ratio"] if (r["a"], r["b"]) == (a, b)]
        if not rows:
            continue
        out += [f"### Ratio of steps {a} / {b} (samples saved = 1 - ratio)", ""]
        out += [_md_table(["task", "ratio [95% CI]", "samples saved", "censored runs (a, b)"],
                          [[r["task"], _ci(r["ratio"], r["ci_low"], r["ci_high"]),
                            f"{100 * r['samples_saved']:.0f}%",
                            f"{r['censored_a']}/{r['n_a']}, {r['censored_b']}/{r['n_b']}"]
                           for r in rows]), ""]
    return out


# a steps ratio with censored runs is a bound: only A censored, at least this; only B, at most this
BOUND_PREFIX = {"": "", "lower": ">= ", "upper": "<= ", "neither": ""}


def per_task_rows(an: dict, base: str) -> dict[str, list[dict[str, Any]]]:
    """Per task, the rows of the "against ``base``" table: ``base`` first (when it has finished runs there), then
    every method compared with it (``--compare A:base``), each with its final score, per-seed finals (``by_seed``),
    runs reached, the task's threshold and the steps ratio to ``base`` (None for ``base`` itself, and where there
    is none). The key :data:`ALL_TASKS` holds the ratios' geometric means, with ``n_tasks``."""
    compared = {a for a, b in an["comparisons"] if b == base}
    methods = [base] + [m for m in an["methods"] if m in compared]
    finals = {(r["task"], r["method"]): r for r in an["final_scores"]}
    reached = {(r["task"], r["method"]): r for r in an["sample_efficiency"]}
    ratios = {(r["task"], r["a"]): r for r in an["sample_efficiency_ratio"] if r["b"] == base}
    out: dict[str, list[dict[str, Any]]] = {}
    for t in an["tasks"]:
        rows = []
        for m in (m for m in methods if (t, m) in finals):
            f, se = finals[(t, m)], reached.get((t, m))
            rows.append({"method": m, "final": f, "by_seed": dict(zip(map(int, f["seeds"].split()), f["scores"])),
                         "reached": f"{se['n_reached']}/{se['n_runs']}" if se else "-",
                         "threshold": se["threshold"] if se else None, "ratio": ratios.get((t, m))})
        if rows:
            out[t] = rows
    gm = [dict(ratios[(ALL_TASKS, a)], method=a, n_tasks=sum(1 for t in an["tasks"] if (t, a) in ratios))
          for a in methods if (ALL_TASKS, a) in ratios]
    if gm:
        out[ALL_TASKS] = gm
    return out


def _ratio_text(r: dict) -> str:
    """A steps-ratio row as "ratio [CI]", prefixed with its bound (``BOUND_PREFIX``), or marked "(both censored)"."""
    bound = BOUNDS[(r["censored_a"] > 0, r["censored_b"] > 0)]
    return BOUND_PREFIX[bound] + _ci(r["ratio"], r["ci_low"], r["ci_high"]) + (
        " (both censored)" if bound == "neither" else "")


def _task_table(t: str, rows: list[dict], base: str) -> list[str]:
    """One task's table of :func:`per_task_rows` (``base``'s own ratio is 1 where the task has a threshold)."""
    seeds = sorted({s for r in rows for s in r["by_seed"]})
    thr = next((r["threshold"] for r in rows if r["threshold"] is not None), None)
    note = [] if rows[0]["method"] == base else [f"no finished '{base}' runs: no ratios"]
    note += [] if thr is not None else ["no threshold"]
    out = [f"### {t}" + (f" (threshold {_g(thr)})" if thr is not None else "") +
           (f" ({'; '.join(note)})" if note else ""), ""]
    return out + [_md_table(
        ["method", "final [95% CI]", f"per seed ({', '.join(map(str, seeds))})", "reached",
         f"steps ratio vs {base} [95% CI]"],
        [[r["method"], _ci(r["final"]["mean"], r["final"]["ci_low"], r["final"]["ci_high"]),
          ", ".join(_g(r["by_seed"].get(s)) for s in seeds), r["reached"],
          _ratio_text(r["ratio"]) if r["ratio"] else ("1" if r["method"] == base and thr is not None else "-")]
         for r in rows]), ""]


def _md_per_task(an: dict) -> list[str]:
    """The "Per task" sections of summary.md: one per base B of ``--compare``, a table per task and the geometric
    means (nothing without comparisons)."""
    out = []
    for base in dict.fromkeys(b for _, b in an["comparisons"]):
        tables = per_task_rows(an, base)
        if not tables:
            continue
        out += [f"## Per task: each method against '{base}'", "",
                f"Final score: mean over seeds [95% bootstrap CI], then each seed's. Reached: runs that reach the "
                f"threshold. Steps ratio: the method's mean steps to the threshold over those of '{base}' [95% CI]; "
                f"'>=' marks a lower bound (only the method has censored runs), '<=' an upper bound (only "
                f"'{base}' has), '(both censored)' a ratio with censored runs on both sides (for the geometric "
                f"mean: on any task).", ""]
        for t, rows in tables.items():
            if t == ALL_TASKS:
                out += [f"### {t}", "", _md_table(["method", "steps ratio [95% CI]", "tasks"], [
                    [r["method"], _ratio_text(r), str(r["n_tasks"])] for r in rows]), ""]
            else:
                out += _task_table(t, rows, base)
    return out


def _md_diagnostics(an: dict) -> list[str]:
    out = []
    if an.get("feedback_diagnostics"):
        out += ["## Learned reward quality (per feedback session, from `feedback.csv`)", "",
                "eval acc: accuracy of r_hat on fresh pairs from the query window labelled by the true return, "
                "after the session's update; reward corr: Pearson correlation of r_hat with the true reward over "
                "the latest transitions. Means over finished runs.", ""]
        out += [_md_table(["task", "method", "runs", "sessions", "labels", "eval acc (first)", "eval acc (mean)",
                           "eval acc (last)", "reward corr (last)"],
                          [[r["task"], r["method"], str(r["n_runs"]), _g(r["sessions"]), _steps(r["labels"]),
                            _g(r["first_eval_acc"]), _g(r["mean_eval_acc"]), _g(r["last_eval_acc"]),
                            _g(r["last_reward_corr"])] for r in an["feedback_diagnostics"]]), ""]
    if an.get("aparl_diagnostics"):
        out += ["## A-PARL's Term 2 (per feedback session, from `aparl.csv`)", "",
                "|Term 1| is the Bradley-Terry gradient's norm, |Term 2| the raw estimate's (before clipping to "
                "`term2_clip` x |Term 1|); medians over the finished runs' sessions and ensemble members' means.", ""]
        out += [_md_table(["task", "method", "runs", "sessions", "median |T1|", "median |T2|", "median |T2|/|T1|",
                           "clipped", "mean cos(T1, T2)", "estimator s/session", "query window"],
                          [[r["task"], r["method"], str(r["n_runs"]), str(r["sessions"]), _g(r["median_term1_norm"]),
                            _g(r["median_term2_norm"]), _g(r["median_ratio"]), f"{100 * r['clipped_fraction']:.0f}%",
                            _g(r["mean_cosine"]), _g(r["mean_seconds"]), _steps(r["query_window"])]
                           for r in an["aparl_diagnostics"]]), ""]
    return out


def _md_runs_and_figures(an: dict, figures: list[Path]) -> list[str]:
    out = []
    if an["failed_runs"]:
        out += ["## Failed runs", ""] + [f"- `{r['run_id']}`: {r['error']}" for r in an["failed_runs"]] + [""]
    if an["unfinished_runs"]:
        out += ["## Unfinished runs (drawn in the curves, not in the tables)", "",
                ", ".join(f"`{x}`" for x in an["unfinished_runs"]), ""]
    if figures:
        out += ["## Figures", ""] + [f"![{p.stem}]({p.name})" for p in figures if p.suffix == ".png"] + [""]
    return out


def _md_reproduction(an: dict) -> list[str]:
    rep = an.get("reproduction")
    if not rep:
        return []
    c = rep["counts"]
    rule = "exactly" if rep["rtol"] == 0 else f"to a relative {rep['rtol']:g}"
    out = [f"## Against the published report `{rep['against']}`", "",
           f"Per run: the final score, the threshold and the steps to it, as published and now (all in "
           f"`reproduction.csv`). A run matches when all three agree {rule}. {c['match']} match, {c['differs']} "
           f"differ, {c['missing']} missing here (not rerun yet, unfinished, failed or not selected), {c['new']} "
           f"new.", ""]
    out += [f"- Option `{o}` differs: published {a!r}, now {b!r}." for o, (a, b) in rep["options"].items()]
    out += [f"- The threshold of {t} moved: published {_g(a, 6)}, now {_g(b, 6)}; every run there differs in it."
            for t, (a, b) in rep["moved_thresholds"].items()]
    if rep["options"] or rep["moved_thresholds"]:
        out.append("")
    differ = [r for r in rep["rows"] if r["status"] == "differs"]
    if differ:
        out += [_md_table(["task", "method", "seed", "final (published)", "final", "threshold (published)",
                           "threshold", "steps (published)", "steps"],
                          [[r["task"], r["method"], str(r["seed"]), _g(r["published_final"], 6), _g(r["final"], 6),
                            _g(r["published_threshold"], 6), _g(r["threshold"], 6), _steps(r["published_steps"]),
                            _steps(r["steps"])] for r in differ]), ""]
    return out


def markdown_summary(an: dict, root: Path, figures: list[Path]) -> str:
    return "\n".join(_md_definitions(an, root) + _md_per_task(an) + _md_reproduction(an) + _md_scores(an)
                     + _md_sample_efficiency(an) + _md_diagnostics(an) + _md_runs_and_figures(an, figures))


# ============================================================================================ write_report


def _select_runs(runs: list[Run], root: Path, methods: list[str] | None, seeds: list[int] | None) -> list[Run]:
    """The runs of ``methods`` and ``seeds`` (None: all); an error names the labels / seeds present."""
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
    return runs


def write_report(root: str | os.PathLike, out: str | os.PathLike | None = None, *,
                 formats: tuple[str, ...] = ("png", "pdf"), methods: list[str] | None = None,
                 seeds: list[int] | None = None, against: str | os.PathLike | None = None, against_rtol: float = 0.0,
                 **kwargs) -> dict[str, Any]:
    """Analyse the runs under ``root`` and write tables, figures and ``summary.md`` to ``out``
    (default ``root/report``). ``methods``: only the runs of these method labels (e.g. to aggregate over the
    tasks where they all ran); ``seeds``: only the runs of these seeds (e.g. the seeds every method has);
    ``against``: a published ``report.json`` to check every run against (:mod:`~parl_deep.report.reproduce`,
    written to ``reproduction.csv``). Returns the analysis dict with ``files`` (the paths written)."""
    root = Path(root)
    out = Path(out) if out else root / REPORT_DIR
    published = read_published(against) if against is not None else None
    runs = load_runs(root)
    if not runs:
        raise ReportError(f"no runs found under {root} (expected run directories under {root}/{RUNS_DIR}/)")
    runs = _select_runs(runs, root, methods, seeds)
    task_order, method_order = spec_order(root)
    an = analyse(runs, task_order=task_order, method_order=method_order, **kwargs)
    if published is not None:
        an["reproduction"] = dict(reproduction(an, published, against_rtol), against=str(against))
    out.mkdir(parents=True, exist_ok=True)
    files = [_write_csv(out / name, an[key], fields) for name, key, fields in TABLES]
    if published is not None:
        files.append(_write_csv(out / "reproduction.csv", an["reproduction"]["rows"], REPRODUCTION_FIELDS))
    files += [_write_csv(out / name, an[key], fields) for name, key, fields in DIAGNOSTIC_TABLES if an[key]]
    figs = plot_learning_curves(runs, an, out / "learning_curves", formats)
    figs += plot_aggregates(an, out / "aggregate", formats)
    figs += plot_ratios(an, out / "sample_efficiency_ratio", formats)
    files += figs
    md = out / SUMMARY_MD
    md.write_text(markdown_summary(an, root, figs))
    files.append(md)
    rj = out / REPORT_JSON
    rj.write_text(json.dumps(an, indent=2, default=float) + "\n")
    files.append(rj)
    an["files"] = [str(p) for p in files]
    return an

"""A rerun against a published report: run by run, does the final score and the step at which the run first
reaches the threshold come out as published?

Both sides are read from the same places of a report (the analysis dict of :func:`~parl_deep.report.analyse`,
or a published ``report.json``): ``final_scores[].scores`` with ``final_scores[].seeds`` (every finished run's
final score) and ``sample_efficiency_runs`` (its threshold and steps to it). A run *matches* when its final score,
threshold and steps all agree within ``rtol`` (default 0: the same numbers, as a rerun on one thread with the
same seeds, code and CPU kernels gives); it *differs* otherwise. Runs of the published report that are not among
this report's finished runs (not rerun yet, unfinished, failed, or left out by ``--seeds``/``--methods``) are
*missing*; runs only here are *new*.

The threshold is shared by a task's runs: when it moved (a different threshold method, ``--fraction``, metric,
smoothing, or reference runs that came out differently or are missing), every run of the task differs in it.
:func:`reproduction` therefore also lists the tasks whose threshold moved and the report options that differ
from the published report's.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from parl_deep.report.load import ReportError

__all__ = ["REPRODUCTION_FIELDS", "OPTIONS", "per_run_numbers", "read_published", "reproduction"]

REPRODUCTION_FIELDS = ["task", "method", "seed", "status", "published_final", "final", "published_threshold",
                       "threshold", "published_steps", "steps"]

# the report options that decide the final scores and thresholds
OPTIONS = ("metric", "fraction", "smooth", "threshold_ref", "oracle")

Key = tuple[str, str, int]


def per_run_numbers(report: dict[str, Any]) -> dict[Key, dict[str, Any]]:
    """(task, method, seed) -> ``final``, ``threshold`` and ``steps`` (None where the report has no threshold,
    and ``steps`` None for a run that never reached it)."""
    runs: dict[Key, dict[str, Any]] = {}
    for row in report.get("final_scores", []):
        seeds = [int(s) for s in str(row.get("seeds", "")).split()]
        scores = row.get("scores") or []
        if len(seeds) != len(scores):
            raise ReportError(f"final_scores row {row.get('task')}/{row.get('method')} has {len(seeds)} seeds but "
                              f"{len(scores)} scores (a report written before per-seed scores were kept?)")
        for seed, score in zip(seeds, scores):
            runs[(row["task"], row["method"], seed)] = {"final": float(score), "threshold": None, "steps": None}
    for row in report.get("sample_efficiency_runs", []):
        entry = runs.setdefault((row["task"], row["method"], int(row["seed"])),
                                {"final": None, "threshold": None, "steps": None})
        entry["threshold"] = float(row["threshold"])
        steps = row.get("steps_to_threshold")
        entry["steps"] = None if steps in (None, "") else int(steps)  # None: never reached (censored)
    return runs


def read_published(path: str | os.PathLike) -> dict[str, Any]:
    """A published ``report.json`` (or the folder holding one); ReportError when it cannot be read or is not a
    report."""
    path = Path(path)
    if path.is_dir():
        path = path / "report.json"
    try:
        report = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ReportError(f"--against: cannot read a report.json at {path} ({exc})") from None
    if not (isinstance(report, dict) and isinstance(report.get("final_scores"), list)
            and isinstance(report.get("sample_efficiency_runs", []), list)):
        raise ReportError(f"--against: {path} is not a parl report.json (it has no final_scores table)")
    return report


def _same(a: float | int | None, b: float | int | None, rtol: float) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, int) and isinstance(b, int):  # steps: exactly
        return a == b
    a, b = float(a), float(b)
    return a == b or (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=rtol, abs_tol=0.0)


def _thresholds(numbers: dict[Key, dict[str, Any]]) -> dict[str, float | None]:
    return {k[0]: v["threshold"] for k, v in numbers.items()}


def reproduction(an: dict[str, Any], published: dict[str, Any], rtol: float = 0.0) -> dict[str, Any]:
    """Every run of either report, in the published report's task and method order: ``rows`` (with
    :data:`REPRODUCTION_FIELDS`), ``counts`` per status (match, differs, missing, new), ``moved_thresholds``
    (task -> (published, now) where a task's threshold differs) and ``options`` (option -> (published, now) for
    the :data:`OPTIONS` that differ)."""
    now, then = per_run_numbers(an), per_run_numbers(published)
    tasks = list(dict.fromkeys(list(published.get("tasks", [])) + list(an.get("tasks", []))))
    methods = list(dict.fromkeys(list(published.get("methods", [])) + list(an.get("methods", []))))

    def order(k: Key) -> tuple:
        return (tasks.index(k[0]) if k[0] in tasks else len(tasks),
                methods.index(k[1]) if k[1] in methods else len(methods), k)

    rows, counts = [], {"match": 0, "differs": 0, "missing": 0, "new": 0}
    for key in sorted(set(now) | set(then), key=order):
        a, b = now.get(key), then.get(key)
        if a is None:
            status = "missing"
        elif b is None:
            status = "new"
        else:
            status = "match" if all(_same(a[f], b[f], rtol) for f in ("final", "threshold", "steps")) else "differs"
        counts[status] += 1
        a, b = a or {}, b or {}
        rows.append({"task": key[0], "method": key[1], "seed": key[2], "status": status,
                     "published_final": b.get("final"), "final": a.get("final"),
                     "published_threshold": b.get("threshold"), "threshold": a.get("threshold"),
                     "published_steps": b.get("steps"), "steps": a.get("steps")})
    t_now, t_then = _thresholds(now), _thresholds(then)
    moved = {t: (t_then[t], t_now[t]) for t in t_then if t in t_now and not _same(t_now[t], t_then[t], rtol)}
    options = {o: (published.get(o), an.get(o)) for o in OPTIONS if published.get(o) != an.get(o)}
    return {"rtol": rtol, "rows": rows, "counts": counts, "moved_thresholds": moved, "options": options}

"""What the per-session logs say, per (task, method): A-PARL's Term 2 against Term 1 (``aparl.csv``) and the
quality of the learned reward of the preference-based methods (``feedback.csv``)."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from parl_deep.io import APARL_CSV, FEEDBACK_CSV
from parl_deep.report.load import Run, cells, logs_by_cell

APARL_DIAGNOSTICS = ("term1_norm", "term2_norm", "clipped", "cosine", "seconds", "query_window")
FEEDBACK_DIAGNOSTICS = ("labels", "eval_acc", "reward_corr")


def _finite_mean(xs) -> float:
    x = np.asarray(xs, dtype=float)
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else math.nan


def _finite_median(xs: np.ndarray) -> float:
    x = xs[np.isfinite(xs)]
    return float(np.median(x)) if x.size else math.nan


def aparl_diagnostics(runs: list[Run], tasks: list[str], methods: list[str]) -> list[dict[str, Any]]:
    """Per (task, method) with ``aparl.csv`` logs: how large the raw Term 2 estimate is against Term 1
    (median over sessions of |Term 2| / |Term 1|), the fraction of member estimates clipped to |Term 1|, the
    mean cosine between Term 1 and Term 2, and the estimator's seconds per session (all the given runs' sessions;
    the report gives the finished runs)."""
    logs = logs_by_cell(runs, APARL_CSV, APARL_DIAGNOSTICS, "term1_norm")
    med, mean = _finite_median, _finite_mean
    rows = []
    for t, m, lg in cells(tasks, methods, logs):
        cat = {k: np.concatenate([x[k] for x in lg]) for k in APARL_DIAGNOSTICS}
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = cat["term2_norm"] / cat["term1_norm"]
        rows.append({"task": t, "method": m, "n_runs": len(lg), "sessions": int(cat["term1_norm"].size),
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
    logs = logs_by_cell(runs, FEEDBACK_CSV, FEEDBACK_DIAGNOSTICS, "labels")
    mean = _finite_mean
    rows = []
    for t, m, lg in cells(tasks, methods, logs):
        rows.append({"task": t, "method": m, "n_runs": len(lg), "sessions": mean([len(x["labels"]) for x in lg]),
                     "labels": mean([x["labels"][-1] for x in lg]),
                     "first_eval_acc": mean([x["eval_acc"][0] for x in lg]),
                     "mean_eval_acc": mean([mean(x["eval_acc"]) for x in lg]),
                     "last_eval_acc": mean([x["eval_acc"][-1] for x in lg]),
                     "last_reward_corr": mean([x["reward_corr"][-1] for x in lg])})
    return rows

"""parl report's summaries of the per-session logs (aparl.csv, feedback.csv)."""
from __future__ import annotations

import csv

import numpy as np
import pytest

from parl_deep.report import analyse, load_runs

from .conftest import SEEDS, TASKS, write_run


def test_aparl_diagnostics_summarise_the_session_logs(grid):
    root, _ = grid
    rng = np.random.default_rng(5)
    logs = {}
    for t in TASKS:
        for s in SEEDS[:3]:
            d = root / "runs" / f"{t.replace(':', '-')}__a-parl__s{s}"
            t1, t2 = rng.uniform(1, 50, 4), rng.uniform(10, 1e4, 4)
            clipped, cos = (t2 > t1).astype(float), rng.uniform(-1, 1, 4)
            cos[0] = np.nan  # a session whose Term 2 vanished
            with open(d / "aparl.csv", "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["step", "term1_norm", "term2_norm", "clipped", "cosine", "seconds", "query_window"])
                for k in range(4):
                    w.writerow([1000 * (k + 1), t1[k], t2[k], clipped[k], cos[k], 0.5 + k, 5000])
            logs.setdefault(t, []).append((t1, t2, clipped, cos))
    # an unfinished run's sessions stay out, as its final score does
    write_run(root, TASKS[0], "a-parl", 8, np.full(4, 1.0), status=None, steps=np.arange(1000, 4001, 1000))
    with open(root / "runs" / f"{TASKS[0].replace(':', '-')}__a-parl__s8" / "aparl.csv", "w", newline="") as f:
        csv.writer(f).writerows([["step", "term1_norm", "term2_norm", "clipped", "cosine", "seconds", "query_window"],
                                 [1000, 1.0, 1e9, 1.0, 1.0, 99.0, 1]])
    an = analyse(load_runs(root), reps=200)
    rows = {r["task"]: r for r in an["aparl_diagnostics"]}
    assert set(rows) == set(TASKS) and {r["method"] for r in rows.values()} == {"a-parl"}
    for t in TASKS:
        t1, t2, clipped, cos = (np.concatenate(x) for x in zip(*logs[t]))
        r = rows[t]
        assert (r["n_runs"], r["sessions"]) == (3, 12)
        assert r["median_ratio"] == pytest.approx(np.median(t2 / t1))
        assert r["clipped_fraction"] == pytest.approx(clipped.mean())
        assert r["mean_cosine"] == pytest.approx(np.nanmean(cos))
        assert r["mean_seconds"] == pytest.approx(2.0) and r["query_window"] == 5000


def test_feedback_diagnostics_average_the_session_logs(grid):
    root, _ = grid
    rng = np.random.default_rng(9)
    acc = {}
    for s in SEEDS[:2]:
        d = root / "runs" / f"metaworld-door-open__pebble__s{s}"
        a, c = rng.uniform(0.5, 1, 3), rng.uniform(-1, 1, 3)
        a[1] = np.nan  # a session without enough data for the diagnostic
        with open(d / "feedback.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["step", "session", "labels", "eval_acc", "reward_corr"])
            for k in range(3):
                w.writerow([1000 * (k + 1), k + 1, 100 * (k + 1), a[k], c[k]])
        acc[s] = (a, c)
    write_run(root, "metaworld:door-open", "pebble", 8, np.full(2, 1.0), status=None, steps=np.arange(1000, 2001, 1000))
    with open(root / "runs" / "metaworld-door-open__pebble__s8" / "feedback.csv", "w", newline="") as f:
        csv.writer(f).writerows([["step", "session", "labels", "eval_acc", "reward_corr"], [1000, 1, 7, 0.0, -1.0]])
    (row,) = analyse(load_runs(root), reps=200)["feedback_diagnostics"]  # the unfinished run s8 stays out
    assert (row["task"], row["method"], row["n_runs"], row["sessions"], row["labels"]) == \
        ("metaworld:door-open", "pebble", 2, 3, 300)
    assert row["first_eval_acc"] == pytest.approx(np.mean([acc[s][0][0] for s in acc]))
    assert row["mean_eval_acc"] == pytest.approx(np.mean([np.nanmean(acc[s][0]) for s in acc]))
    assert row["last_eval_acc"] == pytest.approx(np.mean([acc[s][0][-1] for s in acc]))
    assert row["last_reward_corr"] == pytest.approx(np.mean([acc[s][1][-1] for s in acc]))

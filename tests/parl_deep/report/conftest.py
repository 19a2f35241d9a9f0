"""Synthetic ``parl bench`` directories for the report tests: ``write_run`` writes one run directory (run.json,
summary.json, eval.csv), the ``grid`` fixture a whole grid of them."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

TASKS = ["dmc:walker-walk", "metaworld:door-open"]
METHODS = ["oracle", "pebble", "a-parl"]
SEEDS = [0, 1, 2, 3, 4]
STEPS = np.arange(1000, 10_001, 1000)
SCALE = {"dmc:walker-walk": 900.0, "metaworld:door-open": 4000.0}
SPEED = {"oracle": 2000.0, "pebble": 6000.0, "a-parl": 3000.0}


def write_run(root: Path, task: str, method: str, seed: int, returns, success=None, status="finished",
              steps=STEPS, planned=10_000):
    rid = f"{task.replace(':', '-')}__{method}__s{seed}"
    d = root / "runs" / rid
    d.mkdir(parents=True)
    cfg = {"env": task, "method": "oracle" if method == "oracle" else method, "seed": seed, "steps": planned}
    (d / "run.json").write_text(json.dumps({"run_id": rid, "task": task, "method_name": method,
                                            "method": cfg["method"], "seed": seed, "config": cfg}))
    if status is not None:
        summ = {"status": status, "steps": int(steps[-1]) if len(steps) else 0}
        if status == "failed":
            summ["error"] = "RuntimeError: boom"
        (d / "summary.json").write_text(json.dumps(summ))
    with open(d / "eval.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "return_mean", "return_std", "success_rate", "episodes", "wall_time_s"])
        for i, (s, r) in enumerate(zip(steps, returns)):
            w.writerow([s, repr(float(r)), 0, "" if success is None else success[i], 10, 1.0])
    return rid


@pytest.fixture
def grid(tmp_path):
    """3 methods x 2 tasks x 5 seeds of saturating curves with noise; a-parl seed 4 on walker never learns
    (a censored run), plus one failed and one unfinished run that must be left out of the tables."""
    rng = np.random.default_rng(123)
    data = {}
    for t in TASKS:
        for m in METHODS:
            for s in SEEDS:
                level = SCALE[t] * (1 - np.exp(-STEPS / SPEED[m])) * (1 + 0.05 * rng.standard_normal())
                ret = level + 10 * rng.standard_normal(STEPS.size)
                if (t, m, s) == ("dmc:walker-walk", "a-parl", 4):
                    ret = np.full(STEPS.size, 50.0)
                succ = None
                if t.startswith("metaworld"):
                    succ = np.clip(ret / SCALE[t] + 0.1 * rng.standard_normal(STEPS.size), 0, 1).round(2)
                write_run(tmp_path, t, m, s, ret, succ)
                data[(t, m, s)] = (ret, succ)
    write_run(tmp_path, TASKS[0], "pebble", 7, np.full(3, 1e6), status="failed", steps=STEPS[:3])
    write_run(tmp_path, TASKS[0], "oracle", 9, np.full(4, 1e6), status=None, steps=STEPS[:4])
    return tmp_path, data

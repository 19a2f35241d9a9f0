"""The committed Meta-World PEBBLE+SURF report (docs/benchmarks/aparl-grid/metaworld-surf) against the records it was
built from (benchmarks/results/aparl-grid), read here straight from each run's eval.csv with the csv module: a report
left behind by changed records, or records edited after the report, fails."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from parl_deep.io import EVAL_CSV
from parl_deep.sweep import run_dir_for, run_id_for

ROOT = Path(__file__).resolve().parents[3]
REPORT = ROOT / "docs" / "benchmarks" / "aparl-grid" / "metaworld-surf" / "report.json"
ARCHIVE = ROOT / "benchmarks" / "results" / "aparl-grid"

pytestmark = pytest.mark.skipif(not REPORT.exists(), reason="the Meta-World PEBBLE+SURF report is not built yet")


def _eval(task: str, method: str, seed: int) -> tuple[list[int], list[float]]:
    with open(run_dir_for(ARCHIVE, run_id_for(task, method, seed)) / EVAL_CSV, newline="") as f:
        rows = list(csv.DictReader(f))
    return [int(r["step"]) for r in rows], [float(r["return_mean"]) for r in rows]


def test_every_final_score_and_threshold_is_the_archived_runs():
    report = json.loads(REPORT.read_text())
    thresholds = {}
    for cell in report["final_scores"]:
        finals = [_eval(cell["task"], cell["method"], int(s))[1][-1] for s in cell["seeds"].split()]
        assert np.allclose(cell["scores"], finals, rtol=0, atol=1e-9), (cell["task"], cell["method"])
        assert cell["mean"] == pytest.approx(np.mean(finals), abs=1e-9)
        if cell["method"] == report["threshold_ref"]:  # the IQM of 5 runs: the mean of the middle three
            thresholds[cell["task"]] = np.mean(np.sort(finals)[1:4])
    assert thresholds and all(cell["threshold"] == pytest.approx(thresholds[cell["task"]], abs=1e-9)
                              for cell in report["sample_efficiency_runs"])


def test_every_runs_steps_to_the_threshold_is_the_first_archived_evaluation_above_it():
    report = json.loads(REPORT.read_text())
    runs = report["sample_efficiency_runs"]
    assert len(runs) >= 18
    for r in runs:
        steps, returns = _eval(r["task"], r["method"], r["seed"])
        first = next((s for s, v in zip(steps, returns) if v >= r["threshold"]), None)
        assert r["steps_to_threshold"] == first and r["censored"] == (first is None), r

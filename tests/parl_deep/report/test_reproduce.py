"""parl report --against: a rerun is checked run by run against a published report.json (final score,
threshold, steps to it); a changed final, a changed step, a moved threshold, a missing run, a new run and a
tolerance each show up as they should."""
from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest

from parl_cli.main import main
from parl_deep.report import write_report
from parl_deep.report.load import ReportError
from parl_deep.report.reproduce import per_run_numbers, read_published, reproduction

from .conftest import STEPS, write_run


def _published(root, out):
    an = write_report(root, out, formats=(), reps=200, threshold_ref="pebble", fraction=1.0)
    return an, json.loads((out / "report.json").read_text())


def _rewrite_eval(run, row, value):
    rows = list(csv.reader(open(run / "eval.csv")))
    old = float(rows[row][1])
    rows[row][1] = repr(value(old))
    with open(run / "eval.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    return old


def _table(out):
    with open(out / "reproduction.csv", newline="") as f:
        return {(r["task"], r["method"], r["seed"]): r for r in csv.DictReader(f)}


def test_a_report_against_itself_matches_every_finished_run(grid, tmp_path):
    root, data = grid
    an, published = _published(root, tmp_path / "published")
    rep = reproduction(an, published)
    assert rep["counts"] == {"match": len(data), "differs": 0, "missing": 0, "new": 0}
    assert rep["moved_thresholds"] == {} and rep["options"] == {}
    numbers = per_run_numbers(published)
    ret, _ = data[("metaworld:door-open", "a-parl", 3)]
    assert numbers[("metaworld:door-open", "a-parl", 3)]["final"] == float(repr(float(ret[-1])))
    assert [k[:2] for k in numbers][:5] == [("dmc:walker-walk", "oracle")] * 5
    never = [k for k, v in numbers.items() if v["steps"] is None]
    assert ("dmc:walker-walk", "a-parl", 4) in never  # the censored run: no step, and still a match
    assert all(r["status"] == "match" for r in rep["rows"] if (r["task"], r["method"], r["seed"]) in never)


def test_changed_runs_a_moved_threshold_and_a_missing_run_are_named(grid, tmp_path):
    root, data = grid
    _, published = _published(root, tmp_path / "published")
    old_final = _rewrite_eval(root / "runs" / "dmc-walker-walk__oracle__s2", -1, lambda x: x * (1 + 1e-9))
    # a-parl seed 0 on walker: the evaluation before the one that reached the threshold now reaches it
    steps = per_run_numbers(published)[("dmc:walker-walk", "a-parl", 0)]["steps"]
    row = int(np.flatnonzero(STEPS == steps)[0])  # csv row of the step before it (row 0 is the header)
    _rewrite_eval(root / "runs" / "dmc-walker-walk__a-parl__s0", row, lambda x: 1e9)
    shutil.rmtree(root / "runs" / "metaworld-door-open__pebble__s4")
    out = tmp_path / "rerun"
    assert main(["report", str(root), "--reps", "200", "--threshold-ref", "pebble", "--fraction", "1", "--formats",
                 "png", "--out", str(out), "--against", str(tmp_path / "published")]) == 0
    table = _table(out)
    assert len(table) == len(data)
    changed = table[("dmc:walker-walk", "oracle", "2")]
    assert changed["status"] == "differs" and float(changed["published_final"]) == pytest.approx(old_final)
    stepped = table[("dmc:walker-walk", "a-parl", "0")]
    assert stepped["status"] == "differs" and stepped["final"] == stepped["published_final"]
    assert int(stepped["steps"]) == int(stepped["published_steps"]) - 1000
    assert table[("metaworld:door-open", "pebble", "4")]["status"] == "missing"
    # PEBBLE's door-open threshold moved with its seed-4 run gone: every door-open run differs in it
    door = [r for k, r in table.items() if k[0] == "metaworld:door-open" and r["status"] != "missing"]
    assert door and all(r["status"] == "differs" for r in door)
    changed_keys = (("oracle", "2"), ("a-parl", "0"))
    walker = [r for k, r in table.items() if k[0] == "dmc:walker-walk" and k[1:] not in changed_keys]
    assert walker and all(r["status"] == "match" for r in walker)
    md = (out / "summary.md").read_text()
    assert "## Against the published report" in md and "1 missing here" in md
    assert "The threshold of metaworld:door-open moved" in md and "| dmc:walker-walk | oracle | 2 |" in md
    # within a tolerance of 1e-6 the changed final matches; steps are compared exactly all the same
    loose = reproduction(json.loads((out / "report.json").read_text()), published, rtol=1e-6)
    assert [(r["method"], r["seed"]) for r in loose["rows"] if r["task"] == "dmc:walker-walk"
            and r["status"] == "differs"] == [("a-parl", 0)]


def test_new_runs_and_other_options_are_reported(grid, tmp_path):
    root, _ = grid
    _, published = _published(root, tmp_path / "published")
    write_run(root, "dmc:walker-walk", "pebble", 5, np.full(STEPS.size, 500.0))
    an = write_report(root, tmp_path / "other", formats=(), reps=200, fraction=0.8)  # oracle threshold
    rep = reproduction(an, published)
    assert rep["counts"]["new"] == 1 and [r["seed"] for r in rep["rows"] if r["status"] == "new"] == [5]
    assert rep["options"] == {"fraction": (1.0, 0.8), "threshold_ref": ("pebble", "oracle")}
    assert set(rep["moved_thresholds"]) == {"dmc:walker-walk", "metaworld:door-open"}


def test_bad_against_arguments_are_refused_before_anything_is_written(grid, tmp_path, capsys):
    root, _ = grid
    out = tmp_path / "never"
    assert main(["report", str(root), "--out", str(out), "--against", str(tmp_path / "missing.json")]) == 2
    assert "--against: cannot read a report.json" in capsys.readouterr().err and not out.exists()
    (tmp_path / "list.json").write_text("[1, 2]")
    assert main(["report", str(root), "--out", str(out), "--against", str(tmp_path / "list.json")]) == 2
    assert "is not a parl report.json" in capsys.readouterr().err and not out.exists()
    assert main(["report", str(root), "--out", str(out), "--against", "x.json", "--against-rtol", "-1"]) == 2
    assert "--against-rtol must be >= 0" in capsys.readouterr().err and not out.exists()
    with pytest.raises(ReportError, match="per-seed scores"):
        per_run_numbers({"final_scores": [{"task": "t", "method": "m", "seeds": "0 1", "scores": [1.0]}]})
    with pytest.raises(ReportError, match="no final_scores"):
        read_published(tmp_path / "list.json")

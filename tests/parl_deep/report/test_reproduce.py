"""parl report --against: a rerun is checked run by run against a published report.json (final score,
threshold, steps to it); a changed run, a missing run and a tolerance each show up as they should."""
from __future__ import annotations

import csv
import json
import shutil

import pytest

from parl_cli.main import main
from parl_deep.report import write_report
from parl_deep.report.load import ReportError
from parl_deep.report.reproduce import per_run_numbers, reproduction


def _published(root, tmp_path):
    an = write_report(root, tmp_path / "published", formats=(), reps=200, threshold_ref="pebble", fraction=1.0)
    return an, json.loads((tmp_path / "published" / "report.json").read_text())


def test_a_report_against_itself_matches_every_finished_run(grid, tmp_path):
    root, data = grid
    an, published = _published(root, tmp_path)
    rep = reproduction(an, published)
    finished = len(data)  # the grid's failed and unfinished runs are in neither report's tables
    assert rep["counts"] == {"match": finished, "differs": 0, "not rerun": 0, "new": 0}
    numbers = per_run_numbers(published)
    ret, _ = data[("metaworld:door-open", "a-parl", 3)]
    assert numbers[("metaworld:door-open", "a-parl", 3)]["final"] == float(repr(float(ret[-1])))


def test_a_changed_run_and_a_missing_run_are_named(grid, tmp_path, capsys):
    root, data = grid
    _, published = _published(root, tmp_path)
    run = root / "runs" / "dmc-walker-walk__oracle__s2"
    rows = list(csv.reader(open(run / "eval.csv")))
    old_final = float(rows[-1][1])
    rows[-1][1] = repr(old_final * (1 + 1e-9))
    with open(run / "eval.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    shutil.rmtree(root / "runs" / "metaworld-door-open__pebble__s4")
    out = tmp_path / "rerun"
    assert main(["report", str(root), "--reps", "200", "--threshold-ref", "pebble", "--fraction", "1", "--formats",
                 "png", "--out", str(out), "--against", str(tmp_path / "published")]) == 0
    with open(out / "reproduction.csv", newline="") as f:
        table = {(r["task"], r["method"], r["seed"]): r for r in csv.DictReader(f)}
    assert len(table) == len(data)
    changed = table[("dmc:walker-walk", "oracle", "2")]
    assert changed["status"] == "differs" and float(changed["published_final"]) == pytest.approx(old_final)
    assert table[("metaworld:door-open", "pebble", "4")]["status"] == "not rerun"
    # PEBBLE's door-open threshold moved with its seed-4 run gone: every door-open run differs in its threshold
    door = [r for k, r in table.items() if k[0] == "metaworld:door-open" and r["status"] != "not rerun"]
    assert door and all(r["status"] == "differs" for r in door)
    walker = [r for k, r in table.items() if k[0] == "dmc:walker-walk" and k[1:] != ("oracle", "2")]
    assert walker and all(r["status"] == "match" for r in walker)
    md = (out / "summary.md").read_text()
    assert "## Against the published report" in md and "1 not rerun yet" in md
    assert "| dmc:walker-walk | oracle | 2 |" in md
    # the same change within a tolerance of 1e-6 matches
    loose = reproduction(json.loads((out / "report.json").read_text()), published, rtol=1e-6)
    assert [r["status"] for r in loose["rows"] if r["task"] == "dmc:walker-walk"].count("differs") == 0


def test_bad_against_arguments_are_refused_before_anything_is_written(grid, tmp_path, capsys):
    root, _ = grid
    out = tmp_path / "never"
    assert main(["report", str(root), "--out", str(out), "--against", str(tmp_path / "missing.json")]) == 2
    assert "--against: cannot read a report.json" in capsys.readouterr().err and not out.exists()
    assert main(["report", str(root), "--out", str(out), "--against", "x.json", "--against-rtol", "-1"]) == 2
    assert "--against-rtol must be >= 0" in capsys.readouterr().err and not out.exists()
    with pytest.raises(ReportError, match="per-seed scores"):
        per_run_numbers({"final_scores": [{"task": "t", "method": "m", "seeds": "0 1", "scores": [1.0]}]})

"""parl_deep.sweep.archive: an archive holds exactly the finished runs' records, reads back as the same runs,
never replaces a different record silently, and ``parl archive`` reports what it did."""
from __future__ import annotations

import json

import numpy as np
import pytest

from parl_cli.main import main
from parl_deep.report import load_runs
from parl_deep.sweep.archive import RECORD_FILES, ArchiveConflict, archive_sweep
from tests.parl_deep.report.conftest import write_run

STEPS = np.arange(1000, 5001, 1000)


def _sweep(root, seeds=(0, 1, 2)):
    """A sweep directory: finished runs with the training-only files next to their records, plus one
    unfinished and one failed run."""
    root.mkdir(parents=True)
    (root / "spec.toml").write_text('name = "t"\n')
    for s in seeds:
        rid = write_run(root, "dmc:walker-walk", "pebble", s, np.linspace(0, 100 + s, STEPS.size), steps=STEPS,
                        planned=5000)
        d = root / "runs" / rid
        (d / "feedback.csv").write_text("session,labels\n0,25\n")
        (d / "checkpoint.pt").write_bytes(b"\0" * 4096)
        (d / "tb").mkdir()
        (d / "tb" / "events.out.tfevents.1").write_bytes(b"x")
        (d / "worker.log").write_text("log\n")
        (d / ".lock").write_text("")
    write_run(root, "dmc:walker-walk", "pebble", 8, np.zeros(2), status=None, steps=STEPS[:2], planned=5000)
    write_run(root, "dmc:walker-walk", "pebble", 9, np.zeros(2), status="failed", steps=STEPS[:2], planned=5000)
    return root


def _curves(root):
    return {r.run_id: (r.status, r.steps.tolist(), r.returns.tolist()) for r in load_runs(root)}


def test_the_archive_holds_the_finished_runs_records_and_nothing_else(tmp_path):
    src, dest = _sweep(tmp_path / "sweep"), tmp_path / "archive"
    result = archive_sweep(src, dest)
    assert result.copied == [f"dmc-walker-walk__pebble__s{s}" for s in range(3)]
    assert result.left_out == {"dmc-walker-walk__pebble__s8": "unfinished", "dmc-walker-walk__pebble__s9": "failed"}
    files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    expect = ["spec.toml"] + [f"runs/dmc-walker-walk__pebble__s{s}/{name}" for s in range(3)
                              for name in ("eval.csv", "feedback.csv", "run.json", "summary.json")]
    assert files == sorted(expect)
    assert set(RECORD_FILES) >= {"eval.csv", "feedback.csv", "run.json", "summary.json"}
    assert result.bytes_copied == sum((dest / f).stat().st_size for f in files if f != "spec.toml")
    finished = {k: v for k, v in _curves(src).items() if v[0] == "finished"}
    assert _curves(dest) == finished  # the report reads the same runs from the archive


def test_archiving_again_changes_nothing_and_a_new_finished_run_joins(tmp_path, snapshot):
    src, dest = _sweep(tmp_path / "sweep", seeds=(0, 1)), tmp_path / "archive"
    archive_sweep(src, dest)
    before = snapshot(dest)
    again = archive_sweep(src, dest)
    assert again.copied == [] and len(again.unchanged) == 2 and snapshot(dest) == before
    write_run(src, "dmc:walker-walk", "pebble", 5, np.ones(STEPS.size), steps=STEPS, planned=5000)
    third = archive_sweep(src, dest)
    assert third.copied == ["dmc-walker-walk__pebble__s5"] and len(third.unchanged) == 2
    assert {k: v for k, v in snapshot(dest).items() if "__s5" not in k} == before


def test_a_different_record_is_a_conflict_and_nothing_is_copied(tmp_path, snapshot):
    src, dest = _sweep(tmp_path / "sweep", seeds=(0, 1)), tmp_path / "archive"
    archive_sweep(src, dest)
    before = snapshot(dest)
    eval_csv = src / "runs" / "dmc-walker-walk__pebble__s1" / "eval.csv"
    eval_csv.write_text(eval_csv.read_text().replace("1000,", "1001,", 1))
    write_run(src, "dmc:walker-walk", "pebble", 6, np.ones(STEPS.size), steps=STEPS, planned=5000)
    with pytest.raises(ArchiveConflict) as info:
        archive_sweep(src, dest)
    assert info.value.conflicts == {"dmc-walker-walk__pebble__s1": ["eval.csv"]}
    assert snapshot(dest) == before  # not even the new seed-6 run was copied
    result = archive_sweep(src, dest, overwrite=True)
    assert sorted(result.copied) == ["dmc-walker-walk__pebble__s1", "dmc-walker-walk__pebble__s6"]
    assert (dest / "runs" / "dmc-walker-walk__pebble__s1" / "eval.csv").read_text() == eval_csv.read_text()
    (src / "spec.toml").write_text('name = "other"\n')
    with pytest.raises(ArchiveConflict, match="another spec"):
        archive_sweep(src, dest)


def test_the_command_reports_dry_runs_and_errors(tmp_path, capsys, snapshot):
    src, dest = _sweep(tmp_path / "sweep", seeds=(0,)), tmp_path / "archive"
    assert main(["archive", str(src), str(dest), "--dry-run"]) == 0
    assert capsys.readouterr().out.startswith("(dry run) archived 1 run(s)") and not dest.exists()
    assert main(["archive", str(src), str(dest)]) == 0
    out = capsys.readouterr().out
    assert "archived 1 run(s)" in out and "left out: 1 failed, 1 unfinished" in out
    assert json.loads((dest / "runs" / "dmc-walker-walk__pebble__s0" / "summary.json").read_text())["status"] \
        == "finished"
    assert main(["archive", str(tmp_path / "nowhere"), str(dest)]) == 2
    assert "is not a parl bench directory" in capsys.readouterr().err
    assert main(["archive", str(src), str(src)]) == 2
    before = snapshot(dest)
    (src / "runs" / "dmc-walker-walk__pebble__s0" / "eval.csv").write_text("step,return_mean\n1,2\n")
    assert main(["archive", str(src), str(dest)]) == 2
    err = capsys.readouterr().err
    assert "dmc-walker-walk__pebble__s0: eval.csv" in err and "overwrite" in err and snapshot(dest) == before

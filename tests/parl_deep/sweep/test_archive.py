"""parl_deep.sweep.archive: an archive holds exactly the ended runs' records, reads back as the same runs,
never replaces a finished run's records silently, and ``parl archive`` reports what it did."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from parl_cli.main import main
from parl_deep.report import load_runs
from parl_deep.report.diagnostics import aparl_diagnostics, feedback_diagnostics
from parl_deep.sweep.archive import ArchiveConflict, archive_sweep
from tests.parl_deep.report.conftest import write_run

STEPS = np.arange(1000, 5001, 1000)
WALKER = "dmc-walker-walk__pebble__s"
RECORDS = ("aparl.csv", "config.json", "episodes.csv", "eval.csv", "feedback.csv", "run.json", "summary.json")


def _sweep(root, seeds=(0, 1, 2)):
    """A sweep directory: finished runs with every record and the training-only files next to them; a failed
    run; an unfinished run without a summary and one whose summary says finished at fewer steps than planned."""
    root.mkdir(parents=True)
    (root / "spec.toml").write_text('name = "t"\n')
    for s in seeds:
        d = root / "runs" / write_run(root, "dmc:walker-walk", "pebble", s, np.linspace(0, 100 + s, STEPS.size),
                                      steps=STEPS, planned=5000)
        cfg = {"env": "dmc:walker-walk", "method": "pebble", "seed": s, "steps": 5000}
        (d / "config.json").write_text(json.dumps(cfg))
        (d / "episodes.csv").write_text("step,return\n1000,3.5\n")
        (d / "feedback.csv").write_text(f"session,labels,eval_acc,reward_corr\n0,25,0.{6 + s},0.5\n")
        (d / "aparl.csv").write_text("session,term1_norm,term2_norm,clipped,cosine,seconds,query_window\n"
                                     f"0,1,{2 + s},1,0.1,0.5,5000\n")
        (d / "checkpoint.pt").write_bytes(b"\0" * 4096)
        (d / "tb").mkdir()
        (d / "tb" / "events.out.tfevents.1").write_bytes(b"x")
        (d / "worker.log").write_text("log\n")
        (d / ".lock").write_text("")
    write_run(root, "dmc:walker-walk", "pebble", 7, np.zeros(2), status="finished", steps=STEPS[:2], planned=5000)
    write_run(root, "dmc:walker-walk", "pebble", 8, np.zeros(2), status=None, steps=STEPS[:2], planned=5000)
    write_run(root, "dmc:walker-walk", "pebble", 9, np.zeros(2), status="failed", steps=STEPS[:2], planned=5000)
    return root


def _runs(root):
    return {r.run_id: (r.status, r.steps.tolist(), r.returns.tolist(), r.error) for r in load_runs(root)}


def _files(d):
    return sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file())


def test_the_archive_holds_the_ended_runs_records_and_nothing_else(tmp_path):
    src, dest = _sweep(tmp_path / "sweep"), tmp_path / "archive"
    result = archive_sweep(src, dest)
    assert result.copied == [f"{WALKER}{s}" for s in (0, 1, 2, 9)]
    assert result.left_out == {f"{WALKER}7": "unfinished", f"{WALKER}8": "unfinished"}
    assert _files(dest) == sorted(["spec.toml"] + [f"runs/{WALKER}{s}/{n}" for s in range(3) for n in RECORDS]
                                  + [f"runs/{WALKER}9/{n}" for n in ("eval.csv", "run.json", "summary.json")])
    assert result.bytes_copied == sum((dest / f).stat().st_size for f in _files(dest) if f != "spec.toml")
    ended = {k: v for k, v in _runs(src).items() if v[0] != "unfinished"}
    assert _runs(dest) == ended and ended[f"{WALKER}9"][3] == "RuntimeError: boom"
    # the diagnostics read the same session logs from the archive
    for diag in (aparl_diagnostics, feedback_diagnostics):
        rows = diag(load_runs(dest), ["dmc:walker-walk"], ["pebble"])
        assert rows and rows[0]["n_runs"] == 3 and rows == diag(load_runs(src), ["dmc:walker-walk"], ["pebble"])


def test_a_run_with_only_config_json_is_archived_like_the_report_reads_it(tmp_path):
    src, dest = _sweep(tmp_path / "sweep", seeds=(0,)), tmp_path / "archive"
    (src / "runs" / f"{WALKER}0" / "run.json").unlink()
    assert archive_sweep(src, dest).copied == [f"{WALKER}0", f"{WALKER}9"]
    assert _runs(dest)[f"{WALKER}0"] == _runs(src)[f"{WALKER}0"]
    (src / "runs" / f"{WALKER}0" / "config.json").unlink()
    assert archive_sweep(src, tmp_path / "a2").left_out[f"{WALKER}0"] == "without run.json or config.json"


def test_archiving_again_changes_nothing_and_new_or_half_copied_runs_are_copied(tmp_path, snapshot):
    src, dest = _sweep(tmp_path / "sweep", seeds=(0, 1)), tmp_path / "archive"
    archive_sweep(src, dest)
    before = snapshot(dest)
    again = archive_sweep(src, dest)
    assert again.copied == [] and len(again.unchanged) == 3 and snapshot(dest) == before
    write_run(src, "dmc:walker-walk", "pebble", 5, np.ones(STEPS.size), steps=STEPS, planned=5000)
    (dest / "runs" / f"{WALKER}1" / "summary.json").unlink()  # an archive interrupted mid-copy
    (dest / "runs" / f"{WALKER}1" / "eval.csv").write_text("step,return_mean\n")
    third = archive_sweep(src, dest)
    assert third.copied == [f"{WALKER}1", f"{WALKER}5"] and third.unchanged == [f"{WALKER}0", f"{WALKER}9"]
    assert {k: v for k, v in snapshot(dest).items() if "__s5" not in k and "__s1" not in k} == \
        {k: v for k, v in before.items() if "__s1" not in k}
    assert _runs(dest)[f"{WALKER}1"] == _runs(src)[f"{WALKER}1"]


def test_a_finished_runs_other_record_is_a_conflict_and_nothing_is_copied(tmp_path, snapshot):
    src, dest = _sweep(tmp_path / "sweep", seeds=(0, 1)), tmp_path / "archive"
    archive_sweep(src, dest)
    before = snapshot(dest)
    eval_csv = src / "runs" / f"{WALKER}1" / "eval.csv"
    eval_csv.write_text(eval_csv.read_text().replace("1000,", "1001,", 1))
    (src / "runs" / f"{WALKER}1" / "aparl.csv").unlink()
    write_run(src, "dmc:walker-walk", "pebble", 6, np.ones(STEPS.size), steps=STEPS, planned=5000)
    with pytest.raises(ArchiveConflict) as info:
        archive_sweep(src, dest)
    assert info.value.conflicts == {f"{WALKER}1": ["aparl.csv", "eval.csv"]}
    assert snapshot(dest) == before  # not even the new seed-6 run was copied
    result = archive_sweep(src, dest, overwrite=True)
    assert result.copied == [f"{WALKER}1", f"{WALKER}6"]
    assert (dest / "runs" / f"{WALKER}1" / "eval.csv").read_text() == eval_csv.read_text()
    assert not (dest / "runs" / f"{WALKER}1" / "aparl.csv").exists()  # a record the rerun lacks goes too
    (src / "spec.toml").write_text('name = "other"\n')
    with pytest.raises(ArchiveConflict, match="spec.toml is another spec's") as info:
        archive_sweep(src, dest)
    assert "run(s)" not in str(info.value)


def test_an_archived_failed_run_is_replaced_by_its_finished_rerun(tmp_path):
    src, dest = _sweep(tmp_path / "sweep", seeds=(0,)), tmp_path / "archive"
    archive_sweep(src, dest)

    shutil.rmtree(src / "runs" / f"{WALKER}9")
    write_run(src, "dmc:walker-walk", "pebble", 9, np.ones(STEPS.size), steps=STEPS, planned=5000)
    assert archive_sweep(src, dest).copied == [f"{WALKER}9"]
    assert _runs(dest)[f"{WALKER}9"][0] == "finished"


def test_the_command_reports_dry_runs_and_errors(tmp_path, capsys, snapshot):
    src, dest = _sweep(tmp_path / "sweep", seeds=(0,)), tmp_path / "archive"
    assert main(["archive", str(src), str(dest), "--dry-run"]) == 0
    assert capsys.readouterr().out.startswith("(dry run) archived 2 run(s)") and not dest.exists()
    assert main(["archive", str(src), str(dest)]) == 0
    out = capsys.readouterr().out
    assert "archived 2 run(s)" in out and "left out: 2 unfinished" in out
    assert json.loads((dest / "runs" / f"{WALKER}0" / "summary.json").read_text())["status"] == "finished"
    assert main(["archive", str(tmp_path / "nowhere"), str(dest)]) == 2
    assert "is not a parl bench directory" in capsys.readouterr().err
    for bad in (src, src / "runs", src / "runs" / "x"):
        assert main(["archive", str(src), str(bad)]) == 2
        assert "must be another folder than the sweep directory" in capsys.readouterr().err
    (tmp_path / "afile").write_text("")
    assert main(["archive", str(src), str(tmp_path / "afile" / "sub")]) == 2
    assert capsys.readouterr().err.startswith("parl archive: error:")
    before = snapshot(dest)
    (src / "runs" / f"{WALKER}0" / "eval.csv").write_text("step,return_mean\n1,2\n")
    assert main(["archive", str(src), str(dest)]) == 2
    err = capsys.readouterr().err
    assert f"{WALKER}0: eval.csv" in err and "overwrite" in err and snapshot(dest) == before

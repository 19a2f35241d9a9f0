"""parl_deep.sweep.runner and .backends: the local pool (killed midway and resumed), a failing run, Ray, and
parl report on the result. The sweeps run the real simulators with tiny settings (benchmarks/specs/tiny.toml)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from parl_cli.main import main
from parl_deep.io import read_json
from parl_deep.sweep import run_dir_for, run_sweep, spec_from_text

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MUJOCO_GL": "disabled"}


@pytest.mark.slow
def test_local_sweep_killed_midway_resumes_without_redoing_finished_runs(tmp_path, repo, tiny, run_ids, snapshot):
    """SIGKILL the sweep (its workers die with it) after some runs finished and others checkpointed; re-running
    the same command finishes the grid, resumes the interrupted runs from their checkpoints and leaves every
    file of the finished runs untouched. Then parl report writes its figures and tables."""
    from parl_deep.checkpoint import load_checkpoint

    out = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "parl_cli.main", "bench", str(tiny), "--backend", "local", "--workers", "2",
           "--out", str(out), "--progress-every", "5"]

    def state():
        fin, mid = [], []
        for rid in run_ids(out):
            d = out / "runs" / rid
            s = read_json(d / "summary.json")
            if s and s.get("status") == "finished":
                fin.append(rid)
            elif (d / "checkpoint.pt").exists():
                mid.append(rid)
        return fin, mid

    # Kill once some runs finished and others are checkpointed. A run can finish between the poll and the
    # kill on a loaded machine; then the (resuming) command is started again and killed again.
    for _attempt in range(4):
        proc = subprocess.Popen(cmd, cwd=repo, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
        deadline = time.time() + 240
        while True:
            fin, mid = state()
            if fin and mid:
                break
            if proc.poll() is not None:
                pytest.fail(f"the sweep ended before it could be killed:\n{proc.stdout.read()}")
            assert time.time() < deadline, "no run finished in time"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        time.sleep(1.0)
        fin, mid = state()
        if mid:
            break
    assert 0 < len(fin) < 8 and mid
    finished_files = {rid: snapshot(out / "runs" / rid) for rid in fin}
    ckpt_step = {rid: load_checkpoint(out / "runs" / rid / "checkpoint.pt")["step"] for rid in mid}
    # The workers died with the sweep: nothing is still writing into the interrupted runs.
    before = {rid: snapshot(out / "runs" / rid) for rid in mid}
    time.sleep(1.0)
    assert {rid: snapshot(out / "runs" / rid) for rid in mid} == before

    res = subprocess.run(cmd, cwd=repo, env=ENV, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"{len(fin)} already finished (skipped), {len(mid)} to resume from checkpoints" in res.stderr
    assert "8/8 runs finished, 0 failed" in res.stdout
    assert "8/8 done | 0 running | 0 failed | 0 queued | 100% of steps | ETA 0:00" in res.stderr  # progress view
    for rid, files in finished_files.items():
        assert snapshot(out / "runs" / rid) == files, f"{rid} was touched"
    for rid, step in ckpt_step.items():
        s = read_json(out / "runs" / rid / "summary.json")
        assert s["status"] == "finished" and s["steps"] == 400
        assert s["resumed_from_step"] == step > 0
    sweep = read_json(out / "sweep.json")
    assert sweep["counts"] == {"finished": 8, "running": 0, "failed": 0, "pending": 0}
    for rid in run_ids(out):
        ev = (out / "runs" / rid / "eval.csv").read_text().splitlines()
        assert [line.split(",")[0] for line in ev[1:]] == ["100", "200", "300", "400"], rid

    # Idempotent: a third invocation has nothing to do.
    res = subprocess.run(cmd, cwd=repo, env=ENV, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "8 already finished (skipped)" in res.stderr

    # parl report on the result
    rep = tmp_path / "report"
    assert main(["report", str(out), "--out", str(rep), "--reps", "300", "--compare", "oracle-wide:oracle"]) == 0
    for name in ("learning_curves.png", "learning_curves.pdf", "aggregate.png", "aggregate.pdf", "final_scores.csv",
                 "aggregate.csv", "probability_of_improvement.csv", "sample_efficiency.csv",
                 "sample_efficiency_ratio.csv", "summary.md"):
        assert (rep / name).stat().st_size > 0, name
    md = (rep / "summary.md").read_text()
    assert "Runs: 8 finished, 0 failed" in md and "| dmc:walker-walk | oracle-wide | 2 |" in md


@pytest.mark.slow
def test_a_failing_run_is_reported_retried_once_and_does_not_block_the_others(tmp_path, tiny_text):
    """One run's directory holds the spec's own config.json and a corrupt checkpoint.pt: it passes every up-front
    check (the config is the one the spec asks for), so the run raises inside its worker when it loads the
    checkpoint, on every attempt: the honest stand-in for any run that crashes."""
    text = tiny_text(**{"seeds = [0, 1]": "seeds = [0]", 'tasks = ["dmc:walker-walk", ': "tasks = ["})
    spec = spec_from_text(text)
    good, bad = "metaworld-door-open__oracle__s0", "metaworld-door-open__oracle-wide__s0"
    rd = run_dir_for(tmp_path, bad)
    rd.mkdir(parents=True)
    (rd / "config.json").write_text(json.dumps(next(j for j in spec.jobs if j.run_id == bad).config))
    (rd / "checkpoint.pt").write_bytes(b"not a checkpoint")
    logs: list[str] = []
    state = run_sweep(spec, tmp_path, backend="local", workers=2, retries=1, log=logs.append)
    runs = state["runs"]
    assert runs[good]["status"] == "finished"
    assert runs[bad]["status"] == "failed" and runs[bad]["attempts"] == 2 and runs[bad]["origin"] == "resume"
    assert "UnpicklingError" in runs[bad]["error"]
    s = read_json(tmp_path / "runs" / bad / "summary.json")
    assert s["status"] == "failed" and "UnpicklingError" in s["error"] and "Traceback" in s["traceback"]
    assert sum("FAILED" in line and bad in line for line in logs) == 2
    assert any("will retry" in line for line in logs) and any("giving up" in line for line in logs)
    assert logs[-1] == f"[bench] failed: {bad}: {s['error']} (see {rd / 'worker.log'})"
    assert state["counts"]["failed"] == 1 and state["counts"]["finished"] == 1


@pytest.mark.slow
def test_ray_backend_runs_the_tiny_grid(tmp_path, tiny_text):
    pytest.importorskip("ray")
    spec = spec_from_text(tiny_text())
    state = run_sweep(spec, tmp_path, backend="ray", workers=2, log=lambda m: None)
    assert state["counts"] == {"finished": 8, "running": 0, "failed": 0, "pending": 0}
    for j in spec.jobs:
        s = read_json(run_dir_for(tmp_path, j.run_id) / "summary.json")
        assert s["status"] == "finished" and s["steps"] == 400 and "return_mean" in s["final_eval"]
        assert (run_dir_for(tmp_path, j.run_id) / "checkpoint.pt").exists()


def test_a_run_locked_by_another_sweep_is_reported_as_locked_and_left_alone(tmp_path, tiny_text):
    """Two sweeps on one directory: the second finds the run's .lock held and must say so (it used to report
    'worker process died without a summary (...; out of memory?)'), and write nothing into the run directory."""
    import fcntl

    text = tiny_text(**{"seeds = [0, 1]": "seeds = [0]", 'tasks = ["dmc:walker-walk", ': "tasks = ["})
    spec = spec_from_text(text)
    spec.jobs = spec.jobs[:1]
    rid = spec.jobs[0].run_id
    rd = run_dir_for(tmp_path, rid)
    rd.mkdir(parents=True)
    with open(rd / ".lock", "w") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # the other sweep, training this run
        state = run_sweep(spec, tmp_path, backend="local", workers=1, retries=0, log=lambda m: None)
    run = state["runs"][rid]
    assert run["status"] == "failed" and "is locked by another process" in run["error"], run["error"]
    assert sorted(p.name for p in rd.iterdir()) == [".lock"]


def test_a_local_worker_killed_before_it_reports_is_reported_as_died(tmp_path, tiny_text):
    """A child killed by a signal sends nothing through its pipe (which is then at EOF): the backend still books
    the run as failed with the signal, instead of raising, and in the same poll that sees the child end. (A child's
    sentinel is ready a moment before the child can be reaped; polls that skipped it then spun without waiting,
    which failed this test in CI about one time in six. Ten rounds make that near certain to show.)"""
    from parl_deep.sweep.backends import LocalBackend

    spec = spec_from_text(tiny_text(**{"seeds = [0, 1]": "seeds = [0]"}))
    for _ in range(10):
        backend = LocalBackend(str(tmp_path), workers=1)
        backend.submit(spec.jobs[0])
        os.kill(backend.procs[spec.jobs[0].run_id].pid, signal.SIGKILL)
        ((rid, summary),) = backend.poll(120)
        assert rid == spec.jobs[0].run_id and summary["status"] == "failed"
        assert "died without a summary (killed by signal 9" in summary["error"], summary["error"]
        assert backend.running() == []

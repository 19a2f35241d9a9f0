"""parl bench: up-front spec validation, the local pool (killed midway and resumed), a failing run, Ray, and
parl report on the result. The sweeps run the real simulators with tiny settings (benchmarks/specs/tiny.toml)."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from parl_cli.main import main
from parl_deep.bench import (SpecError, check_spec, run_dir_for, run_sweep, spec_from_text, read_json)

REPO = Path(__file__).resolve().parents[2]
SPECS = REPO / "benchmarks" / "specs"
TINY = SPECS / "tiny.toml"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MUJOCO_GL": "disabled"}


def tiny_text(**replace: str) -> str:
    text = TINY.read_text()
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


def run_ids(out: Path) -> list[str]:
    return sorted(p.name for p in (out / "runs").iterdir()) if (out / "runs").exists() else []


def snapshot(d: Path) -> dict[str, tuple[int, str]]:
    return {str(p.relative_to(d)): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(d.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------------- validation


BAD_SPECS = [
    # (replacements in tiny.toml, the field the message must name, a phrase of the message)
    ({'"metaworld:door-open"': '"metaworld:door-opne"'}, "tasks[1]", "unknown environment"),
    ({'tasks = ["dmc:walker-walk"': 'tasks = ["walker-walk"'}, "tasks[0]", "prefix"),
    ({'method = "oracle"': 'method = "pebbel"'}, "methods[0].method", "not a registered training method"),
    ({'seeds = [0, 1]\n': ''}, "seeds", "required field is missing"),
    ({'steps = 400': 'steps = -5'}, "steps", "must be a positive integer, got -5"),
    ({'steps = 400': 'steps = 0'}, "steps", "must be a positive integer, got 0"),
    ({'name = "oracle-wide"\nmethod = "oracle"': 'name = "oracle-wide"'}, "methods[1].method", "required field"),
    ({'hidden_dim = 32': 'hidden_dimm = 32'}, "sac.hidden_dimm", "unknown field"),
    ({'eval_every = 100': 'eval_every = "100"'}, "train.eval_every", "must be an integer"),
    ({'eval_every = 100': 'eval_every = 1000'}, "tasks[0] x methods[0]", "larger than steps"),
    ({'seed_steps = 100': 'seed_steps = -1'}, "tasks[0] x methods[0]", "sac.seed_steps must be >= 0"),
    ({'preset = "cpu"': 'preset = "gpu"'}, "preset", "unknown preset"),
    ({'seeds = [0, 1]': 'seeds = [0, -1]'}, "seeds", "non-negative"),
    ({'name = "oracle-wide"': 'name = "oracle"'}, "methods", "distinct"),
    ({'[train]': 'stepz = 3\n[train]'}, "stepz", "unknown field"),
    ({'[train]': '[train]\nseed = 3'}, "train.seed", "set by the spec"),
]


@pytest.mark.parametrize("replace,field,phrase", BAD_SPECS, ids=[b[1] + ":" + b[2][:20] for b in BAD_SPECS])
def test_bad_spec_is_rejected_naming_the_field(replace, field, phrase):
    with pytest.raises(SpecError) as info:
        spec_from_text(tiny_text(**replace))
    assert any(i.field == field and phrase in i.message for i in info.value.issues), str(info.value)
    assert f"{field}: " in str(info.value)


def test_cli_rejects_a_bad_spec_before_any_run_starts(tmp_path, capsys):
    spec = tmp_path / "bad.toml"
    spec.write_text(tiny_text(**{"steps = 400": "steps = -5", '"metaworld:door-open"': '"metaworld:door-opne"'}))
    out = tmp_path / "out"
    assert main(["bench", str(spec), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "steps: must be a positive integer, got -5" in err and "tasks[1]:" in err and "2 problems" in err
    assert not out.exists()  # nothing was created, let alone run
    assert main(["bench", str(SPECS / "cpu.toml"), "--out", str(out), "--seeds", "0,x"]) == 2
    assert "--seeds must be comma-separated integers, got '0,x'" in capsys.readouterr().err
    assert not out.exists()


def test_existing_run_with_another_config_is_rejected_up_front(tmp_path):
    spec = spec_from_text(tiny_text())
    job = spec.jobs[0]
    rd = run_dir_for(tmp_path, job.run_id)
    rd.mkdir(parents=True)
    other = json.loads(json.dumps(job.config))
    other["sac"]["hidden_dim"] = 999
    (rd / "config.json").write_text(json.dumps(other))
    with pytest.raises(SpecError) as info:
        run_sweep(spec, tmp_path)
    (issue,) = info.value.issues
    assert issue.kind == "conflict" and issue.field == f"runs/{job.run_id}" and "sac.hidden_dim" in issue.message
    assert run_ids(tmp_path) == [job.run_id] and not (tmp_path / "sweep.json").exists()


@pytest.mark.parametrize("name", ["paper", "cpu"])
def test_shipped_specs_parse_and_only_unregistered_methods_are_missing(name):
    from parl_deep.methods import METHODS

    spec, issues = check_spec(SPECS / f"{name}.toml")
    assert spec is not None
    assert [t.env for t in spec.tasks] == ["dmc:walker-walk", "metaworld:door-open", "metaworld:button-press-topdown"]
    extra = ["a-parl-no-term2"] if name == "cpu" else []  # the CPU grid's ablation
    assert [m.name for m in spec.methods] == ["oracle", "pebble", "pebble-surf", "a-parl"] + extra
    assert spec.seeds == [0, 1, 2, 3, 4]
    missing = {m.method for m in spec.methods} - set(METHODS)
    # Every problem must be an unregistered method, and every unregistered method a problem.
    assert all(i.kind == "unregistered_method" for i in issues), [str(i) for i in issues]
    assert {i.message.split("'")[1] for i in issues} == missing
    if not missing:  # all four methods exist: the whole grid must validate
        assert len(spec.jobs) == 3 * (4 + len(extra)) * 5
    # The oracle part of the grid is valid today (`parl bench SPEC --methods oracle`).
    spec, issues = check_spec(SPECS / f"{name}.toml", methods=["oracle"])
    assert issues == [] and len(spec.jobs) == 3 * 5
    steps = {j.task: j.steps for j in spec.jobs}
    if name == "paper":
        assert steps["dmc:walker-walk"] == 500_000 and spec.jobs[0].config["sac"]["hidden_dim"] == 1024
    else:
        assert set(steps.values()) == {50_000}


def test_seeds_option_keeps_a_subset_in_seed_major_order():
    spec, issues = check_spec(SPECS / "cpu.toml", seeds=[2, 0])
    assert issues == [] and spec.seeds == [0, 2]
    # Seed-major: the first 15 runs are all of seed 0 (every task x method), then seed 2.
    assert [j.seed for j in spec.jobs] == [0] * 15 + [2] * 15
    assert {(j.task, j.method_name) for j in spec.jobs[:15]} == {(j.task, j.method_name) for j in spec.jobs[15:]}
    full, _ = check_spec(SPECS / "cpu.toml")
    assert {j.run_id for j in spec.jobs} < {j.run_id for j in full.jobs}  # same run ids: the full grid resumes
    _, issues = check_spec(SPECS / "cpu.toml", seeds=[0, 9])
    assert [(i.field, "seed 9" in i.message) for i in issues] == [("--seeds", True)]


def test_tasks_and_methods_options_combine():
    spec, issues = check_spec(SPECS / "cpu.toml", methods=["pebble-surf"], seeds=[1, 2], tasks=["dmc:walker-walk"])
    assert issues == []
    assert [j.run_id for j in spec.jobs] == ["dmc-walker-walk__pebble-surf__s1", "dmc-walker-walk__pebble-surf__s2"]
    _, issues = check_spec(SPECS / "cpu.toml", tasks=["dmc:walker-run"])
    assert [(i.field, "walker-run" in i.message) for i in issues] == [("--tasks", True)]


def test_tiny_spec_is_valid_and_small():
    spec, issues = check_spec(TINY)
    assert issues == []
    assert len(spec.jobs) == 8 and {j.steps for j in spec.jobs} == {400}
    assert len({j.run_id for j in spec.jobs}) == 8


# ------------------------------------------------------------------------------------------- sweeps


@pytest.mark.slow
def test_local_sweep_killed_midway_resumes_without_redoing_finished_runs(tmp_path):
    """SIGKILL the sweep (its workers die with it) after some runs finished and others checkpointed; re-running
    the same command finishes the grid, resumes the interrupted runs from their checkpoints and leaves every
    file of the finished runs untouched. Then parl report writes its figures and tables."""
    from parl_deep.checkpoint import load_checkpoint

    out = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "parl_cli.main", "bench", str(TINY), "--backend", "local", "--workers", "2",
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
        proc = subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
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

    res = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
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
    res = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120)
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
def test_a_failing_run_is_reported_retried_once_and_does_not_block_the_others(tmp_path):
    """The oracle rejects method options when a run builds it (`method 'oracle' takes no options`); the spec's
    up-front validation cannot see that (OracleMethod has no validate_config), so the run raises inside its
    worker: the honest stand-in for any run that crashes."""
    text = tiny_text(**{"seeds = [0, 1]": "seeds = [0]", 'tasks = ["dmc:walker-walk", ': "tasks = [",
                        'sac = { hidden_dim = 64 }': 'options = { not_an_option = 1 }'})
    spec = spec_from_text(text)
    logs: list[str] = []
    state = run_sweep(spec, tmp_path, backend="local", workers=2, retries=1, log=logs.append)
    runs = state["runs"]
    good, bad = "metaworld-door-open__oracle__s0", "metaworld-door-open__oracle-wide__s0"
    assert runs[good]["status"] == "finished"
    assert runs[bad]["status"] == "failed" and runs[bad]["attempts"] == 2
    assert "takes no options" in runs[bad]["error"]
    s = read_json(tmp_path / "runs" / bad / "summary.json")
    assert s["status"] == "failed" and "ValueError" in s["error"] and "Traceback" in s["traceback"]
    assert sum("FAILED" in line and bad in line for line in logs) == 2
    assert any("will retry" in line for line in logs) and any("giving up" in line for line in logs)
    assert state["counts"]["failed"] == 1 and state["counts"]["finished"] == 1


@pytest.mark.slow
def test_ray_backend_runs_the_tiny_grid(tmp_path):
    pytest.importorskip("ray")
    spec = spec_from_text(tiny_text())
    state = run_sweep(spec, tmp_path, backend="ray", workers=2, log=lambda m: None)
    assert state["counts"] == {"finished": 8, "running": 0, "failed": 0, "pending": 0}
    for j in spec.jobs:
        s = read_json(run_dir_for(tmp_path, j.run_id) / "summary.json")
        assert s["status"] == "finished" and s["steps"] == 400 and "return_mean" in s["final_eval"]
        assert (run_dir_for(tmp_path, j.run_id) / "checkpoint.pt").exists()

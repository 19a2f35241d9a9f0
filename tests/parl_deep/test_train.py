"""Run loop: real 2,000-step oracle runs, exact resume, SIGKILL recovery, and clear errors for bad input."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import time

import numpy as np
import pytest
import torch

from parl_deep.checkpoint import CHECKPOINT_NAME, load_checkpoint
from parl_deep.training import resume, train

from .fixtures import DATA, REPO, oracle_cfg, rows, strip_time


@pytest.mark.smoke
@pytest.mark.parametrize("env,ep_len", [("dmc:walker-walk", 1000), ("metaworld:door-open", 500)])
def test_2000_step_oracle_run_writes_logs_and_checkpoint(tmp_path, env, ep_len):
    cfg = oracle_cfg(env)
    summary = train(cfg, tmp_path, progress=False)
    assert summary["step"] == 2000
    assert json.loads((tmp_path / "config.json").read_text()) == cfg.to_dict()
    ev = rows(tmp_path / "eval.csv")
    assert [int(r["step"]) for r in ev] == [1000, 2000]
    for r in ev:
        assert np.isfinite(float(r["return_mean"])) and int(r["episodes"]) == 2
        if env.startswith("metaworld"):
            assert 0.0 <= float(r["success_rate"]) <= 1.0
    eps = rows(tmp_path / "episodes.csv")
    assert [int(r["step"]) for r in eps] == list(range(ep_len, 2001, ep_len))
    assert all(int(r["length"]) == ep_len for r in eps)
    assert float(eps[-1]["critic_loss"]) >= 0 and float(eps[-1]["alpha"]) > 0  # SAC updates ran
    assert any(p.name.startswith("events.out.tfevents") for p in (tmp_path / "tb").iterdir())
    ck = load_checkpoint(tmp_path / CHECKPOINT_NAME)
    assert ck["step"] == 2000 and ck["buffer"]["size"] == 2000 and ck["config"] == cfg.to_dict()
    assert ck["agent"]["num_updates"] == 2000 - 500
    # no temp files left behind
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_resume_continues_the_same_curve(tmp_path):
    """Interrupted mid-episode after a checkpoint, then resumed == never interrupted (bit for bit)."""
    cfg = oracle_cfg("dmc:walker-walk", steps=1600)
    cfg.checkpoint_every, cfg.eval_every, cfg.sac.seed_steps = 600, 400, 300
    a, b = tmp_path / "a", tmp_path / "b"
    train(cfg, a, progress=False)
    train(cfg, b, progress=False, stop_after=900)  # "crash" at 900: last checkpoint at 600 (mid-episode)
    assert load_checkpoint(b / CHECKPOINT_NAME)["step"] == 600
    assert [int(r["step"]) for r in rows(b / "eval.csv")] == [400, 800]
    resume(b, progress=False)
    assert strip_time(rows(a / "eval.csv")) == strip_time(rows(b / "eval.csv"))
    assert strip_time(rows(a / "episodes.csv")) == strip_time(rows(b / "episodes.csv"))
    ca, cb = load_checkpoint(a / CHECKPOINT_NAME), load_checkpoint(b / CHECKPOINT_NAME)
    for k in ca["agent"]["actor"]:
        assert torch.equal(ca["agent"]["actor"][k], cb["agent"]["actor"][k]), k
    np.testing.assert_array_equal(ca["buffer"]["data"], cb["buffer"]["data"])


@pytest.mark.slow
def test_sigkill_in_subprocess_then_resume(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "parl_cli.main", "train", "--env", "dmc:walker-walk", "--steps", "3000",
           "--checkpoint-every", "500", "--eval-every", "500", "--eval-episodes", "1", "--no-progress",
           "--set", "eval_max_steps=50", "--set", "sac.hidden_dim=32", "--set", "sac.batch_size=64",
           "--set", "sac.seed_steps=300", "--out", str(out)]
    env = dict(os.environ, OMP_NUM_THREADS="1", MUJOCO_GL="disabled")
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ck_path = out / CHECKPOINT_NAME
    deadline = time.time() + 180
    killed_after = None
    while time.time() < deadline and proc.poll() is None:
        if ck_path.exists():
            try:
                step = load_checkpoint(ck_path)["step"]
            except Exception:  # pragma: no cover - would mean a partial checkpoint
                raise
            if step >= 1000:
                time.sleep(0.3)
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                killed_after = step
                break
        time.sleep(0.1)
    assert killed_after is not None, f"the run never reached a checkpoint >= 1000: {proc.stderr.read()[-2000:]!r}"
    assert proc.returncode == -signal.SIGKILL
    config_before = (out / "config.json").read_text()
    ck_step = load_checkpoint(ck_path)["step"]
    assert ck_step >= 1000 and ck_step % 500 == 0
    eval_before = [r for r in rows(out / "eval.csv") if int(r["step"]) <= ck_step]
    assert [int(r["step"]) for r in eval_before] == list(range(500, ck_step + 1, 500))  # nothing lost

    from parl_cli.main import main

    assert main(["train", "--resume", str(out), "--no-progress"]) == 0
    assert (out / "config.json").read_text() == config_before
    ev = rows(out / "eval.csv")
    assert [int(r["step"]) for r in ev] == list(range(500, 3001, 500))  # no duplicates, no gaps
    assert ev[: len(eval_before)] == eval_before  # rows before the checkpoint untouched
    ck = load_checkpoint(ck_path)
    assert ck["step"] == 3000 and ck["buffer"]["size"] == 3000
    assert ck["agent"]["num_updates"] == 3000 - 300


@pytest.mark.slow
def test_a_gym_run_killed_mid_episode_resumes_to_the_uninterrupted_logs(tmp_path):
    """gym:Pendulum-v1 (resume by seeded reset plus action replay): SIGKILL after a mid-episode checkpoint,
    resume, and the logs equal those of a run that was never interrupted."""
    args = ["--env", "gym:Pendulum-v1", "--steps", "900", "--checkpoint-every", "150", "--eval-every", "300",
            "--eval-episodes", "1", "--no-progress", "--set", "eval_max_steps=20", "--set", "sac.hidden_dim=32",
            "--set", "sac.batch_size=32", "--set", "sac.seed_steps=100"]
    env = dict(os.environ, OMP_NUM_THREADS="1", MUJOCO_GL="disabled")
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "parl_cli.main", "train", *args, "--out", str(killed)], cwd=REPO,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        ck = killed / CHECKPOINT_NAME
        if ck.exists() and load_checkpoint(ck)["step"] in (450, 600, 750):  # Pendulum's episodes are 200 steps
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()[-2000:]
    from parl_cli.main import main

    assert main(["train", "--resume", str(killed), "--no-progress"]) == 0
    assert main(["train", *args, "--out", str(tmp_path / "whole")]) == 0
    for name in ("episodes.csv", "eval.csv"):
        assert strip_time(rows(killed / name)) == strip_time(rows(tmp_path / "whole" / name)), name


def test_a_run_written_before_the_restructure_resumes_to_the_same_logs(tmp_path):
    """A run directory and checkpoint from the code before issue 12 resume with today's code and end with the
    logs that the old code wrote for the same run uninterrupted (data/README.md). The old code ran with torch's
    AVX2 kernels; on a CPU with AVX-512 torch picks others, whose float32 results differ in the last bits, so the
    resume runs in a process with ATEN_CPU_CAPABILITY=avx2."""
    with tarfile.open(DATA / "kept-a-parl.tar.xz") as tar:
        tar.extractall(tmp_path, filter="data")
    run = tmp_path / "kept-a-parl"
    assert [int(r["step"]) for r in rows(run / "eval.csv")] == [1000, 2000]  # as the kill left it
    env = dict(os.environ, OMP_NUM_THREADS="1", MUJOCO_GL="disabled", ATEN_CPU_CAPABILITY="avx2")
    code = ("import json, sys; from parl_deep.training import resume; "
            "print(json.dumps(resume(sys.argv[1], progress=False), default=str))")
    out = subprocess.run([sys.executable, "-c", code, str(run)], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["steps_this_session"] == 1000  # it continued from the old checkpoint, not from step 0
    for name in ("episodes.csv", "eval.csv", "feedback.csv", "aparl.csv"):
        assert strip_time(rows(run / name)) == strip_time(rows(DATA / "kept-a-parl-expected" / name)), name


def test_a_run_written_before_new_fields_is_the_same_run_to_train_and_to_bench(tmp_path):
    """The kept pre-restructure a-parl run lacks fields added since (num_envs, vector_mode, device, A-PARL's
    upper, gate and win-rate options). Asked for again with today's defaults, `train` continues it and `parl
    bench` sees no conflict; a real difference is still reported."""
    import json

    from parl_deep.config import config_diff, read_config
    from parl_deep.sweep import check_existing_runs
    from parl_deep.sweep.spec import RunJob
    from parl_deep.training import canonical_config, resolve_method_options

    with tarfile.open(DATA / "kept-a-parl.tar.xz") as tar:
        tar.extractall(tmp_path / "runs", filter="data")
    run = tmp_path / "runs" / "kept-a-parl"
    old = json.loads((run / "config.json").read_text())
    today = resolve_method_options(read_config(run)).to_dict()
    raw = config_diff(old, today)
    assert "num_envs" in raw and "method_config" in raw  # the files do differ ...
    assert canonical_config(old) == canonical_config(today)  # ... but not as today's code reads them
    job = RunJob("kept-a-parl", today["env"], "a-parl", "a-parl", today["seed"], today)
    assert check_existing_runs(tmp_path, [job]) == []
    other = json.loads(json.dumps(today))
    other["method_config"]["term2_step"] = 0.5
    issues = check_existing_runs(tmp_path, [RunJob("kept-a-parl", today["env"], "a-parl", "a-parl", 0, other)])
    assert len(issues) == 1 and "differs in: method_config" in issues[0].message
    summary = train(read_config(run), run, progress=False)  # the same run: continued, not refused
    assert summary["steps_this_session"] == 1000

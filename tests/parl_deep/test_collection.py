"""Several environments stepped together (TrainConfig.num_envs): episode accounting, contiguous segments and
continuations checked against the physics (one transition's next_obs is the next one's obs), sync against
subprocess, and SIGKILL/resume with num_envs = 4 against the uninterrupted run."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from parl_deep.checkpoint import CHECKPOINT_NAME, load_checkpoint
from parl_deep.collection import env_seeds
from parl_deep.config import ConfigError
from parl_deep.replay import valid_segment_starts
from parl_deep.training import TrainLoop
from tests.parl_deep.fixtures import REPO, feedback_cfg, oracle_cfg, rows, strip_time


def _continuous(buf, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Whether row b holds the step right after row a's (its obs is a's next_obs), elementwise."""
    return np.all(buf.column("next_obs")[a] == buf.column("obs")[b], axis=-1)


def test_with_three_envs_every_segment_and_continuation_is_one_trajectory(tmp_path):
    """gym:Pendulum-v1 (200-step episodes), 3 copies, PEBBLE's index: sampled segments and A-PARL's continuations
    follow the simulator step by step; an index read with stride 1 (the single-environment layout) does not."""
    cfg = feedback_cfg("gym:Pendulum-v1", "pebble", steps=1500)
    cfg.num_envs, cfg.eval_every, cfg.checkpoint_every = 3, 1500, 1500
    loop = TrainLoop(cfg, tmp_path)
    loop.run(progress=False)
    buf, index = loop.buffer, loop.method.index
    seg = index.sample_rows(np.random.default_rng(0), 300, 50, buf.size, loop.step)
    assert _continuous(buf, seg[:, :-1], seg[:, 1:]).all()
    assert len({int(r % 3) for r in seg[:, 0]}) == 3  # segments of every copy
    cont, mask = index.continuation_rows(seg[:, :1], 250)  # longer than what is left of most episodes
    assert _continuous(buf, cont[:, :-1], cont[:, 1:])[mask[:, 1:]].all()
    ended = ~mask.all(1)
    assert ended.any()
    last = cont[ended, mask[ended].sum(1) - 1]  # the last step kept: it ends its episode or the data
    assert np.all((last + 3 >= buf.size) | ~_continuous(buf, last, np.minimum(last + 3, buf.size - 1)))
    starts = np.arange(buf.size - 1)
    assert not _continuous(buf, starts, starts + 1).any()  # neighbouring rows are different copies ...
    # ... so the single-environment layout (stride 1) finds no segment at all
    assert valid_segment_starts(index.ep_id[:buf.size], index.t_index[:buf.size], 2).size == 0
    # episode accounting: 3 copies x 500 steps = 2 whole 200-step episodes each
    eps = rows(tmp_path / "episodes.csv")
    assert [int(r["episode"]) for r in eps] == list(range(1, 7)) and all(int(r["length"]) == 200 for r in eps)
    assert [int(r["step"]) for r in eps] == [598, 599, 600, 1198, 1199, 1200]
    true_returns = sorted(float(buf.true_rewards(np.flatnonzero(index.ep_id[:buf.size] == e)).sum())
                          for e in set(index.ep_id[:buf.size].tolist()) if (index.ep_id[:buf.size] == e).sum() == 200)
    np.testing.assert_allclose(sorted(float(r["env_return"]) for r in eps), true_returns, rtol=1e-4)
    loop.close()


def test_num_envs_must_divide_every_count():
    cfg = oracle_cfg("gym:Pendulum-v1", steps=1000, num_envs=3)
    with pytest.raises(ConfigError, match="steps = 1000 must be a multiple of num_envs = 3"):
        cfg.validate()


def test_copy_zero_has_the_runs_seed_and_the_others_differ():
    seeds = env_seeds(7, 4)
    assert seeds[0] == 7 and len(set(seeds)) == 4 and env_seeds(7, 1) == [7]


def _cli(out, method: str, mode: str, steps: int) -> list[str]:
    args = [sys.executable, "-m", "parl_cli.main", "train", "--env", "dmc:walker-walk", "--method", method,
            "--steps", str(steps), "--checkpoint-every", "400", "--eval-every", "800", "--eval-episodes", "1",
            "--no-progress", "--num-envs", "4", "--vector-mode", mode, "--set", "eval_max_steps=30",
            "--set", "sac.hidden_dim=32", "--set", "sac.batch_size=32", "--set", "sac.seed_steps=400",
            "--out", str(out)]
    if method == "pebble":
        args += ["--num-unsup-steps", "400", "--num-interact", "800", "--max-feedback", "20", "--reward-batch",
                 "10", "--set", "method_config.reward_hidden=16", "--set", "method_config.eval_pairs=10",
                 "--set", "method_config.reward_update=5"]
    return args


@pytest.mark.slow
@pytest.mark.parametrize("method", ["oracle", "pebble"])
def test_four_envs_sigkill_then_resume_equals_the_uninterrupted_run(tmp_path, method):
    """walker-walk with num_envs = 4 past its 1000-step episodes (4 end together at step ~4000): killed after a
    checkpoint in sync mode and resumed, against one uninterrupted run in subprocess mode: the same logs."""
    steps = 4400
    env = dict(os.environ, OMP_NUM_THREADS="1", MUJOCO_GL="disabled")
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cli(killed, method, "sync", steps), cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.time() + 400
    while time.time() < deadline and proc.poll() is None:
        ck = killed / CHECKPOINT_NAME
        if ck.exists() and load_checkpoint(ck)["step"] >= 1200:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.1)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()[-2000:]
    ck = load_checkpoint(killed / CHECKPOINT_NAME)
    assert len(ck["envs"]) == 4 and ck["step"] % 400 == 0
    whole = tmp_path / "whole"
    for cmd in (_cli(killed, method, "sync", steps)[:4] + ["--resume", str(killed), "--no-progress"],
                _cli(whole, method, "subprocess", steps)):
        done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
    names = ["episodes.csv", "eval.csv"] + (["feedback.csv"] if method == "pebble" else [])
    for name in names:
        assert strip_time(rows(killed / name)) == strip_time(rows(whole / name)), name
    eps = rows(whole / "episodes.csv")
    assert len(eps) == 4 and {int(r["length"]) for r in eps} == {1000}
    assert [int(r["step"]) for r in eps] == [3997, 3998, 3999, 4000]
    if method == "oracle":  # one update per transition after the seed steps (PEBBLE adds its reset updates)
        assert load_checkpoint(whole / CHECKPOINT_NAME)["agent"]["num_updates"] == steps - 400
    else:
        fb = rows(whole / "feedback.csv")
        assert [int(r["step"]) for r in fb] == [800, 1600] and int(fb[-1]["labels"]) == 20

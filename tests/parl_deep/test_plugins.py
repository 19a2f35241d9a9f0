"""A tiny out-of-tree package registers a method and a teacher through entry points; ``parl train``,
``--resume`` and ``parl bench`` all find them, with no edit to the project."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .fixtures import REPO, rows

PLUGIN = '''
import numpy as np
from parl_deep.methods.oracle import OracleMethod


class ShapedOracle(OracleMethod):
    """The oracle on twice the true reward."""
    name = "shaped-oracle"

    def reward(self, obs, act, next_obs, env_reward):
        return 2.0 * env_reward


class FirstWins:
    """Prefers segment 0 of every pair; counts the batches it was shown."""

    def __init__(self, seed=None):
        self.calls = 0

    def label_pairs(self, pairs):
        self.calls += 1
        assert pairs.obs0.shape == pairs.obs1.shape and pairs.reward0 is not None
        return np.ones(len(pairs), np.float32), np.ones(len(pairs), bool)

    def observe_episode(self, true_return, length):
        pass

    def state_dict(self):
        return {"calls": self.calls}

    def load_state_dict(self, state):
        self.calls = state["calls"]
'''

SMALL = ["--set", "sac.seed_steps=100", "--set", "sac.hidden_dim=32", "--set", "sac.batch_size=32", "--eval-every",
         "200", "--checkpoint-every", "200", "--eval-episodes", "1", "--set", "eval_max_steps=10", "--no-progress"]
FEEDBACK = ["--num-unsup-steps", "100", "--num-interact", "100", "--max-feedback", "40", "--reward-batch", "10",
            "--segment", "20", "--set", "method_config.reward_hidden=16", "--set", "method_config.eval_pairs=0"]


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("site")
    (root / "parlplug").mkdir()
    (root / "parlplug" / "__init__.py").write_text(PLUGIN)
    info = root / "parlplug-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: parlplug\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[parl_bilevel.methods]\nshaped-oracle = parlplug:ShapedOracle\n\n"
                                           "[parl_bilevel.teachers]\nfirst-wins = parlplug:FirstWins\n")
    return root


def parl(plugin_path: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_path), str(REPO)]), "OMP_NUM_THREADS": "1",
           "MUJOCO_GL": "disabled"}
    return subprocess.run([sys.executable, "-m", "parl_cli.main", *args], capture_output=True, text=True,
                          timeout=900, env=env, cwd=cwd)


def test_a_plugin_method_trains_and_resumes(plugin_path, tmp_path):
    out = parl(plugin_path, "train", "--env", "gym:Pendulum-v1", "--method", "shaped-oracle", "--steps", "400",
               *SMALL, "--out", "r", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    eps = rows(tmp_path / "r" / "episodes.csv")
    assert len(eps) == 2 and all(float(e["return"]) == pytest.approx(2 * float(e["env_return"]), rel=1e-4)
                                 for e in eps)
    out = parl(plugin_path, "train", "--resume", "r", "--steps", "600", "--no-progress", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert len(rows(tmp_path / "r" / "episodes.csv")) == 3
    assert "shaped-oracle" in parl(plugin_path, "train", "--help", cwd=tmp_path).stdout


def test_a_plugin_teacher_labels_and_its_state_survives_resume(plugin_path, tmp_path):
    import torch

    out = parl(plugin_path, "train", "--env", "gym:Pendulum-v1", "--method", "pebble", "--teacher", "first-wins",
               "--steps", "400", *SMALL, *FEEDBACK, "--out", "r", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    fb = rows(tmp_path / "r" / "feedback.csv")
    assert [int(r["queries"]) for r in fb] == [10, 20, 30]  # sessions at 200, 300, 400
    ck = torch.load(tmp_path / "r" / "checkpoint.pt", weights_only=False)
    assert ck["method"]["teacher"] == {"calls": 3}
    out = parl(plugin_path, "train", "--resume", "r", "--steps", "500", "--no-progress", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    ck = torch.load(tmp_path / "r" / "checkpoint.pt", weights_only=False)
    assert ck["method"]["teacher"] == {"calls": 4} and json.loads((tmp_path / "r" / "config.json").read_text())[
        "method_config"]["teacher"] == "first-wins"


def test_parl_bench_runs_plugin_methods_and_teachers(plugin_path, tmp_path):
    spec = textwrap.dedent('''
        name = "plugins"
        preset = "cpu"
        steps = 400
        seeds = [0]
        tasks = ["gym:Pendulum-v1"]
        [train]
        eval_every = 200
        checkpoint_every = 200
        eval_episodes = 1
        eval_max_steps = 10
        [sac]
        seed_steps = 100
        hidden_dim = 32
        batch_size = 32
        [[methods]]
        name = "shaped"
        method = "shaped-oracle"
        [[methods]]
        name = "pebble-first"
        method = "pebble"
        options = { teacher = "first-wins", num_unsup_steps = 100, num_interact = 100, max_feedback = 20, reward_batch = 10, segment = 20, reward_hidden = 16, eval_pairs = 0 }
        ''')
    (tmp_path / "spec.toml").write_text(spec)
    out = parl(plugin_path, "bench", "spec.toml", "--workers", "1", "--out", "grid", "--progress-every", "5",
               cwd=tmp_path)
    assert out.returncode == 0, out.stderr + out.stdout
    assert "2/2 runs finished" in out.stdout
    fb = rows(tmp_path / "grid" / "runs" / "gym-Pendulum-v1__pebble-first__s0" / "feedback.csv")
    assert [int(r["queries"]) for r in fb] == [10, 20]

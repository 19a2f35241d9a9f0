"""Helpers shared by the deep-backend tests: small real run configs, log readers, and the ``parl train`` CLI."""
from __future__ import annotations

import csv
from pathlib import Path

from parl_deep.checkpoint import CHECKPOINT_NAME, load_checkpoint
from parl_deep.config import TrainConfig
from parl_deep.training import TrainLoop

REPO = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parent / "data"
TIMING = ("wall_time_s", "steps_per_s", "seconds")


def rows(path: Path) -> list[dict]:
    """The rows of a CSV log as dicts."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def strip_time(rs: list[dict]) -> list[dict]:
    """Log rows without their wall-clock columns (the only ones that differ between identical runs)."""
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rs]


def oracle_cfg(env: str, steps: int = 2000, **kw) -> TrainConfig:
    """Real environment and real SAC, with small networks so the test stays quick on 2 CPU cores."""
    cfg = TrainConfig.make(env, preset_name="cpu", steps=steps, eval_every=1000, eval_episodes=2,
                           eval_max_steps=100, checkpoint_every=1000, **kw)
    cfg.sac.hidden_dim, cfg.sac.batch_size, cfg.sac.seed_steps = 64, 64, 500
    return cfg


def feedback_cfg(env: str, method: str, steps: int = 3000, **mc) -> TrainConfig:
    """A short preference run: feedback sessions every 1000 steps from step 1000, small reward ensemble."""
    base = dict(num_unsup_steps=500, num_interact=1000, reward_batch=10, max_feedback=15, segment=50,
                reward_update=10, reward_hidden=32, reward_layers=2, eval_pairs=20, reset_update=10, corr_window=2000)
    if method == "pebble-surf":
        base.update(inv_label_ratio=2, mu=1)
    base.update(mc)
    cfg = TrainConfig.make(env, preset_name="cpu", steps=steps, eval_every=1500, eval_episodes=1,
                           eval_max_steps=50, checkpoint_every=1500, method=method, method_config=base)
    cfg.sac.hidden_dim, cfg.sac.batch_size, cfg.sac.seed_steps = 64, 64, 500
    return cfg


def loaded_loop(cfg: TrainConfig, run_dir: Path) -> TrainLoop:
    """A run loop restored from the checkpoint in ``run_dir``."""
    loop = TrainLoop(cfg, run_dir)
    loop.load_state_dict(load_checkpoint(run_dir / CHECKPOINT_NAME))
    return loop


def train_cli(args: list[str], capsys) -> tuple[int, str]:
    """``parl train ARGS --no-progress`` in-process: (exit status, stderr)."""
    from parl_cli.main import main

    rc = main(["train", *args, "--no-progress"])
    return rc, capsys.readouterr().err

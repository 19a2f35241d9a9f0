"""The training run loop: act, store, update, evaluate, log, checkpoint, resume.

One run lives in one directory::

    config.json      TrainConfig (with the SAC hyperparameters), written once at the start
    eval.csv         step, mean/std return, success rate over ``eval_episodes`` deterministic episodes
    episodes.csv     one row per training episode (returns, length, success, last losses, steps/s)
    tb/              TensorBoard scalars (the same numbers)
    checkpoint.pt    latest checkpoint (atomic; see parl_deep.checkpoint)
    feedback.csv     preference methods only: one row per feedback session (see parl_deep.pebble)

Crash safety. Every ``checkpoint_every`` steps the loop first flushes and fsyncs the CSV logs and TensorBoard,
then writes the checkpoint atomically: networks, optimisers, temperature, replay buffer, every random-number
generator (python, numpy, torch, the loop's own, both environments'), the live training episode (replayed
exactly, see parl_deep.envs), the method's state and the step counter. ``resume`` truncates the CSV logs to the
checkpoint's step and tells TensorBoard to purge later events, then continues. A run killed at any moment
therefore loses at most ``checkpoint_every`` steps, keeps every log row up to the checkpoint, and — on the
same machine and torch build — continues the very same curve it would have followed uninterrupted.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from parl_deep.checkpoint import CHECKPOINT_NAME, load_checkpoint, remove_stale_temp_files, save_checkpoint
from parl_deep.sac import PRESETS, SACConfig, preset


class ConfigError(ValueError):
    """Bad user input (reported by the CLI as a one-line error, without a traceback)."""


@dataclass
class TrainConfig:
    env: str
    method: str = "oracle"
    steps: int = 100_000
    seed: int = 0
    preset: str = "cpu"
    eval_every: int = 10_000
    eval_episodes: int = 10
    # Cap on the length of evaluation episodes (None: the full 1000 / 500 steps). Only for quick tests.
    eval_max_steps: int | None = None
    checkpoint_every: int = 10_000
    # Replay capacity (None: as many transitions as the run has steps, i.e. never overwrite).
    replay_capacity: int | None = None
    # Meta-World only: re-draw object/goal positions every episode (PEBBLE's setting) or keep one.
    metaworld_random_goal: bool = True
    sac: SACConfig = field(default_factory=SACConfig)
    method_config: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["sac"]["betas"] = list(d["sac"]["betas"])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown config keys {sorted(unknown)}; valid: {sorted(known)}")
        d = dict(d)
        d["sac"] = SACConfig.from_dict(d.get("sac", {}))
        return cls(**d)

    @classmethod
    def make(cls, env: str, *, preset_name: str = "cpu", **kwargs) -> "TrainConfig":
        """A config whose SAC hyperparameters come from ``preset_name`` for ``env``."""
        if preset_name not in PRESETS:
            raise ConfigError(f"unknown preset {preset_name!r}; valid presets: {', '.join(PRESETS)}")
        return cls(env=env, preset=preset_name, sac=preset(preset_name, env), **kwargs)

    def validate(self) -> None:
        from parl_deep.methods import METHODS

        if self.method not in METHODS:
            raise ConfigError(f"unknown method {self.method!r}; valid methods: {', '.join(sorted(METHODS))}")
        check = getattr(METHODS[self.method], "validate_config", None)  # methods that take options
        if check is not None:
            try:
                check(self.method_config)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        if self.preset not in PRESETS:
            raise ConfigError(f"unknown preset {self.preset!r}; valid presets: {', '.join(PRESETS)}")
        for name in ("steps", "eval_every", "eval_episodes", "checkpoint_every"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {v!r}")
        if self.eval_max_steps is not None and self.eval_max_steps <= 0:
            raise ConfigError(f"eval_max_steps must be positive or None, got {self.eval_max_steps!r}")
        if self.replay_capacity is not None and self.replay_capacity <= 0:
            raise ConfigError(f"replay_capacity must be positive or None, got {self.replay_capacity!r}")
        s = self.sac
        for name in ("hidden_dim", "hidden_depth", "batch_size", "critic_target_update_freq",
                     "actor_update_freq", "updates_per_step"):
            if getattr(s, name) <= 0:
                raise ConfigError(f"sac.{name} must be positive, got {getattr(s, name)!r}")
        if s.seed_steps < 0:
            raise ConfigError(f"sac.seed_steps must be >= 0, got {s.seed_steps!r}")


# ----------------------------------------------------------------------------------------------- logging


class CSVLog:
    """Append-only CSV with a fixed header; rows are flushed at once, fsynced at checkpoints."""

    def __init__(self, path: Path, fields: list[str]):
        self.path, self.fields = path, fields
        new = not path.exists() or path.stat().st_size == 0
        self._f = open(path, "a", newline="")
        self._w = csv.DictWriter(self._f, fieldnames=fields, extrasaction="ignore")
        if new:
            self._w.writeheader()
            self._f.flush()

    def write(self, row: dict) -> None:
        self._w.writerow({k: _fmt(row.get(k, "")) for k in self.fields})
        self._f.flush()

    def sync(self) -> None:
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()

    @staticmethod
    def truncate_after(path: Path, step: int) -> None:
        """Keep the header and rows with ``step <= step`` (drop rows written after the last checkpoint)."""
        if not path.exists():
            return
        with open(path, newline="") as f:
            lines = f.read().splitlines(keepends=True)
        if not lines:
            return
        kept = [lines[0]]
        for line in lines[1:]:
            try:
                row_step = int(line.split(",", 1)[0])
            except ValueError:  # a half-written last line from a kill: drop it
                continue
            if row_step <= step and line.endswith("\n"):
                kept.append(line)
        from parl_deep.checkpoint import atomic_write_bytes

        atomic_write_bytes(path, "".join(kept).encode())


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.6g}"
    return v


EVAL_FIELDS = ["step", "return_mean", "return_std", "success_rate", "episodes", "wall_time_s"]
EPISODE_FIELDS = ["step", "episode", "return", "env_return", "length", "success", "steps_per_s",
                  "critic_loss", "actor_loss", "alpha", "entropy", "q_mean", "wall_time_s"]


class _NullWriter:
    def add_scalar(self, *a, **k):
        pass

    def flush(self):
        pass

    def close(self):
        pass


def _tb_writer(logdir: Path, purge_step: int | None):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # tensorboard missing: CSV logs still work
        return _NullWriter()
    return SummaryWriter(str(logdir), purge_step=purge_step)


# ----------------------------------------------------------------------------------------------- loop


class TrainLoop:
    """State of one run. Methods see it as ``loop`` (``loop.env``, ``loop.agent``, ``loop.buffer``, ...)."""

    def __init__(self, cfg: TrainConfig, run_dir: Path):
        import torch

        from parl_deep.envs import make_env
        from parl_deep.methods import get_method
        from parl_deep.replay import ReplayBuffer
        from parl_deep.sac import SAC

        torch.set_num_threads(1)
        self.cfg, self.run_dir = cfg, run_dir
        random.seed(cfg.seed)
        np.random.seed(cfg.seed % 2**32)
        torch.manual_seed(cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)
        self.env = make_env(cfg.env, cfg.seed, random_goal=cfg.metaworld_random_goal)
        self.eval_env = make_env(cfg.env, cfg.seed + 10_000, random_goal=cfg.metaworld_random_goal)
        self.is_metaworld = cfg.env.startswith("metaworld:")
        obs_dim = self.env.observation_space.shape[0]
        act_dim = self.env.action_space.shape[0]
        self.agent = SAC(obs_dim, act_dim, cfg.sac)
        self.buffer = ReplayBuffer(obs_dim, act_dim, cfg.replay_capacity or cfg.steps)
        self.method = get_method(cfg.method)(self, cfg.method_config)
        self.step = 0
        self.episode = 0
        self.obs, _ = self.env.reset()
        self._ep = {"return": 0.0, "env_return": 0.0, "length": 0, "success": False}
        self.last_losses: dict[str, float] = {}
        self.last_eval: dict[str, float] = {}
        self.elapsed_before = 0.0  # wall time of earlier sessions of this run

    # -- checkpoint state
    def state_dict(self) -> dict:
        import torch

        return {
            "format": 1,
            "config": self.cfg.to_dict(),
            "step": self.step,
            "episode": self.episode,
            "obs": self.obs,
            "ep": dict(self._ep),
            "agent": self.agent.state_dict(),
            "buffer": self.buffer.state_dict(),
            "method": self.method.state_dict(),
            "env": self.env.get_state(),
            "eval_env": self.eval_env.get_state(),
            "rng": {
                "loop": self.rng.bit_generator.state,
                "python": random.getstate(),
                "numpy": np.random.get_state(),
                "torch": torch.get_rng_state(),
            },
            "last_losses": self.last_losses,
            "last_eval": self.last_eval,
            "elapsed": self.elapsed_before + (time.time() - self._t0 if hasattr(self, "_t0") else 0.0),
        }

    def load_state_dict(self, sd: dict) -> None:
        import torch

        self.step, self.episode = int(sd["step"]), int(sd["episode"])
        self.obs = sd["obs"]
        self._ep = dict(sd["ep"])
        self.agent.load_state_dict(sd["agent"])
        self.buffer.load_state_dict(sd["buffer"])
        self.method.load_state_dict(sd["method"])
        self.env.set_state(sd["env"])
        self.eval_env.set_state(sd["eval_env"])
        self.rng.bit_generator.state = sd["rng"]["loop"]
        random.setstate(sd["rng"]["python"])
        np.random.set_state(sd["rng"]["numpy"])
        torch.set_rng_state(sd["rng"]["torch"])
        self.last_losses = dict(sd["last_losses"])
        self.last_eval = dict(sd["last_eval"])
        self.elapsed_before = float(sd["elapsed"])

    # -- evaluation
    def evaluate(self) -> dict[str, float]:
        """Mean return (and success rate on Meta-World) of the deterministic policy over ``eval_episodes``."""
        env, cfg = self.eval_env, self.cfg
        max_steps = min(cfg.eval_max_steps or env.max_episode_steps, env.max_episode_steps)
        returns, successes = [], []
        for _ in range(cfg.eval_episodes):
            obs, _ = env.reset()
            total, success = 0.0, False
            for _t in range(max_steps):
                obs, r, term, trunc, info = env.step(self.agent.act(obs, deterministic=True))
                total += r
                success = success or bool(info.get("success", False))
                if term or trunc:
                    break
            env._needs_reset = True  # an episode cut short by eval_max_steps must not be continued
            returns.append(total)
            successes.append(success)
        out = {"return_mean": float(np.mean(returns)), "return_std": float(np.std(returns)),
               "episodes": len(returns)}
        if self.is_metaworld:
            out["success_rate"] = float(np.mean(successes))
        return out

    # -- the loop
    def run(self, *, progress: bool = True, stop_after: int | None = None) -> dict:
        """Train until ``cfg.steps`` (or, for tests, until ``stop_after`` steps without a final checkpoint)."""
        cfg, sac_cfg = self.cfg, self.cfg.sac
        d = self.run_dir
        eval_log = CSVLog(d / "eval.csv", EVAL_FIELDS)
        ep_log = CSVLog(d / "episodes.csv", EPISODE_FIELDS)
        tb = _tb_writer(d / "tb", purge_step=self.step + 1)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=cfg.steps, initial=self.step, unit="step", dynamic_ncols=True, file=sys.stderr,
                       mininterval=1.0)
        self._t0 = time.time()
        start_step = self.step
        t_rate, s_rate, rate = time.time(), self.step, 0.0
        try:
            while self.step < cfg.steps:
                if stop_after is not None and self.step >= stop_after:
                    break
                # act
                if self.step < sac_cfg.seed_steps:
                    action = self.rng.uniform(-1.0, 1.0, self.env.action_space.shape).astype(np.float32)
                else:
                    action = self.agent.act(self.obs)
                next_obs, env_reward, terminated, truncated, info = self.env.step(action)
                reward = float(self.method.reward(self.obs, action, next_obs, env_reward))
                self.buffer.add(self.obs, action, reward, env_reward, terminated, next_obs)
                self.obs = next_obs
                self.step += 1
                ep = self._ep
                ep["return"] += reward
                ep["env_return"] += env_reward
                ep["length"] += 1
                ep["success"] = ep["success"] or bool(info.get("success", False))
                if terminated or truncated:
                    self.episode += 1
                    row = {"step": self.step, "episode": self.episode, "return": ep["return"],
                           "env_return": ep["env_return"], "length": ep["length"],
                           "success": int(ep["success"]) if self.is_metaworld else "",
                           "steps_per_s": rate, "wall_time_s": self._wall(), **self.last_losses}
                    ep_log.write(row)
                    self.method.on_episode_end(dict(ep), self)
                    tb.add_scalar("train/episode_return", ep["return"], self.step)
                    tb.add_scalar("train/episode_env_return", ep["env_return"], self.step)
                    if self.is_metaworld:
                        tb.add_scalar("train/episode_success", float(ep["success"]), self.step)
                    for k, v in self.last_losses.items():
                        tb.add_scalar(f"train/{k}", v, self.step)
                    tb.add_scalar("train/steps_per_s", rate, self.step)
                    self.obs, _ = self.env.reset()
                    self._ep = {"return": 0.0, "env_return": 0.0, "length": 0, "success": False}
                for k, v in self.method.on_step(self.step, self).items():
                    tb.add_scalar(f"method/{k}", v, self.step)
                # learn
                if self.step > sac_cfg.seed_steps:  # after seed_steps random transitions
                    for _ in range(sac_cfg.updates_per_step):
                        batch = self.buffer.sample(sac_cfg.batch_size, self.rng)
                        r = self.method.batch_reward(batch, self)  # None: learn from the stored reward
                        if r is not None:
                            batch = (batch[0], batch[1], r, batch[3], batch[4])
                        losses = self.agent.update(*batch)
                        if losses:
                            self.last_losses = losses
                # evaluate
                if self.step % cfg.eval_every == 0 or self.step == cfg.steps:
                    res = self.evaluate()
                    self.last_eval = res
                    eval_log.write({"step": self.step, "wall_time_s": self._wall(), **res})
                    for k, v in res.items():
                        tb.add_scalar(f"eval/{k}", v, self.step)
                # progress
                if self.step % 200 == 0:
                    now = time.time()
                    rate = (self.step - s_rate) / max(now - t_rate, 1e-9)
                    if now - t_rate > 5.0:
                        t_rate, s_rate = now, self.step
                    if bar is not None:
                        bar.n = self.step
                        post = {"sps": f"{rate:.0f}"}
                        if self.last_eval:
                            post["eval_return"] = f"{self.last_eval['return_mean']:.1f}"
                            if "success_rate" in self.last_eval:
                                post["success"] = f"{self.last_eval['success_rate']:.2f}"
                        bar.set_postfix(post, refresh=False)
                        bar.refresh()
                # checkpoint
                if self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps:
                    eval_log.sync()
                    ep_log.sync()
                    tb.flush()
                    save_checkpoint(d / CHECKPOINT_NAME, self.state_dict())
        finally:
            if bar is not None:
                bar.n = self.step
                bar.close()
            eval_log.close()
            ep_log.close()
            tb.close()
        return {"step": self.step, "steps_this_session": self.step - start_step,
                "wall_time_s": self._wall(), "last_eval": self.last_eval}

    def _wall(self) -> float:
        return self.elapsed_before + (time.time() - self._t0)


# ----------------------------------------------------------------------------------------------- entry points


def _write_config(run_dir: Path, cfg: TrainConfig) -> None:
    from parl_deep.checkpoint import atomic_write_bytes

    atomic_write_bytes(run_dir / "config.json", (json.dumps(cfg.to_dict(), indent=2) + "\n").encode())


def read_config(run_dir: str | os.PathLike) -> TrainConfig:
    path = Path(run_dir) / "config.json"
    if not path.exists():
        raise ConfigError(f"{run_dir} is not a run directory (no config.json)")
    try:
        return TrainConfig.from_dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError) as exc:
        raise ConfigError(f"{path} is not a valid run config: {exc}") from None


def train(cfg: TrainConfig, out_dir: str | os.PathLike, *, progress: bool = True,
          stop_after: int | None = None) -> dict:
    """Start a run in ``out_dir``. If it already holds the *same* config, continue it from its checkpoint;
    if it holds a different run's config, refuse."""
    cfg.validate()
    from parl_deep.methods import get_method

    get_method(cfg.method).check_runtime(cfg.method_config)
    run_dir = Path(out_dir)
    if (run_dir / "config.json").exists():
        old = read_config(run_dir)
        if old.to_dict() != cfg.to_dict():
            diff = sorted(k for k in cfg.to_dict() if cfg.to_dict()[k] != old.to_dict().get(k))
            raise ConfigError(
                f"{run_dir} already holds a different run (config differs in: {', '.join(diff)}). "
                f"Use another --out, or `parl train --resume {run_dir}` to continue that run."
            )
        return resume(run_dir, progress=progress, stop_after=stop_after)
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_config(run_dir, cfg)
    loop = TrainLoop(cfg, run_dir)
    return loop.run(progress=progress, stop_after=stop_after)


def resume(run_dir: str | os.PathLike, *, steps: int | None = None, progress: bool = True,
           stop_after: int | None = None) -> dict:
    """Continue the run in ``run_dir`` from its last checkpoint (from scratch if it never wrote one).

    ``steps`` may raise the run's total number of steps (the config is updated).
    """
    run_dir = Path(run_dir)
    cfg = read_config(run_dir)
    if steps is not None:
        if steps <= 0:
            raise ConfigError(f"steps must be a positive integer, got {steps!r}")
        cfg.steps = steps
    cfg.validate()
    from parl_deep.methods import get_method

    get_method(cfg.method).check_runtime(cfg.method_config)
    if steps is not None:
        _write_config(run_dir, cfg)
    remove_stale_temp_files(run_dir)
    loop = TrainLoop(cfg, run_dir)
    ckpt_path = run_dir / CHECKPOINT_NAME
    ckpt_step = 0
    if ckpt_path.exists():
        sd = load_checkpoint(ckpt_path)
        saved = dict(sd["config"])
        now = cfg.to_dict()
        saved.pop("steps", None)
        now.pop("steps", None)
        if saved != now:
            raise ConfigError(f"{ckpt_path} was written by a run with a different config than {run_dir}/config.json")
        loop.load_state_dict(sd)
        ckpt_step = loop.step
    # Drop log rows written after the checkpoint: the resumed run writes them again.
    for name in ("eval.csv", "episodes.csv", *loop.method.log_files):
        CSVLog.truncate_after(run_dir / name, ckpt_step)
    if ckpt_step >= cfg.steps:
        return {"step": loop.step, "steps_this_session": 0, "wall_time_s": loop.elapsed_before,
                "last_eval": loop.last_eval}
    return loop.run(progress=progress, stop_after=stop_after)

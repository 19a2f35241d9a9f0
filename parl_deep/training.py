"""The training run loop: act, store, update, evaluate, log, checkpoint, resume.

One run lives in one directory (file names: :mod:`parl_deep.io`): ``config.json`` (the
:class:`~parl_deep.config.TrainConfig`, written once), ``eval.csv`` (mean/std return and success rate over
``eval_episodes`` deterministic episodes), ``episodes.csv`` (one row per training episode), ``tb/`` (TensorBoard),
``checkpoint.pt``, and the method's own logs (``feedback.csv``, ``aparl.csv``).

Crash safety. Every ``checkpoint_every`` steps the loop first flushes and fsyncs the CSV logs and TensorBoard,
then writes the checkpoint atomically: networks, optimisers, temperature, replay buffer, every random-number
generator (python, numpy, torch, the loop's own, both environments'), the live training episode (replayed
exactly, see :mod:`parl_deep.envs`), the method's state and the step counter. ``resume`` truncates the CSV logs
to the checkpoint's step and tells TensorBoard to purge later events, then continues. A run killed at any moment
therefore loses at most ``checkpoint_every`` steps, keeps every log row up to the checkpoint, and -- on the same
machine and torch build -- continues the very same curve it would have followed uninterrupted.

Methods are looked up by name in the lazy registry (:mod:`parl_deep.methods`); this module imports none of them.
"""
from __future__ import annotations

import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

from parl_deep import io
from parl_deep.checkpoint import CheckpointError, load_latest, remove_stale_temp_files, save_checkpoint
from parl_deep.config import (ConfigError, DeviceUnavailableError, TrainConfig, check_torch_device, config_diff,
                              read_config)
from parl_deep.envs import suite_of
from parl_deep.evaluation import run_episodes
from parl_deep.methods import get_method

__all__ = ["TrainLoop", "train", "resume", "read_config", "check_config", "resolve_method_options", "canonical_config",
           "run_length_problems",
           "EVAL_FIELDS", "EPISODE_FIELDS"]

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


def _new_episode() -> dict:
    return {"return": 0.0, "env_return": 0.0, "length": 0, "success": False}


class TrainLoop:
    """State of one run. Methods see it as ``loop`` (``loop.env``, ``loop.agent``, ``loop.buffer``, ...)."""

    def __init__(self, cfg: TrainConfig, run_dir: Path):
        import torch

        from parl_deep.agents.sac import SAC
        from parl_deep.envs import make_env
        from parl_deep.replay import ReplayBuffer

        torch.set_num_threads(1)
        self.cfg, self.run_dir = cfg, run_dir
        random.seed(cfg.seed)
        np.random.seed(cfg.seed % 2**32)
        torch.manual_seed(cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)
        self.env = make_env(cfg.env, cfg.seed, random_goal=cfg.metaworld_random_goal)
        self.eval_env = make_env(cfg.env, cfg.seed + 10_000, random_goal=cfg.metaworld_random_goal)
        self.is_metaworld = suite_of(cfg.env) == "metaworld"
        obs_dim = self.env.observation_space.shape[0]
        act_dim = self.env.action_space.shape[0]
        self.agent = SAC(obs_dim, act_dim, cfg.sac, device=cfg.device)
        self.buffer = ReplayBuffer(obs_dim, act_dim, cfg.replay_capacity or cfg.steps)
        self.method = get_method(cfg.method)(self, cfg.method_config)
        self.step = 0
        self.episode = 0
        self.obs, _ = self.env.reset()
        self._ep = _new_episode()
        self.last_losses: dict[str, float] = {}
        self.last_eval: dict[str, float] = {}
        self.elapsed_before = 0.0  # wall time of earlier sessions of this run
        self._t0: float | None = None
        self._rate = 0.0  # environment steps per second, refreshed every 200 steps

    live_episode = property(lambda self: self.episode, doc="id of the episode whose transition is being stored")

    def wall_time(self) -> float:
        """Seconds of training so far, over every session of this run."""
        return self.elapsed_before + (time.time() - self._t0 if self._t0 is not None else 0.0)

    # -- checkpoint state
    def state_dict(self) -> dict:
        return {
            "format": 1, "config": self.cfg.to_dict(), "step": self.step, "episode": self.episode,
            "obs": self.obs, "ep": dict(self._ep), "agent": self.agent.state_dict(),
            "buffer": self.buffer.state_dict(), "method": self.method.state_dict(),
            "env": self.env.get_state(), "eval_env": self.eval_env.get_state(),
            "rng": io.get_rng_states(self.rng), "last_losses": self.last_losses, "last_eval": self.last_eval,
            "elapsed": self.wall_time(),
        }

    def load_state_dict(self, sd: dict) -> None:
        self.step, self.episode = int(sd["step"]), int(sd["episode"])
        self.obs = sd["obs"]
        self._ep = dict(sd["ep"])
        self.agent.load_state_dict(sd["agent"])
        self.buffer.load_state_dict(sd["buffer"], grow=self.cfg.replay_capacity is None)  # extended by --steps
        self.method.load_state_dict(sd["method"])
        self.env.set_state(sd["env"])
        self.eval_env.set_state(sd["eval_env"])
        io.set_rng_states(sd["rng"], self.rng)
        self.last_losses = dict(sd["last_losses"])
        self.last_eval = dict(sd["last_eval"])
        self.elapsed_before = float(sd["elapsed"])

    # -- evaluation
    def evaluate(self) -> dict[str, float]:
        """Mean return (and success rate on Meta-World) of the deterministic policy over ``eval_episodes``."""
        returns, successes = run_episodes(lambda o: self.agent.act(o, deterministic=True), self.eval_env,
                                          self.cfg.eval_episodes, self.cfg.eval_max_steps)
        out = {"return_mean": float(np.mean(returns)), "return_std": float(np.std(returns)),
               "episodes": len(returns)}
        if self.is_metaworld:
            out["success_rate"] = float(np.mean(successes))
        return out

    # -- one environment step, in its phases
    def _act(self) -> np.ndarray:
        if self.step < self.cfg.sac.seed_steps:
            return self.rng.uniform(-1.0, 1.0, self.env.action_space.shape).astype(np.float32)
        return self.agent.act(self.obs)

    def _store(self, action: np.ndarray) -> tuple[bool, bool]:
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
        return terminated, truncated

    def _end_episode(self, ep_log: io.CSVLog, tb) -> None:
        ep = self._ep
        self.episode += 1
        ep_log.write({"step": self.step, "episode": self.episode, "return": ep["return"],
                      "env_return": ep["env_return"], "length": ep["length"],
                      "success": int(ep["success"]) if self.is_metaworld else "",
                      "steps_per_s": self._rate, "wall_time_s": self.wall_time(), **self.last_losses})
        self.method.on_episode_end(dict(ep), self)
        tb.add_scalar("train/episode_return", ep["return"], self.step)
        tb.add_scalar("train/episode_env_return", ep["env_return"], self.step)
        if self.is_metaworld:
            tb.add_scalar("train/episode_success", float(ep["success"]), self.step)
        for k, v in self.last_losses.items():
            tb.add_scalar(f"train/{k}", v, self.step)
        tb.add_scalar("train/steps_per_s", self._rate, self.step)
        self.obs, _ = self.env.reset()
        self._ep = _new_episode()

    def _learn(self) -> None:
        sac_cfg = self.cfg.sac
        if self.step <= sac_cfg.seed_steps:  # after seed_steps random transitions
            return
        for _ in range(sac_cfg.updates_per_step):
            batch = self.buffer.sample(sac_cfg.batch_size, self.rng)
            if self.cfg.device != "cpu":
                batch = tuple(t.to(self.agent.device, non_blocking=True) for t in batch)
            r = self.method.batch_reward(batch, self)  # None: learn from the stored reward
            if r is not None:
                batch = (batch[0], batch[1], r, batch[3], batch[4])
            losses = self.agent.update(*batch)
            if losses:
                self.last_losses = losses

    def _evaluate_and_log(self, eval_log: io.CSVLog, tb) -> None:
        res = self.evaluate()
        self.last_eval = res
        eval_log.write({"step": self.step, "wall_time_s": self.wall_time(), **res})
        for k, v in res.items():
            tb.add_scalar(f"eval/{k}", v, self.step)

    def _progress(self, bar, clock: list[float]) -> None:
        """Refresh the step rate (``clock`` = [time, step] of the rate window) and the progress bar."""
        now = time.time()
        self._rate = (self.step - clock[1]) / max(now - clock[0], 1e-9)
        if now - clock[0] > 5.0:
            clock[0], clock[1] = now, self.step
        if bar is None:
            return
        bar.n = self.step
        post = {"sps": f"{self._rate:.0f}"}
        if self.last_eval:
            post["eval_return"] = f"{self.last_eval['return_mean']:.1f}"
            if "success_rate" in self.last_eval:
                post["success"] = f"{self.last_eval['success_rate']:.2f}"
        bar.set_postfix(post, refresh=False)
        bar.refresh()

    # -- the loop
    def run(self, *, progress: bool = True, stop_after: int | None = None) -> dict:
        """Train until ``cfg.steps`` (or, for tests, until ``stop_after`` steps without a final checkpoint)."""
        cfg, d = self.cfg, self.run_dir
        eval_log = io.CSVLog(d / io.EVAL_CSV, EVAL_FIELDS)
        ep_log = io.CSVLog(d / io.EPISODES_CSV, EPISODE_FIELDS)
        tb = _tb_writer(d / io.TB_DIR, purge_step=self.step + 1)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=cfg.steps, initial=self.step, unit="step", dynamic_ncols=True, file=sys.stderr,
                       mininterval=1.0)
        self._t0 = time.time()
        start_step = self.step
        clock = [time.time(), float(self.step)]
        try:
            while self.step < cfg.steps and (stop_after is None or self.step < stop_after):
                terminated, truncated = self._store(self._act())
                if terminated or truncated:
                    self._end_episode(ep_log, tb)
                for k, v in self.method.on_step(self.step, self).items():
                    tb.add_scalar(f"method/{k}", v, self.step)
                self._learn()
                if self.step % cfg.eval_every == 0 or self.step == cfg.steps:
                    self._evaluate_and_log(eval_log, tb)
                if self.step % 200 == 0:
                    self._progress(bar, clock)
                if self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps:
                    eval_log.sync()
                    ep_log.sync()
                    tb.flush()
                    save_checkpoint(d / io.CHECKPOINT_NAME, self.state_dict())
        finally:
            if bar is not None:
                bar.n = self.step
                bar.close()
            eval_log.close()
            ep_log.close()
            tb.close()
        return {"step": self.step, "steps_this_session": self.step - start_step,
                "wall_time_s": self.wall_time(), "last_eval": self.last_eval}


# ----------------------------------------------------------------------------------------------- entry points


def check_config(cfg: TrainConfig) -> None:
    """Every field of ``cfg`` and the method's options; raises :class:`ConfigError` naming the first problem."""
    cfg.validate()
    method = get_method(cfg.method)
    try:
        method.validate_config(cfg.method_config)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def run_length_problems(cfg: TrainConfig) -> list[str]:
    """Why ``cfg`` is too short to do what it is for: steps that end before one of the method's milestones (its
    first SAC update, its first feedback session, ...) or before a first evaluation or checkpoint. The one rule
    of ``parl train`` (which refuses such a run unless asked) and ``parl bench`` (a spec issue)."""
    out = [f"steps = {cfg.steps} ends before {what}" for step, what in get_method(cfg.method).milestones(cfg)
           if cfg.steps < step]
    for name, what in (("eval_every", "evaluate"), ("checkpoint_every", "checkpoint")):
        if getattr(cfg, name) > cfg.steps:
            out.append(f"{name} = {getattr(cfg, name)} is larger than steps = {cfg.steps}: the run would never "
                       f"{what} before its end")
    return out


def _check_length(cfg: TrainConfig, allow_short: bool) -> None:
    problems = run_length_problems(cfg)
    if problems and not allow_short:
        raise ConfigError(f"the run is too short: {'; '.join(problems)}. Give more steps, or allow it with "
                          f"--allow-short (allow_short=True)")


def resolve_method_options(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with the method's presets filled in under its options (so ``config.json`` records every setting)."""
    check_config(cfg)
    try:
        cfg.method_config = get_method(cfg.method).resolve_config(cfg.method_config, cfg.env)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return cfg


def canonical_config(d: dict) -> dict:
    """A saved config as today's code reads it: every field that an older version of the code did not write
    (a new TrainConfig field, a new method option) filled with its default, so that a run written before a
    field existed compares equal to the same run asked for today. A config that no longer validates is returned
    as it is (it then differs, and the caller reports where)."""
    try:
        return resolve_method_options(TrainConfig.from_dict(dict(d))).to_dict()
    except (ConfigError, ValueError, TypeError, KeyError):
        return dict(d)


def _write_config(run_dir: Path, cfg: TrainConfig) -> None:
    io.atomic_write(run_dir / io.CONFIG_NAME, json.dumps(cfg.to_dict(), indent=2) + "\n")


def train(cfg: TrainConfig, out_dir: str | os.PathLike, *, progress: bool = True,
          stop_after: int | None = None, allow_short: bool = False) -> dict:
    """Start a run in ``out_dir``. If it already holds the *same* config, continue it from its checkpoint;
    if it holds a different run's config, refuse. A run too short for its method (:func:`run_length_problems`)
    is refused unless ``allow_short``."""
    check_config(cfg)
    check_torch_device(cfg.device, "device")
    get_method(cfg.method).check_runtime(cfg.method_config)
    _check_length(cfg, allow_short)
    run_dir = Path(out_dir)
    if (run_dir / io.CONFIG_NAME).exists():
        old, now = canonical_config(read_config(run_dir).to_dict()), canonical_config(cfg.to_dict())
        if old != now:
            diff = config_diff(old, now)
            raise ConfigError(
                f"{run_dir} already holds a different run (config differs in: {', '.join(diff)}). "
                f"Use another --out, or `parl train --resume {run_dir}` to continue that run."
            )
        return resume(run_dir, progress=progress, stop_after=stop_after, start_if_none=True)
    loop = TrainLoop(cfg, run_dir)  # writes nothing: an environment that cannot be built leaves no run directory
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_config(run_dir, cfg)
    return loop.run(progress=progress, stop_after=stop_after)


def resume(run_dir: str | os.PathLike, *, steps: int | None = None, progress: bool = True,
           stop_after: int | None = None, allow_short: bool = False, restart: bool = False,
           start_if_none: bool = False, device: str | None = None) -> dict:
    """Continue the run in ``run_dir`` from its last readable checkpoint (:func:`parl_deep.checkpoint.load_latest`).

    A run that has no checkpoint yet (killed before its first), or none that can be read, is refused with a
    :class:`ConfigError` unless ``restart``, which starts it again from step 0 (``start_if_none``: only a run
    that never wrote a checkpoint is started, as :func:`train` does for its own directory). ``steps`` may raise the run's
    total number of steps and ``device`` move the run to another device (the config is updated). Nothing in
    ``run_dir`` is touched before every check passed.
    """
    run_dir = Path(run_dir)
    cfg = read_config(run_dir)
    if steps is not None:
        if steps <= 0:
            raise ConfigError(f"steps must be a positive integer, got {steps!r}")
        cfg.steps = steps
    if device is not None:
        cfg.device = device
    check_config(cfg)
    try:
        check_torch_device(cfg.device, "device")
    except DeviceUnavailableError as exc:
        raise DeviceUnavailableError(f"{exc}; resume it on this machine with --device cpu") from None
    get_method(cfg.method).check_runtime(cfg.method_config)
    if steps is not None:
        _check_length(cfg, allow_short)
    try:
        sd = load_latest(run_dir)
    except CheckpointError:
        if not restart:
            raise
        sd = None
    if sd is None and not (restart or start_if_none):
        raise ConfigError(f"{run_dir} has no checkpoint yet (the run stopped before its first one, at step "
                          f"{cfg.checkpoint_every}); `parl train --resume {run_dir} --restart` starts it again "
                          f"from step 0")
    if sd is not None:
        saved, now = canonical_config(sd["config"]), canonical_config(cfg.to_dict())
        for key in ("steps", "device"):  # a run may be extended, and moved to another device
            saved.pop(key, None)
            now.pop(key, None)
        if saved != now:
            raise ConfigError(f"the checkpoint in {run_dir} was written by a run with a different config than "
                              f"{run_dir}/config.json")
    if steps is not None or device is not None:
        _write_config(run_dir, cfg)
    remove_stale_temp_files(run_dir)
    loop = TrainLoop(cfg, run_dir)
    ckpt_step = 0
    if sd is not None:
        loop.load_state_dict(sd)
        ckpt_step = loop.step
    # Drop log rows written after the checkpoint: the resumed run writes them again.
    for name in (io.EVAL_CSV, io.EPISODES_CSV, *loop.method.log_files):
        io.CSVLog.truncate_after(run_dir / name, ckpt_step)
    if ckpt_step >= cfg.steps:
        return {"step": loop.step, "steps_this_session": 0, "wall_time_s": loop.elapsed_before,
                "last_eval": loop.last_eval}
    return loop.run(progress=progress, stop_after=stop_after)

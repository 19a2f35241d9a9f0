"""Training runs: start one (:func:`train`), resume one (:func:`resume`), and the checks both make; the loop
itself is :class:`parl_deep.training.loop.TrainLoop`.

One run lives in one directory (file names: :mod:`parl_deep.io`): ``config.json`` (the
:class:`~parl_deep.config.TrainConfig`, written once), ``eval.csv`` (mean/std return and success rate over
``eval_episodes`` deterministic episodes), ``episodes.csv`` (one row per training episode), ``tb/`` (TensorBoard),
``checkpoint.pt``, and the method's own logs (``feedback.csv``, ``aparl.csv``).

Crash safety. Every ``checkpoint_every`` steps the loop first flushes and fsyncs the CSV logs and TensorBoard,
then writes the checkpoint atomically: networks, optimisers, temperature, replay buffer, every random-number
generator (python, numpy, torch, the loop's own, every environment's), every training environment's live
episode (replayed exactly, see :mod:`parl_deep.envs`; ``num_envs`` of them, :mod:`parl_deep.collection`), the
method's state and the step counter. ``resume`` truncates the CSV logs
to the checkpoint's step and tells TensorBoard to purge later events, then continues. A run killed at any moment
therefore loses at most ``checkpoint_every`` steps, keeps every log row up to the checkpoint, and -- on the same
machine and torch build -- continues the very same curve it would have followed uninterrupted.

Methods are looked up by name in the lazy registry (:mod:`parl_deep.methods`); this module imports none of them.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from parl_deep import io
from parl_deep.checkpoint import CheckpointError, load_latest, remove_stale_temp_files
from parl_deep.config import (ConfigError, DeviceUnavailableError, TrainConfig, check_torch_device, config_diff,
                              read_config)
from parl_deep.methods import get_method
from parl_deep.training.loop import EPISODE_FIELDS, EVAL_FIELDS, TrainLoop

__all__ = ["TrainLoop", "train", "resume", "read_config", "check_config", "resolve_method_options",
           "canonical_config", "run_length_problems", "EVAL_FIELDS", "EPISODE_FIELDS"]

# ----------------------------------------------------------------------------------------------- entry points


def check_config(cfg: TrainConfig) -> None:
    """Every field of ``cfg`` and the method's options; raises :class:`ConfigError` naming the first problem."""
    cfg.validate()
    method = get_method(cfg.method)
    try:
        method.validate_config(cfg.method_config)
        method.check_run(cfg)
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
    field existed compares equal to the same run asked for today. Nothing is validated here (the caller's checks
    report what is wrong); a config that cannot be read is returned as it is, and then differs."""
    try:
        cfg = TrainConfig.from_dict(dict(d))
        cfg.method_config = get_method(cfg.method).resolve_config(cfg.method_config, cfg.env)
        return cfg.to_dict()
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
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_config(run_dir, cfg)
        return loop.run(progress=progress, stop_after=stop_after)
    finally:
        loop.close()


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
    try:
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
    finally:
        loop.close()

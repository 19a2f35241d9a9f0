"""The configuration of one training run (``config.json`` of a run directory) and the errors of bad input.

``TrainConfig`` holds what the run loop needs; the SAC hyperparameters are its ``sac`` section
(:class:`parl_deep.agents.sac.SACConfig`) and the method's options its ``method_config`` mapping (each method
parses it with its own config dataclass). Field docstrings are the ``--help`` of ``parl train``; constraints are
declared with :func:`parl_deep.fields.opt` and checked by :meth:`TrainConfig.validate`.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from parl_deep.agents.sac import PRESETS, SACConfig, preset
from parl_deep.envs.vector import VECTOR_MODES
from parl_deep.fields import DEVICE_PATTERN, ConfigError, check_fields, config_diff, from_dict, opt
from parl_deep.io import CONFIG_NAME

__all__ = ["TrainConfig", "ConfigError", "DeviceUnavailableError", "check_torch_device", "config_diff", "read_config"]


class DeviceUnavailableError(ConfigError):
    """The run's config names a device this machine does not have."""


def check_torch_device(device: str, what: str) -> None:
    """Raise :class:`DeviceUnavailableError` unless torch sees ``device`` (``cpu``, ``cuda`` or ``cuda:N``)."""
    if device == "cpu":
        return
    import torch

    n_gpu = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = int(device.partition(":")[2] or 0)
    if index >= n_gpu:
        raise DeviceUnavailableError(f"{what}={device!r} but torch sees {n_gpu or 'no'} CUDA "
                                     f"device{'' if n_gpu == 1 else 's'}")


@dataclass
class TrainConfig:
    """One training run. Every field is settable with ``--set KEY=VALUE``."""

    env: str
    """environment name: dmc:<domain>-<task>, metaworld:<task> or gym:<gymnasium id>"""
    method: str = "oracle"
    """training method (a name of the method registry, parl_deep.methods)"""
    steps: int = opt(100_000, low=1, flag=True)
    """total environment steps of the run"""
    seed: int = opt(0, low=0, flag=True)
    """seed of every random stream of the run"""
    preset: str = opt("cpu", choices=PRESETS)
    """SAC hyperparameter preset the run started from"""
    eval_every: int = opt(10_000, low=1, flag=True)
    """evaluate the deterministic policy every this many steps"""
    eval_episodes: int = opt(10, low=1, flag=True)
    """episodes per evaluation"""
    eval_max_steps: int | None = opt(None, low=1)
    """cap on the length of evaluation episodes (null: the full 1000 / 500 steps); only for quick tests"""
    checkpoint_every: int = opt(10_000, low=1, flag=True)
    """write a checkpoint every this many steps"""
    replay_capacity: int | None = opt(None, low=1)
    """replay capacity (null: as many transitions as the run has steps, i.e. never overwrite)"""
    device: str = opt("cpu", pattern=DEVICE_PATTERN, flag=True)
    """torch device of the run: cpu, cuda or cuda:N (SAC, replay batches, the reward ensemble, Term 2); a
    checkpoint written on one device resumes on another"""
    num_envs: int = opt(1, low=1, flag=True)
    """environments stepped together through the gymnasium vector API; each of their transitions counts as one
    step (steps, eval_every, checkpoint_every and replay_capacity must be multiples of num_envs) and is followed
    by sac.updates_per_step SAC updates, so the update-to-data ratio does not change with num_envs (a vector
    step that starts within sac.seed_steps acts at random in every copy)"""
    vector_mode: str = opt("sync", choices=VECTOR_MODES, flag=True)
    """how the num_envs environments run: sync (one after another in this process) or subprocess (one process
    each, stepped in parallel)"""
    metaworld_random_goal: bool = True
    """Meta-World only: re-draw object and goal positions every episode (PEBBLE's setting) or keep one"""
    sac: SACConfig = dataclasses.field(default_factory=SACConfig)
    """SAC hyperparameters (--set sac.KEY=VALUE)"""
    method_config: dict[str, Any] = dataclasses.field(default_factory=dict)
    """the method's options (--set method_config.KEY=VALUE)"""

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["sac"]["betas"] = list(d["sac"]["betas"])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        try:
            return from_dict(cls, d, "config key")
        except TypeError as exc:  # e.g. a missing env
            raise ConfigError(f"bad run config: {exc}") from None

    @classmethod
    def make(cls, env: str, *, preset_name: str = "cpu", **kwargs) -> "TrainConfig":
        """A config whose SAC hyperparameters come from ``preset_name`` for ``env``."""
        if preset_name not in PRESETS:
            raise ConfigError(f"unknown preset {preset_name!r}; valid presets: {', '.join(PRESETS)}")
        return cls(env=env, preset=preset_name, sac=preset(preset_name, env), **kwargs)

    def validate(self) -> None:
        """Types and ranges of every field (the method's options are checked by the method, see
        :func:`parl_deep.training.check_config`)."""
        if not isinstance(self.env, str):
            raise ConfigError(f"env must be a string, got {self.env!r}")
        check_fields(self)
        for name in ("steps", "eval_every", "checkpoint_every", "replay_capacity"):
            value = getattr(self, name)
            if value is not None and value % self.num_envs:
                raise ConfigError(f"{name} = {value} must be a multiple of num_envs = {self.num_envs} (the "
                                  f"environments are stepped together, so every count moves by num_envs)")


def read_config(run_dir: str | os.PathLike) -> TrainConfig:
    """The :class:`TrainConfig` saved in ``run_dir``; :class:`ConfigError` when there is none or it is bad."""
    path = Path(run_dir) / CONFIG_NAME
    if not path.exists():
        raise ConfigError(f"{run_dir} is not a run directory (no {CONFIG_NAME})")
    try:
        return TrainConfig.from_dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError) as exc:
        raise ConfigError(f"{path} is not a valid run config: {exc}") from None

"""What a training method is: the hooks through which it changes what SAC learns from and what else happens in a
run. The run loop (:mod:`parl_deep.training`) is method-agnostic and calls, in this order every step:

``reward(obs, act, next_obs, env_reward) -> float``
    the reward stored in the replay buffer for one transition (the oracle stores ``env_reward``; PEBBLE and
    A-PARL store the learned reward model's prediction);
``on_episode_end(episode, loop)``
    when a training episode ends (before the reset); ``episode`` holds its ``return`` (of the stored rewards),
    ``env_return`` (true), ``length`` and ``success``;
``on_step(step, loop) -> dict``
    after the transition is stored, before the SAC updates: feedback phases (query a teacher, fit a reward model,
    relabel the buffer) go here; returns scalars to log;
``batch_reward(batch, loop) -> tensor | None``
    for every SAC minibatch ``(obs, act, reward, next_obs, not_done)``: None learns from the stored reward, a
    ``(B, 1)`` tensor replaces it for that update (PEBBLE's intrinsic reward during pre-training);
``state_dict()`` / ``load_state_dict(sd)``
    everything the method carries across a checkpoint (reward model, optimiser, counters, its own RNG).

Options. A method that takes options names a dataclass ``config_cls`` (field docstrings are its ``--help``) with
a strict ``from_dict`` that raises ``ValueError`` on a bad option; ``resolve_config`` fills in presets (the CLI
saves the result in ``config.json``); ``check_runtime`` refuses a config this machine cannot run (a missing GPU)
before anything is written. A method without ``config_cls`` takes no options.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from parl_deep.fields import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from parl_deep.config import TrainConfig
    from parl_deep.training import TrainLoop

__all__ = ["Method"]


class Method:
    """Base class; the default hooks do nothing and store the environment reward."""

    name: ClassVar[str] = "base"
    config_cls: ClassVar[type | None] = None
    # CSV files (in the run directory, with a ``step`` column) this method appends to; ``resume`` drops their
    # rows written after the checkpoint, as it does for the loop's own logs.
    log_files: ClassVar[tuple[str, ...]] = ()

    def __init__(self, loop: "TrainLoop", config: dict[str, Any]):
        self.loop = loop
        self.config = dict(config)

    @classmethod
    def validate_config(cls, config: dict[str, Any]) -> None:
        """Raise ``ValueError`` (a :class:`ConfigError`) naming the first bad option."""
        if cls.config_cls is None:
            if config:
                raise ConfigError(f"method {cls.name!r} takes no options, got {sorted(config)}")
            return
        cls.config_cls.from_dict(dict(config))

    @classmethod
    def resolve_config(cls, config: dict[str, Any], env: str) -> dict[str, Any]:
        """Every option explicit, presets for ``env`` filled in under the user's options."""
        return dict(config)

    @classmethod
    def milestones(cls, cfg: "TrainConfig") -> list[tuple[int, str]]:
        """``(step, what)`` events a run must reach to do what the method is for (a shorter run trains nothing
        of it); :func:`parl_deep.training.run_length_problems` checks them for ``parl train`` and ``parl bench``."""
        return [(cfg.sac.seed_steps + 1, f"SAC's first update (after sac.seed_steps = {cfg.sac.seed_steps} "
                                         f"random steps)")]

    @classmethod
    def check_run(cls, cfg: "TrainConfig") -> None:
        """Raise :class:`ConfigError` for what the options cannot do in this run as a whole (its length, replay
        capacity, seed phase, number of environments); :meth:`validate_config` sees the options alone.
        :func:`parl_deep.training.check_config` (``parl train``, resume) and ``parl bench`` call it before a run
        starts."""

    @classmethod
    def check_runtime(cls, config: dict[str, Any]) -> None:
        """Raise :class:`parl_deep.config.DeviceUnavailableError` if this machine cannot run ``config`` (e.g. it
        names a GPU that torch does not see). ``train``/``resume`` call it before they write or load anything."""

    def reward(self, obs, act, next_obs, env_reward: float) -> float:
        return env_reward

    def on_episode_end(self, episode: dict[str, Any], loop: "TrainLoop") -> None:
        pass

    def batch_reward(self, batch, loop: "TrainLoop"):
        return None

    def on_step(self, step: int, loop: "TrainLoop") -> dict[str, float]:
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, sd: dict) -> None:
        pass

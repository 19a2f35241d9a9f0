"""Training methods: what reward SAC learns from, and what else happens during a run.

The run loop (:mod:`parl_deep.train`) is method-agnostic. A method plugs in through these hooks:

``reward(obs, act, next_obs, env_reward) -> float``
    the reward stored in the replay buffer for one transition (the oracle returns ``env_reward``;
    PEBBLE / A-PARL return a learned reward model's prediction);
``on_step(step, loop) -> dict``
    called after every environment step (after the transition is stored, before the SAC updates);
    feedback phases (query a teacher, fit a reward model, relabel the buffer with
    ``loop.buffer.relabel(...)``) go here; returns scalars to log (may be empty);
``on_episode_end(episode, loop)``
    called when a training episode ends (before the environment is reset); ``episode`` holds its
    ``return`` (of the stored rewards), ``env_return`` (true), ``length`` and ``success``;
``batch_reward(batch, loop) -> tensor | None``
    called for every SAC minibatch ``(obs, act, reward, next_obs, not_done)``: ``None`` (the default) means
    "learn from the stored reward", a ``(B, 1)`` tensor replaces it for that update (PEBBLE's intrinsic
    reward during unsupervised pre-training);
``state_dict()`` / ``load_state_dict(sd)``
    everything the method must carry across a checkpoint (reward-model weights, optimiser, query
    counters, its own RNG...). The loop saves it inside the run's checkpoint.

Options come from ``TrainConfig.method_config``. A method that takes options may define the classmethod
``validate_config(config)`` (raise ``ValueError`` on bad options; ``TrainConfig.validate`` and ``parl bench``
call it when it exists; the CLI treats a method without it as taking no options), and ``resolve_config(config,
env)`` fills in defaults / presets (the CLI saves the result in ``config.json``).

Register a new method with ``@register_method("name")``; ``parl train --method`` accepts registered names.
PEBBLE and PEBBLE+SURF live in :mod:`parl_deep.pebble` (imported at the bottom of this module).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # pragma: no cover
    from parl_deep.train import TrainLoop


class Method:
    """Base class; the default hooks do nothing and store the environment reward."""

    name = "base"
    # CSV files (in the run directory, with a ``step`` column) this method appends to; ``resume`` drops their
    # rows written after the checkpoint, as it does for the loop's own logs.
    log_files: tuple[str, ...] = ()

    def __init__(self, loop: "TrainLoop", config: dict[str, Any]):
        self.loop = loop
        self.config = dict(config)

    @classmethod
    def resolve_config(cls, config: dict[str, Any], env: str) -> dict[str, Any]:
        return dict(config)

    @classmethod
    def check_runtime(cls, config: dict[str, Any]) -> None:
        """Raise :class:`DeviceUnavailableError` if this machine cannot run ``config`` (e.g. it names a GPU
        that torch does not see). ``train``/``resume`` call it before they write or load anything."""

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


METHODS: dict[str, type[Method]] = {}


def register_method(name: str) -> Callable[[type[Method]], type[Method]]:
    def deco(cls: type[Method]) -> type[Method]:
        cls.name = name
        METHODS[name] = cls
        return cls

    return deco


class UnknownMethodError(ValueError):
    pass


class DeviceUnavailableError(ValueError):
    """The run's config names a device this machine does not have."""


def get_method(name: str) -> type[Method]:
    if name not in METHODS:
        raise UnknownMethodError(f"unknown method {name!r}; valid methods: {', '.join(sorted(METHODS))}")
    return METHODS[name]


@register_method("oracle")
class OracleMethod(Method):
    """SAC on the true environment reward: the upper reference line of PARL's Figure 2."""

    def __init__(self, loop: "TrainLoop", config: dict[str, Any]):
        if config:
            raise ValueError(f"method 'oracle' takes no options, got {sorted(config)}")
        super().__init__(loop, config)


# Register the preference-based methods whenever the registry is imported (pebble imports Method from here).
from parl_deep import pebble as _pebble  # noqa: E402,F401
from parl_deep import aparl as _aparl  # noqa: E402,F401

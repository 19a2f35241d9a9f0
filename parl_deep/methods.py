"""Training methods: what reward SAC learns from, and what else happens during a run.

The run loop (:mod:`parl_deep.train`) is method-agnostic. A method plugs in through four hooks:

``reward(obs, act, next_obs, env_reward) -> float``
    the reward stored in the replay buffer for one transition (the oracle returns ``env_reward``;
    PEBBLE / A-PARL return a learned reward model's prediction);
``on_step(step, loop) -> dict``
    called after every environment step (after the transition is stored, before the SAC updates);
    feedback phases (query a teacher, fit a reward model, relabel the buffer with
    ``loop.buffer.relabel(...)``) go here; returns scalars to log (may be empty);
``state_dict()`` / ``load_state_dict(sd)``
    everything the method must carry across a checkpoint (reward-model weights, optimiser, query
    counters, its own RNG...). The loop saves it inside the run's checkpoint.

Register a new method with ``@register_method("name")``; ``parl train --method`` accepts registered names.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # pragma: no cover
    from parl_deep.train import TrainLoop


class Method:
    """Base class; the default hooks do nothing and store the environment reward."""

    name = "base"

    def __init__(self, loop: "TrainLoop", config: dict[str, Any]):
        self.loop = loop
        self.config = dict(config)

    def reward(self, obs, act, next_obs, env_reward: float) -> float:
        return env_reward

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

"""Continuous-control backend of PARL: DeepMind Control, Meta-World and gymnasium environments, SAC, PEBBLE,
PEBBLE+SURF and A-PARL, resumable training runs, sweeps and reports.

The public API, imported lazily (``import parl_deep`` is cheap; torch and the simulators load on first use)::

    from parl_deep import TrainConfig, train, resume, load_policy, evaluate, make_env

    cfg = TrainConfig.make("dmc:walker-walk", method="pebble", steps=100_000, seed=0)
    train(cfg, "runs/walker-pebble")            # a run directory: config.json, logs, checkpoints
    resume("runs/walker-pebble")                # after a crash or kill -9
    policy = load_policy("runs/walker-pebble")  # the trained actor
    evaluate(policy, episodes=10)               # returns (and success on Meta-World)

The layout of the package and its import rule: docs/architecture.md.
"""
from __future__ import annotations

import importlib

__all__ = ["TrainConfig", "train", "resume", "load_policy", "evaluate", "make_env"]

_HOMES = {"TrainConfig": "parl_deep.config", "train": "parl_deep.training", "resume": "parl_deep.training",
          "load_policy": "parl_deep.evaluation", "evaluate": "parl_deep.evaluation", "make_env": "parl_deep.envs"}


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'parl_deep' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)

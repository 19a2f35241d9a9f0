"""Continuous-control backend of PARL: DeepMind Control / Meta-World environments, SAC, and the training loop.

``import parl_deep`` is cheap: the simulators and torch are imported only when used.
"""
from __future__ import annotations

__all__ = ["make_env"]


def make_env(name: str, seed: int, **kwargs):
    """Build ``dmc:<domain>-<task>`` or ``metaworld:<task>`` (see :mod:`parl_deep.envs`)."""
    from parl_deep.envs import make_env as _make_env

    return _make_env(name, seed, **kwargs)

"""Several copies of one environment stepped together, through gymnasium's vector API.

``make_vector_env(name, seeds, mode=...)`` builds ``len(seeds)`` environments with :func:`parl_deep.envs.make_env`
(copy ``k`` seeded with ``seeds[k]``) as a ``gymnasium.vector.SyncVectorEnv`` (``mode="sync"``: stepped one
after another in this process) or ``AsyncVectorEnv`` (``mode="subprocess"``: one spawned process each, stepped
in parallel). Autoreset is disabled (``AutoresetMode.DISABLED``): the caller resets one copy when its episode ends
(:func:`reset_one`), right then, as a single environment would be reset, so every transition it stores is a real
``(obs, act, next_obs)`` of one episode and no step is spent on an automatic reset.

Checkpoints: every copy's exact state (generator before the last reset plus the actions since, see
:mod:`parl_deep.envs.base`) is read and written through the vector API's attribute access on the
``replay_state`` property (:func:`get_states`, :func:`set_states`), which works in the subprocesses too.
"""
from __future__ import annotations

from functools import partial
from typing import Any, Sequence

import gymnasium as gym
import numpy as np
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv

VECTOR_MODES = ("sync", "subprocess")

__all__ = ["VECTOR_MODES", "make_vector_env", "reset_one", "get_states", "set_states", "info_flag"]


def make_vector_env(name: str, seeds: Sequence[int], *, random_goal: bool = True,
                    mode: str = "sync") -> gym.vector.VectorEnv:
    """``len(seeds)`` copies of environment ``name`` (module docstring)."""
    from parl_deep.envs import make_env

    fns = [partial(make_env, name, int(s), random_goal=random_goal) for s in seeds]
    if mode == "sync":
        return SyncVectorEnv(fns, autoreset_mode=AutoresetMode.DISABLED)
    if mode == "subprocess":
        # spawn, not fork: the parent has torch's thread pools, which a forked child must not inherit
        return AsyncVectorEnv(fns, autoreset_mode=AutoresetMode.DISABLED, context="spawn")
    raise ValueError(f"vector_mode: expected one of {', '.join(VECTOR_MODES)}, got {mode!r}")


def reset_one(envs: gym.vector.VectorEnv, k: int) -> np.ndarray:
    """Reset copy ``k`` only (without a seed, so it draws its next reset as a single environment would) and
    return its first observation."""
    mask = np.zeros(envs.num_envs, dtype=np.bool_)
    mask[k] = True
    obs, _ = envs.reset(options={"reset_mask": mask})
    return np.array(obs[k])


def get_states(envs: gym.vector.VectorEnv) -> list[dict]:
    """Every copy's ``get_state()`` snapshot, in order."""
    return list(envs.get_attr("replay_state"))


def set_states(envs: gym.vector.VectorEnv, states: Sequence[dict]) -> None:
    """Put copy ``k`` in the state ``states[k]`` (snapshots of :func:`get_states`)."""
    if len(states) != envs.num_envs:
        raise ValueError(f"{len(states)} environment states for {envs.num_envs} environments")
    envs.set_attr("replay_state", list(states))


def info_flag(infos: dict[str, Any], key: str, k: int) -> bool:
    """Copy ``k``'s boolean ``info[key]`` from a vector step's ``infos`` (False where that copy did not set it)."""
    if key not in infos or not infos.get(f"_{key}", np.ones(k + 1, dtype=bool))[k]:
        return False
    return bool(infos[key][k])

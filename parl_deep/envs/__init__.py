"""Continuous-control environments behind one factory: ``make_env(name, seed)``.

Names
-----
``dmc:<domain>-<task>``
    DeepMind Control suite (dm_control), state observations flattened into one float32 vector in the
    order of the task's observation spec, 1000-step episodes (the suite's default time limit at the
    default control step; reaching it is reported as ``truncated``, never ``terminated``).
``metaworld:<task>``
    Meta-World 3.x, the "goal observable" single-task variant (39-dim observation), 500-step episodes,
    ``info["success"]`` (bool) at every step. Whether the object/goal positions are re-drawn at every
    reset is explicit: ``random_goal=True`` (the default) re-draws them every episode, as PEBBLE's code
    did (it set ``_freeze_rand_vec = False``); ``random_goal=False`` keeps the single position drawn when
    the environment is built, as Meta-World's own single-task constructor does. Published numbers differ
    on this choice, so it is part of every run's saved config (``TrainConfig.metaworld_random_goal``).
``gym:<id>``
    Any environment in gymnasium's registry (``gymnasium.envs.registry``) with ``Box`` observation and action
    spaces and an episode limit, built by ``gymnasium.make(id)``: classic control (``gym:Pendulum-v1``,
    ``gym:MountainCarContinuous-v0``) and, as MuJoCo is installed, gymnasium's MuJoCo tasks
    (``gym:HalfCheetah-v5`` ...). Its own ``TimeLimit`` gives ``truncated``; ``max_episode_steps`` is its spec's.

Every environment is a gymnasium environment that passes ``gymnasium.utils.env_checker.check_env``: a ``Box``
float32 observation space with finite bounds, the ``Box(-1, 1)`` float32 action space (rescaled linearly onto
the simulator's bounds), gymnasium seeding (``reset(seed=s)`` through ``super().reset(seed=s)`` re-seeds the
simulator's own generator), a ``spec`` (``env.spec.make()`` builds a copy with the same seed), and exact
``get_state``/``set_state``: generator state before the last reset plus action replay. How, per suite:
:mod:`parl_deep.envs.base`.
"""
from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "disabled")

import gymnasium as gym

from parl_deep.envs.base import UnknownEnvironmentError, UnsupportedEnvironmentError
from parl_deep.envs.dmc import DMC_EPISODE_STEPS, DMCEnv
from parl_deep.envs.gym_suite import GymEnv
from parl_deep.envs.metaworld import METAWORLD_EPISODE_STEPS, MetaWorldEnv

__all__ = ["DMC_EPISODE_STEPS", "DMC_TASKS", "GYM_TASKS", "METAWORLD_EPISODE_STEPS", "METAWORLD_TASKS", "SUITES",
           "DMCEnv", "GymEnv", "MetaWorldEnv", "UnknownEnvironmentError", "UnsupportedEnvironmentError",
           "check_env_name", "make_env", "suite_of", "valid_env_names"]

# Environments the project is tested on. Any other dm_control suite task / Meta-World v3 task also works.
DMC_TASKS = ("walker-walk", "cheetah-run", "quadruped-walk")
METAWORLD_TASKS = ("door-open", "button-press-topdown", "drawer-open", "window-open", "sweep-into")
GYM_TASKS = ("Pendulum-v1",)

SUITES = ("dmc", "metaworld", "gym")


def _dmc_all() -> list[str]:
    from dm_control import suite

    return sorted(f"{d}-{t}" for d, t in suite.ALL_TASKS)


def _metaworld_all() -> list[str]:
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE

    return sorted(k[: -len("-v3-goal-observable")] for k in ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE)


def _gym_all() -> list[str]:
    return sorted(gym.envs.registry)


def valid_env_names() -> list[str]:
    """Every name :func:`check_env_name` accepts (imports both simulators). A ``gym:`` name is every registered
    gymnasium id with an episode limit; :func:`make_env` refuses those whose spaces are not ``Box``es."""
    gym_ids = [i for i in _gym_all() if gym.envs.registry[i].max_episode_steps is not None]
    return ([f"dmc:{n}" for n in _dmc_all()] + [f"metaworld:{n}" for n in _metaworld_all()]
            + [f"gym:{n}" for n in gym_ids])


def _tested() -> list[str]:
    return ([f"dmc:{n}" for n in DMC_TASKS] + [f"metaworld:{n}" for n in METAWORLD_TASKS]
            + [f"gym:{n}" for n in GYM_TASKS])


def _unknown(name: str, why: str) -> UnknownEnvironmentError:
    return UnknownEnvironmentError(
        f"unknown environment {name!r}: {why}. Names look like 'dmc:<domain>-<task>', 'metaworld:<task>' or "
        f"'gym:<gymnasium id>'; tested ones: {', '.join(_tested())}. All valid names: "
        f"parl_deep.envs.valid_env_names()."
    )


def suite_of(name: str) -> str | None:
    """The suite prefix of an environment name (``"dmc"``, ``"metaworld"``, ``"gym"``), or None without one."""
    if not isinstance(name, str) or ":" not in name:
        return None
    suite = name.split(":", 1)[0]
    return suite if suite in SUITES else None


def check_env_name(name: str) -> tuple[str, str]:
    """``(suite, task)`` of a valid environment name, checked against the simulators' task lists (for ``gym:``,
    gymnasium's registry) without building an environment; raises :class:`UnknownEnvironmentError` listing the
    valid names otherwise, and :class:`UnsupportedEnvironmentError` for a gymnasium id without an episode limit."""
    if not isinstance(name, str) or ":" not in name:
        raise _unknown(name, "missing the 'dmc:', 'metaworld:' or 'gym:' prefix")
    suite_name, task = name.split(":", 1)
    if suite_name not in SUITES:
        raise _unknown(name, f"unknown suite {suite_name!r} (use 'dmc', 'metaworld' or 'gym')")
    valid = {"dmc": _dmc_all, "metaworld": _metaworld_all, "gym": _gym_all}[suite_name]()
    if task not in valid:
        kind = "registered gymnasium ids" if suite_name == "gym" else f"{suite_name} tasks"
        raise _unknown(name, f"valid {kind} are {', '.join(valid)}")
    if suite_name == "gym" and gym.envs.registry[task].max_episode_steps is None:
        raise UnsupportedEnvironmentError(f"{name}: its gymnasium spec has no max_episode_steps; the run loop "
                                          f"needs an episode limit")
    return suite_name, task


def make_env(name: str, seed: int, *, random_goal: bool = True, render_mode: str | None = None) -> gym.Env:
    """Build the environment ``name`` (``dmc:<domain>-<task>``, ``metaworld:<task>`` or ``gym:<id>``), seeded
    with ``seed``; this is also every environment's ``spec.entry_point``.

    ``random_goal`` only matters for Meta-World (see the module docstring). ``render_mode`` is None or
    ``"rgb_array"`` where the environment renders (``env.metadata["render_modes"]``). Raises
    :class:`UnknownEnvironmentError` listing valid names for anything else, and its subclass
    :class:`UnsupportedEnvironmentError` for a known name that cannot be built here (e.g. a non-Box space).
    """
    suite_name, task = check_env_name(name)
    if suite_name == "dmc":
        domain, task_name = task.split("-", 1)
        return DMCEnv(domain, task_name, seed, render_mode=render_mode)
    if suite_name == "metaworld":
        return MetaWorldEnv(task, seed, random_goal=random_goal, render_mode=render_mode)
    return GymEnv(task, seed, render_mode=render_mode)

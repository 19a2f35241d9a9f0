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

Both kinds return gymnasium environments with ``Box`` observation spaces of dtype float32 and
``Box(-1, 1)`` float32 action spaces (DMC action bounds are rescaled linearly when they differ).

Exact save/restore of a live environment
----------------------------------------
Checkpoints must let a resumed run continue *the same* trajectory. Rather than reach into simulator
internals (Meta-World also edits the MuJoCo *model* at every reset), each environment here records the
random-number-generator state it had just before its last ``reset`` and the actions taken since.
``get_state()`` returns those; ``set_state()`` restores the generator, resets, and replays the actions.
MuJoCo is deterministic and both suites clear the simulator at reset (``mj_resetData``), so the replayed
state is bit-identical (checked in ``tests/parl_deep/test_envs.py``). The cost is at most one episode of
simulation at resume time.
"""
from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("MUJOCO_GL", "disabled")

import gymnasium as gym
import numpy as np

DMC_EPISODE_STEPS = 1000
METAWORLD_EPISODE_STEPS = 500

# Environments the project is tested on. Any other dm_control suite task / Meta-World v3 task also works.
DMC_TASKS = ("walker-walk", "cheetah-run", "quadruped-walk")
METAWORLD_TASKS = ("door-open", "button-press-topdown", "drawer-open", "window-open", "sweep-into")


class UnknownEnvironmentError(ValueError):
    """Raised by :func:`make_env` for a name that is not a DMC or Meta-World task."""


def _dmc_all() -> list[str]:
    from dm_control import suite

    return sorted(f"{d}-{t}" for d, t in suite.ALL_TASKS)


def _metaworld_all() -> list[str]:
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE

    return sorted(k[: -len("-v3-goal-observable")] for k in ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE)


def valid_env_names() -> list[str]:
    """Every name :func:`make_env` accepts (imports both simulators)."""
    return [f"dmc:{n}" for n in _dmc_all()] + [f"metaworld:{n}" for n in _metaworld_all()]


def _unknown(name: str, why: str) -> UnknownEnvironmentError:
    listed = ", ".join([f"dmc:{n}" for n in DMC_TASKS] + [f"metaworld:{n}" for n in METAWORLD_TASKS])
    return UnknownEnvironmentError(
        f"unknown environment {name!r}: {why}. Names look like 'dmc:<domain>-<task>' or 'metaworld:<task>'; "
        f"tested ones: {listed}. All valid names: parl_deep.envs.valid_env_names()."
    )


SUITES = ("dmc", "metaworld")


def suite_of(name: str) -> str | None:
    """The suite prefix of an environment name (``"dmc"``, ``"metaworld"``), or None without a known one."""
    if not isinstance(name, str) or ":" not in name:
        return None
    suite = name.split(":", 1)[0]
    return suite if suite in SUITES else None


def check_env_name(name: str) -> tuple[str, str]:
    """``(suite, task)`` of a valid environment name, checked against the simulators' task lists without
    building an environment; raises :class:`UnknownEnvironmentError` listing the valid names otherwise."""
    if not isinstance(name, str) or ":" not in name:
        raise _unknown(name, "missing the 'dmc:' or 'metaworld:' prefix")
    suite_name, task = name.split(":", 1)
    if suite_name not in SUITES:
        raise _unknown(name, f"unknown suite {suite_name!r} (use 'dmc' or 'metaworld')")
    valid = _dmc_all() if suite_name == "dmc" else _metaworld_all()
    if task not in valid:
        raise _unknown(name, f"valid {suite_name} tasks are {', '.join(valid)}")
    return suite_name, task


def make_env(name: str, seed: int, *, random_goal: bool = True) -> gym.Env:
    """Build the environment ``name`` (``dmc:<domain>-<task>`` or ``metaworld:<task>``), seeded with ``seed``.

    ``random_goal`` only matters for Meta-World (see the module docstring). Raises
    :class:`UnknownEnvironmentError` listing valid names for anything else.
    """
    suite_name, task = check_env_name(name)
    if suite_name == "dmc":
        domain, task_name = task.split("-", 1)
        return DMCEnv(domain, task_name, seed)
    return MetaWorldEnv(task, seed, random_goal=random_goal)


class _ReplayableEnv(gym.Env):
    """Common part: action bookkeeping for exact ``get_state``/``set_state`` (see the module docstring)."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self) -> None:
        self._episode_actions: list[np.ndarray] = []
        self._rng_before_reset: Any = None
        self._needs_reset = True

    # subclasses implement these five
    def _reseed(self, seed: int) -> None: ...
    def _rng_state(self) -> Any: ...
    def _set_rng_state(self, state: Any) -> None: ...
    def _reset_inner(self) -> tuple[np.ndarray, dict]: ...
    def _step_inner(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]: ...

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:  # gymnasium convention: re-seed the environment's generator, then reset
            self._reseed(int(seed))
        self._rng_before_reset = self._rng_state()
        self._episode_actions = []
        self._needs_reset = False
        return self._reset_inner()

    def step(self, action):
        if self._needs_reset:
            raise RuntimeError("call reset() before step() (the episode ended or never started)")
        action = np.asarray(action, dtype=np.float32).reshape(self.action_space.shape)
        self._episode_actions.append(action.copy())
        obs, reward, terminated, truncated, info = self._step_inner(action)
        if terminated or truncated:
            self._needs_reset = True
        return obs, reward, terminated, truncated, info

    def end_episode(self) -> None:
        """End the current episode here (e.g. an evaluation cut short): the next ``step`` needs a ``reset``."""
        self._needs_reset = True

    def get_state(self) -> dict:
        """Everything needed to put a fresh copy of this environment in exactly the same state."""
        return {
            "rng_before_reset": self._rng_before_reset,
            "rng_now": self._rng_state(),
            "actions": np.array(self._episode_actions, dtype=np.float32).reshape(-1, *self.action_space.shape),
            "needs_reset": self._needs_reset,
        }

    def set_state(self, state: dict) -> None:
        """Restore a :meth:`get_state` snapshot by resetting with the saved generator and replaying actions."""
        if state["rng_before_reset"] is not None:
            self._set_rng_state(state["rng_before_reset"])
            self.reset()
            for a in state["actions"]:
                self._step_inner(a)
            self._episode_actions = [a.copy() for a in state["actions"]]
        self._set_rng_state(state["rng_now"])
        self._needs_reset = bool(state["needs_reset"])


class DMCEnv(_ReplayableEnv):
    """A dm_control suite task as a gymnasium environment with a flat float32 state observation."""

    def __init__(self, domain: str, task: str, seed: int) -> None:
        super().__init__()
        from dm_control import suite

        self._env = suite.load(domain, task, task_kwargs={"random": int(seed)})
        spec = self._env.action_spec()
        self._act_low = spec.minimum.astype(np.float64)
        self._act_high = spec.maximum.astype(np.float64)
        self._obs_keys = list(self._env.observation_spec().keys())
        obs_dim = int(sum(int(np.prod(s.shape)) for s in self._env.observation_spec().values()))
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, spec.shape, np.float32)
        self.max_episode_steps = DMC_EPISODE_STEPS
        self.spec_name = f"dmc:{domain}-{task}"
        self._t = 0

    def _flat(self, observation) -> np.ndarray:
        return np.concatenate([np.asarray(observation[k], dtype=np.float32).ravel() for k in self._obs_keys])

    def _reseed(self, seed: int) -> None:
        self._env.task.random.seed(seed)

    def _rng_state(self):
        return self._env.task.random.get_state()

    def _set_rng_state(self, state) -> None:
        self._env.task.random.set_state(state)

    def _reset_inner(self):
        self._t = 0
        ts = self._env.reset()
        return self._flat(ts.observation), {}

    def _step_inner(self, action):
        a = np.clip(action.astype(np.float64), -1.0, 1.0)
        a = self._act_low + (a + 1.0) * 0.5 * (self._act_high - self._act_low)
        ts = self._env.step(a)
        self._t += 1
        truncated = ts.last() or self._t >= DMC_EPISODE_STEPS
        # The suite's tasks never terminate early (discount stays 1 at the time limit): a time limit is a truncation.
        terminated = bool(ts.last() and ts.discount == 0.0)
        return self._flat(ts.observation), float(ts.reward or 0.0), terminated, bool(truncated and not terminated), {}

    def render(self, height: int = 240, width: int = 320):
        return self._env.physics.render(height=height, width=width, camera_id=0)


class MetaWorldEnv(_ReplayableEnv):
    """A Meta-World v3 goal-observable task; ``info["success"]`` is a bool at every step."""

    def __init__(self, task: str, seed: int, *, random_goal: bool = True) -> None:
        super().__init__()
        from metaworld.env_dict import ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE

        cls = ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE[f"{task}-v3-goal-observable"]
        self._env = cls(seed=int(seed))
        # Draw reset positions from the env's own seeded generator (not numpy's global one), so runs are
        # reproducible and the generator can be saved in checkpoints.
        self._env.seeded_rand_vec = True
        self._env._freeze_rand_vec = not random_goal
        self.random_goal = random_goal
        self._env.max_path_length = METAWORLD_EPISODE_STEPS
        low, high = self._env.observation_space.low, self._env.observation_space.high
        self.observation_space = gym.spaces.Box(low.astype(np.float32), high.astype(np.float32), low.shape, np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, self._env.action_space.shape, np.float32)
        self.max_episode_steps = METAWORLD_EPISODE_STEPS
        self.spec_name = f"metaworld:{task}"

    def _reseed(self, seed: int) -> None:
        self._env.seed(seed)

    def _rng_state(self):
        return self._env.np_random.bit_generator.state

    def _set_rng_state(self, state) -> None:
        self._env.np_random.bit_generator.state = state

    def _reset_inner(self):
        obs, info = self._env.reset()
        return obs.astype(np.float32), info

    def _step_inner(self, action):
        obs, reward, terminated, truncated, info = self._env.step(np.clip(action, -1.0, 1.0))
        info = dict(info)
        info["success"] = bool(info.get("success", 0.0) > 0.5)
        return obs.astype(np.float32), float(reward), bool(terminated), bool(truncated), info

    def render(self, height: int = 240, width: int = 320):
        self._env.render_mode = "rgb_array"
        self._env.width, self._env.height = width, height
        return self._env.render()

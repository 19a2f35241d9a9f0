"""``gym:<id>``: any registered gymnasium environment with ``Box`` observation and action spaces."""
from __future__ import annotations

import importlib.util

import gymnasium as gym
import numpy as np
from gymnasium.utils import seeding

from parl_deep.envs.base import (UnsupportedEnvironmentError, _ReplayableEnv, finite_box, mujoco_can_render, rescale,
                                 unit_action_box)


def registered_spec(env_id: str):
    """The registry's ``EnvSpec`` of ``env_id``, or None (no environment is built)."""
    return gym.envs.registry.get(env_id)


def _check_spaces(name: str, env: gym.Env) -> None:
    """Refuse, in one line naming the space, anything but a Box observation and a finite float Box action."""
    for what, space in (("observation", env.observation_space), ("action", env.action_space)):
        if not isinstance(space, gym.spaces.Box):
            raise UnsupportedEnvironmentError(f"{name}: its {what} space {space} is not a Box; parl_deep supports "
                                              f"Box observation and action spaces only")
    act = env.action_space
    if not np.issubdtype(act.dtype, np.floating) or not np.all(np.isfinite(np.concatenate([act.low, act.high]))):
        raise UnsupportedEnvironmentError(f"{name}: its action space {act} is not a float Box with finite bounds, "
                                          f"which the Box(-1, 1) actions are rescaled onto")


def _can_render(env: gym.Env) -> bool:
    """Whether ``rgb_array`` frames can be made here: declared by the environment, and its renderer present
    (MuJoCo: ``MUJOCO_GL`` not ``disabled``; classic control, Box2D, toy text: ``pygame`` installed)."""
    if "rgb_array" not in (env.metadata.get("render_modes") or []):
        return False
    module = type(env.unwrapped).__module__
    if module.startswith("gymnasium.envs.mujoco"):
        return mujoco_can_render()
    if module.startswith(("gymnasium.envs.classic_control", "gymnasium.envs.box2d", "gymnasium.envs.toy_text")):
        return importlib.util.find_spec("pygame") is not None
    return True


class GymEnv(_ReplayableEnv):
    """``gymnasium.make(env_id)`` behind the project's interface.

    The environment's own ``TimeLimit`` (``max_episode_steps`` of its registered spec) ends episodes in
    ``truncated``. Observations are flattened to float32 (bounds: the environment's, an infinite one as the
    largest finite float32); actions are ``Box(-1, 1)`` float32 over the flattened action, clipped and rescaled
    linearly onto the environment's bounds. At construction ``np_random`` is ``seeding.np_random(seed)``, so
    the first ``reset()`` is the environment's ``reset(seed=seed)``; ``set_state`` restores the generator,
    resets and replays the actions (exact for classic control and gymnasium's MuJoCo tasks)."""

    def __init__(self, env_id: str, seed: int, *, render_mode: str | None = None) -> None:
        super().__init__()
        name = f"gym:{env_id}"
        if render_mode not in (None, "rgb_array"):
            raise UnsupportedEnvironmentError(f"{name}: render_mode {render_mode!r} is not available; "
                                              f"render modes here: None or 'rgb_array'")
        registered = registered_spec(env_id)
        try:
            env = gym.make(env_id, **({"render_mode": render_mode} if render_mode else {}))
        except (gym.error.DependencyNotInstalled, ImportError) as exc:
            raise UnsupportedEnvironmentError(f"{name} cannot be built here: {str(exc).splitlines()[0]}") from None
        try:
            _check_spaces(name, env)
        except UnsupportedEnvironmentError:
            env.close()
            raise
        self._env = env
        self._act_shape = env.action_space.shape
        self._act_dtype = env.action_space.dtype
        self._act_low = env.action_space.low.astype(np.float64).ravel()
        self._act_high = env.action_space.high.astype(np.float64).ravel()
        self.observation_space = finite_box(env.observation_space.low, env.observation_space.high)
        self.action_space = unit_action_box(self._act_low.shape)
        self._np_random, _ = seeding.np_random(int(seed))  # the wrapped environment's generator (base module)
        self._declare(name, seed, registered.max_episode_steps, render_fps=env.metadata.get("render_fps") or 30,
                      can_render=_can_render(env), render_mode=render_mode,
                      nondeterministic=bool(registered.nondeterministic))

    def _generator(self) -> np.random.Generator:
        return self._env.unwrapped.np_random

    def _reseed(self, generator: np.random.Generator) -> None:
        self._env.unwrapped.np_random = generator

    def _flat(self, obs) -> np.ndarray:
        return np.array(obs, dtype=np.float32).reshape(-1)  # a copy: the caller may keep it

    def _reset_inner(self):
        obs, info = self._env.reset()
        return self._flat(obs), dict(info)

    def _step_inner(self, action):
        a = np.clip(rescale(action.ravel(), self._act_low, self._act_high), self._act_low, self._act_high)
        obs, reward, terminated, truncated, info = self._env.step(a.astype(self._act_dtype).reshape(self._act_shape))
        return self._flat(obs), float(reward), bool(terminated), bool(truncated), dict(info)

    def render(self):
        return self._env.render()

    def close(self) -> None:
        self._env.close()

"""What the three suites share: gymnasium seeding on the simulator's own generator, exact save/restore by
generator state plus action replay, the declared spaces, render modes and the environment's ``spec``.

Seeding
-------
Gymnasium's convention: ``env.np_random`` is the generator the environment draws its randomness from, and
``reset(seed=s)`` replaces it, through ``super().reset(seed=s)``, by ``gymnasium.utils.seeding.np_random(s)``
(a ``Generator`` on ``PCG64(SeedSequence(s))``). Here ``np_random`` is not a second generator beside the
simulator's: ``_np_random`` (the attribute gymnasium reads and writes) is a property over the simulator's own
generator, so a seeded reset re-seeds the simulator and an unseeded reset draws what it always drew:

* dm_control: the task's ``RandomState``, seeded by dm_control from ``seed`` at construction (MT19937, legacy
  seeding). ``np_random`` is a ``Generator`` on that same MT19937 bit generator; a seeded reset gives the task a
  ``RandomState`` on gymnasium's new PCG64 bit generator.
* Meta-World: the environment's ``np_random`` (reset positions are drawn from it, ``seeded_rand_vec``), which
  Meta-World seeds with ``seeding.np_random(seed)`` at construction, exactly what a seeded reset does.
* ``gym:<id>``: the wrapped environment's ``unwrapped.np_random``, seeded with ``seeding.np_random(seed)`` at
  construction, so the first ``reset()`` equals gymnasium's own ``reset(seed=seed)`` of that environment.

Exact save/restore
------------------
``get_state()`` returns the generator state just before the last reset and the actions taken since (the keys
``rng_before_reset``, ``rng_now``, ``actions``, ``needs_reset``, unchanged since the first checkpoints);
``set_state()`` restores that generator, resets without a seed (drawing the same reset as the original) and
replays the actions, then restores the generator's current state. This is exact whenever the environment's only
randomness is that generator and its dynamics are deterministic: MuJoCo (dm_control, Meta-World, gymnasium's
MuJoCo tasks; all clear the simulator at reset) and gymnasium's classic-control tasks.

Spaces
------
Observations are float32 vectors; a bound the simulator does not give (dm_control declares none, Meta-World
none for its object dimensions) is the largest finite float32, so the space says exactly "a finite float32"
there. Actions are ``Box(-1, 1)`` float32 in every suite, mapped linearly onto the simulator's bounds:
``a_sim = low + (a + 1) / 2 * (high - low)``.
"""
from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("MUJOCO_GL", "disabled")

import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import EnvSpec

F32_MAX = float(np.finfo(np.float32).max)


class UnknownEnvironmentError(ValueError):
    """Raised for a name that is not a DMC, Meta-World or registered gymnasium environment."""


class UnsupportedEnvironmentError(UnknownEnvironmentError):
    """Raised for a known name that cannot be built here: a space that is not a float ``Box``, no episode
    limit, an unavailable render mode or a missing dependency of the simulator."""


def finite_box(low, high) -> gym.spaces.Box:
    """A float32 ``Box`` over ``[low, high]`` where an infinite bound becomes the largest finite float32.

    Rounding to float32 is monotone, so a float64 observation inside the float64 bounds stays inside the
    float32 ones after both are cast."""
    low = np.maximum(np.asarray(low, dtype=np.float32).ravel(), -F32_MAX)
    high = np.minimum(np.asarray(high, dtype=np.float32).ravel(), F32_MAX)
    return gym.spaces.Box(low, high, low.shape, np.float32)


def unit_action_box(shape) -> gym.spaces.Box:
    """The action space of every suite: ``Box(-1, 1)`` float32."""
    return gym.spaces.Box(-1.0, 1.0, tuple(shape), np.float32)


def rescale(action: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Map ``action`` in [-1, 1] (clipped first) linearly onto ``[low, high]``, in float64."""
    a = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
    return low + (a + 1.0) * 0.5 * (high - low)


def mujoco_can_render() -> bool:
    """MuJoCo renders offscreen unless ``MUJOCO_GL=disabled`` (this package's default)."""
    return os.environ.get("MUJOCO_GL", "disabled").lower() != "disabled"


class _ReplayableEnv(gym.Env):
    """The common part of every suite: seeding (see the module docstring), ``get_state``/``set_state``,
    ``end_episode`` and the ``spec``.

    A suite implements six hooks: ``_generator()`` (the simulator's generator as a ``numpy.random.Generator``),
    ``_reseed(generator)`` (make the simulator draw from ``generator`` from now on), ``_rng_state()`` /
    ``_set_rng_state(state)`` (default: the generator's ``bit_generator.state``), ``_reset_inner()`` and
    ``_step_inner(action)``; its constructor ends with :meth:`_declare`.
    """

    metadata = {"render_modes": [], "render_fps": 30}

    def __init__(self) -> None:
        self._episode_actions: list[np.ndarray] = []
        self._rng_before_reset: Any = None
        self._needs_reset = True

    # -- gymnasium's generator is the simulator's (module docstring) ---------------------------------------------
    @property
    def _np_random(self) -> np.random.Generator:
        return self._generator()

    @_np_random.setter
    def _np_random(self, generator: np.random.Generator | None) -> None:
        if generator is not None:
            self._reseed(generator)

    def _generator(self) -> np.random.Generator:
        raise NotImplementedError

    def _reseed(self, generator: np.random.Generator) -> None:
        raise NotImplementedError

    def _rng_state(self) -> Any:
        return self._generator().bit_generator.state

    def _set_rng_state(self, state: Any) -> None:
        bit_generator = self._generator().bit_generator
        if type(bit_generator).__name__ != state["bit_generator"]:
            bit_generator = getattr(np.random, state["bit_generator"])()
            self._reseed(np.random.Generator(bit_generator))
        bit_generator.state = state

    def _reset_inner(self) -> tuple[np.ndarray, dict]:
        raise NotImplementedError

    def _step_inner(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        raise NotImplementedError

    def _declare(self, name: str, seed: int, max_episode_steps: int, *, render_fps: float, can_render: bool,
                 render_mode: str | None, spec_kwargs: dict | None = None, nondeterministic: bool = False) -> None:
        """Set what gymnasium reads: ``metadata`` (``rgb_array`` only where it renders here), ``render_mode``,
        ``spec`` (rebuilt by ``env.spec.make()`` through :func:`parl_deep.envs.make_env` with the same seed)
        and the run loop's ``max_episode_steps``."""
        modes = ["rgb_array"] if can_render else []
        if render_mode is not None and render_mode not in modes:
            why = "" if can_render else " (rendering is off here: MuJoCo needs MUJOCO_GL=egl|osmesa|glfw)"
            raise UnsupportedEnvironmentError(f"{name}: render_mode {render_mode!r} is not available; "
                                              f"render modes here: {modes}{why}")
        self.metadata = {"render_modes": modes, "render_fps": render_fps}
        self.render_mode = render_mode
        self.max_episode_steps = int(max_episode_steps)
        self.spec_name = name
        self._np_random_seed = int(seed)
        kwargs = {"name": name, "seed": int(seed), **(spec_kwargs or {})}
        if render_mode is not None:
            kwargs["render_mode"] = render_mode
        self.spec = EnvSpec(id=name, entry_point="parl_deep.envs:make_env", kwargs=kwargs,
                            max_episode_steps=self.max_episode_steps, nondeterministic=nondeterministic)

    # -- the episode ---------------------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)  # with a seed: the simulator's generator becomes seeding.np_random(seed)
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

    # the vector API reaches environments in other processes by attribute (parl_deep.envs.vector)
    replay_state = property(get_state, set_state, doc="the :meth:`get_state` snapshot; assigning one restores it")

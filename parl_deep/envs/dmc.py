"""``dmc:<domain>-<task>``: a dm_control suite task as a gymnasium environment with a flat float32 state."""
from __future__ import annotations

import numpy as np

from parl_deep.envs.base import _ReplayableEnv, finite_box, mujoco_can_render, rescale, unit_action_box

DMC_EPISODE_STEPS = 1000


class DMCEnv(_ReplayableEnv):
    """A dm_control suite task: observations are the task's observation spec flattened in its order (float32,
    declared as any finite float32: dm_control gives no bounds), actions ``Box(-1, 1)`` rescaled linearly onto
    the task's action bounds, 1000-step episodes ending in ``truncated`` (the suite's time limit)."""

    def __init__(self, domain: str, task: str, seed: int, *, render_mode: str | None = None) -> None:
        super().__init__()
        from dm_control import suite

        self._env = suite.load(domain, task, task_kwargs={"random": int(seed)})
        spec = self._env.action_spec()
        self._act_low = spec.minimum.astype(np.float64)
        self._act_high = spec.maximum.astype(np.float64)
        self._obs_keys = list(self._env.observation_spec().keys())
        obs_dim = int(sum(int(np.prod(s.shape)) for s in self._env.observation_spec().values()))
        self.observation_space = finite_box(np.full(obs_dim, -np.inf), np.full(obs_dim, np.inf))
        self.action_space = unit_action_box(spec.shape)
        self._t = 0
        self._gen: np.random.Generator | None = None
        self._declare(f"dmc:{domain}-{task}", seed, DMC_EPISODE_STEPS, render_fps=1.0 / self._env.control_timestep(),
                      can_render=mujoco_can_render(), render_mode=render_mode)

    def _flat(self, observation) -> np.ndarray:
        return np.concatenate([np.asarray(observation[k], dtype=np.float32).ravel() for k in self._obs_keys])

    # The task draws from ``task.random`` (a RandomState); np_random is a Generator on its bit generator.
    def _generator(self) -> np.random.Generator:
        bit_generator = self._env.task.random._bit_generator
        if self._gen is None or self._gen.bit_generator is not bit_generator:
            self._gen = np.random.Generator(bit_generator)
        return self._gen

    def _reseed(self, generator: np.random.Generator) -> None:
        self._env.task._random = np.random.RandomState(generator.bit_generator)
        self._gen = generator

    def _rng_state(self):
        # MT19937 (the generator dm_control seeds): the legacy tuple old checkpoints hold; otherwise a dict.
        random = self._env.task.random
        return random.get_state(legacy=isinstance(random._bit_generator, np.random.MT19937))

    def _set_rng_state(self, state) -> None:
        kind = "MT19937" if isinstance(state, tuple) else state["bit_generator"]
        if type(self._env.task.random._bit_generator).__name__ != kind:
            self._reseed(np.random.Generator(getattr(np.random, kind)()))
        self._env.task.random.set_state(state)

    def _reset_inner(self):
        self._t = 0
        ts = self._env.reset()
        return self._flat(ts.observation), {}

    def _step_inner(self, action):
        ts = self._env.step(rescale(action, self._act_low, self._act_high))
        self._t += 1
        truncated = ts.last() or self._t >= DMC_EPISODE_STEPS
        # The suite's tasks never terminate early (discount stays 1 at the time limit): a time limit is a truncation.
        terminated = bool(ts.last() and ts.discount == 0.0)
        return self._flat(ts.observation), float(ts.reward or 0.0), terminated, bool(truncated and not terminated), {}

    def render(self, height: int = 240, width: int = 320):
        return self._env.physics.render(height=height, width=width, camera_id=0)

    def close(self) -> None:
        self._env.close()

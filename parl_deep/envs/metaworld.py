"""``metaworld:<task>``: a Meta-World v3 goal-observable single task."""
from __future__ import annotations

import numpy as np

from parl_deep.envs.base import _ReplayableEnv, finite_box, mujoco_can_render, unit_action_box

METAWORLD_EPISODE_STEPS = 500


class MetaWorldEnv(_ReplayableEnv):
    """A Meta-World v3 goal-observable task; ``info["success"]`` is a bool at every step.

    The 39-dim observation is hand (3), gripper (1), objects (14), the same 18 of the previous step, and the goal
    (3, at 36-38). Its declared bounds are Meta-World's own goal-observable ones (``sawyer_observation_space``:
    hand space, gripper [-1, 1], the task's ``goal_space`` for the goal), with the unbounded object dimensions
    as any finite float32. The environment's ``observation_space`` attribute is not used: the goal-observable
    constructor computes it while the goal is still hidden, so it declares [0, 0] for the goal.
    """

    def __init__(self, task: str, seed: int, *, random_goal: bool = True, render_mode: str | None = None) -> None:
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
        space = self._env.sawyer_observation_space
        self.observation_space = finite_box(space.low, space.high)
        self.action_space = unit_action_box(self._env.action_space.shape)
        self._declare(f"metaworld:{task}", seed, METAWORLD_EPISODE_STEPS,
                      render_fps=self._env.metadata["render_fps"], can_render=mujoco_can_render(),
                      render_mode=render_mode, spec_kwargs={"random_goal": bool(random_goal)})

    def _generator(self) -> np.random.Generator:
        return self._env.np_random

    def _reseed(self, generator: np.random.Generator) -> None:
        self._env.np_random = generator

    def _reset_inner(self):
        obs, info = self._env.reset()
        return obs.astype(np.float32), dict(info)

    def _step_inner(self, action):
        obs, reward, terminated, truncated, info = self._env.step(np.clip(action, -1.0, 1.0))
        info = dict(info)
        info["success"] = bool(info.get("success", 0.0) > 0.5)
        return obs.astype(np.float32), float(reward), bool(terminated), bool(truncated), info

    def render(self, height: int = 240, width: int = 320):
        self._env.render_mode = "rgb_array"
        self._env.width, self._env.height = width, height
        return self._env.render()

    def close(self) -> None:
        self._env.close()

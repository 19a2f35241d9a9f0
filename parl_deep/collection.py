"""Collecting experience from ``num_envs`` environments stepped together (``TrainConfig.num_envs``).

One :class:`Collector` owns the vector environment (:mod:`parl_deep.envs.vector`), the current observation of
every copy, the running statistics of every copy's live episode and that episode's id. A vector step picks
``num_envs`` actions at once (one batched policy call) and returns one :class:`Transition` per copy; the run loop
then handles them one after another, in copy order, as ``num_envs`` consecutive steps (store, episode end,
method hooks, SAC updates), so the replay buffer holds the copies' transitions interleaved: copy ``k`` at vector
step ``v`` is global step ``v * num_envs + k``. One copy's trajectory therefore occupies every ``num_envs``-th
buffer row and every ``num_envs``-th global step, which is what :class:`parl_deep.replay.SegmentIndex` with
``stride = num_envs`` reads back as contiguous segments and continuations.

Episode ids: copy ``k`` starts with id ``k``; an episode that ends when ``e`` episodes have ended in all (itself
included) is followed by id ``e + num_envs - 1``. Ids are unique and increasing, and with one copy the id of the
live episode is the number of episodes ended so far, as it always was.

Seeds: copy 0 is seeded with the run's seed (so ``num_envs = 1`` is exactly the single-environment run), copy
``k >= 1`` with ``derived_seed(seed, ENV_SEED_TAG + k)`` (:data:`parl_deep.io.ENV_SEED_TAG`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from parl_deep.envs.vector import get_states, info_flag, make_vector_env, reset_one, set_states
from parl_deep.io import ENV_SEED_TAG, derived_seed

__all__ = ["Collector", "Transition", "env_seeds", "new_episode"]


def env_seeds(seed: int, num_envs: int) -> list[int]:
    """The seed of every copy (module docstring)."""
    return [int(seed)] + [derived_seed(seed, ENV_SEED_TAG + k) for k in range(1, num_envs)]


def new_episode() -> dict:
    return {"return": 0.0, "env_return": 0.0, "length": 0, "success": False}


@dataclass
class Transition:
    """Copy ``env``'s share of one vector step."""

    env: int
    obs: np.ndarray
    act: np.ndarray
    next_obs: np.ndarray
    env_reward: float
    terminated: bool
    truncated: bool
    success: bool


class Collector:
    """The environments of a run and their live episodes (module docstring)."""

    def __init__(self, env: str, seed: int, num_envs: int = 1, *, random_goal: bool = True, mode: str = "sync"):
        self.num_envs = int(num_envs)
        self.envs = make_vector_env(env, env_seeds(seed, self.num_envs), random_goal=random_goal, mode=mode)
        self.observation_space = self.envs.single_observation_space
        self.action_space = self.envs.single_action_space
        obs, _ = self.envs.reset()
        self.obs = np.array(obs)
        self.episodes = [new_episode() for _ in range(self.num_envs)]
        self.episode_ids = list(range(self.num_envs))

    def actions(self, policy: Callable[[np.ndarray], np.ndarray], rng: np.random.Generator,
                random: bool) -> np.ndarray:
        """``(num_envs, act_dim)`` actions: uniform on [-1, 1] from ``rng`` when ``random``, else ``policy`` of the
        current observations (one batched call)."""
        if random:
            return rng.uniform(-1.0, 1.0, (self.num_envs, *self.action_space.shape)).astype(np.float32)
        return np.asarray(policy(self.obs), dtype=np.float32).reshape(self.num_envs, *self.action_space.shape)

    def step(self, actions: np.ndarray) -> list[Transition]:
        """Step every copy; the current observations move on (an ended episode's copy is reset by
        :meth:`end_episode`)."""
        next_obs, rewards, terminated, truncated, infos = self.envs.step(actions)
        out = [Transition(k, self.obs[k].copy(), actions[k], np.array(next_obs[k]), float(rewards[k]),
                          bool(terminated[k]), bool(truncated[k]), info_flag(infos, "success", k))
               for k in range(self.num_envs)]
        self.obs = np.array(next_obs)
        return out

    def record(self, tr: Transition, reward: float) -> None:
        """Add the transition to its copy's live episode (``reward``: the one the agent learns from)."""
        ep = self.episodes[tr.env]
        ep["return"] += reward
        ep["env_return"] += tr.env_reward
        ep["length"] += 1
        ep["success"] = ep["success"] or tr.success

    def end_episode(self, k: int, episodes_ended: int) -> None:
        """Copy ``k``'s episode ended (``episodes_ended`` in all, this one included): reset the copy, start a
        new episode with the next id."""
        self.obs[k] = reset_one(self.envs, k)
        self.episodes[k] = new_episode()
        self.episode_ids[k] = episodes_ended + self.num_envs - 1

    # -- checkpoints
    def state_dict(self) -> dict:
        return {"envs": get_states(self.envs), "obs": self.obs.copy(), "episodes": [dict(e) for e in self.episodes],
                "episode_ids": list(self.episode_ids)}

    def load_state_dict(self, sd: dict, episodes_ended: int) -> None:
        """Restore :meth:`state_dict`; a checkpoint of the single-environment format (keys ``env``, ``obs``,
        ``ep``, written before ``num_envs`` existed) loads into one copy."""
        if "envs" not in sd:
            sd = {"envs": [sd["env"]], "obs": np.asarray(sd["obs"])[None], "episodes": [sd["ep"]],
                  "episode_ids": [episodes_ended]}
        if len(sd["envs"]) != self.num_envs:
            raise ValueError(f"the checkpoint holds {len(sd['envs'])} environments, this run has num_envs = "
                             f"{self.num_envs}")
        set_states(self.envs, sd["envs"])
        self.obs = np.array(sd["obs"], dtype=self.obs.dtype).reshape(self.obs.shape)
        self.episodes = [dict(e) for e in sd["episodes"]]
        self.episode_ids = [int(i) for i in sd["episode_ids"]]

    def close(self) -> None:
        self.envs.close()

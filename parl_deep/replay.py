"""Uniform replay buffer stored as one preallocated float32 matrix.

Each row is ``[obs | act | reward | env_reward | not_done | next_obs]``. Keeping a transition in a single
row makes sampling one fancy-index gather; the batch's fields are then zero-copy column views converted to
torch with ``torch.from_numpy``.

``reward`` is what SAC learns from; ``env_reward`` is the simulator's true reward, kept so that methods
with a learned reward (PEBBLE, A-PARL) can relabel ``reward`` for the whole buffer
(:meth:`ReplayBuffer.relabel`) and the oracle can be compared against it. ``not_done`` is ``0`` only for
true terminations (time-limit truncations still bootstrap).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch


class ReplayBuffer:
    def __init__(self, obs_dim: int, act_dim: int, capacity: int):
        self.obs_dim, self.act_dim, self.capacity = obs_dim, act_dim, int(capacity)
        o, a = obs_dim, act_dim
        self._slices = {
            "obs": slice(0, o),
            "act": slice(o, o + a),
            "reward": slice(o + a, o + a + 1),
            "env_reward": slice(o + a + 1, o + a + 2),
            "not_done": slice(o + a + 2, o + a + 3),
            "next_obs": slice(o + a + 3, 2 * o + a + 3),
        }
        self.width = 2 * o + a + 3
        self.data = np.zeros((self.capacity, self.width), dtype=np.float32)
        self.ptr = 0
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def add(self, obs, act, reward: float, env_reward: float, terminated: bool, next_obs) -> None:
        row = self.data[self.ptr]
        s = self._slices
        row[s["obs"]] = obs
        row[s["act"]] = act
        row[s["reward"]] = reward
        row[s["env_reward"]] = env_reward
        row[s["not_done"]] = 0.0 if terminated else 1.0
        row[s["next_obs"]] = next_obs
        self.ptr = (self.ptr + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int, rng: np.random.Generator) -> tuple[torch.Tensor, ...]:
        """``(obs, act, reward, next_obs, not_done)`` tensors for a uniform batch (with replacement)."""
        idx = rng.integers(0, self.size, size=batch_size)
        t = torch.from_numpy(self.data[idx])
        s = self._slices
        return t[:, s["obs"]], t[:, s["act"]], t[:, s["reward"]], t[:, s["next_obs"]], t[:, s["not_done"]]

    def column(self, name: str) -> np.ndarray:
        """View of one field over the filled part of the buffer (e.g. ``column("obs")``)."""
        return self.data[: self.size, self._slices[name]]

    def relabel(self, reward_fn: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray],
                chunk: int = 10_000) -> None:
        """Replace the ``reward`` column by ``reward_fn(obs, act, next_obs)`` for every stored transition."""
        for start in range(0, self.size, chunk):
            rows = self.data[start:min(self.size, start + chunk)]
            s = self._slices
            rows[:, s["reward"]] = np.asarray(
                reward_fn(rows[:, s["obs"]], rows[:, s["act"]], rows[:, s["next_obs"]]), dtype=np.float32
            ).reshape(-1, 1)

    def state_dict(self) -> dict:
        return {"data": self.data[: self.size].copy() if self.size < self.capacity else self.data.copy(),
                "ptr": self.ptr, "size": self.size, "capacity": self.capacity, "width": self.width}

    def load_state_dict(self, sd: dict) -> None:
        if sd["capacity"] != self.capacity or sd["width"] != self.width:
            raise ValueError("replay buffer shape in the checkpoint does not match this run's config")
        self.data[:] = 0.0
        self.data[: sd["size"]] = sd["data"][: sd["size"]]
        self.ptr, self.size = int(sd["ptr"]), int(sd["size"])

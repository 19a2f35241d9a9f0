"""Uniform replay buffer stored as one preallocated float32 matrix.

Each row is ``[obs | act | reward | env_reward | not_done | next_obs]``. Keeping a transition in a single
row makes sampling one fancy-index gather; the batch's fields are then zero-copy column views converted to
torch with ``torch.from_numpy``.

``reward`` is what SAC learns from; ``env_reward`` is the simulator's true reward, kept so that methods
with a learned reward (PEBBLE, A-PARL) can relabel ``reward`` for the whole buffer
(:meth:`ReplayBuffer.relabel`) and the oracle can be compared against it. ``not_done`` is ``0`` only for
true terminations (time-limit truncations still bootstrap).

:class:`SegmentIndex` records, per buffer row, the episode number and the global step of the stored transition,
so that preference methods can cut segments that never straddle an episode boundary (a ring buffer may wrap) and
extend a segment by its continuation in the same episode (A-PARL's Monte Carlo sums).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

__all__ = ["ReplayBuffer", "SegmentIndex", "NotEnoughData", "valid_segment_starts", "segment_span"]


def segment_span(length: int, stride: int = 1) -> int:
    """Global steps that one environment's ``length``-step segment covers when ``stride`` environments are
    stepped together (their transitions interleave): ``(length - 1) * stride + 1``."""
    return (int(length) - 1) * int(stride) + 1


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

    def features(self, rows: np.ndarray) -> np.ndarray:
        """Reward-model inputs ``[obs | act]`` of ``rows``, shape ``rows.shape + (obs_dim + act_dim,)``."""
        return np.concatenate([self.column("obs")[rows], self.column("act")[rows]], axis=-1)

    def true_rewards(self, rows: np.ndarray) -> np.ndarray:
        """The simulator's rewards of ``rows``, shape ``rows.shape``."""
        return self.column("env_reward")[rows][..., 0]

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

    def load_state_dict(self, sd: dict, *, grow: bool = False) -> None:
        """Restore a :meth:`state_dict`. ``grow``: the saved buffer never overwrote a row (its capacity was the
        run's length), so it may load into a larger buffer (a run extended with ``--steps``), continuing after
        its last row."""
        grown = grow and sd["capacity"] < self.capacity and sd["size"] <= sd["capacity"]
        if (sd["capacity"] != self.capacity and not grown) or sd["width"] != self.width:
            raise ValueError("replay buffer shape in the checkpoint does not match this run's config")
        self.data[:] = 0.0
        self.data[: sd["size"]] = sd["data"][: sd["size"]]
        self.ptr, self.size = (int(sd["size"]) if grown else int(sd["ptr"])), int(sd["size"])


def valid_segment_starts(ep_id: np.ndarray, t: np.ndarray, length: int, now: int | None = None,
                         window: int | None = None, *, stride: int = 1, until: int | None = None) -> np.ndarray:
    """Buffer rows ``i`` such that rows ``i, i + stride, ..., i + (length-1) stride`` are consecutive steps of
    one episode.

    ``ep_id[r]`` / ``t[r]`` are the episode number and global step index of the transition in row ``r``
    (a ring buffer may wrap: the time check rejects windows that run over the write pointer). ``stride``: the
    number of environments stepped together; their transitions interleave, so one environment's consecutive
    steps lie ``stride`` rows (and ``stride`` global steps) apart. With ``window``, the whole segment must lie
    among the ``window`` most recent transitions (``t >= now - window``, ``now`` = transitions stored so far);
    with ``until``, it must end before global step ``until`` (``t < until``).
    """
    size = ep_id.shape[0]
    span = segment_span(length, stride) - 1
    if size <= span:
        return np.zeros(0, dtype=np.int64)
    s = np.arange(size - span)
    e = s + span
    ok = (ep_id[s] == ep_id[e]) & (t[e].astype(np.int64) - t[s] == span)
    if window is not None:
        if now is None:
            raise ValueError("window needs now")
        ok &= t[s] >= now - window
    if until is not None:
        ok &= t[e] < until
    return s[ok]


class NotEnoughData(RuntimeError):
    """No segment of the asked length lies inside one episode in the asked window (yet)."""


class SegmentIndex:
    """Episode number ``ep_id[row]`` and global step ``t_index[row]`` of the transition stored in each buffer row
    (-1: never written). ``stride``: environments stepped together (``TrainConfig.num_envs``); one environment's
    trajectory occupies every ``stride``-th row (the capacity must be a multiple of it)."""

    def __init__(self, capacity: int, stride: int = 1):
        self.capacity, self.stride = int(capacity), int(stride)
        if self.stride < 1 or self.capacity % self.stride:
            raise ValueError(f"SegmentIndex: capacity {capacity} must be a positive multiple of stride {stride}")
        self.ep_id = np.full(self.capacity, -1, dtype=np.int64)
        self.t_index = np.full(self.capacity, -1, dtype=np.int64)

    def record(self, row: int, episode: int, step: int) -> None:
        """Row ``row`` now holds step ``step`` (0-based, global) of episode ``episode``."""
        self.ep_id[row] = episode
        self.t_index[row] = step

    def sample_rows(self, rng: np.random.Generator, n: int, length: int, size: int, now: int,
                    window: int | None = None, until: int | None = None) -> np.ndarray:
        """``(n, length)`` buffer rows of ``n`` random episode-internal windows (uniform over the valid starts,
        with replacement) among the first ``size`` rows; with ``window``, inside the last ``window`` steps
        before ``now``; with ``until``, ending before global step ``until``. Raises :class:`NotEnoughData` when
        there is none."""
        starts = valid_segment_starts(self.ep_id[:size], self.t_index[:size], length, now, window,
                                      stride=self.stride, until=until)
        if starts.size == 0:
            raise NotEnoughData(f"no {length}-step segment inside one episode in the window")
        s = rng.choice(starts, size=n, replace=True)
        return s[:, None] + self.stride * np.arange(length)[None, :]

    def continuation_rows(self, start: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows of ``length`` consecutive steps of the start row's environment from each start row ``start``
        (n, 1), and a mask (n, length) that is true up to the first step that is not the next step of the same
        episode (the episode ended, or the ring buffer overwrote it). Masked-out entries repeat the start row."""
        k = self.stride * np.arange(length)[None, :]
        ext = (start + k) % self.capacity
        written = self.t_index[ext] >= 0
        same = (self.ep_id[ext] == self.ep_id[start]) & (self.t_index[ext] == self.t_index[start] + k)
        mask = np.cumprod(written & same, axis=1).astype(bool)
        return np.where(mask, ext, start), mask

    def recent(self, size: int, now: int, window: int) -> np.ndarray:
        """Boolean mask over the first ``size`` rows: steps in the last ``window`` before ``now``."""
        return self.t_index[:size] >= now - window

    def state_dict(self, size: int) -> dict:
        return {"ep_id": self.ep_id[:size].copy(), "t_index": self.t_index[:size].copy()}

    def load_state_dict(self, sd: dict) -> None:
        n = len(sd["ep_id"])
        self.ep_id[:] = -1
        self.t_index[:] = -1
        self.ep_id[:n] = sd["ep_id"]
        self.t_index[:n] = sd["t_index"]

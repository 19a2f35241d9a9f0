"""Stores of segment pairs for preference learning: unlabelled pairs (:class:`SegmentPairBuffer`) and labelled
ones (:class:`PreferenceDataset`).

A segment batch has shape ``(batch, T, obs_dim + act_dim)``, float32, the observation first and the action last
along the final axis. Labels follow PARL eq. (5): ``y = 1`` segment 0 preferred, ``y = 0`` segment 1 preferred,
``y = 0.5`` equally preferable.
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["SegmentPairBuffer", "PreferenceDataset", "check_segments"]


# =============================================================================
def check_segments(seg0: Any, seg1: Any, feat_dim: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    s0 = np.asarray(seg0, dtype=np.float32)
    s1 = np.asarray(seg1, dtype=np.float32)
    if s0.ndim != 3 or s0.shape != s1.shape:
        raise ValueError(f"segments must both have shape (batch, T, dim); got {s0.shape} and {s1.shape}")
    if s0.shape[1] < 1:
        raise ValueError("segments must have at least one step")
    if feat_dim is not None and s0.shape[2] != feat_dim:
        raise ValueError(f"segment feature dim {s0.shape[2]} != obs_dim + act_dim = {feat_dim}")
    if not (np.isfinite(s0).all() and np.isfinite(s1).all()):
        raise ValueError("segments contain NaN or inf")
    return s0, s1


class SegmentPairBuffer:
    """FIFO store of segment pairs (numpy, float32) with a fixed capacity.

    When full, the oldest pairs are dropped (B-Pref's ring buffer, default
    capacity 5e5).  ``state_dict`` / ``save`` use plain numpy arrays.
    """

    _array_keys: tuple[str, ...] = ("seg0", "seg1")

    def __init__(self, capacity: int = 500_000) -> None:
        if int(capacity) < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = int(capacity)
        self._data: dict[str, np.ndarray | None] = {k: None for k in self._array_keys}

    def __len__(self) -> int:
        a = self._data["seg0"]
        return 0 if a is None else int(a.shape[0])

    @property
    def seg0(self) -> np.ndarray:
        return self._get("seg0")

    @property
    def seg1(self) -> np.ndarray:
        return self._get("seg1")

    def _get(self, key: str) -> np.ndarray:
        a = self._data[key]
        if a is None:
            raise ValueError("buffer is empty")
        return a

    def _append(self, new: dict[str, np.ndarray]) -> None:
        for k, v in new.items():
            old = self._data[k]
            if old is not None and old.shape[1:] != v.shape[1:]:
                raise ValueError(f"{k}: new entries have shape {v.shape[1:]}, stored {old.shape[1:]}")
            a = v.copy() if old is None else np.concatenate([old, v], axis=0)
            self._data[k] = a[-self.capacity :]

    def add(self, seg0: Any, seg1: Any) -> None:
        s0, s1 = check_segments(seg0, seg1)
        self._append({"seg0": s0, "seg1": s1})

    def sample_indices(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.choice(len(self), size=min(n, len(self)), replace=False)

    def state_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"capacity": np.asarray(self.capacity)}
        for k in self._array_keys:
            if self._data[k] is not None:
                out[k] = self._data[k].copy()
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.capacity = int(np.asarray(state["capacity"]))
        for k in self._array_keys:
            self._data[k] = np.array(state[k]) if k in state else None

    def save(self, path: str) -> None:
        """Save to an ``.npz`` file (numpy arrays only, no pickles)."""
        np.savez(path, **self.state_dict())

    @classmethod
    def load(cls, path: str):
        obj = cls()
        with np.load(path, allow_pickle=False) as z:
            obj.load_state_dict({k: z[k] for k in z.files})
        return obj


class PreferenceDataset(SegmentPairBuffer):
    """Labelled segment pairs: ``seg0``, ``seg1`` (N, T, D) float32 and ``labels`` (N,) float32.

    Labels must be 0, 0.5 or 1 (PARL convention, see the module docstring).
    Pass ``teacher.label(...)``'s output filtered by its mask.
    """

    _array_keys = ("seg0", "seg1", "labels")

    @property
    def labels(self) -> np.ndarray:
        return self._get("labels")

    def add(self, seg0: Any, seg1: Any, labels: Any = None) -> None:  # type: ignore[override]
        s0, s1 = check_segments(seg0, seg1)
        y = np.asarray(labels, dtype=np.float32).reshape(-1)
        if y.shape[0] != s0.shape[0]:
            raise ValueError(f"{y.shape[0]} labels for {s0.shape[0]} pairs")
        if not np.isin(y, (0.0, 0.5, 1.0)).all():
            raise ValueError("labels must be 0, 0.5 or 1 (NaN = skipped pairs must be filtered out)")
        self._append({"seg0": s0, "seg1": s1, "labels": y})

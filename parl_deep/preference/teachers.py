"""The labeller of a preference method: the :class:`Teacher` protocol, the pairs it is shown, and where a
teacher comes from (a B-Pref preset name, an installed entry point, or ``"module:Class"``).

A teacher is asked for labels of a batch of segment pairs (:class:`SegmentPairs`: observations, actions and,
where the environment knows them, the true rewards) and answers, per pair, ``y = 1`` (segment 0 preferred),
``y = 0`` (segment 1), ``y = 0.5`` ("equally preferable") and whether it kept the pair (a skipped pair still
counts against the label budget). It also hears every finished training episode (B-Pref's thresholds use them)
and carries its state across checkpoints. The shipped simulated teachers
(:class:`parl_deep.preference.teacher.SimulatedTeacher`) implement the same protocol; a person behind a user
interface would too.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np

from parl_deep.plugins import TEACHERS_GROUP, entry_point_targets, load_target
from parl_deep.preference.teacher import PRESETS, SimulatedTeacher

__all__ = ["SegmentPairs", "Teacher", "teacher_names", "make_teacher"]


@dataclass
class SegmentPairs:
    """``n`` pairs of ``T``-step segments: ``obs0/obs1`` (n, T, obs_dim), ``act0/act1`` (n, T, act_dim),
    ``reward0/reward1`` (n, T) true rewards (None where unknown), and ``render(i, side)`` -> frames of segment
    ``side`` of pair ``i`` (None: the run cannot re-render stored segments)."""

    obs0: np.ndarray
    obs1: np.ndarray
    act0: np.ndarray
    act1: np.ndarray
    reward0: np.ndarray | None = None
    reward1: np.ndarray | None = None
    render: Callable[[int, int], list[np.ndarray]] | None = None

    def __len__(self) -> int:
        return int(self.obs0.shape[0])


@runtime_checkable
class Teacher(Protocol):
    def label_pairs(self, pairs: SegmentPairs) -> tuple[np.ndarray, np.ndarray]:
        """``(labels, kept)``: float32 labels in {0, 0.5, 1} (NaN where dropped) and a boolean mask, shape (n,)."""
        ...

    def observe_episode(self, true_return: float, length: int) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def teacher_names() -> list[str]:
    """The B-Pref presets and the installed teachers (entry points of ``parl_bilevel.teachers``)."""
    return list(PRESETS) + sorted(set(entry_point_targets(TEACHERS_GROUP)) - set(PRESETS))


def make_teacher(name: str, seed: int | None = None) -> Teacher:
    """The teacher called ``name``: a preset, an entry point, or ``"module:Class"``; built as ``Class(seed=seed)``."""
    if name in PRESETS:
        return SimulatedTeacher.preset(name, seed=seed)
    target = entry_point_targets(TEACHERS_GROUP).get(name, name if ":" in name else None)
    if target is None:
        raise ValueError(f"unknown teacher {name!r}; valid: {', '.join(teacher_names())}, or 'module:Class'")
    teacher = load_target(target)(seed=seed)
    missing = [m for m in ("label_pairs", "observe_episode", "state_dict", "load_state_dict") if not hasattr(teacher, m)]
    if missing:
        raise ValueError(f"teacher {name!r} ({target}) lacks {', '.join(missing)} of the Teacher protocol")
    return teacher

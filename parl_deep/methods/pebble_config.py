"""PEBBLE's options (``TrainConfig.method_config`` of ``--method pebble``, and the base of PEBBLE+SURF's and
A-PARL's). Field docstrings are the ``parl train --help`` text; the method is :mod:`parl_deep.methods.pebble`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from parl_deep.fields import DEVICE_PATTERN, check_fields, from_dict, opt
from parl_deep.nets import OUTPUT_ACTIVATIONS
from parl_deep.preference.queries import QUERY_METHODS
from parl_deep.preference.teachers import teacher_names

__all__ = ["PEBBLEConfig"]


@dataclass
class PEBBLEConfig:
    """PEBBLE's options (``TrainConfig.method_config``); defaults are overridden by the task's preset."""

    teacher: str = opt("oracle", choices=teacher_names, extensible=True, flag=True)
    """the labeller: a B-Pref simulated teacher preset, an installed teacher, or module:Class"""
    num_unsup_steps: int = opt(9000, low=0, flag=True)
    """steps of unsupervised (state-entropy) pre-training after the random steps"""
    num_interact: int = opt(20000, low=1, flag=True)
    """environment steps between feedback sessions"""
    max_feedback: int = opt(1000, low=1, flag=True)
    """total number of preference queries (the label budget)"""
    reward_batch: int = opt(100, low=1, flag=True)
    """queries per feedback session"""
    segment: int = opt(50, low=1, flag=True)
    """segment length (steps) shown to the teacher"""
    large_batch: int = opt(10, low=1)
    """candidate pairs per query for the non-uniform query selections"""
    feed_type: str = opt("disagreement", choices=QUERY_METHODS, flag=True)
    """query selection from the second session on"""
    first_feed_type: str = opt("uniform", choices=QUERY_METHODS)
    """query selection at the first session (the ensemble is still untrained)"""
    reward_update: int = opt(50, low=1, flag=True)
    """maximum reward-model epochs per session"""
    acc_threshold: float | None = opt(0.97, low=0.0, high=1.0)
    """stop a reward round once the training accuracy exceeds this (null: always run every epoch)"""
    reset_critic: bool = True
    """reset the critic after the first feedback session, as PEBBLE"""
    reset_update: int = opt(100, low=0)
    """SAC updates right after that reset"""
    knn_k: int = opt(5, low=1)
    """k of the k-NN state-entropy reward"""
    query_window: int | None = opt(None, low=1, flag=True)
    """sample segments from the N most recent transitions (null: the whole buffer, as PEBBLE)"""
    ensemble_size: int = opt(3, low=1)
    """members of the reward ensemble"""
    reward_hidden: int = opt(256, low=1)
    """hidden width of each reward member"""
    reward_layers: int = opt(3, low=0)
    """hidden layers of each reward member"""
    reward_lr: float = opt(3e-4, low=0.0, low_open=True)
    """Adam learning rate of the reward ensemble"""
    reward_minibatch: int = opt(128, low=1)
    """labelled pairs per reward-model minibatch"""
    reward_activation: str = opt("tanh", choices=tuple(OUTPUT_ACTIVATIONS))
    """output activation of each reward member"""
    eval_pairs: int = opt(100, low=0)
    """fresh uniform pairs for the eval_acc diagnostic (0: off)"""
    corr_window: int = opt(10000, low=1)
    """recent transitions for the reward_corr diagnostic"""
    reward_device: str = opt("cpu", pattern=DEVICE_PATTERN)
    """torch device of the reward ensemble alone: cuda or cuda:N (cpu: the run's device)"""

    @classmethod
    def method_name(cls) -> str:
        return "pebble"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PEBBLEConfig":
        cfg = from_dict(cls, d, f"{cls.method_name()} option")
        cfg.validate()
        return cfg

    def validate(self) -> None:
        where = f"{self.method_name()}: "
        check_fields(self, where)
        if self.query_window is not None and self.query_window < self.stored_length:
            raise ValueError(f"{where}query_window must be None or an integer >= the stored segment length "
                             f"({self.stored_length}), got {self.query_window!r}")

    @property
    def stored_length(self) -> int:
        """Length of the stored segments (SURF stores extra steps for cropping)."""
        return self.segment

    @property
    def label_slice(self) -> slice:
        """The steps of a stored segment that the teacher labels."""
        return slice(0, self.segment)

"""PEBBLE+SURF (Park et al., 2022): PEBBLE with temporal-crop augmentation and pseudo-labelled unlabelled pairs.

SURF changes three things in PEBBLE's feedback session, all by composition (:mod:`parl_deep.methods.pebble`):
segments are stored with ``crop_window`` extra steps on each side (50 + 2*5 = 60) and the teacher labels the
central ``segment`` steps; ``inv_label_ratio`` uniformly drawn unlabelled pairs per queried pair go to an
unlabelled buffer; and the reward round draws a fresh temporal crop (length ``crop_min..crop_max``) of every pair
for every member and minibatch and adds the pseudo-label loss (confidence ``tau``, weight ``lam``, ``mu``
unlabelled per labelled pair; :mod:`parl_deep.preference.surf`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from parl_deep.fields import opt
from parl_deep.methods.pebble import PEBBLEConfig, PEBBLEMethod
from parl_deep.preference.dataset import SegmentPairBuffer
from parl_deep.preference.surf import SURF, SURFConfig

if TYPE_CHECKING:  # pragma: no cover
    from parl_deep.training import TrainLoop

__all__ = ["PEBBLESURFConfig", "PEBBLESURFMethod"]


@dataclass
class PEBBLESURFConfig(PEBBLEConfig):
    """PEBBLE's options plus SURF's."""

    tau: float = opt(0.99, low=0.5, high=1.0)
    """confidence threshold of a pseudo-label"""
    lam: float = opt(1.0, low=0.0)
    """weight of the pseudo-label loss"""
    mu: int = opt(4, low=1)
    """unlabelled pairs per labelled pair in a reward minibatch"""
    inv_label_ratio: int = opt(100, low=1)
    """unlabelled pairs stored per queried pair"""
    crop_window: int = opt(5, low=0)
    """extra steps stored on each side of a segment for temporal crops"""
    crop_min: int = opt(45, low=1)
    """shortest temporal crop"""
    crop_max: int = opt(55, low=1)
    """longest temporal crop"""
    unlabelled_capacity: int = opt(10000, low=1)
    """capacity of the unlabelled pair buffer (FIFO)"""
    reward_update: int = opt(1000, low=1, flag=True)
    """maximum reward-model epochs per session"""

    @classmethod
    def method_name(cls) -> str:
        return "pebble-surf"

    def validate(self) -> None:
        super().validate()
        try:
            self.surf_config()
        except ValueError as exc:
            raise ValueError(f"pebble-surf: {exc}") from None

    def surf_config(self) -> SURFConfig:
        return SURFConfig(tau=float(self.tau), lam=float(self.lam), mu=int(self.mu), segment=self.segment,
                          window=self.crop_window, crop_min=self.crop_min, crop_max=self.crop_max,
                          inv_label_ratio=int(self.inv_label_ratio))

    @property
    def stored_length(self) -> int:
        return self.segment + 2 * self.crop_window

    @property
    def label_slice(self) -> slice:
        return slice(self.crop_window, self.crop_window + self.segment)


class PEBBLESURFMethod(PEBBLEMethod):
    """PEBBLE + SURF: 60-step stored segments with temporal crops, pseudo-labelled unlabelled pairs."""

    name = "pebble-surf"
    config_cls = PEBBLESURFConfig

    def __init__(self, loop: "TrainLoop", config: dict[str, Any]):
        super().__init__(loop, config)
        c = self.pcfg
        self.surf = SURF(c.surf_config())
        self.unlabelled = SegmentPairBuffer(capacity=c.unlabelled_capacity)
        self.unlabelled_per_query = c.inv_label_ratio
        self.mask_fn = self.surf.crop_masks
        self.loss_terms.append(lambda: self.surf.unlabelled_term(self.unlabelled, self.reward_model.batch_size))

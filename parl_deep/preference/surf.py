"""SURF (Park et al., 2022): semi-supervised reward learning with temporal-crop augmentation.

SURF sits on top of PEBBLE's reward ensemble (:class:`RewardEnsemble`) and
reuses its forward pass (``member_logits``) and training loop
(``train_round``), to which it contributes two ingredients (a step mask
function, :meth:`SURF.crop_masks`, and an extra loss term,
:meth:`SURF.unlabelled_term`):

* **Temporal cropping.**  Segments are stored with ``2 * window`` extra steps
  (50 + 2*5 = 60 steps).  The teacher labels the central 50 steps
  (:meth:`SURF.label_slice`).  During training each pair is cropped to a
  random length ``L ~ U{min_len..max_len}`` (45..55, both segments of a pair
  get the same ``L``) with independent uniformly random start positions in
  each segment, so that the crop lies inside the stored 60 steps.  Crops are
  implemented as 0/1 step masks; a fresh crop is drawn for every member and
  minibatch (as in SURF's code).
* **Pseudo-labels.**  For each member and minibatch, ``mu * batch_size``
  unlabelled pairs are drawn.  The member's own prediction on the central
  (uncropped) window gives ``p = P(seg0 > seg1)``; the pair receives the hard
  pseudo-label ``y = 1 if p >= 0.5 else 0`` if ``max(p, 1 - p) >= tau``
  (default 0.99) and is ignored otherwise.  The unlabelled loss is
  ``lambda * mean_over_the_unlabelled_batch(CE(cropped logit, y) * confident)``
  (masked pairs count as zero in the mean, as in SURF).

Defaults: tau = 0.99 (SURF's configs use 0.95-0.99 depending on the task;
0.99 is what this project asks for), lambda = 1, mu = 1 (SURF's default),
window = 5 and crop range 45..55 around 50-step segments, ``inv_label_ratio``
= 10 (the training loop adds 10 unlabelled pairs per queried pair, SURF's
default).  Early stopping at 97% training accuracy is kept from PEBBLE
(SURF's release comments it out and trains a fixed number of iterations;
pass ``acc_threshold=None`` to reproduce that).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from parl_deep.fields import check_fields, opt
from parl_deep.preference.dataset import SegmentPairBuffer
from parl_deep.preference.reward_model import RewardEnsemble, bt_loss

__all__ = ["SURFConfig", "SURF", "CropResult", "temporal_crop", "pseudo_label"]


@dataclass
class SURFConfig:
    """SURF's own settings (the pebble-surf method builds one from its options)."""

    tau: float = opt(0.99, low=0.5, high=1.0)
    """confidence threshold of a pseudo-label"""
    lam: float = opt(1.0, low=0.0)
    """weight of the unlabelled loss"""
    mu: int = opt(1, low=1)
    """unlabelled pairs per labelled pair in a minibatch"""
    segment: int = opt(50, low=1)
    """labelled length"""
    window: int = opt(5, low=0)
    """extra steps stored on each side: stored length = segment + 2 * window"""
    crop_min: int = 45
    """shortest temporal crop"""
    crop_max: int = 55
    """longest temporal crop"""
    inv_label_ratio: int = opt(10, low=1)
    """unlabelled pairs added per queried pair"""

    def __post_init__(self) -> None:
        check_fields(self)
        if not (1 <= self.crop_min <= self.crop_max <= self.stored_length):
            raise ValueError(
                f"crop range [{self.crop_min}, {self.crop_max}] must lie in [1, {self.stored_length}]"
            )

    @property
    def stored_length(self) -> int:
        return self.segment + 2 * self.window


@dataclass
class CropResult:
    """Crops of a batch of pairs: start indices, common lengths and 0/1 step masks (B, T)."""

    start0: np.ndarray
    start1: np.ndarray
    length: np.ndarray
    mask0: np.ndarray
    mask1: np.ndarray


def temporal_crop(
    seg0: Any, seg1: Any, rng: np.random.Generator, min_len: int = 45, max_len: int = 55
) -> CropResult:
    """Random temporal crops for pairs ``seg0``, ``seg1`` of shape (B, T, ...).

    Each pair gets one length ``L`` uniform on ``{min_len, ..., max_len}`` and
    independent starts ``s0, s1`` uniform on ``{0, ..., T - L}``.
    """
    B, T = np.shape(seg0)[:2]
    if np.shape(seg1)[:2] != (B, T):
        raise ValueError(f"segment shapes differ: {np.shape(seg0)} vs {np.shape(seg1)}")
    if not (1 <= min_len <= max_len <= T):
        raise ValueError(f"crop lengths [{min_len}, {max_len}] must lie in [1, T={T}]")
    length = rng.integers(min_len, max_len + 1, size=B)
    start0 = rng.integers(0, T - length + 1)
    start1 = rng.integers(0, T - length + 1)
    t = np.arange(T)[None, :]
    mask0 = ((t >= start0[:, None]) & (t < (start0 + length)[:, None])).astype(np.float32)
    mask1 = ((t >= start1[:, None]) & (t < (start1 + length)[:, None])).astype(np.float32)
    return CropResult(start0, start1, length, mask0, mask1)


def pseudo_label(p: torch.Tensor | np.ndarray, tau: float):
    """Hard pseudo-labels from ``p = P(seg0 > seg1)``.

    Returns ``(labels, confident)``: ``labels = 1`` where ``p >= 0.5`` else 0,
    ``confident = max(p, 1 - p) >= tau``.  Works on numpy arrays or tensors.
    """
    if isinstance(p, torch.Tensor):
        labels = (p >= 0.5).to(p.dtype)
        conf = torch.maximum(p, 1 - p) >= tau
        return labels, conf
    p = np.asarray(p)
    return (p >= 0.5).astype(np.float32), np.maximum(p, 1 - p) >= tau


class SURF:
    """Semi-supervised training rounds for a :class:`RewardEnsemble`."""

    def __init__(self, config: SURFConfig | None = None, **kwargs: Any) -> None:
        self.config = config if config is not None else SURFConfig(**kwargs)

    def label_slice(self, T: int | None = None) -> slice:
        """Slice of the stored segment that the teacher labels (central ``segment`` steps)."""
        c = self.config
        T = c.stored_length if T is None else T
        if T != c.stored_length:
            raise ValueError(f"stored segments must have {c.stored_length} steps, got {T}")
        return slice(c.window, c.window + c.segment)

    def crop_masks(self, seg0: np.ndarray, seg1: np.ndarray, rng: np.random.Generator):
        cr = temporal_crop(seg0, seg1, rng, self.config.crop_min, self.config.crop_max)
        return cr.mask0, cr.mask1

    def pseudo_labels(self, ensemble: RewardEnsemble, member: int, u0: torch.Tensor, u1: torch.Tensor):
        """Member ``member``'s pseudo-labels on the central window (no gradient).

        Returns ``(labels, confident, p)`` tensors of shape (B,).
        """
        sl = self.label_slice(u0.shape[1])
        with torch.no_grad():
            p = torch.sigmoid(ensemble.member_logits(member, u0[:, sl], u1[:, sl]))
        labels, conf = pseudo_label(p, self.config.tau)
        return labels, conf, p

    def unlabelled_loss(
        self,
        ensemble: RewardEnsemble,
        member: int,
        u0: np.ndarray,
        u1: np.ndarray,
        rng: np.random.Generator,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """``lambda * mean(CE(cropped logits, pseudo-labels) * confident)`` for one member."""
        t0, t1 = ensemble.to_tensor(u0), ensemble.to_tensor(u1)
        labels, conf, _ = self.pseudo_labels(ensemble, member, t0, t1)
        k0, k1 = self.crop_masks(u0, u1, rng)
        logits = ensemble.member_logits(member, t0, t1, ensemble.to_tensor(k0), ensemble.to_tensor(k1))
        per_pair = bt_loss(logits, labels, reduction="none") * conf.to(logits.dtype)
        loss = self.config.lam * per_pair.mean()
        return loss, {"pseudo_frac": float(conf.float().mean()), "unlabelled_loss": float(loss.detach())}

    def unlabelled_term(self, unlabelled: SegmentPairBuffer, batch_size: int):
        """The per-member extra loss for :meth:`RewardEnsemble.train_round`: ``mu * batch_size`` pairs drawn
        from ``unlabelled`` per member and minibatch, through :meth:`unlabelled_loss`; None when there is
        nothing to add (empty buffer or ``lam = 0``)."""
        c = self.config
        if len(unlabelled) == 0 or c.lam == 0:
            return None
        u0_all, u1_all = unlabelled.seg0, unlabelled.seg1

        def extra(ens: RewardEnsemble, member: int, r: np.random.Generator):
            idx = unlabelled.sample_indices(c.mu * int(batch_size), r)
            return self.unlabelled_loss(ens, member, u0_all[idx], u1_all[idx], r)

        return extra

    def state_dict(self) -> dict[str, Any]:
        return {"config": asdict(self.config)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.config = SURFConfig(**state["config"])

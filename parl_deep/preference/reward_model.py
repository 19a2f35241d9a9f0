"""Ensemble reward model trained from pairwise preferences (PEBBLE / B-Pref style).

Layout and conventions
----------------------
* A *segment* batch has shape ``(batch, T, obs_dim + act_dim)``, float32, the
  observation first and the action last along the final axis.  Segments are
  50 steps long in PEBBLE (SURF stores 60, see :mod:`parl_deep.preference.surf`).
* Labels follow PARL eq. (5): ``y = 1`` segment 0 preferred, ``y = 0`` segment
  1 preferred, ``y = 0.5`` equally preferable (soft 0.5/0.5 target).
* Each member is an MLP ``layers x (Linear(hidden) + LeakyReLU)`` followed by
  ``Linear(1)`` and a tanh output (B-Pref's ``gen_net``).  The preference
  probability is Bradley-Terry on summed segment rewards (PARL eq. 6)::

      P(seg0 > seg1) = sigmoid(sum_t r(seg0_t) - sum_t r(seg1_t))

  and the loss is the cross-entropy with target ``y`` (= B-Pref's softmax
  cross-entropy over the two segment returns with one-hot / 0.5-0.5 targets).
* ``train_round`` runs epochs over the labelled set (minibatch 128, one
  independent permutation per member, losses of the members summed and one
  Adam step per minibatch) and stops as soon as the mean over members of the
  epoch's running training accuracy exceeds ``acc_threshold`` (0.97), or after
  ``max_epochs``.  Accuracy counts only pairs with a strict label (0 or 1).
* Extra loss terms compose (:func:`chain_losses`, in the spirit of optax.chain):
  SURF's pseudo-label loss is one; a method passes the chain to ``train_round``.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from parl_deep.nets import mlp
from parl_deep.preference.dataset import PreferenceDataset, SegmentPairBuffer, check_segments

__all__ = ["RewardEnsemble", "bt_loss", "chain_losses", "ExtraLoss", "MaskFn", "PreferenceDataset",
           "SegmentPairBuffer"]


# =============================================================================
def bt_loss(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Bradley-Terry cross-entropy; ``logits = R0 - R1``, ``targets`` = P(seg0 preferred) in [0, 1]."""
    return F.binary_cross_entropy_with_logits(logits, targets, reduction=reduction)


def _binary_entropy(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return -(p * np.log(p) + (1 - p) * np.log(1 - p))


# a mask function returns per-step weights (batch, T) for segment 0 and 1 (SURF crops)
MaskFn = Callable[[np.ndarray, np.ndarray, np.random.Generator], tuple[np.ndarray, np.ndarray]]
# an extra loss is called once per member per minibatch; returns (loss, stats)
ExtraLoss = Callable[["RewardEnsemble", int, np.random.Generator], tuple[torch.Tensor, dict[str, float]]]


def chain_losses(*terms: "ExtraLoss | None") -> "ExtraLoss | None":
    """One extra loss that sums ``terms`` (None entries dropped) and merges their stats, in order; None when
    nothing is left, the term itself when one is."""
    live = [t for t in terms if t is not None]
    if not live:
        return None
    if len(live) == 1:
        return live[0]

    def chained(ensemble: "RewardEnsemble", member: int, rng: np.random.Generator):
        total, stats = None, {}
        for term in live:
            loss, st = term(ensemble, member, rng)
            total = loss if total is None else total + loss
            stats.update(st)
        return total, stats

    return chained


class RewardEnsemble:
    """Ensemble of reward MLPs r(s, a) with Bradley-Terry training.

    Parameters mirror PEBBLE: 3 members, 3 hidden layers of 256 units,
    tanh output, Adam with lr 3e-4, minibatch 128.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        n_members: int = 3,
        hidden: int = 256,
        layers: int = 3,
        lr: float = 3e-4,
        batch_size: int = 128,
        activation: str = "tanh",
        seed: int | None = None,
        device: str | torch.device = "cpu",
        predict_chunk: int = 65536,
    ) -> None:
        if obs_dim < 1 or act_dim < 0 or n_members < 1 or hidden < 1 or layers < 0 or batch_size < 1:
            raise ValueError("invalid RewardEnsemble dimensions")
        self.obs_dim = int(obs_dim)
        self.act_dim = int(act_dim)
        self.in_dim = self.obs_dim + self.act_dim
        self.n_members = int(n_members)
        self.batch_size = int(batch_size)
        self.device = torch.device(device)
        self.predict_chunk = int(predict_chunk)
        self.config = dict(
            obs_dim=self.obs_dim, act_dim=self.act_dim, n_members=self.n_members, hidden=int(hidden),
            layers=int(layers), lr=float(lr), batch_size=self.batch_size, activation=activation,
        )
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            self.members = nn.ModuleList(
                [mlp(self.in_dim, hidden, 1, layers, activation=nn.LeakyReLU, output=activation) for _ in range(self.n_members)]
            ).to(device=self.device, dtype=torch.float32)
        self.optimizer = torch.optim.Adam(self.members.parameters(), lr=lr)
        self.rng = np.random.default_rng(seed)

    # ----------------------------------------------------------------- forward
    def to_tensor(self, x: Any) -> torch.Tensor:
        return torch.as_tensor(np.asarray(x, dtype=np.float32), device=self.device)

    def member_rewards(self, member: int, x: torch.Tensor) -> torch.Tensor:
        """Per-step rewards of one member; ``x`` (..., D) -> (...)."""
        return self.members[member](x).squeeze(-1)

    def member_returns(self, member: int, seg: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Segment returns of one member; ``seg`` (B, T, D), optional step weights ``mask`` (B, T)."""
        r = self.member_rewards(member, seg)
        if mask is not None:
            r = r * mask
        return r.sum(dim=-1)

    def member_logits(
        self,
        member: int,
        seg0: torch.Tensor,
        seg1: torch.Tensor,
        mask0: torch.Tensor | None = None,
        mask1: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Bradley-Terry logit of P(seg0 > seg1) for one member, shape (B,)."""
        both = torch.cat([seg0, seg1], dim=0)
        m = None if mask0 is None else torch.cat([mask0, mask1], dim=0)
        ret = self.member_returns(member, both, m)
        b = seg0.shape[0]
        return ret[:b] - ret[b:]

    @torch.no_grad()
    def _predict_rows(self, x: np.ndarray) -> np.ndarray:
        """All members on rows ``x`` (N, D) -> (M, N) float32, chunked."""
        n = x.shape[0]
        out = np.empty((self.n_members, n), dtype=np.float32)
        for s in range(0, n, self.predict_chunk):
            xt = self.to_tensor(x[s : s + self.predict_chunk])
            for m in range(self.n_members):
                out[m, s : s + xt.shape[0]] = self.member_rewards(m, xt).cpu().numpy()
        return out

    def r_hat_members(self, sa: Any) -> np.ndarray:
        """Per-member rewards of concatenated ``sa`` (..., D) -> (M, ...)."""
        a = np.asarray(sa, dtype=np.float32)
        if a.shape[-1] != self.in_dim:
            raise ValueError(f"last dim {a.shape[-1]} != obs_dim + act_dim = {self.in_dim}")
        lead = a.shape[:-1]
        return self._predict_rows(a.reshape(-1, self.in_dim)).reshape((self.n_members, *lead))

    def r_hat(self, obs: Any, act: Any) -> np.ndarray:
        """Ensemble-mean reward, batched: ``obs`` (..., obs_dim), ``act`` (..., act_dim) -> (...)."""
        o = np.asarray(obs, dtype=np.float32)
        a = np.asarray(act, dtype=np.float32)
        if o.shape[-1] != self.obs_dim or a.shape[-1] != self.act_dim or o.shape[:-1] != a.shape[:-1]:
            raise ValueError(f"obs {o.shape} / act {a.shape} do not match obs_dim={self.obs_dim}, act_dim={self.act_dim}")
        return self.r_hat_members(np.concatenate([o, a], axis=-1)).mean(axis=0)

    @torch.no_grad()
    def preference_probs(self, seg0: Any, seg1: Any) -> np.ndarray:
        """Per-member P(seg0 > seg1), shape (M, B)."""
        s0, s1 = check_segments(seg0, seg1, self.in_dim)
        b, T, D = s0.shape
        r = self._predict_rows(np.concatenate([s0, s1], axis=0).reshape(-1, D)).reshape(self.n_members, 2 * b, T)
        ret = r.astype(np.float64).sum(axis=-1)
        return 1.0 / (1.0 + np.exp(-(ret[:, :b] - ret[:, b:])))

    def disagreement(self, seg0: Any, seg1: Any) -> np.ndarray:
        """Std over members of P(seg0 > seg1), shape (B,)."""
        return self.preference_probs(seg0, seg1).std(axis=0)

    def entropy(self, seg0: Any, seg1: Any) -> np.ndarray:
        """Mean over members of the entropy of P(seg0 > seg1), shape (B,) (as B-Pref)."""
        return _binary_entropy(self.preference_probs(seg0, seg1)).mean(axis=0)

    def accuracy(self, seg0: Any, seg1: Any, labels: Any) -> float:
        """Mean over members of the accuracy on strict labels (0/1); equal labels ignored."""
        y = np.asarray(labels, dtype=np.float32).reshape(-1)
        strict = y != 0.5
        if not strict.any():
            return float("nan")
        p = self.preference_probs(seg0, seg1)[:, strict]
        pred = (p >= 0.5).astype(np.float32)
        return float((pred == y[strict]).mean())

    # ---------------------------------------------------------------- training
    def train_round(
        self,
        dataset: PreferenceDataset,
        max_epochs: int = 200,
        acc_threshold: float | None = 0.97,
        batch_size: int | None = None,
        rng: np.random.Generator | None = None,
        mask_fn: MaskFn | None = None,
        extra_loss: ExtraLoss | None = None,
    ) -> dict[str, Any]:
        """Train on ``dataset`` for up to ``max_epochs`` epochs.

        Stops after the first epoch whose mean (over members) running training
        accuracy exceeds ``acc_threshold`` (None disables early stopping).
        ``mask_fn`` gives per-step weights for each labelled minibatch (SURF's
        temporal crops), ``extra_loss`` adds a per-member term (SURF's
        pseudo-label loss).  Returns ``accuracy``, ``member_accuracy``,
        ``loss`` (mean summed-over-members loss of the last epoch), ``epochs``,
        ``n_labels`` and any averaged stats reported by ``extra_loss``.
        """
        rng = self.rng if rng is None else rng
        bs = self.batch_size if batch_size is None else int(batch_size)
        n = len(dataset)
        stats: dict[str, Any] = dict(accuracy=float("nan"), member_accuracy=[float("nan")] * self.n_members,
                                     loss=float("nan"), epochs=0, n_labels=n)
        if n == 0:
            return stats
        seg0_all, seg1_all, y_all = dataset.seg0, dataset.seg1, dataset.labels
        if seg0_all.shape[2] != self.in_dim:
            raise ValueError(f"dataset feature dim {seg0_all.shape[2]} != {self.in_dim}")
        self.members.train()
        for epoch in range(int(max_epochs)):
            perms = [rng.permutation(n) for _ in range(self.n_members)]
            correct = np.zeros(self.n_members)
            counted = np.zeros(self.n_members)
            loss_sum, n_steps = 0.0, 0
            extra_sums: dict[str, float] = {}
            for start in range(0, n, bs):
                self.optimizer.zero_grad(set_to_none=True)
                total = torch.zeros((), device=self.device)
                for m in range(self.n_members):
                    idx = perms[m][start : start + bs]
                    s0, s1, y = seg0_all[idx], seg1_all[idx], y_all[idx]
                    mask0 = mask1 = None
                    if mask_fn is not None:
                        k0, k1 = mask_fn(s0, s1, rng)
                        mask0, mask1 = self.to_tensor(k0), self.to_tensor(k1)
                    yt = self.to_tensor(y)
                    logits = self.member_logits(m, self.to_tensor(s0), self.to_tensor(s1), mask0, mask1)
                    loss_m = bt_loss(logits, yt)
                    if extra_loss is not None:
                        l_extra, st = extra_loss(self, m, rng)
                        loss_m = loss_m + l_extra
                        for k, v in st.items():
                            extra_sums[k] = extra_sums.get(k, 0.0) + float(v)
                    total = total + loss_m
                    with torch.no_grad():
                        strict = yt != 0.5
                        pred = (logits >= 0).float()
                        correct[m] += float((pred[strict] == yt[strict]).sum())
                        counted[m] += float(strict.sum())
                total.backward()
                self.optimizer.step()
                loss_sum += float(total.detach())
                n_steps += 1
            member_acc = np.where(counted > 0, correct / np.maximum(counted, 1), np.nan)
            stats.update(
                accuracy=float(np.mean(member_acc)) if (counted > 0).all() else float("nan"),
                member_accuracy=member_acc.tolist(),
                loss=loss_sum / n_steps,
                epochs=epoch + 1,
                **{k: v / (n_steps * self.n_members) for k, v in extra_sums.items()},
            )
            if acc_threshold is not None and stats["accuracy"] > acc_threshold:
                break
        self.members.eval()
        return stats

    # ------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            "config": dict(self.config),
            "members": self.members.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["config"] != self.config:
            raise ValueError(f"reward-model config mismatch: checkpoint {state['config']} vs {self.config}")
        self.members.load_state_dict(state["members"])
        self.optimizer.load_state_dict(state["optimizer"])
        g = np.random.default_rng()
        g.bit_generator.state = state["rng"]
        self.rng = g

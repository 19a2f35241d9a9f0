"""Signal tests for a sampled Term 2: does the estimate carry a direction, or is it noise?

A-PARL (``parl_deep.methods.aparl``) ascends Term 2 only when its gate opens; closed, the session's update is
PEBBLE's. Both gates estimate Term 2 on disjoint parts of the session's pairs.

* ``split-cosine``: the cosine between the estimates of the two halves. It cannot tell a low-rank noise from a
  signal. The soft-Bellman estimate is (1/lam) sum_h mean_i(A_ih psi_ih) (eq. 8 through the soft Bellman
  identity); with gamma near 1 the psi_ih = dQ/dphi of different steps and pairs are close to one shared vector,
  so each half's estimate is about (a random scalar) x (that vector), and the two halves' cosine is near +1 or
  -1 whether or not there is any signal (docs/aparl.md, "the split-cosine gate").
* ``fold-z``: K folds give estimates m_1..m_K with mean g. The statistic

      z = K |g|^2 / s^2,    s^2 = sum_k |m_k - g|^2 / (K - 1),

  compares the squared length of the mean with its size under zero-mean noise: E[K |g|^2] / E[s^2] =
  1 + |E g|^2 / tr Cov(g) for i.i.d. folds (a ratio of expectations; E[z] itself is larger, 2 at K = 5 under
  rank-one noise). For i.i.d. zero-mean Gaussian folds of rank one, z ~ F(1, K - 1) exactly (a squared t
  statistic); for noise of rank r spread evenly, F(r, r (K - 1)). The gate opens when z exceeds the 1 - alpha
  quantile of F(1, K - 1). Under rank-one noise, the failure mode of split-cosine, it opens at rate alpha. Under
  noise of higher rank z tends to 1, so it opens less often as long as that quantile is well above 1, which is
  why ``gate_alpha`` is capped at ``MAX_ALPHA`` = 0.1 (checked by simulation over ranks, spectra and K in the
  tests). At alpha of about 0.3 or more the quantile falls below or near 1, and high-rank noise opens it more
  often than alpha.

  What the test sees as signal is whatever all folds share. A non-zero mean common to every fold opens it: a
  bias of the estimator at the fold size, or a part shared through the same policy, critic and regressor seed.
  Each fold is one estimator call per member and component, so the gate costs about K times the estimate.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["GATES", "MAX_ALPHA", "fold_slices", "gate_parts", "parts_needed", "fold_z_statistic", "fold_z_threshold"]

GATES = ("off", "split-cosine", "fold-z")
MAX_ALPHA = 0.1


def fold_slices(n: int, folds: int) -> list[slice]:
    """``folds`` contiguous, disjoint slices of ``range(n)`` whose sizes differ by at most one."""
    if folds < 1 or n < folds:
        raise ValueError(f"cannot split {n} items into {folds} non-empty folds")
    edges = [k * n // folds for k in range(folds + 1)]
    return [slice(a, b) for a, b in zip(edges[:-1], edges[1:])]


def gate_parts(gate: str, n: int, folds: int) -> list[slice]:
    """The disjoint parts of ``n`` pairs on which ``gate`` estimates Term 2: split-cosine's two halves (with n odd
    the last pair is in neither), fold-z's ``folds`` folds (:func:`fold_slices`)."""
    if gate == "split-cosine":
        h = n // 2
        return [slice(0, h), slice(h, 2 * h)]
    if gate == "fold-z":
        return fold_slices(n, folds)
    raise ValueError(f"gate {gate!r} has no parts; expected split-cosine or fold-z")


def parts_needed(gate: str, folds: int) -> int:
    """How many pairs a component needs for ``gate`` to test it: one per part of :func:`gate_parts` (0: off)."""
    return {"off": 0, "split-cosine": 2, "fold-z": folds}[gate]


def fold_z_statistic(estimates: Sequence[torch.Tensor | np.ndarray]) -> float:
    """z = K |mean|^2 / s^2 of the module docstring over K >= 2 fold estimates (flattened); inf when the folds
    agree exactly and are non-zero, nan when they are all zero."""
    m = np.stack([np.asarray(e.detach().double().cpu() if isinstance(e, torch.Tensor) else e, dtype=np.float64).ravel()
                  for e in estimates])
    K = len(m)
    if K < 2:
        raise ValueError(f"fold-z needs at least 2 fold estimates, got {K}")
    g = m.mean(0)
    s2 = float(((m - g) ** 2).sum()) / (K - 1)
    num = K * float(g @ g)
    if s2 == 0.0:
        return float("nan") if num == 0.0 else float("inf")
    return num / s2


def fold_z_threshold(alpha: float, folds: int) -> float:
    """The 1 - ``alpha`` quantile of F(1, ``folds`` - 1): fold-z's opening threshold (``alpha`` in (0, MAX_ALPHA])."""
    from scipy import stats  # lazily: the configs import GATES

    if not 0.0 < alpha <= MAX_ALPHA:
        raise ValueError(f"alpha must lie in (0, {MAX_ALPHA}], got {alpha}")
    if folds < 2:
        raise ValueError(f"fold-z needs at least 2 folds, got {folds}")
    return float(stats.f.ppf(1.0 - alpha, 1, folds - 1))

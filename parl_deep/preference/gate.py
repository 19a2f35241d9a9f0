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

  compares the squared length of the mean with its expected value under zero-mean noise (E[K |g|^2] =
  K |E g|^2 + tr Cov(m_k), E[s^2] = tr Cov(m_k)), so z - 1 estimates the signal-to-noise ratio |E g|^2 /
  tr Cov(g) of the full estimate. For Gaussian fold noise of rank one, z ~ F(1, K - 1) exactly (it is a
  squared t statistic); for noise of rank r spread evenly, F(r, r (K - 1)), whose upper quantiles are smaller.
  The gate opens when z exceeds the 1 - alpha quantile of F(1, K - 1): under zero-mean noise it opens at rate
  alpha when the noise is rank one (the failure mode of split-cosine) and less often otherwise.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy import stats

__all__ = ["GATES", "fold_slices", "fold_z_statistic", "fold_z_threshold"]

GATES = ("off", "split-cosine", "fold-z")


def fold_slices(n: int, folds: int) -> list[slice]:
    """``folds`` contiguous, disjoint slices of ``range(n)`` whose sizes differ by at most one."""
    if folds < 1 or n < folds:
        raise ValueError(f"cannot split {n} items into {folds} non-empty folds")
    edges = [k * n // folds for k in range(folds + 1)]
    return [slice(a, b) for a, b in zip(edges[:-1], edges[1:])]


def fold_z_statistic(estimates: Sequence[torch.Tensor | np.ndarray]) -> float:
    """z = K |mean|^2 / s^2 of the module docstring over K >= 2 fold estimates (flattened); inf when the folds
    agree exactly and are non-zero, nan when they are all zero."""
    m = np.stack([np.asarray(e.detach().cpu() if isinstance(e, torch.Tensor) else e, dtype=np.float64).ravel()
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
    """The 1 - ``alpha`` quantile of F(1, ``folds`` - 1): fold-z's opening threshold."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    if folds < 2:
        raise ValueError(f"fold-z needs at least 2 folds, got {folds}")
    return float(stats.f.ppf(1.0 - alpha, 1, folds - 1))

"""Exact f-divergences between the H-step trajectory distributions of two policies on one MDP
(the quantities of Lemma 1). The transition factors P(s'|s,a) are common to both distributions, so:

* Hellinger: H^2 = 1 - BC with the Bhattacharyya coefficient BC = sum_tau sqrt(rho_a rho_b), a forward recursion
  with per-step weights sqrt(pi_a pi_b). To avoid the cancellation in 1 - BC, we accumulate the mass the recursion
  loses at each step, 1 - BC = sum_h sum_s m_h(s) h_s with h_s = (1/2) sum_a (sqrt pi_a - sqrt pi_b)^2 and m_h
  the recursion's mass at step h. We return H = sqrt(1 - BC) in [0, 1] (H^2 = (1/2) sum (sqrt rho_a - sqrt rho_b)^2).
* KL(rho_a || rho_b) = sum_h E_{s_h ~ rho_a}[ KL(pi_a(.|s_h) || pi_b(.|s_h)) ]  (chain rule).
* chi^2(rho_a || rho_b) = sum_tau rho_a^2 / rho_b - 1, a forward recursion with weights pi_a^2 / pi_b.
* TV = (1/2) sum_tau |rho_a - rho_b| has no recursion: it is computed by enumerating trajectories, up to a
  limit (default 200,000 trajectories) above which it refuses with a clear error.
"""
from __future__ import annotations

import numpy as np

from .mdp import TabularMDP
from .trajectories import DEFAULT_LIMIT, enumerate_trajectories

KINDS = ("tv", "hellinger", "kl", "chi2")


def _check_policy(name: str, pi, shape) -> np.ndarray:
    pi = np.asarray(pi, dtype=np.float64)
    if pi.shape != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {pi.shape}")
    if not np.all(np.isfinite(pi)) or np.any(pi < 0) or np.any(np.abs(pi.sum(1) - 1) > 1e-8):
        raise ValueError(f"{name}: rows must be probability distributions")
    return pi


def _forward(mdp: TabularMDP, weights: np.ndarray, horizon: int) -> float:
    """sum over trajectories of mu(s0) prod_h weights(s_h, a_h) prod P: a linear forward recursion."""
    m = mdp.initial.copy()
    PT = mdp.PT
    for h in range(horizon):
        x = m[:, None] * weights
        if h == horizon - 1:
            return float(x.sum())
        m = PT @ x.ravel()
    raise AssertionError  # pragma: no cover


def trajectory_divergence(mdp: TabularMDP, pi_a: np.ndarray, pi_b: np.ndarray, horizon: int, kind: str,
                          *, limit: int = DEFAULT_LIMIT) -> float:
    """D(rho(.; pi_a), rho(.; pi_b)) over H-step trajectories, for kind in 'tv', 'hellinger', 'kl', 'chi2'."""
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {KINDS}, got {kind!r}")
    if int(horizon) != horizon or horizon < 1:
        raise ValueError(f"horizon: must be a positive integer, got {horizon!r}")
    pi_a = _check_policy("pi_a", pi_a, mdp.shape)
    pi_b = _check_policy("pi_b", pi_b, mdp.shape)
    if kind == "tv":
        traj = enumerate_trajectories(mdp, horizon, limit)
        with np.errstate(divide="ignore"):
            la, lb = traj.log_prob(np.log(pi_a)), traj.log_prob(np.log(pi_b))
        return float(0.5 * np.abs(np.exp(la) - np.exp(lb)).sum())
    if kind == "hellinger":
        w = np.sqrt(pi_a * pi_b)
        loss = 0.5 * ((np.sqrt(pi_a) - np.sqrt(pi_b)) ** 2).sum(axis=1)
        m, deficit = mdp.initial.copy(), 0.0
        PT = mdp.PT
        for h in range(horizon):
            deficit += float(m @ loss)
            m = PT @ (m[:, None] * w).ravel()
        return float(np.sqrt(min(1.0, max(0.0, deficit))))
    if kind == "chi2":
        with np.errstate(divide="ignore", invalid="ignore"):
            w = np.where(pi_a > 0, pi_a**2 / pi_b, 0.0)
        return max(0.0, _forward(mdp, w, horizon) - 1.0) if np.all(np.isfinite(w)) else float("inf")
    # kl: chain rule over steps
    with np.errstate(divide="ignore", invalid="ignore"):
        step_kl = np.where(pi_a > 0, pi_a * (np.log(pi_a) - np.log(pi_b)), 0.0).sum(axis=1)
    step_kl = np.maximum(step_kl, 0.0)  # KL >= 0; removes rounding below zero for (nearly) equal rows
    m = mdp.initial.copy()
    PT = mdp.PT
    total = 0.0
    for h in range(horizon):
        reached = m > 0
        total += float(m[reached] @ step_kl[reached])
        m = PT @ (m[:, None] * pi_a).ravel()
    return total

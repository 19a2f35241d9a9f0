"""Exact enumeration of H-step trajectories tau = (s_0, a_0, ..., s_{H-1}, a_{H-1}).

rho(tau; theta) = mu(s_0) prod_{h<H} pi_theta(a_h|s_h) prod_{h<H-1} P(s_{h+1}|s_h, a_h)   (eq. 4)

Only trajectories of positive probability are listed (softmax policies give every action positive
probability, so the support does not depend on theta). The count grows like (A * branching)^H, so callers
pass a limit and get a clear error above it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .mdp import TabularMDP

DEFAULT_LIMIT = 200_000


class EnumerationTooLarge(ValueError):
    pass


@dataclass(frozen=True)
class Trajectories:
    """All trajectories of positive probability: states, actions (N, H) and the policy-free part
    log mu(s_0) + sum_h log P(s_{h+1}|s_h, a_h)."""

    states: np.ndarray
    actions: np.ndarray
    log_base: np.ndarray

    def __len__(self) -> int:
        return len(self.log_base)

    def log_prob(self, logpi: np.ndarray) -> np.ndarray:
        """log rho(tau) for a policy given by its log-probabilities (S, A)."""
        return self.log_base + logpi[self.states, self.actions].sum(axis=1)

    def torch_log_prob(self, logpi: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(self.log_base) + logpi[torch.as_tensor(self.states),
                                                      torch.as_tensor(self.actions)].sum(dim=1)

    def sum_table(self, table: np.ndarray) -> np.ndarray:
        """sum_h table[s_h, a_h] per trajectory (e.g. the return R(tau))."""
        return table[self.states, self.actions].sum(axis=1)


def count_trajectories(mdp: TabularMDP, horizon: int) -> int:
    """Number of positive-probability H-step trajectories (computed without listing them)."""
    S, A = mdp.shape
    branching = np.diff(mdp.P.indptr)  # successors per (s, a)
    n = (mdp.initial > 0).astype(float)
    for _ in range(horizon - 1):
        n_sa = np.repeat(n, A)
        n = np.bincount(mdp.P.indices, weights=np.repeat(n_sa, branching), minlength=S)
    return int(round(n.sum() * A))


def enumerate_trajectories(mdp: TabularMDP, horizon: int, limit: int = DEFAULT_LIMIT) -> Trajectories:
    if horizon < 1:
        raise ValueError(f"horizon: must be >= 1, got {horizon}")
    n = count_trajectories(mdp, horizon)
    if n > limit:
        raise EnumerationTooLarge(
            f"horizon: {n} trajectories of length {horizon} exceed the enumeration limit {limit}; "
            "use a shorter horizon, a smaller MDP, or a Monte Carlo estimate")
    S, A = mdp.shape
    P = mdp.P
    s0 = np.flatnonzero(mdp.initial > 0)
    states = s0[:, None]
    actions = np.zeros((len(s0), 0), dtype=np.int64)
    logb = np.log(mdp.initial[s0])
    for h in range(horizon):
        # branch on the action
        k = len(logb)
        states = np.repeat(states, A, axis=0)
        actions = np.concatenate([np.repeat(actions, A, axis=0), np.tile(np.arange(A), k)[:, None]], axis=1)
        logb = np.repeat(logb, A)
        if h == horizon - 1:
            break
        rows = states[:, -1] * A + actions[:, -1]
        starts, ends = P.indptr[rows], P.indptr[rows + 1]
        counts = ends - starts
        idx = np.concatenate([np.arange(a, b) for a, b in zip(starts, ends)]) if len(rows) else np.zeros(0, int)
        rep = np.repeat(np.arange(len(rows)), counts)
        states = np.concatenate([states[rep], P.indices[idx][:, None]], axis=1)
        actions = actions[rep]
        logb = logb[rep] + np.log(P.data[idx])
    return Trajectories(states=states.astype(np.int64), actions=actions.astype(np.int64), log_base=logb)


def sample_trajectories(mdp: TabularMDP, pi: np.ndarray, horizon: int, n: int,
                        rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n`` H-step trajectories from rho(.; pi); returns states, actions of shape (n, H)."""
    S, A = mdp.shape
    P = mdp.P
    states = np.empty((n, horizon), dtype=np.int64)
    actions = np.empty((n, horizon), dtype=np.int64)
    cum_pi = np.cumsum(pi, axis=1)
    # Next states by inverse-CDF sampling on P's CSR rows, all trajectories at once: one cumulative sum over
    # P.data, and each row's draw is a search for base_row + u * mass_row in it (clipped to the row).
    cum_p = np.cumsum(P.data)
    s = rng.choice(S, size=n, p=mdp.initial)
    for h in range(horizon):
        a = np.minimum((rng.random(n)[:, None] > cum_pi[s]).sum(axis=1), A - 1)
        states[:, h], actions[:, h] = s, a
        if h == horizon - 1:
            break
        rows = s * A + a
        lo, hi = P.indptr[rows], P.indptr[rows + 1]
        base = np.where(lo > 0, cum_p[np.maximum(lo - 1, 0)], 0.0)
        target = base + rng.random(n) * (cum_p[hi - 1] - base)
        j = np.clip(np.searchsorted(cum_p, target, side="right"), lo, hi - 1)
        s = P.indices[j].astype(np.int64)
    return states, actions

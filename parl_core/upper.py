"""Upper-level objectives G(phi) = E_{tau ~ rho(.; theta*(phi))}[U_phi(tau)] (eq. 2 and 4).

Every objective offers, for a policy pi = softmax(theta) and reward parameters phi:
``value``, ``grad_theta`` = dG/dtheta (S, A) (the first factor of eqs. 8-9, exact), ``grad_phi`` = the direct
partial derivative in phi at fixed policy (E_rho[grad_phi U], second term of eq. 8), and ``torch_value`` for
automatic differentiation through an unrolled inner loop.

* :class:`AdditiveUtility`: U(tau) = sum_{h<H_u} u(s_h, a_h), exact by dynamic programming over the step-h
  state-action distributions (forward) and utility-to-go (backward).
* :class:`WeightedObjective`: sum_i w_i G_i, e.g. the likelihood of eq. (5) plus a designer utility.

The pairwise objectives (the RLHF objective of eqs. 5-7 under several scores, and the win rate against a
reference policy) live in :mod:`parl_core.preference`, on the pair machinery of :mod:`parl_core.pairs`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch

from .policy import softmax
from .rewards import as_reward

if TYPE_CHECKING:
    from .lower import SoftLowerLevel


class UpperObjective(Protocol):
    horizon: int

    def value(self, lower: "SoftLowerLevel", phi: np.ndarray, theta: np.ndarray) -> float: ...

    def grad_theta(self, lower: "SoftLowerLevel", phi: np.ndarray, theta: np.ndarray) -> np.ndarray: ...

    def grad_phi(self, lower: "SoftLowerLevel", phi: np.ndarray, theta: np.ndarray) -> np.ndarray: ...

    def torch_value(self, lower: "SoftLowerLevel", phi: torch.Tensor, theta: torch.Tensor) -> torch.Tensor: ...


def check_horizon(horizon: int) -> int:
    if int(horizon) != horizon or horizon < 1:
        raise ValueError(f"horizon: must be a positive integer, got {horizon!r}")
    return int(horizon)


class AdditiveUtility:
    """U(tau) = sum_{h=0}^{H_u-1} u(s_h, a_h) with u an (S, A) array or a reward-like function of phi."""

    def __init__(self, u, horizon: int):
        self.horizon = check_horizon(horizon)
        if isinstance(u, np.ndarray) or isinstance(u, (list, tuple)):
            u = np.asarray(u, dtype=np.float64)
            if u.ndim != 2 or not np.all(np.isfinite(u)):
                raise ValueError(f"u: expected a finite (S, A) array, got shape {u.shape}")
            self._table, self._reward = u, None
        else:
            self._table, self._reward = None, as_reward(u)

    def table(self, phi: np.ndarray) -> np.ndarray:
        return self._table if self._reward is None else self._reward.table(phi)

    def _passes(self, lower, phi, theta):
        mdp = lower.mdp
        S, A = mdp.shape
        u = self.table(phi)
        if u.shape != (S, A):
            raise ValueError(f"u: shape {u.shape} does not match the MDP's {(S, A)}")
        pi = softmax(theta)
        d = np.empty((self.horizon, S))
        d[0] = mdp.initial
        PT = mdp.PT
        for h in range(1, self.horizon):
            d[h] = PT @ (d[h - 1][:, None] * pi).ravel()
        return u, pi, d

    def value(self, lower, phi, theta) -> float:
        u, pi, d = self._passes(lower, phi, theta)
        return float(np.einsum("hs,sa,sa->", d, pi, u))

    def grad_theta(self, lower, phi, theta) -> np.ndarray:
        """dG/dtheta(s,a) = sum_h d_h(s) pi(a|s) (Qu_h(s,a) - W_h(s)), with W the utility-to-go."""
        u, pi, d = self._passes(lower, phi, theta)
        S, A = pi.shape
        P = lower.mdp.P
        w_next = np.zeros(S)
        grad = np.zeros((S, A))
        for h in reversed(range(self.horizon)):
            qu = u + (P @ w_next).reshape(S, A)
            w = np.sum(pi * qu, axis=1)
            grad += d[h][:, None] * pi * (qu - w[:, None])
            w_next = w
        return grad

    def grad_phi(self, lower, phi, theta) -> np.ndarray:
        if self._reward is None:
            return np.zeros(lower.n_params)
        _, pi, d = self._passes(lower, phi, theta)
        occ = d.sum(axis=0)[:, None] * pi
        return np.einsum("sa,san->n", occ, self._reward.jacobian(phi))

    def torch_value(self, lower, phi, theta) -> torch.Tensor:
        P = lower.torch_transitions()
        u = torch.as_tensor(self._table) if self._reward is None else self._reward.torch(phi)
        pi = torch.softmax(theta, dim=-1)
        d = torch.as_tensor(lower.mdp.initial)
        total = torch.zeros((), dtype=torch.float64)
        for h in range(self.horizon):
            x = d[:, None] * pi
            total = total + (x * u).sum()
            if h < self.horizon - 1:
                d = torch.einsum("sa,sat->t", x, P)
        return total


class WeightedObjective:
    """G(phi) = sum_i w_i G_i(phi): a weighted sum of upper objectives (each term's utility U_i enters eq. 2
    with weight w_i; the hypergradient of eqs. 8-9 is linear in U). ``terms``: [(weight, objective), ...];
    the horizon is the longest of the terms'."""

    def __init__(self, terms):
        terms = [(float(w), obj) for w, obj in terms]
        if not terms:
            raise ValueError("terms: expected at least one (weight, objective) pair")
        if not all(np.isfinite(w) for w, _ in terms):
            raise ValueError(f"terms: weights must be finite, got {[w for w, _ in terms]}")
        self.terms = terms
        self.horizon = max(obj.horizon for _, obj in terms)

    def value(self, lower, phi, theta) -> float:
        return float(sum(w * obj.value(lower, phi, theta) for w, obj in self.terms))

    def grad_theta(self, lower, phi, theta) -> np.ndarray:
        return sum(w * obj.grad_theta(lower, phi, theta) for w, obj in self.terms)

    def grad_phi(self, lower, phi, theta) -> np.ndarray:
        return sum(w * obj.grad_phi(lower, phi, theta) for w, obj in self.terms)

    def torch_value(self, lower, phi, theta) -> torch.Tensor:
        return sum(w * obj.torch_value(lower, phi, theta) for w, obj in self.terms)

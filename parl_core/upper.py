"""Upper-level objectives G(phi) = E_{tau ~ rho(.; theta*(phi))}[U_phi(tau)] (eq. 2 and 4).

Every objective offers, for a policy pi = softmax(theta) and reward parameters phi:
``value``, ``grad_theta`` = dG/dtheta (S, A) (the first factor of eqs. 8-9, exact), ``grad_phi`` = the direct
partial derivative in phi at fixed policy (E_rho[grad_phi U], second term of eq. 8), and ``torch_value`` for
automatic differentiation through an unrolled inner loop.

* :class:`AdditiveUtility`: U(tau) = sum_{h<H_u} u(s_h, a_h), exact by dynamic programming over the step-h
  state-action distributions (forward) and utility-to-go (backward).
* :class:`PreferenceObjective`: the RLHF objective of THEORY.md section 5 (eqs. 5-7), exact by enumerating
  trajectory pairs, or a Monte Carlo (score-function) estimate.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from .policy import softmax
from .rewards import as_reward
from .trajectories import EnumerationTooLarge, Trajectories, enumerate_trajectories, sample_trajectories

if TYPE_CHECKING:
    from .lower import SoftLowerLevel


class UpperObjective(Protocol):
    horizon: int

    def value(self, lower: "SoftLowerLevel", phi: np.ndarray, theta: np.ndarray) -> float: ...

    def grad_theta(self, lower: "SoftLowerLevel", phi: np.ndarray, theta: np.ndarray) -> np.ndarray: ...

    def grad_phi(self, lower: "SoftLowerLevel", phi: np.ndarray, theta: np.ndarray) -> np.ndarray: ...

    def torch_value(self, lower: "SoftLowerLevel", phi: torch.Tensor, theta: torch.Tensor) -> torch.Tensor: ...


def _check_horizon(horizon: int) -> int:
    if int(horizon) != horizon or horizon < 1:
        raise ValueError(f"horizon: must be a positive integer, got {horizon!r}")
    return int(horizon)


class AdditiveUtility:
    """U(tau) = sum_{h=0}^{H_u-1} u(s_h, a_h) with u an (S, A) array or a reward-like function of phi."""

    def __init__(self, u, horizon: int):
        self.horizon = _check_horizon(horizon)
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


class PreferenceObjective:
    """RLHF upper objective (THEORY.md section 5, eqs. 5-7): expected Bradley-Terry log-likelihood

        G(phi) = E_{tau0, tau1 ~ rho(.; pi), y ~ h}[ y log sig(R_phi(tau0) - R_phi(tau1))
                                                    + (1 - y) log sig(R_phi(tau1) - R_phi(tau0)) ]

    with the labeller h(y = 1 | tau0, tau1) = sig(beta (R_true(tau0) - R_true(tau1))) (beta = inf: the
    rational labeller; ties get 1/2) and R(tau) = sum_{h<H_u} r(s_h, a_h) undiscounted.

    ``mode="exact"`` enumerates all pairs of trajectories: at most ``max_trajectories`` (default 2,000,
    i.e. 4 million pairs) trajectories; above that it refuses with a clear error. ``mode="monte_carlo"``
    estimates value and gradients from ``n_samples`` sampled pairs (score-function estimator for the
    dependence on the policy: Term 2). ``mode="auto"`` picks exact when it fits.
    """

    def __init__(self, true_reward: np.ndarray, horizon: int, beta: float = 1.0, *, mode: str = "auto",
                 max_trajectories: int = 2000, n_samples: int = 4096, seed: int = 0):
        self.true_reward = np.asarray(true_reward, dtype=np.float64)
        if self.true_reward.ndim != 2 or not np.all(np.isfinite(self.true_reward)):
            raise ValueError(f"true_reward: expected a finite (S, A) array, got shape {self.true_reward.shape}")
        self.horizon = _check_horizon(horizon)
        beta = float(beta)
        if not beta > 0:
            raise ValueError(f"beta: must be > 0 (inf for a rational labeller), got {beta}")
        self.beta = beta
        if mode not in ("auto", "exact", "monte_carlo"):
            raise ValueError(f"mode: expected 'auto', 'exact' or 'monte_carlo', got {mode!r}")
        self.mode, self.max_trajectories, self.n_samples = mode, int(max_trajectories), int(n_samples)
        self.rng = np.random.default_rng(seed)
        self._traj: tuple[object, Trajectories | None] | None = None
        self._grad_cache: tuple[bytes, tuple[np.ndarray, np.ndarray]] | None = None

    # ------------------------------------------------------------- helpers
    def label_prob(self, ret0: torch.Tensor, ret1: torch.Tensor) -> torch.Tensor:
        """h(y = 1 | tau0, tau1) from the true returns."""
        if np.isinf(self.beta):
            return (ret0 > ret1).double() + 0.5 * (ret0 == ret1).double()
        return torch.sigmoid(self.beta * (ret0 - ret1))

    def pair_loglik(self, p: torch.Tensor, r0: torch.Tensor, r1: torch.Tensor) -> torch.Tensor:
        """E_y[y log sig(R0 - R1) + (1 - y) log sig(R1 - R0)] given P(y=1) = p."""
        return p * F.logsigmoid(r0 - r1) + (1 - p) * F.logsigmoid(r1 - r0)

    def trajectories(self, lower) -> Trajectories | None:
        """The enumerated trajectories when exact mode applies, else None."""
        if self._traj is None or self._traj[0] is not lower.mdp:
            traj = None
            if self.mode != "monte_carlo":
                try:
                    traj = enumerate_trajectories(lower.mdp, self.horizon, self.max_trajectories)
                except EnumerationTooLarge as exc:
                    if self.mode == "exact":
                        raise EnumerationTooLarge(f"{exc} (PreferenceObjective: exact mode enumerates "
                                                  f"pairs, limit max_trajectories={self.max_trajectories})") from None
            self._traj = (lower.mdp, traj)
        return self._traj[1]

    def _surrogate(self, lower, phi_t: torch.Tensor, theta_t: torch.Tensor) -> torch.Tensor:
        """A torch scalar whose value is G (exact mode) and whose gradient is the (estimated) gradient."""
        traj = self.trajectories(lower)
        r_phi = lower.reward.torch(phi_t)
        logpi = torch.log_softmax(theta_t, dim=-1)
        if traj is not None:
            st, ac = torch.as_tensor(traj.states), torch.as_tensor(traj.actions)
            rho = traj.torch_log_prob(logpi).exp()
            ret = torch.as_tensor(self.true_reward)[st, ac].sum(1)
            R = r_phi[st, ac].sum(1)
            f = self.pair_loglik(self.label_prob(ret[:, None], ret[None, :]), R[:, None], R[None, :])
            return rho @ f @ rho
        pi = softmax(theta_t.detach().numpy())
        n = self.n_samples
        s, a = sample_trajectories(lower.mdp, pi, self.horizon, 2 * n, self.rng)
        st, ac = torch.as_tensor(s), torch.as_tensor(a)
        ret = torch.as_tensor(self.true_reward)[st, ac].sum(1)
        R = r_phi[st, ac].sum(1)
        lp = logpi[st, ac].sum(1)
        f = self.pair_loglik(self.label_prob(ret[:n], ret[n:]), R[:n], R[n:])
        score = lp[:n] + lp[n:]
        # value: mean f; gradient: E[grad_phi f] (Term 1) + E[f * grad log rho] (Term 2)
        return f.mean() + (f.detach() * (score - score.detach())).mean()

    # ---------------------------------------------------------- protocol
    def value(self, lower, phi, theta) -> float:
        with torch.no_grad():
            return float(self._surrogate(lower, torch.as_tensor(phi), torch.as_tensor(theta)))

    def _grads(self, lower, phi, theta):
        """(d/dphi, d/dtheta) of the surrogate in one autograd pass, memoised for the last (mdp, phi, theta):
        the hypergradient asks for both at the same point."""
        phi, theta = np.asarray(phi, dtype=np.float64), np.asarray(theta, dtype=np.float64)
        key = phi.tobytes() + theta.tobytes()
        if self._grad_cache is not None and self._grad_cache[0] == key and self._traj and self._traj[0] is lower.mdp:
            return self._grad_cache[1]
        out = self._compute_grads(lower, phi, theta)
        self._grad_cache = (key, out)
        return out

    def _compute_grads(self, lower, phi, theta):
        phi_t = torch.as_tensor(np.asarray(phi, dtype=np.float64)).clone().requires_grad_(True)
        theta_t = torch.as_tensor(np.asarray(theta, dtype=np.float64)).clone().requires_grad_(True)
        g_phi, g_theta = torch.autograd.grad(self._surrogate(lower, phi_t, theta_t), (phi_t, theta_t))
        return g_phi.numpy(), g_theta.numpy()

    def grad_theta(self, lower, phi, theta) -> np.ndarray:
        return self._grads(lower, phi, theta)[1]

    def grad_phi(self, lower, phi, theta) -> np.ndarray:
        return self._grads(lower, phi, theta)[0]

    def torch_value(self, lower, phi, theta) -> torch.Tensor:
        if self.trajectories(lower) is None:
            raise EnumerationTooLarge("PreferenceObjective: autodiff routes need exact mode (enumeration)")
        return self._surrogate(lower, phi, theta)

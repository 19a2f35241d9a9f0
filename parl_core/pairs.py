"""Expectations over pairs of trajectories: the machinery behind every pairwise upper objective (eqs. 5-7).

A pairwise objective is

    G(phi) = E_{tau0 ~ rho(.; pi), tau1 ~ rho(.; pi_1)}[ f(p(tau0, tau1), R_phi(tau0), R_phi(tau1)) ]

with pi = softmax(theta) the lower level's policy (eq. 4), pi_1 = pi (both trajectories from the policy, as in
the RLHF objective of eq. 5) or a fixed reference policy, p(tau0, tau1) = h(y = 1 | tau0, tau1) the labeller's
probability of preferring tau0, R_phi(tau) = sum_{h<H_u} r_phi(s_h, a_h) (undiscounted) and f a per-pair score.
The labeller is Bradley-Terry on the true return, p = sig(beta (R_true(tau0) - R_true(tau1))); beta = inf is
the rational labeller, with ties at 1/2.

``mode="exact"`` enumerates all trajectories (at most ``max_trajectories``, i.e. that number squared of pairs)
and forms rho_0^T F rho_1 with F the (N, N) table of f; above the limit it refuses with EnumerationTooLarge.
``mode="monte_carlo"`` draws ``n_samples`` pairs and estimates the gradient in the policy by the score function
(Term 2 of docs/theory.md section 5): grad = E[grad f] + E[f grad log rho(tau0) (+ grad log rho(tau1))].
``mode="auto"`` uses exact when it fits. Subclasses define :meth:`PairObjective.pair_values`.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from .policy import softmax
from .trajectories import EnumerationTooLarge, Trajectories, enumerate_trajectories, sample_trajectories
from .upper import check_horizon

Reduce = Callable[[torch.Tensor], torch.Tensor]


def check_policy(pi, name: str = "reference") -> np.ndarray:
    """A stochastic (S, A) policy table: finite, non-negative, rows summing to one."""
    pi = np.asarray(pi, dtype=np.float64)
    if pi.ndim != 2 or not np.all(np.isfinite(pi)) or np.any(pi < 0):
        raise ValueError(f"{name}: expected a finite non-negative (S, A) policy, got shape {pi.shape}")
    if np.max(np.abs(pi.sum(axis=1) - 1.0)) > 1e-8:
        raise ValueError(f"{name}: each row must sum to 1")
    return pi


class PairObjective:
    """Base of the pairwise objectives (module docstring); implements the UpperObjective protocol.

    ``reference``: None (tau1 from the policy itself) or an (S, A) policy table (tau1 from it, held fixed)."""

    def __init__(self, true_reward: np.ndarray, horizon: int, beta: float = 1.0, *, reference=None,
                 mode: str = "auto", max_trajectories: int = 2000, n_samples: int = 4096, seed: int = 0):
        self.true_reward = np.asarray(true_reward, dtype=np.float64)
        if self.true_reward.ndim != 2 or not np.all(np.isfinite(self.true_reward)):
            raise ValueError(f"true_reward: expected a finite (S, A) array, got shape {self.true_reward.shape}")
        self.horizon = check_horizon(horizon)
        beta = float(beta)
        if not beta > 0:
            raise ValueError(f"beta: must be > 0 (inf for a rational labeller), got {beta}")
        self.beta = beta
        self.reference = None if reference is None else check_policy(reference)
        if self.reference is not None and self.reference.shape != self.true_reward.shape:
            raise ValueError(f"reference: shape {self.reference.shape} does not match true_reward's "
                             f"{self.true_reward.shape}")
        if mode not in ("auto", "exact", "monte_carlo"):
            raise ValueError(f"mode: expected 'auto', 'exact' or 'monte_carlo', got {mode!r}")
        self.mode, self.max_trajectories, self.n_samples = mode, int(max_trajectories), int(n_samples)
        self.rng = np.random.default_rng(seed)
        self._traj: tuple[object, Trajectories | None] | None = None
        self._grad_cache: tuple[bytes, tuple[np.ndarray, np.ndarray]] | None = None

    # ------------------------------------------------------------- the score
    def pair_values(self, p: torch.Tensor, r0: torch.Tensor, r1: torch.Tensor) -> torch.Tensor:
        """f per pair from the labeller's probability p and the model returns R_phi(tau0), R_phi(tau1)."""
        raise NotImplementedError

    # ------------------------------------------------------------- helpers
    def label_prob(self, ret0: torch.Tensor, ret1: torch.Tensor) -> torch.Tensor:
        """h(y = 1 | tau0, tau1) from the true returns."""
        if np.isinf(self.beta):
            return (ret0 > ret1).double() + 0.5 * (ret0 == ret1).double()
        return torch.sigmoid(self.beta * (ret0 - ret1))

    def trajectories(self, lower) -> Trajectories | None:
        """The enumerated trajectories when exact mode applies, else None."""
        if self._traj is None or self._traj[0] is not lower.mdp:
            traj = None
            if self.mode != "monte_carlo":
                try:
                    traj = enumerate_trajectories(lower.mdp, self.horizon, self.max_trajectories)
                except EnumerationTooLarge as exc:
                    if self.mode == "exact":
                        raise EnumerationTooLarge(f"{exc} ({type(self).__name__}: exact mode enumerates "
                                                  f"pairs, limit max_trajectories={self.max_trajectories})") from None
            self._traj = (lower.mdp, traj)
        return self._traj[1]

    def _reference_for(self, lower) -> np.ndarray | None:
        if self.reference is not None and self.reference.shape != lower.mdp.shape:
            raise ValueError(f"reference: shape {self.reference.shape} does not match the MDP's {lower.mdp.shape}")
        return self.reference

    def pair_terms(self, lower, phi_t: torch.Tensor,
                   theta_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Reduce]:
        """(p, R_phi(tau0), R_phi(tau1), reduce): the pairs' labeller probabilities and model returns (a
        broadcast (N, N) table in exact mode, n sampled pairs otherwise) and ``reduce(f)``, a torch scalar
        whose value is E[f] (exact mode) and whose gradient is the (estimated) gradient of E[f]."""
        traj = self.trajectories(lower)
        ref = self._reference_for(lower)
        r_phi = lower.reward.torch(phi_t)
        logpi = torch.log_softmax(theta_t, dim=-1)
        true = torch.as_tensor(self.true_reward)
        if traj is not None:
            st, ac = torch.as_tensor(traj.states), torch.as_tensor(traj.actions)
            rho0 = traj.torch_log_prob(logpi).exp()
            rho1 = rho0 if ref is None else torch.as_tensor(np.exp(traj.log_prob(np.log(np.clip(ref, 1e-300, None)))))
            ret = true[st, ac].sum(1)
            R = r_phi[st, ac].sum(1)
            return (self.label_prob(ret[:, None], ret[None, :]), R[:, None], R[None, :],
                    lambda f: rho0 @ f @ rho1)
        n = self.n_samples
        pi = softmax(theta_t.detach().numpy())
        if ref is None:
            s, a = sample_trajectories(lower.mdp, pi, self.horizon, 2 * n, self.rng)
        else:
            s0, a0 = sample_trajectories(lower.mdp, pi, self.horizon, n, self.rng)
            s1, a1 = sample_trajectories(lower.mdp, ref, self.horizon, n, self.rng)
            s, a = np.concatenate([s0, s1]), np.concatenate([a0, a1])
        st, ac = torch.as_tensor(s), torch.as_tensor(a)
        ret = true[st, ac].sum(1)
        R = r_phi[st, ac].sum(1)
        lp = logpi[st, ac].sum(1)
        score = lp[:n] + lp[n:] if ref is None else lp[:n]
        # value: mean f; gradient: E[grad_phi f] (Term 1) + E[f * grad log rho] (Term 2)
        return (self.label_prob(ret[:n], ret[n:]), R[:n], R[n:],
                lambda f: f.mean() + (f.detach() * (score - score.detach())).mean())

    def _surrogate(self, lower, phi_t: torch.Tensor, theta_t: torch.Tensor) -> torch.Tensor:
        p, r0, r1, reduce = self.pair_terms(lower, phi_t, theta_t)
        return reduce(self.pair_values(p, r0, r1))

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
        g_phi, g_theta = torch.autograd.grad(self._surrogate(lower, phi_t, theta_t), (phi_t, theta_t),
                                             allow_unused=True)
        g_phi = torch.zeros_like(phi_t) if g_phi is None else g_phi
        return g_phi.numpy(), g_theta.numpy()

    def grad_theta(self, lower, phi, theta) -> np.ndarray:
        return self._grads(lower, phi, theta)[1]

    def grad_phi(self, lower, phi, theta) -> np.ndarray:
        return self._grads(lower, phi, theta)[0]

    def torch_value(self, lower, phi, theta) -> torch.Tensor:
        if self.trajectories(lower) is None:
            raise EnumerationTooLarge(f"{type(self).__name__}: autodiff routes need exact mode (enumeration)")
        return self._surrogate(lower, phi, theta)

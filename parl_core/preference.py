"""Preference-based upper objectives (docs/theory.md section 5; eqs. 3-7): scores of a reward model against the
labeller, and a designer utility that scores the policy itself.

With p = p_true(tau0 > tau1) the labeller's probability and P = P_phi(tau0 > tau1) = sig(R_phi(tau0) -
R_phi(tau1)) the model's (eq. 6), a :class:`PreferenceObjective` is E_{tau0, tau1 ~ rho(theta*(phi))}[s(p, P)]
for one of the per-pair scores

* ``"likelihood"``: s = p log P + (1 - p) log(1 - P), the expected log-likelihood of a label: eq. (5).
  It splits as s = -H(p) - KL(p || P) with H the binary entropy (see :func:`decompose`), so eq. (5) rewards a
  policy whose pairs are easy to label (low H), not only a reward model that agrees with the labeller.
* ``"excess_kl"``: s = -KL(p || P), zero exactly when the model agrees with the labeller on the pair. It needs
  p itself: an oracle diagnostic.
* ``"brier"``: s = -(P - p)^2. From labels it is estimable without p: with two labels y, y' of the pair,
  P^2 - P (y + y') + y y' is unbiased for (P - p)^2; with one label from a rational labeller (p in {0, 1/2, 1})
  (P - y)^2 - p (1 - p) is.

For the last two the true reward phi_true (r_phi = beta r_true) is a maximiser, with value 0 and zero gradient:
every pair's score is at its maximum 0, so both Term 1 = E[grad s] and Term 2 = E[s grad log rho] vanish. For
the likelihood Term 2 = E[-H(p) grad log rho] does not vanish there.

:class:`WinRateObjective` is eq. (2)/(4) with the designer utility U(tau) = E_{tau_ref}[p_true(tau > tau_ref)]:
the probability that the labeller prefers a trajectory of pi*(phi) to one of a fixed reference policy.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from .pairs import PairObjective

Score = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def binary_entropy(p: torch.Tensor) -> torch.Tensor:
    """H(p) = -p log p - (1 - p) log(1 - p) (0 log 0 = 0)."""
    return -(torch.special.xlogy(p, p) + torch.special.xlogy(1 - p, 1 - p))


def log_likelihood(p: torch.Tensor, r0: torch.Tensor, r1: torch.Tensor) -> torch.Tensor:
    """E_y[y log sig(R0 - R1) + (1 - y) log sig(R1 - R0)] given P(y = 1) = p (eq. 6 in expectation)."""
    return p * F.logsigmoid(r0 - r1) + (1 - p) * F.logsigmoid(r1 - r0)


def excess_kl(p: torch.Tensor, r0: torch.Tensor, r1: torch.Tensor) -> torch.Tensor:
    """-KL(p || sig(R0 - R1)) = log-likelihood + H(p)."""
    return log_likelihood(p, r0, r1) + binary_entropy(p)


def brier(p: torch.Tensor, r0: torch.Tensor, r1: torch.Tensor) -> torch.Tensor:
    """-(sig(R0 - R1) - p)^2."""
    return -(torch.sigmoid(r0 - r1) - p) ** 2


SCORES: dict[str, Score] = {"likelihood": log_likelihood, "excess_kl": excess_kl, "brier": brier}


class LikelihoodParts(NamedTuple):
    """eq. (5) = entropy + kl, with entropy = -E_rho[H(p_true)] and kl = -E_rho[KL(p_true || P_phi)]."""

    entropy: float
    kl: float

    @property
    def total(self) -> float:
        return self.entropy + self.kl


class PreferenceObjective(PairObjective):
    """G(phi) = E_{tau0, tau1 ~ rho(.; theta*(phi))}[score(p_true, P_phi)] (module docstring; eqs. 5-7).

    ``score``: "likelihood" (eq. 5, the default), "excess_kl" or "brier". The labeller h(y = 1 | tau0, tau1)
    = sig(beta (R_true(tau0) - R_true(tau1))) (beta = inf: rational, ties 1/2). ``mode`` "exact" enumerates
    pairs (at most ``max_trajectories`` trajectories, default 2,000 i.e. 4 million pairs; above that it
    refuses), "monte_carlo" samples ``n_samples`` pairs (score-function estimate of Term 2), "auto" picks
    exact when it fits (:mod:`parl_core.pairs`)."""

    def __init__(self, true_reward: np.ndarray, horizon: int, beta: float = 1.0, *, score: str = "likelihood",
                 mode: str = "auto", max_trajectories: int = 2000, n_samples: int = 4096, seed: int = 0):
        if score not in SCORES:
            raise ValueError(f"score: expected one of {tuple(SCORES)}, got {score!r}")
        super().__init__(true_reward, horizon, beta, mode=mode, max_trajectories=max_trajectories,
                         n_samples=n_samples, seed=seed)
        self.score = score

    def pair_values(self, p, r0, r1):
        return SCORES[self.score](p, r0, r1)

    def pair_loglik(self, p: torch.Tensor, r0: torch.Tensor, r1: torch.Tensor) -> torch.Tensor:
        """The likelihood score (kept for callers of the original single-score objective)."""
        return log_likelihood(p, r0, r1)

    def truth(self, lower) -> np.ndarray:
        """phi_true with r_phi = beta r_true, for a tabular reward (one parameter per (s, a)); needs beta finite."""
        if not np.isfinite(self.beta):
            raise ValueError("beta: a rational labeller (beta = inf) has no finite true reward parameter")
        feats = getattr(lower.reward, "features", None)
        S, A = self.true_reward.shape
        if feats is None or feats.shape != (S, A, S * A) or not np.array_equal(feats.reshape(S * A, -1), np.eye(S * A)):
            raise ValueError("reward: truth() needs the tabular reward LinearReward.tabular(S, A)")
        return self.beta * self.true_reward.ravel()

    def decompose(self, lower, phi: np.ndarray, theta: np.ndarray | None = None) -> LikelihoodParts:
        """The entropy and KL parts of eq. (5) at theta (default theta*(phi)), on one set of pairs: exact in
        exact mode (entropy + kl equals the likelihood objective to rounding), one sample otherwise."""
        theta = lower.solve(phi) if theta is None else np.asarray(theta, dtype=np.float64)
        with torch.no_grad():
            p, r0, r1, reduce = self.pair_terms(lower, torch.as_tensor(np.asarray(phi, dtype=np.float64)),
                                                torch.as_tensor(theta))
            return LikelihoodParts(entropy=float(reduce(-binary_entropy(p))), kl=float(reduce(excess_kl(p, r0, r1))))


class WinRateObjective(PairObjective):
    """G(phi) = E_{tau ~ rho(theta*(phi)), tau_ref ~ rho(reference)}[p_true(tau > tau_ref)]: eqs. (2)-(4) with
    the designer utility U(tau) = P(the labeller prefers tau to a reference trajectory).

    ``reference``: an (S, A) policy table, held fixed; None is the uniform policy. U does not depend on phi,
    so the direct term of eq. (8) is zero and the whole hypergradient is the policy term J^T g. With the
    reference equal to the policy, G = 1/2 (p(a, b) + p(b, a) = 1)."""

    def __init__(self, true_reward: np.ndarray, horizon: int, beta: float = 1.0, reference=None, *,
                 mode: str = "auto", max_trajectories: int = 2000, n_samples: int = 4096, seed: int = 0):
        true_reward = np.asarray(true_reward, dtype=np.float64)
        if reference is None and true_reward.ndim == 2:
            reference = np.full(true_reward.shape, 1.0 / max(true_reward.shape[1], 1))
        super().__init__(true_reward, horizon, beta, reference=reference, mode=mode,
                         max_trajectories=max_trajectories, n_samples=n_samples, seed=seed)

    def pair_values(self, p, r0, r1):
        return p

"""Tabular softmax policy, linear reward and table critic as torch modules over one-hot observations and
actions: the bridge that lets the neural Term 2 estimators of :mod:`parl_deep.preference.hypergrad` run unchanged on a
parl_core problem whose exact answer is known."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from parl_core import (BilevelProblem, LinearReward, PreferenceObjective, SoftLowerLevel, TabularMDP,
                       WinRateObjective, garnet, softmax)
from parl_core.trajectories import sample_trajectories

from .hypergrad import PairBatch


class TabularPolicy(torch.nn.Module):
    """pi_theta(a|s) = softmax(theta[s])_a with obs = one-hot(s), act = one-hot(a)."""

    def __init__(self, theta: np.ndarray):
        super().__init__()
        self.theta = torch.nn.Parameter(torch.as_tensor(np.asarray(theta, dtype=np.float64)).clone())

    def log_prob(self, obs, act):
        return (F.log_softmax(obs @ self.theta, dim=-1) * act).sum(-1)

    def expected(self, obs, fn):
        probs = F.softmax(obs @ self.theta, dim=-1)
        A = probs.shape[-1]
        eye = torch.eye(A, dtype=obs.dtype, device=obs.device)
        values = torch.stack([fn(obs, eye[a].expand(len(obs), A)) for a in range(A)], dim=-1)
        return (probs * values).sum(-1)


class LinearRewardModule(torch.nn.Module):
    """r_phi(s, a) = features[s, a, :] @ phi over one-hot observations and actions."""

    def __init__(self, features: np.ndarray, phi: np.ndarray):
        super().__init__()
        self.register_buffer("features", torch.as_tensor(np.asarray(features, dtype=np.float64)))
        self.phi = torch.nn.Parameter(torch.as_tensor(np.asarray(phi, dtype=np.float64)).clone())

    def forward(self, obs, act):
        S, A, n = self.features.shape
        per_action = (obs @ self.features.reshape(S, A * n)).reshape(-1, A, n)
        return (act[:, :, None] * per_action).sum(1) @ self.phi


class TableCritic(torch.nn.Module):
    """Q(s, a) from an (S, A) table."""

    def __init__(self, q: np.ndarray):
        super().__init__()
        self.register_buffer("q", torch.as_tensor(np.asarray(q, dtype=np.float64)))

    def forward(self, obs, act):
        return ((obs @ self.q) * act).sum(-1)


def onehot_cell_features(h: torch.Tensor, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
    """One-hot of the (step, state, action) cell: with a linear regressor, per-cell conditional means."""
    return (h[:, :, None, None] * obs[:, None, :, None] * act[:, None, None, :]).reshape(len(h), -1)


def sample_pair_batch(mdp: TabularMDP, pi: np.ndarray, true_reward: np.ndarray, beta: float, segment: int,
                      length: int, n_pairs: int, rng: np.random.Generator) -> PairBatch:
    """``n_pairs`` pairs of ``length``-step trajectories from pi (the first ``segment`` steps are compared),
    labelled by a Bradley-Terry teacher on the true segment returns (y = 1: segment 0 preferred)."""
    S, A = mdp.shape
    s, a = sample_trajectories(mdp, pi, length, 2 * n_pairs, rng)
    ret = true_reward[s[:, :segment], a[:, :segment]].sum(1)
    d = ret[:n_pairs] - ret[n_pairs:]
    p = 1 / (1 + np.exp(-beta * d)) if np.isfinite(beta) else (d > 0) + 0.5 * (d == 0)
    y = (rng.random(n_pairs) < p).astype(np.float64)
    eyeS, eyeA = np.eye(S), np.eye(A)
    obs = eyeS[s].reshape(2, n_pairs, length, S).transpose(1, 0, 2, 3)
    act = eyeA[a].reshape(2, n_pairs, length, A).transpose(1, 0, 2, 3)
    return PairBatch(obs=torch.as_tensor(np.ascontiguousarray(obs)), act=torch.as_tensor(np.ascontiguousarray(act)),
                     labels=torch.as_tensor(y), segment=segment)


def sample_reference_batch(mdp: TabularMDP, pi: np.ndarray, reference: np.ndarray, true_reward: np.ndarray,
                           beta: float, segment: int, length: int, n_pairs: int,
                           rng: np.random.Generator) -> PairBatch:
    """``n_pairs`` pairs (a ``length``-step trajectory of pi, one of the fixed policy ``reference``), the first
    ``segment`` steps compared by the Bradley-Terry teacher of :func:`sample_pair_batch` (y = 1: pi's preferred);
    ``policy_sides = (0,)``: only segment 0 comes from the policy (the win rate of eqs. 3-4)."""
    S, A = mdp.shape
    s0, a0 = sample_trajectories(mdp, pi, length, n_pairs, rng)
    s1, a1 = sample_trajectories(mdp, reference, length, n_pairs, rng)
    d = true_reward[s0[:, :segment], a0[:, :segment]].sum(1) - true_reward[s1[:, :segment], a1[:, :segment]].sum(1)
    p = 1 / (1 + np.exp(-beta * d)) if np.isfinite(beta) else (d > 0) + 0.5 * (d == 0)
    y = (rng.random(n_pairs) < p).astype(np.float64)
    obs = np.stack([np.eye(S)[s0], np.eye(S)[s1]], axis=1)  # (n, 2, length, S)
    act = np.stack([np.eye(A)[a0], np.eye(A)[a1]], axis=1)
    return PairBatch(obs=torch.as_tensor(obs), act=torch.as_tensor(act), labels=torch.as_tensor(y), segment=segment,
                     policy_sides=(0,))


def exact_rlhf_case(seed: int = 0, S: int = 5, A: int = 3, n: int = 4, T: int = 3, lam: float = 1.0,
                    gamma: float = 0.8, beta: float = 2.0, score: str = "likelihood",
                    reference: np.ndarray | None = None) -> dict:
    """A seeded RLHF problem with its exact Term 1 and Term 2 (parl_core; the upper objective is
    ``PreferenceObjective(score=score)``, or with ``score="win_rate"`` the exact ``WinRateObjective`` against the
    policy ``reference``, default uniform, returned as ``reference``) and the modules the estimators use."""
    mdp = garnet(S, A, 3, gamma=gamma, seed=seed)
    rng = np.random.default_rng(seed)
    feats, phi, true = rng.normal(size=(S, A, n)), 0.5 * rng.normal(size=n), rng.normal(size=(S, A))
    lower = SoftLowerLevel(mdp, LinearReward(feats), lam)
    reference = np.full((S, A), 1.0 / A) if reference is None else np.asarray(reference, dtype=np.float64)
    upper = (WinRateObjective(true, T, beta, reference, mode="exact") if score == "win_rate"
             else PreferenceObjective(true, T, beta, score=score, mode="exact"))
    prob = BilevelProblem(lower, upper)
    theta = lower.solve(phi)
    term1 = prob.direct_gradient(phi, theta)
    term2 = prob.hypergradient(phi, "soft_bellman") - term1
    modules = dict(policy=TabularPolicy(theta), reward=LinearRewardModule(feats, phi),
                   critic=TableCritic(lower.evaluate(phi, softmax(theta)).q))
    return dict(mdp=mdp, pi=softmax(theta), true=true, beta=beta, T=T, lam=lam, gamma=gamma, term1=term1,
                term2=term2, reference=reference, value=upper.value(lower, phi, theta), **modules)

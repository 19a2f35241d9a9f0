"""Appendix C, example 1: energy-aware workbench placement (eq. 23), discretised (`parl example workbench`).

The arm is one joint. Its state is s = (angle index j in 0..N-1, angular velocity w in -W..W), its action an
angular acceleration a in {-1, 0, +1}. As in the paper's transition (theta_{h+1}, w_{h+1}) = (theta_h + w_h,
w_h + a_h), the angle moves by the current velocity and the velocity by the action; the joint stops (w = 0) at
its limits, and with probability ``slip`` the actuator fails for a step (a = 0). Episodes start at rest at j = 0.

The designer places the workbench at a continuous angle phi (one parameter). The arm's reward pulls it there
and penalises speed (the paper's -alpha_1 ||theta - phi||^2 - alpha_2 ||w||^2, with a Gaussian pull so that the
reward stays bounded):

    r_phi(s, a) = exp(-(j - phi)^2 / (2 sigma^2)) - alpha w^2.

The arm learns the entropy-regularised optimum theta*(phi) for r_phi. The designer pays the arm's mechanical
energy, the power |a_h w_h| summed over H_u steps of the optimal arm's trajectories (eq. 23), and a placement
cost c (phi - phi_line)^2 for moving the bench away from the production line at phi_line (default N - 1):

    G(phi) = - E_{tau ~ rho(.; theta*(phi))}[ sum_{h<H_u} |a_h w_h| ] - c (phi - phi_line)^2.

Both terms are smooth in phi; the optimum trades a shorter (cheaper) swing against the placement cost.
"""
from __future__ import annotations

import numpy as np
import torch

from ..bilevel import BilevelProblem, quadratic_regularizer
from ..lower import SoftLowerLevel
from ..mdp import TabularMDP
from ..rewards import CallableReward
from ..upper import AdditiveUtility

ACCELERATIONS = (-1, 0, 1)


def arm_mdp(n_angles: int = 15, max_speed: int = 2, *, slip: float = 0.2, gamma: float = 0.9) -> TabularMDP:
    """The discretised arm: state index j * (2W + 1) + (w + W), actions ACCELERATIONS, start at rest at j = 0."""
    if n_angles < 2 or max_speed < 1:
        raise ValueError(f"n_angles, max_speed: need n_angles >= 2 and max_speed >= 1, got {n_angles}, {max_speed}")
    if not 0.0 <= slip < 1.0:
        raise ValueError(f"slip: must lie in [0, 1), got {slip}")
    V = 2 * max_speed + 1
    S, A = n_angles * V, len(ACCELERATIONS)
    T = np.zeros((S, A, S))
    for j in range(n_angles):
        for w in range(-max_speed, max_speed + 1):
            s = j * V + w + max_speed
            for i, acc in enumerate(ACCELERATIONS):
                for a, p in ((acc, 1.0 - slip), (0, slip)):
                    j2 = j + w
                    w2 = int(np.clip(w + a, -max_speed, max_speed))
                    if not 0 <= j2 < n_angles:  # the joint limit stops the arm
                        j2, w2 = int(np.clip(j2, 0, n_angles - 1)), 0
                    T[s, i, j2 * V + w2 + max_speed] += p
    mu = np.zeros(S)
    mu[max_speed] = 1.0  # j = 0, w = 0
    return TabularMDP(T, mu, gamma)


def arm_coordinates(n_angles: int, max_speed: int) -> tuple[np.ndarray, np.ndarray]:
    """(angle index j, velocity w) of every state of :func:`arm_mdp`."""
    j, k = np.divmod(np.arange(n_angles * (2 * max_speed + 1)), 2 * max_speed + 1)
    return j.astype(np.float64), (k - max_speed).astype(np.float64)


def workbench_problem(n_angles: int = 15, max_speed: int = 2, *, sigma: float = 3.0, alpha: float = 0.2,
                      cost: float = 0.03, line: float | None = None, horizon: int = 20, temperature: float = 0.2,
                      gamma: float = 0.9, slip: float = 0.2) -> BilevelProblem:
    """max_phi G(phi) of the module docstring as a :class:`BilevelProblem` with one parameter (the bench angle)."""
    mdp = arm_mdp(n_angles, max_speed, slip=slip, gamma=gamma)
    j, w = arm_coordinates(n_angles, max_speed)
    S, A = mdp.shape
    j_t, speed_cost = torch.as_tensor(j), torch.as_tensor(alpha * w**2)

    def pull(phi: torch.Tensor) -> torch.Tensor:
        r = torch.exp(-((j_t - phi[0]) ** 2) / (2 * sigma**2)) - speed_cost
        return r[:, None].expand(S, A)

    energy = -np.abs(np.asarray(ACCELERATIONS, dtype=np.float64)[None, :] * w[:, None])
    lower = SoftLowerLevel(mdp, CallableReward(pull, 1, (S, A)), temperature)
    target = np.array([n_angles - 1.0 if line is None else float(line)])
    return BilevelProblem(lower, AdditiveUtility(energy, horizon), quadratic_regularizer(cost, target))

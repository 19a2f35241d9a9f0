"""Appendix C, example 3: goal placement in an N x N maze (`parl example maze`).

The designer places a goal at a continuous position phi in R^2. The robot's reward is a Gaussian bump
r_phi(s, a) = exp(-||pos(s) - phi||^2 / (2 sigma^2)); it learns the entropy-regularised optimal policy for it
from the start cell (0, 0). The designer wants the robot to collect reward over H_u steps but pays
c ||phi - (N-1, N-1)||^2 for moving the goal away from the far corner:

    G(phi) = E_{tau ~ rho(.; theta*(phi))}[ sum_{h<H_u} r_phi(s_h, a_h) ] - c ||phi - (N-1, N-1)||^2.
"""
from __future__ import annotations

import numpy as np
import torch

from ..bilevel import BilevelProblem, quadratic_regularizer
from ..lower import SoftLowerLevel
from ..mdp import gridworld
from ..rewards import CallableReward
from ..upper import AdditiveUtility


def maze_goal_problem(n: int = 5, *, sigma: float = 1.0, cost: float = 0.2, horizon: int = 12,
                      temperature: float = 0.1, gamma: float = 0.9, slip: float = 0.1,
                      wall_density: float = 0.15, seed: int = 0) -> BilevelProblem:
    mdp = gridworld(n, gamma=gamma, slip=slip, wall_density=wall_density, seed=seed)
    rows, cols = np.divmod(np.arange(n * n), n)
    pos = torch.as_tensor(np.stack([rows, cols], axis=1), dtype=torch.float64)

    def bump(phi: torch.Tensor) -> torch.Tensor:
        r = torch.exp(-((pos - phi) ** 2).sum(1) / (2 * sigma**2))
        return r[:, None].expand(n * n, 4)

    reward = CallableReward(bump, 2, (n * n, 4))
    lower = SoftLowerLevel(mdp, reward, temperature)
    corner = np.array([n - 1.0, n - 1.0])
    return BilevelProblem(lower, AdditiveUtility(reward, horizon), quadratic_regularizer(cost, corner))

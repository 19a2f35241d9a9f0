"""Appendix C, example 2: tax design for social welfare (eq. 24), discretised (`parl example tax`).

Households. A household's state is its skill level k in 0..K-1, which sets its wage w_k = 1 + wage_step * k; the
initial distribution mu over skill levels is the population (households are heterogeneous through it). Each
step it chooses an action a = (hours n, consumption c) on the grids ``hours`` x ``consumption``. Working builds
skill (with probability growth * n the level rises by one) and idleness erodes it (with probability
decay * (1 - n) it falls by one): these skill transitions do not depend on the taxes.

Taxes. The planner sets phi = (x, y): an income tax x on labour income and a consumption tax y on the price
(pre-tax price 1) of the good. The household's per-step utility (the paper's u_h, with one good) is

    u_phi(s, a) = c^nu - kappa n^2 + eta [ (1 - x) w_k n - (1 + y) c ],

a Cobb-Douglas consumption term, the disutility of labour, and the after-tax cash flow (income minus
tax-inclusive spending) valued at the marginal utility of money eta (quasi-linear utility: the cash is saved
in an outside asset). Households learn the entropy-regularised optimum theta*(phi) for u_phi.

Welfare. The revenue collected from a household in one step is R_phi(s, a) = x w_k n + y c; it funds public
goods of value psi log(1 + R) (the paper's psi ln(revenue) term, shifted so that zero revenue is finite).
Social welfare is the households' utility plus that value, summed over H_u steps of the optimal households'
trajectories and averaged over the population mu:

    G(phi) = E_{tau ~ rho(.; theta*(phi))}[ sum_{h<H_u} u_phi(s_h, a_h) + psi log(1 + R_phi(s_h, a_h)) ].

Taxes move eta R from households to public goods worth psi / (1 + R) per unit, and distort labour (hence skill)
and consumption; G has an interior optimum when psi > eta. The rates are meant to stay in [0, 1).

Difference from the paper: there the tax also enters the wealth transition. parl_core's designer shapes the
reward only (P is fixed), so here the state is skill and the taxes act through the per-step budget.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..bilevel import BilevelProblem
from ..lower import SoftLowerLevel
from ..mdp import TabularMDP
from ..rewards import CallableReward
from ..upper import AdditiveUtility


@dataclass(frozen=True)
class Economy:
    """The parameters of the household model (module docstring)."""

    n_skills: int = 6
    hours: tuple[float, ...] = (0.0, 0.5, 1.0)
    consumption: tuple[float, ...] = (0.25, 0.5, 1.0)
    wage_step: float = 0.4
    growth: float = 0.5
    decay: float = 0.3
    nu: float = 0.5
    kappa: float = 0.6
    eta: float = 0.5
    psi: float = 1.0

    def __post_init__(self):
        if self.n_skills < 1 or not self.hours or not self.consumption:
            raise ValueError("economy: needs n_skills >= 1 and non-empty hours and consumption grids")
        if not all(0.0 <= n <= 1.0 for n in self.hours) or min(self.consumption) < 0:
            raise ValueError("economy: hours must lie in [0, 1] and consumption must be >= 0")
        if not (0 <= self.growth <= 1 and 0 <= self.decay <= 1):
            raise ValueError(f"economy: growth and decay are probabilities, got {self.growth}, {self.decay}")

    def actions(self) -> tuple[np.ndarray, np.ndarray]:
        """(hours n, consumption c) of every action index, hours-major."""
        n, c = np.meshgrid(self.hours, self.consumption, indexing="ij")
        return n.ravel(), c.ravel()

    def wages(self) -> np.ndarray:
        return 1.0 + self.wage_step * np.arange(self.n_skills)


def household_mdp(economy: Economy = Economy(), *, gamma: float = 0.9) -> TabularMDP:
    """Skill transitions; the population mu puts more households at low skill (weights K - k)."""
    K = economy.n_skills
    n, _ = economy.actions()
    T = np.zeros((K, n.size, K))
    for k in range(K):
        up, down = economy.growth * n, economy.decay * (1 - n)
        T[k, :, min(k + 1, K - 1)] += up
        T[k, :, max(k - 1, 0)] += down
        T[k, :, k] += 1 - up - down
    mu = np.arange(K, 0, -1, dtype=np.float64)
    return TabularMDP(T, mu / mu.sum(), gamma)


def tax_problem(economy: Economy = Economy(), *, horizon: int = 10, temperature: float = 0.1,
                gamma: float = 0.9) -> BilevelProblem:
    """max_{phi = (x, y)} G(phi) of the module docstring as a :class:`BilevelProblem`."""
    mdp = household_mdp(economy, gamma=gamma)
    S, A = mdp.shape
    n, c = (torch.as_tensor(v)[None, :] for v in economy.actions())
    wage = torch.as_tensor(economy.wages())[:, None]
    private = c**economy.nu - economy.kappa * n**2

    def utility(phi: torch.Tensor) -> torch.Tensor:
        return private + economy.eta * ((1 - phi[0]) * wage * n - (1 + phi[1]) * c)

    def welfare(phi: torch.Tensor) -> torch.Tensor:
        revenue = phi[0] * wage * n + phi[1] * c
        return utility(phi) + economy.psi * torch.log1p(revenue)

    lower = SoftLowerLevel(mdp, CallableReward(utility, 2, (S, A)), temperature)
    return BilevelProblem(lower, AdditiveUtility(CallableReward(welfare, 2, (S, A)), horizon))

"""The MDP family the checks run over: random Garnets across S, A, gamma and temperature, a chain, a gridworld.

Each :class:`Case` fixes an MDP, a linear reward r_phi(s, a) = features[s, a] . phi, a temperature lam, a reward
parameter phi and an upper-level utility table u; checks build the parl_core objects they need from it.
``quick`` keeps every MDP small (S <= 5) so that ``parl verify --quick`` runs in about a minute.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from parl_core import AdditiveUtility, BilevelProblem, LinearReward, SoftLowerLevel, chain, garnet, gridworld
from parl_core.bilevel import quadratic_regularizer
from parl_core.mdp import TabularMDP


@dataclass(eq=False)
class Case:
    name: str
    kind: str
    mdp: TabularMDP
    features: np.ndarray  # (S, A, n)
    temperature: float
    phi: np.ndarray  # (n,)
    u: np.ndarray  # (S, A) upper-level utility

    @property
    def S(self) -> int:
        return self.mdp.n_states

    @property
    def A(self) -> int:
        return self.mdp.n_actions

    @property
    def gamma(self) -> float:
        return self.mdp.gamma

    def reward(self) -> LinearReward:
        return LinearReward(self.features)

    def lower(self, temperature: float | None = None) -> SoftLowerLevel:
        return SoftLowerLevel(self.mdp, self.reward(), self.temperature if temperature is None else temperature)

    def problem(self, horizon: int = 4, reg: float = 0.0, temperature: float | None = None) -> BilevelProblem:
        """max_phi E_{rho(theta*(phi))}[sum_{h<H} u(s_h, a_h)] - reg ||phi||^2."""
        regularizer = quadratic_regularizer(reg, np.zeros(self.features.shape[2])) if reg > 0 else None
        return BilevelProblem(self.lower(temperature), AdditiveUtility(self.u, horizon), regularizer)

    def settings(self) -> dict:
        return {"case": self.name, "kind": self.kind, "S": self.S, "A": self.A, "gamma": self.gamma,
                "temperature": self.temperature, "n_params": int(self.features.shape[2])}


def make_case(name: str, kind: str, mdp: TabularMDP, temperature: float, n_params: int, seed: int) -> Case:
    rng = np.random.default_rng(seed)
    S, A = mdp.shape
    features = rng.normal(size=(S, A, n_params)) / np.sqrt(n_params)
    phi = rng.normal(size=n_params)
    u = rng.uniform(-1.0, 1.0, size=(S, A))
    return Case(name, kind, mdp, features, float(temperature), phi, u)


def family(quick: bool = True, seed: int = 0) -> list[Case]:
    """The cases of a run. Quick: 6 Garnets (S in {3, 4, 5}) + chain(4) + 2x2 grid; full: 24 Garnets + 2 chains
    + 2 grids."""
    cases: list[Case] = []
    if quick:
        grid = [(3, 2, 0.5, 1.0), (3, 3, 0.9, 0.1), (4, 2, 0.9, 1.0), (4, 3, 0.5, 0.1), (5, 2, 0.9, 0.3),
                (5, 3, 0.7, 0.5)]
    else:
        grid = list(itertools.product((3, 6, 10), (2, 4), (0.5, 0.9), (0.1, 1.0)))
    for i, (S, A, g, lam) in enumerate(grid):
        mdp = garnet(S, A, branching=2 if S <= 4 else 3, gamma=g, seed=seed * 1000 + i)
        cases.append(make_case(f"garnet-S{S}-A{A}-g{g}-lam{lam}", "garnet", mdp, lam, 4, seed * 1000 + 500 + i))
    chains = [(4, 0.9, 0.3)] if quick else [(5, 0.9, 0.3), (8, 0.95, 0.1)]
    for j, (n, g, lam) in enumerate(chains):
        cases.append(make_case(f"chain-{n}-g{g}-lam{lam}", "chain", chain(n, gamma=g, slip=0.1), lam, 3,
                               seed * 1000 + 700 + j))
    grids = [(2, 0.8, 0.5)] if quick else [(2, 0.8, 0.5), (3, 0.9, 0.2)]
    for j, (n, g, lam) in enumerate(grids):
        cases.append(make_case(f"grid-{n}x{n}-g{g}-lam{lam}", "gridworld", gridworld(n, gamma=g, slip=0.1), lam, 4,
                               seed * 1000 + 800 + j))
    return cases


def tiny(cases: list[Case], max_states: int = 4) -> list[Case]:
    """The cases small enough to enumerate trajectories over a few steps."""
    return [c for c in cases if c.S <= max_states]

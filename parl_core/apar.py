"""A-PARL (Algorithm 1), written once against three small protocols so that exact oracles (here) and neural
estimators (parl_deep) drive the same loop:

    for t = 0..T-1:
        theta_{K_t} = solver.improve(phi_t, theta, K_t)          # K_t inner policy-gradient steps, warm start
        grad_hat   = estimator(phi_t, theta_{K_t})                # eq. (14): the hypergradient at theta_K
        phi_{t+1}  = phi_t + alpha_u * grad_hat                    # upper ascent step

Theorem 1 takes K_t = t + 1. ``monitor`` (optional) supplies the exact G(phi_t), ||grad G(phi_t)|| and
theta*(phi_t) for the record; with neural estimators it may be omitted. ``update`` replaces the plain ascent
step (e.g. an Adam step on a neural reward model, where phi and theta are handles to torch modules rather than
arrays: parl_deep's A-PARL runs through this same function).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np

from .bilevel import BilevelProblem


class LowerSolver(Protocol):
    def improve(self, phi: np.ndarray, theta: np.ndarray, steps: int) -> np.ndarray: ...


class HypergradientEstimator(Protocol):
    def __call__(self, phi: np.ndarray, theta: np.ndarray) -> np.ndarray: ...


class UpperUpdate(Protocol):
    def __call__(self, phi, estimate, t: int): ...


class Monitor(Protocol):
    def objective(self, phi: np.ndarray) -> float: ...

    def true_gradient(self, phi: np.ndarray) -> np.ndarray: ...

    def theta_star(self, phi: np.ndarray) -> np.ndarray: ...


Schedule = Callable[[int], int]


def schedule(name: str, k: int = 1) -> Schedule:
    """Inner-step schedules: 'linear' K_t = t + 1 (Theorem 1), 'constant' K_t = k, 'log' K_t = k + ceil(log(t + 1))."""
    if name == "linear":
        return lambda t: t + 1
    if name == "constant":
        return lambda t: k
    if name == "log":
        return lambda t: k + int(np.ceil(np.log(t + 1)))
    raise ValueError(f"schedule: expected 'linear', 'constant' or 'log', got {name!r}")


@dataclass
class APARLHistory:
    phi: list[np.ndarray] = field(default_factory=list)
    objective: list[float] = field(default_factory=list)
    grad_norm: list[float] = field(default_factory=list)
    inner_error: list[float] = field(default_factory=list)  # ||theta_K - theta*||
    inner_steps: list[int] = field(default_factory=list)
    estimate_norm: list[float] = field(default_factory=list)

    def as_arrays(self) -> dict[str, np.ndarray]:
        return {k: np.asarray(v) for k, v in self.__dict__.items()}


def a_parl(phi0, theta0, solver: LowerSolver, estimator: HypergradientEstimator, *,
           iterations: int, step_size: float = 1.0, inner_steps: Schedule = schedule("linear"),
           monitor: Monitor | None = None, callback: Callable[[int, APARLHistory], None] | None = None,
           update: UpperUpdate | None = None, start: int = 0) -> tuple[object, object, APARLHistory]:
    """Run Algorithm 1 for t = start .. iterations-1; returns the final phi, theta and the per-iteration history.

    With the default ``update`` phi_{t+1} = phi_t + step_size * estimate (phi, theta numpy arrays); a custom
    ``update(phi, estimate, t) -> phi`` lets phi and theta be opaque handles (``start`` resumes at iteration t)."""
    if update is None:
        phi, theta = np.array(phi0, dtype=np.float64), np.array(theta0, dtype=np.float64)
        update = lambda p, e, t: p + step_size * np.asarray(e, dtype=np.float64)  # noqa: E731
    else:
        phi, theta = phi0, theta0
    hist = APARLHistory()
    for t in range(start, iterations):
        K = int(inner_steps(t))
        theta = solver.improve(phi, theta, K)
        est = estimator(phi, theta)
        hist.phi.append(phi.copy() if isinstance(phi, np.ndarray) else None)
        hist.inner_steps.append(K)
        hist.estimate_norm.append(float(np.linalg.norm(np.asarray(est, dtype=np.float64))))
        if monitor is not None:
            hist.objective.append(monitor.objective(phi))
            hist.grad_norm.append(float(np.linalg.norm(monitor.true_gradient(phi))))
            hist.inner_error.append(float(np.linalg.norm(theta - monitor.theta_star(phi))))
        if callback is not None:
            callback(t, hist)
        phi = update(phi, est, t)
    return phi, theta, hist


# ------------------------------------------------------------- exact oracles
@dataclass
class ExactPolicyGradient:
    """The lower-level solver of Algorithm 1 with exact gradients: K steps of PG (or natural PG)."""

    problem: BilevelProblem
    lr: float
    kind: str = "pg"

    def improve(self, phi, theta, steps):
        return self.problem.lower.improve(phi, theta, steps, self.lr, self.kind)


@dataclass
class PluginHypergradient:
    """Eq. (14): the hypergradient formula evaluated at theta_K instead of theta*(phi)
    (``method`` 'soft_bellman' or 'ift'). ``drop_term2=True`` keeps only the direct term of eq. (8)
    (Term 1 in the RLHF case): the standard iterative RLHF update that ignores how phi moves the policy."""

    problem: BilevelProblem
    method: str = "soft_bellman"
    drop_term2: bool = False

    def __call__(self, phi, theta):
        if self.drop_term2:
            return self.problem.direct_gradient(phi, theta)
        return self.problem.hypergradient(phi, self.method, theta=theta)


@dataclass
class ExactMonitor:
    problem: BilevelProblem
    method: str = "soft_bellman"

    def objective(self, phi):
        return self.problem.objective(phi)

    def true_gradient(self, phi):
        return self.problem.hypergradient(phi, self.method)

    def theta_star(self, phi):
        return self.problem.lower.solve(phi)

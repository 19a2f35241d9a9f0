"""Solving a designer's problem max_phi G(phi) exactly: A-PARL (Algorithm 1) with exact oracles, a grid search that
confirms its optimum, and every hypergradient route at one point. Shared by the Appendix C examples, their
command line (`parl example`) and the verification suite."""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np

from ..apar import APARLHistory, ExactPolicyGradient, PluginHypergradient, a_parl, schedule
from ..bilevel import METHODS, BilevelProblem


@dataclass(frozen=True)
class GridSearch:
    """G on the tensor grid of ``axes`` (values shaped like the grid) and its best point."""

    axes: tuple[np.ndarray, ...]
    values: np.ndarray
    best: np.ndarray

    @property
    def resolution(self) -> np.ndarray:
        """The spacing of each axis."""
        return np.array([float(np.max(np.diff(a))) if a.size > 1 else 0.0 for a in self.axes])


def grid_search(problem: BilevelProblem, axes: Sequence[np.ndarray],
                progress: Callable[[Iterable], Iterable] = lambda it: it) -> GridSearch:
    """Evaluate G(phi) exactly at every point of the grid ``axes[0] x axes[1] x ...``."""
    axes = tuple(np.asarray(a, dtype=np.float64) for a in axes)
    points = list(itertools.product(*axes))
    values = np.array([problem.objective(np.array(p)) for p in progress(points)]).reshape([a.size for a in axes])
    best = np.array(points[int(np.argmax(values))])
    return GridSearch(axes, values, best)


def designer_a_parl(problem: BilevelProblem, phi0: np.ndarray, *, iterations: int = 100, step_size: float = 1.0,
                    inner_steps: int = 3, lr: float = 0.5, method: str = "soft_bellman",
                    callback: Callable[[int, APARLHistory], None] | None = None) -> tuple[np.ndarray, APARLHistory]:
    """Algorithm 1 with exact oracles: ``inner_steps`` natural-PG steps (step ``lr``) warm-started from the previous
    policy, then the plug-in hypergradient of eq. (14) by ``method``, then phi += step_size * estimate."""
    theta0 = problem.lower.solve(np.asarray(phi0, dtype=np.float64))
    phi, _, hist = a_parl(phi0, theta0, ExactPolicyGradient(problem, lr, "npg"), PluginHypergradient(problem, method),
                          iterations=iterations, step_size=step_size, inner_steps=schedule("constant", inner_steps),
                          callback=callback)
    return phi, hist


@dataclass(frozen=True)
class RouteResult:
    gradient: np.ndarray
    seconds: float
    info: dict


def compare_routes(problem: BilevelProblem, phi: np.ndarray, methods: Sequence[str] = METHODS,
                   **options: dict) -> dict[str, RouteResult]:
    """grad G(phi) by every route in ``methods`` (``options[m]`` are that route's keyword options), timed."""
    out = {}
    for m in methods:
        t0 = time.perf_counter()
        g = problem.hypergradient(phi, m, **options.get(m, {}))
        out[m] = RouteResult(np.asarray(g), time.perf_counter() - t0, dict(problem.last_info))
    return out


def max_relative_difference(routes: dict[str, RouteResult], reference: str = "finite_difference") -> dict[str, float]:
    """max |g_m - g_ref| / max |g_ref| for every route m."""
    ref = routes[reference].gradient
    scale = max(float(np.abs(ref).max()), 1e-300)
    return {m: float(np.abs(r.gradient - ref).max()) / scale for m, r in routes.items()}

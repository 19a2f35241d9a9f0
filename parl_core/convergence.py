"""Theorem 1 as a measurement: run A-PARL with exact oracles, fit the rate, plot it (docs/theory.md section 6).

Theorem 1 bounds the running average of the squared true hypergradient norm of Algorithm 1 with K_t = t + 1,

    A_T = (1/T) sum_{t<T} ||grad G(phi_t)||^2  <=  (G(phi_0) - G*) / (delta_1 T) + const / T,

so log A_T against log T has slope <= -1 for large T. :func:`run_convergence` records ||grad G(phi_t)||^2 from
the exact monitor (the soft-Bellman hypergradient at theta*(phi_t)) while the iterates follow the plug-in
estimate of eq. (14) at theta_{K_t}. :func:`fit_rate` fits the log-log slope of A_T (or of the best-so-far
min_{t<T} ||grad G(phi_t)||^2) over the tail T >= sqrt(T_max), i.e. the second half of the run in log T, with a
confidence interval; :func:`plot_rate` draws the curves with the C / T envelope.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from .apar import ExactMonitor, ExactPolicyGradient, HypergradientEstimator, PluginHypergradient, Schedule, a_parl
from .apar import schedule as make_schedule
from .bilevel import BilevelProblem

__all__ = ["ConvergenceTrace", "RateFit", "run_convergence", "fit_rate", "plot_rate", "upper_lipschitz",
           "inner_step_size", "MEASURES"]

MEASURES = ("running_average", "best")


@dataclass(frozen=True)
class ConvergenceTrace:
    """One A-PARL run: per upper iteration t = 0..T-1, ||grad G(phi_t)||^2, K_t, ||theta_{K_t} - theta*(phi_t)||,
    G(phi_t) and the iterate phi_t (rows of ``phi``, shape (T, n)), plus the step sizes used."""

    grad_norm_sq: np.ndarray
    inner_steps: np.ndarray
    inner_error: np.ndarray
    objective: np.ndarray
    step_size: float
    inner_lr: float
    phi: np.ndarray | None = None
    label: str = ""

    @property
    def T(self) -> int:
        return len(self.grad_norm_sq)

    @property
    def iterations(self) -> np.ndarray:
        """T = 1..T_max, the number of upper steps each running quantity covers."""
        return np.arange(1, self.T + 1)

    @property
    def running_average(self) -> np.ndarray:
        """A_T = (1/T) sum_{t<T} ||grad G(phi_t)||^2, Theorem 1's left-hand side."""
        return np.cumsum(self.grad_norm_sq) / self.iterations

    @property
    def best(self) -> np.ndarray:
        """min_{t<T} ||grad G(phi_t)||^2 (never above A_T)."""
        return np.minimum.accumulate(self.grad_norm_sq)

    @property
    def constant(self) -> float:
        """The smallest C with A_T <= C / T for every T <= T_max."""
        return float(np.max(self.running_average * self.iterations))

    @property
    def inner_total(self) -> int:
        """Inner policy-gradient steps spent: sum_t K_t (T (T + 1) / 2 for K_t = t + 1)."""
        return int(np.sum(self.inner_steps))

    def measure(self, name: str) -> np.ndarray:
        if name not in MEASURES:
            raise ValueError(f"measure: expected one of {MEASURES}, got {name!r}")
        return self.running_average if name == "running_average" else self.best


@dataclass(frozen=True)
class RateFit:
    """Fitted log-log slope of a convergence measure against T (an O(1/T) rate gives about -1).

    ``slope`` is the mean of the per-trace slopes ``slopes`` and ``ci`` its ``level`` confidence interval:
    for one trace, the least-squares regression interval (scipy.stats.linregress standard error with Student t
    quantiles; it treats the residuals as independent, which the running average's are not, so read it as a
    lower bound on the uncertainty); for several traces, a percentile bootstrap of the mean over traces
    (scipy.stats.bootstrap). ``worst`` is the largest (slowest) per-trace slope."""

    slope: float
    ci: tuple[float, float]
    slopes: tuple[float, ...]
    worst: float
    measure: str
    level: float
    ci_method: str


def inner_step_size(problem: BilevelProblem, phi: np.ndarray, fraction: float = 0.5) -> float:
    """``fraction`` / L with L the largest eigenvalue of -hess_theta V at theta*(phi) on the gauge subspace
    (the local smoothness of the lower level; 1 / L is the classic safe policy-gradient step)."""
    lower = problem.lower
    Hg, _ = lower.gauge_hessian(phi, lower.solve(phi), reachable_only=False)
    return fraction / float(np.linalg.eigvalsh(-Hg).max())


def upper_lipschitz(problem: BilevelProblem, phi0: np.ndarray, rng: np.random.Generator, n: int = 6,
                    radius: float = 0.5) -> float:
    """Estimate L_g of Assumption 1 by the largest ratio ||grad G(a) - grad G(b)|| / ||a - b|| over ``n`` random
    pairs near ``phi0``; 1 / L_g bounds the upper step size alpha_u of Theorem 1."""
    best = 0.0
    for _ in range(n):
        a = phi0 + radius * rng.normal(size=phi0.shape)
        b = a + 0.05 * rng.normal(size=phi0.shape)
        ga, gb = problem.hypergradient(a), problem.hypergradient(b)
        best = max(best, float(np.linalg.norm(ga - gb) / np.linalg.norm(a - b)))
    return best


def run_convergence(problem: BilevelProblem, phi0: np.ndarray, T: int, step_size: float, *,
                    inner_steps: Schedule | str = "linear", inner_lr: float | None = None,
                    theta0: np.ndarray | None = None, estimator: HypergradientEstimator | None = None,
                    label: str = "") -> ConvergenceTrace:
    """Run Algorithm 1 for ``T`` upper steps of size ``step_size`` (alpha_u) from ``phi0`` and record its trace.

    ``inner_steps``: a schedule t -> K_t or a name of :func:`parl_core.schedule` ('linear' is Theorem 1's
    K_t = t + 1). ``inner_lr`` (alpha_l) defaults to :func:`inner_step_size` at phi0; ``theta0`` to zeros (the
    inner loop warm-starts from the previous theta); ``estimator`` to the plug-in eq. (14) with the
    soft-Bellman formula evaluated at theta_K."""
    if T < 1:
        raise ValueError(f"T: need at least one upper iteration, got {T}")
    phi0 = np.asarray(phi0, dtype=np.float64)
    sched = make_schedule(inner_steps) if isinstance(inner_steps, str) else inner_steps
    lr = inner_step_size(problem, phi0) if inner_lr is None else float(inner_lr)
    theta0 = np.zeros(problem.lower.mdp.shape) if theta0 is None else theta0
    est = PluginHypergradient(problem, "soft_bellman") if estimator is None else estimator
    _, _, hist = a_parl(phi0, theta0, ExactPolicyGradient(problem, lr), est, iterations=T, step_size=step_size,
                        inner_steps=sched, monitor=ExactMonitor(problem))
    return ConvergenceTrace(grad_norm_sq=np.array(hist.grad_norm) ** 2, inner_steps=np.array(hist.inner_steps),
                            inner_error=np.array(hist.inner_error), objective=np.array(hist.objective),
                            step_size=float(step_size), inner_lr=lr, phi=np.array(hist.phi), label=label)


def _tail(trace: ConvergenceTrace, measure: str) -> tuple[np.ndarray, np.ndarray]:
    """log T and log y over T >= sqrt(T_max), positive finite y only."""
    Ts, y = trace.iterations, trace.measure(measure)
    keep = (Ts >= np.sqrt(trace.T)) & (y > 0) & np.isfinite(y)
    return np.log(Ts[keep].astype(np.float64)), np.log(y[keep])


def trace_slope(trace: ConvergenceTrace, measure: str = "running_average") -> float:
    """Least-squares slope of log ``measure`` against log T over the tail T >= sqrt(T_max) (nan if < 2 points)."""
    x, y = _tail(trace, measure)
    return float(np.polyfit(x, y, 1)[0]) if x.size >= 2 else float("nan")


def fit_rate(traces: ConvergenceTrace | list[ConvergenceTrace], measure: str = "running_average",
             level: float = 0.95, n_resamples: int = 4000, seed: int = 0) -> RateFit:
    """Fit the log-log rate of ``measure`` ('running_average' A_T or 'best') with a ``level`` interval
    (see :class:`RateFit` for the two interval methods)."""
    traces = [traces] if isinstance(traces, ConvergenceTrace) else list(traces)
    if not traces:
        raise ValueError("traces: need at least one ConvergenceTrace")
    if not 0 < level < 1:
        raise ValueError(f"level: must lie in (0, 1), got {level}")
    slopes = np.array([trace_slope(t, measure) for t in traces])
    if len(traces) == 1:
        x, y = _tail(traces[0], measure)
        if x.size >= 3:
            se = stats.linregress(x, y).stderr
            se = 0.0 if not np.isfinite(se) and np.ptp(y) == 0 else se  # a flat line is fitted exactly
            half = float(stats.t.ppf(0.5 + level / 2, x.size - 2) * se)
        else:
            half = float("nan")
        ci, method = (slopes[0] - half, slopes[0] + half), "regression"
    else:
        res = stats.bootstrap((slopes,), np.mean, confidence_level=level, n_resamples=n_resamples,
                              method="percentile", random_state=np.random.default_rng(seed))
        ci, method = (float(res.confidence_interval.low), float(res.confidence_interval.high)), "bootstrap"
    return RateFit(slope=float(np.mean(slopes)), ci=(float(ci[0]), float(ci[1])),
                   slopes=tuple(float(s) for s in slopes), worst=float(np.max(slopes)), measure=measure,
                   level=level, ci_method=method)


def plot_rate(traces: ConvergenceTrace | list[ConvergenceTrace], path: str | Path | None = None, *, ax=None,
              measure: str = "running_average", envelope: bool = True):
    """Log-log curves of ``measure`` against T, one per trace (labelled with its slope and inner steps), and the
    C / T envelope of the first trace. Draws on ``ax`` if given, else on a new figure saved to ``path``
    (matplotlib is imported here only, without pyplot). Returns the axes."""
    traces = [traces] if isinstance(traces, ConvergenceTrace) else list(traces)
    fig = None
    if ax is None:
        from matplotlib.figure import Figure  # no pyplot: no global state, any backend

        fig = Figure(figsize=(5.5, 4.2))
        ax = fig.subplots()
    for i, tr in enumerate(traces):
        name = f"{tr.label}: " if tr.label else ""
        ax.loglog(tr.iterations, tr.measure(measure), color=f"C{i}",
                  label=f"{name}slope {trace_slope(tr, measure):.2f}, {tr.inner_total} inner steps")
    if envelope and traces:
        t0 = traces[0]
        ax.loglog(t0.iterations, t0.constant / t0.iterations, "k--", lw=1, label="C / T")
    ax.set_xlabel("T (upper iterations)")
    ax.set_ylabel(r"running average of $\|\nabla G(\phi_t)\|^2$" if measure == "running_average"
                  else r"$\min_{t<T} \|\nabla G(\phi_t)\|^2$")
    ax.legend(fontsize=7)
    if fig is not None and path is not None:
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return ax

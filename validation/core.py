"""Shared pieces of the verification suite: the result records, the pure verdict helpers and the run context.

Every verdict in the suite is computed by one of the helpers below from measured numbers; no check writes a
verdict by hand. The three verdicts are

* ``holds``: the inequality or identity holds on every sampled case, with the constant the paper states
  (or the constant derived and stated in the claim);
* ``fails``: at least one sampled case violates it; the check saves a counterexample (.npz) that reproduces it;
* ``holds-with-constant``: the paper leaves the constant unspecified (or not computable); the check reports
  the smallest constant that makes the inequality hold over the sampled family.
"""
from __future__ import annotations

import math
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HOLDS, FAILS, HOLDS_WITH_CONSTANT = "holds", "fails", "holds-with-constant"
VERDICTS = (HOLDS, FAILS, HOLDS_WITH_CONSTANT)


# ------------------------------------------------------------------ verdict helpers (pure)
def verdict_from_error(error: float, tol: float) -> str:
    """An identity (formula = truth) holds when the measured error is at most ``tol`` (NaN fails)."""
    return HOLDS if (np.isfinite(error) and error <= tol) else FAILS


def verdict_from_ratio(max_ratio: float, slack: float = 1e-9) -> str:
    """An inequality lhs <= bound holds when max(lhs / bound) over the sample is at most 1 + slack."""
    return HOLDS if (np.isfinite(max_ratio) and max_ratio <= 1.0 + slack) else FAILS


def verdict_for_constant(max_ratio: float) -> tuple[str, float | None]:
    """An inequality lhs <= C * rhs with C unspecified: holds-with-constant C = max(lhs / rhs) when that is
    finite; a non-finite ratio (lhs > 0 where rhs = 0, or NaN) means no constant works: fails."""
    if np.isfinite(max_ratio):
        return HOLDS_WITH_CONSTANT, float(max(max_ratio, 0.0))
    return FAILS, None


def verdict_from_threshold(value: float, threshold: float, *, below: bool = True) -> str:
    """A measured number must lie below (or above) a threshold: e.g. a fitted slope <= -0.9."""
    if not np.isfinite(value):
        return FAILS
    return HOLDS if ((value <= threshold) if below else (value >= threshold)) else FAILS


def worst(verdicts: list[str]) -> str:
    """The verdict of a check made of several claims: fails > holds-with-constant > holds."""
    if FAILS in verdicts:
        return FAILS
    if HOLDS_WITH_CONSTANT in verdicts:
        return HOLDS_WITH_CONSTANT
    return HOLDS


def safe_ratio(lhs: np.ndarray, rhs: np.ndarray, floor: float = 1e-14) -> np.ndarray:
    """lhs / rhs with 0/0 -> 0 (both below ``floor``) and x/0 -> inf."""
    lhs, rhs = np.asarray(lhs, float), np.asarray(rhs, float)
    out = np.empty(np.broadcast(lhs, rhs).shape)
    small = rhs <= floor
    with np.errstate(divide="ignore", invalid="ignore"):
        out[...] = lhs / rhs
    out[small & (np.abs(lhs) <= floor)] = 0.0
    out[small & (np.abs(lhs) > floor)] = np.inf
    return out


def fit_loglog_slope(x: np.ndarray, y: np.ndarray) -> float:
    """Least-squares slope of log y against log x (positive entries only)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = (x > 0) & (y > 0) & np.isfinite(y)
    if keep.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log(x[keep]), np.log(y[keep]), 1)[0])


def mean_ci(x: np.ndarray, level: float = 0.95, n_boot: int = 4000, seed: int = 0) -> tuple[float, float, float]:
    """Mean and a percentile-bootstrap confidence interval."""
    x = np.asarray(x, float)
    if x.size == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = rng.choice(x, size=(n_boot, x.size), replace=True).mean(axis=1)
    a = (1 - level) / 2
    return float(x.mean()), float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


# ------------------------------------------------------------------ records
def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (np.floating, float)):
        v = float(x)
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return v
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.bool_,)):
        return bool(x)
    if isinstance(x, Path):
        return str(x)
    return x


@dataclass
class Claim:
    """One verifiable statement and what the suite measured about it."""

    id: str
    claim: str
    verdict: str
    measured: dict
    settings: dict = field(default_factory=dict)
    constant: float | None = None
    constant_meaning: str | None = None
    counterexample: str | None = None
    corrected: dict | None = None
    notes: str = ""

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict: expected one of {VERDICTS}, got {self.verdict!r}")
        if not re.fullmatch(r"[a-z0-9_.\-]+", self.id):
            raise ValueError(f"id: only lower-case letters, digits, '.', '_', '-' allowed, got {self.id!r}")

    def to_json(self) -> dict:
        return _jsonable(asdict(self))


@dataclass
class Figure:
    path: str  # relative to the output directory
    caption: str


def save_figure(fig, path: Path, rel: str, caption: str) -> Figure:
    """Lay out, write (PNG, 110 dpi) and close a check's figure; returns its report entry."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Figure(rel, caption)


@dataclass
class CheckResult:
    name: str
    title: str
    summary: str
    claims: list[Claim]
    figures: list[Figure] = field(default_factory=list)
    runtime_s: float = 0.0

    @property
    def verdict(self) -> str:
        return worst([c.verdict for c in self.claims])

    def to_json(self) -> dict:
        return {"name": self.name, "title": self.title, "verdict": self.verdict, "summary": self.summary,
                "runtime_s": round(self.runtime_s, 3), "figures": [asdict(f) for f in self.figures],
                "claims": [c.to_json() for c in self.claims]}


# ------------------------------------------------------------------ run context
@dataclass
class Context:
    """What a check needs: the mode, the seed, the MDP family and where to write figures/counterexamples."""

    out: Path
    quick: bool = True
    seed: int = 0
    family: list = field(default_factory=list)
    progress: bool = True
    started: float = field(default_factory=time.time)

    def __post_init__(self):
        self.out = Path(self.out)
        self.fig_dir.mkdir(parents=True, exist_ok=True)
        self.cex_dir.mkdir(parents=True, exist_ok=True)

    @property
    def fig_dir(self) -> Path:
        return self.out / "figures"

    @property
    def cex_dir(self) -> Path:
        return self.out / "counterexamples"

    def rng(self, salt: str) -> np.random.Generator:
        """A generator per (seed, check) so that checks do not depend on the order they run in."""
        return np.random.default_rng([self.seed, sum(ord(c) * 131 ** i for i, c in enumerate(salt)) % 2**32])

    def figure_path(self, name: str) -> tuple[Path, str]:
        return self.fig_dir / name, f"figures/{name}"

    def save_counterexample(self, name: str, mdp, **arrays) -> str:
        """Save the MDP and the parameters that reproduce a failure; returns the path relative to ``out``."""
        path = self.cex_dir / f"{name}.npz"
        mdp.save(path, **{k: np.asarray(v) for k, v in arrays.items() if v is not None})
        return f"counterexamples/{name}.npz"

    def bar(self, iterable, desc: str, total: int | None = None):
        from tqdm import tqdm
        return tqdm(iterable, desc=desc, total=total, disable=not self.progress, leave=False, ncols=90)

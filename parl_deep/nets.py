"""Network pieces shared by the agents, the reward models and the estimators: one MLP builder, exact running
statistics, and the k-nearest-neighbour distance behind PEBBLE's state-entropy reward."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn as nn

__all__ = ["mlp", "OUTPUT_ACTIVATIONS", "RunningMeanStd", "knn_distance", "pearson"]

OUTPUT_ACTIVATIONS = {"tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "none": None}


def mlp(in_dim: int, hidden_dim: int, out_dim: int, depth: int, *, activation: type[nn.Module] = nn.ReLU,
        output: str = "none") -> nn.Sequential:
    """``depth`` x (Linear(hidden_dim) + activation), then Linear(out_dim) and the ``output`` activation
    (``"tanh"``, ``"sigmoid"`` or ``"none"``). Layers are created in order, so the initialisation consumes
    torch's random stream the same way for every caller."""
    if output not in OUTPUT_ACTIVATIONS:
        raise ValueError(f"unknown output activation {output!r}; valid: {', '.join(OUTPUT_ACTIVATIONS)}")
    layers: list[nn.Module] = []
    d = in_dim
    for _ in range(depth):
        layers += [nn.Linear(d, hidden_dim), activation()]
        d = hidden_dim
    layers.append(nn.Linear(d, out_dim))
    if OUTPUT_ACTIVATIONS[output] is not None:
        layers.append(OUTPUT_ACTIVATIONS[output]())
    return nn.Sequential(*layers)


class RunningMeanStd:
    """Exact running mean / population variance of every value seen (Chan et al.'s parallel update)."""

    def __init__(self) -> None:
        self.count = 0
        self.mean = 0.0
        self.m2 = 0.0  # sum of squared deviations from the mean

    def update(self, x: Any) -> None:
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        n = x.size
        if n == 0:
            return
        b_mean = float(x.mean())
        b_m2 = float(((x - b_mean) ** 2).sum())
        tot = self.count + n
        delta = b_mean - self.mean
        self.mean += delta * n / tot
        self.m2 += b_m2 + delta * delta * self.count * n / tot
        self.count = tot

    @property
    def var(self) -> float:
        return self.m2 / self.count if self.count else float("nan")

    @property
    def std(self) -> float:
        return math.sqrt(self.var)

    def state_dict(self) -> dict[str, float]:
        return {"count": self.count, "mean": self.mean, "m2": self.m2}

    def load_state_dict(self, sd: dict[str, float]) -> None:
        self.count, self.mean, self.m2 = int(sd["count"]), float(sd["mean"]), float(sd["m2"])


def knn_distance(query: torch.Tensor, reference: torch.Tensor, k: int, chunk: int = 16384) -> torch.Tensor:
    """Euclidean distance from each query row to its k-th nearest *other* row of ``reference``.

    The queries are assumed to be rows of ``reference`` (batch states drawn from the replay buffer), so the
    smallest distance (the query itself, 0) is skipped: the result is the ``(k+1)``-th smallest distance,
    as PEBBLE's particle entropy estimate. Shape ``(B,)``; ``reference`` must have at least ``k + 1`` rows.
    """
    n = reference.shape[0]
    if n < k + 1:
        raise ValueError(f"kNN with k={k} needs at least {k + 1} reference states, got {n}")
    best: torch.Tensor | None = None
    for s in range(0, n, chunk):
        d = torch.cdist(query, reference[s:s + chunk])  # matrix-multiply form: ~3x faster, ~1e-6 abs error
        cand = d if best is None else torch.cat([best, d], dim=1)
        best = torch.topk(cand, min(k + 1, cand.shape[1]), dim=1, largest=False).values
    return best[:, k]


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson's correlation of two samples (NaN when either has fewer than 2 values or no spread)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float("nan") if a.size < 2 or a.std() == 0 or b.std() == 0 else float(np.corrcoef(a, b)[0, 1])

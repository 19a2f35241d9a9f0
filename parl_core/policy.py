"""Tabular softmax policies pi_theta(a|s) = exp(theta[s,a]) / sum_b exp(theta[s,b]) and their gauge.

Softmax is invariant to adding a constant per state, so theta is identified with its representative in the
sum-zero gauge sum_a theta[s,a] = 0 (docs/theory.md section 2).
"""
from __future__ import annotations

import numpy as np
import torch


def softmax(theta: np.ndarray) -> np.ndarray:
    """Row-wise softmax of an (S, A) array, numerically stable."""
    z = theta - theta.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def log_softmax(theta: np.ndarray) -> np.ndarray:
    z = theta - theta.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def gauge(theta: np.ndarray) -> np.ndarray:
    """Project onto the sum-zero gauge: theta[s,:] - mean_a theta[s,a]."""
    return theta - theta.mean(axis=1, keepdims=True)


def gauge_basis(n_actions: int) -> np.ndarray:
    """Orthonormal basis (A, A-1) of {x in R^A : sum x = 0}; per state, the gauge subspace is spanned by it."""
    A = n_actions
    q, _ = np.linalg.qr(np.eye(A) - 1.0 / A)
    return q[:, : A - 1]


def gauge_torch(theta: torch.Tensor) -> torch.Tensor:
    return theta - theta.mean(dim=-1, keepdim=True)

"""Parametric rewards r_phi(s, a) (docs/theory.md section 1).

A reward exposes three views of the same map phi -> r_phi in R^{S x A}:
``table(phi)`` (numpy), ``jacobian(phi)`` = d r_phi / d phi of shape (S, A, n), and ``torch(phi)`` for
automatic differentiation. :class:`LinearReward` is r_phi(s,a) = features[s,a,:] @ phi (the tabular reward is
the identity-feature case); :class:`CallableReward` wraps any differentiable torch function of phi.
"""
from __future__ import annotations

from typing import Callable, Protocol, runtime_checkable

import numpy as np
import torch
from torch.func import jacrev


@runtime_checkable
class Reward(Protocol):
    n_params: int
    shape: tuple[int, int]

    def table(self, phi: np.ndarray) -> np.ndarray: ...

    def jacobian(self, phi: np.ndarray) -> np.ndarray: ...

    def torch(self, phi: torch.Tensor) -> torch.Tensor: ...


def check_phi(phi, n_params: int) -> np.ndarray:
    phi = np.asarray(phi, dtype=np.float64)
    if phi.shape != (n_params,):
        raise ValueError(f"phi: expected shape ({n_params},), got {phi.shape}")
    if not np.all(np.isfinite(phi)):
        raise ValueError("phi: contains NaN or inf")
    return phi


class LinearReward:
    """r_phi(s, a) = features[s, a, :] @ phi."""

    def __init__(self, features: np.ndarray):
        f = np.asarray(features, dtype=np.float64)
        if f.ndim != 3:
            raise ValueError(f"features: expected shape (S, A, n), got {f.shape}")
        if not np.all(np.isfinite(f)):
            raise ValueError("features: contains NaN or inf")
        self.features = f
        self.shape = (f.shape[0], f.shape[1])
        self.n_params = f.shape[2]
        self._torch_features = torch.as_tensor(f)

    @classmethod
    def tabular(cls, n_states: int, n_actions: int) -> "LinearReward":
        """One parameter per (s, a): phi reshaped to (S, A) is the reward table."""
        return cls(np.eye(n_states * n_actions).reshape(n_states, n_actions, n_states * n_actions))

    def table(self, phi: np.ndarray) -> np.ndarray:
        return self.features @ check_phi(phi, self.n_params)

    def jacobian(self, phi: np.ndarray) -> np.ndarray:
        return self.features

    def torch(self, phi: torch.Tensor) -> torch.Tensor:
        return self._torch_features @ phi


class CallableReward:
    """Any differentiable torch callable ``fn(phi) -> (S, A)`` tensor, with phi of length ``n_params``."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], n_params: int, shape: tuple[int, int]):
        self.fn = fn
        self.n_params = int(n_params)
        self.shape = tuple(shape)
        out = fn(torch.zeros(self.n_params, dtype=torch.float64))
        if tuple(out.shape) != self.shape:
            raise ValueError(f"reward: callable returned shape {tuple(out.shape)}, expected {self.shape}")

    def table(self, phi: np.ndarray) -> np.ndarray:
        phi = check_phi(phi, self.n_params)
        with torch.no_grad():
            return self.fn(torch.as_tensor(phi)).numpy().astype(np.float64)

    def jacobian(self, phi: np.ndarray) -> np.ndarray:
        phi = check_phi(phi, self.n_params)
        return jacrev(self.fn)(torch.as_tensor(phi)).detach().numpy()

    def torch(self, phi: torch.Tensor) -> torch.Tensor:
        return self.fn(phi)


def as_reward(reward, shape: tuple[int, int] | None = None, n_params: int | None = None) -> Reward:
    """Accept a Reward, an (S, A, n) feature array, or a torch callable (needs ``shape`` and ``n_params``)."""
    if isinstance(reward, (LinearReward, CallableReward)) or isinstance(reward, Reward):
        return reward
    if isinstance(reward, np.ndarray):
        return LinearReward(reward)
    if callable(reward):
        if shape is None or n_params is None:
            raise ValueError("reward: a callable reward needs shape=(S, A) and n_params")
        return CallableReward(reward, n_params, shape)
    raise ValueError(f"reward: expected LinearReward, CallableReward, features array or callable, got {type(reward)}")

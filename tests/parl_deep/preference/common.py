"""Helpers shared by the preference tests: a small reward ensemble and random segment batches."""
from __future__ import annotations

import numpy as np

from parl_deep.preference.reward_model import RewardEnsemble


def small_ensemble(obs_dim: int, act_dim: int, seed: int = 0, **kw) -> RewardEnsemble:
    """A reward ensemble with 2 hidden layers of 32 units unless ``kw`` says otherwise."""
    kw.setdefault("hidden", 32)
    kw.setdefault("layers", 2)
    return RewardEnsemble(obs_dim, act_dim, seed=seed, **kw)


def random_segments(rng: np.random.Generator, n: int, *, dim: int, T: int, spread: float = 0.5) -> np.ndarray:
    """``n`` segments of ``T`` steps: a per-segment offset (scale ``spread``) plus unit noise, float32."""
    mu = rng.normal(scale=spread, size=(n, 1, dim))
    return (mu + rng.normal(size=(n, T, dim))).astype(np.float32)

"""Hypothesis strategies for small random MDPs and policies."""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from parl_core import TabularMDP


@st.composite
def mdps(draw, max_states: int = 4, max_actions: int = 3, max_gamma: float = 0.95, sparse_support: bool = True):
    S = draw(st.integers(1, max_states))
    A = draw(st.integers(1, max_actions))
    gamma = draw(st.floats(0.0, max_gamma))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    T = rng.random((S, A, S)) ** 3
    if sparse_support and S > 1:
        T *= rng.random((S, A, S)) < 0.6  # some zero transitions
        T[np.arange(S), :, rng.integers(0, S, size=S)] += 0.1  # keep each row nonzero
    T /= T.sum(axis=2, keepdims=True)
    mu = rng.random(S) + 0.05
    mu /= mu.sum()
    return TabularMDP(T, mu, gamma)


@st.composite
def logits(draw, shape: tuple[int, int], scale: float = 3.0):
    seed = draw(st.integers(0, 2**31 - 1))
    return np.random.default_rng(seed).normal(scale=scale, size=shape)

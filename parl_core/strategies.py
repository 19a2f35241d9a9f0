"""Hypothesis strategies for the objects of the exact engine, for property tests of code built on parl_core.

Every strategy returns float64 objects that pass the library's own validation, and states below what it
guarantees (docs/theory.md section 1 defines the MDP, section 2 the softmax policy and the temperature):

* :func:`mdps`: a dense :class:`TabularMDP` (S, A, P, mu, gamma) of the bilevel problem, eq. (2).
* :func:`sparse_mdps`: the same object built from a CSR matrix with a bounded number of successors per (s, a).
* :func:`rewards`: a :class:`LinearReward` r_phi(s, a) = features[s, a] @ phi for a given (S, A).
* :func:`reward_params`: a parameter vector phi for such a reward.
* :func:`logits`: unconstrained softmax parameters theta of shape (S, A).
* :func:`policies`: row-stochastic, strictly positive policy tables pi(a|s).
* :func:`temperatures`: entropy temperatures lam > 0 of the regularised lower level.

Numbers are drawn from a numpy generator seeded by a drawn integer: hypothesis explores and replays seeds and
sizes (it does not shrink individual entries, which keeps generation fast).

Example, a property of a user's own function::

    from hypothesis import given
    from parl_core.strategies import mdps, policies

    @given(mdps(max_states=5), policies((3, 2)))
    def test_something(mdp, pi): ...
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from hypothesis import strategies as st

from .mdp import TabularMDP
from .policy import softmax
from .rewards import LinearReward

__all__ = ["mdps", "sparse_mdps", "rewards", "reward_params", "logits", "policies", "temperatures"]

SEEDS = st.integers(0, 2**31 - 1)


def _initial(rng: np.random.Generator, n_states: int) -> np.ndarray:
    """A strictly positive initial distribution: mu(s) >= 0.05 / (S + 0.05 S) > 0 and sum_s mu(s) = 1."""
    mu = rng.random(n_states) + 0.05
    return mu / mu.sum()


@st.composite
def mdps(draw, max_states: int = 4, max_actions: int = 3, max_gamma: float = 0.95,
         sparse_support: bool = True) -> TabularMDP:
    """Dense random MDPs with 1 <= S <= ``max_states``, 1 <= A <= ``max_actions``, gamma in [0, max_gamma].

    Guarantees: P(s'|s, a) >= 0 and sum_s' P(s'|s, a) = 1 for every (s, a) (to 1e-8, the TabularMDP
    tolerance); mu(s) > 0 for every s, sum_s mu(s) = 1; 0 <= gamma <= max_gamma < 1. With ``sparse_support``
    (and S > 1) about 40 % of the transitions are exactly zero, but every row keeps at least one positive
    entry, so the support of P varies between draws."""
    S = draw(st.integers(1, max_states))
    A = draw(st.integers(1, max_actions))
    gamma = draw(st.floats(0.0, max_gamma))
    rng = np.random.default_rng(draw(SEEDS))
    T = rng.random((S, A, S)) ** 3
    if sparse_support and S > 1:
        T *= rng.random((S, A, S)) < 0.6  # some zero transitions
        T[np.arange(S), :, rng.integers(0, S, size=S)] += 0.1  # keep each row nonzero
    T /= T.sum(axis=2, keepdims=True)
    return TabularMDP(T, _initial(rng, S), gamma)


@st.composite
def sparse_mdps(draw, min_states: int = 2, max_states: int = 200, max_actions: int = 4, max_branching: int = 3,
                max_gamma: float = 0.95) -> TabularMDP:
    """MDPs built directly in CSR form, sized for the sparse code paths (S up to ``max_states``).

    Each (s, a) moves to b distinct successors, 1 <= b <= min(max_branching, S), with positive Dirichlet(1)
    probabilities: P has exactly S * A * b stored entries, all > 0, and sum_s' P(s'|s, a) = 1 (to 1e-8).
    mu(s) > 0 for every s, sum_s mu(s) = 1 and 0 <= gamma <= max_gamma < 1."""
    S = draw(st.integers(min_states, max_states))
    A = draw(st.integers(1, max_actions))
    b = draw(st.integers(1, min(max_branching, S)))
    gamma = draw(st.floats(0.0, max_gamma))
    rng = np.random.default_rng(draw(SEEDS))
    n_sa = S * A
    cols = np.sort(np.argsort(rng.random((n_sa, S)), axis=1)[:, :b], axis=1) if S <= 512 else np.stack(
        [np.sort(rng.choice(S, size=b, replace=False)) for _ in range(n_sa)])
    probs = rng.dirichlet(np.ones(b), size=n_sa) if b > 1 else np.ones((n_sa, 1))
    probs = np.maximum(probs, 1e-12)
    probs /= probs.sum(axis=1, keepdims=True)
    P = sp.csr_matrix((probs.ravel(), cols.ravel(), np.arange(0, n_sa * b + 1, b)), shape=(n_sa, S))
    return TabularMDP(P, _initial(rng, S), gamma)


@st.composite
def rewards(draw, shape: tuple[int, int], max_params: int = 4, scale: float = 1.0) -> LinearReward:
    """Linear rewards r_phi(s, a) = features[s, a, :] @ phi on an (S, A) = ``shape`` table.

    Guarantees: features are finite float64 of shape (S, A, n) with 1 <= n <= ``max_params``, entries
    N(0, scale^2); so r_phi is linear in phi and its Jacobian d r_phi / d phi = features does not depend on phi.
    Pair it with :func:`reward_params` for phi."""
    n = draw(st.integers(1, max_params))
    rng = np.random.default_rng(draw(SEEDS))
    return LinearReward(rng.normal(scale=scale, size=(shape[0], shape[1], n)))


@st.composite
def reward_params(draw, n_params: int, scale: float = 1.0) -> np.ndarray:
    """Reward parameters phi in R^n: finite float64 of shape (n,), entries N(0, scale^2)."""
    return np.random.default_rng(draw(SEEDS)).normal(scale=scale, size=n_params)


@st.composite
def logits(draw, shape: tuple[int, int], scale: float = 3.0) -> np.ndarray:
    """Softmax parameters theta of shape (S, A), entries N(0, scale^2): finite float64, not gauge-fixed
    (the row means are not zero), so they exercise the shift invariance pi_theta = pi_{theta + c 1^T}."""
    return np.random.default_rng(draw(SEEDS)).normal(scale=scale, size=shape)


@st.composite
def policies(draw, shape: tuple[int, int], scale: float = 3.0) -> np.ndarray:
    """Stochastic policies pi(a|s) = softmax(theta)[s, a] with theta from :func:`logits`.

    Guarantees: shape (S, A), every entry > 0 (the logits are bounded, so no entry underflows for
    scale <= 10), and every row sums to 1 (to round-off): a policy the softmax class can represent."""
    return softmax(draw(logits(shape, scale=scale)))


def temperatures(min_value: float = 0.05, max_value: float = 5.0) -> st.SearchStrategy[float]:
    """Entropy temperatures lam of the regularised lower level (docs/theory.md section 2), log-uniform on
    [min_value, max_value] with 0 < min_value: every draw is a finite float with lam > 0, so the optimum
    theta*(phi) exists and is unique."""
    if not 0 < min_value <= max_value:
        raise ValueError(f"temperatures: need 0 < min_value <= max_value, got {min_value}, {max_value}")
    lo, hi = np.log(min_value), np.log(max_value)
    return st.floats(0.0, 1.0).map(lambda u: float(np.clip(np.exp(lo + u * (hi - lo)), min_value, max_value)))

"""Finite discounted MDPs (docs/theory.md section 1) with validated input, seeded generators and .npz I/O.

An MDP is M = (S, A, P, mu, gamma). Transitions are stored once, as a CSR matrix ``P`` of shape (S*A, S)
whose row ``s*A + a`` is P(.|s, a); a dense (S, A, S) array is accepted on input and available through
:meth:`TabularMDP.dense_transitions` for small problems.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from scipy.sparse import csgraph

ROW_SUM_TOL = 1e-8


def _check_finite_nonneg(name: str, values: np.ndarray) -> None:
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name}: contains NaN or inf")
    if np.any(values < 0):
        raise ValueError(f"{name}: contains negative entries (min {values.min():.3g})")


@dataclass(frozen=True, eq=False)
class TabularMDP:
    """A finite MDP with discount ``gamma`` in [0, 1).

    Args:
        transitions: dense array (S, A, S) or scipy.sparse matrix (S*A, S), row s*A+a = P(.|s,a).
        initial: initial state distribution mu, shape (S,).
        gamma: discount factor of the (infinite-horizon) lower level.

    Raises:
        ValueError naming the field and the problem for wrong shapes, NaN/inf, negative entries, rows
        not summing to one (tolerance 1e-8), ``initial`` not a distribution, or gamma outside [0, 1).
    """

    P: sp.csr_matrix
    initial: np.ndarray
    gamma: float
    n_states: int
    n_actions: int

    def __init__(self, transitions, initial, gamma: float):
        P = self._validate_transitions(transitions)
        n_sa, n_s = P.shape
        n_a = n_sa // n_s
        mu = np.asarray(initial, dtype=np.float64)
        if mu.shape != (n_s,):
            raise ValueError(f"initial: expected shape ({n_s},), got {mu.shape}")
        _check_finite_nonneg("initial", mu)
        if abs(mu.sum() - 1.0) > ROW_SUM_TOL:
            raise ValueError(f"initial: must sum to 1 (sums to {mu.sum():.12g})")
        try:
            g = float(gamma)
        except (TypeError, ValueError):
            raise ValueError(f"gamma: expected a number in [0, 1), got {gamma!r}") from None
        if not (0.0 <= g < 1.0) or not np.isfinite(g):
            raise ValueError(f"gamma: must lie in [0, 1), got {gamma!r}")
        object.__setattr__(self, "P", P)
        object.__setattr__(self, "initial", mu)
        object.__setattr__(self, "gamma", g)
        object.__setattr__(self, "n_states", n_s)
        object.__setattr__(self, "n_actions", n_a)

    @staticmethod
    def _validate_transitions(transitions) -> sp.csr_matrix:
        if sp.issparse(transitions):
            P = sp.csr_matrix(transitions, dtype=np.float64)
            if P.ndim != 2 or P.shape[1] == 0 or P.shape[0] % P.shape[1] != 0 or P.shape[0] == 0:
                raise ValueError(
                    f"transitions: sparse input must have shape (S*A, S) with A >= 1, got {P.shape}")
            P.sum_duplicates()
            data = P.data
        else:
            T = np.asarray(transitions, dtype=np.float64)
            if T.ndim != 3 or T.shape[0] != T.shape[2] or T.shape[0] == 0 or T.shape[1] == 0:
                raise ValueError(f"transitions: dense input must have shape (S, A, S), got {T.shape}")
            data = T
            P = None
        _check_finite_nonneg("transitions", data)
        if P is None:
            S, A, _ = T.shape
            P = sp.csr_matrix(T.reshape(S * A, S))
        rows = np.asarray(P.sum(axis=1)).ravel()
        bad = np.flatnonzero(np.abs(rows - 1.0) > ROW_SUM_TOL)
        if bad.size:
            S = P.shape[1]
            A = P.shape[0] // S
            i = int(bad[0])
            raise ValueError(f"transitions: row for (s={i // A}, a={i % A}) sums to {rows[i]:.12g}, not 1 "
                             f"({bad.size} such rows)")
        P.eliminate_zeros()
        return P

    # ------------------------------------------------------------------ views
    @functools.cached_property
    def PT(self) -> sp.csr_matrix:
        """P^T (S, S*A) in CSR, for forward recursions d_{h+1} = P^T (d_h pi); built once."""
        return self.P.T.tocsr()

    @functools.cached_property
    def reachable(self) -> np.ndarray:
        """Boolean (S,): the states reachable from the support of mu. Softmax policies give every action positive
        probability, so this is the support of the discounted occupancy of every such policy."""
        S, A = self.shape
        sum_actions = sp.csr_matrix((np.ones(S * A), np.arange(S * A), np.arange(0, S * A + 1, A)), shape=(S, S * A))
        source = sp.csr_matrix((self.initial > 0).astype(np.float64)[None, :])
        graph = sp.bmat([[sum_actions @ self.P, None], [source, sp.csr_matrix((1, 1))]], format="csr")
        order = csgraph.breadth_first_order(graph, S, directed=True, return_predecessors=False)
        out = np.zeros(S, dtype=bool)
        out[order[order < S]] = True
        return out

    @property
    def shape(self) -> tuple[int, int]:
        return self.n_states, self.n_actions

    def dense_transitions(self) -> np.ndarray:
        """P as a dense (S, A, S) array (only sensible for small S)."""
        S, A = self.shape
        return self.P.toarray().reshape(S, A, S)

    def policy_matrix(self, pi: np.ndarray) -> sp.csr_matrix:
        """P_pi (S, S): P_pi[s, s'] = sum_a pi(a|s) P(s'|s,a)."""
        S, A = self.shape
        Pi = sp.csr_matrix((np.asarray(pi).ravel(), np.arange(S * A), np.arange(0, S * A + 1, A)),
                           shape=(S, S * A))
        return (Pi @ self.P).tocsr()

    # -------------------------------------------------------------------- I/O
    def save(self, path: str | Path, **extra: np.ndarray) -> None:
        """Save to ``.npz`` (sparse P in CSR parts); ``extra`` arrays (e.g. phi, theta) are stored beside."""
        P = self.P
        np.savez_compressed(path, P_data=P.data, P_indices=P.indices, P_indptr=P.indptr,
                            P_shape=np.array(P.shape), initial=self.initial, gamma=np.array(self.gamma),
                            **extra)

    @classmethod
    def load(cls, path: str | Path) -> "TabularMDP":
        """The MDP saved by :meth:`save`; a ``ValueError`` naming the file and the problem for anything else
        (not an .npz archive, a missing array, arrays that do not form a CSR transition matrix), and the same
        validation as every TabularMDP."""
        try:
            z = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:  # not a zip, or pickled object data
            raise ValueError(f"{path}: not an MDP saved by TabularMDP.save ({type(exc).__name__}: {exc})") from None
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise ValueError(f"{path}: not an MDP saved by TabularMDP.save (a single .npy array, not an .npz)")
        with z:
            missing = sorted({"P_data", "P_indices", "P_indptr", "P_shape", "initial", "gamma"} - set(z.files))
            if missing:
                raise ValueError(f"{path}: not an MDP saved by TabularMDP.save (missing {', '.join(missing)})")
            try:
                P = sp.csr_matrix((z["P_data"], z["P_indices"], z["P_indptr"]), shape=tuple(z["P_shape"]))
                gamma = float(z["gamma"])
                initial = z["initial"]
            except (ValueError, TypeError, IndexError) as exc:
                raise ValueError(f"{path}: its transition arrays do not form a CSR matrix ({exc})") from None
        return cls(P, initial, gamma)


def load_extras(path: str | Path) -> dict[str, np.ndarray]:
    """The extra arrays saved beside an MDP by :meth:`TabularMDP.save`."""
    own = {"P_data", "P_indices", "P_indptr", "P_shape", "initial", "gamma"}
    with np.load(path) as z:
        return {k: z[k] for k in z.files if k not in own}


# ---------------------------------------------------------------- generators
def garnet(n_states: int, n_actions: int, branching: int, gamma: float = 0.9, seed: int = 0,
           sparse: bool = False) -> TabularMDP:
    """Random Garnet MDP: each (s, a) moves to ``branching`` distinct random successors with
    Dirichlet(1) probabilities; uniform initial distribution. ``sparse=True`` builds P directly in CSR
    (use it for large S)."""
    if not (1 <= branching <= n_states):
        raise ValueError(f"branching: must lie in [1, n_states={n_states}], got {branching}")
    rng = np.random.default_rng(seed)
    n_sa = n_states * n_actions
    if branching * 4 < n_states:
        # sample with replacement then fix duplicates: much faster than a permutation per row for huge S
        cols = rng.integers(0, n_states, size=(n_sa, branching))
        cols.sort(axis=1)
        dup = np.any(cols[:, 1:] == cols[:, :-1], axis=1)
        for i in np.flatnonzero(dup):
            cols[i] = np.sort(rng.choice(n_states, size=branching, replace=False))
    else:
        cols = np.argsort(rng.random((n_sa, n_states)), axis=1)[:, :branching]
    probs = rng.dirichlet(np.ones(branching), size=n_sa) if branching > 1 else np.ones((n_sa, 1))
    probs /= probs.sum(axis=1, keepdims=True)
    P = sp.csr_matrix((probs.ravel(), cols.ravel(), np.arange(0, n_sa * branching + 1, branching)),
                      shape=(n_sa, n_states))
    mu = np.full(n_states, 1.0 / n_states)
    mdp = TabularMDP(P, mu, gamma)
    return mdp if sparse else TabularMDP(mdp.dense_transitions(), mu, gamma)


def chain(n_states: int, gamma: float = 0.9, slip: float = 0.1) -> TabularMDP:
    """Chain MDP with actions {left, right}; with probability ``slip`` the move goes the other way.
    Starts in state 0."""
    S = n_states
    T = np.zeros((S, 2, S))
    for s in range(S):
        left, right = max(s - 1, 0), min(s + 1, S - 1)
        T[s, 0, left] += 1 - slip
        T[s, 0, right] += slip
        T[s, 1, right] += 1 - slip
        T[s, 1, left] += slip
    mu = np.zeros(S)
    mu[0] = 1.0
    return TabularMDP(T, mu, gamma)


GRID_ACTIONS = ((-1, 0), (1, 0), (0, -1), (0, 1))  # up, down, left, right as (drow, dcol)


def gridworld(n: int, gamma: float = 0.9, slip: float = 0.1, wall_density: float = 0.0,
              seed: int = 0, start: tuple[int, int] = (0, 0)) -> TabularMDP:
    """N x N gridworld (a maze when ``wall_density`` > 0) with four actions up/down/left/right.

    State index = row * n + col. A move into a wall or off the grid stays put. With probability ``slip``
    the agent moves in a uniformly random direction instead. Walls are drawn with the seed but never on
    the start cell or the far corner (n-1, n-1); wall cells are unreachable absorbing states.
    """
    rng = np.random.default_rng(seed)
    walls = rng.random((n, n)) < wall_density
    walls[start] = False
    walls[n - 1, n - 1] = False
    S = n * n
    T = np.zeros((S, 4, S))
    for r in range(n):
        for c in range(n):
            s = r * n + c
            if walls[r, c]:
                T[s, :, s] = 1.0
                continue
            for a in range(4):
                for b, (dr, dc) in enumerate(GRID_ACTIONS):
                    p = (1 - slip) * (a == b) + slip / 4
                    rr, cc = r + dr, c + dc
                    if not (0 <= rr < n and 0 <= cc < n) or walls[rr, cc]:
                        rr, cc = r, c
                    T[s, a, rr * n + cc] += p
    mu = np.zeros(S)
    mu[start[0] * n + start[1]] = 1.0
    return TabularMDP(T, mu, gamma)

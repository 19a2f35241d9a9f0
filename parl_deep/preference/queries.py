"""Query selection: which candidate segment pairs to show the teacher.

``uniform``; ``disagreement`` (std over members of P(seg0 > seg1), PEBBLE's "ensemble" sampling); ``entropy``
(mean over members of the binary entropy of P(seg0 > seg1)); ``kcenter`` (greedy k-center on the observation
parts, as B-Pref). The caller provides the candidate pool (B-Pref draws ``large_batch * n`` uniform candidates
and keeps the top ``n``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from parl_deep.preference.dataset import PreferenceDataset, check_segments

if TYPE_CHECKING:  # pragma: no cover
    from parl_deep.preference.reward_model import RewardEnsemble

__all__ = ["QUERY_METHODS", "select_queries"]

QUERY_METHODS = ("uniform", "disagreement", "entropy", "kcenter")


# =============================================================================
def _kcenter_greedy(cand: np.ndarray, existing: np.ndarray, n: int) -> np.ndarray:
    """Greedy k-center: repeatedly pick the candidate farthest from the chosen/existing set."""
    cand = cand.astype(np.float64)
    if existing.shape[0] > 0:
        ex = existing.astype(np.float64)
        d2 = (
            (cand**2).sum(1)[:, None] - 2 * cand @ ex.T + (ex**2).sum(1)[None, :]
        ).min(axis=1)
    else:
        d2 = np.full(cand.shape[0], np.inf)
    chosen: list[int] = []
    for _ in range(n):
        i = int(np.argmax(d2))  # first max; chosen entries are -inf
        chosen.append(i)
        d2 = np.minimum(d2, ((cand - cand[i]) ** 2).sum(1))
        d2[chosen] = -np.inf
    return np.asarray(chosen, dtype=np.int64)


def select_queries(
    method: str,
    n: int,
    seg0: Any,
    seg1: Any,
    ensemble: RewardEnsemble | None = None,
    rng: np.random.Generator | None = None,
    labelled: PreferenceDataset | None = None,
    obs_dim: int | None = None,
) -> np.ndarray:
    """Indices (into the candidate pairs ``seg0``/``seg1``) of the ``n`` pairs to query.

    ``uniform`` needs ``rng``; ``disagreement``/``entropy`` need ``ensemble``
    and return the ``n`` highest-scoring candidates (ties broken by index);
    ``kcenter`` uses the observation part (first ``obs_dim`` features, taken
    from ``ensemble`` if not given) of both segments flattened, and the
    already ``labelled`` pairs as initial centres.
    """
    if method not in QUERY_METHODS:
        raise ValueError(f"unknown query method {method!r}; choose from {QUERY_METHODS}")
    s0, s1 = check_segments(seg0, seg1, None if ensemble is None else ensemble.in_dim)
    N = s0.shape[0]
    if not (0 <= n <= N):
        raise ValueError(f"cannot select {n} queries from {N} candidates")
    if method == "uniform":
        if rng is None:
            raise ValueError("uniform selection needs rng")
        return rng.choice(N, size=n, replace=False)
    if method in ("disagreement", "entropy"):
        if ensemble is None:
            raise ValueError(f"{method} selection needs the reward ensemble")
        score = ensemble.disagreement(s0, s1) if method == "disagreement" else ensemble.entropy(s0, s1)
        return np.argsort(-score, kind="stable")[:n]
    # kcenter
    od = obs_dim if obs_dim is not None else (ensemble.obs_dim if ensemble is not None else None)
    if od is None:
        raise ValueError("kcenter selection needs obs_dim or the ensemble")
    feats = np.concatenate([s0[:, :, :od].reshape(N, -1), s1[:, :, :od].reshape(N, -1)], axis=1)
    if labelled is not None and len(labelled) > 0:
        L = len(labelled)
        ex = np.concatenate(
            [labelled.seg0[:, :, :od].reshape(L, -1), labelled.seg1[:, :, :od].reshape(L, -1)], axis=1
        )
        if ex.shape[1] != feats.shape[1]:
            raise ValueError("labelled pairs and candidates have different segment shapes")
    else:
        ex = np.zeros((0, feats.shape[1]))
    return _kcenter_greedy(feats, ex, n)

"""Trajectory enumeration and sampling against each other: the Monte Carlo sampler's empirical law of the
first steps must match rho(tau) (eq. 4) computed by exact enumeration."""
from __future__ import annotations

import numpy as np
import pytest

from parl_core import garnet
from parl_core.policy import softmax
from parl_core.trajectories import count_trajectories, enumerate_trajectories, sample_trajectories


@pytest.mark.parametrize("seed,branching", [(0, 2), (1, 4), (2, 6)])
def test_sampled_trajectories_follow_rho(seed, branching):
    mdp = garnet(6, 3, branching=branching, gamma=0.9, seed=seed)
    rng = np.random.default_rng(seed)
    pi = softmax(rng.normal(size=mdp.shape))
    H, n = 3, 200_000
    traj = enumerate_trajectories(mdp, H)
    assert len(traj) == count_trajectories(mdp, H)
    exact = np.exp(traj.log_prob(np.log(pi)))
    assert exact.sum() == pytest.approx(1.0, abs=1e-12)
    s, a = sample_trajectories(mdp, pi, H, n, rng)
    S, A = mdp.shape
    code = lambda st, ac: np.ravel_multi_index((*st.T, *ac.T), (S,) * H + (A,) * H)  # noqa: E731
    emp = np.bincount(code(s, a), minlength=(S * A) ** H) / n
    ref = np.zeros((S * A) ** H)
    ref[code(traj.states, traj.actions)] = exact
    # every sampled trajectory has positive probability, and the law matches: under the exact law the TV
    # distance concentrates at E|emp - ref|/2 ~ sum_k sqrt(p_k (1 - p_k)) / sqrt(2 pi n) (normal approximation
    # of each count); sampling successors uniformly instead of by P gives 0.35-0.51 here.
    assert set(np.flatnonzero(emp)) <= set(np.flatnonzero(ref))
    tv = 0.5 * np.abs(emp - ref).sum()
    expected = np.sqrt(ref * (1 - ref)).sum() / np.sqrt(2 * np.pi * n)
    assert tv < 1.25 * expected, (tv, expected)

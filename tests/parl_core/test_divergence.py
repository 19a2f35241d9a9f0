import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from parl_core import trajectory_divergence
from parl_core.trajectories import enumerate_trajectories

from parl_core.strategies import mdps


def _policies(mdp, seed, concentration=1.0):
    rng = np.random.default_rng(seed)
    S, A = mdp.shape
    return (rng.dirichlet(np.full(A, concentration), size=S), rng.dirichlet(np.full(A, concentration), size=S))


def _brute_force(mdp, pa, pb, H):
    traj = enumerate_trajectories(mdp, H)
    ra, rb = np.exp(traj.log_prob(np.log(pa))), np.exp(traj.log_prob(np.log(pb)))
    return {"tv": 0.5 * np.abs(ra - rb).sum(), "hellinger": np.sqrt(0.5 * ((np.sqrt(ra) - np.sqrt(rb)) ** 2).sum()),
            "kl": np.sum(ra * (np.log(ra) - np.log(rb))), "chi2": np.sum(ra**2 / rb) - 1}


@settings(max_examples=40, deadline=None)
@given(mdps(max_states=3, max_actions=3), st.integers(1, 4), st.integers(0, 10_000))
def test_recursions_equal_enumeration(mdp, H, seed):
    pa, pb = _policies(mdp, seed, 2.0)
    bf = _brute_force(mdp, pa, pb, H)
    for kind, value in bf.items():
        assert trajectory_divergence(mdp, pa, pb, H, kind) == pytest.approx(value, rel=1e-9, abs=1e-12), kind


@settings(max_examples=60, deadline=None)
@given(mdps(max_states=4, max_actions=3), st.integers(1, 4), st.integers(0, 10_000), st.floats(0.2, 5.0))
def test_textbook_inequalities_and_identity(mdp, H, seed, conc):
    pa, pb = _policies(mdp, seed, conc)
    d = {k: trajectory_divergence(mdp, pa, pb, H, k) for k in ("tv", "hellinger", "kl", "chi2")}
    h = d["hellinger"]
    assert h**2 <= d["tv"] + 1e-12                           # H^2 <= TV
    assert d["tv"] <= h * np.sqrt(2 - h**2) + 1e-12           # TV <= H sqrt(2 - H^2) <= sqrt(2) H
    assert d["tv"] <= np.sqrt(d["kl"] / 2) + 1e-12            # Pinsker
    assert d["kl"] <= np.log1p(d["chi2"]) + 1e-12             # KL <= log(1 + chi2)
    assert 2 * h**2 <= d["kl"] + 1e-12                        # 2 H^2 = 2(1 - BC) <= -2 log BC <= KL
    for k in d:
        assert trajectory_divergence(mdp, pa, pa, H, k) == pytest.approx(0.0, abs=1e-12)


def test_bad_arguments():
    from parl_core import garnet
    mdp = garnet(3, 2, 2)
    p = np.full((3, 2), 0.5)
    with pytest.raises(ValueError, match="kind"):
        trajectory_divergence(mdp, p, p, 2, "js")
    with pytest.raises(ValueError, match="pi_b"):
        trajectory_divergence(mdp, p, p[:2], 2, "tv")
    with pytest.raises(ValueError, match="horizon"):
        trajectory_divergence(mdp, p, p, 0, "kl")
    with pytest.raises(ValueError, match="enumeration limit"):
        trajectory_divergence(garnet(10, 3, 10), np.full((10, 3), 1 / 3), np.full((10, 3), 1 / 3), 6, "tv")

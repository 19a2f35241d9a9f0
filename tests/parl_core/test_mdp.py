import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings, strategies as st

from parl_core import TabularMDP, chain, garnet, gridworld
from parl_core.mdp import load_extras
from parl_core.trajectories import EnumerationTooLarge, count_trajectories, enumerate_trajectories

from parl_core.strategies import mdps


def _valid(S=3, A=2, seed=0):
    rng = np.random.default_rng(seed)
    T = rng.random((S, A, S))
    T /= T.sum(2, keepdims=True)
    return T, np.full(S, 1 / S)


CORRUPTIONS = {
    "transitions-shape": lambda T, mu, g: (T[:, :, :-1], mu, g),
    "transitions-2d-dense": lambda T, mu, g: (T[:, 0, :], mu, g),
    "transitions-nan": lambda T, mu, g: (np.where(np.arange(T.size).reshape(T.shape) == 0, np.nan, T), mu, g),
    "transitions-inf": lambda T, mu, g: (np.where(np.arange(T.size).reshape(T.shape) == 1, np.inf, T), mu, g),
    "transitions-negative": lambda T, mu, g: (T + np.where(np.arange(T.size).reshape(T.shape) == 0, -2.0, 0), mu, g),
    "transitions-rowsum": lambda T, mu, g: (T * 1.001, mu, g),
    "transitions-sparse-shape": lambda T, mu, g: (sp.csr_matrix(T.reshape(-1, T.shape[2])[:, :-1]), mu, g),
    "initial-shape": lambda T, mu, g: (T, mu[:-1], g),
    "initial-negative": lambda T, mu, g: (T, np.r_[-0.5, 1.5, np.zeros(len(mu) - 2)], g),  # sums to 1
    "initial-sum": lambda T, mu, g: (T, mu * 0.5, g),
    "initial-nan": lambda T, mu, g: (T, np.full_like(mu, np.nan), g),
    "gamma-one": lambda T, mu, g: (T, mu, 1.0),
    "gamma-negative": lambda T, mu, g: (T, mu, -0.1),
    "gamma-nan": lambda T, mu, g: (T, mu, float("nan")),
    "gamma-text": lambda T, mu, g: (T, mu, "high"),
}


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_invalid_input_raises_valueerror_naming_the_field(name):
    T, mu = _valid()
    args = CORRUPTIONS[name](T, mu, 0.9)
    with pytest.raises(ValueError, match=name.split("-")[0]):
        TabularMDP(*args)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 6), st.integers(1, 4), st.floats(1e-6, 1e-2), st.integers(0, 10_000))
def test_row_sum_violations_beyond_tolerance_are_rejected(S, A, eps, seed):
    T, mu = _valid(S, A, seed)
    T[seed % S, seed % A] *= 1 + eps
    with pytest.raises(ValueError, match="sums to"):
        TabularMDP(T, mu, 0.5)
    T[seed % S, seed % A] /= 1 + eps
    T[seed % S, seed % A, 0] += 1e-10  # within tolerance
    TabularMDP(T, mu, 0.5)


def test_dense_and_sparse_inputs_are_the_same_mdp(tmp_path):
    T, mu = _valid(5, 3, 1)
    a, b = TabularMDP(T, mu, 0.8), TabularMDP(sp.csr_matrix(T.reshape(15, 5)), mu, 0.8)
    np.testing.assert_array_equal(a.dense_transitions(), b.dense_transitions())
    a.save(tmp_path / "m.npz", phi=np.arange(3.0))
    c = TabularMDP.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(c.dense_transitions(), T)
    np.testing.assert_array_equal(c.initial, mu)
    assert c.gamma == 0.8
    np.testing.assert_array_equal(load_extras(tmp_path / "m.npz")["phi"], np.arange(3.0))


@pytest.mark.parametrize("sparse", [False, True])
def test_garnet_has_exactly_branching_successors(sparse):
    m = garnet(40, 3, 5, gamma=0.7, seed=2, sparse=sparse)
    counts = np.diff(m.P.indptr)
    assert np.all(counts == 5) and m.shape == (40, 3)
    np.testing.assert_allclose(np.asarray(m.P.sum(1)).ravel(), 1, atol=1e-12)
    m2 = garnet(40, 3, 5, gamma=0.7, seed=2, sparse=sparse)
    assert (m.P != m2.P).nnz == 0  # seeded


def test_gridworld_moves_and_walls():
    m = gridworld(3, slip=0.0)
    T = m.dense_transitions()
    assert T[0, 1, 3] == 1.0  # down from (0,0) to (1,0)
    assert T[0, 0, 0] == 1.0  # up from the top row stays
    assert T[4, 3, 5] == 1.0  # right from the centre
    maze = gridworld(6, slip=0.1, wall_density=0.3, seed=4)
    Tm = maze.dense_transitions()
    walls = [s for s in range(36) if np.all(Tm[s, :, s] == 1.0) and s not in (0, 35)]
    assert walls, "a 30% wall density should place walls"
    for w in walls:  # no free cell moves into a wall
        free = [s for s in range(36) if s not in walls]
        assert np.all(Tm[free][:, :, w] == 0)


def test_chain_slip():
    T = chain(4, slip=0.2).dense_transitions()
    assert T[1, 1, 2] == pytest.approx(0.8) and T[1, 1, 0] == pytest.approx(0.2)


@settings(max_examples=40, deadline=None)
@given(mdps(), st.integers(1, 3), st.integers(0, 1000))
def test_enumeration_is_a_distribution_and_counted_exactly(mdp, H, seed):
    traj = enumerate_trajectories(mdp, H)
    assert len(traj) == count_trajectories(mdp, H)
    pi = np.random.default_rng(seed).dirichlet(np.ones(mdp.n_actions), size=mdp.n_states)
    assert np.exp(traj.log_prob(np.log(pi))).sum() == pytest.approx(1.0, abs=1e-12)


def test_enumeration_limit_is_a_clear_error():
    with pytest.raises(EnumerationTooLarge, match="enumeration limit"):
        enumerate_trajectories(garnet(10, 3, 10, seed=0), 4, limit=1000)


def test_load_names_the_file_and_the_problem_for_bad_files(tmp_path):
    import pickle

    mdp = garnet(6, 2, 3, seed=1)
    good = tmp_path / "good.npz"
    mdp.save(good)
    back = TabularMDP.load(good)
    np.testing.assert_array_equal(back.P.toarray(), mdp.P.toarray())
    with np.load(good) as z:
        arrays = {k: z[k] for k in z.files}
    bad = {"missing.npz": {k: v for k, v in arrays.items() if k != "P_indices"},
           "indptr.npz": {**arrays, "P_indptr": arrays["P_indptr"][:-2]}}
    for name, content in bad.items():
        np.savez(tmp_path / name, **content)
    (tmp_path / "text.npz").write_text("not an archive")
    (tmp_path / "pickled.npy").write_bytes(pickle.dumps({"P": 1}))
    np.save(tmp_path / "array.npy", np.zeros(3))
    expected = {"missing.npz": "missing P_indices", "indptr.npz": "do not form a CSR matrix",
                "text.npz": "not an MDP saved by TabularMDP.save", "pickled.npy": "not an MDP saved by",
                "array.npy": "a single .npy array"}
    for name, needle in expected.items():
        with pytest.raises(ValueError) as e:
            TabularMDP.load(tmp_path / name)
        assert needle in str(e.value) and name in str(e.value), (name, str(e.value))

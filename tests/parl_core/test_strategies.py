"""The public hypothesis strategies of parl_core.strategies deliver what their docstrings promise.

Each property is checked against the raw arrays (dense transitions, row sums, entries), not only through the
constructor's own validation."""
import numpy as np
import pytest
from hypothesis import HealthCheck, find, given, settings, strategies as st

from parl_core import SoftLowerLevel, TabularMDP
from parl_core.strategies import logits, mdps, policies, reward_params, rewards, sparse_mdps, temperatures

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _assert_mdp_laws(mdp, max_gamma):
    T = mdp.dense_transitions()
    assert T.dtype == np.float64 and np.all(T >= 0)
    np.testing.assert_allclose(T.sum(axis=2), 1.0, atol=1e-12)
    assert np.all(mdp.initial > 0) and abs(mdp.initial.sum() - 1) < 1e-12
    assert 0 <= mdp.gamma <= max_gamma < 1
    TabularMDP(T, mdp.initial, mdp.gamma)  # the dense copy validates too


@FAST
@given(mdps(max_states=5, max_actions=3, max_gamma=0.9))
def test_dense_mdps_are_valid_and_within_bounds(mdp):
    S, A = mdp.shape
    assert 1 <= S <= 5 and 1 <= A <= 3
    _assert_mdp_laws(mdp, 0.9)


def test_dense_mdps_vary_their_support():
    # the sparse_support option really produces zero transitions, and full supports also occur
    assert (find(mdps(), lambda m: m.n_states > 1 and np.any(m.dense_transitions() == 0))
            .dense_transitions() == 0).any()
    assert np.all(find(mdps(sparse_support=False), lambda m: m.n_states > 2).dense_transitions() > 0)


@FAST
@given(sparse_mdps(max_states=60, max_actions=3, max_branching=4))
def test_sparse_mdps_have_a_fixed_branching_and_stochastic_rows(mdp):
    S, A = mdp.shape
    assert 2 <= S <= 60 and 1 <= A <= 3
    per_row = np.diff(mdp.P.indptr)
    assert np.all(per_row == per_row[0]) and 1 <= per_row[0] <= min(4, S)
    assert np.all(mdp.P.data > 0)
    np.testing.assert_allclose(np.asarray(mdp.P.sum(axis=1)).ravel(), 1.0, atol=1e-12)
    _assert_mdp_laws(mdp, 0.95)


def test_sparse_mdps_reach_large_state_counts():
    assert find(sparse_mdps(max_states=200), lambda m: m.n_states >= 150).n_states >= 150


@FAST
@given(st.data())
def test_rewards_are_linear_in_phi_with_constant_jacobian(data):
    shape = (data.draw(st.integers(1, 5)), data.draw(st.integers(1, 3)))
    reward = data.draw(rewards(shape, max_params=4))
    n = reward.n_params
    a, b = data.draw(reward_params(n)), data.draw(reward_params(n))
    assert reward.shape == shape and 1 <= n <= 4 and a.shape == (n,)
    np.testing.assert_allclose(reward.table(2.0 * a - b), 2.0 * reward.table(a) - reward.table(b), atol=1e-12)
    np.testing.assert_array_equal(reward.jacobian(a), reward.jacobian(b))
    np.testing.assert_allclose(reward.table(a), np.einsum("san,n->sa", reward.features, a), atol=1e-12)


@FAST
@given(st.data())
def test_policies_are_row_stochastic_and_positive(data):
    shape = (data.draw(st.integers(1, 6)), data.draw(st.integers(1, 4)))
    pi = data.draw(policies(shape, scale=data.draw(st.floats(0.1, 10.0))))
    assert pi.shape == shape and np.all(pi > 0)
    np.testing.assert_allclose(pi.sum(axis=1), 1.0, atol=1e-12)


@FAST
@given(logits((3, 4)))
def test_logits_are_finite_and_not_gauge_fixed(theta):
    assert theta.shape == (3, 4) and np.all(np.isfinite(theta))
    assert np.any(np.abs(theta.mean(axis=1)) > 1e-9)


@FAST
@given(temperatures(0.1, 3.0))
def test_temperatures_lie_in_range(lam):
    assert isinstance(lam, float) and 0.1 <= lam <= 3.0


def test_temperatures_cover_the_range_on_a_log_scale():
    assert find(temperatures(0.01, 100.0), lambda x: x < 0.1) < 0.1
    assert find(temperatures(0.01, 100.0), lambda x: x > 10.0) > 10.0


@pytest.mark.parametrize("bounds", [(0.0, 1.0), (-1.0, 1.0), (2.0, 1.0)])
def test_temperatures_reject_nonpositive_or_empty_ranges(bounds):
    with pytest.raises(ValueError, match="temperatures"):
        temperatures(*bounds)


@settings(max_examples=15, deadline=None)
@given(st.data())
def test_generated_objects_compose_into_a_lower_level_with_a_soft_bellman_optimum(data):
    mdp = data.draw(mdps(max_states=4, max_actions=3, max_gamma=0.9))
    reward = data.draw(rewards(mdp.shape))
    phi = data.draw(reward_params(reward.n_params))
    lam = data.draw(temperatures(0.2, 3.0))
    theta = SoftLowerLevel(mdp, reward, lam).solve(phi)
    # independent oracle: value iteration on the soft Bellman equation from scratch
    r, T, v = reward.table(phi), mdp.dense_transitions(), np.zeros(mdp.n_states)
    for _ in range(3000):
        q = r + mdp.gamma * T @ v
        v = lam * np.log(np.exp((q - q.max(1, keepdims=True)) / lam).sum(1)) + q.max(1)
    np.testing.assert_allclose(theta, (q - q.mean(1, keepdims=True)) / lam, atol=1e-6)

"""Property-based statements of the inequalities that `parl verify` finds to hold, over generated MDPs and policy pairs."""
import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parl_core import garnet, softmax, trajectory_divergence
from parl_core.policy import gauge
from validation.checks.lemma1 import L_SOFTMAX, lemma1_bound
from validation.checks.lemma34 import lemma3_i_bound
from validation.families import make_case

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def mdp_and_pair(draw):
    S = draw(st.integers(2, 4))
    A = draw(st.integers(2, 3))
    b = draw(st.integers(1, S))
    gamma = draw(st.floats(0.0, 0.95))
    seed = draw(st.integers(0, 10_000))
    H = draw(st.integers(1, 3))
    rng = np.random.default_rng(seed)
    scale = draw(st.floats(0.01, 5.0))
    theta = gauge(rng.normal(scale=2.0, size=(S, A)))
    if draw(st.booleans()):  # concentrated: one state, two actions (the proof's worst case)
        theta2 = theta.copy()
        theta2[0, 0] += scale
        theta2[0, 1] -= scale
        theta2 = gauge(theta2)
    else:
        theta2 = gauge(theta + scale * rng.normal(size=(S, A)))
    return garnet(S, A, b, gamma=gamma, seed=seed), theta, theta2, H


@SETTINGS
@given(mdp_and_pair())
def test_lemma1_tv_and_hellinger_bound(x):
    mdp, t1, t2, H = x
    p, q = softmax(t1), softmax(t2)
    bound = lemma1_bound(H, float(np.linalg.norm(t1 - t2)))
    assert trajectory_divergence(mdp, p, q, H, "tv") <= bound + 1e-12
    assert trajectory_divergence(mdp, p, q, H, "hellinger") <= bound + 1e-12


@SETTINGS
@given(mdp_and_pair())
def test_divergence_inequalities_and_kl_bound(x):
    mdp, t1, t2, H = x
    p, q = softmax(t1), softmax(t2)
    tv, hel, kl = (trajectory_divergence(mdp, p, q, H, k) for k in ("tv", "hellinger", "kl"))
    assert hel**2 <= tv + 1e-12
    assert tv <= np.sqrt(2) * hel + 1e-12
    assert tv <= np.sqrt(kl / 2) + 1e-12  # Pinsker
    assert kl <= H / 4 * float(np.sum((t1 - t2) ** 2)) + 1e-12


@SETTINGS
@given(st.integers(2, 6), st.integers(0, 10_000), st.floats(0.01, 10.0))
def test_softmax_l1_lipschitz_constant(A, seed, scale):
    """The L of Lemma 1: ||softmax(x) - softmax(y)||_1 <= (1/sqrt 2) ||x - y||_2."""
    rng = np.random.default_rng(seed)
    x = rng.normal(scale=3.0, size=(1, A))
    y = x + scale * rng.normal(size=(1, A))
    assert np.abs(softmax(x) - softmax(y)).sum() <= L_SOFTMAX * np.linalg.norm(x - y) + 1e-12


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(2, 4), st.integers(2, 3), st.floats(0.1, 0.95), st.floats(0.1, 3.0), st.integers(0, 1000))
def test_lemma3_i_mixed_jacobian_bound(S, A, gamma, lam, seed):
    from torch.func import jacfwd, jacrev
    case = make_case("p", "garnet", garnet(S, A, min(2, S), gamma=gamma, seed=seed), lam, 3, seed)
    lower = case.lower()
    lower.torch_transitions()
    theta = np.random.default_rng(seed).normal(size=(S, A))
    M = jacfwd(jacrev(lower.torch_value, argnums=1), argnums=0)(torch.as_tensor(case.phi), torch.as_tensor(theta))
    assert np.linalg.norm(M.reshape(S * A, -1).numpy(), 2) <= lemma3_i_bound(case) + 1e-12

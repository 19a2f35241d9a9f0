"""parl_core.convergence: traces of A-PARL, the fitted rate and its interval, the plot."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from parl_core import (AdditiveUtility, BilevelProblem, LinearReward, SoftLowerLevel, fit_rate, garnet, plot_rate,
                       run_convergence)
from parl_core.convergence import ConvergenceTrace, inner_step_size, trace_slope, upper_lipschitz


def _trace(avg: np.ndarray, label: str = "") -> ConvergenceTrace:
    """A trace whose running average is exactly ``avg`` (g2_t = T avg_T - (T-1) avg_{T-1})."""
    Ts = np.arange(1, len(avg) + 1)
    g2 = np.diff(np.r_[0.0, avg * Ts])
    n = len(avg)
    return ConvergenceTrace(g2, np.ones(n, int), np.zeros(n), np.zeros(n), 0.1, 0.1, label=label)


def _power(p: float, c: float = 2.0, T: int = 200) -> ConvergenceTrace:
    Ts = np.arange(1, T + 1, dtype=float)
    return _trace(c * Ts ** p)


@pytest.fixture(scope="module")
def small_problem():
    mdp = garnet(3, 2, 2, gamma=0.6, seed=3)
    rng = np.random.default_rng(1)
    reward = LinearReward(rng.normal(size=(3, 2, 2)) / np.sqrt(2))
    return BilevelProblem(SoftLowerLevel(mdp, reward, 1.0), AdditiveUtility(rng.uniform(-1, 1, (3, 2)), 4))


@settings(max_examples=25, deadline=None)
@given(st.floats(-1.0, 0.0), st.floats(0.1, 10.0))
def test_an_exact_power_law_gives_its_exponent_and_a_tight_interval(p, c):
    # running average c T^p with -1 <= p <= 0 keeps every g2 >= 0; least squares on exact log-linear data is exact
    tr = _power(p, c)
    assert np.all(tr.grad_norm_sq >= -1e-12)
    np.testing.assert_allclose(tr.running_average, c * tr.iterations ** p, rtol=1e-10)
    fit = fit_rate(tr)
    assert fit.ci_method == "regression" and fit.slopes == (fit.slope,) and fit.worst == fit.slope
    assert fit.slope == pytest.approx(p, abs=1e-8)
    assert fit.ci[0] <= p + 1e-8 and p - 1e-8 <= fit.ci[1] and fit.ci[1] - fit.ci[0] < 1e-6


def test_the_constant_is_the_smallest_c_over_t_envelope():
    tr = _trace(np.array([3.0, 1.0, 1.5, 0.25]))  # T * avg = 3, 2, 4.5, 1
    assert tr.constant == pytest.approx(4.5)
    assert np.all(tr.running_average <= tr.constant / tr.iterations + 1e-12)


def test_noisy_power_law_interval_covers_the_exponent_and_the_slope_uses_the_tail_only():
    Ts = np.arange(1, 401, dtype=float)
    rng = np.random.default_rng(0)
    avg = Ts ** -1.0 * np.exp(0.05 * rng.normal(size=Ts.size))
    avg[:19] = 1e3  # T < sqrt(400) = 20 lies outside the fitted tail: a wild head changes nothing
    fit = fit_rate(_trace(avg))
    assert fit.ci[0] < -1.0 < fit.ci[1] and fit.ci[1] - fit.ci[0] < 0.05
    x, y = np.log(Ts[19:]), np.log(avg[19:])
    assert fit.slope == pytest.approx(np.polyfit(x, y, 1)[0], rel=1e-12)


def test_several_traces_bootstrap_the_mean_slope_and_report_the_worst():
    fit = fit_rate([_power(-1.2), _power(-1.0), _power(-0.8), _power(-1.1)])
    np.testing.assert_allclose(fit.slopes, [-1.2, -1.0, -0.8, -1.1], atol=1e-8)
    assert fit.ci_method == "bootstrap" and fit.worst == pytest.approx(-0.8, abs=1e-8)
    assert fit.slope == pytest.approx(-1.025, abs=1e-8)
    assert -1.2 - 1e-8 <= fit.ci[0] < fit.slope < fit.ci[1] <= -0.8 + 1e-8


def test_best_so_far_is_monotone_and_never_above_the_running_average():
    tr = _trace(np.abs(np.sin(np.arange(1, 60))) / np.arange(1, 60) + 1e-3)
    assert np.all(np.diff(tr.best) <= 0)
    assert np.all(tr.best <= tr.running_average + 1e-15)
    assert fit_rate(tr, measure="best").measure == "best"


def test_bad_arguments_raise(small_problem):
    tr = _power(-1.0)
    with pytest.raises(ValueError, match="measure"):
        fit_rate(tr, measure="median")
    with pytest.raises(ValueError, match="traces"):
        fit_rate([])
    with pytest.raises(ValueError, match="level"):
        fit_rate(tr, level=1.5)
    with pytest.raises(ValueError, match="T"):
        run_convergence(small_problem, np.zeros(2), 0, 0.1)


def test_run_convergence_records_the_true_gradient_along_its_own_iterates(small_problem):
    T, alpha = 12, 0.3
    tr = run_convergence(small_problem, np.zeros(2), T, alpha, inner_steps="linear", label="K linear")
    assert tr.T == T and tr.phi.shape == (T, 2) and tr.label == "K linear"
    np.testing.assert_array_equal(tr.inner_steps, np.arange(1, T + 1))
    assert tr.inner_total == T * (T + 1) // 2
    assert tr.inner_lr == pytest.approx(inner_step_size(small_problem, np.zeros(2)))
    for t in (0, 5, T - 1):  # independent oracle: central differences of phi -> G(phi) at the recorded phi_t
        fd = small_problem.hypergradient(tr.phi[t], "finite_difference")
        assert tr.grad_norm_sq[t] == pytest.approx(float(fd @ fd), rel=1e-6, abs=1e-12)
        assert tr.objective[t] == pytest.approx(small_problem.objective(tr.phi[t]), rel=1e-12)
    # consecutive iterates differ by alpha times an estimate close to the true gradient once K_t is large
    step = (tr.phi[-1] - tr.phi[-2]) / alpha
    true = small_problem.hypergradient(tr.phi[-2])
    assert np.linalg.norm(step - true) <= 1e-3 * max(np.linalg.norm(true), 1e-12) + 1e-9


def test_theorem1_rate_holds_on_a_small_problem_with_k_equal_t_plus_one(small_problem):
    phi0 = np.zeros(2)
    alpha = 0.5 / upper_lipschitz(small_problem, phi0, np.random.default_rng(0))
    tr = run_convergence(small_problem, phi0, 40, alpha)
    fit = fit_rate(tr)
    assert fit.slope <= -0.9 and fit.ci[0] < fit.slope < fit.ci[1]
    assert trace_slope(tr) == fit.slope


def test_a_schedule_callable_and_a_constant_k(small_problem):
    tr = run_convergence(small_problem, np.zeros(2), 5, 0.2, inner_steps=lambda t: 3, inner_lr=0.1)
    assert list(tr.inner_steps) == [3] * 5 and tr.inner_lr == 0.1


def test_plot_rate_writes_a_png_and_draws_on_given_axes(tmp_path):
    traces = [_power(-1.0), _trace(np.arange(1, 50) ** -0.5, label="slow")]
    path = tmp_path / "rate.png"
    plot_rate(traces, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from matplotlib.figure import Figure

    ax = Figure().subplots()
    assert plot_rate(traces, ax=ax, measure="best") is ax
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels[-1] == "C / T" and labels[1].startswith("slow: slope -0.5")

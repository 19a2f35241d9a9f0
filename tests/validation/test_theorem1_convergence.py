"""The Theorem 1 check runs on parl_core.convergence and reports the numbers of a plain A-PARL loop.

Oracle: Algorithm 1 driven directly through ``parl_core.a_parl`` with the exact oracles, and the slope fitted
with ``validation.core.fit_loglog_slope`` over T >= sqrt(T_max), as the check computed it before it used the
convergence API."""
import numpy as np
import pytest

from parl_core import ExactMonitor, ExactPolicyGradient, PluginHypergradient, a_parl, schedule
from validation.checks import theorem1
from validation.core import fit_loglog_slope


def _plain_loop(case, ctx, T):
    problem = case.problem(horizon=4, reg=0.1)
    phi0 = np.zeros_like(case.phi)
    Hg, _ = problem.lower.gauge_hessian(phi0, problem.lower.solve(phi0), reachable_only=False)
    lr = 0.5 / np.linalg.eigvalsh(-Hg).max()
    rng = ctx.rng("theorem1")
    L_g = 0.0
    for _ in range(6):
        a = phi0 + 0.5 * rng.normal(size=phi0.shape)
        b = a + 0.05 * rng.normal(size=phi0.shape)
        L_g = max(L_g, np.linalg.norm(problem.hypergradient(a) - problem.hypergradient(b)) / np.linalg.norm(a - b))
    out = {}
    for name, sch in {"linear": schedule("linear"), "constant": schedule("constant", 1),
                      "log": schedule("log", 1)}.items():
        _, _, hist = a_parl(phi0, np.zeros((case.S, case.A)), ExactPolicyGradient(problem, lr),
                            PluginHypergradient(problem, "soft_bellman"), iterations=T, step_size=0.5 / L_g,
                            inner_steps=sch, monitor=ExactMonitor(problem))
        Ts = np.arange(1, T + 1)
        avg = np.cumsum(np.array(hist.grad_norm) ** 2) / Ts
        tail = Ts >= np.sqrt(T)
        out[name] = (fit_loglog_slope(Ts[tail], avg[tail]), float(np.max(avg * Ts)), int(np.sum(hist.inner_steps)))
    return out


def test_theorem1_check_matches_a_plain_a_parl_loop(ctx):
    result = theorem1.run(ctx)
    case = [c for c in ctx.family if c.kind == "garnet" and c.temperature >= 0.3][0]
    expected = _plain_loop(case, ctx, T=60)
    by_id = {c.id: c for c in result.claims}
    for name, (slope, C, inner) in expected.items():
        claim = by_id[f"theorem1.{name}"]
        assert claim.measured["fitted_slope"] == pytest.approx(slope, rel=1e-12, abs=1e-14)
        assert claim.measured["total_inner_steps"] == [inner]
        if claim.verdict == "holds-with-constant":
            assert claim.constant == pytest.approx(C, rel=1e-6)
    assert by_id["theorem1.linear"].measured["total_inner_steps"] == [60 * 61 // 2]
    assert result.figures and (ctx.out / result.figures[0].path).exists()

"""The checks can fail: feed a wrong formula, constant or hypergradient and the verdict must be 'fails', with a
counterexample that reproduces it on disk. Also the verdict helpers, which every check uses."""

from parl_core import TabularMDP
from parl_core.mdp import load_extras
from validation.checks import formula_audit, hypergradient, lemma1, lemma34
from validation.core import (FAILS, HOLDS, HOLDS_WITH_CONSTANT, verdict_for_constant, verdict_from_error,
                             verdict_from_ratio, verdict_from_threshold, worst)


def by_id(result, cid):
    return next(c for c in result.claims if c.id == cid)


def test_verdict_helpers():
    assert verdict_from_error(1e-12, 1e-8) == HOLDS
    assert verdict_from_error(1e-3, 1e-8) == FAILS
    assert verdict_from_error(float("nan"), 1e-8) == FAILS
    assert verdict_from_ratio(0.99) == HOLDS and verdict_from_ratio(1.01) == FAILS
    assert verdict_for_constant(3.5) == (HOLDS_WITH_CONSTANT, 3.5)
    assert verdict_for_constant(float("inf"))[0] == FAILS
    assert verdict_from_threshold(-1.0, -0.9) == HOLDS and verdict_from_threshold(-0.5, -0.9) == FAILS
    assert worst([HOLDS, HOLDS_WITH_CONSTANT]) == HOLDS_WITH_CONSTANT and worst([HOLDS, FAILS]) == FAILS


def test_formula_audit_flags_wrong_formula_and_paper_eq16(ctx):
    wrong15 = lambda t: 1.01 * formula_audit.f15_finite(t)  # noqa: E731
    res = formula_audit.run(ctx, finite_formulas={"eq15": wrong15})
    c = by_id(res, "formula_audit.finite.eq15")
    assert c.verdict == FAILS
    mdp = TabularMDP.load(ctx.out / c.counterexample)
    extras = load_extras(ctx.out / c.counterexample)
    assert {"phi", "theta", "features", "horizon"} <= set(extras)
    assert mdp.shape == extras["theta"].shape
    # the paper's eq. (16) is not the Hessian; the corrected expression is
    for form in ("finite", "entropy"):
        c16 = by_id(res, f"formula_audit.{form}.eq16")
        assert c16.verdict == FAILS and c16.counterexample
        assert c16.corrected["verdict"] == HOLDS and c16.corrected["max_rel_error"] < 1e-10
    assert by_id(res, "formula_audit.finite.eq17").verdict == HOLDS


def test_formula_audit_accepts_corrected_hessian(ctx):
    res = formula_audit.run(ctx, finite_formulas={"eq16": formula_audit.f16_finite_corrected},
                            entropy_formulas={"eq16": formula_audit.f16_entropy_corrected})
    assert res.verdict == HOLDS


def test_lemma1_wrong_constant_fails(ctx):
    res = lemma1.run(ctx, L=0.01)
    c = by_id(res, "lemma1.tv")
    assert c.verdict == FAILS and (ctx.out / c.counterexample).exists()
    assert by_id(lemma1.run(ctx), "lemma1.tv").verdict == HOLDS


def test_hypergradient_wrong_route_fails(ctx):
    bad = {"ift": lambda p, phi: 1.001 * p.hypergradient(phi, "soft_bellman")}
    res = hypergradient.run(ctx, methods=bad)
    assert by_id(res, "hypergradient.ift").verdict == FAILS
    assert by_id(res, "hypergradient.unrolled").verdict == HOLDS


def test_hypergradient_wrong_reference_is_caught_by_finite_differences(ctx):
    bad = {"soft_bellman": lambda p, phi: p.hypergradient(phi, "soft_bellman") + 1e-2}
    res = hypergradient.run(ctx, methods=bad)
    assert by_id(res, "hypergradient.finite_difference").verdict == FAILS


def test_lemma3_wrong_constant_fails(ctx):
    res = lemma34.run(ctx, B=1e-4)
    assert by_id(res, "lemma3.i").verdict == FAILS

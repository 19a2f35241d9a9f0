"""The hypergradient check covers the Appendix C examples, and that part of it can fail."""
from parl_core import TabularMDP
from parl_core.mdp import load_extras
from validation.checks import hypergradient


def _claim(res):
    return next(c for c in res.claims if c.id == "hypergradient.appendix_c_examples")


def test_examples_claim_holds_and_lists_every_route(ctx):
    res = hypergradient.run(ctx, examples=hypergradient.example_cases(small=True))
    c = _claim(res)
    assert c.verdict == "holds", c.measured
    for name in ("workbench", "tax"):
        for m in ("finite_difference", "ift", "ift_cg", "unrolled"):
            assert c.measured["rel_error"][f"{name}.{m}"] < 1e-6


def test_examples_claim_fails_on_a_wrong_route_with_a_counterexample(ctx):
    bad = {"unrolled": lambda p, phi: 1.001 * p.hypergradient(phi, "soft_bellman")}
    c = _claim(hypergradient.run(ctx, methods=bad, examples=hypergradient.example_cases(small=True)))
    assert c.verdict == "fails" and c.counterexample
    mdp = TabularMDP.load(ctx.out / c.counterexample)
    assert mdp.n_states > 0 and "phi" in load_extras(ctx.out / c.counterexample)


def test_quick_runs_leave_the_examples_to_the_full_run(ctx):
    assert all(c.id != "hypergradient.appendix_c_examples" for c in hypergradient.run(ctx).claims)
    assert [n for n, _, _ in hypergradient.example_cases()] == ["workbench", "tax", "maze"]

"""The claims of issue 13 (rlhf_truth, rlhf_objectives, term2_noise): verdicts computed from the data, and they
can fail: a wrong objective or estimator flips them, with a counterexample on disk."""
import numpy as np
import pytest
import torch

from parl_core import PreferenceObjective, TabularMDP
from parl_core.mdp import load_extras
from validation.checks import rlhf_objectives, rlhf_truth, term2_noise
from validation.core import FAILS, HOLDS, HOLDS_WITH_CONSTANT


def by_id(result, cid):
    return next(c for c in result.claims if c.id == cid)


def test_rlhf_truth_verdicts_and_a_misspecified_score_fails(ctx):
    res = rlhf_truth.run(ctx)
    lik = by_id(res, "rlhf_truth.stationary.likelihood")
    assert lik.verdict == FAILS and lik.measured["median_grad_norm"] > 1e-3
    assert lik.measured["max_term1_norm"] < 1e-12  # Term 1 vanishes at the truth, Term 2 does not
    extras = load_extras(ctx.out / lik.counterexample)
    assert np.linalg.norm(extras["grad_at_truth"]) == pytest.approx(lik.measured["max_grad_norm"])
    for s in ("excess_kl", "brier"):
        assert by_id(res, f"rlhf_truth.stationary.{s}").verdict == HOLDS
    parts = by_id(res, "rlhf_truth.gain_from_entropy").measured
    assert parts["max_split_error"] < 1e-12
    assert parts["mean_dG"] == pytest.approx(parts["mean_d_entropy"] + parts["mean_d_kl"], abs=1e-12)
    # a Brier score against a labeller whose reward is not the parameter tested is not stationary there
    wrong = {"brier": lambda r, H: PreferenceObjective(1.2 * r, H, 1.0, score="brier", mode="exact")}
    c = by_id(rlhf_truth.run(ctx, scores=wrong, problems=2), "rlhf_truth.stationary.brier")
    assert c.verdict == FAILS
    mdp = TabularMDP.load(ctx.out / c.counterexample)
    assert mdp.shape == load_extras(ctx.out / c.counterexample)["true_reward"].shape


def test_rlhf_objectives_claims_on_a_small_family(ctx):
    objectives = {k: rlhf_objectives.OBJECTIVES[k] for k in ("likelihood", "win_rate")}
    res = rlhf_objectives.run(ctx, objectives=objectives, families={"rlhf": (3, 3, 3)})
    assert [c.id for c in res.claims] == [f"rlhf_objectives.{o}.{m}" for o in objectives for m in rlhf_objectives.METRICS]
    lik = by_id(res, "rlhf_objectives.likelihood.true_return")
    assert lik.verdict == FAILS and lik.measured["rlhf_ci_high"] < 0  # A-PARL ends with a lower true return
    assert (ctx.out / lik.counterexample).exists()
    win = by_id(res, "rlhf_objectives.win_rate.true_return")
    assert win.verdict == HOLDS and win.measured["rlhf_ci_low"] > 0


def test_distance_to_truth_ignores_the_common_constant():
    r = np.random.default_rng(0).normal(size=(3, 2))
    assert rlhf_objectives.distance_to_truth(r.ravel() + 4.0, r) == pytest.approx(0.0, abs=1e-12)
    assert rlhf_objectives.distance_to_truth(np.zeros(6), r) > 0.1


def test_crossover_is_the_first_n_from_which_on_term2_helps():
    Ns = [25, 50, 100, 200]
    assert term2_noise.crossover(Ns, np.array([-0.1, 0.2, -0.01, 0.3])) == 200
    assert term2_noise.crossover(Ns, np.array([0.1, 0.2, 0.01, 0.3])) == 25
    assert term2_noise.crossover(Ns, np.array([0.1, 0.2, 0.01, -0.3])) == float("inf")


class _Fake:
    def __init__(self, t1, t2):
        self.term1, self.term2 = torch.as_tensor(t1), torch.as_tensor(t2)


def test_term2_noise_verdicts_follow_the_estimates(ctx):
    grid = ([(1.0, 0.8)], [25, 100], 1)
    exact = lambda case, n, seed, continuation: {"exact": _Fake(case["term1"], case["term2"])}  # noqa: E731
    res = term2_noise.run(ctx, runner=exact, grid=grid)
    assert [c.verdict for c in res.claims] == [HOLDS, HOLDS, HOLDS_WITH_CONSTANT]
    assert res.claims[2].constant == 25
    flipped = lambda case, n, seed, continuation: {"flipped": _Fake(case["term1"], -case["term2"])}  # noqa: E731
    res = term2_noise.run(ctx, runner=flipped, grid=grid)
    assert all(c.verdict == FAILS for c in res.claims)
    extras = load_extras(ctx.out / by_id(res, "term2_noise.consistent").counterexample)
    assert {"exact_term2", "features", "phi", "cos_term2"} <= set(extras)
    np.testing.assert_allclose(extras["cos_term2"], -1.0)


def test_term2_gate_verdicts_follow_the_estimates(ctx):
    """Exact estimates on every part: both gates open everywhere, so both 'closed on noise' claims fail (with the
    batches on disk) and both 'open on signal' claims hold. Rank-one noise (a random scalar times one vector, the
    soft-Bellman structure at gamma near 1): split-cosine's halves agree or disagree in full and it opens on about
    half the batches, while fold-z's z follows F(1, 4) and opens on about 5%."""
    from validation.checks import term2_gate

    def exact(case, n, seed, parts, continuation):
        rng = np.random.default_rng(seed)
        return [case["term2"] + 1e-9 * rng.normal(size=case["term2"].shape) for _ in range(len(parts) + 1)]

    res = term2_gate.run(ctx, runner=exact, batches=6)
    verdicts = {c.id: c.verdict for c in res.claims}
    assert verdicts == {"term2_gate.split_cosine.noise": FAILS, "term2_gate.split_cosine.signal": HOLDS,
                        "term2_gate.fold_z.noise": FAILS, "term2_gate.fold_z.signal": HOLDS}
    cex = load_extras(ctx.out / by_id(res, "term2_gate.fold_z.noise").counterexample)
    assert np.all(cex["fold_z"] > 1e6) and np.allclose(cex["cos_exact"], 1.0)

    def rank_one(case, n, seed, parts, continuation):
        rng = np.random.default_rng(seed)
        v = np.arange(1.0, 1.0 + case["term2"].size)
        return [rng.normal() * v for _ in range(len(parts) + 1)]

    res = term2_gate.run(ctx, runner=rank_one, batches=60)
    noise = {c.measured["gate"]: c for c in res.claims if c.measured["setting"] == "noise"}
    assert noise["split-cosine"].verdict == FAILS and noise["split-cosine"].measured["halves_abs_cos_above_0.9"] == 1
    assert 0.3 < noise["split-cosine"].measured["open_rate"] < 0.7
    assert noise["fold-z"].verdict == HOLDS and noise["fold-z"].measured["open_rate"] < 0.1

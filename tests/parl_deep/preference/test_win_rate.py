"""The win rate against a reference (eqs. 3-4): the one-sided Term 2 estimators against parl_core's exact Term 2 of
``WinRateObjective``, the sampled win rate against its exact value (1/2 against the policy itself), the
reference segments' global steps, and the ``upper`` grammar."""
import numpy as np
import pytest
import torch

from parl_deep.fields import ConfigError
from parl_deep.preference.hypergrad import LinearRegressor, PairBatch, estimate
from parl_deep.preference.tabular import exact_rlhf_case, onehot_cell_features, sample_reference_batch
from parl_deep.preference.teacher import SimulatedTeacher
from parl_deep.preference.win_rate import (parse_upper, reference_problems, sample_reference_rows,
                                           win_rate_objective)
from parl_deep.replay import NotEnoughData, SegmentIndex

OPTS = {"soft-bellman": lambda: dict(regressor=LinearRegressor(), features=onehot_cell_features),
        "ift-cg": lambda: dict(max_iter=100), "neumann": lambda: dict(max_iter=100)}


def _cos(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _batch(case, n_pairs, seed, reference=None):
    ref = case["reference"] if reference is None else reference
    return sample_reference_batch(case["mdp"], case["pi"], ref, case["true"], case["beta"], case["T"],
                                  case["T"] + 40, n_pairs, np.random.default_rng(seed))


def _estimate(case, name, batch):
    return estimate(name, case["policy"], case["reward"], batch, temperature=case["lam"], gamma=case["gamma"],
                    critic=case["critic"], objective=win_rate_objective, **OPTS[name]())


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("name", ["soft-bellman", "ift-cg"])
def test_one_sided_term2_matches_the_exact_win_rate_term2(name, seed):
    """Policy at theta*(phi), reference uniform: at 10^4 pairs the segment-0-only estimate is aligned with
    parl_core's exact Term 2 of WinRateObjective (measured: cos >= 0.996, rel. err. <= 0.08), Term 1 is exactly 0
    (as the exact one), and the same batch scored on both sides (as eq. 5's pairs are) is not aligned."""
    case = exact_rlhf_case(seed, score="win_rate")
    assert np.linalg.norm(case["term1"]) == 0 and np.linalg.norm(case["term2"]) > 0.1
    batch = _batch(case, 10_000, 100 + seed)
    res = _estimate(case, name, batch)
    assert _cos(res.term2.numpy(), case["term2"]) >= 0.98
    assert np.linalg.norm(res.term2.numpy() - case["term2"]) <= 0.25 * np.linalg.norm(case["term2"])
    assert torch.all(res.term1 == 0)
    both = PairBatch(obs=batch.obs, act=batch.act, labels=batch.labels, segment=batch.segment)
    assert _cos(_estimate(case, name, both).term2.numpy(), case["term2"]) < 0.5  # the reference side must be left out


def test_neumann_agrees_with_cg_on_one_sided_pairs():
    case = exact_rlhf_case(2, score="win_rate")
    batch = _batch(case, 2000, 5)
    a, b = _estimate(case, "ift-cg", batch), _estimate(case, "neumann", batch)
    assert _cos(a.term2.numpy(), b.term2.numpy()) > 0.999 and a.info["residual"] < 1e-8


def test_one_sided_policy_states_and_tail_sums_use_segment_zero_only():
    case = exact_rlhf_case(0, score="win_rate")
    batch = _batch(case, 7, 0)
    assert torch.equal(batch.policy_states(), batch.obs[:, 0, :batch.segment].reshape(-1, batch.obs.shape[-1]))
    assert batch.tail_sums(case["reward"], 0.9).shape == (7, 1, batch.segment)
    with pytest.raises(ValueError, match="policy_sides"):
        PairBatch(batch.obs, batch.act, batch.labels, batch.segment, policy_sides=(1, 0))


def test_the_sampled_win_rate_is_one_half_against_the_policy_itself_and_the_exact_value_otherwise():
    """The objective's mean over N labelled pairs against its exact value by enumeration, within 4 standard errors
    (sqrt(var(y) / N) <= 0.5 / sqrt(N) = 0.0035 at N = 20,000): 1/2 exactly when the reference is the policy
    itself; parl_core's value against the uniform reference (0.542), which a label flipped the wrong way (mean
    0.458) would miss by 20 standard errors."""
    n = 20_000
    for seed, ref in ((0, "self"), (0, None), (1, None)):
        case = exact_rlhf_case(seed, score="win_rate", reference=None if ref is None else exact_rlhf_case(seed)["pi"])
        y = win_rate_objective(None, _batch(case, n, 7 + seed)).numpy()
        if ref == "self":
            assert case["value"] == pytest.approx(0.5, abs=1e-12)
        else:
            assert abs(case["value"] - 0.5) > 0.01
        assert abs(y.mean() - case["value"]) <= 4 * y.std() / np.sqrt(n), (ref, y.mean(), case["value"])


def _index(steps=4000, episode=100):
    idx = SegmentIndex(steps)
    for t in range(steps):
        idx.record(t, t // episode, t)
    return idx


def test_reference_segments_come_from_the_asked_global_steps():
    idx, rng, now, W = _index(), np.random.default_rng(0), 4000, 1000
    r0, r1 = sample_reference_rows(idx, rng, 500, 50, now, now, window=W, reference="random", seed_steps=600)
    assert r0.min() >= now - W and r1.max() < 600  # rows are global steps here
    r0, r1 = sample_reference_rows(idx, rng, 500, 50, now, now, window=W, reference="previous", seed_steps=600)
    assert r0.min() >= now - W and r1.min() >= now - 2 * W and r1.max() < now - W
    assert np.all(np.diff(r1, axis=1) == 1) and np.all(r1[:, 0] // 100 == r1[:, -1] // 100)  # inside one episode
    with pytest.raises(NotEnoughData):
        sample_reference_rows(idx, rng, 5, 50, now, now, window=W, reference="random", seed_steps=49)
    with pytest.raises(NotEnoughData):  # no window before the first one
        sample_reference_rows(idx, rng, 5, 50, 1000, 1000, window=W, reference="previous", seed_steps=600)


def test_win_rate_of_labelled_buffer_pairs_is_one_half_for_one_stationary_policy():
    """Every step's true reward i.i.d.: the oracle teacher prefers the recent segment to a previous-window one
    with probability 1/2 (N = 4,000 pairs, 4 standard errors = 0.032); with the recent window's rewards shifted
    up by one, the win rate is near 1 (the label orientation: y = 1 means the current segment won)."""
    idx, now, W, n = _index(), 4000, 1000, 4000
    rewards = np.random.default_rng(1).normal(size=now)
    for shift, lo, hi in ((0.0, 0.5 - 0.032, 0.5 + 0.032), (1.0, 0.99, 1.0)):
        r = rewards + shift * (np.arange(now) >= now - W)
        r0, r1 = sample_reference_rows(idx, np.random.default_rng(2), n, 50, now, now, window=W,
                                       reference="previous", seed_steps=500)
        y, keep = SimulatedTeacher.preset("oracle", seed=0).label(r[r0], r[r1])
        batch = PairBatch(torch.zeros(n, 2, 50, 1), torch.zeros(n, 2, 50, 1), torch.as_tensor(y), 50,
                          policy_sides=(0,))
        assert keep.all() and lo <= float(win_rate_objective(None, batch).mean()) <= hi, shift


def test_parse_upper_reads_weighted_sums_and_names_the_field():
    assert parse_upper("likelihood") == (("likelihood", 1.0),)
    assert parse_upper("win-rate") == (("win-rate", 1.0),)
    assert parse_upper("likelihood+0.5*win-rate") == (("likelihood", 1.0), ("win-rate", 0.5))
    assert parse_upper(" 2 * brier + 1e-1*win-rate ") == (("brier", 2.0), ("win-rate", 0.1))
    # a name ending in "e" before "+" is not an exponent
    assert parse_upper("win-rate+likelihood") == (("win-rate", 1.0), ("likelihood", 1.0))
    assert parse_upper("0.5*win-rate+1e+1*brier") == (("win-rate", 0.5), ("brier", 10.0))
    for bad, why in (("win-rat", "unknown objective 'win-rat'"), ("likelihood+likelihood", "appears twice"),
                     ("0*brier", "positive"), ("", "empty"), ("likelihood+", "cannot read"),
                     ("-1*win-rate", "cannot read"), ("likelihood*0.5", "cannot read")):
        with pytest.raises(ConfigError, match=f"a-parl: upper must be one of likelihood, brier, win-rate.*{why}"):
            parse_upper(bad, "a-parl: ")


def test_reference_problems_name_what_is_missing():
    ok = dict(segment=50, stride=1, seed_steps=1000, steps=50_000, replay_capacity=None, query_window=10_000,
              first_session=10_000, interval=10_000)
    assert reference_problems("random", **ok) == [] and reference_problems("previous", **ok) == []
    assert "sac.seed_steps >= 50" in reference_problems("random", **{**ok, "seed_steps": 49})[0]
    assert "sac.seed_steps >= 99" in reference_problems("random", **{**ok, "seed_steps": 60, "stride": 2})[0]
    assert "overwrite" in reference_problems("random", **{**ok, "replay_capacity": 40_000})[0]
    assert reference_problems("random", **{**ok, "replay_capacity": 50_000}) == []
    assert "keeps fewer" in reference_problems("previous", **{**ok, "replay_capacity": 19_999})[0]
    assert "no feedback session" in reference_problems("previous", **{**ok, "steps": 10_000})[0]
    assert reference_problems("previous", **{**ok, "steps": 20_000}) == []  # the second session has one

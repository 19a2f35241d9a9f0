"""The Term 2 gates' statistics (parl_deep.preference.gate) against independent oracles: scipy's one-sample t
test for the fold-z statistic of scalars, its F(1, K - 1) law under rank-one noise, and the low-rank noise that
fools split-cosine."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from parl_deep.preference.gate import (MAX_ALPHA, fold_slices, fold_z_statistic, fold_z_threshold, gate_parts,
                                      parts_needed)


@given(st.integers(1, 200), st.integers(1, 20))
def test_fold_slices_partition_the_items_evenly(n, k):
    if n < k:
        with pytest.raises(ValueError, match="non-empty folds"):
            fold_slices(n, k)
        return
    parts = fold_slices(n, k)
    covered = np.concatenate([np.arange(n)[s] for s in parts])
    assert len(parts) == k and np.array_equal(covered, np.arange(n))
    sizes = [s.stop - s.start for s in parts]
    assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1


def test_gate_parts_are_the_halves_or_the_folds():
    assert gate_parts("split-cosine", 7, 5) == [slice(0, 3), slice(3, 6)]  # the odd last pair is in neither half
    assert gate_parts("split-cosine", 8, 5) == [slice(0, 4), slice(4, 8)]
    assert gate_parts("fold-z", 10, 4) == [slice(0, 2), slice(2, 5), slice(5, 7), slice(7, 10)]
    with pytest.raises(ValueError, match="no parts"):
        gate_parts("off", 10, 4)


@given(gate=st.sampled_from(["split-cosine", "fold-z"]), folds=st.integers(2, 12), extra=st.integers(0, 50))
def test_parts_needed_is_the_fewest_pairs_that_give_every_part_a_pair(gate, folds, extra):
    need = parts_needed(gate, folds)
    parts = gate_parts(gate, need + extra, folds)
    assert len(parts) == need and all(p.stop > p.start for p in parts)
    if gate == "fold-z":  # one pair fewer: no folds at all, or a half with nothing in it
        with pytest.raises(ValueError, match="non-empty folds"):
            gate_parts(gate, need - 1, folds)
    else:
        assert any(p.stop <= p.start for p in gate_parts(gate, need - 1, folds))
    assert parts_needed("off", folds) == 0


@settings(max_examples=60)
@given(st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=2, max_size=12).filter(lambda a: np.ptp(a) > 1e-3))
def test_fold_z_of_scalars_is_the_squared_one_sample_t_statistic(values):
    t = stats.ttest_1samp(np.asarray(values), 0.0).statistic
    assert fold_z_statistic([np.array([v]) for v in values]) == pytest.approx(t ** 2, rel=1e-9, abs=1e-12)


def test_fold_z_reads_tensors_and_flattens_and_handles_agreeing_folds():
    a = [torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, 4.0]]), torch.tensor([[2.0, 0.0]])]
    m = np.array([[1.0, 2.0], [3.0, 4.0], [2.0, 0.0]])
    g = m.mean(0)
    assert fold_z_statistic(a) == pytest.approx(3 * g @ g / (((m - g) ** 2).sum() / 2), rel=1e-12)
    assert fold_z_statistic([np.ones(3)] * 4) == float("inf")  # identical non-zero folds: certain signal
    assert np.isnan(fold_z_statistic([np.zeros(3)] * 4))
    with pytest.raises(ValueError, match="at least 2"):
        fold_z_statistic([np.ones(3)])


@pytest.mark.parametrize("folds", [2, 5, 10])
def test_the_threshold_is_the_f_quantile(folds):
    assert fold_z_threshold(0.05, folds) == pytest.approx(stats.f.ppf(0.95, 1, folds - 1), rel=1e-12)
    assert stats.f.cdf(fold_z_threshold(MAX_ALPHA, folds), 1, folds - 1) == pytest.approx(0.9, abs=1e-10)
    for bad in (0.0, 0.2, 1.0):
        with pytest.raises(ValueError, match="alpha"):
            fold_z_threshold(bad, folds)


def _rank_one_noise(rng, folds, dim=400):
    v = rng.normal(size=dim)
    return [rng.normal() * v + 1e-6 * rng.normal(size=dim) for _ in range(folds)]


def test_under_rank_one_noise_fold_z_opens_at_rate_alpha_and_split_cosine_at_about_a_half():
    """Each fold's estimate is a random scalar times one shared vector (the soft-Bellman estimate's structure
    at gamma near 1): z follows F(1, K - 1), so the gate opens at rate alpha, while the two halves' cosine is
    +-1 and split-cosine opens half the time."""
    rng = np.random.default_rng(0)
    K, n, alpha = 5, 4000, 0.05
    thr = fold_z_threshold(alpha, K)
    z = np.array([fold_z_statistic(_rank_one_noise(rng, K)) for _ in range(n)])
    assert stats.kstest(z, stats.f(1, K - 1).cdf).pvalue > 1e-3
    rate, se = np.mean(z > thr), np.sqrt(alpha * (1 - alpha) / n)
    assert abs(rate - alpha) < 4 * se
    halves = [_rank_one_noise(rng, 2) for _ in range(n)]
    cos = np.array([a @ b / np.linalg.norm(a) / np.linalg.norm(b) for a, b in halves])
    assert np.mean(np.abs(cos) > 0.999) > 0.99 and abs(np.mean(cos > 0.2) - 0.5) < 4 * np.sqrt(0.25 / n)


def _open_rate(rng, K, spectrum, threshold, n):
    """Opening rate of z > threshold over n draws of K i.i.d. zero-mean Gaussian folds with these variances."""
    sd = np.sqrt(np.asarray(spectrum, dtype=float))
    return float(np.mean([fold_z_statistic(list(rng.normal(size=(K, len(sd))) * sd)) > threshold
                          for _ in range(n)]))


SPECTRA = {"rank 2, even": [1.0, 1.0], "rank 2, 1:0.3": [1.0, 0.3], "rank 2, 1:0.02": [1.0, 0.02],
           "rank 4, even": [1.0] * 4, "rank 50, spiked": [20.0] + [1.0] * 49, "rank 50, even": [1.0] * 50}


@pytest.mark.parametrize("K", [2, 5, 10])
@pytest.mark.parametrize("alpha", [0.05, MAX_ALPHA])
def test_under_noise_of_higher_rank_fold_z_opens_at_most_at_rate_alpha(K, alpha):
    """The claim behind MAX_ALPHA, for the admissible levels: noise of any of these spectra opens the gate at
    most at rate alpha (within 3 standard errors of 4000 draws); noise close to rank one opens it at a rate of
    order alpha."""
    rng = np.random.default_rng(K * 100 + int(alpha * 100))
    n, thr = 4000, fold_z_threshold(alpha, K)
    rates = {name: _open_rate(rng, K, spec, thr, n) for name, spec in SPECTRA.items()}
    assert all(r < alpha + 3 * np.sqrt(alpha * (1 - alpha) / n) for r in rates.values()), rates
    assert rates["rank 2, 1:0.02"] > 0.3 * alpha  # not vacuous: near-rank-one noise opens it at a rate of order alpha


def test_above_max_alpha_noise_of_high_rank_opens_more_often_than_alpha():
    """Why gate_alpha is capped: at alpha = 0.5 the F(1, 4) quantile (0.55) lies below 1, where z of high-rank
    noise concentrates, so such noise opens the gate far more often than alpha."""
    rng = np.random.default_rng(7)
    thr = float(stats.f.ppf(0.5, 1, 4))
    assert thr < 1 and _open_rate(rng, 5, [1.0] * 50, thr, 2000) > 0.8


def test_fold_z_opens_on_a_signal_well_above_the_noise():
    rng = np.random.default_rng(1)
    K, dim = 5, 400
    signal = rng.normal(size=dim)
    thr = fold_z_threshold(0.05, K)
    # fold noise of 0.2 x the signal's norm along it and 0.2 x elsewhere: z is about 5 / 0.08 = 62
    opened = [fold_z_statistic([signal + 0.2 * rng.normal() * signal + 0.2 * np.linalg.norm(signal)
                                * rng.normal(size=dim) / np.sqrt(dim) for _ in range(K)]) > thr for _ in range(500)]
    assert np.mean(opened) > 0.95

"""parl report's statistics against direct numpy/scipy computations on synthetic run directories."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import trim_mean

from parl_deep.report import analyse, load_runs, smooth_curve, steps_to_threshold

from .conftest import METHODS, SEEDS, STEPS, TASKS, write_run


def test_statistics_match_direct_computation(grid):
    root, data = grid
    an = analyse(load_runs(root), reps=1000, seed=0)
    assert an["status"] == {"finished": 30, "failed": 1, "unfinished": 1}
    assert an["oracle"] == "oracle" and an["compare"] == ["a-parl", "pebble"]
    final = {k: v[0][-1] for k, v in data.items()}

    # per-task final scores (raw)
    for row in an["final_scores"]:
        x = np.array([final[(row["task"], row["method"], s)] for s in SEEDS])
        assert row["n_runs"] == 5
        assert row["mean"] == pytest.approx(x.mean()) and row["median"] == pytest.approx(np.median(x))
        assert row["iqm"] == pytest.approx(trim_mean(x, 0.25))
        assert row["ci_low"] <= row["mean"] <= row["ci_high"]

    # oracle-normalised runs x tasks matrices, IQM = 25% trimmed mean of the flattened matrix
    ref = {t: trim_mean([final[(t, "oracle", s)] for s in SEEDS], 0.25) for t in TASKS}
    assert an["oracle_final_iqm"] == pytest.approx(ref)
    mats = {m: np.array([[final[(t, m, s)] / ref[t] for t in TASKS] for s in SEEDS]) for m in METHODS}
    for m in METHODS:
        np.testing.assert_allclose(an["matrices"][m]["scores"], mats[m])
        rows = {r["statistic"]: r for r in an["aggregates"] if r["method"] == m}
        assert rows["IQM"]["value"] == pytest.approx(trim_mean(mats[m].ravel(), 0.25))
        assert rows["Mean"]["value"] == pytest.approx(mats[m].mean(axis=0).mean())
        assert rows["Median"]["value"] == pytest.approx(np.median(mats[m].mean(axis=0)))
        for r in rows.values():
            assert r["ci_low"] <= r["value"] <= r["ci_high"], (m, r)

    # probability of improvement = mean over tasks of P(X > Y) counted over all pairs of runs (ties 1/2)
    assert {(r["x"], r["y"]) for r in an["probability_of_improvement"]} == {
        ("a-parl", "pebble"), ("a-parl", "oracle"), ("pebble", "oracle")}
    for r in an["probability_of_improvement"]:
        x, y = mats[r["x"]], mats[r["y"]]
        direct = np.mean([np.mean((x[:, k, None] > y[None, :, k]) + 0.5 * (x[:, k, None] == y[None, :, k]))
                          for k in range(len(TASKS))])
        assert r["p_x_better"] == pytest.approx(direct)
        assert r["ci_low"] <= r["p_x_better"] <= r["ci_high"]

    # sample efficiency: first eval step reaching 0.8 x the oracle's final IQM; never reaching it = censored
    per = {(r["task"], r["method"], r["seed"]): r for r in an["sample_efficiency_runs"]}
    assert len(per) == 30
    for (t, m, s), (ret, _) in data.items():
        hit = np.nonzero(ret >= 0.8 * ref[t])[0]
        r = per[(t, m, s)]
        assert r["threshold"] == pytest.approx(0.8 * ref[t])
        assert r["steps_to_threshold"] == (int(STEPS[hit[0]]) if hit.size else None)
        assert r["censored"] == (hit.size == 0)
    assert per[("dmc:walker-walk", "a-parl", 4)]["censored"]

    def steps_of(t, m):
        return np.array([per[(t, m, s)]["steps_to_threshold"] or per[(t, m, s)]["last_step"] for s in SEEDS], float)

    ratios = {r["task"]: r for r in an["sample_efficiency_ratio"]}
    for t in TASKS:
        direct = steps_of(t, "a-parl").mean() / steps_of(t, "pebble").mean()
        assert ratios[t]["ratio"] == pytest.approx(direct)
        assert ratios[t]["samples_saved"] == pytest.approx(1 - direct)
        assert ratios[t]["ci_low"] <= ratios[t]["ratio"] <= ratios[t]["ci_high"]
    assert ratios["dmc:walker-walk"]["censored_a"] == 1 and ratios["metaworld:door-open"]["censored_a"] == 0
    gm = ratios["all tasks (geometric mean)"]
    assert gm["ratio"] == pytest.approx(math.sqrt(ratios[TASKS[0]]["ratio"] * ratios[TASKS[1]]["ratio"]))
    assert gm["ci_low"] <= gm["ratio"] <= gm["ci_high"]
    assert gm["ratio"] < 1  # a-parl's curves rise faster by construction

    # reproducible
    again = analyse(load_runs(root), reps=1000, seed=0)
    assert again["aggregates"] == an["aggregates"] and again["sample_efficiency_ratio"] == an["sample_efficiency_ratio"]


def test_success_metric_uses_success_rate_on_metaworld(grid):
    root, data = grid
    an = analyse(load_runs(root), metric="success", reps=200)
    rows = {(r["task"], r["method"]): r for r in an["final_scores"]}
    for m in METHODS:
        mw = np.array([data[("metaworld:door-open", m, s)][1][-1] for s in SEEDS])
        dmc = np.array([data[("dmc:walker-walk", m, s)][0][-1] for s in SEEDS])
        assert rows[("metaworld:door-open", m)]["mean"] == pytest.approx(mw.mean())
        assert rows[("dmc:walker-walk", m)]["mean"] == pytest.approx(dmc.mean())


def test_threshold_ref_sets_the_threshold_from_another_methods_final_iqm(grid):
    root, data = grid
    an = analyse(load_runs(root), reps=200, fraction=1.0, threshold_ref="pebble")
    ref = {t: trim_mean([data[(t, "pebble", s)][0][-1] for s in SEEDS], 0.25) for t in TASKS}
    assert an["threshold_ref"] == "pebble" and an["threshold_ref_final_iqm"] == pytest.approx(ref)
    per = {(r["task"], r["method"], r["seed"]): r for r in an["sample_efficiency_runs"]}
    for (t, m, s), (ret, _) in data.items():
        hit = np.nonzero(ret >= ref[t])[0]
        assert per[(t, m, s)]["threshold"] == pytest.approx(ref[t])
        assert per[(t, m, s)]["steps_to_threshold"] == (int(STEPS[hit[0]]) if hit.size else None)
    # normalisation still uses the oracle
    assert an["oracle"] == "oracle" and "oracle" in an["normalisation"]
    with pytest.raises(Exception, match="threshold-ref"):
        analyse(load_runs(root), reps=200, threshold_ref="pebbel")


def test_without_oracle_aggregates_are_raw_and_there_is_no_threshold(tmp_path):
    for t in TASKS:
        for s in SEEDS:
            write_run(tmp_path, t, "pebble", s, np.linspace(0, 100 + s, STEPS.size))
            write_run(tmp_path, t, "a-parl", s, np.linspace(0, 200 + s, STEPS.size))
    an = analyse(load_runs(tmp_path), reps=200)
    assert an["oracle"] is None and "raw" in an["normalisation"]
    iqm = {r["method"]: r["value"] for r in an["aggregates"] if r["statistic"] == "IQM"}
    assert iqm["a-parl"] == pytest.approx(trim_mean(np.tile(200 + np.array(SEEDS, float), 2), 0.25))
    assert an["sample_efficiency"] == [] and an["sample_efficiency_ratio"] == []
    assert [r["p_x_better"] for r in an["probability_of_improvement"]] == [1.0]


def test_curve_helpers():
    v = np.array([0.0, 3.0, 6.0, 3.0])
    np.testing.assert_allclose(smooth_curve(v, 2), [0.0, 1.5, 4.5, 4.5])
    np.testing.assert_allclose(smooth_curve(v, 1), v)
    assert steps_to_threshold(np.array([10, 20, 30, 40]), v, 5.0) == 30
    assert steps_to_threshold(np.array([10, 20, 30, 40]), v, 7.0) is None


def test_several_comparisons_and_the_star_form(grid):
    """A list of pairs gives each pair's rows, the first pair's exactly as alone (same bootstrap draws); '*:B' is
    every other method against B, in report order; an unknown label is refused by name."""
    from parl_deep.report import ratio_forest_rows

    root, _ = grid
    runs = load_runs(root)
    alone = analyse(runs, reps=300, seed=0, compare=("a-parl", "pebble"))
    both = analyse(runs, reps=300, seed=0, compare=[("a-parl", "pebble"), ("oracle", "pebble")])
    assert both["comparisons"] == [["a-parl", "pebble"], ["oracle", "pebble"]]
    assert both["compare"] == ["a-parl", "pebble"]
    first = [r for r in both["sample_efficiency_ratio"] if r["a"] == "a-parl"]
    assert first == alone["sample_efficiency_ratio"]
    second = {r["task"]: r for r in both["sample_efficiency_ratio"] if r["a"] == "oracle"}
    assert set(second) == set(TASKS) | {"all tasks (geometric mean)"}
    star = analyse(runs, reps=300, seed=0, compare=("*", "pebble"))
    assert star["comparisons"] == [[m, "pebble"] for m in star["methods"] if m != "pebble"]
    assert {(r["a"], r["task"]) for r in star["sample_efficiency_ratio"]} == \
        {(m, t) for m in star["methods"] if m != "pebble" for t in [*TASKS, "all tasks (geometric mean)"]}
    forest = ratio_forest_rows(star)
    assert len(forest) == len(star["sample_efficiency_ratio"])
    assert [r["task"] for r in forest][:2 * (len(star["methods"]) - 1)] == \
        [t for t in star["tasks"] for _ in range(len(star["methods"]) - 1)]
    assert all(r["bound"] == {(0, 0): "", (1, 0): "lower", (0, 1): "upper", (1, 1): "neither"}[
        (min(src["censored_a"], 1), min(src["censored_b"], 1))] for r, src in
               zip(forest, sorted(star["sample_efficiency_ratio"], key=lambda x: [*star["tasks"], x["task"]].index(
                   x["task"]))))
    swapped = ratio_forest_rows(analyse(runs, reps=300, compare=[("a-parl", "pebble"), ("pebble", "a-parl")]))
    walker = {r["label"]: r["bound"] for r in swapped if r["task"] == "dmc:walker-walk"}
    assert walker == {"a-parl / pebble": "lower", "pebble / a-parl": "upper"}  # a-parl has the censored run
    with pytest.raises(Exception, match="--compare: 'pebbel' is not a method"):
        analyse(runs, reps=300, compare=[("a-parl", "pebble"), ("*", "pebbel")])


def test_a_cells_interval_does_not_move_when_other_runs_or_comparisons_join(grid):
    """Each cell bootstraps with its own generator (stats.cell_rng): the final-score CIs of the other methods and
    the a-parl/pebble ratio CIs are the same with and without the oracle's runs and a second comparison."""
    import dataclasses

    root, _ = grid
    runs = [r for r in load_runs(root) if r.method != "oracle"]
    alone = analyse(runs, reps=300, threshold_ref="pebble", compare=("a-parl", "pebble"))
    extra = [dataclasses.replace(r, method="b", run_id=r.run_id + "-b") for r in runs if r.method == "pebble"]
    more = analyse(load_runs(root) + extra, reps=300, threshold_ref="pebble",
                   compare=[("b", "pebble"), ("a-parl", "pebble")])
    key = lambda rows: {(r["task"], r["method"]): (r["ci_low"], r["ci_high"]) for r in rows}  # noqa: E731
    assert key(alone["final_scores"]).items() <= key(more["final_scores"]).items()
    ratios = lambda an: {r["task"]: (r["ci_low"], r["ci_high"]) for r in an["sample_efficiency_ratio"]  # noqa: E731
                         if (r["a"], r["b"]) == ("a-parl", "pebble")}
    assert ratios(alone) == ratios(more) and len(ratios(alone)) == 3

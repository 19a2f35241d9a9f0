"""parl report: its statistics against direct numpy/scipy computations on synthetic run directories."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import trim_mean

from parl_cli.main import main
from parl_deep.report import analyse, load_runs, smooth_curve, steps_to_threshold, write_report

TASKS = ["dmc:walker-walk", "metaworld:door-open"]
METHODS = ["oracle", "pebble", "a-parl"]
SEEDS = [0, 1, 2, 3, 4]
STEPS = np.arange(1000, 10_001, 1000)
SCALE = {"dmc:walker-walk": 900.0, "metaworld:door-open": 4000.0}
SPEED = {"oracle": 2000.0, "pebble": 6000.0, "a-parl": 3000.0}


def write_run(root: Path, task: str, method: str, seed: int, returns, success=None, status="finished",
              steps=STEPS, planned=10_000):
    rid = f"{task.replace(':', '-')}__{method}__s{seed}"
    d = root / "runs" / rid
    d.mkdir(parents=True)
    cfg = {"env": task, "method": "oracle" if method == "oracle" else method, "seed": seed, "steps": planned}
    (d / "run.json").write_text(json.dumps({"run_id": rid, "task": task, "method_name": method,
                                            "method": cfg["method"], "seed": seed, "config": cfg}))
    if status is not None:
        summ = {"status": status, "steps": int(steps[-1]) if len(steps) else 0}
        if status == "failed":
            summ["error"] = "RuntimeError: boom"
        (d / "summary.json").write_text(json.dumps(summ))
    with open(d / "eval.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "return_mean", "return_std", "success_rate", "episodes", "wall_time_s"])
        for i, (s, r) in enumerate(zip(steps, returns)):
            w.writerow([s, repr(float(r)), 0, "" if success is None else success[i], 10, 1.0])
    return rid


@pytest.fixture
def grid(tmp_path):
    """3 methods x 2 tasks x 5 seeds of saturating curves with noise; a-parl seed 4 on walker never learns
    (a censored run), plus one failed and one unfinished run that must be left out of the tables."""
    rng = np.random.default_rng(123)
    data = {}
    for t in TASKS:
        for m in METHODS:
            for s in SEEDS:
                level = SCALE[t] * (1 - np.exp(-STEPS / SPEED[m])) * (1 + 0.05 * rng.standard_normal())
                ret = level + 10 * rng.standard_normal(STEPS.size)
                if (t, m, s) == ("dmc:walker-walk", "a-parl", 4):
                    ret = np.full(STEPS.size, 50.0)
                succ = None
                if t.startswith("metaworld"):
                    succ = np.clip(ret / SCALE[t] + 0.1 * rng.standard_normal(STEPS.size), 0, 1).round(2)
                write_run(tmp_path, t, m, s, ret, succ)
                data[(t, m, s)] = (ret, succ)
    write_run(tmp_path, TASKS[0], "pebble", 7, np.full(3, 1e6), status="failed", steps=STEPS[:3])
    write_run(tmp_path, TASKS[0], "oracle", 9, np.full(4, 1e6), status=None, steps=STEPS[:4])
    return tmp_path, data


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


def test_aparl_diagnostics_summarise_the_session_logs(grid):
    root, _ = grid
    rng = np.random.default_rng(5)
    logs = {}
    for t in TASKS:
        for s in SEEDS[:3]:
            d = root / "runs" / f"{t.replace(':', '-')}__a-parl__s{s}"
            t1, t2 = rng.uniform(1, 50, 4), rng.uniform(10, 1e4, 4)
            clipped, cos = (t2 > t1).astype(float), rng.uniform(-1, 1, 4)
            cos[0] = np.nan  # a session whose Term 2 vanished
            with open(d / "aparl.csv", "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["step", "term1_norm", "term2_norm", "clipped", "cosine", "seconds", "query_window"])
                for k in range(4):
                    w.writerow([1000 * (k + 1), t1[k], t2[k], clipped[k], cos[k], 0.5 + k, 5000])
            logs.setdefault(t, []).append((t1, t2, clipped, cos))
    an = analyse(load_runs(root), reps=200)
    rows = {r["task"]: r for r in an["aparl_diagnostics"]}
    assert set(rows) == set(TASKS) and {r["method"] for r in rows.values()} == {"a-parl"}
    for t in TASKS:
        t1, t2, clipped, cos = (np.concatenate(x) for x in zip(*logs[t]))
        r = rows[t]
        assert (r["n_runs"], r["sessions"]) == (3, 12)
        assert r["median_ratio"] == pytest.approx(np.median(t2 / t1))
        assert r["clipped_fraction"] == pytest.approx(clipped.mean())
        assert r["mean_cosine"] == pytest.approx(np.nanmean(cos))
        assert r["mean_seconds"] == pytest.approx(2.0) and r["query_window"] == 5000


def test_feedback_diagnostics_average_the_session_logs(grid):
    root, _ = grid
    rng = np.random.default_rng(9)
    acc = {}
    for s in SEEDS[:2]:
        d = root / "runs" / f"metaworld-door-open__pebble__s{s}"
        a, c = rng.uniform(0.5, 1, 3), rng.uniform(-1, 1, 3)
        a[1] = np.nan  # a session without enough data for the diagnostic
        with open(d / "feedback.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["step", "session", "labels", "eval_acc", "reward_corr"])
            for k in range(3):
                w.writerow([1000 * (k + 1), k + 1, 100 * (k + 1), a[k], c[k]])
        acc[s] = (a, c)
    (row,) = analyse(load_runs(root), reps=200)["feedback_diagnostics"]
    assert (row["task"], row["method"], row["n_runs"], row["sessions"], row["labels"]) == \
        ("metaworld:door-open", "pebble", 2, 3, 300)
    assert row["first_eval_acc"] == pytest.approx(np.mean([acc[s][0][0] for s in acc]))
    assert row["mean_eval_acc"] == pytest.approx(np.mean([np.nanmean(acc[s][0]) for s in acc]))
    assert row["last_eval_acc"] == pytest.approx(np.mean([acc[s][0][-1] for s in acc]))
    assert row["last_reward_corr"] == pytest.approx(np.mean([acc[s][1][-1] for s in acc]))


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


def test_report_cli_writes_figures_tables_and_summary(grid, capsys):
    root, _ = grid
    assert main(["report", str(root), "--reps", "200"]) == 0
    out = root / "report"
    for name in ("learning_curves.png", "learning_curves.pdf", "aggregate.png", "aggregate.pdf", "summary.md",
                 "final_scores.csv", "aggregate.csv", "probability_of_improvement.csv", "sample_efficiency.csv",
                 "sample_efficiency_runs.csv", "sample_efficiency_ratio.csv", "report.json"):
        assert (out / name).stat().st_size > 0, name
    md = (out / "summary.md").read_text()
    assert "### Ratio of steps a-parl / pebble" in md and "all tasks (geometric mean)" in md
    assert "> 10,000" in md  # the censored run
    assert "## Failed runs" in md and "RuntimeError: boom" in md and "## Unfinished runs" in md
    with open(out / "aggregate.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 3 * 3
    assert main(["report", str(root / "nothing-here")]) == 2
    assert main(["report", str(root), "--compare", "a-parl"]) == 2
    assert "no runs found" in capsys.readouterr().err
    # --methods: only those runs; an unknown label is an error that names the labels present
    sub = root / "sub"
    assert main(["report", str(root), "--reps", "200", "--methods", "oracle,pebble", "--out", str(sub),
                 "--formats", "png"]) == 0
    rep = json.loads((sub / "report.json").read_text())
    assert rep["methods"] == ["oracle", "pebble"] and rep["compare"] is None
    assert main(["report", str(root), "--methods", "oracle,pebbel", "--out", str(root / "x")]) == 2
    err = capsys.readouterr().err
    assert "'pebbel'" in err and "a-parl" in err and not (root / "x").exists()
    # --seeds: only those seeds' runs (the failed seed-7 and unfinished seed-9 runs drop out with the rest)
    s02 = root / "s02"
    assert main(["report", str(root), "--reps", "200", "--seeds", "0,1,2", "--out", str(s02), "--formats", "png"]) == 0
    with open(s02 / "final_scores.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(TASKS) * len(METHODS) and all(int(r["n_runs"]) == 3 for r in rows)
    md = (s02 / "summary.md").read_text()
    assert "## Failed runs" not in md and "## Unfinished runs" not in md
    assert main(["report", str(root), "--seeds", "0,11", "--out", str(root / "y")]) == 2
    assert main(["report", str(root), "--seeds", "a", "--out", str(root / "y")]) == 2
    err = capsys.readouterr().err
    assert "seed(s) 11" in err and "comma-separated integers" in err and not (root / "y").exists()


def test_write_report_returns_the_paths(grid):
    root, _ = grid
    an = write_report(root, root / "r2", formats=("png",), reps=200)
    assert all(Path(p).exists() for p in an["files"]) and not (root / "r2" / "learning_curves.pdf").exists()

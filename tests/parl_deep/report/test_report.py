"""What parl report writes (tables, figures, summary.md, report.json) and its command line."""
from __future__ import annotations

import csv
import dataclasses
import json
import sys
from pathlib import Path

from parl_cli.main import main
from parl_deep.report import write_report

from .conftest import METHODS, TASKS


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
    assert "> 10000" in md  # the censored run
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


def test_without_rliable_the_command_fails_in_one_line_naming_the_extra(grid, capsys, monkeypatch):
    root, _ = grid
    monkeypatch.setitem(sys.modules, "rliable", None)  # "import rliable" now raises ModuleNotFoundError
    assert main(["report", str(root), "--reps", "200", "--out", str(root / "r")]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("parl report: error: "), lines
    assert "'rliable'" in lines[0] and "extra 'bench'" in lines[0]
    assert not (root / "r").exists()


def test_report_cli_compares_several_pairs_and_draws_them(grid, capsys):
    root, _ = grid
    out = root / "multi"
    assert main(["report", str(root), "--reps", "200", "--compare", "*:pebble", "--out", str(out),
                 "--formats", "png"]) == 0
    md = (out / "summary.md").read_text()
    others = [m for m in json.loads((out / "report.json").read_text())["methods"] if m != "pebble"]
    assert all(f"### Ratio of steps {m} / pebble" in md for m in others)
    assert (out / "sample_efficiency_ratio.png").stat().st_size > 0 and "(sample_efficiency_ratio.png)" in md
    with open(out / "sample_efficiency_ratio.csv", newline="") as f:
        assert {r["a"] for r in csv.DictReader(f)} == set(others)
    for bad in ("a-parl:*", "a-parl:pebble,oracle", "a-parl:pebble,", "pebble:pebble"):
        assert main(["report", str(root), "--compare", bad, "--out", str(root / "z")]) == 2
    assert "--compare expects A:B pairs" in capsys.readouterr().err and not (root / "z").exists()
    assert main(["report", str(root), "--reps", "200", "--compare", "a-parl:pebble, oracle:pebble", "--out",
                 str(root / "spaced"), "--formats", "png"]) == 0
    assert json.loads((root / "spaced" / "report.json").read_text())["comparisons"] == [["a-parl", "pebble"],
                                                                                      ["oracle", "pebble"]]


def test_per_task_tables_give_each_seeds_final_and_the_ratio_against_the_base(grid):
    """summary.md's per-task tables against B: every seed's final is its eval.csv's last return, 'reached' and
    the ratio are the sample-efficiency rows', and a censored-only-in-A ratio is marked as a lower bound."""
    from parl_deep.report.tables import per_task_rows

    root, data = grid
    an = write_report(root, root / "pt", formats=(), reps=200, compare=[("*", "pebble")])
    tables = per_task_rows(an, "pebble")
    assert list(tables) == TASKS + ["all tasks (geometric mean)"]
    for t in TASKS:
        assert [r["method"] for r in tables[t]] == ["pebble"] + [m for m in an["methods"] if m != "pebble"]
        for r in tables[t]:
            assert r["by_seed"] == {s: float(data[(t, r["method"], s)][0][-1]) for s in range(5)}
            se = next(x for x in an["sample_efficiency"] if (x["task"], x["method"]) == (t, r["method"]))
            assert r["reached"] == f"{se['n_reached']}/{se['n_runs']}"
            assert (r["ratio"] is None) == (r["method"] == "pebble")
    walker_aparl = next(r for r in tables[TASKS[0]] if r["method"] == "a-parl")
    assert walker_aparl["reached"] == "4/5" and walker_aparl["ratio"]["censored_a"] == 1
    md = (root / "pt" / "summary.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| a-parl |") and "/5" in line)
    assert row.split(" | ")[-1].startswith(">= ")
    geo = {r["method"]: r for r in tables["all tasks (geometric mean)"]}
    assert set(geo) == {"oracle", "a-parl"} and all(r["n_tasks"] == 2 for r in geo.values())


def _final(task, method, scores):
    return {"task": task, "method": method, "mean": sum(scores) / len(scores), "ci_low": min(scores),
            "ci_high": max(scores), "seeds": " ".join(str(s) for s in range(len(scores))), "scores": scores}


def _ratio(task, a, ratio, censored_a, censored_b):
    return {"task": task, "a": a, "b": "pebble", "ratio": ratio, "ci_low": ratio / 2, "ci_high": ratio * 2,
            "censored_a": censored_a, "censored_b": censored_b}


def test_per_task_tables_mark_bounds_and_say_what_is_missing():
    """'<=' when only the base has censored runs, '(both censored)' when both do; a task without the base's runs
    says so and has no ratios; a method with fewer seeds shows '-' for the missing ones; no comparisons, no
    section."""
    from parl_deep.report.tables import _md_per_task

    an = {"comparisons": [["a", "pebble"], ["c", "pebble"]], "methods": ["pebble", "a", "c"], "tasks": ["t1", "t2"],
          "final_scores": [_final("t1", "pebble", [1.0, 2.0, 3.0]), _final("t1", "a", [4.0, 5.0]),
                           _final("t1", "c", [1500.0, 6.0, 7.0]), _final("t2", "a", [8.0])],
          "sample_efficiency": [{"task": "t1", "method": m, "n_reached": 1, "n_runs": n, "threshold": 2.5}
                                for m, n in (("pebble", 3), ("a", 2), ("c", 3))],
          "sample_efficiency_ratio": [_ratio("t1", "a", 0.5, 0, 2), _ratio("t1", "c", 1.5, 1, 2)]}
    md = "\n".join(_md_per_task(an))
    t1 = md[md.index("### t1"):md.index("### t2")]
    assert "### t1 (threshold 2.5)" in t1
    assert "| pebble | 2 [1, 3] | 1, 2, 3 | 1/3 | 1 |" in t1
    assert "| a | 4.5 [4, 5] | 4, 5, - | 1/2 | <= 0.5 [0.25, 1] |" in t1
    assert "| c | 504 [6, 1500] | 1500, 6, 7 | 1/3 | 1.5 [0.75, 3] (both censored) |" in t1
    t2 = md[md.index("### t2"):]
    assert "### t2 (no finished 'pebble' runs: no ratios; no threshold)" in t2 and "| a | 8 [8, 8] | 8 | - | - |" in t2
    assert _md_per_task({**an, "comparisons": []}) == []


def test_the_grid_readmes_tables_are_rows_of_its_summary():
    """docs/benchmarks/aparl-grid/README.md copies summary.md's per-task section, and that of the PEBBLE+SURF
    Meta-World report in metaworld-surf/ (where it exists): every table row between each pair of generated-markers
    must be in the summary.md it names (a README left behind by a regenerated report fails)."""
    d = Path(__file__).resolve().parents[3] / "docs" / "benchmarks" / "aparl-grid"
    readme = (d / "README.md").read_text()
    blocks = {"summary.md": d / "summary.md", "metaworld-surf/summary.md": d / "metaworld-surf" / "summary.md"}
    checked = 0
    for name, path in blocks.items():
        start, end = f"<!-- generated: {name}'s per-task section -->", "<!-- end generated -->"
        if start not in readme:
            assert name != "summary.md", "the README must copy the main report's per-task section"
            continue
        block = readme[readme.index(start):readme.index(end, readme.index(start))]
        rows = [line for line in block.splitlines() if line.startswith("| ")]
        summary = path.read_text().splitlines()
        assert len(rows) > 4 and all(line in summary for line in rows), name
        checked += len(rows)
    assert checked > 10


def test_the_curves_legend_sits_below_every_panels_axis_labels(grid, monkeypatch):
    """With more methods than one legend row holds (here 6), the legend still clears the panels' x labels and
    tick labels (it used to overlap them)."""
    import parl_deep.report.figures as figures
    from parl_deep.report import analyse, load_runs, plot_learning_curves

    root, _ = grid
    runs = load_runs(root)
    runs += [dataclasses.replace(r, method=extra, run_id=f"{r.run_id}-{extra}")  # 6 methods: two legend rows
             for extra in ("b", "c", "d") for r in runs if r.method == "pebble"]
    kept = {}
    monkeypatch.setattr(figures, "_save_figure", lambda fig, stem, formats: kept.setdefault("fig", fig) and [])
    plot_learning_curves(runs, analyse(runs, reps=200), root / "curves", ("png",))
    fig = kept["fig"]
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legend = fig.legends[0].get_window_extent(renderer)
    assert len(fig.legends[0].get_texts()) == 6
    for ax in fig.axes:
        if ax.get_visible():
            assert legend.y1 < ax.xaxis.get_tightbbox(renderer).y0

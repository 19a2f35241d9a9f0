"""Every python block of the README marked as executed runs, and its results hold.

A block is marked by the line ``<!-- executed by tests/test_readme.py -->`` right above its opening fence. Each
runs in a fresh namespace, in a temporary working directory (blocks may write files)."""
import pathlib
import re

import pytest

MARK = "<!-- executed by tests/test_readme.py -->"
README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def executed_blocks() -> list[str]:
    return re.findall(re.escape(MARK) + r"\n```python\n(.*?)```", README.read_text(), re.S)


def _run(index: int, tmp_path, monkeypatch) -> dict:
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "readme"}
    exec(compile(executed_blocks()[index], f"README.md[block {index}]", "exec"), namespace)
    return namespace


def test_every_python_block_is_marked_as_executed():
    text = README.read_text()
    assert len(executed_blocks()) == len(re.findall(r"```python\n", text)) >= 3


def test_engine_example(tmp_path, monkeypatch):
    ns = _run(0, tmp_path, monkeypatch)
    assert ns["tv"] > 0  # theta_K after 20 steps differs from theta*


def test_strategies_example_is_a_property_test_that_runs(tmp_path, monkeypatch):
    ns = _run(1, tmp_path, monkeypatch)
    assert callable(ns["test_soft_optimum_beats_any_policy"])


def test_convergence_example_measures_an_order_one_over_t_rate(tmp_path, monkeypatch):
    ns = _run(2, tmp_path, monkeypatch)
    rate = ns["rate"]
    assert rate.ci_method == "bootstrap" and len(rate.slopes) == 3
    assert rate.slope == pytest.approx(-1.0, abs=0.1) and rate.ci[0] <= rate.slope <= rate.ci[1]
    assert (tmp_path / "theorem1_rate.png").read_bytes()[:4] == b"\x89PNG"


def test_deep_api_example_trains_resumes_loads_and_evaluates(tmp_path, monkeypatch):
    ns = _run(3, tmp_path, monkeypatch)
    assert ns["summary"]["step"] == 300 and ns["summary"]["steps_this_session"] == 150
    assert ns["policy"].step == 300 and len(ns["result"]["returns"]) == 2

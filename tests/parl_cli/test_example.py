"""``parl example``: the Appendix C examples print agreeing hypergradients, write their figure, and reject bad
input in one line."""
import re

from .common import parl as _parl


def test_example_maze_prints_agreeing_hypergradients():
    out = _parl("example", "maze", "--n", "4")
    assert out.returncode == 0, out.stderr
    rows = {m: [float(x) for x in re.search(rf"^\s+{m}\s+(\S+)\s+(\S+)\s+(\S+)", out.stdout, re.M).groups()]
            for m in ("finite_difference", "soft_bellman", "ift", "unrolled")}
    for m, (g0, g1, rel) in rows.items():
        assert rel < 1e-6, m
    assert re.search(r"phi\* = \(", out.stdout) and "[goal row, goal col]" in out.stdout


def test_example_rejects_bad_input():
    out = _parl("example", "maze", "--n", "1")
    assert out.returncode == 2 and out.stderr == "parl example: error: --n must be at least 2\n"


def _route_rows(stdout, n_params):
    """route -> (gradient components, max rel. diff vs FD) from the table of `parl example`."""
    rows = {}
    for m in ("finite_difference", "soft_bellman", "ift", "ift-cg", "unrolled"):
        tokens = re.search(rf"^\s+{re.escape(m)}\s+(.*)$", stdout, re.M).group(1).split()
        rows[m] = ([float(x) for x in tokens[:n_params]], float(tokens[n_params]))
    return rows


def test_example_workbench_and_tax_write_the_figure_and_agree(tmp_path):
    for name, n_params, grid in (("workbench", 1, "8"), ("tax", 2, "7")):
        fig = tmp_path / f"{name}.png"
        out = _parl("example", name, "--grid", grid, "--no-progress", "--out", str(fig))
        assert out.returncode == 0, out.stderr
        for m, (g, rel) in _route_rows(out.stdout, n_params).items():
            assert rel < 1e-6, (name, m)
        assert "confirmed: at least as good as every grid point, within one grid step" in out.stdout, out.stdout
        assert fig.stat().st_size > 10_000


def test_example_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path):
    fig = tmp_path / "f.png"
    for args in (("maze", "--temperature", "0"), ("workbench", "--temperature", "0"), ("tax", "--temperature", "-1"),
                 ("tax", "--grid", "1"),
                 ("workbench", "--out", str(tmp_path / "missing" / "f.png"))):
        out = _parl("example", *args, "--out", str(fig)) if "--out" not in args else _parl("example", *args)
        assert out.returncode == 2, args
        assert out.stderr.startswith("parl example: error: ") and out.stderr.count("\n") == 1, out.stderr
        assert "Traceback" not in out.stderr and out.stdout == ""
    assert not any(tmp_path.iterdir())


def test_example_help_explains_the_options():
    out = _parl("example", "tax", "--help")
    assert out.returncode == 0
    for opt in ("--temperature", "--grid", "--iterations", "--step-size", "--out", "--psi"):
        assert opt in out.stdout

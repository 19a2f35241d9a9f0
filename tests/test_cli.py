import re
import subprocess
import sys



def _parl(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "parl_cli.main", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_help_lists_every_command():
    out = _parl("--help")
    assert out.returncode == 0
    for cmd in ("example", "verify", "train", "bench", "report"):
        assert cmd in out.stdout


def test_example_maze_prints_agreeing_hypergradients():
    out = _parl("example", "maze", "--n", "4")
    assert out.returncode == 0, out.stderr
    rows = {m: [float(x) for x in re.search(rf"^\s+{m}\s+(\S+)\s+(\S+)\s+(\S+)", out.stdout, re.M).groups()]
            for m in ("finite_difference", "soft_bellman", "ift", "unrolled")}
    for m, (g0, g1, rel) in rows.items():
        assert rel < 1e-6, m
    assert re.search(r"goal phi\* = \(", out.stdout)


def test_example_rejects_bad_input():
    out = _parl("example", "maze", "--n", "1")
    assert out.returncode != 0 and "--n must be at least 2" in out.stderr

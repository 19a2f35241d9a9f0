"""parl bench (parl_cli.bench): a bad spec or bad options are rejected before anything is created; --dry-run
lists the runs."""
from __future__ import annotations

from parl_cli.main import main


def test_cli_rejects_a_bad_spec_before_any_run_starts(tmp_path, capsys, tiny_text, specs):
    spec = tmp_path / "bad.toml"
    spec.write_text(tiny_text(**{"steps = 400": "steps = -5", '"metaworld:door-open"': '"metaworld:door-opne"'}))
    out = tmp_path / "out"
    assert main(["bench", str(spec), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "steps: must be a positive integer, got -5" in err and "tasks[1]:" in err and "2 problems" in err
    assert not out.exists()  # nothing was created, let alone run
    assert main(["bench", str(specs / "cpu.toml"), "--out", str(out), "--seeds", "0,x"]) == 2
    assert "parl bench: error: --seeds must be comma-separated integers, got '0,x'" in capsys.readouterr().err
    assert main(["bench", str(specs / "cpu.toml"), "--out", str(out), "--address", "HEAD:6379"]) == 2
    assert capsys.readouterr().err == "parl bench: error: --address only applies to --backend ray\n"
    assert not out.exists()


def test_dry_run_lists_the_runs_and_runs_nothing(tmp_path, capsys, tiny):
    out = tmp_path / "out"
    assert main(["bench", str(tiny), "--out", str(out), "--dry-run", "--seeds", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == "4 runs, 0 finished; spec is valid"
    assert [line.split()[:2] for line in lines[:-1]] == [
        ["dmc-walker-walk__oracle__s1", "400"], ["dmc-walker-walk__oracle-wide__s1", "400"],
        ["metaworld-door-open__oracle__s1", "400"], ["metaworld-door-open__oracle-wide__s1", "400"]]
    assert not out.exists()

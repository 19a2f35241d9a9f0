"""``parl verify``: one-line errors for bad input, the help text, and a quick run that exits 0."""
from parl_cli.main import main

import pytest


def test_only_rejects_unknown_check(capsys):
    assert main(["verify", "--only", "lemma1", "lemma9"]) == 2
    err = capsys.readouterr().err
    assert "unknown check(s): lemma9" in err and "formula_audit" in err


def test_help_says_failures_are_findings(capsys):
    with pytest.raises(SystemExit):
        main(["verify", "--help"])
    out = capsys.readouterr().out
    assert "finding" in out and "--quick" in out and "--only" in out


def test_cli_quick_single_check_exit_zero(tmp_path, capsys):
    assert main(["verify", "--quick", "--only", "lemma1", "--out", str(tmp_path), "--no-progress"]) == 0
    assert (tmp_path / "results.json").exists() and (tmp_path / "report.md").exists()
    assert "lemma1" in capsys.readouterr().out

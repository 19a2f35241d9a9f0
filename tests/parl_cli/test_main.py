"""The ``parl`` entry point: every command is listed, and only the chosen one is imported."""
import subprocess
import sys

from .common import parl as _parl


def test_help_lists_every_command():
    out = _parl("--help")
    assert out.returncode == 0
    for cmd in ("example", "verify", "train", "bench", "archive", "report"):
        assert cmd in out.stdout


def test_a_command_imports_only_its_own_backend():
    code = ("import sys; from parl_cli.main import build_parser; build_parser(['verify']); "
            "bad = [m for m in sys.modules if m.startswith(('parl_deep', 'torch', 'dm_control', 'metaworld'))]; "
            "assert not bad, bad")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr

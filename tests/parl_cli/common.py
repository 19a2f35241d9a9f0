"""Helpers shared by the CLI tests."""
from __future__ import annotations

import subprocess
import sys


def parl(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``parl ARGS`` in a fresh interpreter (captured text output)."""
    return subprocess.run([sys.executable, "-m", "parl_cli.main", *args], capture_output=True, text=True,
                          timeout=timeout)

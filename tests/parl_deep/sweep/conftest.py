"""Fixtures of the parl bench tests: the shipped specs, the tiny spec (benchmarks/specs/tiny.toml: 2 tasks x 2
methods x 2 seeds, 400 steps, real simulators with tiny networks) and views of a sweep directory."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable

import pytest

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def specs() -> Path:
    """benchmarks/specs/"""
    return REPO / "benchmarks" / "specs"


@pytest.fixture
def tiny(specs) -> Path:
    """The tiny spec's path."""
    return specs / "tiny.toml"


@pytest.fixture
def tiny_text(tiny) -> Callable[..., str]:
    """``tiny_text(**{old: new})``: the tiny spec's text with each ``old`` (which must occur) replaced once."""

    def make(**replace: str) -> str:
        text = tiny.read_text()
        for old, new in replace.items():
            assert old in text, old
            text = text.replace(old, new, 1)
        return text

    return make


@pytest.fixture
def run_ids() -> Callable[[Path], list[str]]:
    """``run_ids(out)``: the run directories of a sweep directory, sorted."""
    return lambda out: sorted(p.name for p in (out / "runs").iterdir()) if (out / "runs").exists() else []


@pytest.fixture
def snapshot() -> Callable[[Path], dict[str, tuple[int, str]]]:
    """``snapshot(d)``: every file below ``d`` -> (mtime in ns, sha256), to show that nothing was touched."""
    return lambda d: {str(p.relative_to(d)): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
                      for p in sorted(d.rglob("*")) if p.is_file()}

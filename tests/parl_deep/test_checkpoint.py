"""Checkpoint files are written atomically: a reader never sees a half-written file."""
from __future__ import annotations

import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from parl_deep import checkpoint as ck


def test_round_trip(tmp_path):
    state = {"w": torch.arange(5.0), "rng": np.random.default_rng(0).bit_generator.state, "step": 7}
    ck.save_checkpoint(tmp_path / "c.pt", state)
    back = ck.load_checkpoint(tmp_path / "c.pt")
    assert torch.equal(back["w"], state["w"]) and back["rng"] == state["rng"] and back["step"] == 7


def test_failed_write_keeps_previous_file_and_leaves_no_temp(tmp_path, monkeypatch):
    path = tmp_path / ck.CHECKPOINT_NAME
    ck.save_checkpoint(path, {"step": 1})

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(ck.os, "replace", boom)
    with pytest.raises(OSError):
        ck.save_checkpoint(path, {"step": 2})
    monkeypatch.undo()
    assert ck.load_checkpoint(path)["step"] == 1
    assert list(tmp_path.iterdir()) == [path]


WRITER = r"""
import sys, torch
from parl_deep.checkpoint import save_checkpoint
path = sys.argv[1]
i = 0
big = torch.randn(2_000_000)  # 8 MB: a write takes long enough to be interrupted
while True:
    i += 1
    big[0] = i
    save_checkpoint(path, {"i": i, "big": big, "check": float(big.sum())})
"""


@pytest.mark.slow
def test_sigkill_during_writes_never_leaves_a_partial_checkpoint(tmp_path):
    path = tmp_path / ck.CHECKPOINT_NAME
    rng = np.random.default_rng(0)
    seen = set()
    for trial in range(4):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)])
        deadline = time.time() + 60
        while not path.exists() and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(float(rng.uniform(0.1, 0.6)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        state = ck.load_checkpoint(path)  # must always load
        assert abs(float(state["big"].sum()) - state["check"]) < 1e-3 * max(1.0, abs(state["check"]))
        assert state["big"][0] == state["i"]
        seen.add(state["i"])
        ck.remove_stale_temp_files(tmp_path)
        names = sorted(p.name for p in tmp_path.iterdir())
        assert names in ([ck.CHECKPOINT_NAME], sorted([ck.CHECKPOINT_NAME, ck.PREVIOUS_CHECKPOINT_NAME]))
        if len(names) == 2:  # the previous checkpoint is complete too, and not newer (killed mid-rotation: the same)
            prev = ck.load_checkpoint(tmp_path / ck.PREVIOUS_CHECKPOINT_NAME)
            assert prev["big"][0] == prev["i"] and prev["i"] <= state["i"]


def test_the_last_two_checkpoints_are_kept_and_the_latest_readable_one_is_loaded(tmp_path, capsys):
    assert ck.load_latest(tmp_path) is None
    ck.save_checkpoint(tmp_path / ck.CHECKPOINT_NAME, {"step": 1, "config": {}})
    ck.save_checkpoint(tmp_path / ck.CHECKPOINT_NAME, {"step": 2, "config": {}})
    assert ck.load_checkpoint(tmp_path / ck.PREVIOUS_CHECKPOINT_NAME)["step"] == 1
    assert ck.load_latest(tmp_path)["step"] == 2 and capsys.readouterr().err == ""
    (tmp_path / ck.CHECKPOINT_NAME).write_bytes(b"\x00")
    assert ck.load_latest(tmp_path)["step"] == 1 and "resuming from checkpoint.prev.pt" in capsys.readouterr().err
    torch.save({"not": "a run"}, tmp_path / ck.PREVIOUS_CHECKPOINT_NAME)  # loads, but is no run's checkpoint
    with pytest.raises(ck.CheckpointError, match="no readable checkpoint"):
        ck.load_latest(tmp_path)

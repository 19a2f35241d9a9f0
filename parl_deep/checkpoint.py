"""Checkpoint files: ``torch.save`` of a state dict, written atomically (:func:`parl_deep.io.atomic_write`).

A reader therefore sees either the previous complete checkpoint or the new complete one, never a partial file,
even if the process is killed with SIGKILL or the machine loses power mid-write.
"""
from __future__ import annotations

import io as _bytes_io
import os
from pathlib import Path
from typing import Any

import torch

from parl_deep.io import CHECKPOINT_NAME, atomic_write

__all__ = ["CHECKPOINT_NAME", "save_checkpoint", "load_checkpoint", "remove_stale_temp_files"]


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Serialise ``state`` with ``torch.save`` and write it atomically to ``path``."""
    buf = _bytes_io.BytesIO()
    torch.save(state, buf)
    atomic_write(path, buf.getvalue())


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    # Checkpoints hold numpy RNG states and arrays, so the restricted ``weights_only`` loader is not enough.
    return torch.load(path, map_location="cpu", weights_only=False)


def remove_stale_temp_files(directory: str | os.PathLike) -> None:
    """Delete temp files left by a writer that was killed mid-write (they are never read)."""
    for p in Path(directory).glob(f".{CHECKPOINT_NAME}.*.tmp"):
        try:
            p.unlink()
        except FileNotFoundError:
            pass

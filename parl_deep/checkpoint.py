"""Atomic checkpoint files.

A checkpoint is written to a temporary file in the same directory, flushed and ``fsync``-ed, then moved over
the final name with ``os.replace`` (atomic on POSIX), and the directory is ``fsync``-ed. A reader therefore sees
either the previous complete checkpoint or the new complete one, never a partial file, even if the process is
killed with SIGKILL or the machine loses power mid-write.
"""
from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_NAME = "checkpoint.pt"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file + fsync + rename)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Serialise ``state`` with ``torch.save`` and write it atomically to ``path``."""
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


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

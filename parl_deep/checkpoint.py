"""Checkpoint files: ``torch.save`` of a state dict, written atomically (:func:`parl_deep.io.atomic_write`).

A reader therefore sees either the previous complete checkpoint or the new complete one, never a partial file,
even if the process is killed with SIGKILL or the machine loses power mid-write. The last two are kept
(``checkpoint.pt`` and ``checkpoint.prev.pt``): :func:`load_latest` falls back to the previous one when the latest
cannot be read (a disk error, a file truncated or overwritten by hand), and says so.
"""
from __future__ import annotations

import io as _bytes_io
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import torch

from parl_deep.fields import ConfigError
from parl_deep.io import CHECKPOINT_NAME, PREVIOUS_CHECKPOINT_NAME, atomic_write

__all__ = ["CHECKPOINT_NAME", "PREVIOUS_CHECKPOINT_NAME", "CheckpointError", "save_checkpoint", "load_checkpoint",
           "load_latest", "remove_stale_temp_files"]


class CheckpointError(ConfigError):
    """No checkpoint of a run directory can be read."""


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Serialise ``state`` with ``torch.save`` and write it atomically to ``path``; a checkpoint already there
    becomes ``checkpoint.prev.pt`` (in its directory) first."""
    path = Path(path)
    buf = _bytes_io.BytesIO()
    torch.save(state, buf)
    if path.exists():  # a second name for the current file first, so that ``path`` never goes missing
        tmp = path.with_name(f".{PREVIOUS_CHECKPOINT_NAME}.{os.getpid()}.tmp")
        try:
            try:
                os.link(path, tmp)
            except OSError:  # a filesystem without hard links
                shutil.copy2(path, tmp)
            os.replace(tmp, path.with_name(PREVIOUS_CHECKPOINT_NAME))
        finally:
            tmp.unlink(missing_ok=True)
    atomic_write(path, buf.getvalue())


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    # Checkpoints hold numpy RNG states and arrays, so the restricted ``weights_only`` loader is not enough.
    return torch.load(path, map_location="cpu", weights_only=False)


def load_latest(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The newest readable checkpoint of ``run_dir``: ``checkpoint.pt``, else ``checkpoint.prev.pt`` (with a
    warning on stderr); None when the run never wrote one; :class:`CheckpointError` when none can be read."""
    run_dir = Path(run_dir)
    errors = []
    for name in (CHECKPOINT_NAME, PREVIOUS_CHECKPOINT_NAME):
        path = run_dir / name
        if not path.exists():
            continue
        try:
            state = load_checkpoint(path)
            if not isinstance(state, dict) or not {"step", "config"} <= set(state):
                raise ValueError("not a checkpoint of a parl run")
        except Exception as exc:  # noqa: BLE001 - torch raises many kinds on a damaged file
            errors.append(f"{name}: {type(exc).__name__}: {' '.join(str(exc).split())[:120]}")
            continue
        if errors:
            print(f"warning: {errors[0]}; resuming from {name} (step {state['step']})", file=sys.stderr)
        return state
    if errors:
        raise CheckpointError(f"no readable checkpoint in {run_dir} ({'; '.join(errors)}); "
                              f"`parl train --resume {run_dir} --restart` starts the run again from step 0")
    return None


def remove_stale_temp_files(directory: str | os.PathLike) -> None:
    """Delete temp files left by a writer that was killed mid-write (they are never read)."""
    for name in (CHECKPOINT_NAME, PREVIOUS_CHECKPOINT_NAME):
        for p in Path(directory).glob(f".{name}.*.tmp"):
            try:
                p.unlink()
            except FileNotFoundError:
                pass

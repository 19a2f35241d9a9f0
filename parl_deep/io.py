"""Files of a run directory: their names, atomic writes, JSON, append-only CSV logs, and RNG snapshots.

Everything the project writes to disk goes through :func:`atomic_write` (temp file in the same directory,
``fsync``, ``os.replace``, ``fsync`` of the directory), so a reader sees the previous complete file or the new
complete one, never a partial file, even after SIGKILL or a power loss. The CSV logs are the exception by design:
they are append-only, flushed per row and fsynced at every checkpoint; ``CSVLog.truncate_after`` drops the rows a
killed run wrote after its last checkpoint.

A run directory (``parl train --out DIR``) holds::

    config.json     CONFIG_NAME     the TrainConfig, written once at the start
    eval.csv        EVAL_CSV        one row per evaluation
    episodes.csv    EPISODES_CSV    one row per training episode
    checkpoint.pt   CHECKPOINT_NAME the latest checkpoint (parl_deep.checkpoint)
    checkpoint.prev.pt  PREVIOUS_CHECKPOINT_NAME the one before it (a fallback if the latest is unreadable)
    tb/             TB_DIR          TensorBoard scalars
    feedback.csv    FEEDBACK_CSV    preference methods: one row per feedback session
    aparl.csv       APARL_CSV       a-parl: one row per A-PARL iteration
    run.json        RUN_NAME        parl bench: what the sweep asked for
    summary.json    SUMMARY_NAME    parl bench: written when the run ends
    worker.log      LOG_NAME        parl bench: the run's stdout and stderr

and a ``parl bench`` directory holds ``spec.toml`` (SPEC_NAME, the spec it ran) and ``runs/`` (RUNS_DIR).
"""
from __future__ import annotations

import csv
import json
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

CONFIG_NAME = "config.json"
EVAL_CSV = "eval.csv"
EPISODES_CSV = "episodes.csv"
CHECKPOINT_NAME = "checkpoint.pt"
PREVIOUS_CHECKPOINT_NAME = "checkpoint.prev.pt"
TB_DIR = "tb"
FEEDBACK_CSV = "feedback.csv"
APARL_CSV = "aparl.csv"
RUN_NAME = "run.json"
SUMMARY_NAME = "summary.json"
LOG_NAME = "worker.log"
# a parl bench directory: the spec it ran (copied) and one run directory per run under runs/
SPEC_NAME = "spec.toml"
RUNS_DIR = "runs"

__all__ = ["CONFIG_NAME", "EVAL_CSV", "EPISODES_CSV", "CHECKPOINT_NAME", "PREVIOUS_CHECKPOINT_NAME", "TB_DIR",
           "FEEDBACK_CSV", "APARL_CSV", "RUN_NAME", "SUMMARY_NAME", "LOG_NAME", "SPEC_NAME", "RUNS_DIR",
           "atomic_write", "write_json", "read_json", "run_status", "CSVLog", "append_row", "derived_seed",
           "get_rng_states", "set_rng_states", "generator_state", "generator_from_state"]


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


def atomic_write(path: str | os.PathLike, data: bytes | str) -> None:
    """Write ``data`` (bytes, or text as UTF-8) to ``path`` atomically (temp file + fsync + rename)."""
    path = Path(path)
    if isinstance(data, str):
        data = data.encode()
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


def write_json(path: str | os.PathLike, obj: Any, *, sort_keys: bool = False) -> None:
    """``obj`` as indented JSON (non-JSON values as ``str``), written atomically."""
    atomic_write(path, json.dumps(obj, indent=2, sort_keys=sort_keys, default=str) + "\n")


def read_json(path: str | os.PathLike) -> dict | None:
    """The JSON object in ``path``, or None when the file is missing, unreadable or not valid JSON."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None


def run_status(summary: dict | None, planned: int | None = None) -> str:
    """``finished``, ``failed`` or ``unfinished``: what a run's ``summary.json`` (None while it has none) says,
    for the ``planned`` steps. Finished means the summary says so for at least ``planned`` steps (any steps when
    ``planned`` is None); a summary without ``steps`` is not finished."""
    status = (summary or {}).get("status")
    if status == "failed":
        return "failed"
    if status == "finished" and (planned is None or int(summary.get("steps", -1)) >= int(planned)):
        return "finished"
    return "unfinished"


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.6g}"
    return v


class CSVLog:
    """Append-only CSV with a fixed header; rows are flushed at once, fsynced by :meth:`sync`."""

    def __init__(self, path: str | os.PathLike, fields: list[str]):
        self.path, self.fields = Path(path), list(fields)
        new = not self.path.exists() or self.path.stat().st_size == 0
        self._f = open(self.path, "a", newline="")
        self._w = csv.DictWriter(self._f, fieldnames=self.fields, extrasaction="ignore")
        if new:
            self._w.writeheader()
            self._f.flush()

    def write(self, row: dict) -> None:
        self._w.writerow({k: _fmt(row.get(k, "")) for k in self.fields})
        self._f.flush()

    def sync(self) -> None:
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()

    @staticmethod
    def truncate_after(path: str | os.PathLike, step: int) -> None:
        """Keep the header and rows with ``step <= step`` (drop rows written after the last checkpoint)."""
        path = Path(path)
        if not path.exists():
            return
        with open(path, newline="") as f:
            lines = f.read().splitlines(keepends=True)
        if not lines:
            return
        kept = [lines[0]]
        for line in lines[1:]:
            try:
                row_step = int(line.split(",", 1)[0])
            except ValueError:  # a half-written last line from a kill: drop it
                continue
            if row_step <= step and line.endswith("\n"):
                kept.append(line)
        atomic_write(path, "".join(kept))


def append_row(path: str | os.PathLike, row: dict, fields: list[str]) -> None:
    """Append one row to the CSV log ``path`` (header written if the file is new)."""
    log = CSVLog(path, fields)
    try:
        log.write(row)
    finally:
        log.close()


# ------------------------------------------------------------------------------------------ RNG snapshots
def generator_state(g: np.random.Generator) -> dict:
    """The state of a numpy ``Generator`` (what checkpoints store)."""
    return g.bit_generator.state


def generator_from_state(state: dict) -> np.random.Generator:
    """A numpy ``Generator`` continuing exactly from a :func:`generator_state` snapshot."""
    g = np.random.default_rng()
    g.bit_generator.state = state
    return g


# the derived_seed tags of a run's components, in one place so that no two share a stream (environment k >= 1 of
# a vectorised run: ENV_SEED_TAG + k)
SEED_TAGS = {"reward_model": 1, "teacher": 2, "method": 3, "term2_estimator": 4}
ENV_SEED_TAG = 1000


def derived_seed(base: int, tag: int) -> int:
    """An independent seed for component ``tag`` of a run seeded with ``base`` (numpy's SeedSequence)."""
    return int(np.random.SeedSequence([int(base) % 2**32, tag]).generate_state(1)[0])


def get_rng_states(loop_rng: np.random.Generator) -> dict:
    """Snapshot of the process-wide generators (python, numpy, torch) and the run loop's own."""
    import torch

    states = {"loop": generator_state(loop_rng), "python": random.getstate(), "numpy": np.random.get_state(),
              "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():  # a run on a GPU samples from CUDA's generators
        states["torch_cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict, loop_rng: np.random.Generator) -> None:
    """Restore a :func:`get_rng_states` snapshot (``loop_rng`` is restored in place)."""
    import torch

    loop_rng.bit_generator.state = states["loop"]
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "torch_cuda" in states and torch.cuda.is_available():  # a GPU run resumed on a GPU machine
        torch.cuda.set_rng_state_all(states["torch_cuda"][:torch.cuda.device_count()])

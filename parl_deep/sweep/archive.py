"""Archiving a sweep's results: the small text records of its ended runs, copied into a folder that can be
committed, so that ``parl report`` can be re-run from a fresh clone after the sweep directory is gone.

A run directory holds two kinds of files. The *records* (:data:`RECORD_FILES`: ``run.json``, ``summary.json``,
``config.json`` and the CSV logs) are everything :func:`parl_deep.report.load_runs` and the report's diagnostics
read, plus ``episodes.csv``; they take tens of kilobytes per run at 50k steps. The rest (the checkpoints, which
grow with the replay buffer to hundreds of megabytes, TensorBoard's event files, ``worker.log`` and the lock)
only matter while the run trains.

:func:`archive_sweep` copies the records of every run of a ``parl bench`` directory that has ended, finished or
failed, and the sweep's ``spec.toml``, into an archive with the same layout (``ARCHIVE/spec.toml``,
``ARCHIVE/runs/<run_id>/``). So an archive is itself a valid input to ``parl report``, which gives the sweep's
report less its unfinished runs. It never replaces a finished run's records silently: a finished run archived
already with other contents (a rerun that came out differently, or another grid in the same folder) is a
conflict, reported with the files that differ, and nothing is copied unless ``overwrite`` is set; so is an
archive whose ``spec.toml`` is another spec's. An archived failed run is replaced by its rerun.
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from parl_deep.io import (APARL_CSV, CONFIG_NAME, EPISODES_CSV, EVAL_CSV, FEEDBACK_CSV, RUN_NAME, RUNS_DIR,
                          SPEC_NAME, SUMMARY_NAME, atomic_write, read_json, run_status)

__all__ = ["RECORD_FILES", "ArchiveConflict", "ArchiveResult", "archive_sweep"]

# the records: what the report reads (and episodes.csv, the training episodes' returns), in the order they are
# copied (summary.json last: a half-copied run has none, so it reads as unfinished and is copied again next time)
RECORD_FILES = (RUN_NAME, CONFIG_NAME, EVAL_CSV, EPISODES_CSV, FEEDBACK_CSV, APARL_CSV, SUMMARY_NAME)


class ArchiveConflict(ValueError):
    """Runs that are archived already with other contents; ``conflicts`` maps run id -> the files that differ."""

    def __init__(self, conflicts: dict[str, list[str]]) -> None:
        self.conflicts = conflicts
        runs = {k: v for k, v in conflicts.items() if k != SPEC_NAME}
        parts = []
        if runs:
            parts.append(f"{len(runs)} run(s) are archived already with different records: "
                         + "; ".join(f"{rid}: {', '.join(files)}" for rid, files in sorted(runs.items())))
        if SPEC_NAME in conflicts:
            parts.append(f"the archive's {SPEC_NAME} is another spec's")
        super().__init__("; ".join(parts) + " (nothing was copied; overwrite replaces them)")


@dataclass
class ArchiveResult:
    """What :func:`archive_sweep` did: run ids copied, already archived unchanged, and left out (with why)."""

    copied: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    left_out: dict[str, str] = field(default_factory=dict)
    bytes_copied: int = 0

    def describe(self, dest: str | os.PathLike) -> str:
        kib = self.bytes_copied / 1024
        text = (f"archived {len(self.copied)} run(s) ({kib:.0f} KiB) into {dest}; {len(self.unchanged)} already "
                f"there unchanged")
        if self.left_out:
            reasons = Counter(self.left_out.values())
            text += "; left out: " + ", ".join(f"{n} {why}" for why, n in sorted(reasons.items()))
        return text


def _records(run_dir: Path) -> dict[str, bytes]:
    return {name: (run_dir / name).read_bytes() for name in RECORD_FILES if (run_dir / name).is_file()}


def _status(run_dir: Path) -> str:
    """The run's status as the report reads it (finished, failed, unfinished), or why it is no run."""
    meta = read_json(run_dir / RUN_NAME) or read_json(run_dir / CONFIG_NAME)
    if not meta:
        return "without run.json or config.json"
    planned = (meta.get("config") or meta).get("steps")
    return run_status(read_json(run_dir / SUMMARY_NAME), None if planned is None else int(planned))


def _differing(new: dict[str, bytes], old_dir: Path) -> list[str]:
    old = _records(old_dir)
    return sorted(name for name in set(new) | set(old) if new.get(name) != old.get(name))


def archive_sweep(src: str | os.PathLike, dest: str | os.PathLike, *, overwrite: bool = False,
                  dry_run: bool = False) -> ArchiveResult:
    """Copy the records of every ended run (finished or failed) of the ``parl bench`` directory ``src`` into
    ``dest``; unfinished runs are left out.

    Runs already in ``dest`` with the same records are left as they are, and an archived failed run is replaced
    by its rerun. Raises :class:`ArchiveConflict` (and copies nothing) when finished runs are there with
    different records, unless ``overwrite``; ``ValueError`` when ``src`` is not a sweep directory or ``dest`` lies
    in its ``runs/``. With ``dry_run`` nothing is written.
    """
    src, dest = Path(src), Path(dest)
    runs = src / RUNS_DIR
    if not runs.is_dir():
        raise ValueError(f"{src} is not a parl bench directory (it has no {RUNS_DIR}/ folder)")
    if dest.resolve() == src.resolve() or dest.resolve().is_relative_to(runs.resolve()):
        raise ValueError(f"the archive must be another folder than the sweep directory and lie outside its "
                         f"{RUNS_DIR}/, got {dest}")
    result, todo, conflicts = ArchiveResult(), {}, {}
    for run_dir in sorted(p for p in runs.iterdir() if p.is_dir()):
        status = _status(run_dir)
        if status not in ("finished", "failed"):
            result.left_out[run_dir.name] = status
            continue
        records, target = _records(run_dir), dest / RUNS_DIR / run_dir.name
        differ = _differing(records, target) if target.is_dir() else list(records)
        if not differ:
            result.unchanged.append(run_dir.name)
        elif _status(target) == "finished" and not overwrite:
            conflicts[run_dir.name] = differ
        else:
            todo[run_dir.name] = records
    spec = (src / SPEC_NAME).read_bytes() if (src / SPEC_NAME).is_file() else None
    old_spec = (dest / SPEC_NAME).read_bytes() if (dest / SPEC_NAME).is_file() else None
    if spec is not None and old_spec is not None and spec != old_spec and not overwrite:
        conflicts[SPEC_NAME] = [SPEC_NAME]
    if conflicts:
        raise ArchiveConflict(conflicts)
    for rid, records in todo.items():
        result.copied.append(rid)
        result.bytes_copied += sum(len(b) for b in records.values())
        if not dry_run:
            _write_run(dest / RUNS_DIR / rid, records)
    if not dry_run and spec is not None and spec != old_spec and (todo or result.unchanged):
        atomic_write(dest / SPEC_NAME, spec)
    return result


def _write_run(target: Path, records: dict[str, bytes]) -> None:
    target.mkdir(parents=True, exist_ok=True)
    (target / SUMMARY_NAME).unlink(missing_ok=True)  # first: an interrupted copy reads as unfinished
    for name in RECORD_FILES:  # summary.json last
        if name in records:
            atomic_write(target / name, records[name])
        elif (target / name).exists():
            (target / name).unlink()

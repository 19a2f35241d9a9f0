"""The run directories of a sweep, ``DIR/runs/<run_id>/``: where a run lives, whether it is finished, how far
it got, and :func:`run_one`, which trains one run there (the function both backends run).

A run directory is a ``parl train`` run directory plus three files of the sweep: ``run.json`` (what the sweep
asked for), ``summary.json`` (written when the run ends) and ``worker.log`` (its stdout and stderr); and
``.lock``, held while a process trains the run.
"""
from __future__ import annotations

import contextlib
import os
import sys
import time
import traceback
from pathlib import Path

from parl_deep.fields import config_diff
from parl_deep.io import (CONFIG_NAME, EPISODES_CSV, EVAL_CSV, LOG_NAME, RUN_NAME, RUNS_DIR, SUMMARY_NAME,
                          read_json, run_status, write_json)
from parl_deep.sweep.spec import RunJob, SpecIssue

__all__ = ["LOCK_NAME", "run_dir_for", "read_summary", "is_finished", "check_existing_runs",
           "progress_steps", "run_one"]

LOCK_NAME = ".lock"


def run_dir_for(out: str | os.PathLike, run_id: str) -> Path:
    return Path(out) / RUNS_DIR / run_id


def read_summary(run_dir: str | os.PathLike) -> dict | None:
    """The run's ``summary.json``, or None while it has none (or it cannot be read)."""
    return read_json(Path(run_dir) / SUMMARY_NAME)


def is_finished(summary: dict | None, steps: int | None = None) -> bool:
    return run_status(summary, steps) == "finished"


def check_existing_runs(out: str | os.PathLike, jobs: list[RunJob]) -> list[SpecIssue]:
    """Existing run directories in ``out`` must hold the same config (only a larger ``steps`` is allowed)."""
    issues = []
    for job in jobs:
        old = read_json(run_dir_for(out, job.run_id) / CONFIG_NAME)
        if old is None:
            continue
        from parl_deep.training import canonical_config  # imports torch: only when a spec is validated

        diff = config_diff(canonical_config(old), canonical_config(job.config))
        if diff == ["steps"] and int(old["steps"]) <= job.steps:
            continue
        if diff:
            issues.append(SpecIssue(
                f"runs/{job.run_id}",
                f"{run_dir_for(out, job.run_id)} already holds a run with a different configuration (differs in: "
                f"{', '.join(diff)}); use another --out, or move that run away", kind="conflict"))
    return issues


def progress_steps(run_dir: Path) -> int:
    """Steps a run has logged so far (last row of episodes.csv / eval.csv; cheap: reads the files' tails)."""
    best = 0
    for name in (EPISODES_CSV, EVAL_CSV):
        p = run_dir / name
        try:
            with open(p, "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - 4096))
                lines = f.read().decode(errors="replace").splitlines()
        except OSError:
            continue
        for line in reversed(lines):
            try:
                best = max(best, int(line.split(",", 1)[0]))
                break
            except ValueError:
                continue
    return best


@contextlib.contextmanager
def _run_lock(run_dir: Path):
    """Exclusive, non-blocking lock on the run directory (released when the process dies). Yields False if held."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover (not POSIX)
        yield True
        return
    f = open(run_dir / LOCK_NAME, "a")
    try:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False
            return
        yield True
    finally:
        f.close()


@contextlib.contextmanager
def _redirect_output(path: Path):
    """Send this process's stdout/stderr (file descriptors 1 and 2) to ``path`` for the duration."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for x in saved + [fd]:
            os.close(x)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")


def _train_job(j: RunJob, run_dir: Path, t0: float) -> dict:
    """Train (or continue) one run; its outcome as summary fields. Errors of the run are returned, not raised."""
    try:
        from parl_deep.config import TrainConfig
        from parl_deep.training import resume, train

        old = read_json(run_dir / CONFIG_NAME)
        if old is not None and config_diff(old, j.config) == ["steps"]:
            res = resume(run_dir, steps=j.steps, progress=False)  # the spec asks for a longer run
        else:
            res = train(TrainConfig.from_dict(j.config), run_dir, progress=False)
        return {"status": "finished", "steps": int(res["step"]),
                "resumed_from_step": int(res["step"] - res["steps_this_session"]),
                "wall_time_s": float(res["wall_time_s"]), "session_wall_time_s": time.time() - t0,
                "final_eval": res.get("last_eval") or {}, "finished_at": _now(), "host": os.uname().nodename}
    except Exception as exc:  # noqa: BLE001 - any error of the run is reported, never propagated
        tb = traceback.format_exc()
        print(tb, flush=True)
        return {"status": "failed", "steps": progress_steps(run_dir), "error": f"{type(exc).__name__}: {exc}",
                "traceback": tb, "session_wall_time_s": time.time() - t0, "failed_at": _now(),
                "host": os.uname().nodename}


def run_one(job: dict, out: str, *, redirect: bool = True) -> dict:
    """Train one run of a sweep to completion, resuming it if it was interrupted. The function both backends run.

    Returns the run's summary (also written to ``runs/<run_id>/summary.json``). Errors of the run itself are
    caught and returned as ``{"status": "failed", "error": ..., "traceback": ...}``; they never propagate."""
    j = RunJob.from_dict(job)
    run_dir = run_dir_for(out, j.run_id)
    run_dir.mkdir(parents=True, exist_ok=True)
    base = {"run_id": j.run_id, "task": j.task, "method": j.method_name, "method_registry": j.method,
            "seed": j.seed, "planned_steps": j.steps}
    with _run_lock(run_dir) as locked:
        if not locked:
            return {**base, "status": "failed", "steps": progress_steps(run_dir),
                    "error": f"{run_dir} is locked by another process (is another sweep running on this directory?)"}
        existing = read_summary(run_dir)
        if is_finished(existing, j.steps):
            return existing
        with contextlib.suppress(FileNotFoundError):
            (run_dir / SUMMARY_NAME).unlink()  # a stale "failed" summary must not outlive a new attempt
        write_json(run_dir / RUN_NAME, j.to_dict())
        cm = _redirect_output(run_dir / LOG_NAME) if redirect else contextlib.nullcontext()
        t0 = time.time()
        with cm:
            print(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} {j.run_id} on {os.uname().nodename} pid {os.getpid()}",
                  flush=True)
            summary = {**base, **_train_job(j, run_dir, t0)}
            print(f"=== {summary['status']} after {time.time() - t0:.1f}s", flush=True)
        write_json(run_dir / SUMMARY_NAME, summary)
        return summary

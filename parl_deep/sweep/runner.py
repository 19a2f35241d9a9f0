"""The sweep itself: :func:`run_sweep` queues every unfinished run of a validated spec on a backend, retries the
failures, prints the progress view, and keeps ``DIR/sweep.json`` (:class:`SweepState`) up to date."""
from __future__ import annotations

import os
import sys
import time
from collections import deque
from pathlib import Path
from typing import Callable

from parl_deep.io import CHECKPOINT_NAME, LOG_NAME, RUNS_DIR, SPEC_NAME, atomic_write, read_json, write_json
from parl_deep.sweep.backends import make_backend
from parl_deep.sweep.grid import validate_spec
from parl_deep.sweep.rundirs import (check_existing_runs, is_finished, progress_steps, read_summary,
                                     run_dir_for)
from parl_deep.sweep.spec import RunJob, Spec, SpecError

__all__ = ["STATE_NAME", "SweepState", "run_sweep"]

STATE_NAME = "sweep.json"
ORIGINS = ("finished earlier", "resume", "retry", "new")


def _fmt_duration(s: float | None) -> str:
    if s is None or s != s or s == float("inf"):
        return "?"
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")


def _initial_record(j: RunJob, out: Path) -> dict:
    """A run's entry in sweep.json at the start of an invocation, from its run directory."""
    rd = run_dir_for(out, j.run_id)
    s = read_summary(rd)
    rec = {"task": j.task, "method": j.method_name, "method_registry": j.method, "seed": j.seed,
           "steps": j.steps, "dir": str(rd.relative_to(out)), "attempts": 0, "error": None}
    if is_finished(s, j.steps):
        rec.update(status="finished", origin="finished earlier", wall_time_s=s.get("wall_time_s"),
                   final_eval=s.get("final_eval"))
        return rec
    if (rd / CHECKPOINT_NAME).exists():
        origin = "resume"
    elif s and s.get("status") == "failed":
        origin = "retry"
    else:
        origin = "new"
    rec.update(status="pending", origin=origin, error=(s or {}).get("error") if origin == "retry" else None)
    return rec


class SweepState:
    """The sweep's bookkeeping; persisted to DIR/sweep.json after every change (a record, not the truth:
    the run directories are, and the state is rebuilt from them on every start)."""

    def __init__(self, out: Path, spec: Spec, backend: str):
        self.out, self.spec, self.jobs = out, spec, {j.run_id: j for j in spec.jobs}
        self.t0 = time.time()
        prev = read_json(out / STATE_NAME) or {}
        self.history = list(prev.get("invocations", []))[-20:]
        self.history.append({"started_at": _now(), "backend": backend, "spec_sha256": spec.sha256()})
        self.runs: dict[str, dict] = {rid: _initial_record(j, out) for rid, j in self.jobs.items()}
        self.base_steps = self.steps_done()

    def count(self, status: str) -> int:
        return sum(1 for r in self.runs.values() if r["status"] == status)

    def steps_done(self) -> int:
        total = 0
        for r in self.runs.values():
            if r["status"] == "finished":
                total += r["steps"]
            elif r["status"] != "failed":
                total += min(r["steps"], progress_steps(self.out / r["dir"]))
        return total

    def eta(self) -> tuple[float | None, float]:
        """(seconds left or None, fraction of the steps done) from this invocation's aggregate step rate."""
        todo = sum(r["steps"] for r in self.runs.values() if r["status"] != "failed")
        done = self.steps_done()
        frac = done / todo if todo else 1.0
        elapsed = time.time() - self.t0
        rate = (done - self.base_steps) / elapsed if elapsed > 0 else 0.0
        if done >= todo:
            return 0.0, frac
        return ((todo - done) / rate if rate > 0 else None), frac

    def start_line(self) -> str:
        """What this invocation is about to do (the first line of the sweep's log)."""
        spec = self.spec
        origins = {k: sum(1 for r in self.runs.values() if r.get("origin") == k) for k in ORIGINS}
        return (f"[bench] {spec.name}: {len(self.runs)} runs ({len(spec.tasks)} tasks x {len(spec.methods)} methods x "
                f"{len(spec.seeds)} seeds) into {self.out}: {origins['finished earlier']} already finished (skipped), "
                f"{origins['resume']} to resume from checkpoints, {origins['retry']} failed before (retrying), "
                f"{origins['new']} new")

    def line(self) -> str:
        eta, frac = self.eta()
        n = len(self.runs)
        return (f"[bench {_fmt_duration(time.time() - self.t0)}] {self.count('finished')}/{n} done | "
                f"{self.count('running')} running | {self.count('failed')} failed | {self.count('pending')} queued | "
                f"{100 * frac:.0f}% of steps | ETA {_fmt_duration(eta) if eta is not None else 'estimating'}")

    def save(self) -> None:
        eta, frac = self.eta()
        write_json(self.out / STATE_NAME, {
            "spec": self.spec.name, "spec_path": self.spec.path, "spec_sha256": self.spec.sha256(),
            "updated_at": _now(),
            "counts": {k: self.count(k) for k in ("finished", "running", "failed", "pending")},
            "fraction_of_steps_done": frac, "eta_s": eta, "invocations": self.history, "runs": self.runs})


def _record(state: SweepState, rid: str, summary: dict, attempt: int, retries: int, queue: deque,
            log: Callable[[str], None]) -> None:
    """Book the end of one attempt of a run: finished, queued again (``attempt <= retries``) or given up."""
    rec = state.runs[rid]
    if summary.get("status") == "finished":
        rec.update(status="finished", error=None, wall_time_s=summary.get("wall_time_s"),
                   final_eval=summary.get("final_eval"))
        fe = summary.get("final_eval") or {}
        extra = f", final return {fe['return_mean']:.1f}" if "return_mean" in fe else ""
        resumed = summary.get("resumed_from_step")
        log(f"[bench] finished {rid} ({summary.get('steps')} steps"
            f"{', resumed from step %d' % resumed if resumed else ''}{extra})")
        return
    rec["error"] = summary.get("error", "unknown error")
    if attempt <= retries:
        rec["status"] = "pending"
        queue.append(rid)
        log(f"[bench] FAILED {rid} (attempt {attempt}): {rec['error']} -- will retry")
    else:
        rec["status"] = "failed"
        log(f"[bench] FAILED {rid} (attempt {attempt}, giving up): {rec['error']}")


def _drive(state: SweepState, be, queue: deque, retries: int, progress_every: float,
           log: Callable[[str], None]) -> None:
    """Keep the backend full until the queue is empty and every run has ended."""
    attempts: dict[str, int] = {}
    last_line = 0.0
    try:
        while queue or be.running():
            while queue and be.capacity() > 0:
                rid = queue.popleft()
                attempts[rid] = attempts.get(rid, 0) + 1
                state.runs[rid].update(status="running", attempts=attempts[rid], started_at=time.time())
                be.submit(state.jobs[rid])
            state.save()
            for rid, summary in be.poll(timeout=min(1.0, progress_every)):
                _record(state, rid, summary, attempts[rid], retries, queue, log)
                state.save()
            if time.time() - last_line >= progress_every:
                last_line = time.time()
                log(state.line())
    except KeyboardInterrupt:
        be.shutdown()
        for r in state.runs.values():
            if r["status"] == "running":
                r["status"] = "pending"
        state.save()
        log("[bench] interrupted; re-run the same command to resume (finished runs are kept)")
        raise
    finally:
        be.shutdown()
    state.save()


def _log_to_stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_sweep(spec: Spec, out: str | os.PathLike, *, backend: str = "local", workers: int | None = None,
              address: str | None = None, retries: int = 1, progress_every: float = 30.0,
              log: Callable[[str], None] | None = None) -> dict:
    """Run every unfinished run of a validated ``spec`` into ``out``; returns the final sweep state dict.

    Raises :class:`SpecError` (before anything runs) if existing run directories conflict with the spec."""
    log = log or _log_to_stderr
    out = Path(out)
    issues = [] if spec.jobs else validate_spec(spec)
    issues = issues or check_existing_runs(out, spec.jobs)
    if issues:
        raise SpecError(issues, spec.path)
    (out / RUNS_DIR).mkdir(parents=True, exist_ok=True)
    if spec.text is not None:
        atomic_write(out / SPEC_NAME, spec.text)
    state = SweepState(out, spec, backend)
    log(state.start_line())
    queue = deque(rid for rid, r in state.runs.items() if r["status"] == "pending")
    state.save()
    if queue:
        _drive(state, make_backend(backend, out, spec, workers, address), queue, retries, progress_every, log)
    log(state.line())
    for rid, r in state.runs.items():
        if r["status"] == "failed":
            log(f"[bench] failed: {rid}: {r['error']} (see {out / r['dir'] / LOG_NAME})")
    return read_json(out / STATE_NAME)

"""Where the runs of a sweep execute: :class:`LocalBackend` (child processes on this machine) or
:class:`RayBackend` (Ray tasks); both run :func:`parl_deep.sweep.rundirs.run_one`.

A backend has ``capacity()`` (how many more runs it takes now), ``running()`` (run ids in flight),
``submit(job)``, ``poll(timeout) -> [(run_id, summary)]`` for the runs that ended, and ``shutdown()``.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from parl_deep.io import CONFIG_NAME, EVAL_CSV, RUN_NAME, SUMMARY_NAME, atomic_write, write_json
from parl_deep.sweep.rundirs import progress_steps, read_summary, run_dir_for, run_one
from parl_deep.sweep.spec import RunJob, Spec

__all__ = ["LocalBackend", "RayBackend", "make_backend"]


def _preload() -> None:
    """Import the heavy modules once in the parent so that forked workers start quickly."""
    import parl_deep.envs
    import parl_deep.methods  # noqa: F401
    import parl_deep.training  # noqa: F401

    with contextlib.suppress(Exception):  # the simulators' task lists
        parl_deep.envs.valid_env_names()
    with contextlib.suppress(Exception):  # torch.optim imports torch._dynamo lazily on first use (seconds)
        import torch

        torch.optim.Adam([torch.zeros(1, requires_grad=True)])


def _die_with_parent(parent_pid: int) -> None:
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def _local_child(job: dict, out: str, parent_pid: int, result: Any) -> None:
    _die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # not the sweep's handlers: a signal simply ends the run
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.environ["OMP_NUM_THREADS"] = "1"
    result.send(run_one(job, out))  # the parent's word on the run, also for one that wrote no summary (locked)
    result.close()


def _received(receive: Any) -> dict | None:
    """The summary a local child sent through its pipe, or None when it died first (the pipe is then at EOF)."""
    with receive:
        try:
            return receive.recv() if receive.poll() else None
        except EOFError:
            return None


def _failed(run_id: str, run_dir: Path, error: str) -> dict:
    """The summary of a run whose worker ended without writing one."""
    return {"run_id": run_id, "status": "failed", "error": error, "steps": progress_steps(run_dir)}


class LocalBackend:
    """At most ``workers`` runs at a time, each in a fresh child process."""

    name = "local"

    def __init__(self, out: str, workers: int):
        import multiprocessing as mp

        self.out, self.workers = str(out), max(1, int(workers))
        self.ctx = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
        if self.ctx.get_start_method() == "fork":
            _preload()
        self.procs: dict[str, Any] = {}
        self.results: dict[str, Any] = {}  # run id -> the receiving end of its child's pipe

    def capacity(self) -> int:
        return self.workers - len(self.procs)

    def running(self) -> list[str]:
        return list(self.procs)

    def submit(self, job: RunJob) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        receive, send = self.ctx.Pipe(duplex=False)
        p = self.ctx.Process(target=_local_child, args=(job.to_dict(), self.out, os.getpid(), send),
                             name=f"parl-bench:{job.run_id}", daemon=True)
        p.start()
        send.close()
        self.procs[job.run_id] = p
        self.results[job.run_id] = receive

    def poll(self, timeout: float) -> list[tuple[str, dict]]:
        from multiprocessing.connection import wait

        if not self.procs:
            time.sleep(min(timeout, 0.1))
            return []
        ready = wait([p.sentinel for p in self.procs.values()], timeout)
        done = []
        for run_id, p in list(self.procs.items()):
            if p.sentinel in ready:
                # the child's end of the sentinel closes while it exits, a moment before it can be reaped: wait
                # for that moment, or is_alive() says True and the run is reported one poll (or many) later
                p.join(5)
            if p.is_alive():
                continue
            p.join()
            del self.procs[run_id]
            rd = run_dir_for(self.out, run_id)
            # what run_one returned; a child that died before sending it leaves only what it wrote, if anything
            summary = _received(self.results.pop(run_id)) or read_summary(rd)
            if not summary or summary.get("status") not in ("finished", "failed"):
                code = p.exitcode
                why = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
                summary = _failed(run_id, rd, f"worker process died without a summary ({why}; out of memory?)")
            done.append((run_id, summary))
        return done

    def shutdown(self) -> None:
        for p in self.procs.values():
            if p.is_alive():
                p.terminate()
        for p in self.procs.values():
            p.join(5)
            if p.is_alive():
                p.kill()
        self.procs.clear()


def _ray_task(job: dict, out: str) -> dict:
    """Ray task body: :func:`run_one`, plus the small result files for drivers that do not share DIR."""
    summary = run_one(job, out)
    rd = run_dir_for(out, job["run_id"])
    files = {}
    for name in (EVAL_CSV, CONFIG_NAME, RUN_NAME):
        with contextlib.suppress(OSError):
            files[name] = (rd / name).read_text()
    return {"summary": summary, "files": files}


class RayBackend:
    """The same run function as Ray tasks. ``address=None`` starts a local Ray instance with ``workers`` CPUs."""

    name = "ray"

    def __init__(self, out: str, workers: int | None, address: str | None, cpus: float, gpus: float):
        import ray

        self.ray, self.out = ray, str(out)
        env_vars = {"OMP_NUM_THREADS": "1", "MUJOCO_GL": "disabled"}
        if address:
            ray.init(address=address, runtime_env={"env_vars": env_vars}, log_to_driver=False)
        else:
            ray.init(num_cpus=int(workers or os.cpu_count() or 1), include_dashboard=False,
                     runtime_env={"env_vars": env_vars}, log_to_driver=False)
        total = ray.cluster_resources().get("CPU", 1)
        slots = max(1, int(total // cpus))
        if gpus:
            slots = min(slots, max(1, int(ray.cluster_resources().get("GPU", 0) // gpus)))
        # In-flight runs are capped at what the cluster can run at once, so "running" means running.
        self.workers = min(slots, workers) if (workers and address) else slots
        self.remote = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=0)(_ray_task)
        self.refs: dict[Any, str] = {}

    def capacity(self) -> int:
        return self.workers - len(self.refs)

    def running(self) -> list[str]:
        return list(self.refs.values())

    def submit(self, job: RunJob) -> None:
        self.refs[self.remote.remote(job.to_dict(), self.out)] = job.run_id

    def _collect(self, ref, run_id: str) -> dict:
        rd = run_dir_for(self.out, run_id)
        try:
            payload = self.ray.get(ref)
            summary = payload["summary"]
            if not (rd / SUMMARY_NAME).exists():  # DIR is not shared with the worker's node
                rd.mkdir(parents=True, exist_ok=True)
                for name, text in payload["files"].items():
                    if not (rd / name).exists():
                        atomic_write(rd / name, text)
                write_json(rd / SUMMARY_NAME, summary)
            return summary
        except Exception as exc:  # noqa: BLE001 - worker crash, node loss, ...
            return _failed(run_id, rd, f"Ray task failed: {type(exc).__name__}: {str(exc).strip().splitlines()[0]}")

    def poll(self, timeout: float) -> list[tuple[str, dict]]:
        if not self.refs:
            time.sleep(min(timeout, 0.1))
            return []
        refs = list(self.refs)
        ready, _ = self.ray.wait(refs, num_returns=1, timeout=timeout)
        if ready:
            ready, _ = self.ray.wait(refs, num_returns=len(refs), timeout=0)
        done = []
        for ref in ready:
            run_id = self.refs.pop(ref)
            done.append((run_id, self._collect(ref, run_id)))
        return done

    def shutdown(self) -> None:
        for ref in self.refs:
            with contextlib.suppress(Exception):
                self.ray.cancel(ref, force=True)
        self.refs.clear()
        with contextlib.suppress(Exception):
            self.ray.shutdown()


def make_backend(name: str, out: Path, spec: Spec, workers: int | None, address: str | None):
    if name == "local":
        if address:
            raise ValueError("--address only applies to --backend ray")
        return LocalBackend(str(out), workers or max(1, int((os.cpu_count() or 1) // spec.cpus_per_run)))
    if name == "ray":
        return RayBackend(str(out), workers, address, spec.cpus_per_run, spec.gpus_per_run)
    raise ValueError(f"unknown backend {name!r}; use 'local' or 'ray'")

"""``parl bench SPEC.toml --out DIR``: run a benchmark grid (see :mod:`parl_deep.sweep` for the spec format)."""
from __future__ import annotations

import argparse
import os
import signal
import sys

from parl_cli.common import comma_ints, comma_list, fail, missing_extra

os.environ.setdefault("MUJOCO_GL", "disabled")

DESCRIPTION = """\
Run a grid of independent training runs (tasks x methods x seeds) described by a TOML spec, on a local process
pool or on Ray. The spec is validated before anything runs (spec format: parl_deep.sweep, docs/benchmarks.md).
Re-running the same command resumes: finished runs are skipped, interrupted ones continue from their checkpoint.

examples:
  parl bench benchmarks/specs/cpu.toml --workers 2 --out runs/cpu-grid            # local process pool
  parl bench benchmarks/specs/cpu.toml --out runs/cpu-grid                         # again: resumes, skips done runs
  parl bench benchmarks/specs/cpu.toml --backend ray --address HEAD:6379 --out /shared/cpu-grid
  parl bench benchmarks/specs/paper.toml --dry-run --out runs/paper                # validate and list the runs
"""

EPILOG = """\
exit status: 0 every run finished, 1 some runs failed (each is reported with its error), 2 bad spec or
arguments (nothing was run), 130 interrupted (re-run the same command to resume).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION
    parser.epilog = EPILOG
    parser.add_argument("spec", help="benchmark spec (TOML), e.g. benchmarks/specs/cpu.toml")
    parser.add_argument("--out", required=True, help="sweep directory (one sub-directory per run under runs/)")
    parser.add_argument("--backend", choices=("local", "ray"), default="local",
                        help="local: a pool of worker processes on this machine (default); ray: Ray tasks")
    parser.add_argument("--workers", type=int, default=None,
                        help="runs at a time (local: default = CPU count / cpus_per_run; ray without --address: "
                             "the CPUs of the local Ray instance; ray with --address: a cap on in-flight runs)")
    parser.add_argument("--address", default=None,
                        help="Ray cluster to join (e.g. HEAD_IP:6379, or 'auto'); without it Ray starts locally")
    parser.add_argument("--retries", type=int, default=1, help="retries of a failed run per invocation (default 1)")
    parser.add_argument("--progress-every", type=float, default=30.0, metavar="SECONDS",
                        help="print a progress line (done / running / failed / ETA) this often (default 30)")
    parser.add_argument("--methods", default=None, metavar="LABEL,...",
                        help="run only these method entries of the spec (e.g. --methods oracle; default: all)")
    parser.add_argument("--tasks", default=None, metavar="ENV,...",
                        help="run only these tasks of the spec (e.g. --tasks dmc:walker-walk; default: all)")
    parser.add_argument("--seeds", default=None, metavar="N,...",
                        help="run only these of the spec's seeds (e.g. --seeds 0,1,2; default: all); runs are "
                             "ordered seed by seed, so the whole spec later resumes into the same --out")
    parser.add_argument("--dry-run", action="store_true", help="validate the spec, list the runs, run nothing")


def _check_args(args: argparse.Namespace) -> str | None:
    """What is wrong with the options themselves (before the spec is read), or None."""
    if args.workers is not None and args.workers <= 0:
        return f"--workers must be a positive integer, got {args.workers}"
    if args.retries < 0:
        return f"--retries must be >= 0, got {args.retries}"
    if args.address and args.backend != "ray":
        return "--address only applies to --backend ray"
    if args.backend == "ray":
        try:
            import ray  # noqa: F401
        except ModuleNotFoundError as exc:
            return f"--backend ray: {missing_extra(exc, 'bench')}"
    return None


def _dry_run(spec, out: str, source: str) -> int:
    from parl_deep.sweep import SpecError, check_existing_runs, is_finished, read_summary, run_dir_for

    issues = check_existing_runs(out, spec.jobs)
    if issues:
        raise SpecError(issues, source)
    done = 0
    for j in spec.jobs:
        fin = is_finished(read_summary(run_dir_for(out, j.run_id)), j.steps)
        done += fin
        print(f"{j.run_id:60s} {j.steps:>9d} steps{'  (finished)' if fin else ''}")
    print(f"{len(spec.jobs)} runs, {done} finished; spec is valid")
    return 0


def _interrupt(*_) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    problem = _check_args(args)
    if problem:
        return fail("bench", problem)
    from parl_deep.sweep import SpecError, load_spec, run_sweep

    try:
        seeds = comma_ints(args.seeds, "--seeds")
    except ValueError as exc:
        return fail("bench", str(exc))
    try:
        spec = load_spec(args.spec, comma_list(args.methods), seeds, comma_list(args.tasks))
        if args.dry_run:
            return _dry_run(spec, args.out, args.spec)
        # SIGTERM (e.g. from a scheduler) stops the sweep like Ctrl-C: children are stopped, state is saved.
        signal.signal(signal.SIGTERM, _interrupt)
        state = run_sweep(spec, args.out, backend=args.backend, workers=args.workers, address=args.address,
                          retries=args.retries, progress_every=args.progress_every)
    except SpecError as exc:  # every problem, one per line
        print(f"parl bench: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except ValueError as exc:
        return fail("bench", str(exc))
    failed = state["counts"]["failed"]
    print(f"{state['counts']['finished']}/{len(state['runs'])} runs finished, {failed} failed; "
          f"report: parl report {args.out}")
    return 1 if failed else 0

"""``parl bench``: a grid of independent training runs described by a TOML spec, run on a local process pool or
on Ray, resumable at any moment.

Spec format (``benchmarks/specs/*.toml``; every key is checked, unknown keys are errors)::

    name = "cpu"                       # optional (default: the file name)
    description = "..."                # optional
    preset = "cpu"                     # SAC preset for every run ("paper" or "cpu")
    steps = 100000                     # environment steps per run (a task may override it)
    seeds = [0, 1, 2, 3, 4]            # or an integer n meaning 0..n-1
    tasks = ["dmc:walker-walk", "metaworld:door-open"]   # or [[tasks]] tables: env, steps, train, sac
    cpus_per_run = 1                   # optional, Ray resources of one run (default 1)
    gpus_per_run = 0                   # optional (default 0)

    [train]                            # optional TrainConfig fields for every run (eval_every, eval_episodes, ...)
    [sac]                              # optional SACConfig fields for every run (hidden_dim, batch_size, ...)

    [[methods]]
    name = "pebble"                    # label: run directories, tables and figures use it (default: method)
    method = "pebble"                  # name in the method registry (parl_deep.methods.method_names())
    options = { teacher = "oracle" }   # -> TrainConfig.method_config
    train = { ... }                    # optional per-method TrainConfig fields
    sac = { ... }                      # optional per-method SAC fields
    [methods.task_options."metaworld:door-open"]   # optional per-task method options (merged over options)

For one run the configuration is built in this order, later layers winning: ``TrainConfig.make(env,
preset_name=preset)`` (the preset's SAC settings for that environment), spec ``[train]``/``[sac]``, the task's
``train``/``sac``, the method's ``train``/``sac``; ``method_config`` is ``options`` updated by
``task_options[env]``.

Layout of the output directory::

    DIR/spec.toml            copy of the spec last run into DIR
    DIR/sweep.json           sweep state: every run's status, attempts, last error, progress and ETA
    DIR/runs/<run_id>/       one ``parl train`` run directory (config.json, eval.csv, episodes.csv, tb/,
                             checkpoint.pt) plus run.json (what the sweep asked for), summary.json (written
                             when the run ends: status "finished" or "failed" with the error) and worker.log

``run_id`` is ``<suite>-<task>__<method label>__s<seed>``, e.g. ``dmc-walker-walk__pebble__s3``.

Idempotent resume. The run directories are the source of truth: a run is finished iff its summary.json says
``"status": "finished"`` for the requested number of steps; any other run is (re)started by
``parl_deep.training.train``, which continues from the run's checkpoint when there is one. So re-running the same
command after a kill, a crash or a reboot skips finished runs (their files are not touched) and resumes the
others. A run that raises is recorded with its error and retried once (``--retries``) after the other queued
runs; it never stops the others. Runs that failed in an earlier invocation are tried again.

Up-front validation (:func:`load_spec`): the whole spec is checked — every field's type and range, task names
against the simulators' task lists (without building a simulator), method names against the live registry,
every method entry's options (``Method.validate_config``: a method without options rejects any), every run's
``TrainConfig.validate()`` — and existing run directories in ``--out`` must hold the same configuration (only a
larger ``steps`` is allowed: the run is extended). Every problem is reported with the field it comes from,
before any run starts. What only the machine that trains can tell (a missing GPU for ``reward_device``) is
checked when the run starts, and reported as that run's failure.

Backends. ``local``: at most N runs at a time, each in its own child process (forked on Linux after the heavy
imports, so a run starts in about a second; a crash or an out-of-memory kill of one run cannot take the others
down; on Linux children die with the sweep, so killing the sweep never leaves a run writing behind it). ``ray``:
the same :func:`run_one` as Ray tasks (``num_cpus=cpus_per_run``), with ``OMP_NUM_THREADS=1`` and
``MUJOCO_GL=disabled`` in the workers; ``--address`` joins an existing cluster (DIR must then be on a filesystem
that every node mounts at the same path, so that runs can resume from their checkpoints; without one, the driver
still writes each finished run's summary.json and eval.csv from the task's result). A per-run file lock
(``runs/<run_id>/.lock``) keeps two sweeps from ever training the same run at once.

Modules, in import order (each imports only those before it): :mod:`~parl_deep.sweep.spec` (the spec as data,
parsing), :mod:`~parl_deep.sweep.grid` (validation, the runs' configs, ``--seeds/--tasks/--methods``, reading a
spec file), :mod:`~parl_deep.sweep.rundirs` (run directories, :func:`run_one`), :mod:`~parl_deep.sweep.backends`
(local pool, Ray), :mod:`~parl_deep.sweep.runner` (:func:`run_sweep`, ``sweep.json``);
:mod:`~parl_deep.sweep.archive` (:func:`archive_sweep`: the finished runs' records, to commit) needs only
``rundirs``. ``import parl_deep.sweep``
is cheap: torch, the simulators and Ray are imported only when a spec is validated or a sweep runs.
"""
from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "disabled")

from parl_deep.sweep.archive import ArchiveConflict, ArchiveResult, archive_sweep  # noqa: E402
from parl_deep.sweep.backends import LocalBackend, RayBackend, make_backend  # noqa: E402
from parl_deep.sweep.grid import (check_spec, load_spec, select_methods, select_seeds, select_tasks,  # noqa: E402
                                  spec_from_text, validate_spec)
from parl_deep.sweep.rundirs import (LOCK_NAME, check_existing_runs, is_finished, progress_steps,  # noqa: E402
                                     read_summary, run_dir_for, run_one)
from parl_deep.sweep.runner import STATE_NAME, SweepState, run_sweep  # noqa: E402
from parl_deep.sweep.spec import (MethodSpec, RunJob, Spec, SpecError, SpecIssue, TaskSpec, parse_spec,  # noqa: E402
                                  run_id_for)

__all__ = ["load_spec", "check_spec", "spec_from_text", "parse_spec", "validate_spec", "select_seeds",
           "select_tasks", "select_methods", "run_sweep", "run_one", "run_dir_for", "read_summary", "is_finished",
           "check_existing_runs", "progress_steps", "run_id_for", "make_backend", "LocalBackend", "RayBackend",
           "SweepState", "SpecError", "SpecIssue", "Spec", "TaskSpec", "MethodSpec", "RunJob", "STATE_NAME",
           "LOCK_NAME", "archive_sweep", "ArchiveResult", "ArchiveConflict"]

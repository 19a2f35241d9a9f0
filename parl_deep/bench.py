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
    method = "pebble"                  # name in the registry parl_deep.methods.METHODS
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
``parl_deep.train.train``, which continues from the run's checkpoint when there is one. So re-running the same
command after a kill, a crash or a reboot skips finished runs (their files are not touched) and resumes the
others. A run that raises is recorded with its error and retried once (``--retries``) after the other queued
runs; it never stops the others. Runs that failed in an earlier invocation are tried again.

Up-front validation (:func:`load_spec`): the whole spec is checked — every field's type and range, task names
against the simulators' task lists (without building a simulator), method names against the live registry,
every run's ``TrainConfig.validate()`` — and existing run directories in ``--out`` must hold the same
configuration (only a larger ``steps`` is allowed: the run is extended). Every problem is reported with the
field it comes from, before any run starts. Method *options* are checked up front only for methods whose class
defines ``validate_config(config: dict) -> None`` (a classmethod that raises ``ValueError``); otherwise the
method itself rejects bad options when the run starts, which is reported as that run's failure.

Backends. ``local``: at most N runs at a time, each in its own child process (forked on Linux after the heavy
imports, so a run starts in about a second; a crash or an out-of-memory kill of one run cannot take the others
down; on Linux children die with the sweep, so killing the sweep never leaves a run writing behind it). ``ray``:
the same :func:`run_one` as Ray tasks (``num_cpus=cpus_per_run``), with ``OMP_NUM_THREADS=1`` and
``MUJOCO_GL=disabled`` in the workers; ``--address`` joins an existing cluster (DIR must then be on a filesystem
that every node mounts at the same path, so that runs can resume from their checkpoints; without one, the driver
still writes each finished run's summary.json and eval.csv from the task's result). A per-run file lock
(``runs/<run_id>/.lock``) keeps two sweeps from ever training the same run at once.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import signal
import sys
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

os.environ.setdefault("MUJOCO_GL", "disabled")

SUMMARY_NAME = "summary.json"
RUN_NAME = "run.json"
STATE_NAME = "sweep.json"
LOG_NAME = "worker.log"
LOCK_NAME = ".lock"

SPEC_KEYS = {"name", "description", "preset", "steps", "seeds", "tasks", "methods", "train", "sac",
             "cpus_per_run", "gpus_per_run"}
TASK_KEYS = {"env", "steps", "train", "sac"}
METHOD_KEYS = {"name", "method", "options", "task_options", "train", "sac"}
# TrainConfig fields that the spec's structure sets (not allowed in [train] tables).
RESERVED_TRAIN = {"env": "tasks", "method": "methods[].method", "seed": "seeds", "steps": "steps",
                  "preset": "preset", "sac": "[sac]", "method_config": "methods[].options"}
LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


# ============================================================================================ spec


@dataclass
class SpecIssue:
    """One problem in a spec. ``kind`` is ``"unregistered_method"`` for a method name that is not (yet) in
    ``parl_deep.methods.METHODS``, ``"conflict"`` for an existing run directory holding another config, and
    ``"invalid"`` for everything else."""

    field: str
    message: str
    kind: str = "invalid"

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class SpecError(ValueError):
    """A spec that cannot be run; ``issues`` lists every problem found (each names its field)."""

    def __init__(self, issues: list[SpecIssue], source: str | None = None):
        self.issues = list(issues)
        where = f" {source}" if source else ""
        lines = [f"invalid benchmark spec{where} ({len(self.issues)} problem{'s' * (len(self.issues) != 1)}):"]
        lines += [f"  - {i}" for i in self.issues]
        super().__init__("\n".join(lines))


@dataclass
class TaskSpec:
    env: str
    steps: int | None = None
    train: dict = field(default_factory=dict)
    sac: dict = field(default_factory=dict)


@dataclass
class MethodSpec:
    name: str
    method: str
    options: dict = field(default_factory=dict)
    task_options: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    sac: dict = field(default_factory=dict)


@dataclass
class RunJob:
    """One run of the grid: what the worker needs (``config`` is a ``TrainConfig.to_dict()``)."""

    run_id: str
    task: str
    method_name: str
    method: str
    seed: int
    config: dict

    @property
    def steps(self) -> int:
        return int(self.config["steps"])

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RunJob":
        return cls(**{k: d[k] for k in ("run_id", "task", "method_name", "method", "seed", "config")})


@dataclass
class Spec:
    name: str
    preset: str
    seeds: list[int]
    tasks: list[TaskSpec]
    methods: list[MethodSpec]
    steps: int | None = None
    description: str = ""
    train: dict = field(default_factory=dict)
    sac: dict = field(default_factory=dict)
    cpus_per_run: float = 1
    gpus_per_run: float = 0
    text: str | None = None  # the TOML source
    path: str | None = None
    jobs: list[RunJob] = field(default_factory=list)  # filled by validation

    def sha256(self) -> str:
        return hashlib.sha256((self.text or json.dumps(self.to_dict(), sort_keys=True)).encode()).hexdigest()

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for k in ("text", "path", "jobs"):
            d.pop(k)
        return d


def run_id_for(env: str, method_name: str, seed: int) -> str:
    return f"{env.replace(':', '-')}__{method_name}__s{seed}"


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _type_problem(annotation: str, v) -> str | None:
    """Check a TOML value against a dataclass field annotation (the annotations are strings here)."""
    a = annotation.replace(" ", "")
    if a in ("int", "int|None"):
        return None if _is_int(v) else f"must be an integer, got {v!r}"
    if a in ("float", "float|None"):
        return None if _is_num(v) else f"must be a number, got {v!r}"
    if a == "bool":
        return None if isinstance(v, bool) else f"must be true or false, got {v!r}"
    if a in ("str", "str|None"):
        return None if isinstance(v, str) else f"must be a string, got {v!r}"
    if a.startswith("tuple[float,float]"):
        ok = isinstance(v, list) and len(v) == 2 and all(_is_num(x) for x in v)
        return None if ok else f"must be a list of two numbers, got {v!r}"
    if a.startswith("dict"):
        return None if isinstance(v, dict) else f"must be a table, got {v!r}"
    return None


def _merge_fields(target: dict, overrides: dict, where: str, cls, issues: list[SpecIssue],
                  reserved: dict[str, str] | None = None) -> None:
    types = {f.name: str(f.type) for f in dataclasses.fields(cls)}
    for k, v in overrides.items():
        path = f"{where}.{k}"
        if reserved and k in reserved:
            issues.append(SpecIssue(path, f"is set by the spec's `{reserved[k]}`, not in a [train] table"))
            continue
        if k not in types or (reserved is not None and k == "sac"):
            valid = sorted(t for t in types if not (reserved and t in reserved))
            issues.append(SpecIssue(path, f"unknown field; valid fields: {', '.join(valid)}"))
            continue
        problem = _type_problem(types[k], v)
        if problem:
            issues.append(SpecIssue(path, problem))
            continue
        target[k] = list(v) if isinstance(v, (list, tuple)) else v


def _table(d: dict, key: str, where: str, issues: list[SpecIssue]) -> dict:
    v = d.get(key, {})
    if not isinstance(v, dict):
        issues.append(SpecIssue(f"{where}{key}", f"must be a table, got {v!r}"))
        return {}
    return v


def _check_steps(v, where: str, issues: list[SpecIssue]) -> int | None:
    if not _is_int(v) or v <= 0:
        issues.append(SpecIssue(where, f"must be a positive integer, got {v!r}"))
        return None
    return v


def parse_spec(data: dict, *, name: str = "spec", text: str | None = None,
               path: str | None = None) -> tuple[Spec | None, list[SpecIssue]]:
    """Structure and types of a spec (already read from TOML); see :func:`validate_spec` for the rest."""
    issues: list[SpecIssue] = []
    for k in sorted(set(data) - SPEC_KEYS):
        issues.append(SpecIssue(k, f"unknown field; valid fields: {', '.join(sorted(SPEC_KEYS))}"))
    for k in ("preset", "seeds", "tasks", "methods"):
        if k not in data:
            issues.append(SpecIssue(k, "required field is missing"))

    spec_name = data.get("name", name)
    if not isinstance(spec_name, str) or not spec_name:
        issues.append(SpecIssue("name", f"must be a non-empty string, got {spec_name!r}"))
    preset = data.get("preset", "cpu")
    if "preset" in data:
        from parl_deep.sac import PRESETS

        if preset not in PRESETS:
            issues.append(SpecIssue("preset", f"unknown preset {preset!r}; valid presets: {', '.join(PRESETS)}"))
    steps = None
    if "steps" in data:
        steps = _check_steps(data["steps"], "steps", issues)

    seeds: list[int] = []
    if "seeds" in data:
        s = data["seeds"]
        if _is_int(s) and s > 0:
            seeds = list(range(s))
        elif isinstance(s, list) and s and all(_is_int(x) and x >= 0 for x in s):
            seeds = list(s)
            if len(set(seeds)) != len(seeds):
                issues.append(SpecIssue("seeds", f"seeds must be distinct, got {s!r}"))
        else:
            issues.append(SpecIssue("seeds", f"must be a positive integer n (seeds 0..n-1) or a non-empty list of "
                                             f"non-negative integers, got {s!r}"))

    tasks: list[TaskSpec] = []
    raw_tasks = data.get("tasks", [])
    if "tasks" in data and (not isinstance(raw_tasks, list) or not raw_tasks):
        issues.append(SpecIssue("tasks", f"must be a non-empty list of environment names or tables, got {raw_tasks!r}"))
        raw_tasks = []
    for i, t in enumerate(raw_tasks):
        where = f"tasks[{i}]"
        if isinstance(t, str):
            t = {"env": t}
        if not isinstance(t, dict):
            issues.append(SpecIssue(where, f"must be an environment name or a table, got {t!r}"))
            continue
        for k in sorted(set(t) - TASK_KEYS):
            issues.append(SpecIssue(f"{where}.{k}", f"unknown field; valid fields: {', '.join(sorted(TASK_KEYS))}"))
        if "env" not in t:
            issues.append(SpecIssue(f"{where}.env", "required field is missing"))
            continue
        if not isinstance(t["env"], str):
            issues.append(SpecIssue(f"{where}.env", f"must be a string, got {t['env']!r}"))
            continue
        tsteps = _check_steps(t["steps"], f"{where}.steps", issues) if "steps" in t else None
        tasks.append(TaskSpec(t["env"], tsteps, _table(t, "train", f"{where}.", issues),
                              _table(t, "sac", f"{where}.", issues)))
    envs = [t.env for t in tasks]
    for e in sorted({e for e in envs if envs.count(e) > 1}):
        issues.append(SpecIssue("tasks", f"{e!r} is listed more than once"))
    if steps is None and "steps" not in data:
        for i, t in enumerate(tasks):
            if t.steps is None:
                issues.append(SpecIssue(f"tasks[{i}].steps", f"required (no top-level `steps` is given) for {t.env}"))

    methods: list[MethodSpec] = []
    raw_methods = data.get("methods", [])
    if "methods" in data and (not isinstance(raw_methods, list) or not raw_methods):
        issues.append(SpecIssue("methods", "must be a non-empty array of [[methods]] tables"))
        raw_methods = []
    for j, m in enumerate(raw_methods):
        where = f"methods[{j}]"
        if not isinstance(m, dict):
            issues.append(SpecIssue(where, f"must be a table, got {m!r}"))
            continue
        for k in sorted(set(m) - METHOD_KEYS):
            issues.append(SpecIssue(f"{where}.{k}", f"unknown field; valid fields: {', '.join(sorted(METHOD_KEYS))}"))
        if "method" not in m:
            issues.append(SpecIssue(f"{where}.method", "required field is missing (the registry name, e.g. 'oracle')"))
            continue
        if not isinstance(m["method"], str):
            issues.append(SpecIssue(f"{where}.method", f"must be a string, got {m['method']!r}"))
            continue
        label = m.get("name", m["method"])
        if not isinstance(label, str) or not LABEL_RE.match(label) or "__" in label:
            issues.append(SpecIssue(f"{where}.name", f"must be a label of letters, digits and . _ + - (no '__'), "
                                                     f"got {label!r}"))
            continue
        task_options = _table(m, "task_options", f"{where}.", issues)
        for env, opts in task_options.items():
            if env not in envs:
                issues.append(SpecIssue(f"{where}.task_options.{env}", f"{env!r} is not one of the spec's tasks"))
            if not isinstance(opts, dict):
                issues.append(SpecIssue(f"{where}.task_options.{env}", f"must be a table, got {opts!r}"))
        methods.append(MethodSpec(label, m["method"], _table(m, "options", f"{where}.", issues), task_options,
                                  _table(m, "train", f"{where}.", issues), _table(m, "sac", f"{where}.", issues)))
    labels = [m.name for m in methods]
    for lab in sorted({x for x in labels if labels.count(x) > 1}):
        issues.append(SpecIssue("methods", f"two method entries have the name {lab!r}; give each a distinct `name`"))

    res = {}
    for k, default in (("cpus_per_run", 1), ("gpus_per_run", 0)):
        v = data.get(k, default)
        if not _is_num(v) or v < 0 or (k == "cpus_per_run" and v <= 0):
            issues.append(SpecIssue(k, f"must be a {'positive' if k == 'cpus_per_run' else 'non-negative'} number, "
                                       f"got {v!r}"))
            v = default
        res[k] = v
    if "description" in data and not isinstance(data["description"], str):
        issues.append(SpecIssue("description", "must be a string"))

    spec = Spec(name=spec_name if isinstance(spec_name, str) else name, preset=preset, seeds=seeds, tasks=tasks,
                methods=methods, steps=steps, description=str(data.get("description", "")),
                train=_table(data, "train", "", issues), sac=_table(data, "sac", "", issues),
                cpus_per_run=res["cpus_per_run"], gpus_per_run=res["gpus_per_run"], text=text, path=path)
    return spec, issues


def _check_env(env: str) -> str | None:
    from parl_deep.cli import _check_env_name
    from parl_deep.envs import UnknownEnvironmentError

    try:
        _check_env_name(env)
    except UnknownEnvironmentError as exc:
        return str(exc)
    return None


def validate_spec(spec: Spec, *, build_runs: bool = True) -> list[SpecIssue]:
    """Everything that can be checked without running: tasks, methods, and every run's TrainConfig.

    Fills ``spec.jobs`` with the runs of the grid (for the valid part of the spec). ``build_runs=False`` checks
    only task and method names (used when the spec's structure already has problems)."""
    from parl_deep.methods import METHODS
    from parl_deep.sac import SACConfig
    from parl_deep.train import ConfigError, TrainConfig

    issues: list[SpecIssue] = []
    bad_envs = set()
    for i, t in enumerate(spec.tasks):
        problem = _check_env(t.env)
        if problem:
            issues.append(SpecIssue(f"tasks[{i}]", problem))
            bad_envs.add(t.env)
    registered = sorted(METHODS)
    for j, m in enumerate(spec.methods):
        if m.method not in METHODS:
            issues.append(SpecIssue(
                f"methods[{j}].method",
                f"{m.method!r} is not a registered training method (registered: {', '.join(registered)}); "
                f"it may not be implemented in this checkout yet", kind="unregistered_method"))
            continue
        hook = getattr(METHODS[m.method], "validate_config", None)
        if callable(hook):
            for env in [None] + [t.env for t in spec.tasks if t.env in m.task_options]:
                opts = {**m.options, **(m.task_options.get(env, {}) if env else {})}
                try:
                    hook(opts)
                except (ValueError, TypeError, KeyError) as exc:
                    where = f"methods[{j}].options" if env is None else f"methods[{j}].task_options.{env}"
                    issues.append(SpecIssue(where, str(exc)))
    if not build_runs:
        return issues
    # Structural layers: typed merge once per layer (reported once, not per run).
    layer_issues: list[SpecIssue] = []
    base_train: dict = {}
    base_sac: dict = {}
    _merge_fields(base_train, spec.train, "train", TrainConfig, layer_issues, RESERVED_TRAIN)
    _merge_fields(base_sac, spec.sac, "sac", SACConfig, layer_issues)
    task_layers, method_layers = {}, {}
    for i, t in enumerate(spec.tasks):
        tr, sc = {}, {}
        _merge_fields(tr, t.train, f"tasks[{i}].train", TrainConfig, layer_issues, RESERVED_TRAIN)
        _merge_fields(sc, t.sac, f"tasks[{i}].sac", SACConfig, layer_issues)
        task_layers[t.env] = (tr, sc)
    for j, m in enumerate(spec.methods):
        tr, sc = {}, {}
        _merge_fields(tr, m.train, f"methods[{j}].train", TrainConfig, layer_issues, RESERVED_TRAIN)
        _merge_fields(sc, m.sac, f"methods[{j}].sac", SACConfig, layer_issues)
        method_layers[m.name] = (tr, sc)
    issues += layer_issues

    jobs: list[RunJob] = []
    seen_msgs: set[str] = set()
    for i, t in enumerate(spec.tasks):
        if t.env in bad_envs:
            continue
        steps = t.steps if t.steps is not None else spec.steps
        for j, m in enumerate(spec.methods):
            opts = {**m.options, **m.task_options.get(t.env, {})}
            for seed in spec.seeds:
                try:
                    cfg = TrainConfig.make(t.env, preset_name=spec.preset, method=m.method, seed=seed,
                                           steps=steps)
                    d = cfg.to_dict()
                    for tr, sc in (({**base_train}, {**base_sac}), task_layers[t.env], method_layers[m.name]):
                        d.update(tr)
                        d["sac"].update(sc)
                    d["method_config"] = opts
                    cfg = TrainConfig.from_dict(d)
                    # The method name is checked above (an unregistered method is its own issue).
                    check = dataclasses.replace(cfg, method="oracle") if m.method not in METHODS else cfg
                    check.validate()
                    for name in ("eval_every", "checkpoint_every"):
                        if getattr(cfg, name) > cfg.steps:
                            raise ConfigError(f"{name} = {getattr(cfg, name)} is larger than steps = {cfg.steps}: "
                                              f"the run would never {'evaluate' if name == 'eval_every' else 'checkpoint'} "
                                              f"before its end")
                except (ConfigError, ValueError, TypeError) as exc:
                    msg = f"{t.env} x {m.name}: {exc}"
                    if msg not in seen_msgs:
                        seen_msgs.add(msg)
                        issues.append(SpecIssue(f"tasks[{i}] x methods[{j}]", str(exc)))
                    continue
                jobs.append(RunJob(run_id_for(t.env, m.name, seed), t.env, m.name, m.method, seed, cfg.to_dict()))
    # Seed-major order: a sweep stopped part-way has whole seeds of every task x method, not some cells complete
    # and others empty.
    seed_pos = {seed: k for k, seed in enumerate(spec.seeds)}
    spec.jobs = sorted(jobs, key=lambda j: seed_pos[j.seed])
    return issues


def _select(spec: Spec, attr: str, keep: list, key: Callable[[Any], Any], noun: str) -> list[SpecIssue]:
    """Keep only the entries of ``spec.<attr>`` whose ``key`` is in ``keep`` (``parl bench --<attr>``); run ids
    are unchanged, so a later run of the whole spec into the same directory skips the runs already finished."""
    known = [key(x) for x in getattr(spec, attr)]
    issues = [SpecIssue(f"--{attr}", f"{noun} {x!r} is not in the spec (its {noun}s: {', '.join(map(str, known))})")
              for x in keep if x not in known]
    setattr(spec, attr, [x for x in getattr(spec, attr) if key(x) in keep])
    return issues


def select_seeds(spec: Spec, seeds: list[int]) -> list[SpecIssue]:
    """Keep only these of the spec's seeds (``parl bench --seeds``)."""
    return _select(spec, "seeds", seeds, lambda s: s, "seed")


def select_tasks(spec: Spec, envs: list[str]) -> list[SpecIssue]:
    """Keep only these of the spec's tasks (``parl bench --tasks``)."""
    return _select(spec, "tasks", envs, lambda t: t.env, "task")


def select_methods(spec: Spec, labels: list[str]) -> list[SpecIssue]:
    """Keep only the method entries named in ``labels`` (``parl bench --methods``)."""
    return _select(spec, "methods", labels, lambda m: m.name, "method")


def check_spec(path: str | os.PathLike, methods: list[str] | None = None, seeds: list[int] | None = None,
               tasks: list[str] | None = None) -> tuple[Spec | None, list[SpecIssue]]:
    """Read and validate a spec file; returns the spec and every issue found (never raises for spec problems).

    ``methods``: only these method labels (the others are neither validated nor run); ``seeds``, ``tasks``: only
    these of the spec's seeds and tasks."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        return None, [SpecIssue(str(path), f"cannot read the spec: {exc}")]
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return None, [SpecIssue(str(path), f"not valid TOML: {exc}")]
    spec, issues = parse_spec(data, name=path.stem, text=text, path=str(path))
    if methods is not None and spec is not None:
        issues += select_methods(spec, methods)
    if seeds is not None and spec is not None:
        issues += select_seeds(spec, seeds)
    if tasks is not None and spec is not None:
        issues += select_tasks(spec, tasks)
    if spec is None:
        return spec, issues
    # With structural problems, still check task and method names (so that one run shows every problem) but do
    # not build the runs' configs, which would only repeat the same problems.
    return spec, issues + validate_spec(spec, build_runs=not issues)


def load_spec(path: str | os.PathLike, methods: list[str] | None = None, seeds: list[int] | None = None,
              tasks: list[str] | None = None) -> Spec:
    """Read and validate a spec; raises :class:`SpecError` listing every problem (each names its field)."""
    spec, issues = check_spec(path, methods, seeds, tasks)
    if issues:
        raise SpecError(issues, str(path))
    return spec


def spec_from_text(text: str, name: str = "spec") -> Spec:
    data = tomllib.loads(text)
    spec, issues = parse_spec(data, name=name, text=text)
    issues += validate_spec(spec, build_runs=not issues)
    if issues:
        raise SpecError(issues, name)
    return spec


# ============================================================================================ run directories


def _atomic_write(path: Path, data: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _write_json(path: Path, obj: Any) -> None:
    _atomic_write(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def run_dir_for(out: str | os.PathLike, run_id: str) -> Path:
    return Path(out) / "runs" / run_id


def is_finished(summary: dict | None, steps: int | None = None) -> bool:
    return bool(summary and summary.get("status") == "finished"
                and (steps is None or int(summary.get("steps", -1)) >= steps))


def _config_diff(a: dict, b: dict) -> list[str]:
    out = []
    for k in sorted(set(a) | set(b)):
        if isinstance(a.get(k), dict) and isinstance(b.get(k), dict) and k != "method_config":
            out += [f"{k}.{x}" for x in _config_diff(a[k], b[k])]
        elif a.get(k) != b.get(k):
            out.append(k)
    return out


def check_existing_runs(out: str | os.PathLike, jobs: list[RunJob]) -> list[SpecIssue]:
    """Existing run directories in ``out`` must hold the same config (only a larger ``steps`` is allowed)."""
    issues = []
    for job in jobs:
        old = read_json(run_dir_for(out, job.run_id) / "config.json")
        if old is None:
            continue
        diff = _config_diff(old, job.config)
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
    for name in ("episodes.csv", "eval.csv"):
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
        existing = read_json(run_dir / SUMMARY_NAME)
        if is_finished(existing, j.steps):
            return existing
        with contextlib.suppress(FileNotFoundError):
            (run_dir / SUMMARY_NAME).unlink()  # a stale "failed" summary must not outlive a new attempt
        _write_json(run_dir / RUN_NAME, j.to_dict())
        cm = _redirect_output(run_dir / LOG_NAME) if redirect else contextlib.nullcontext()
        t0 = time.time()
        with cm:
            print(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} {j.run_id} on {os.uname().nodename} pid {os.getpid()}",
                  flush=True)
            try:
                from parl_deep.train import resume, train

                old = read_json(run_dir / "config.json")
                if old is not None and _config_diff(old, j.config) == ["steps"]:
                    res = resume(run_dir, steps=j.steps, progress=False)  # the spec asks for a longer run
                else:
                    res = train(read_config_like(j.config), run_dir, progress=False)
                summary = {**base, "status": "finished", "steps": int(res["step"]),
                           "resumed_from_step": int(res["step"] - res["steps_this_session"]),
                           "wall_time_s": float(res["wall_time_s"]),
                           "session_wall_time_s": time.time() - t0,
                           "final_eval": res.get("last_eval") or {},
                           "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "host": os.uname().nodename}
            except Exception as exc:  # noqa: BLE001 - any error of the run is reported, never propagated
                tb = traceback.format_exc()
                print(tb, flush=True)
                summary = {**base, "status": "failed", "steps": progress_steps(run_dir),
                           "error": f"{type(exc).__name__}: {exc}", "traceback": tb,
                           "session_wall_time_s": time.time() - t0,
                           "failed_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "host": os.uname().nodename}
            print(f"=== {summary['status']} after {time.time() - t0:.1f}s", flush=True)
        _write_json(run_dir / SUMMARY_NAME, summary)
        return summary


def read_config_like(d: dict):
    from parl_deep.train import TrainConfig

    return TrainConfig.from_dict(d)


# ============================================================================================ backends


def _preload() -> None:
    """Import the heavy modules once in the parent so that forked workers start quickly."""
    import parl_deep.envs  # noqa: F401
    import parl_deep.methods  # noqa: F401
    import parl_deep.train  # noqa: F401
    from parl_deep import envs

    with contextlib.suppress(Exception):
        envs._dmc_all()
        envs._metaworld_all()
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


def _local_child(job: dict, out: str, parent_pid: int) -> None:
    _die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # not the sweep's handlers: a signal simply ends the run
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.environ["OMP_NUM_THREADS"] = "1"
    run_one(job, out)


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

    def capacity(self) -> int:
        return self.workers - len(self.procs)

    def running(self) -> list[str]:
        return list(self.procs)

    def submit(self, job: RunJob) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        p = self.ctx.Process(target=_local_child, args=(job.to_dict(), self.out, os.getpid()),
                             name=f"parl-bench:{job.run_id}", daemon=True)
        p.start()
        self.procs[job.run_id] = p

    def poll(self, timeout: float) -> list[tuple[str, dict]]:
        from multiprocessing.connection import wait

        if not self.procs:
            time.sleep(min(timeout, 0.1))
            return []
        wait([p.sentinel for p in self.procs.values()], timeout)
        done = []
        for run_id, p in list(self.procs.items()):
            if p.is_alive():
                continue
            p.join()
            del self.procs[run_id]
            summary = read_json(run_dir_for(self.out, run_id) / SUMMARY_NAME)
            if not summary or summary.get("status") not in ("finished", "failed"):
                code = p.exitcode
                why = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
                summary = {"run_id": run_id, "status": "failed",
                           "error": f"worker process died without a summary ({why}; out of memory?)",
                           "steps": progress_steps(run_dir_for(self.out, run_id))}
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
    for name in ("eval.csv", "config.json", RUN_NAME):
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
            rd = run_dir_for(self.out, run_id)
            try:
                payload = self.ray.get(ref)
                summary = payload["summary"]
                if not (rd / SUMMARY_NAME).exists():  # DIR is not shared with the worker's node
                    rd.mkdir(parents=True, exist_ok=True)
                    for name, text in payload["files"].items():
                        if not (rd / name).exists():
                            _atomic_write(rd / name, text)
                    _write_json(rd / SUMMARY_NAME, summary)
            except Exception as exc:  # noqa: BLE001 - worker crash, node loss, ...
                summary = {"run_id": run_id, "status": "failed", "steps": progress_steps(rd),
                           "error": f"Ray task failed: {type(exc).__name__}: {str(exc).strip().splitlines()[0]}"}
            done.append((run_id, summary))
        return done

    def shutdown(self) -> None:
        for ref in self.refs:
            with contextlib.suppress(Exception):
                self.ray.cancel(ref, force=True)
        self.refs.clear()
        with contextlib.suppress(Exception):
            self.ray.shutdown()


# ============================================================================================ the sweep


def _fmt_duration(s: float | None) -> str:
    if s is None or s != s or s == float("inf"):
        return "?"
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


class SweepState:
    """The sweep's bookkeeping; persisted to DIR/sweep.json after every change (a record, not the truth:
    the run directories are, and the state is rebuilt from them on every start)."""

    def __init__(self, out: Path, spec: Spec, backend: str):
        self.out, self.spec, self.jobs = out, spec, {j.run_id: j for j in spec.jobs}
        self.t0 = time.time()
        prev = read_json(out / STATE_NAME) or {}
        self.history = list(prev.get("invocations", []))[-20:]
        self.history.append({"started_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "backend": backend,
                             "spec_sha256": spec.sha256()})
        self.runs: dict[str, dict] = {}
        for rid, j in self.jobs.items():
            rd = run_dir_for(out, rid)
            s = read_json(rd / SUMMARY_NAME)
            rec = {"task": j.task, "method": j.method_name, "method_registry": j.method, "seed": j.seed,
                   "steps": j.steps, "dir": str(rd.relative_to(out)), "attempts": 0, "error": None}
            if is_finished(s, j.steps):
                rec.update(status="finished", origin="finished earlier", wall_time_s=s.get("wall_time_s"),
                           final_eval=s.get("final_eval"))
            else:
                if (rd / "checkpoint.pt").exists():
                    origin = "resume"
                elif s and s.get("status") == "failed":
                    origin = "retry"
                else:
                    origin = "new"
                rec.update(status="pending", origin=origin,
                           error=(s or {}).get("error") if origin == "retry" else None)
            self.runs[rid] = rec
        self.base_steps = self.steps_done()

    def count(self, status: str) -> int:
        return sum(1 for r in self.runs.values() if r["status"] == status)

    def steps_done(self) -> int:
        total = 0
        for rid, r in self.runs.items():
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

    def line(self) -> str:
        eta, frac = self.eta()
        n = len(self.runs)
        return (f"[bench {_fmt_duration(time.time() - self.t0)}] {self.count('finished')}/{n} done | "
                f"{self.count('running')} running | {self.count('failed')} failed | {self.count('pending')} queued | "
                f"{100 * frac:.0f}% of steps | ETA {_fmt_duration(eta) if eta is not None else 'estimating'}")

    def save(self) -> None:
        eta, frac = self.eta()
        _write_json(self.out / STATE_NAME, {
            "spec": self.spec.name, "spec_path": self.spec.path, "spec_sha256": self.spec.sha256(),
            "updated_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "counts": {k: self.count(k) for k in ("finished", "running", "failed", "pending")},
            "fraction_of_steps_done": frac, "eta_s": eta, "invocations": self.history, "runs": self.runs})


def make_backend(name: str, out: Path, spec: Spec, workers: int | None, address: str | None):
    if name == "local":
        if address:
            raise ValueError("--address only applies to --backend ray")
        return LocalBackend(str(out), workers or max(1, int((os.cpu_count() or 1) // spec.cpus_per_run)))
    if name == "ray":
        return RayBackend(str(out), workers, address, spec.cpus_per_run, spec.gpus_per_run)
    raise ValueError(f"unknown backend {name!r}; use 'local' or 'ray'")


def run_sweep(spec: Spec, out: str | os.PathLike, *, backend: str = "local", workers: int | None = None,
              address: str | None = None, retries: int = 1, progress_every: float = 30.0,
              log: Callable[[str], None] | None = None) -> dict:
    """Run every unfinished run of a validated ``spec`` into ``out``; returns the final sweep state dict.

    Raises :class:`SpecError` (before anything runs) if existing run directories conflict with the spec."""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    out = Path(out)
    if not spec.jobs:
        issues = validate_spec(spec)
        if issues:
            raise SpecError(issues, spec.path)
    issues = check_existing_runs(out, spec.jobs)
    if issues:
        raise SpecError(issues, spec.path)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    if spec.text is not None:
        _atomic_write(out / "spec.toml", spec.text)
    state = SweepState(out, spec, backend)
    origins = {k: sum(1 for r in state.runs.values() if r.get("origin") == k)
               for k in ("finished earlier", "resume", "retry", "new")}
    log(f"[bench] {spec.name}: {len(state.runs)} runs ({len(spec.tasks)} tasks x {len(spec.methods)} methods x "
        f"{len(spec.seeds)} seeds) into {out}: {origins['finished earlier']} already finished (skipped), "
        f"{origins['resume']} to resume from checkpoints, {origins['retry']} failed before (retrying), "
        f"{origins['new']} new")
    queue = deque(rid for rid, r in state.runs.items() if r["status"] == "pending")
    state.save()
    if not queue:
        log(state.line())
        return json.loads((out / STATE_NAME).read_text())
    be = make_backend(backend, out, spec, workers, address)
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
                rec = state.runs[rid]
                if summary.get("status") == "finished":
                    rec.update(status="finished", error=None, wall_time_s=summary.get("wall_time_s"),
                               final_eval=summary.get("final_eval"))
                    fe = summary.get("final_eval") or {}
                    extra = f", final return {fe['return_mean']:.1f}" if "return_mean" in fe else ""
                    log(f"[bench] finished {rid} ({summary.get('steps')} steps"
                        f"{', resumed from step %d' % summary['resumed_from_step'] if summary.get('resumed_from_step') else ''}"
                        f"{extra})")
                else:
                    rec["error"] = summary.get("error", "unknown error")
                    if attempts[rid] <= retries:
                        rec["status"] = "pending"
                        queue.append(rid)
                        log(f"[bench] FAILED {rid} (attempt {attempts[rid]}): {rec['error']} -- will retry")
                    else:
                        rec["status"] = "failed"
                        log(f"[bench] FAILED {rid} (attempt {attempts[rid]}, giving up): {rec['error']}")
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
    log(state.line())
    failed = [rid for rid, r in state.runs.items() if r["status"] == "failed"]
    for rid in failed:
        log(f"[bench] failed: {rid}: {state.runs[rid]['error']} (see {out / state.runs[rid]['dir'] / LOG_NAME})")
    return json.loads((out / STATE_NAME).read_text())

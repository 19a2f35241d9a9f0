"""From a parsed spec to the grid of runs: task and method names checked against the simulators and the method
registry, one ``TrainConfig`` per run built from the spec's layers and validated, ``--seeds/--tasks/--methods``
selection, and the entry points that read a spec file (:func:`check_spec`, :func:`load_spec`,
:func:`spec_from_text`).
"""
from __future__ import annotations

import dataclasses
import os
import tomllib
from pathlib import Path
from typing import Any, Callable

from parl_deep.fields import type_problem
from parl_deep.methods import get_method, method_names
from parl_deep.sweep.spec import RunJob, Spec, SpecError, SpecIssue, parse_spec, run_id_for

__all__ = ["validate_spec", "select_seeds", "select_tasks", "select_methods", "check_spec", "load_spec",
           "spec_from_text", "RESERVED_TRAIN"]

# TrainConfig fields that the spec's structure sets (not allowed in [train] tables).
RESERVED_TRAIN = {"env": "tasks", "method": "methods[].method", "seed": "seeds", "steps": "steps",
                  "preset": "preset", "sac": "[sac]", "method_config": "methods[].options"}

# (TrainConfig overrides, SACConfig overrides) of one layer of the spec
Layer = tuple[dict, dict]


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
        problem = type_problem(types[k], v)
        if problem:
            issues.append(SpecIssue(path, problem))
            continue
        target[k] = list(v) if isinstance(v, (list, tuple)) else v


def _layer(train: dict, sac: dict, where: str, issues: list[SpecIssue]) -> Layer:
    """One layer's typed overrides (each problem reported once per layer, not once per run)."""
    from parl_deep.agents.sac import SACConfig
    from parl_deep.config import TrainConfig

    tr: dict = {}
    sc: dict = {}
    _merge_fields(tr, train, f"{where}train", TrainConfig, issues, RESERVED_TRAIN)
    _merge_fields(sc, sac, f"{where}sac", SACConfig, issues)
    return tr, sc


def _check_env(env: str) -> str | None:
    from parl_deep.envs import UnknownEnvironmentError, check_env_name

    try:
        check_env_name(env)
    except UnknownEnvironmentError as exc:
        return str(exc)
    return None


def _check_names(spec: Spec, issues: list[SpecIssue]) -> set[str]:
    """Task names against the simulators, method names against the registry, method options against the
    method's own check; returns the unknown task names."""
    bad_envs = set()
    for i, t in enumerate(spec.tasks):
        problem = _check_env(t.env)
        if problem:
            issues.append(SpecIssue(f"tasks[{i}]", problem))
            bad_envs.add(t.env)
    registered = method_names()
    for j, m in enumerate(spec.methods):
        if m.method not in registered:
            issues.append(SpecIssue(
                f"methods[{j}].method",
                f"{m.method!r} is not a registered training method (registered: {', '.join(registered)}); "
                f"it may not be implemented in this checkout yet", kind="unregistered_method"))
            continue
        method = get_method(m.method)
        for env in [None] + [t.env for t in spec.tasks if t.env in m.task_options]:
            opts = {**m.options, **(m.task_options.get(env, {}) if env else {})}
            try:
                method.validate_config(opts)
            except (ValueError, TypeError, KeyError) as exc:
                where = f"methods[{j}].options" if env is None else f"methods[{j}].task_options.{env}"
                issues.append(SpecIssue(where, str(exc)))
    return bad_envs


def _run_config(spec: Spec, task, method, seed: int, layers: list[Layer]) -> dict:
    """The ``TrainConfig.to_dict()`` of one run, validated; raises ``ValueError``/``TypeError`` naming the field."""
    from parl_deep.config import ConfigError, TrainConfig

    steps = task.steps if task.steps is not None else spec.steps
    d = TrainConfig.make(task.env, preset_name=spec.preset, method=method.method, seed=seed, steps=steps).to_dict()
    for tr, sc in layers:
        d.update(tr)
        d["sac"].update(sc)
    d["method_config"] = {**method.options, **method.task_options.get(task.env, {})}
    cfg = TrainConfig.from_dict(d)
    # The fields only: the method name and its options are checked per method entry (by _check_names), where
    # a problem is reported once with the field it comes from, not once per run.
    cfg.validate()
    from parl_deep.methods import get_method, method_names
    from parl_deep.training import run_length_problems

    if cfg.method in method_names():  # an unregistered method is reported once, by _check_names
        problems = run_length_problems(cfg)
        if problems:
            raise ConfigError("; ".join(problems))
        get_method(cfg.method).check_run(cfg)  # what the options cannot do in this run
    return cfg.to_dict()


def validate_spec(spec: Spec, *, build_runs: bool = True) -> list[SpecIssue]:
    """Everything that can be checked without running: tasks, methods, and every run's TrainConfig.

    Fills ``spec.jobs`` with the runs of the grid (for the valid part of the spec). ``build_runs=False`` checks
    only task and method names (used when the spec's structure already has problems)."""
    issues: list[SpecIssue] = []
    bad_envs = _check_names(spec, issues)
    if not build_runs:
        return issues
    base = _layer(spec.train, spec.sac, "", issues)
    task_layers = {t.env: _layer(t.train, t.sac, f"tasks[{i}].", issues) for i, t in enumerate(spec.tasks)}
    method_layers = {m.name: _layer(m.train, m.sac, f"methods[{j}].", issues) for j, m in enumerate(spec.methods)}
    jobs: list[RunJob] = []
    seen_msgs: set[str] = set()
    for i, t in enumerate(spec.tasks):
        if t.env in bad_envs:
            continue
        for j, m in enumerate(spec.methods):
            for seed in spec.seeds:
                try:
                    config = _run_config(spec, t, m, seed, [base, task_layers[t.env], method_layers[m.name]])
                except (ValueError, TypeError) as exc:
                    msg = f"{t.env} x {m.name}: {exc}"
                    if msg not in seen_msgs:
                        seen_msgs.add(msg)
                        issues.append(SpecIssue(f"tasks[{i}] x methods[{j}]", str(exc)))
                    continue
                jobs.append(RunJob(run_id_for(t.env, m.name, seed), t.env, m.name, m.method, seed, config))
    # Seed-major order: a sweep stopped part-way has whole seeds of every task x method, not some cells complete
    # and others empty.
    seed_pos = {seed: k for k, seed in enumerate(spec.seeds)}
    spec.jobs = sorted(jobs, key=lambda j: seed_pos[j.seed])
    return issues


# ------------------------------------------------------------------------------------------ selection


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


# ------------------------------------------------------------------------------------------ entry points


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
    if spec is None:
        return spec, issues
    for keep, select in ((methods, select_methods), (seeds, select_seeds), (tasks, select_tasks)):
        if keep is not None:
            issues += select(spec, keep)
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
    """Parse and validate a spec given as TOML text; raises :class:`SpecError` listing every problem."""
    data = tomllib.loads(text)
    spec, issues = parse_spec(data, name=name, text=text)
    issues += validate_spec(spec, build_runs=not issues)
    if issues:
        raise SpecError(issues, name)
    return spec

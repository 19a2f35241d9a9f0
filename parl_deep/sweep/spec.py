"""The spec of a sweep as data, and its parsing: TOML tables -> :class:`Spec`, with every structural problem
(unknown or missing fields, wrong types, bad ranges, duplicates) collected as a :class:`SpecIssue` naming its field.

What needs the simulators' task lists, the method registry or the run configs is checked afterwards by
:func:`parl_deep.sweep.grid.validate_spec`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field

from parl_deep.fields import type_problem

__all__ = ["SpecIssue", "SpecError", "TaskSpec", "MethodSpec", "RunJob", "Spec", "run_id_for", "parse_spec",
           "SPEC_KEYS", "TASK_KEYS", "METHOD_KEYS"]

SPEC_KEYS = {"name", "description", "preset", "steps", "seeds", "tasks", "methods", "train", "sac",
             "cpus_per_run", "gpus_per_run"}
TASK_KEYS = {"env", "steps", "train", "sac"}
METHOD_KEYS = {"name", "method", "options", "task_options", "train", "sac"}
LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


@dataclass
class SpecIssue:
    """One problem in a spec. ``kind`` is ``"unregistered_method"`` for a method name that is not (yet) in the
    method registry (:func:`parl_deep.methods.method_names`), ``"conflict"`` for an existing run directory
    holding another config, and ``"invalid"`` for everything else."""

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


# ------------------------------------------------------------------------------------------ parsing helpers


def _is_int(v) -> bool:
    return type_problem("int", v) is None


def _is_num(v) -> bool:
    return type_problem("float", v) is None


def _unknown_keys(d: dict, valid: set[str], prefix: str, issues: list[SpecIssue]) -> None:
    for k in sorted(set(d) - valid):
        issues.append(SpecIssue(f"{prefix}{k}", f"unknown field; valid fields: {', '.join(sorted(valid))}"))


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


def _duplicates(items: list[str]) -> list[str]:
    return sorted({x for x in items if items.count(x) > 1})


def _parse_preset(data: dict, issues: list[SpecIssue]) -> str:
    preset = data.get("preset", "cpu")
    if "preset" in data:
        from parl_deep.agents.sac import PRESETS  # imports torch: only when a spec is parsed

        if preset not in PRESETS:
            issues.append(SpecIssue("preset", f"unknown preset {preset!r}; valid presets: {', '.join(PRESETS)}"))
    return preset


def _parse_seeds(data: dict, issues: list[SpecIssue]) -> list[int]:
    if "seeds" not in data:
        return []
    s = data["seeds"]
    if _is_int(s) and s > 0:
        return list(range(s))
    if isinstance(s, list) and s and all(_is_int(x) and x >= 0 for x in s):
        if len(set(s)) != len(s):
            issues.append(SpecIssue("seeds", f"seeds must be distinct, got {s!r}"))
        return list(s)
    issues.append(SpecIssue("seeds", f"must be a positive integer n (seeds 0..n-1) or a non-empty list of "
                                     f"non-negative integers, got {s!r}"))
    return []


def _entry(x, where: str, valid: set[str], what: str, issues: list[SpecIssue]) -> dict | None:
    """An entry of the ``tasks`` or ``methods`` array: a table of known keys, or None (with the issue)."""
    if not isinstance(x, dict):
        issues.append(SpecIssue(where, f"must be {what}, got {x!r}"))
        return None
    _unknown_keys(x, valid, f"{where}.", issues)
    return x


def _required_str(d: dict | None, key: str, where: str, issues: list[SpecIssue],
                  missing: str = "required field is missing") -> str | None:
    """``d[key]`` when it is a string; None (with the issue) when it is missing or not a string, or ``d`` is None."""
    if d is None:
        return None
    if key not in d:
        issues.append(SpecIssue(f"{where}.{key}", missing))
        return None
    if not isinstance(d[key], str):
        issues.append(SpecIssue(f"{where}.{key}", f"must be a string, got {d[key]!r}"))
        return None
    return d[key]


def _parse_task(t, where: str, issues: list[SpecIssue]) -> TaskSpec | None:
    t = _entry({"env": t} if isinstance(t, str) else t, where, TASK_KEYS, "an environment name or a table", issues)
    env = _required_str(t, "env", where, issues)
    if env is None:
        return None
    steps = _check_steps(t["steps"], f"{where}.steps", issues) if "steps" in t else None
    return TaskSpec(env, steps, _table(t, "train", f"{where}.", issues), _table(t, "sac", f"{where}.", issues))


def _parse_tasks(data: dict, issues: list[SpecIssue]) -> list[TaskSpec]:
    raw = data.get("tasks", [])
    if "tasks" in data and (not isinstance(raw, list) or not raw):
        issues.append(SpecIssue("tasks", f"must be a non-empty list of environment names or tables, got {raw!r}"))
        raw = []
    tasks = [t for i, x in enumerate(raw) if (t := _parse_task(x, f"tasks[{i}]", issues)) is not None]
    for e in _duplicates([t.env for t in tasks]):
        issues.append(SpecIssue("tasks", f"{e!r} is listed more than once"))
    if "steps" not in data:
        for i, t in enumerate(tasks):
            if t.steps is None:
                issues.append(SpecIssue(f"tasks[{i}].steps", f"required (no top-level `steps` is given) for {t.env}"))
    return tasks


def _parse_method(m, where: str, envs: list[str], issues: list[SpecIssue]) -> MethodSpec | None:
    m = _entry(m, where, METHOD_KEYS, "a table", issues)
    method = _required_str(m, "method", where, issues, "required field is missing (the registry name, e.g. 'oracle')")
    if method is None:
        return None
    label = m.get("name", method)
    if not isinstance(label, str) or not LABEL_RE.match(label) or "__" in label:
        issues.append(SpecIssue(f"{where}.name", f"must be a label of letters, digits and . _ + - (no '__'), "
                                                 f"got {label!r}"))
        return None
    task_options = _table(m, "task_options", f"{where}.", issues)
    for env, opts in task_options.items():
        if env not in envs:
            issues.append(SpecIssue(f"{where}.task_options.{env}", f"{env!r} is not one of the spec's tasks"))
        if not isinstance(opts, dict):
            issues.append(SpecIssue(f"{where}.task_options.{env}", f"must be a table, got {opts!r}"))
    return MethodSpec(label, method, _table(m, "options", f"{where}.", issues), task_options,
                      _table(m, "train", f"{where}.", issues), _table(m, "sac", f"{where}.", issues))


def _parse_methods(data: dict, envs: list[str], issues: list[SpecIssue]) -> list[MethodSpec]:
    raw = data.get("methods", [])
    if "methods" in data and (not isinstance(raw, list) or not raw):
        issues.append(SpecIssue("methods", "must be a non-empty array of [[methods]] tables"))
        raw = []
    methods = [m for j, x in enumerate(raw) if (m := _parse_method(x, f"methods[{j}]", envs, issues)) is not None]
    for lab in _duplicates([m.name for m in methods]):
        issues.append(SpecIssue("methods", f"two method entries have the name {lab!r}; give each a distinct `name`"))
    return methods


def _parse_resources(data: dict, issues: list[SpecIssue]) -> dict[str, float]:
    res = {}
    for k, default in (("cpus_per_run", 1), ("gpus_per_run", 0)):
        v = data.get(k, default)
        if not _is_num(v) or v < 0 or (k == "cpus_per_run" and v <= 0):
            issues.append(SpecIssue(k, f"must be a {'positive' if k == 'cpus_per_run' else 'non-negative'} number, "
                                       f"got {v!r}"))
            v = default
        res[k] = v
    return res


def parse_spec(data: dict, *, name: str = "spec", text: str | None = None,
               path: str | None = None) -> tuple[Spec | None, list[SpecIssue]]:
    """Structure and types of a spec (already read from TOML); see :func:`parl_deep.sweep.grid.validate_spec`
    for the rest."""
    issues: list[SpecIssue] = []
    _unknown_keys(data, SPEC_KEYS, "", issues)
    for k in ("preset", "seeds", "tasks", "methods"):
        if k not in data:
            issues.append(SpecIssue(k, "required field is missing"))
    spec_name = data.get("name", name)
    if not isinstance(spec_name, str) or not spec_name:
        issues.append(SpecIssue("name", f"must be a non-empty string, got {spec_name!r}"))
    preset = _parse_preset(data, issues)
    steps = _check_steps(data["steps"], "steps", issues) if "steps" in data else None
    seeds = _parse_seeds(data, issues)
    tasks = _parse_tasks(data, issues)
    methods = _parse_methods(data, [t.env for t in tasks], issues)
    res = _parse_resources(data, issues)
    if "description" in data and not isinstance(data["description"], str):
        issues.append(SpecIssue("description", "must be a string"))
    spec = Spec(name=spec_name if isinstance(spec_name, str) else name, preset=preset, seeds=seeds, tasks=tasks,
                methods=methods, steps=steps, description=str(data.get("description", "")),
                train=_table(data, "train", "", issues), sac=_table(data, "sac", "", issues),
                cpus_per_run=res["cpus_per_run"], gpus_per_run=res["gpus_per_run"], text=text, path=path)
    return spec, issues

"""Reading a ``parl bench`` directory: one :class:`Run` per run directory (its ``eval.csv``, ``run.json``,
``summary.json`` or ``config.json``), the per-session CSV logs by (task, method), and the spec's order."""
from __future__ import annotations

import csv
import math
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from parl_deep.io import CONFIG_NAME, EVAL_CSV, RUN_NAME, RUNS_DIR, SPEC_NAME, SUMMARY_NAME, read_json, run_status



class ReportError(ValueError):
    """Bad input to the report (no runs, unknown labels, bad options): a one-line error on the command line."""


@dataclass
class Run:
    run_id: str
    task: str
    method: str  # label
    method_registry: str
    seed: int
    status: str  # finished | failed | unfinished
    planned_steps: int | None
    steps: np.ndarray  # evaluation steps
    returns: np.ndarray
    success: np.ndarray | None  # Meta-World only
    error: str | None = None
    dir: str = ""

    def curve(self, metric: str) -> np.ndarray:
        if metric == "success" and self.success is not None:
            return self.success
        return self.returns


def _read_eval(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    steps, rets, succ = [], [], []
    try:
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                try:
                    steps.append(int(row["step"]))
                    rets.append(float(row["return_mean"]))
                    s = row.get("success_rate", "")
                    succ.append(float(s) if s not in ("", None) else math.nan)
                except (KeyError, ValueError, TypeError):
                    continue
    except OSError:
        pass
    succ_arr = np.array(succ, dtype=float)
    has_succ = succ_arr.size > 0 and not np.all(np.isnan(succ_arr))
    return np.array(steps, dtype=int), np.array(rets, dtype=float), (succ_arr if has_succ else None)


def load_runs(root: str | os.PathLike) -> list[Run]:
    """Every run under ``root`` (a ``parl bench`` directory, i.e. ``root/runs/*``, or a folder of run dirs)."""
    root = Path(root)
    base = root / RUNS_DIR if (root / RUNS_DIR).is_dir() else root
    runs = []
    for d in sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else []:
        meta = read_json(d / RUN_NAME)
        summary = read_json(d / SUMMARY_NAME)
        if meta:
            task, label, reg, seed = meta["task"], meta["method_name"], meta["method"], int(meta["seed"])
            planned = int(meta["config"]["steps"])
        else:
            cfg = read_json(d / CONFIG_NAME)
            if not cfg:
                continue
            task, label, reg = cfg["env"], cfg["method"], cfg["method"]
            seed, planned = int(cfg["seed"]), int(cfg["steps"])
        steps, rets, succ = _read_eval(d / EVAL_CSV)
        status = run_status(summary, planned)
        runs.append(Run(d.name, task, label, reg, seed, status, planned, steps, rets, succ,
                        (summary or {}).get("error"), str(d)))
    return runs


def _read_columns(path: Path, names: tuple[str, ...]) -> dict[str, np.ndarray] | None:
    """Numeric columns of a per-session CSV log (``aparl.csv``, ``feedback.csv``), or None without the file."""
    cols: dict[str, list[float]] = {k: [] for k in names}
    try:
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                for k in names:
                    try:
                        cols[k].append(float(row.get(k, "nan")))
                    except (TypeError, ValueError):
                        cols[k].append(math.nan)
    except OSError:
        return None
    return {k: np.array(v, dtype=float) for k, v in cols.items()}


def logs_by_cell(runs: list[Run], filename: str, names: tuple[str, ...],
                 key: str) -> dict[tuple[str, str], list[dict[str, np.ndarray]]]:
    """The per-session logs ``filename`` of the runs that have one (non-empty ``key`` column), by (task, method)."""
    logs: dict[tuple[str, str], list[dict[str, np.ndarray]]] = {}
    for r in runs:
        log = _read_columns(Path(r.dir) / filename, names) if r.dir else None
        if log is not None and log[key].size:
            logs.setdefault((r.task, r.method), []).append(log)
    return logs


def cells(tasks: list[str], methods: list[str],
          by_cell: dict[tuple[str, str], Any]) -> Iterator[tuple[str, str, Any]]:
    """``(task, method, value)`` for every non-empty cell of ``by_cell``, tasks first, in the given orders."""
    for t in tasks:
        for m in methods:
            value = by_cell.get((t, m))
            if value:
                yield t, m, value


def spec_order(root: Path) -> tuple[list[str], list[str]]:
    """The task and method labels in the order of ``root/spec.toml`` (empty lists without a readable spec)."""
    try:
        data = tomllib.loads((root / SPEC_NAME).read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return [], []
    tasks = [t if isinstance(t, str) else t.get("env") for t in data.get("tasks", [])]
    methods = [m.get("name", m.get("method")) for m in data.get("methods", []) if isinstance(m, dict)]
    return [t for t in tasks if t], [m for m in methods if m]

"""Run a selection of checks over the family and write the results."""
from __future__ import annotations

import json
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

from . import checks as registry
from .core import CheckResult, Context
from .families import family as make_family
from .report import build_document, terminal_table, validate, write_markdown


def run_suite(out: str | Path, *, quick: bool = True, seed: int = 0, only: list[str] | None = None,
              progress: bool = True, family=None, overrides: dict | None = None) -> tuple[dict, bool]:
    """Run the checks named in ``only`` (default: all); returns the results document and whether any check
    crashed. ``overrides`` maps a check name to keyword arguments of its ``run`` (used by the tests)."""
    names = list(registry.CHECKS) if not only else list(only)
    unknown = [n for n in names if n not in registry.CHECKS]
    if unknown:
        raise ValueError(f"unknown check(s) {unknown}; choose from {list(registry.CHECKS)}")
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    t0 = time.time()
    fam = make_family(quick, seed) if family is None else family
    ctx = Context(out, quick=quick, seed=seed, family=fam, progress=progress)
    results, crashed = [], {}
    for name in names:
        mod = registry.get(name)
        t = time.time()
        if progress:
            print(f"[parl verify] {name}: {registry.CHECKS[name]} ...", flush=True)
        try:
            res = mod.run(ctx, **(overrides or {}).get(name, {}))
        except Exception:  # a crash is recorded and makes the exit code nonzero
            err = traceback.format_exc()
            crashed[name] = err
            res = CheckResult(name, registry.CHECKS[name], "The check crashed; see the error.", [], [],
                              time.time() - t)
        if progress:
            print(f"[parl verify] {name}: {res.verdict if name not in crashed else 'CRASHED'} "
                  f"({time.time() - t:.1f} s)", flush=True)
        results.append(res)
    doc = build_document(results, mode="quick" if quick else "full", seed=seed, started=started,
                         runtime_s=time.time() - t0, family=fam, crashed=crashed)
    # a crashed check has no claims; mark its verdict so the document stays valid and honest
    for entry in doc["checks"]:
        if "error" in entry:
            entry["verdict"] = "fails"
    out = Path(out)
    validate(doc)
    (out / "results.json").write_text(json.dumps(doc, indent=2, allow_nan=False))
    write_markdown(doc, out / "report.md")
    return doc, bool(crashed)


def print_table(doc: dict) -> None:
    print(terminal_table(doc))

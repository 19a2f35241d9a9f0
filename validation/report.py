"""Writing the results: ``results.json`` (validated against ``schema.json``), ``report.md`` with the figures, and
the terminal summary table."""
from __future__ import annotations

import json
import platform
from importlib import resources
from pathlib import Path

from .core import FAILS, HOLDS, HOLDS_WITH_CONSTANT, CheckResult

SYMBOL = {HOLDS: "holds", FAILS: "FAILS", HOLDS_WITH_CONSTANT: "holds-with-constant"}


def load_schema() -> dict:
    return json.loads(resources.files("validation").joinpath("schema.json").read_text())


def validate(doc: dict) -> None:
    """Raise jsonschema.ValidationError if ``doc`` does not follow the schema."""
    import jsonschema
    jsonschema.validate(doc, load_schema())


def build_document(results: list[CheckResult], *, mode: str, seed: int, started: str, runtime_s: float,
                   family: list, crashed: dict[str, str]) -> dict:
    from . import __version__
    counts = {HOLDS: 0, FAILS: 0, HOLDS_WITH_CONSTANT: 0}
    for r in results:
        for c in r.claims:
            counts[c.verdict] += 1
    checks = []
    for r in results:
        entry = r.to_json()
        if r.name in crashed:
            entry["error"] = crashed[r.name]
        checks.append(entry)
    return {"tool": "parl verify", "version": __version__, "mode": mode, "seed": seed, "started": started,
            "runtime_s": round(runtime_s, 2), "python": platform.python_version(),
            "family": [c.settings() for c in family],
            "summary": {**counts, "crashed": len(crashed)}, "checks": checks}


def _fmt(x) -> str:
    if isinstance(x, float):
        return f"{x:.4g}"
    if isinstance(x, dict):
        return ", ".join(f"{k}: {_fmt(v)}" for k, v in x.items())
    if isinstance(x, list):
        return "[" + ", ".join(_fmt(v) for v in x) + "]"
    return str(x)


def _key_number(claim: dict) -> str:
    m = claim["measured"]
    if claim.get("constant") is not None and claim["verdict"] == HOLDS_WITH_CONSTANT:
        return f"C = {_fmt(claim['constant'])}"
    for k in ("fastest", "max_rel_error", "max_ratio_divergence_over_bound", "max_ratio", "fitted_slope", "fitted_beta",
              "max_violation", "growth_factor", "mean_difference"):
        if k in m:
            return f"{k} = {_fmt(m[k])}"
    k, v = next(iter(m.items()))
    return f"{k} = {_fmt(v)}"


def write_markdown(doc: dict, path: Path) -> None:
    s = doc["summary"]
    lines = [
        "# `parl verify`: the lemmas, theorem and gradient formulas of PARL on exact oracles", "",
        f"Mode **{doc['mode']}**, seed {doc['seed']}, started {doc['started']}, ran {doc['runtime_s']:.0f} s "
        f"(Python {doc.get('python', '?')}). Every verdict is computed from the measured numbers: `holds` (the "
        "stated inequality/identity holds on every sampled case), `fails` (a sampled case violates it; a "
        "counterexample `.npz` reproduces it), `holds-with-constant` (the paper leaves the constant open; the "
        "smallest constant that works on the sample is reported). A `fails` is a finding about the paper's claim, "
        "not a crash of the suite.", "",
        f"**{s['holds']} hold, {s['holds-with-constant']} hold with a measured constant, {s['fails']} fail**"
        + (f", {s['crashed']} check(s) crashed." if s["crashed"] else "."), "",
        "## Summary", "", "| check | claim | verdict | key number |", "|---|---|---|---|"]
    for ch in doc["checks"]:
        for c in ch["claims"]:
            claim = c["claim"].replace("|", "\\|")
            if len(claim) > 110:
                claim = claim[:107] + "..."
            lines.append(f"| {ch['name']} | `{c['id']}`: {claim} | **{SYMBOL[c['verdict']]}** | "
                         f"{_key_number(c).replace('|', '/')} |")
        if "error" in ch:
            lines.append(f"| {ch['name']} | (crashed) | **CRASHED** | {ch['error'][:80]} |")
    lines += ["", "## The MDP family", "", "| case | kind | S | A | gamma | temperature | n_params |",
              "|---|---|---|---|---|---|---|"]
    for f in doc["family"]:
        lines.append(f"| {f['case']} | {f['kind']} | {f['S']} | {f['A']} | {f['gamma']} | {f['temperature']} | "
                     f"{f['n_params']} |")
    for ch in doc["checks"]:
        lines += ["", f"## {ch['title']}", "", f"Verdict: **{SYMBOL[ch['verdict']]}** ({ch['runtime_s']:.1f} s). "
                  + ch["summary"], ""]
        if "error" in ch:
            lines += ["```", ch["error"], "```", ""]
        for fig in ch["figures"]:
            lines += [f"![{fig['caption']}]({fig['path']})", "", f"*{fig['caption']}*", ""]
        for c in ch["claims"]:
            lines += [f"### `{c['id']}`: {SYMBOL[c['verdict']]}", "", c["claim"], ""]
            if c.get("constant") is not None:
                lines.append(f"- constant: **{_fmt(c['constant'])}** ({c.get('constant_meaning') or ''})")
            for k, v in c["measured"].items():
                if isinstance(v, dict) and len(v) > 8:
                    v = dict(list(v.items())[:8]) | {"...": f"{len(v) - 8} more in results.json"}
                lines.append(f"- {k}: {_fmt(v)}")
            if c.get("corrected"):
                cc = c["corrected"]
                lines.append(f"- corrected expression: `{cc['expression']}`; its max relative error "
                             f"{_fmt(cc['max_rel_error'])} (max abs {_fmt(cc['max_abs_error'])}): **{cc['verdict']}**")
            if c.get("counterexample"):
                lines.append(f"- counterexample: `{c['counterexample']}` (load with `TabularMDP.load` and "
                             "`parl_core.mdp.load_extras`)")
            if c.get("notes"):
                lines.append(f"- note: {c['notes']}")
            st = {k: v for k, v in c["settings"].items()}
            if st:
                lines.append(f"- settings: {_fmt(st)}")
            lines.append("")
    path.write_text("\n".join(lines) + "\n")


def terminal_table(doc: dict) -> str:
    rows = [("check", "claim", "verdict", "key number")]
    for ch in doc["checks"]:
        for c in ch["claims"]:
            cid = c["id"][len(ch["name"]) + 1:] if c["id"].startswith(ch["name"] + ".") else c["id"]
            rows.append((ch["name"], cid, SYMBOL[c["verdict"]], _key_number(c)[:48]))
        if "error" in ch:
            rows.append((ch["name"], "(crashed)", "CRASHED", ch["error"].splitlines()[-1][:48]))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    out = []
    for j, r in enumerate(rows):
        out.append("  ".join(x.ljust(w) for x, w in zip(r, widths)))
        if j == 0:
            out.append("  ".join("-" * w for w in widths))
    s = doc["summary"]
    out.append("")
    out.append(f"{s['holds']} hold, {s['holds-with-constant']} hold with a measured constant, {s['fails']} fail, "
               f"{s['crashed']} crashed; {doc['runtime_s']:.0f} s")
    return "\n".join(out)

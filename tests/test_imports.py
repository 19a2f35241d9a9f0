"""The import structure: every module imports on its own, there is no module-level import cycle among the
project's modules, and imports only run down the layers of docs/architecture.md."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("parl_core", "parl_deep", "validation", "parl_cli")

# parl_deep and parl_cli layers, highest first: a module may import only from its own layer or below.
LAYERS = [
    ("parl_cli",),
    ("parl_deep.sweep", "parl_deep.report"),
    ("parl_deep.training",),
    ("parl_deep.methods.",),  # the method files (leaves)
    ("parl_deep.methods",),  # the registry and the base class
    ("parl_deep.",),  # base pieces: config, fields, io, envs, nets, replay, agents, preference, checkpoint
]


def modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((REPO / pkg).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def imports_of(name: str, path: Path, known: set[str], *, module_level_only: bool) -> set[str]:
    """Project modules that ``name`` imports by name (skipping ``if TYPE_CHECKING:`` blocks; with
    ``module_level_only``, also skipping imports inside functions)."""
    tree = ast.parse(path.read_text())
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()

    def visit(nodes):
        for node in nodes:
            if isinstance(node, ast.If) and _is_type_checking(node):
                visit(node.orelse)
                continue
            if module_level_only and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    pkg = name.split(".") if is_pkg else name.split(".")[:-1]
                    pkg = pkg[:len(pkg) - node.level + 1]
                    base = ".".join(pkg + ([base] if base else []))
                for a in node.names:  # `from pkg import sub` needs the module pkg.sub, `from pkg import x` pkg
                    found.add(f"{base}.{a.name}" if f"{base}.{a.name}" in known else base)
            visit(ast.iter_child_nodes(node))

    visit(tree.body)
    # (the implicit import of a module's parent packages is no edge: Python initialises them first)
    out = found
    return {m for m in out if m in known and m != name}


def graph(module_level_only: bool) -> dict[str, set[str]]:
    mods = modules()
    return {n: imports_of(n, p, set(mods), module_level_only=module_level_only) for n, p in mods.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in g:
        if v not in index:
            strong(v)
    return out


def layer(mod: str) -> int | None:
    for i, prefixes in enumerate(LAYERS):
        for p in prefixes:
            if (p.endswith(".") and mod.startswith(p)) or mod == p or mod.startswith(p + "."):
                return i
    return None


def test_the_cycle_finder_finds_a_planted_cycle():
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(g) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_level_import_cycle():
    assert cycles(graph(module_level_only=True)) == []


def test_imports_run_down_the_layers():
    bad = []
    for mod, deps in graph(module_level_only=False).items():
        if mod == "parl_deep" or layer(mod) is None:  # the package's lazy public API sits above everything
            continue
        for dep in deps:
            if dep == "parl_deep":
                continue
            if layer(dep) is not None and layer(dep) < layer(mod):
                bad.append(f"{mod} imports {dep}")
    assert bad == []


def test_core_imports_nothing_else_of_the_project():
    bad = [f"{m} imports {d}" for m, deps in graph(module_level_only=False).items() if m.startswith("parl_core")
           for d in deps if not d.startswith("parl_core")]
    assert bad == []


def test_every_module_imports_on_its_own():
    """Each module in an interpreter where no other project module has been imported yet (project modules are
    dropped from ``sys.modules`` before each import, so a cycle that only works in one order fails here)."""
    names = sorted(modules())
    code = f"""
import importlib, sys, traceback
bad = []
for name in {names!r}:
    for m in [m for m in sys.modules if m.split('.')[0] in {PACKAGES!r}]:
        del sys.modules[m]
    try:
        importlib.import_module(name)
    except Exception:
        bad.append(name + ': ' + traceback.format_exc().strip().splitlines()[-1])
print('\\n'.join(bad))
"""
    env = {"OMP_NUM_THREADS": "1", "MUJOCO_GL": "disabled", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=600,
                         env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


@pytest.mark.parametrize("module", ["parl_deep.methods.pebble", "parl_deep.methods.aparl", "parl_deep.training"])
def test_a_method_module_imports_first_in_a_fresh_interpreter(module):
    """The import of issue 12's report: ``import parl_deep.pebble`` failed on a partially initialised module."""
    out = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=REPO, capture_output=True, text=True,
                         timeout=300, env={"OMP_NUM_THREADS": "1", "MUJOCO_GL": "disabled", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr

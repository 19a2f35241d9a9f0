"""The device comes from the config everywhere (CI has no GPU, so this is what can be checked on a CPU): no
tensor of the deep backend is created without a device, except where a module is built on the CPU and then moved."""
from __future__ import annotations

import ast
from pathlib import Path

from .fixtures import REPO

CONSTRUCTORS = {"zeros", "ones", "eye", "arange", "randn", "rand", "randint", "tensor", "empty", "full", "linspace"}
# module parameters built on the CPU and moved with .to(device) by their owner; a warm-up import
ALLOWED = {("parl_deep/agents/fused.py", "__init__"), ("parl_deep/sweep/backends.py", "_preload")}


def _calls_without_device(path: Path):
    tree = ast.parse(path.read_text())
    for fn in [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]:
        for node in ast.walk(fn):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch"
                    and node.func.attr in CONSTRUCTORS
                    and not any(k.arg == "device" for k in node.keywords)):
                parent_to = False  # torch.randn(...).to(device) counts as placed
                for outer in ast.walk(fn):
                    if (isinstance(outer, ast.Call) and isinstance(outer.func, ast.Attribute)
                            and outer.func.attr == "to" and outer.func.value is node):
                        parent_to = True
                if not parent_to:
                    yield fn.name, node.lineno


def test_no_tensor_is_created_without_a_device():
    bad = []
    for path in sorted((REPO / "parl_deep").rglob("*.py")):
        rel = str(path.relative_to(REPO))
        for fn, line in _calls_without_device(path):
            if (rel, fn) not in ALLOWED:
                bad.append(f"{rel}:{line} in {fn}")
    assert bad == []


def test_the_scanner_finds_a_planted_constructor(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("import torch\ndef f(x):\n    a = torch.zeros(3)\n    b = torch.ones(2, device=x.device)\n"
                 "    c = torch.randn(4).to(x.device)\n    return a, b, c\n")
    assert list(_calls_without_device(f)) == [("f", 3)]

"""One home for what every config dataclass needs: declared constraints, a strict ``from_dict``, one field check,
field docstrings, and the difference of two saved configs.

A config is a plain dataclass (CleanRL style) whose fields carry a docstring on the line below them; the docstring
is the field's ``--help`` text (:func:`field_docs` reads it from the source). Constraints are declared once with
:func:`opt` and enforced by :func:`check_fields`; the CLI, ``parl bench`` and ``TrainConfig.validate`` all go
through it, so a bad value gets the same message wherever it comes from::

    @dataclass
    class Example:
        batch: int = opt(256, low=1)
        \"\"\"minibatch size\"\"\"
        teacher: str = opt("oracle", choices=("oracle", "noisy"))
        \"\"\"simulated teacher preset\"\"\"

This module imports nothing else of the project (it is the base of the import graph).
"""
from __future__ import annotations

import ast
import dataclasses
import inspect
import math
import re
import textwrap
from typing import Any, Callable, Iterable

__all__ = ["ConfigError", "opt", "check_fields", "from_dict", "field_docs", "type_problem", "config_diff",
           "field_meta", "DEVICE_PATTERN"]

# a torch device a run can name: the CPU or one CUDA device (``(pattern, what it means)`` for :func:`opt`)
DEVICE_PATTERN = (r"cpu|cuda(:\d+)?", "'cpu', 'cuda' or 'cuda:N'")


class ConfigError(ValueError):
    """Bad user input (reported by the CLI as a one-line error, without a traceback)."""


def opt(default: Any = dataclasses.MISSING, *, factory: Callable[[], Any] | None = None, low: float | None = None,
        high: float | None = None, low_open: bool = False, high_open: bool = False,
        choices: Iterable[str] | Callable[[], Iterable[str]] | None = None, extensible: bool = False,
        pattern: tuple[str, str] | None = None, flag: bool = False) -> Any:
    """A dataclass field with declared constraints (checked by :func:`check_fields`).

    ``low``/``high`` bound numbers (``low_open``/``high_open`` exclude the bound); ``choices`` is the set of valid
    strings (or a function returning it, for registries that fill in lazily), to which ``extensible`` adds any
    ``"module:attr"`` (a user's own class, checked when it is loaded); ``pattern`` is ``(regex, description)`` a
    string must match in full; ``flag`` asks ``parl train`` to
    offer the field as a ``--flag`` of its own (every field is settable with ``--set``)."""
    meta = {"low": low, "high": high, "low_open": low_open, "high_open": high_open, "choices": choices,
            "extensible": extensible, "pattern": pattern, "flag": flag}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def field_meta(f: dataclasses.Field) -> dict:
    return {"low": None, "high": None, "low_open": False, "high_open": False, "choices": None, "extensible": False,
            "pattern": None, "flag": False, **dict(f.metadata)}


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def type_problem(annotation: str, v: Any) -> str | None:
    """What is wrong with ``v`` for a field annotated ``annotation`` (a string: the configs use postponed
    annotations), or None. Integers are accepted for ``float`` fields; bools are never numbers."""
    a = str(annotation).replace(" ", "")
    nullable = a.endswith("|None")
    if nullable and v is None:
        return None
    a = a.removesuffix("|None")
    if a == "int":
        return None if _is_int(v) else f"must be an integer{' or null' if nullable else ''}, got {v!r}"
    if a == "float":
        if not _is_num(v) or (isinstance(v, float) and math.isnan(v)):
            return f"must be a number{' or null' if nullable else ''}, got {v!r}"
        return None
    if a == "bool":
        return None if isinstance(v, bool) else f"must be true or false, got {v!r}"
    if a == "str":
        return None if isinstance(v, str) else f"must be a string{' or null' if nullable else ''}, got {v!r}"
    if a.startswith("tuple[float,float]"):
        ok = isinstance(v, (list, tuple)) and len(v) == 2 and all(_is_num(x) for x in v)
        return None if ok else f"must be a list of two numbers, got {v!r}"
    if a.startswith("dict"):
        return None if isinstance(v, dict) else f"must be a table, got {v!r}"
    return None


def _range_text(a: str, m: dict) -> str:
    low, high = m["low"], m["high"]
    integer = a.replace(" ", "").removesuffix("|None") == "int"
    if high is None and low is not None:
        if low == 0 and m["low_open"]:
            return "a positive number"
        if integer and low == 1:
            return "a positive integer"
        if integer and low == 0:
            return "a non-negative integer"
        if low == 0:
            return "a non-negative number"
        return f"{'>' if m['low_open'] else '>='} {low}"
    lo = "(" if m["low_open"] else "["
    hi = ")" if m["high_open"] else "]"
    return f"in {lo}{'-inf' if low is None else low}, {'inf' if high is None else high}{hi}"


def _out_of_range(v: float, m: dict) -> bool:
    low, high = m["low"], m["high"]
    if low is not None and (v < low or (m["low_open"] and v == low)):
        return True
    if high is not None and (v > high or (m["high_open"] and v == high)):
        return True
    return False


def check_fields(obj: Any, where: str = "") -> None:
    """Raise :class:`ConfigError` naming the first field of dataclass ``obj`` whose value has the wrong type,
    lies outside its declared range or is not one of its choices. ``where`` prefixes the field name
    (``"sac."``, ``"pebble: "``). Nested dataclasses are checked with ``"<name>."`` added to the prefix."""
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if dataclasses.is_dataclass(v):
            check_fields(v, f"{where}{f.name}.")
            continue
        problem = type_problem(str(f.type), v)
        if problem:
            raise ConfigError(f"{where}{f.name} {problem}")
        if v is None:
            continue
        m = field_meta(f)
        if m["choices"] is not None and not (m["extensible"] and isinstance(v, str) and ":" in v):
            choices = list(m["choices"]() if callable(m["choices"]) else m["choices"])
            if v not in choices:
                more = " or module:Class" if m["extensible"] else ""
                raise ConfigError(f"{where}{f.name} must be one of {', '.join(map(str, choices))}{more}, got {v!r}")
        if m["pattern"] is not None and isinstance(v, str) and not re.fullmatch(m["pattern"][0], v):
            raise ConfigError(f"{where}{f.name} must be {m['pattern'][1]}, got {v!r}")
        if (m["low"] is not None or m["high"] is not None) and _is_num(v) and _out_of_range(v, m):
            raise ConfigError(f"{where}{f.name} must be {_range_text(str(f.type), m)}, got {v!r}")


def from_dict(cls: type, d: Any, noun: str) -> Any:
    """``cls(**d)`` for a dataclass ``cls``, strictly: ``d`` must be a mapping with known keys only (the error
    names ``noun``, e.g. "SAC config key"); nested dataclass fields are built from their own mappings and list
    values of tuple fields become tuples. Values are not range-checked here (see :func:`check_fields`)."""
    if not isinstance(d, dict):
        raise ConfigError(f"{noun.rsplit(' ', 1)[0]} must be a mapping, got {type(d).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - set(fields))
    if unknown:
        raise ConfigError(f"unknown {noun}(s) {unknown}; valid: {', '.join(fields)}")
    kwargs = dict(d)
    for name, v in d.items():
        ann = str(fields[name].type)
        nested = _nested_dataclass(cls, name)
        if nested is not None:
            kwargs[name] = from_dict(nested, v, f"{name} config key")
        elif ann.replace(" ", "").startswith("tuple[") and isinstance(v, list):
            kwargs[name] = tuple(v)
    return cls(**kwargs)


def _nested_dataclass(cls: type, name: str) -> type | None:
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        proto = f.default_factory()  # type: ignore[misc]
        if dataclasses.is_dataclass(proto):
            return type(proto)
    return None


def field_docs(cls: type) -> dict[str, str]:
    """``{field name: docstring}`` for a dataclass whose fields have a string literal on the line below them
    (the docstrings of base classes included; a subclass's wins)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for stmt, nxt in zip(body, body[1:]):
            if (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
                    and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                    and isinstance(nxt.value.value, str)):
                docs[stmt.target.id] = " ".join(nxt.value.value.split())
    return docs


def config_diff(a: dict, b: dict) -> list[str]:
    """Dotted names of the entries in which two saved configs differ (``method_config`` compared as a whole)."""
    out = []
    for k in sorted(set(a) | set(b)):
        if isinstance(a.get(k), dict) and isinstance(b.get(k), dict) and k != "method_config":
            out += [f"{k}.{x}" for x in config_diff(a[k], b[k])]
        elif a.get(k) != b.get(k):
            out.append(k)
    return out

"""Extension points that need no edit to the package: Python entry points and ``"module:attr"`` targets.

A package that ships a method or a teacher declares it in its own ``pyproject.toml``::

    [project.entry-points."parl_bilevel.methods"]
    my-method = "my_pkg.methods:MyMethod"

    [project.entry-points."parl_bilevel.teachers"]
    my-teacher = "my_pkg.teachers:MyTeacher"

Once installed (or once its ``*.dist-info`` is on the path), ``parl train --method my-method --teacher
my-teacher``, ``--resume`` and ``parl bench`` find them through :mod:`importlib.metadata`.
"""
from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

__all__ = ["METHODS_GROUP", "TEACHERS_GROUP", "entry_point_targets", "load_target"]

METHODS_GROUP = "parl_bilevel.methods"
TEACHERS_GROUP = "parl_bilevel.teachers"


def entry_point_targets(group: str) -> dict[str, str]:
    """``{name: "module:attr"}`` of the installed entry points of ``group``."""
    return {ep.name: ep.value for ep in entry_points(group=group)}


def load_target(target: str) -> Any:
    """The object named by ``"module:attr"`` (``attr`` may be dotted), importing the module."""
    module, sep, attr = target.partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"expected 'module:attr', got {target!r}")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj

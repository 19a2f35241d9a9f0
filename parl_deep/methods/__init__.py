"""The method registry: ``parl train --method NAME`` looks the method up here, lazily.

Like dm_control's suite, the registry names every method's module and class as a string and imports a method's
module only when that method is asked for; method files never import this registry. A method is a subclass of
:class:`parl_deep.methods.base.Method` with a ``name`` class attribute (see that module for the hooks).

Add a method to the project: write ``parl_deep/methods/<name>.py`` and add one line to ``BUILTIN`` below. Add
one from your own code without editing the package: ``register("my-method", "my_pkg.module:MyMethod")`` (or the
class itself) before calling :func:`parl_deep.training.train`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from parl_deep.fields import ConfigError
from parl_deep.plugins import METHODS_GROUP, entry_point_targets, load_target

if TYPE_CHECKING:  # pragma: no cover
    from parl_deep.methods.base import Method

__all__ = ["BUILTIN", "UnknownMethodError", "register", "method_names", "get_method"]

# name -> "module:Class"
BUILTIN: dict[str, str] = {
    "oracle": "parl_deep.methods.oracle:OracleMethod",
    "pebble": "parl_deep.methods.pebble:PEBBLEMethod",
    "pebble-surf": "parl_deep.methods.pebble_surf:PEBBLESURFMethod",
    "a-parl": "parl_deep.methods.aparl:APARLMethod",
}

_REGISTRY: dict[str, "str | type[Method]"] = dict(BUILTIN)
_discovered = False


def _discover() -> None:
    """Add the installed entry points (once; a name the project or ``register`` already uses keeps its class)."""
    global _discovered
    if not _discovered:
        _discovered = True
        for name, target in entry_point_targets(METHODS_GROUP).items():
            _REGISTRY.setdefault(name, target)


class UnknownMethodError(ConfigError):
    """A method name that is not in the registry."""


def register(name: str, target: "str | type[Method]") -> None:
    """Register a method under ``name``: a class, or ``"module:Class"`` to import when it is first used."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"a method name must be a non-empty string, got {name!r}")
    if isinstance(target, str) and ":" not in target:
        raise ValueError(f"register({name!r}, {target!r}): expected 'module:Class'")
    _REGISTRY[name] = target


def method_names() -> list[str]:
    """Every registered method name (built in, entry points, ``register``), sorted."""
    _discover()
    return sorted(_REGISTRY)


def get_method(name: str) -> "type[Method]":
    """The method class registered under ``name`` (its module is imported now, if it was not before)."""
    _discover()
    if name not in _REGISTRY:
        raise UnknownMethodError(f"unknown method {name!r}; valid methods: {', '.join(method_names())}")
    target = _REGISTRY[name]
    if isinstance(target, str):
        target = load_target(target)
        _REGISTRY[name] = target
    return target

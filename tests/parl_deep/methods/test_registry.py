"""The lazy method registry: names to classes, imported on first use; user registration; clear errors."""
from __future__ import annotations

import subprocess
import sys

import pytest

from parl_deep.methods import BUILTIN, UnknownMethodError, get_method, method_names, register
from parl_deep.methods.base import Method


def test_builtin_names_resolve_to_classes_with_that_name():
    assert method_names() == sorted(BUILTIN) == ["a-parl", "oracle", "pebble", "pebble-surf"]
    for name in BUILTIN:
        cls = get_method(name)
        assert issubclass(cls, Method) and cls.name == name


def test_the_registry_imports_no_method_until_asked():
    code = ("import sys, parl_deep.methods as m; assert not any(k.startswith('parl_deep.methods.') and "
            "k != 'parl_deep.methods.base' for k in sys.modules), sorted(sys.modules); m.get_method('pebble'); "
            "assert 'parl_deep.methods.pebble' in sys.modules")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr


def test_unknown_names_and_bad_registrations_are_errors():
    with pytest.raises(UnknownMethodError, match="unknown method 'nope'; valid methods: a-parl, oracle"):
        get_method("nope")
    with pytest.raises(ValueError, match="module:Class"):
        register("x", "no_colon")


def test_a_method_registered_from_user_code_is_found(monkeypatch):
    import parl_deep.methods as registry

    class Mine(Method):
        name = "mine"

    monkeypatch.setitem(registry._REGISTRY, "mine", Mine)
    assert get_method("mine") is Mine and "mine" in method_names()
    monkeypatch.setitem(registry._REGISTRY, "lazy", "parl_deep.methods.oracle:OracleMethod")
    assert get_method("lazy").__name__ == "OracleMethod"


def test_a_method_without_options_rejects_options():
    get_method("oracle").validate_config({})
    with pytest.raises(ValueError, match="method 'oracle' takes no options, got \\['x'\\]"):
        get_method("oracle").validate_config({"x": 1})

"""Config dataclass helpers: declared constraints, strict from_dict, field docstrings and config diffs."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from parl_deep.agents.sac import SACConfig
from parl_deep.config import TrainConfig
from parl_deep.fields import ConfigError, check_fields, config_diff, field_docs, from_dict, opt, type_problem


@dataclass
class Inner:
    rate: float = opt(0.5, low=0.0, high=1.0, high_open=True)
    """a rate in [0, 1)"""


@dataclass
class Example:
    n: int = opt(3, low=1)
    """how many"""
    k: int | None = opt(None, low=0)
    """optional count"""
    name: str = opt("a", choices=("a", "b"))
    """one of two"""
    pair: tuple[float, float] = (0.1, 0.2)
    flag: bool = False
    inner: Inner = field(default_factory=Inner)


@pytest.mark.parametrize("kw,needle", [
    ({"n": 0}, "x.n must be a positive integer, got 0"),
    ({"n": 2.0}, "x.n must be an integer, got 2.0"),
    ({"n": True}, "x.n must be an integer, got True"),
    ({"k": -1}, "x.k must be a non-negative integer, got -1"),
    ({"k": "3"}, "x.k must be an integer or null, got '3'"),
    ({"name": "c"}, "x.name must be one of a, b, got 'c'"),
    ({"flag": 1}, "x.flag must be true or false, got 1"),
    ({"pair": (1, "x")}, "x.pair must be a list of two numbers"),
    ({"inner": Inner(rate=1.0)}, "x.inner.rate must be in [0.0, 1.0), got 1.0"),
    ({"inner": Inner(rate=math.nan)}, "x.inner.rate must be a number, got nan"),
])
def test_check_fields_names_the_field_and_the_problem(kw, needle):
    with pytest.raises(ConfigError) as e:
        check_fields(Example(**kw), "x.")
    assert str(e.value) == needle or needle in str(e.value)


def test_valid_values_pass_and_ints_are_numbers():
    check_fields(Example(n=1, k=None, name="b", pair=(1, 2), flag=True, inner=Inner(rate=0)))


@given(st.integers(-5, 5))
def test_low_bound_is_exactly_the_boundary(n):
    ok = n >= 1
    try:
        check_fields(Example(n=n))
    except ConfigError:
        assert not ok
    else:
        assert ok


def test_from_dict_is_strict_and_builds_nested_and_tuples():
    got = from_dict(Example, {"n": 2, "pair": [3, 4], "inner": {"rate": 0.25}}, "example option")
    assert got == Example(n=2, pair=(3.0, 4.0), inner=Inner(rate=0.25))
    with pytest.raises(ConfigError, match=r"unknown example option\(s\) \['bogus'\]; valid: n, k, name"):
        from_dict(Example, {"bogus": 1}, "example option")
    with pytest.raises(ConfigError, match="example must be a mapping"):
        from_dict(Example, [1], "example option")


def test_field_docs_read_the_docstring_below_each_field():
    assert field_docs(Example) == {"n": "how many", "k": "optional count", "name": "one of two"}
    docs = field_docs(SACConfig)
    assert docs["discount"].startswith("discount factor") and set(docs) >= {"hidden_dim", "seed_steps"}
    assert "seed of every random stream" in field_docs(TrainConfig)["seed"]


def test_every_shipped_config_field_has_a_docstring():
    from parl_deep.methods.aparl import APARLConfig
    from parl_deep.methods.pebble_surf import PEBBLESURFConfig
    from parl_deep.preference.surf import SURFConfig

    for cls in (TrainConfig, SACConfig, APARLConfig, PEBBLESURFConfig, SURFConfig):
        missing = [f for f in cls.__dataclass_fields__ if f not in field_docs(cls)]
        assert missing == [], cls.__name__


def test_type_problem_and_config_diff():
    assert type_problem("int | None", None) is None
    assert type_problem("float", 3) is None and type_problem("float", "3") is not None
    a = {"seed": 0, "sac": {"batch_size": 1, "discount": 0.9}, "method_config": {"x": 1}}
    b = {"seed": 1, "sac": {"batch_size": 2, "discount": 0.9}, "method_config": {"x": 2}, "new": 1}
    assert config_diff(a, b) == ["method_config", "new", "sac.batch_size", "seed"]
    assert config_diff(a, a) == []


def test_train_config_round_trips_and_validates():
    cfg = TrainConfig.make("dmc:walker-walk", seed=3)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    cfg.sac.discount = 1.5
    with pytest.raises(ConfigError, match=r"sac.discount must be in \(0.0, 1.0\], got 1.5"):
        cfg.validate()

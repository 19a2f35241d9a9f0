"""What every ``parl`` command shares: the one error helper, comma-separated lists, ``--set KEY=VALUE``, and
command-line flags and help text built from config dataclasses (their field docstrings, defaults and choices)."""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any

__all__ = ["fail", "comma_list", "comma_ints", "parse_value", "apply_overrides", "add_field_flags",
           "describe_fields", "flag_dest", "missing_extra"]

EXTRAS_HINT = "EXTRAS=deep,bench bash scripts/setup.sh"


def fail(command: str, msg: str) -> int:
    """Print ``parl COMMAND: error: MSG`` (one line) to stderr and return the exit status 2."""
    print(f"parl {command}: error: {' '.join(str(msg).split())}", file=sys.stderr)
    return 2


# the optional dependency groups of pyproject.toml, by top-level module
EXTRA_OF = {"gymnasium": "deep", "dm_control": "deep", "metaworld": "deep", "mujoco": "deep", "tensorboard": "deep",
            "rliable": "bench", "pandas": "bench", "ray": "bench", "stable_baselines3": "bench", "torchopt": "bench"}


def extra_for(module: str | None) -> str:
    """The extra that installs ``module`` (``deep,bench`` when it is not one the project knows)."""
    return EXTRA_OF.get((module or "").split(".")[0], "deep,bench")


def missing_extra(exc: ModuleNotFoundError, extra: str | None = None) -> str:
    """The one-line message for a missing optional dependency: which module, and which extra brings it."""
    extra = extra or extra_for(exc.name)
    return (f"this command needs the optional dependency {exc.name!r} (extra {extra!r}); install it with "
            f"EXTRAS={extra} bash scripts/setup.sh, or pip install 'parl-bilevel[{extra}]'")


def comma_list(text: str | None) -> list[str] | None:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``; None or empty -> None (= no selection)."""
    if not text:
        return None
    return [x.strip() for x in text.split(",") if x.strip()] or None


def comma_ints(text: str | None, flag: str) -> list[int] | None:
    """``"0,1,2"`` -> ``[0, 1, 2]``; raises ``ValueError`` naming ``flag`` for anything else."""
    items = comma_list(text)
    if items is None:
        return None
    try:
        return [int(x) for x in items]
    except ValueError:
        raise ValueError(f"{flag} must be comma-separated integers, got {text!r}") from None


def parse_value(text: str) -> Any:
    """A ``--set`` value: JSON when it parses (numbers, true/false, null, lists), else the string itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def apply_overrides(d: dict, overrides: list[str], free_sections: tuple[str, ...] = ("method_config",)) -> dict:
    """Apply ``KEY=VALUE`` items (dotted keys into sections) to the nested dict ``d``, in place.

    Keys must exist, except directly inside a section of ``free_sections`` (checked by its owner later)."""
    from parl_deep.fields import ConfigError

    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        target = d
        parts = key.split(".")
        for p in parts[:-1]:
            if not isinstance(target.get(p), dict):
                raise ConfigError(f"--set {key}: {p!r} is not a config section")
            target = target[p]
        if parts[-1] not in target and ".".join(parts[:-1]) not in free_sections:
            raise ConfigError(f"--set {key}: unknown config field; valid here: {', '.join(sorted(target))}")
        target[parts[-1]] = parse_value(value)
    return d


def flag_dest(name: str) -> str:
    return name.replace("-", "_")


def _choices(meta: dict) -> list[str] | None:
    c = meta.get("choices")
    if c is None:
        return None
    return list(c() if callable(c) else c)


def _shown(default: Any) -> str:
    """A default as the help shows it: strings as they are, everything else as JSON (null, true, 0.5)."""
    return default if isinstance(default, str) else json.dumps(default)


def _arg_type(annotation: str):
    a = str(annotation).replace(" ", "").removesuffix("|None")
    nullable = str(annotation).replace(" ", "").endswith("|None")

    def convert(text: str):
        if nullable and text.lower() in ("none", "null", "all"):
            return None
        return {"int": int, "float": float}.get(a, str)(text)

    convert.__name__ = a  # argparse names the type in its error message
    return convert


def add_field_flags(group, cls: type, *, exclude: tuple[str, ...] = ()) -> list[str]:
    """Add ``--field-name`` options to ``group`` for the fields of dataclass ``cls`` marked ``flag=True``. Help text
    is the field's docstring and its default, the metavar its choices. Every option defaults to None (= not
    given). Returns the field names added."""
    from parl_deep.fields import field_docs, field_meta

    docs, added = field_docs(cls), []
    for f in dataclasses.fields(cls):
        meta = field_meta(f)
        if f.name in exclude or not meta["flag"]:
            continue
        kwargs: dict[str, Any] = {"default": None, "dest": flag_dest(f.name),
                                  "help": f"{docs.get(f.name) or f.name} [default: {_shown(f.default)}]"}
        if str(f.type) == "bool":
            kwargs["type"] = lambda t: t.lower() in ("1", "true", "yes")
            kwargs["metavar"] = "true|false"
        else:
            kwargs["type"] = _arg_type(str(f.type))
            kwargs["metavar"] = "|".join(_choices(meta)) if _choices(meta) else f.name.upper()
        group.add_argument(f"--{f.name.replace('_', '-')}", **kwargs)
        added.append(f.name)
    return added


def describe_fields(cls: type, prefix: str, *, exclude: tuple[str, ...] = ()) -> str:
    """One line per field of dataclass ``cls``: ``PREFIX.name = default  docstring (choices)``, for epilogs."""
    from parl_deep.fields import field_docs, field_meta

    docs, lines = field_docs(cls), []
    for f in dataclasses.fields(cls):
        if f.name in exclude:
            continue
        default = f.default if f.default is not dataclasses.MISSING else "(see below)"
        choices = _choices(field_meta(f))
        doc = docs.get(f.name, "") + (f" (choices: {', '.join(map(str, choices))})" if choices else "")
        lines.append(f"  {prefix}{f.name} = {_shown(default)}\n      {doc}")
    return "\n".join(lines)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the hand-laid description and epilog; wraps option help as usual."""

"""Argument parsing shared by the ``parl bench`` and ``parl report`` subcommands."""
from __future__ import annotations

__all__ = ["comma_list", "comma_ints"]


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

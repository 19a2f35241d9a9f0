"""Oracle SAC: SAC on the true environment reward, the upper reference line of PARL's Figure 2.

The base :class:`~parl_deep.methods.base.Method` already stores the environment reward and changes nothing else,
so the oracle is the base class under its registry name. It takes no options.
"""
from __future__ import annotations

from parl_deep.methods.base import Method

__all__ = ["OracleMethod"]


class OracleMethod(Method):
    """SAC on the true environment reward."""

    name = "oracle"

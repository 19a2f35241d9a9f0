"""The ``parl`` command line: a lazy table of sub-commands, one module each in this package.

Each module defines ``add_arguments(parser)`` and ``run(args) -> int`` and is imported only when its command
runs (or its ``--help`` is asked for), so ``parl verify`` never imports the simulators and ``parl train`` never
imports the verification suite.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from parl_cli.common import HelpFormatter, missing_extra

PROJECT = ("parl_cli", "parl_deep", "parl_core", "validation")

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "example": ("parl_cli.example", "run a worked tabular example of Appendix C (maze, ...)"),
    "verify": ("parl_cli.verify", "check the paper's lemmas, theorem and gradient formulas on exact oracles"),
    "train": ("parl_cli.train", "train oracle SAC / PEBBLE / PEBBLE+SURF / A-PARL on DeepMind Control, Meta-World or "
                                "gymnasium"),
    "eval": ("parl_cli.evaluate", "evaluate a trained run's policy over N episodes, optionally recording a video"),
    "bench": ("parl_cli.bench", "run a grid of training runs (local process pool or Ray) from a TOML spec"),
    "archive": ("parl_cli.archive", "copy a benchmark directory's finished-run records (no checkpoints) into a "
                                    "folder to commit"),
    "report": ("parl_cli.report", "aggregate a benchmark directory with rliable statistics and figures"),
}


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="parl", description="PARL: policy alignment in reinforcement learning as a bilevel problem (ICLR 2024).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = argv[0] if argv and not argv[0].startswith("-") else None
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text, formatter_class=HelpFormatter)
        if name == wanted:
            try:
                mod = importlib.import_module(module)
                mod.add_arguments(p)
            except ModuleNotFoundError as exc:
                _missing(parser, name, exc)
            p.set_defaults(_run=mod.run, _command=name)
    return parser


def _missing(parser: argparse.ArgumentParser, command: str, exc: ModuleNotFoundError):
    """A missing optional dependency ends the command with one line naming the extra; a missing module of the
    project itself is a bug and keeps its traceback."""
    if (exc.name or "").split(".")[0] in PROJECT:
        raise exc
    parser.exit(2, f"parl {command}: error: {missing_extra(exc)}\n")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except ModuleNotFoundError as exc:
        _missing(parser, args._command, exc)


if __name__ == "__main__":
    sys.exit(main())

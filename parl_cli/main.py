"""The ``parl`` command line. Each sub-command lives beside the code it drives and registers itself here.

Sub-commands are imported lazily so that ``parl verify`` does not import the simulators and
``parl train`` does not import the verification suite.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help). The module must define ``add_arguments(parser)`` and ``run(args) -> int``.
COMMANDS: dict[str, tuple[str, str]] = {
    "example": ("parl_cli.example", "run a worked tabular example (e.g. `parl example maze`)"),
    "verify": ("validation.cli", "check the paper's lemmas, theorem and gradient formulas on exact oracles"),
    "train": ("parl_deep.cli", "train oracle SAC / PEBBLE / PEBBLE+SURF / A-PARL on DeepMind Control or Meta-World"),
    "bench": ("parl_deep.bench_cli", "run a grid of training runs (local process pool or Ray) from a TOML spec"),
    "report": ("parl_deep.report_cli", "aggregate a benchmark directory with rliable statistics and figures"),
}


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="parl",
        description="PARL: policy alignment in reinforcement learning as a bilevel problem (ICLR 2024).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = argv[0] if argv and not argv[0].startswith("-") else None
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == wanted:
            try:
                mod = importlib.import_module(module)
            except ModuleNotFoundError as exc:
                parser.exit(2, f"parl {name}: not available ({exc}). Install the optional extras: "
                               f"EXTRAS=deep,bench bash scripts/setup.sh\n")
            mod.add_arguments(p)
            p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())

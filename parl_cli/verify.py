"""``parl verify``: check every lemma, the theorem and the gradient formulas of PARL on exact oracles."""
from __future__ import annotations

import argparse
import os

from parl_cli.common import fail

DESCRIPTION = """\
Run the verification suite over a family of small MDPs (random Garnets across S, A, gamma and temperature; a
chain; a gridworld) with exact oracles, and write DIR/results.json (validated against validation/schema.json),
DIR/report.md with figures in DIR/figures/, and counterexamples in DIR/counterexamples/.

Each claim gets a verdict computed from the numbers: 'holds', 'fails' (with a saved counterexample .npz) or
'holds-with-constant' (with the smallest constant that makes it hold). A claim that fails is a finding about the
paper, not a crash: the exit code is 0 whenever the suite ran, and nonzero only on a crash or bad input.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from validation.checks import CHECKS
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = DESCRIPTION
    parser.epilog = "checks:\n" + "\n".join(f"  {k:14s} {v}" for k, v in CHECKS.items())
    parser.add_argument("--quick", action="store_true", help="small MDPs and few samples (about a minute)")
    parser.add_argument("--out", default="verify-results", metavar="DIR",
                        help="output directory (default: ./verify-results)")
    parser.add_argument("--seed", type=int, default=0, metavar="N", help="seed of the MDP family and samples")
    parser.add_argument("--only", nargs="+", metavar="CHECK", default=None,
                        help="run only these checks (names listed below)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from validation.checks import CHECKS
    if args.only:
        unknown = [n for n in args.only if n not in CHECKS]
        if unknown:
            return fail("verify", f"unknown check(s): {', '.join(unknown)}. Choose from: {', '.join(CHECKS)}")
    if args.seed < 0:
        return fail("verify", f"--seed must be >= 0, got {args.seed}")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import matplotlib
    matplotlib.use("Agg")
    # torch threads come from OMP_NUM_THREADS (set above); the project never sets more than one in code
    from validation.runner import print_table, run_suite
    try:
        doc, crashed = run_suite(args.out, quick=args.quick, seed=args.seed, only=args.only,
                                 progress=not args.no_progress)
    except OSError as exc:
        return fail("verify", f"cannot write to {args.out!r}: {exc}")
    print()
    print_table(doc)
    print(f"\nwrote {os.path.join(args.out, 'results.json')} and {os.path.join(args.out, 'report.md')}")
    return 1 if crashed else 0

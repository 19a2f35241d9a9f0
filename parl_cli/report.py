"""``parl report DIR``: rliable statistics, Figure-2-style learning curves, final-score and sample-efficiency
tables for a ``parl bench`` directory (definitions: :mod:`parl_deep.report`)."""
from __future__ import annotations

import argparse
import sys

from parl_cli.common import comma_ints, comma_list, fail, missing_extra

DESCRIPTION = """\
Aggregate a parl bench directory (or a folder of parl train runs): per-task final scores, rliable aggregates
(IQM, mean, median) and probabilities of improvement with stratified bootstrap CIs, steps to a threshold and
their ratio between pairs of methods (with a figure), Figure-2-style learning curves, all written to DIR/report/
(summary.md first).
Every statistic is defined at the top of summary.md and in parl_deep.report.

examples:
  parl report runs/cpu-grid                                  # writes runs/cpu-grid/report/
  parl report runs/cpu-grid --metric success --fraction 0.9 --compare a-parl:pebble-surf
  parl report runs/aparl-grid --threshold-ref pebble --fraction 1 --compare '*:pebble'  # every method vs PEBBLE
  parl report runs/cpu-grid --threshold-ref pebble --fraction 1 --out runs/cpu-grid/report-vs-pebble
  parl report benchmarks/results/aparl-grid --threshold-ref pebble --fraction 1 \\
      --against docs/benchmarks/aparl-grid/report.json        # does the rerun give the published numbers?
"""

# the project's own packages: a ModuleNotFoundError naming one of them is a bug, not a missing extra
_OWN_PACKAGES = ("parl_cli", "parl_deep", "parl_core", "validation")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION
    parser.add_argument("dir", help="a parl bench output directory (with runs/), or a folder of parl train runs")
    parser.add_argument("--out", default=None, help="where to write the report (default DIR/report)")
    parser.add_argument("--metric", choices=("return", "success"), default="return",
                        help="return: ground-truth return everywhere (the paper's Figure 2, default); "
                             "success: success rate on Meta-World tasks")
    parser.add_argument("--fraction", type=float, default=0.8,
                        help="sample efficiency threshold: this fraction of the oracle's final IQM (default 0.8)")
    parser.add_argument("--smooth", type=int, default=1,
                        help="trailing mean over W evaluations before finding the threshold step (default 1: raw)")
    parser.add_argument("--compare", default=None, metavar="A:B[,C:D...]",
                        help="methods for the steps ratio A/B (default a-parl:pebble when both are present); "
                             "several pairs comma-separated; '*:B' compares every other method with B")
    parser.add_argument("--methods", default=None, metavar="LABEL,...",
                        help="report only these methods' runs (aggregates need every method on a task)")
    parser.add_argument("--seeds", default=None, metavar="N,...",
                        help="only the runs of these seeds (e.g. --seeds 0,1,2: the seeds every method has)")
    parser.add_argument("--threshold-ref", default=None, metavar="LABEL",
                        help="method whose final IQM sets the sample-efficiency threshold (default: the oracle); "
                             "--threshold-ref pebble --fraction 1: steps to reach PEBBLE's final return")
    parser.add_argument("--oracle", default=None, help="label of the reference method (default 'oracle')")
    parser.add_argument("--reps", type=int, default=2000, help="bootstrap resamples (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    parser.add_argument("--formats", default="png,pdf", help="figure formats (default png,pdf)")
    parser.add_argument("--against", default=None, metavar="REPORT_JSON",
                        help="a published report.json (or its folder): check every run's final score and steps to "
                             "the threshold against it (reproduction.csv, and a section of summary.md)")
    parser.add_argument("--against-rtol", type=float, default=0.0, metavar="R",
                        help="relative tolerance of --against (default 0: the same numbers)")


def _compare_pairs(text: str | None) -> list[tuple[str, str]] | None:
    """``--compare A:B,C:D`` as ``[(A, B), (C, D)]`` (None when not given); ValueError naming a bad pair."""
    if not text:
        return None
    pairs = []
    for pair in text.split(","):
        parts = [p.strip() for p in pair.split(":")]
        if len(parts) != 2 or not all(parts) or parts[1] == "*" or parts[0] == parts[1]:
            raise ValueError(f"--compare expects A:B pairs of two different method labels (A may be *), got {pair!r}")
        pairs.append((parts[0], parts[1]))
    return pairs


def _check_args(args: argparse.Namespace) -> str | None:
    """The first problem with the arguments (before anything is read), or None."""
    try:
        _compare_pairs(args.compare)
    except ValueError as exc:
        return str(exc)
    if args.reps < 100:
        return f"--reps must be at least 100, got {args.reps}"
    if args.smooth < 1:
        return f"--smooth must be >= 1, got {args.smooth}"
    if not args.against_rtol >= 0:
        return f"--against-rtol must be >= 0, got {args.against_rtol}"
    return None


def run(args: argparse.Namespace) -> int:
    problem = _check_args(args)
    if problem:
        return fail("report", problem)
    try:
        seeds = comma_ints(args.seeds, "--seeds")
    except ValueError as exc:
        return fail("report", str(exc))
    from parl_deep.report import ReportError, write_report

    compare = _compare_pairs(args.compare)
    formats = tuple(f.strip().lower() for f in args.formats.split(",") if f.strip())
    try:
        an = write_report(args.dir, args.out, formats=formats, metric=args.metric, fraction=args.fraction,
                          smooth=args.smooth, reps=args.reps, seed=args.seed, oracle=args.oracle, compare=compare,
                          threshold_ref=args.threshold_ref, seeds=seeds, methods=comma_list(args.methods),
                          against=args.against, against_rtol=args.against_rtol)
    except (ReportError, FileNotFoundError) as exc:
        return fail("report", str(exc))
    except ModuleNotFoundError as exc:  # rliable, or pandas under it: the bench extra
        if exc.name and exc.name.split(".")[0] in _OWN_PACKAGES:
            raise
        return fail("report", missing_extra(exc, "bench"))
    for n in an["notes"]:
        print(f"note: {n}", file=sys.stderr)
    print("\n".join(an["files"]))
    return 0

"""``parl archive SWEEP_DIR ARCHIVE``: copy the records of a sweep's ended runs into a folder to commit."""
from __future__ import annotations

import argparse

from parl_cli.common import fail

DESCRIPTION = """\
Copy the records of every ended run (finished or failed) of a parl bench directory into ARCHIVE, with the same
layout: run.json, config.json, summary.json and the CSV logs (eval.csv, episodes.csv, feedback.csv, aparl.csv),
tens of KiB per run at 50k steps, and the spec. What only matters while a run trains (checkpoints, TensorBoard
files, worker.log) stays behind. Commit ARCHIVE, and parl report ARCHIVE gives the sweep's report, less its
unfinished runs, on a fresh clone after the sweep directory is gone. Unfinished runs are left out: run it again
when they finish. A finished run archived already with other records is a conflict: nothing is copied, and the
runs and files that differ are named, unless --overwrite. An archived failed run is replaced by its rerun.

examples:
  parl archive runs/aparl-grid benchmarks/results/aparl-grid              # then: git add benchmarks/results
  parl report benchmarks/results/aparl-grid --threshold-ref pebble         # the report, from the archive
"""

EPILOG = "exit status: 0 archived (or nothing new to archive), 2 bad arguments or a conflict (nothing copied)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION
    parser.epilog = EPILOG
    parser.add_argument("sweep", help="a parl bench directory (the --out of parl bench)")
    parser.add_argument("archive", help="the folder to copy the records into (created if missing)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace runs archived with other records (a rerun that came out differently)")
    parser.add_argument("--dry-run", action="store_true", help="say what would be copied, copy nothing")


def run(args: argparse.Namespace) -> int:
    from parl_deep.sweep.archive import archive_sweep

    try:
        result = archive_sweep(args.sweep, args.archive, overwrite=args.overwrite, dry_run=args.dry_run)
    except (ValueError, OSError) as exc:
        return fail("archive", str(exc))
    print(("(dry run) " if args.dry_run else "") + result.describe(args.archive))
    return 0

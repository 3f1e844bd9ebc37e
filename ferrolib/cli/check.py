"""``ferrolib check``: re-run a reduced profile of a committed sweep and compare it with its committed summary.

    ferrolib check paper --pulse-widths 2e-8 --seeds 0 [--algorithms mp sgd] [--summary FILE] [--workers 2]

Each compared number must lie within the prediction interval of the committed seeds (``sourcedata.compare``);
the exit status is 1 when any does not, 0 when all do.
"""
from __future__ import annotations

import argparse

from ferrolib import sourcedata
from ferrolib.cli import add_workers_option, checked_workers


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "check", help="re-run a reduced profile and compare it with the committed summary (make check)",
        description="Re-run a reduced profile (subsets of the pulse widths, seeds and algorithms of a committed "
                    "sweep) into build/check and compare every final number with the committed summary, within "
                    "the prediction interval of the committed seeds. Exit status 1 when a number is off.")
    parser.add_argument("config", help="sweep file or name in sweeps/ (its summary must be committed)")
    parser.add_argument("--pulse-widths", type=float, nargs="+", help="only these pulse widths (s) of the sweep")
    parser.add_argument("--seeds", type=int, nargs="+", help="only these seeds of the sweep")
    parser.add_argument("--algorithms", nargs="+", help="only these algorithms of the sweep")
    parser.add_argument("--summary", help="summary file (default data/results/<sweep name>.nc)")
    parser.add_argument("--results-dir", help="run cache of the re-run (default build/check)")
    add_workers_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    table = sourcedata.check(args.config, args.pulse_widths, args.seeds, args.algorithms, args.summary,
                             args.results_dir, checked_workers(args.workers))
    print(sourcedata.format_table(table))
    off = int((~table["ok"]).sum())
    print(f"{len(table) - off} of {len(table)} numbers within tolerance ({table.attrs['tolerances']})")
    return 1 if off else 0

"""``ferrolib study``: the full study (``make study``), every measured device at every pulse width it was measured
at, in the ideal profile and in the paper's configuration, both with measured device noise, and the transfer
rules (``sweeps/study.toml``, ``sweeps/study-paper.toml``, ``sweeps/study-noise.toml``,
``sweeps/study-noise-paper.toml``, ``sweeps/study-transfer.toml``).

    ferrolib study run [--scheduler tcp://host:8786] [--workers 2]
    ferrolib study run --dry-run        # the grid, how each device resolves, what is cached
    ferrolib study run --parts study-noise-20ns study-noise-200us   # some sweeps, in this order

Runs are cached by configuration, so an interrupted study resumes; each sweep's summary goes into ``data/results``.
"""
from __future__ import annotations

import argparse

from ferrolib import study
from ferrolib.cli import add_workers_option, checked_workers


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "study", help="the full study: all devices and widths (ideal and paper configuration), the noise grid, the "
             "transfer rules (make study)",
        description="Run (or resume) every sweep of the study (one per device at its measured pulse widths, one "
                    "per pulse width of the noise grid) and write each one's summary into data/results.")
    commands = parser.add_subparsers(dest="study_command", required=True)
    run_parser = commands.add_parser("run", help="run what is missing and write the summaries",
                                     description="Run what is missing and write the summaries.")
    run_parser.add_argument("--dry-run", action="store_true", help="list the grid and how each device resolves")
    run_parser.add_argument("--scheduler", help="dask.distributed scheduler address (overrides [run] scheduler)")
    add_workers_option(run_parser)
    run_parser.add_argument("--results-dir", help="run cache (default results/)")
    run_parser.add_argument("--out", help="folder of the summaries (default data/results)")
    run_parser.add_argument("--parts", nargs="+", metavar="NAME",
                            help="only these sweeps of the study, in this order (e.g. study-noise-20ns)")
    run_parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    workers = checked_workers(args.workers)
    parts = study.select(study.plan(), args.parts)
    if args.dry_run:
        print("\n".join(study.dry_run(parts, args.results_dir)))
        return 0
    for path in study.run(parts, args.results_dir, args.scheduler, workers, args.out):
        print(f"summary -> {path}")
    return 0

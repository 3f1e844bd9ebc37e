"""``ferrolib splimits``: the study of what limits symmetry-point shifting at long pulses (notebook 08).

    ferrolib splimits run [--workers 2]     # run what is missing, write data/results/sp-limits.nc
    ferrolib splimits run --dry-run         # what is cached and what would run
    ferrolib splimits run --config sp-limits-paper   # the paper's configuration (data/results/sp-limits-paper.nc)

One sweep per ``[variants]`` entry of ``sweeps/sp-limits.toml`` (or ``--config``), combined along a ``variant``
dimension.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ferrolib import paths, splimits, study
from ferrolib.cli import add_workers_option, checked_workers


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "splimits", help="what limits symmetry-point shifting at long pulses: run the variants (notebook 08)",
        description="Run every variant of sweeps/sp-limits.toml that is not cached and write the summary of all "
                    "of them (data/results/sp-limits.nc), which notebook 08 renders from.")
    commands = parser.add_subparsers(dest="splimits_command", required=True)
    run_parser = commands.add_parser("run", help="run what is missing and write the summary",
                                     description="Run what is missing and write the summary.")
    run_parser.add_argument("--config", default=splimits.SWEEP_CONFIG, choices=splimits.SWEEP_CONFIGS,
                            help="the study's sweep file in sweeps/ (default %(default)s)")
    run_parser.add_argument("--dry-run", action="store_true", help="list every run and whether it is cached")
    add_workers_option(run_parser)
    run_parser.add_argument("--results-dir", help="run cache (default results/)")
    run_parser.add_argument("--out", help="folder of the summary (default data/results)")
    run_parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    workers = checked_workers(args.workers)
    variants, options = splimits.plan(args.config)
    root = Path(args.results_dir or paths.RESULTS)
    if args.dry_run:
        parts = [study.StudyPart(name, spec, options) for name, spec in variants.items()]
        print("\n".join(study.dry_run(parts, root)))
        return 0
    _, source = splimits.load(args.config, source="runs", results_dir=root, summary_dir=args.out,
                              n_workers=workers or options.get("n_workers"), write=True)
    print(source)
    return 0

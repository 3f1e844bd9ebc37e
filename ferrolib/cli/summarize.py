"""``ferrolib summarize``: run (or load from the run cache) a sweep and write its summary into the source data.

    ferrolib summarize smoke-check [--out data/results] [--results-dir results] [--workers 2]

The summary (``sourcedata.summarize``) is what notebooks render from and ``ferrolib check`` compares with.
"""
from __future__ import annotations

import argparse

from ferrolib import sourcedata, sweep
from ferrolib.cli import add_workers_option, checked_workers


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "summarize", help="run (or load) a sweep and write its summary into data/results",
        description="Run every missing run of a sweep (cached runs are reused) and write its summary "
                    "<out>/<sweep name>.nc: per-epoch metrics, pulse counts, the energy ledger, each run's "
                    "configuration, and the histograms at the shortest pulse width and first seed.")
    parser.add_argument("config", help="sweep file or name in sweeps/")
    parser.add_argument("--out", default=str(sourcedata.SOURCE_DATA),
                        help="folder of the summary (default data/results)")
    parser.add_argument("--results-dir", help="run cache (default results/)")
    add_workers_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    workers = checked_workers(args.workers)
    spec, options = sweep.load_sweep_config(sweep.resolve_sweep_config(args.config))
    result = sweep.run_sweep(spec, args.results_dir, n_workers=workers, energy_model=options["energy_model"])
    path = sourcedata.write_summary(sourcedata.summarize(result, spec), sourcedata.summary_path(spec.name, args.out))
    print(f"{len(spec)} runs -> {path} ({path.stat().st_size:,} bytes)")
    return 0

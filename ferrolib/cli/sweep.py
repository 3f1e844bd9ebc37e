"""``ferrolib sweep CONFIG``: run a sweep described in TOML or YAML (see ``sweeps/``) and write its Dataset.

    ferrolib sweep paper|sweeps/paper.toml [--workers 2] [--scheduler tcp://host:8786] [--results-dir DIR]
                                           [--threads N] [--dry-run]

Every key of the file and every grid point is validated before any run; ``--dry-run`` marks each point
``cached``, ``to run``, ``stale`` (its cached file no longer matches its device, data or numerics) or ``invalid``.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from ferrolib import provenance, sweep, threads, validation
from ferrolib.cli.train import add_threads_option


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sweep", help="run a grid of training runs from a TOML/YAML file",
        description="Run every missing run of a sweep (cached runs are reused), combine them with their energy "
                    "ledgers and write <results-dir>/sweeps/<name>_<hash>.nc.")
    parser.add_argument("config", help="sweep file (.toml or .yaml), or the name of one in sweeps/ (e.g. paper)")
    parser.add_argument("--workers", type=int, help="local worker processes (overrides [run] n_workers)")
    parser.add_argument("--scheduler", help="dask.distributed scheduler address (overrides [run] scheduler)")
    parser.add_argument("--results-dir", help="where runs and sweeps are cached (default: results/)")
    add_threads_option(parser)
    parser.add_argument("--dry-run", action="store_true", help="list the runs and which are cached; run nothing")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    spec, options = sweep.load_sweep_config(sweep.resolve_sweep_config(args.config))
    results_dir = args.results_dir or options.get("results_dir") or None
    scheduler = args.scheduler or options.get("scheduler") or None
    workers = args.workers or options.get("n_workers")
    if args.dry_run:
        from ferrolib import paths

        root = Path(results_dir) if results_dir else paths.RESULTS
        for point, config, _, status in sweep.plan(spec, root, sweep.default_key_function(None)):
            state, _, why = status.partition(": ")
            print(f"{state:<8} {provenance.config_hash(config)}  {sweep.point_label(spec, point)}"
                  + (f"  ({why})" if why else ""))
        return 0
    if workers is not None:
        validation.check_positive_int(workers, "--workers")
    target = sweep.sweep_path(spec, results_dir)
    provenance.check_writable_dir(target.parent, "sweeps folder")  # before any run, not after all of them
    if args.threads is not None:  # all workers together use this many (each gets its share)
        threads.set_threads(args.threads)
        os.environ[threads.THREADS_ENV] = str(args.threads)
    result = sweep.run_sweep(spec, results_dir, n_workers=workers, scheduler=scheduler,
                             energy_model=options["energy_model"])
    path = provenance.write_netcdf(result, target)
    print(f"{len(spec)} runs -> {path}")
    return 0

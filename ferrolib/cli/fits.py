"""``ferrolib fits`` (``make fits``): refit every committed device model (``data/devices``) from its measurement
and recalibrate the physics model (``data/physics_calibration.json``).

    ferrolib fits [--source DIR] [--force]

A file is written only where the refit differs beyond the fit's resolution (``fitting.FIT_AGREEMENT``,
``physics.CALIBRATION_AGREEMENT``), so on another host nothing changes; ``--force`` rewrites every file. The same
as ``ferrolib device fit --committed --save data/devices`` followed by ``ferrolib device calibrate``.
"""
from __future__ import annotations

import argparse

from ferrolib import measurements, paths
from ferrolib.cli.device import report_calibration, report_refits


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "fits", help="refit the committed device models and the physics calibration (make fits)",
        description="Refit every committed device model in data/devices from its measurement and recalibrate the "
                    "physics model of the main devices; write only what changed beyond tolerance.")
    parser.add_argument("--source", default=None, help="directory of measurement files (default: the shared set)")
    parser.add_argument("--force", action="store_true", help="write every file, even where it holds the same fit")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    measurements.resolve_source(args.source)  # a bad --source fails before any fit
    report_refits(paths.DEVICES, args.source, args.force)
    report_calibration(None, args.source, None, args.force)
    return 0

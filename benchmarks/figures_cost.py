"""Where ``make figures RESULTS_SOURCE=runs`` spends its training time: the runs of every sweep the notebooks read,
found in a results directory, with the wall time their epochs took.

    python benchmarks/figures_cost.py [--results-dir results] [--cores 2] [--json]

For each sweep of ``FIGURE_SWEEPS`` (every variant included) the script looks up each run's file
(``provenance.run_path``) and sums its per-epoch ``wall_time`` (training and the validation and test reads of
every epoch; not the process start, the data loading or the summary). A run two sweeps share (the run cache keys
them alike) counts once, in the first sweep that lists it. Printed per sweep: runs planned and found, epochs,
the summed training time in CPU-minutes (each run trains on one thread) and the median per epoch by rule, then the
total and that total over ``--cores``: the least wall time the sweeps can take when every core trains all the
time. Run it on the results directory of a ``make figures RESULTS_SOURCE=runs`` from a fresh clone (the times of
runs trained beside other jobs are longer).
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import xarray as xr

from ferrolib import provenance
from ferrolib.sweep import load_sweep_config, resolve_sweep_config, variant_sweeps

FIGURE_SWEEPS = ("paper", "ideal", "mp-transfer", "sp-limits", "sp-limits-paper", "transfer-search",
                 "transfer-headline")
"""The sweeps the notebooks of ``make figures`` train with ``RESULTS_SOURCE=runs`` (the Makefile's ``reads_NN``;
the study's summaries are ``make study``'s and are only read)."""


def sweep_configs(name: str) -> list:
    """Every run configuration of sweep ``name``, its variants included."""
    spec, options = load_sweep_config(resolve_sweep_config(name))
    variants = options.get("variants") or {}
    sweeps = variant_sweeps(spec, variants).values() if variants else [spec]
    return [config for sweep in sweeps for _, config in sweep.points()]


def measure(results_dir: Path) -> dict:
    """Per sweep: runs planned, found, epochs, summed wall time (s) and per-epoch times by rule."""
    seen: set[Path] = set()
    report: dict = {}
    for name in FIGURE_SWEEPS:
        row = {"planned": 0, "found": 0, "shared": 0, "epochs": 0, "seconds": 0.0, "per_epoch": {}}
        for config in sweep_configs(name):
            path = provenance.run_path(config, results_dir)
            if path in seen:
                row["shared"] += 1
                continue
            seen.add(path)
            row["planned"] += 1
            if not path.is_file():
                continue
            with xr.open_dataset(path) as run:
                wall = run["wall_time"].values
            row["found"] += 1
            row["epochs"] += len(wall)
            row["seconds"] += float(wall.sum())
            row["per_epoch"].setdefault(config.algorithm, []).extend(float(v) for v in wall)
        row["per_epoch"] = {rule: statistics.median(times) for rule, times in row["per_epoch"].items()}
        report[name] = row
    return report


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results-dir", type=Path, default=Path("results"))
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not (args.results_dir / "runs").is_dir():
        parser.error(f"--results-dir {args.results_dir}: no runs/ directory (train the sweeps first)")
    report = measure(args.results_dir)
    if args.json:
        print(json.dumps(report, indent=1))
        return report
    print(f"{'sweep':18} {'runs':>5} {'found':>5} {'shared':>6} {'epochs':>6} {'CPU-min':>8}  median s/epoch by rule")
    for name, row in report.items():
        rules = ", ".join(f"{rule} {seconds:.1f}" for rule, seconds in row["per_epoch"].items())
        print(f"{name:18} {row['planned']:5d} {row['found']:5d} {row['shared']:6d} {row['epochs']:6d} "
              f"{row['seconds'] / 60:8.1f}  {rules}")
    total = sum(row["seconds"] for row in report.values()) / 60
    print(f"total {total:.1f} CPU-minutes of training; on {args.cores} cores at least {total / args.cores:.1f} min")
    return report


if __name__ == "__main__":
    main()

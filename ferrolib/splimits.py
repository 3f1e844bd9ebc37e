"""What limits symmetry-point shifting at long pulses (notebook 08).

``sweeps/sp-limits.toml`` holds the grid (SP-shifted SGD, ID170ZR5000, 20 ns / 20 us / 200 us, three seeds, the
ideal profile) and one ``[variants]`` entry per candidate cause; each variant is one sweep
(``sweep.variant_sweeps``), and their results are combined along a ``variant`` dimension. The summary of all of
them is committed as ``data/results/sp-limits.nc`` so that notebook 08 renders from it on a fresh clone.

    ferrolib splimits run [--workers 2]     # run what is missing, write the summary
    ferrolib splimits run --dry-run         # what is cached and what would run

``sweeps/sp-limits-paper.toml`` is the same study in the paper's configuration (``PAPER_SWEEP_CONFIG``); ``load``
reads either for the notebook and the CLI.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from . import paths, sourcedata, store, sweep
from .symmetry import reference_point
from .training.config import TrainConfig

SWEEP_CONFIG = "sp-limits"
"""The sweep file (in ``sweeps/``) of the study in the ideal profile."""
PAPER_SWEEP_CONFIG = "sp-limits-paper"
"""The sweep file of the study in the paper's configuration: which ingredient keeps SP shifting up at long pulses."""
SWEEP_CONFIGS: tuple[str, ...] = (SWEEP_CONFIG, PAPER_SWEEP_CONFIG)
"""The study's sweep files, ``ferrolib splimits run --config``."""

SMOKE_WIDTHS = (2e-8, 2e-4)
"""Pulse widths of the smoke profile (the shortest and the longest of the study)."""


def plan(config: str | Path = SWEEP_CONFIG, smoke: bool = False) -> tuple[dict[str, sweep.Sweep], dict]:
    """The study's sweeps by variant name and its run options. ``smoke``: the same variants on the smoke profile's
    base (``sweeps/smoke.toml``), two widths, one seed (seconds per run)."""
    spec, options = sweep.load_sweep_config(sweep.resolve_sweep_config(config))
    if smoke:
        smoke_spec, _ = sweep.load_sweep_config(sweep.resolve_sweep_config("smoke"))
        spec = dataclasses.replace(spec, base=smoke_spec.base, pulse_widths=list(SMOKE_WIDTHS), seeds=[0],
                                   name=f"{spec.name}-smoke")
    return sweep.variant_sweeps(spec, options["variants"]), options


def load(config: str = SWEEP_CONFIG, smoke: bool = False, source: str = "auto",
         results_dir: str | Path | None = None, summary_dir: str | Path | None = None, n_workers: int | None = None,
         write: bool | None = None) -> tuple[xr.Dataset, str]:
    """The study ``config``'s results combined along ``variant`` and a line saying where they came from
    (``store.load_results`` with ``source``). Its summary is ``<summary_dir>/<config>.nc``; ``smoke`` plans the
    smoke variants and keeps their summary beside the run cache (``<results_dir>/<config>-smoke.nc``), never in the
    committed source data. ``write`` (default: not ``smoke``) stores the summary of results computed from runs."""
    variants, options = plan(config, smoke=smoke)
    summary = (Path(results_dir or paths.RESULTS) / f"{config}-smoke.nc" if smoke
               else sourcedata.summary_path(config, summary_dir))
    return store.load_results(variants, options, source, results_dir, summary, n_workers,
                              write=not smoke if write is None else write)


def combine(results: dict[str, xr.Dataset]) -> xr.Dataset:
    """The variants' combined sweeps (or summaries) along a new ``variant`` dimension, in the given order."""
    pieces = [result.expand_dims(variant=[name]) for name, result in results.items()]
    combined = xr.concat(pieces, dim="variant", data_vars="all", coords="different", compat="equals",
                         join="outer", combine_attrs="drop_conflicts")
    combined.attrs["variants"] = ", ".join(results)
    return combined


def summarize(sweep_result: xr.Dataset, spec: sweep.Sweep) -> xr.Dataset:
    """``sourcedata.summarize`` plus every run's histogram of device states after the last epoch
    (``final_device_hist``: where the devices end, against the states the fits measured)."""
    summary = sourcedata.summarize(sweep_result, spec)
    final = sweep_result["weight_hist"].sel(quantity="w_device").isel(snapshot=-1, drop=True)
    summary["final_device_hist"] = final.drop_vars("quantity", errors="ignore").astype(np.float32)
    return summary


def equivalent_reference(first: TrainConfig, second: TrainConfig) -> bool:
    """Whether two configurations differ only in ``sps_reference`` and their references agree bit for bit on the
    nominal device (so their runs are identical: the reference is the only number the choice changes)."""
    from .training.config import resolve_device

    if dataclasses.replace(first, sps_reference=second.sps_reference) != second:
        return False
    nominal = resolve_device(first).config.devices(torch.float64)
    return bool(torch.equal(reference_point(nominal, first.sps_reference),
                            reference_point(nominal, second.sps_reference)))


def fill_equivalent(combined: xr.Dataset, variants: dict[str, sweep.Sweep]) -> xr.Dataset:
    """Fill a variant's missing pulse widths (a ``pulse_widths`` narrowed in its ``[variants]`` entry) with another
    variant's runs where ``equivalent_reference`` proves them identical; ``attrs["filled"]`` lists what was filled."""
    numeric = [name for name, variable in combined.data_vars.items()
               if "variant" in variable.dims and "pulse_width" in variable.dims and variable.dtype.kind in "fiu"]
    filled = []
    for name, spec in variants.items():
        for width in [float(w) for w in combined["pulse_width"].values if float(w) not in spec.axes()["pulse_width"]]:
            mine = dataclasses.replace(spec.base, pulse_width=width)
            for other, other_spec in variants.items():
                theirs = dataclasses.replace(other_spec.base, pulse_width=width)
                if other != name and width in other_spec.axes()["pulse_width"] and equivalent_reference(mine, theirs):
                    for variable in numeric:
                        combined[variable].loc[{"variant": name, "pulse_width": width}] = \
                            combined[variable].sel(variant=other, pulse_width=width)
                    filled.append(f"{name} at {width:g} s = {other}")
                    break
    combined.attrs["filled"] = "; ".join(filled)
    return combined

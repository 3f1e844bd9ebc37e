"""The result store: the one place that answers "where does this result come from".

A training run is stored as ``<results>/runs/<config_hash>.nc`` (``run_path``) and carries its full run key
(``run_key``: configuration hash, a content hash of the device model it was loaded from, a hash of its data, the
numerics version and ferrolib's version). A device enters the key through the committed model file it was loaded
from (``catalog.resolve``), never through a refit in memory, so the keys of the committed results are the same on
every host. A cached run is served only when its whole key matches (``cached_run``, ``check_run``); anything else
is moved aside (``move_aside``: ``<name>.stale-<UTC time>.nc``, never deleted) and recomputed. One process at a
time computes a key (``provenance.key_lock``, which also removes the orphaned temporary files of interrupted
atomic writes of that key); every write is atomic (``provenance.atomic_write``).

The results behind the figures come from ``load_results``, in this order for ``source="auto"``: every run cached
in ``results_dir``; else the committed summary in ``data/results`` if it holds every run under the key it would
have now (``covers``); else the runs, trained where missing. ``source="runs"`` never uses the summary (after a
change of the numerics, to regenerate it); ``source="summary"`` uses only the summary and fails with one line
when it does not cover the sweep (a render that must not train).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, NamedTuple

import xarray as xr

from . import paths, provenance, sourcedata, splimits, sweep
from .provenance import move_aside, run_path
from .training.config import TrainConfig, resolve_device
from .training.data import load_data
from .training.keys import data_hash, device_hash, expected_key, key_from_hashes, run_key

RESULT_SOURCES = ("auto", "runs", "summary")
"""Where ``load_results`` may take results from (module docstring)."""

Spec = sweep.Sweep | Mapping[str, sweep.Sweep]
"""A sweep, or variants of one by name (combined along a ``variant`` dimension, ``splimits``)."""


# ------------------------------------------------------------------------------------------------ single runs
def cached_run(config: Any, results_dir: str | Path | None = None, key: dict | None = None) -> xr.Dataset | None:
    """The finished run of ``config`` in ``results_dir`` (default ``paths.RESULTS``) if it is complete, of its
    configuration hash and (when given) of run ``key``; a stale, incomplete or unreadable file is moved aside."""
    return sweep.load_cached(config, Path(results_dir or paths.RESULTS), key)


def check_run(config: Any, results_dir: str | Path | None = None, key: dict | None = None) -> str:
    """``cached``, ``to run`` or ``stale: why`` for the run of ``config``; changes nothing on disk."""
    result, reason = provenance.check_cached_netcdf(run_path(config, results_dir), key,
                                                    provenance.config_hash(config), getattr(config, "epochs", None))
    return "cached" if result is not None else f"stale: {reason}" if reason else "to run"


# ------------------------------------------------------------------------------------------------ summaries
class _ExpectedKeys:
    """``run_key`` of a TrainConfig as it would be now, resolving each device and data set once (None for other
    configuration types, e.g. the fakes of the tests)."""

    def __init__(self) -> None:
        self.devices: dict[tuple, str] = {}
        self.data: dict[tuple, str] = {}

    def __call__(self, config: object) -> dict[str, str] | None:
        if not isinstance(config, TrainConfig):
            return None
        device_id = (config.algorithm == "fp", config.device_id, config.pulse_width, config.device_model,
                     config.asymmetry_scale)
        if device_id not in self.devices:
            self.devices[device_id] = device_hash(None if device_id[0] else resolve_device(config))
        data_id = (config.data, config.split, config.train_limit, config.eval_limit,
                   config.seed if config.data == "synthetic" else 0)
        if data_id not in self.data:
            self.data[data_id] = data_hash(load_data(config))
        return key_from_hashes(config, self.devices[device_id], self.data[data_id])


def _covers_sweep(summary: xr.Dataset, spec: sweep.Sweep, expected: _ExpectedKeys) -> str | None:
    for key, config in spec.points():
        where = dict(zip(spec.axes(), key))
        try:
            stored = str(summary["config_hash"].sel(where).values)
            stored_key = str(summary["run_key"].sel(where).values) if "run_key" in summary else ""
        except (KeyError, IndexError):
            return f"run {where} is not in the summary"
        if stored != provenance.config_hash(config):
            return (f"run {where} has configuration hash {stored} in the summary but {provenance.config_hash(config)} "
                    f"now (the sweep file or TrainConfig changed since it was written)")
        now = expected(config)
        if now is not None:
            reason = provenance.key_mismatch(json.loads(stored_key) if stored_key else None, now)
            if reason:
                return f"run {where} in the summary is stale: {reason}"
    return None


def covers(summary: xr.Dataset, spec: Spec) -> str | None:
    """None if ``summary`` holds every run of ``spec`` (a sweep, or every variant of a mapping) under the run key
    it would have now (configuration, device model, data, numerics version), else the first reason why not."""
    expected = _ExpectedKeys()
    if isinstance(spec, sweep.Sweep):
        return _covers_sweep(summary, spec, expected)
    for name, variant in spec.items():
        if "variant" not in summary.dims or name not in summary["variant"].values:
            return f"variant {name!r} is not in the summary"
        reason = _covers_sweep(summary.sel(variant=name), variant, expected)
        if reason:
            return f"variant {name!r}: {reason}"
    return None


def all_cached(spec: Spec, results_dir: str | Path | None = None) -> bool:
    """Whether every run of ``spec`` is finished in ``results_dir``."""
    sweeps = [spec] if isinstance(spec, sweep.Sweep) else list(spec.values())
    return all(cached_run(config, results_dir) is not None for part in sweeps for _, config in part.points())


def _name(spec: Spec) -> str:
    """The summary name of a sweep (its name) or of variants (their sweep's name: ``<name>-<variant>``)."""
    if isinstance(spec, sweep.Sweep):
        return spec.name
    return next(iter(spec.values())).name.rsplit("-", 1)[0] if spec else splimits.SWEEP_CONFIG


def _run(spec: Spec, options: dict, results_dir: Path, n_workers: int | None,
         run: sweep.RunFunction | None) -> tuple[xr.Dataset, xr.Dataset]:
    """The combined runs of ``spec`` (trained where missing) and their summary."""
    if isinstance(spec, sweep.Sweep):
        result = sweep.run_sweep(spec, results_dir, run=run, n_workers=n_workers,
                                 energy_model=options["energy_model"], progress=False)
        return result, sourcedata.summarize(result, spec)
    combined = splimits.combine({name: splimits.summarize(
        sweep.run_sweep(variant, results_dir, run=run, n_workers=n_workers, energy_model=options["energy_model"],
                        progress=False), variant) for name, variant in spec.items()})
    combined = splimits.fill_equivalent(combined, dict(spec))
    combined.attrs["summary_of"] = _name(spec)
    return combined, combined


def load_results(spec: Spec, options: dict, source: str = "auto", results_dir: str | Path | None = None,
                 summary: str | Path | None = None, n_workers: int | None = None, write: bool = False,
                 run: sweep.RunFunction | None = None) -> tuple[xr.Dataset, str]:
    """The combined results of ``spec`` and one line saying where they came from (module docstring for
    ``source``: "auto", "runs" or "summary"). ``summary`` defaults to ``data/results/<name>.nc``; ``write``
    stores the summary of results computed from runs (``make figures``); ``run`` as in ``sweep.run_sweep``.
    A sweep gives the combined sweep (its summary when taken from it); variants give the summary form combined
    along ``variant`` either way."""
    if source not in RESULT_SOURCES:
        raise ValueError(f"results source must be one of {RESULT_SOURCES}, got {source!r}")
    results_dir = provenance.check_writable_dir(Path(results_dir or paths.RESULTS), "results directory")
    summary = Path(summary) if summary else sourcedata.summary_path(_name(spec))
    n_runs = len(spec) if isinstance(spec, sweep.Sweep) else sum(len(v) for v in spec.values())
    if source == "summary" or (source == "auto" and not all_cached(spec, results_dir)):
        reason = f"{summary.name} does not exist" if not summary.exists() else None
        if reason is None:
            stored = provenance.read_netcdf(summary)
            reason = covers(stored, spec)
            if reason is None:
                return stored, f"the committed summary {summary.name} ({n_runs} runs; no training)"
        if source == "summary":
            raise ValueError(f"results source 'summary': {reason}; render with source 'auto' to train what is missing")
        if summary.exists():
            print(f"not using {summary.name}: {reason}")
    result, summarized = _run(spec, options, results_dir, n_workers, run)
    where = f"{n_runs} runs from {results_dir.name}/ (trained where missing)"
    if write:
        path = sourcedata.write_summary(summarized, summary)
        where += f"; summary written to {path.name}"
    return result, where


class NotebookResults(NamedTuple):
    """What a notebook's prologue loads for one sweep (``notebook_results``)."""

    spec: sweep.Sweep
    options: dict
    config_path: Path
    result: xr.Dataset
    used: str


def notebook_results(sweep_config: str, smoke: bool, results_source: str = "auto", results_dir: str | None = None,
                     summary_dir: str | None = None, n_workers: int | None = None,
                     write: bool | None = None) -> NotebookResults:
    """The prologue of the notebooks that plot a sweep: its spec (``sweep.notebook_sweep``: the smoke sweep when
    ``smoke``) and its results (``load_results`` from ``results_dir``, else the summary ``<summary_dir>/<name>.nc``),
    writing the summary of results computed from runs when ``write`` (default: unless ``smoke``); empty strings
    mean the defaults."""
    spec, options, config_path = sweep.notebook_sweep(sweep_config, smoke)
    result, used = load_results(spec, options, results_source, results_dir or None,
                                sourcedata.summary_path(spec.name, summary_dir or None), n_workers,
                                write=not smoke if write is None else write)
    return NotebookResults(spec, options, config_path, result, used)


__all__ = ["RESULT_SOURCES", "NotebookResults", "notebook_results", "load_results", "covers", "all_cached", "cached_run", "check_run", "run_key",
           "expected_key", "run_path", "move_aside"]

"""Committed source data and the reproduction check.

``make figures`` writes a **summary** of every run behind every figure (``data/results/<sweep>.nc``): per-epoch
metrics, pulse counts, the energy ledger, each run's configuration and hash, and the weight histograms notebook
03 draws (shortest pulse width, first seed), compressed netCDF well under 5 MB. Notebooks whose runs are not in
``results/`` render from it instead of retraining (``store.load_results``) and say which they used.

``make check`` re-runs a reduced profile (a subset of the pulse widths and seeds of the committed sweep) and
compares it with the summary (``compare``). Runs are bit-identical on one machine and versions; across machines
the pulse dynamics amplify floating-point differences, so a fresh seed is a new draw from the seed distribution.
The tolerance of each compared number is therefore derived from the committed seed spread:

    |mean_fresh - mean_committed| <= max(floor, t * s * sqrt(1 / n_fresh + 1 / n_committed)),

``s`` the standard deviation over the committed seeds and ``t`` Student's t quantile at ``confidence`` with
``n_committed - 1`` degrees of freedom (``CheckTolerances``): the prediction interval of a fresh seed mean from a
few committed seeds, whose ``s`` is itself uncertain (with 3 seeds, t = 4.30 at 95 %); with a single committed
seed only the floor applies.

    ferrolib summarize smoke-check --out data/results    # (re)write a summary
    ferrolib check paper --pulse-widths 2e-8 --seeds 0  # the reduced reproduction check
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats
import pandas as pd
import xarray as xr

from . import paths, provenance, sweep

SOURCE_DATA: Path = paths.DATA / "results"
"""Where the committed summaries live (``data/results``), beside ``figures/``."""

DROPPED = ("weight_hist", "symmetry_point_hist", "wall_time")
"""Run variables a summary leaves out: the histograms (kept at one pulse width and seed only) and timings."""

SUMMARY_LIMIT_BYTES = 5_000_000
"""Largest summary file ``write_summary`` accepts."""


# ------------------------------------------------------------------------------------------------ summaries
def summarize(sweep_result: xr.Dataset, spec: sweep.Sweep) -> xr.Dataset:
    """The summary of a combined sweep: every run's numbers without the bulky histograms, plus each run's
    configuration (``run_config``, JSON) and the histograms at the shortest pulse width and first seed."""
    summary = sweep_result.drop_vars([v for v in DROPPED if v in sweep_result])
    configs = xr.full_like(sweep_result["config_hash"], "", dtype=object)
    for key, config in spec.points():
        configs.loc[dict(zip(spec.axes(), key))] = json.dumps(provenance.config_dict(config), sort_keys=True)
    summary["run_config"] = configs.astype(str)
    histograms = [v for v in ("weight_hist", "symmetry_point_hist") if v in sweep_result]
    if histograms:
        first = sweep_result[histograms].isel(pulse_width=0, seed=0)
        summary.attrs["histograms_at"] = json.dumps({"pulse_width": float(first["pulse_width"]),
                                                     "seed": int(first["seed"])})
        for name in histograms:
            summary[name] = first[name].drop_vars(["pulse_width", "seed"]).astype(np.float32)
    summary.attrs = {**sweep_result.attrs, **summary.attrs, "summary_of": spec.name,
                     "sweep_config_hash": provenance.config_hash(spec)}
    return summary


def histograms(result: xr.Dataset) -> xr.Dataset:
    """The weight and symmetry-point histograms at the shortest pulse width and first seed, from a combined sweep
    or a summary (which stores only those)."""
    hists = result[["weight_hist", "symmetry_point_hist"]]
    if "pulse_width" in hists["weight_hist"].dims:
        hists = hists.isel(pulse_width=0, seed=0)
    else:
        hists = hists.assign_coords(json.loads(result.attrs["histograms_at"]))
    return hists


def summary_path(name: str, directory: str | Path | None = None) -> Path:
    """``<directory>/<name>.nc`` (default ``data/results``)."""
    return Path(directory or SOURCE_DATA) / f"{name}.nc"


def write_summary(summary: xr.Dataset, path: str | Path) -> Path:
    """Write a summary atomically, compressed; refuses one over ``SUMMARY_LIMIT_BYTES``. A file that holds the same
    bytes already is left untouched, so its modification time changes only with its content (the Makefile re-runs
    the notebooks that read a summary when it is newer than their executed copies)."""
    encoding = {name: {"zlib": True, "complevel": 6} for name, v in summary.data_vars.items()
                if v.dtype.kind in "fiu" and v.ndim > 0}
    path = provenance.atomic_write(path, lambda tmp: summary.to_netcdf(tmp, engine="h5netcdf", encoding=encoding),
                                   keep_same=True)
    if path.stat().st_size > SUMMARY_LIMIT_BYTES:
        raise ValueError(f"{path}: summary is {path.stat().st_size:,} bytes, over the {SUMMARY_LIMIT_BYTES:,} limit")
    return path


# ------------------------------------------------------------------------------------------------ the check
@dataclass
class CheckTolerances:
    """How far a re-run may land from the committed summary (see the module docstring for the rule)."""

    confidence: float = 0.95
    """Two-sided confidence of the prediction interval (Student's t with n_committed - 1 degrees of freedom)."""
    accuracy_floor: float = 0.01
    """Smallest tolerance of an accuracy (fraction), also the only one with a single committed seed."""
    log_floor: float = 0.01
    """Smallest tolerance of a log10 count or energy (0.01 = 2.3 %)."""

    __repr__ = provenance.compact_repr


CHECKED: dict[str, tuple[str, str]] = {
    "final validation accuracy": ("accuracy", "val_acc"),
    "final test accuracy": ("accuracy", "test_acc"),
    "log10 device pulses": ("log", "pulses"),
    "log10 programming energy (J)": ("log", "programming_energy_cumulative"),
    "log10 whole-run energy (J)": ("log", "energy_cumulative"),
}
"""Compared quantity -> (kind, variable); every quantity is the value after the last epoch."""


def _checked_values(ds: xr.Dataset, variable: str, kind: str) -> xr.DataArray:
    values = ds[variable]
    values = values.sum([d for d in values.dims if d in ("layer", "polarity")]).isel(epoch=-1, drop=True)
    if kind == "log":
        values = np.log10(values.where(values > 0))
    return values.astype(float)


def compare(committed: xr.Dataset, fresh: xr.Dataset, tolerances: CheckTolerances | None = None) -> pd.DataFrame:
    """One row per quantity and (device, pulse width, algorithm) of ``fresh``: both seed means, the tolerance, how
    it was derived and whether the fresh mean is within it. Runs present in both must share a configuration hash."""
    tol = tolerances or CheckTolerances()
    for name in ("device", "pulse_width", "algorithm", "seed"):
        missing = sorted(set(fresh[name].values.tolist()) - set(committed[name].values.tolist()))
        if missing and name != "seed":
            raise ValueError(f"the committed summary has no {name} {missing}: it cannot check this profile")
    points = {n: fresh[n].values for n in ("device", "pulse_width", "algorithm")}
    both = committed.sel(points)
    shared = sorted(set(fresh["seed"].values.tolist()) & set(both["seed"].values.tolist()))
    if shared:
        old = both["config_hash"].sel(seed=shared).values
        new = fresh["config_hash"].sel(seed=shared).values
        if not np.array_equal(old, new):
            raise ValueError("the re-run's configuration hashes differ from the committed summary's for the same "
                             "seeds: the profile or the code changed; regenerate the summary (make figures)")
    rows = []
    for quantity, (kind, variable) in CHECKED.items():
        old, new = _checked_values(both, variable, kind), _checked_values(fresh, variable, kind)
        floor = tol.accuracy_floor if kind == "accuracy" else tol.log_floor
        n_old, n_new = old.notnull().sum("seed"), new.notnull().sum("seed")
        spread = old.std("seed", ddof=1)
        for device in points["device"]:
            for width in points["pulse_width"]:
                for algorithm in points["algorithm"]:
                    at = dict(device=device, pulse_width=width, algorithm=algorithm)
                    a, b = int(n_old.sel(at)), int(n_new.sel(at))
                    if a == 0 or b == 0:
                        continue  # e.g. no pulses in fp runs
                    s = float(spread.sel(at)) if a >= 2 else float("nan")
                    t = float(stats.t.ppf(0.5 + tol.confidence / 2, a - 1)) if a >= 2 else float("nan")
                    derived = t * s * np.sqrt(1 / a + 1 / b) if a >= 2 else float("nan")
                    tolerance = float(np.nanmax([floor, derived]))
                    c_mean, f_mean = float(old.sel(at).mean()), float(new.sel(at).mean())
                    rows.append({"quantity": quantity, "device": str(device), "pulse_width": float(width),
                                 "algorithm": str(algorithm), "committed": c_mean, "fresh": f_mean,
                                 "difference": f_mean - c_mean, "tolerance": tolerance,
                                 "basis": f"t = {t:.2f} x seed spread ({a} seeds)" if derived > floor else "floor",
                                 "n_committed": a, "n_fresh": b, "ok": abs(f_mean - c_mean) <= tolerance})
    table = pd.DataFrame(rows)
    table.attrs = {"tolerances": repr(tol)}
    return table


def check(sweep_config: str, pulse_widths: list[float] | None = None, seeds: list[int] | None = None,
          algorithms: list[str] | None = None, summary: str | Path | None = None,
          results_dir: str | Path | None = None, n_workers: int | None = None,
          tolerances: CheckTolerances | None = None) -> pd.DataFrame:
    """Re-run a reduced profile of ``sweep_config`` (subsets of its pulse widths, seeds, algorithms) into
    ``results_dir`` and compare it with the committed summary (``compare``)."""
    spec, options = sweep.load_sweep_config(sweep.resolve_sweep_config(sweep_config))
    summary = Path(summary) if summary else summary_path(spec.name)
    if not summary.exists():
        raise FileNotFoundError(f"{summary}: no committed summary to check against (make figures writes it)")
    reduced = {"pulse_widths": pulse_widths, "seeds": seeds, "algorithms": algorithms}
    for name, values in reduced.items():
        full = getattr(spec, name) or spec.axes()[{"pulse_widths": "pulse_width", "seeds": "seed",
                                                   "algorithms": "algorithm"}[name]]
        unknown = sorted(set(values or []) - set(full))
        if unknown:
            raise ValueError(f"--{name.replace('_', '-')} {unknown} not in {sweep_config}'s {name} {full}")
    spec = dataclasses.replace(spec, **{k: list(v) for k, v in reduced.items() if v})
    fresh = sweep.run_sweep(spec, results_dir or paths.ROOT / "build" / "check", n_workers=n_workers,
                            energy_model=options["energy_model"])
    return compare(provenance.read_netcdf(summary), fresh, tolerances)


def format_table(table: pd.DataFrame) -> str:
    """The check table as fixed-width text (one line per compared number)."""
    shown = table.assign(pulse_width=[f"{w:.0e}" for w in table["pulse_width"]],
                         ok=table["ok"].map({True: "ok", False: "OFF"}))
    return shown.to_string(index=False, float_format=lambda v: f"{v:.4g}")

"""The full study (``make study``): every measured device at every pulse width it was measured at, both profiles
with measured device noise and the transfer rules; its summaries go into the committed source data (``data/results``).

Five sweep files define it: ``sweeps/study.toml`` (devices, algorithms, seeds, the ideal profile; each device is
expanded to its own measured pulse widths, one sweep per device, since the widths differ between devices),
``sweeps/study-paper.toml`` (the same devices and widths in the paper's configuration), ``sweeps/study-transfer.toml``
(the transfer rules ttv2, cttv2 and agad on the same devices and widths in the paper's configuration, 10 epochs, as
``sweeps/transfer-headline.toml`` runs them with three seeds on the headline device), ``sweeps/study-noise.toml``
(the paper grid with the cycle-to-cycle scatter of each width's fit, ``c2c``, and a stated device-to-device spread
``d2d``; one sweep per width, since ``c2c`` differs between widths) and ``sweeps/study-noise-paper.toml`` (the same
in the paper's configuration, with the paper's fits' ``c2c``). Runs are cached by configuration, so an interrupted
study resumes; ``--scheduler`` sends the runs to a dask.distributed cluster.

    ferrolib study run [--scheduler tcp://host:8786] [--workers 2]
    ferrolib study run --dry-run        # the grid, how each device resolves, what is cached
    ferrolib study run --parts study-paper-ID170ZR5000 study-noise-20ns   # some sweeps, in this order
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import xarray as xr

from . import catalog, measurements, paths, provenance, sourcedata, sweep, units


@dataclass
class StudyPart:
    """One sweep of the study and the name of its summary in the source data."""

    name: str
    """Summary name (``data/results/<name>.nc``) and sweep name."""
    spec: sweep.Sweep
    """The sweep."""
    options: dict
    """Its run options (``[run]`` and the energy model)."""


def measured_widths(device_id: str) -> list[float]:
    """Pulse widths (s) at which ``device_id`` was measured, ascending."""
    return sorted({float(m.attrs["pulse_width_s"]) for m in measurements.load_measurements(device_id, select="last")})


def width_label(seconds: float) -> str:
    """A file-name label of a pulse width (``2e-08`` -> ``20ns``)."""
    return units.pulse_width_label(seconds)


STUDY_CONFIGS: tuple[str, ...] = ("study", "study-paper", "study-transfer")
"""The study's per-device sweep files, in the order ``make study`` runs them."""


def plan(study_configs: tuple[str | Path, ...] = STUDY_CONFIGS,
         noise_configs: tuple[str | Path, ...] = ("study-noise", "study-noise-paper")) -> list[StudyPart]:
    """Every sweep of the study: one per device (its measured widths) of each study configuration (the ideal
    profile, the paper's configuration, the transfer rules) and one per width of each noise grid (ideal, then
    paper's)."""
    parts = []
    for study_config in study_configs:
        spec, options = sweep.load_sweep_config(sweep.resolve_sweep_config(study_config))
        for device_id in spec.axes()["device"]:
            widths = spec.pulse_widths or measured_widths(device_id)
            name = f"{spec.name}-{device_id}"
            parts.append(StudyPart(name, dataclasses.replace(spec, devices=[device_id], pulse_widths=widths,
                                                             name=name), options))
    for noise_config in noise_configs:
        noise, noise_options = sweep.load_sweep_config(sweep.resolve_sweep_config(noise_config))
        (device_id,) = noise.axes()["device"]
        for width in noise.axes()["pulse_width"]:
            fit = catalog.get_device(device_id, width, noise.base.device_model)
            name = f"{noise.name}-{width_label(width)}"
            base = dataclasses.replace(noise.base, device_id=device_id, pulse_width=width,
                                       c2c=round(float(fit.c2c), 4))
            parts.append(StudyPart(name, dataclasses.replace(noise, base=base, pulse_widths=[width], name=name),
                                   noise_options))
    return parts


def resolution(device_id: str, pulse_width: float, model: str) -> str:
    """How a (device, width) resolves to a device model (``catalog.resolve``), or the fit of its measurement that
    ``ensure_fits`` saves before the study runs; ValueError when neither exists."""
    path = catalog.fitted_device_path(device_id, pulse_width, model)
    if path.exists() or catalog.user_source() is not None:
        return catalog.resolve(device_id, pulse_width, model)[1].line()
    files = measurements.find_measurements(device_id=device_id, pulse_width=pulse_width)
    if not files:
        raise ValueError(f"{device_id} at {pulse_width:g} s: no fitted file and no measurement to fit")
    return f"to fit from its measurement ({len(files)} file(s))"


def ensure_fits(parts: list[StudyPart]) -> list[Path]:
    """Fit and save (``data/devices``) every device model the study needs that has no fitted file yet."""
    written = []
    for part in parts:
        model = part.spec.base.device_model
        for _, config in part.spec.points():
            path = catalog.fitted_device_path(config.device_id, config.pulse_width, model)
            if not path.exists():
                fitted = catalog.get_device(config.device_id, config.pulse_width, model, fit_missing=True)
                written.append(catalog.save_fit(fitted)[0])
    return written


def select(parts: list[StudyPart], names: list[str] | None) -> list[StudyPart]:
    """The sweeps named in ``names``, in that order (all of ``parts`` when None); ValueError naming any unknown."""
    if names is None:
        return parts
    by_name = {part.name: part for part in parts}
    unknown = [name for name in names if name not in by_name]
    if unknown:
        raise ValueError(f"--parts: {', '.join(unknown)} not in the study (its sweeps: {', '.join(by_name)})")
    return [by_name[name] for name in names]


def dry_run(parts: list[StudyPart], results_dir: str | Path | None = None) -> list[str]:
    """One line per run: cached or to run, its hash, grid point, noise and device resolution."""
    root = Path(results_dir or paths.RESULTS)
    lines = []
    for part in parts:
        model = part.spec.base.device_model
        for key, config in part.spec.points():
            state = "cached" if sweep.load_cached(config, root) is not None else "to run"
            grid = ", ".join(f"{d}={v}" for d, v in zip(part.spec.axes(), key))
            lines.append(f"{state:7s} {provenance.config_hash(config)}  {part.name}: {grid}, c2c={config.c2c:g}, "
                         f"d2d={config.d2d:g}; {resolution(config.device_id, config.pulse_width, model)}")
    runs = len(lines)
    lines.append(f"{runs} runs in {len(parts)} sweeps, {sum(line.startswith('cached') for line in lines)} cached")
    return lines


def run(parts: list[StudyPart], results_dir: str | Path | None = None, scheduler: str | None = None,
        n_workers: int | None = None, out: str | Path | None = None) -> list[Path]:
    """Run (or resume) every sweep and write each one's summary into ``out`` (default ``data/results``)."""
    ensure_fits(parts)
    written = []
    for part in parts:
        result = sweep.run_sweep(part.spec, results_dir, n_workers=n_workers or part.options.get("n_workers"),
                                 scheduler=scheduler or part.options.get("scheduler"),
                                 energy_model=part.options["energy_model"])
        written.append(sourcedata.write_summary(sourcedata.summarize(result, part.spec),
                                                sourcedata.summary_path(part.name, out)))
    return written


def _combine(files: list[Path], dim: str) -> xr.Dataset:
    """Summaries joined along ``dim`` (outer join: points a summary lacks are NaN), histograms left out."""
    parts = [provenance.read_netcdf(p).drop_vars(["weight_hist", "symmetry_point_hist"], errors="ignore")
             for p in files]
    return xr.concat(parts, dim=dim, join="outer", data_vars="all", coords="minimal", compat="override",
                     combine_attrs="drop_conflicts").sortby(dim)


def _summaries(prefix: str, directory: str | Path | None) -> list[Path]:
    """The committed summaries ``<prefix>-<device or width>.nc``: device IDs and width labels hold no ``-``, so
    ``study`` selects ``study-ID170ZR5000.nc`` but neither ``study-noise-20ns.nc`` nor ``study-paper-ID170ZR5000.nc``."""
    directory = Path(directory or sourcedata.SOURCE_DATA)
    files = sorted(p for p in directory.glob(f"{prefix}-*.nc") if "-" not in p.stem.removeprefix(f"{prefix}-"))
    if not files:
        raise FileNotFoundError(f"no {prefix}-*.nc summaries in {directory.parent.name}/{directory.name}/ "
                                "(make study writes them)")
    return files


def load_study(prefix: str = "study", directory: str | Path | None = None) -> xr.Dataset:
    """The committed summaries ``<prefix>-<device>.nc`` combined over devices (widths a device lacks are NaN)."""
    return _combine(_summaries(prefix, directory), "device")


def load_noise(prefix: str = "study-noise", directory: str | Path | None = None) -> xr.Dataset:
    """The committed summaries ``<prefix>-<width>.nc`` of the noise grid combined over pulse widths."""
    return _combine(_summaries(prefix, directory), "pulse_width")


def committed_study(prefix: str = "study", directory: str | Path | None = None,
                    parts: list[StudyPart] | None = None) -> tuple[xr.Dataset, str]:
    """``load_study(prefix, directory)`` and a line saying what it holds: how many devices, and the device sweeps
    of the plan (``parts``, default ``plan()``) named ``<prefix>-<device>`` that have no summary yet."""
    result = load_study(prefix, directory)
    missing = missing_parts(_parts_of(prefix, parts), directory)
    n_devices = result.sizes["device"]
    return result, (f"the {prefix} summaries ({n_devices} device{'s' if n_devices != 1 else ''}, seed 0"
                    + (f"; not yet run: {', '.join(missing)}" if missing else "") + ")")


def committed_noise(prefix: str = "study-noise", directory: str | Path | None = None,
                    parts: list[StudyPart] | None = None) -> tuple[xr.Dataset, str]:
    """``load_noise(prefix, directory)`` and a line saying what it holds: the width sweeps of the plan (``parts``,
    default ``plan()``) named ``<prefix>-<width>`` that have no summary yet."""
    result = load_noise(prefix, directory)
    missing = missing_parts(_parts_of(prefix, parts), directory)
    return result, f"{prefix} summaries" + (f" (not yet run: {', '.join(missing)})" if missing else "")


def _parts_of(prefix: str, parts: list[StudyPart] | None) -> list[StudyPart]:
    """The sweeps of the plan (``parts``, default ``plan()``) named ``<prefix>-<device or width>``, as
    ``_summaries`` selects their files (the rest of the name holds no ``-``)."""
    return [part for part in (parts if parts is not None else plan())
            if part.name.startswith(f"{prefix}-") and "-" not in part.name.removeprefix(f"{prefix}-")]


def missing_parts(parts: list[StudyPart], directory: str | Path | None = None) -> list[str]:
    """Names of the study's sweeps that have no summary in ``directory`` (default ``data/results``) yet."""
    return [part.name for part in parts if not sourcedata.summary_path(part.name, directory).exists()]

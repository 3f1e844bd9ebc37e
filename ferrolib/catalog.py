"""Where a device model comes from and what its file is called (above measurements, devices, fitting, physics).

The committed fits (``data/devices``) are inputs: nothing but an explicit refit (``make fits``,
``ferrolib device fit --save``, ``save_fit``) writes them. Resolution of a device (``resolve``, ``get_device``),
in this order of precedence:

1. measurements the user points at (a ``source`` folder, else ``$FERROLIB_MEASUREMENTS``) that hold the device at
   the width: their latest file is fitted now, and wins over the committed fit of the same id; when it is the
   very measurement the committed fit was made from (same SHA-256) the committed fit is used (a refit lands within
   ``fitting.FIT_AGREEMENT`` of it on any host);
2. the committed fit ``paths.DEVICES/<device>_<width>_<model>.nc``;
3. only with ``fit_missing=True``: a fit of the measurement now, else of a ramp simulated by the calibrated
   physics model (``data_kind='synthetic'``). Without it a missing fit is one line naming the ways to make it.

Every resolution says which file, which source and why (``DeviceResolution``); training prints it with every
run and stores it in the result's provenance.
File names (``fitted_device_path``): ``<device>_<width>_<model>.nc`` with the device id sanitised
(``safe_file_id``), so that no header can name a file outside the chosen folder.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

from . import fitting, measurements, paths, physics, provenance
from .devices import MODEL_KINDS
from .fitted import FittedDevice
from .units import pulse_width_label

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def safe_file_id(device_id: str) -> str:
    """``device_id`` as a file-name part: every run of characters other than letters, digits, '_' and '-' becomes
    one '_', then leading and trailing '_' go (``'../escaped'`` -> ``'escaped'``). Raises ValueError when nothing
    is left."""
    safe = _UNSAFE.sub("_", str(device_id)).strip("_")
    if not safe:
        raise ValueError(f"device id {device_id!r} has no letter or digit to name a file with")
    return safe


def fitted_device_path(device_id: str, pulse_width: float, model: str, directory: Path | str | None = None) -> Path:
    """Where the fitted device file lives: ``<directory>/<safe id>_<width>_<model>.nc`` (default ``paths.DEVICES``)."""
    if model not in MODEL_KINDS:
        raise ValueError(f"unknown device model {model!r}; expected one of {MODEL_KINDS}")
    directory = Path(directory) if directory else paths.DEVICES
    return directory / f"{safe_file_id(device_id)}_{pulse_width_label(pulse_width)}_{model}.nc"


@dataclass(frozen=True)
class DeviceResolution:
    """Which device model a run uses, from which source, and why."""

    device: str
    """``<device id> <width> <model>``."""
    origin: str
    """``committed fit``, ``your measurement``, ``fit of the measurement`` or ``physics prediction``."""
    file: str
    """The committed file (relative to the repository) or the measurement file (relative to its folder)."""
    reason: str
    """Why this source won."""

    def line(self) -> str:
        """One line: ``device ID170ZR5000 20ns piecewise: committed fit data/devices/... (why)``."""
        return f"device {self.device}: {self.origin} {self.file} ({self.reason})"

    def as_dict(self) -> dict[str, str]:
        return {"device": self.device, "origin": self.origin, "file": self.file, "reason": self.reason}


def user_source(source: str | Path | None = None) -> tuple[Path, str] | None:
    """The measurements the user points at and how (named by the folder's last component, never an absolute
    path): ``source`` if given, else ``$FERROLIB_MEASUREMENTS``; None when neither is set (then only the shared
    measurements apply)."""
    if source is not None:
        return Path(source).expanduser(), f"the source folder {Path(source).name}"
    env = os.environ.get(paths.MEASUREMENTS_ENV)
    if env:
        return Path(env).expanduser(), f"${paths.MEASUREMENTS_ENV} (folder {Path(env).name})"
    return None


def _committed_name(path: Path) -> str:
    return provenance.portable_name(str(path.resolve()), [paths.ROOT])


def _measurement_name(dataset) -> str:
    root = dataset.attrs.get("source_root", "")
    return provenance.portable_name(str(dataset.attrs.get("source_file", "")), [Path(root)] if root else [])


def missing_fit_message(device_id: str, pulse_width: float, model: str) -> str:
    """The one line for a device without a committed fit: how to make one explicitly."""
    return (f"{device_id} at {pulse_width:g} s ({model}): no committed fit {_committed_name(fitted_device_path(device_id, pulse_width, model))}; "
            f"fitting is an explicit choice: `make fits`, `ferrolib device fit --device {device_id} --pulse-width "
            f"{pulse_width:g} --model {model} --save {_committed_name(paths.DEVICES)}`, or fit_missing=True "
            "(`ferrolib train --fit-missing`)")


def resolve(
    device_id: str = "ID170ZR5000",
    pulse_width: float = 2e-8,
    model: str = "piecewise",
    source: str | Path | None = None,
    fit_missing: bool = False,
) -> tuple[FittedDevice, DeviceResolution]:
    """The device model for ``device_id`` at ``pulse_width`` and how it was resolved (module docstring: the
    user's measurements, then the committed fit, then, with ``fit_missing``, a fit now). Raises ValueError (one
    line) when none applies."""
    if model not in MODEL_KINDS:
        raise ValueError(f"unknown device model {model!r}; expected one of {MODEL_KINDS}")
    if not (isinstance(pulse_width, (int, float)) and math.isfinite(pulse_width) and pulse_width > 0):
        raise ValueError(f"pulse width must be a positive number of seconds, got {pulse_width!r}")
    label = f"{device_id} {pulse_width_label(pulse_width)} {model}"
    committed_path = fitted_device_path(device_id, pulse_width, model)
    committed = FittedDevice.load(committed_path) if committed_path.exists() else None
    pointed = user_source(source)
    if pointed is not None:
        directory, how = pointed
        if measurements.find_measurements(device_id, pulse_width, directory):
            (latest,) = measurements.load_measurements(device_id, pulse_width, directory, select="last")
            if committed is not None and committed.source_sha256 == latest.attrs.get("source_sha256"):
                return committed, DeviceResolution(
                    label, "committed fit", _committed_name(committed_path),
                    f"made from the same measurement as yours ({_measurement_name(latest)} in {how}, same SHA-256)")
            fitted = fitting.fit_ramp(latest, model)
            why = (f"{how} wins over the committed fit {committed_path.name} (another measurement)" if committed
                   else f"from {how}; no committed fit")
            return fitted, DeviceResolution(label, "your measurement", _measurement_name(latest), f"fitted now; {why}")
        if committed is not None:
            return committed, DeviceResolution(label, "committed fit", _committed_name(committed_path),
                                               f"{how} holds no measurement of it")
    elif committed is not None:
        return committed, DeviceResolution(label, "committed fit", _committed_name(committed_path),
                                           "no measurements of your own named")
    files = measurements.find_measurements(device_id=device_id, pulse_width=pulse_width, source=source)
    calibration = None if files else physics.load_calibration(device_id)
    if files or calibration is not None:
        if not fit_missing:
            raise ValueError(missing_fit_message(device_id, pulse_width, model))
        if files:
            (latest,) = measurements.load_measurements(device_id, pulse_width, source, select="last")
            return fitting.fit_ramp(latest, model), DeviceResolution(
                label, "fit of the measurement", _measurement_name(latest), "fitted now (fit_missing); no committed fit")
        if not physics.PREDICTION_RANGE[0] <= pulse_width <= physics.PREDICTION_RANGE[1]:
            raise ValueError(f"{device_id}: no measurement at {pulse_width:g} s and it lies outside the physics "
                             f"model's range {physics.PREDICTION_RANGE} s")
        return fitting.fit_ramp(physics.simulate_ramp(calibration, pulse_width), model), DeviceResolution(
            label, "physics prediction", physics.CALIBRATION_FILE,
            "a ramp simulated by the calibrated model, fitted now (fit_missing); no measurement at this width")
    known = sorted({measurements.read_summary(p).attrs["device_id"] for p in measurements.find_measurements(source=source)})
    if device_id in known:
        raise ValueError(f"{device_id}: no measurement at pulse width {pulse_width:g} s and no calibrated physics "
                         "model (data/physics_calibration.json) to predict it")
    raise ValueError(f"unknown device {device_id!r}: no fitted file, measurement or calibrated model; "
                     f"measured devices: {', '.join(known)}")


def get_device(
    device_id: str = "ID170ZR5000",
    pulse_width: float = 2e-8,
    model: str = "piecewise",
    source: str | Path | None = None,
    fit_missing: bool = False,
) -> FittedDevice:
    """The device model for ``device_id`` at ``pulse_width`` (``resolve`` without its explanation)."""
    return resolve(device_id, pulse_width, model, source, fit_missing)[0]


def save_fit(fitted: FittedDevice, directory: Path | str | None = None, force: bool = False) -> tuple[Path, str]:
    """Write ``fitted`` as ``fitted_device_path(...)`` in ``directory`` (default ``paths.DEVICES``) unless the
    file there is the same fit (``fitting.same_fit``: same measurement, every parameter within
    ``fitting.FIT_AGREEMENT``); ``force`` writes anyway. Returns the path and what happened, with the largest
    difference."""
    path = fitted_device_path(fitted.device_id, fitted.pulse_width_s, fitted.model, directory)
    if path.exists() and not force:
        try:
            existing = FittedDevice.load(path)
        except ValueError:
            existing = None
        if existing is not None:
            name, difference = fitting.largest_difference(fitted, existing)
            if difference <= fitting.FIT_AGREEMENT:
                return path, f"kept (the refit agrees; largest difference {difference:.2g} of scale, {name})"
            fitted.save(path)
            return path, f"rewritten (changed: {name} differs by {difference:.2g} of scale)"
    fitted.save(path)
    return path, "written"


def refit_committed(directory: Path | str | None = None, source: str | Path | None = None,
                    force: bool = False, write: bool = True) -> list[dict]:
    """Refit every committed device file in ``directory`` (default ``paths.DEVICES``) from its measurement
    (found by its SHA-256 in ``source``, default the measurement sources) and, when ``write``, save it
    (``save_fit``: only what changed beyond ``fitting.FIT_AGREEMENT``, everything with ``force``). One row per
    file: file, model, largest difference and its parameter, status."""
    directory = Path(directory) if directory else paths.DEVICES
    rows = []
    for path in sorted(directory.glob("*.nc")):
        committed = FittedDevice.load(path)
        matching = [m for m in measurements.load_measurements(committed.device_id, committed.pulse_width_s, source)
                    if m.attrs.get("source_sha256") == committed.source_sha256]
        if not matching:
            raise ValueError(f"{path.name}: its measurement (SHA-256 {committed.source_sha256[:12]}) is not in "
                             f"{measurements.resolve_source(source)}")
        refit = fitting.fit_ramp(matching[0], committed.model)
        name, difference = fitting.largest_difference(refit, committed)
        status = save_fit(refit, directory, force)[1] if write else (
            "agrees" if difference <= fitting.FIT_AGREEMENT else "differs")
        rows.append({"file": path.name, "model": committed.model, "largest_difference": difference,
                     "parameter": name, "status": status})
    return rows

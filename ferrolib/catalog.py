"""Where a device model comes from and what its file is called (above measurements, devices, fitting, physics).

Resolution of a device (``get_device``): the fitted file in ``paths.DEVICES``, else a fit of the measurement now,
else a fit of a ramp simulated by the calibrated physics model (``data_kind='synthetic'``).
File names (``fitted_device_path``): ``<device>_<width>_<model>.nc`` with the device id sanitised
(``safe_file_id``), so that no header can name a file outside the chosen folder.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

from . import fitting, measurements, paths, physics
from .devices import MODEL_KINDS, FittedDevice
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


def get_device(
    device_id: str = "ID170ZR5000",
    pulse_width: float = 2e-8,
    model: str = "piecewise",
    source: str | Path | None = None,
) -> FittedDevice:
    """The fitted device for ``device_id`` at ``pulse_width``.

    Resolution order: (1) the fitted file in ``paths.DEVICES`` (only when ``source`` is None); (2) a fit of
    the measurement now (the latest by test date when there are several); (3) a fit of a ramp simulated by the
    calibrated physics model, labelled ``data_kind='synthetic'``. Raises ValueError when none applies.
    """
    if model not in MODEL_KINDS:
        raise ValueError(f"unknown device model {model!r}; expected one of {MODEL_KINDS}")
    if not (isinstance(pulse_width, (int, float)) and math.isfinite(pulse_width) and pulse_width > 0):
        raise ValueError(f"pulse width must be a positive number of seconds, got {pulse_width!r}")
    if source is None:
        path = fitted_device_path(device_id, pulse_width, model)
        if path.exists():
            return FittedDevice.load(path)
    files = measurements.find_measurements(device_id=device_id, pulse_width=pulse_width, source=source)
    if files:
        (latest,) = measurements.load_measurements(device_id, pulse_width, source, select="last")
        return fitting.fit_ramp(latest, model)
    calibration = physics.load_calibration(device_id)
    if calibration is not None:
        if not physics.PREDICTION_RANGE[0] <= pulse_width <= physics.PREDICTION_RANGE[1]:
            raise ValueError(f"{device_id}: no measurement at {pulse_width:g} s and it lies outside the physics "
                             f"model's range {physics.PREDICTION_RANGE} s")
        return fitting.fit_ramp(physics.simulate_ramp(calibration, pulse_width), model)
    known = sorted({measurements.read_summary(p).attrs["device_id"] for p in measurements.find_measurements(source=source)})
    if device_id in known:
        raise ValueError(f"{device_id}: no measurement at pulse width {pulse_width:g} s and no calibrated physics "
                         "model (data/physics_calibration.json) to predict it")
    raise ValueError(f"unknown device {device_id!r}: no fitted file, measurement or calibrated model; "
                     f"measured devices: {', '.join(known)}")

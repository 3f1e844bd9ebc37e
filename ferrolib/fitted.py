"""Fitted devices: a device model configuration with the provenance of the measurement it came from, and its files.

``FittedDevice`` holds the fitted configuration, the fit's quality (R^2, residuals, c2c), the measured conductance
range and the source file's SHA-256; ``save`` / ``load`` write and read it as a self-describing netCDF file
(without the measured values). ``scale_asymmetry`` derives a device with its step asymmetry scaled.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import xarray as xr

from . import provenance
from .devices import CONFIG_CLASSES, DeviceArray, DeviceConfig, DeviceNoise, PiecewiseStep, _scales
from .symmetry import SYMMETRY_POINT_METHODS, node_support, reference_point, step_difference_roots, symmetry_point
from .units import format_pulse_width


MEASURED_TRACE_VARIABLES: tuple[str, ...] = ("G", "w_measured", "outlier")
"""Trace variables that hold measured values; not written to fitted-device files."""


@dataclass
class FittedDevice:
    """A device model fitted to one measured (or synthetic) pulse-response ramp, with its provenance."""

    config: DeviceConfig
    """The fitted model configuration (weights normalised as ``w = 2 (G - g_mean)/(g_max - g_min)``)."""
    device_id: str
    """Measured device, e.g. ``ID170ZR5000``."""
    pulse_width_s: float
    """Programming pulse width (s)."""
    data_kind: str = "measured"
    """``measured`` (fitted to a measurement) or ``synthetic`` (fitted to a physics-model ramp)."""
    source_file: str = ""
    """Measurement file the fit used, relative to its measurement root ``source_root`` (never an absolute path),
    or the synthetic model's description."""
    source_sha256: str = ""
    """SHA-256 of the measurement file (empty for synthetic)."""
    source_root: str = ""
    """Label of the measurement root that ``source_file`` is relative to (e.g. ``LBE247``; empty for synthetic)."""
    fit_method: str = ""
    """How the parameters were found (recipe and optimiser)."""
    r2_up: float = float("nan")
    """R^2 of the simulated against the measured state over the up (potentiation) ramp."""
    r2_down: float = float("nan")
    """R^2 of the simulated against the measured state over the down (depression) ramp."""
    residual_std_up: float = float("nan")
    """Scatter of measured up steps around the model step at the measured state, in units of dw_min."""
    residual_std_down: float = float("nan")
    """Scatter of measured down steps around the model step, in units of dw_min."""
    c2c: float = float("nan")
    """Cycle-to-cycle estimate: rms step residual / rms model step, both directions pooled (an upper bound:
    it also holds the systematic misfit)."""
    amplitude_range_up: tuple[float, float] = (float("nan"), float("nan"))
    """First and last amplitude (V) of the potentiation ramp (negative pulses)."""
    amplitude_range_down: tuple[float, float] = (float("nan"), float("nan"))
    """First and last amplitude (V) of the depression ramp (positive pulses)."""
    area_m2: float = float("nan")
    """Device area (m^2)."""
    g_min: float = float("nan")
    """Smallest conductance (S) of the inlier reads, used for normalisation."""
    g_max: float = float("nan")
    """Largest conductance (S) of the inlier reads."""
    g_mean: float = float("nan")
    """Mean conductance (S) of the inlier reads (maps to w = 0)."""
    n_up: int = 0
    """Inlier reads on the up ramp."""
    n_down: int = 0
    """Inlier reads on the down ramp."""
    n_outliers: int = 0
    """Reads flagged as outliers and excluded from the fit."""
    trace: xr.Dataset | None = field(default=None, repr=False)
    """Per pulse: amplitude, polarity, measured ``G``, ``outlier``, ``w_measured`` and the simulated ``w_model``
    (for overlays; files keep only the non-measured ones)."""

    __repr__ = provenance.compact_repr

    @property
    def model(self) -> str:
        return self.config.kind

    def devices(self, shape: Sequence[int] = (), noise: DeviceNoise | None = None,
                generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32) -> DeviceArray:
        """Sample an array of these devices (see ``PiecewiseStep.sample``), provenance in ``meta``."""
        array = self.config.sample(shape, noise, generator, dtype)
        array.meta.update(device_id=self.device_id, pulse_width_s=self.pulse_width_s, data_kind=self.data_kind,
                          source_file=self.source_file, fit_method=self.fit_method)
        return array

    @property
    def steps_at_zero(self) -> tuple[float, float]:
        """Mean up and down step at w = 0 (weight units)."""
        nominal = self.config.devices()
        zero = torch.zeros((), dtype=torch.float64)
        return float(nominal.dw_up(zero)), float(nominal.dw_down(zero))

    @property
    def n_states(self) -> float:
        """Number of states ``(w_max - w_min) / min(step_up(0), step_down(0))``."""
        return (self.config.w_max - self.config.w_min) / min(self.steps_at_zero)

    @property
    def symmetry_point(self) -> float:
        """Analytic symmetry point of the nominal device, reached from w = 0 (what SP shifting programs)."""
        return float(symmetry_point(self.config.devices()))

    def symmetry_points(self, n_alternating: int = 4000) -> dict[str, float]:
        """The nominal device's symmetry point from two starts, each analytic and by the simulated protocol.

        ``analytic`` / ``protocol_from_zero``: the root reached from w = 0 and an alternating train started at
        w = 0 (where training starts; what SP shifting programs). ``analytic_from_bottom`` / ``protocol``: the root
        reached from w_min and the experimenter's full protocol (n up, n down, alternating train). Each pair agrees
        within about one step, except where the discrete steps trap the protocol next to a bound (the down step
        rising from zero at w_min by more than the up step within one step) or carry it across a narrow root.
        ``paper_alternating``: the paper's SP-shifting reference (48 alternating pulses from w = 0, mean of the
        last 5 states), still carrying the start's transient where the steps are small.
        """
        devices = self.config.devices()
        return {method: float(reference_point(devices, method, n_alternating)) for method in SYMMETRY_POINT_METHODS}

    def stable_roots(self) -> np.ndarray:
        """The stable roots of ``dw_up - dw_down`` of the nominal device (``step_difference_roots``); more than one
        means the symmetry point depends on where a device starts (a spurious root)."""
        return step_difference_roots(self.config.devices())[0]

    def measured_states(self, floor: float = 0.05) -> tuple[float, float]:
        """The state interval where both directions' steps come from the fitted polynomial inside the measured
        states (``node_support``); beyond it the model runs on the node ``floor`` (``fitting.NODE_FLOOR``) or on
        the polynomial held constant. Piecewise only; NaN where no node of a direction is measured."""
        if not isinstance(self.config, PiecewiseStep):
            raise ValueError(f"measured_states needs a piecewise model, got {self.model!r}")
        config = self.config
        positions = np.linspace(config.w_min, config.w_max, len(config.piecewise_up))
        up = node_support(config.piecewise_up, floor, "last")
        down = node_support(config.piecewise_down, floor, "first")
        if min(up + down) < 0:
            return float("nan"), float("nan")
        return float(positions[max(up[0], down[0])]), float(positions[min(up[1], down[1])])

    def summary(self, n_alternating: int = 4000) -> dict[str, Any]:
        """The reported facts of one fit (``ferrolib device fit`` and notebook 02): model, steps at w = 0, bounds,
        symmetry points (``symmetry_points``), R^2, number of states, c2c, outliers and the source."""
        step_up, step_down = self.steps_at_zero
        return {
            "device_id": self.device_id,
            "pulse_width_s": self.pulse_width_s,
            "model": self.model,
            "data_kind": self.data_kind,
            "dw_min": self.config.dw_min,
            "step_up_at_0": step_up,
            "step_down_at_0": step_down,
            "w_min": self.config.w_min,
            "w_max": self.config.w_max,
            **{f"sp_{name}": value for name, value in self.symmetry_points(n_alternating).items()},
            **self._model_checks(),
            "r2_up": self.r2_up,
            "r2_down": self.r2_down,
            "n_states": self.n_states,
            "c2c": self.c2c,
            "n_outliers": self.n_outliers,
            "source_root": self.source_root,
            "source_file": self.source_file,
        }

    def _model_checks(self) -> dict[str, Any]:
        """``n_stable_roots`` (flag: > 1) and the measured-state interval of a piecewise fit (NaN for the others)."""
        low, high = self.measured_states() if isinstance(self.config, PiecewiseStep) else (float("nan"),) * 2
        return {"n_stable_roots": int(self.stable_roots().size), "measured_low": low, "measured_high": high}

    def label(self) -> str:
        """Legend text: device, pulse width, model, and 'synthetic' where it is."""
        text = f"{self.device_id} {format_pulse_width(self.pulse_width_s)} {self.model}"
        return text + (" (synthetic)" if self.data_kind != "measured" else "")

    def to_dataset(self, include_measured: bool = False) -> xr.Dataset:
        """A self-describing Dataset: node vectors and trace as variables, everything else in attributes.

        Measured values (``MEASURED_TRACE_VARIABLES``) are left out unless ``include_measured``: the measurements
        stay in their own folder, identified by ``source_file`` and ``source_sha256``.
        """
        data: dict[str, Any] = {}
        if isinstance(self.config, PiecewiseStep):
            data["piecewise_up"] = (("node",), np.asarray(self.config.piecewise_up))
            data["piecewise_down"] = (("node",), np.asarray(self.config.piecewise_down))
        dataset = xr.Dataset(data)
        if self.trace is not None:
            drop = () if include_measured else MEASURED_TRACE_VARIABLES
            dataset = dataset.merge(self.trace.drop_vars([v for v in drop if v in self.trace]))
        scalars = {f.name: getattr(self, f.name) for f in _fitted_fields() if f.name not in ("config", "trace")}
        config = {k: v for k, v in provenance.config_dict(self.config).items() if not k.startswith("piecewise")}
        dataset.attrs = provenance.provenance_attrs(
            self.config, model=self.model, model_parameters=config, n_states=self.n_states,
            steps_at_zero=list(self.steps_at_zero), symmetry_point=self.symmetry_point,
            **scalars,
        )
        return dataset

    def save(self, path: Path | str) -> Path:
        """Write atomically to netCDF (``provenance.write_netcdf``), without the measured values."""
        return provenance.write_netcdf(self.to_dataset(), path)

    @classmethod
    def from_dataset(cls, dataset: xr.Dataset, origin: str = "dataset") -> "FittedDevice":
        """Inverse of ``to_dataset``; raises ValueError naming ``origin`` if it is not such a Dataset."""
        attrs = dataset.attrs
        try:
            kind = attrs["model"]
            parameters = json.loads(attrs["model_parameters"])
            if kind == "piecewise":
                parameters["piecewise_up"] = tuple(dataset["piecewise_up"].values.tolist())
                parameters["piecewise_down"] = tuple(dataset["piecewise_down"].values.tolist())
            config = CONFIG_CLASSES[kind](**parameters)
            values: dict[str, Any] = {}
            for f in _fitted_fields():
                if f.name in ("config", "trace") or f.name not in attrs:
                    continue
                raw = attrs[f.name]
                value = raw if f.type == "str" or not isinstance(raw, str) else json.loads(raw)
                values[f.name] = tuple(value) if isinstance(value, list) else value
        except (KeyError, ValueError, TypeError) as error:
            raise ValueError(f"{origin}: not a ferrolib fitted-device file ({error!r})") from error
        trace_vars = [name for name in dataset.data_vars if "pulse" in dataset[name].dims]
        trace = dataset[trace_vars] if trace_vars else None
        if trace is not None:
            trace.attrs = {}
        return cls(config=config, trace=trace, **values)

    @classmethod
    def load(cls, path: Path | str) -> "FittedDevice":
        """Read a file written by ``save``."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such fitted-device file")
        return cls.from_dataset(provenance.read_netcdf(path), origin=str(path))


def _fitted_fields() -> tuple[dataclasses.Field, ...]:
    return dataclasses.fields(FittedDevice)


def scale_asymmetry(device: FittedDevice, factor: float) -> FittedDevice:
    """``device`` with the difference of its up and down steps scaled by ``factor`` around their mean, at every node:
    ``up' = m + factor h``, ``down' = m - factor h`` with ``m = (up + down)/2``, ``h = (up - down)/2`` (absolute
    steps). The mean step, the bounds and the roots of ``dw_up - dw_down`` (so the symmetry points) are unchanged;
    the restoring slope ``f'(w*)`` scales by ``factor``. ``factor = 1`` returns ``device`` itself."""
    if not (math.isfinite(factor) and factor >= 0.0):
        raise ValueError(f"asymmetry scale must be a finite number >= 0, got {factor!r}")
    if factor == 1.0:
        return device
    config = device.config
    if not isinstance(config, PiecewiseStep):
        raise ValueError(f"asymmetry scaling needs a piecewise device model, got {config.kind!r}")
    scale_up, scale_down = (float(v) for v in _scales(config.dw_min, config.up_down))
    up, down = scale_up * np.asarray(config.piecewise_up), scale_down * np.asarray(config.piecewise_down)
    mean, half = 0.5 * (up + down), 0.5 * (up - down)
    scaled = replace(config, piecewise_up=tuple((mean + factor * half) / scale_up),
                     piecewise_down=tuple((mean - factor * half) / scale_down))
    return replace(device, config=scaled, fit_method=f"{device.fit_method}; step asymmetry scaled by {factor:g}")

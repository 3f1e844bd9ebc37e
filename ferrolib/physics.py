"""Physics stand-in: nucleation-limited switching (NLS) with a Merz-type voltage law (docs/science.md, NLS).

Switched fraction after a pulse of width t at voltage V (Lorentzian distribution of log10 tau)::

    S(t, V) = int [1 - exp(-(t/tau)^n)] F(log10 tau) dlog10 tau,
    F = Lorentzian(centre log10 tau_L(V), half width hw),   tau_L(V) = tau_0 exp(V_a / |V|)

Accumulation (switched regions stay switched): under a ramp ``S_k = max(S_{k-1}, S(t_p, V_k))``; under a train of
identical pulses the switching time accumulates, ``S_k = max(S_{k-1}, S(k t_p, V))``. Conductance follows the
fraction switched towards the polarity's target, separately per polarity::

    down (positive pulses): G = g_high - (g_high - g_low) S;   up (negative pulses): G = g_low + (g_high - g_low) S

A ramp starts from the measured (or given) conductance: its switched fraction is read from G, and G changes
only once ``S(t, V)`` exceeds it. Everything this module produces is **synthetic** (``data_kind='synthetic'``).
The integral uses a fixed midpoint grid in ``u = log10 tau - log10 t`` over [-L, L] (L = 3) plus the closed-form Lorentzian mass
below -L (where the kernel is 1), vectorised over pulses.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import xarray as xr
from scipy.optimize import least_squares

from . import paths, provenance

PREDICTION_RANGE: tuple[float, float] = (1e-9, 1e-1)
"""Pulse widths (s) the calibrated model may be asked to predict."""
CALIBRATION_FILE = "physics_calibration.json"
"""File name of the calibrated parameters under ``paths.DATA``."""
_GRID_HALF = 3.0
_GRID_STEP = 0.025
_GRID = np.arange(-_GRID_HALF + _GRID_STEP / 2, _GRID_HALF, _GRID_STEP)  # midpoints of [-L, L]


@dataclass
class NLSPolarity:
    """NLS parameters of one pulse polarity."""

    log10_tau0: float = -10.0
    """log10 of the Merz prefactor tau_0 (s)."""
    v_a: float = 11.5
    """Activation voltage V_a (V, apparent, across the whole stack)."""
    half_width: float = 0.3
    """Half width at half maximum of the Lorentzian in log10 tau (decades)."""
    n: float = 2.0
    """Avrami-type exponent of the switching kernel."""
    g_low: float = 1e-9
    """Conductance with this polarity's target fully switched off (S)."""
    g_high: float = 1e-8
    """Conductance with the up state fully switched (S)."""

    __repr__ = provenance.compact_repr


@dataclass
class NLSModel:
    """A device's NLS model: one parameter set per polarity."""

    up: NLSPolarity = field(default_factory=NLSPolarity)
    """Potentiation (negative pulses, G rises)."""
    down: NLSPolarity = field(default_factory=NLSPolarity)
    """Depression (positive pulses, G falls)."""
    device_id: str = "synthetic"
    """Device the model was calibrated on."""
    area_m2: float = float("nan")
    """Device area (m^2)."""

    __repr__ = provenance.compact_repr

    def polarity(self, sign: int) -> NLSPolarity:
        """Parameters for a pulse of sign ``sign`` (+1 positive = down, -1 negative = up)."""
        return self.down if sign > 0 else self.up


def tau_centre(params: NLSPolarity, voltage: np.ndarray) -> np.ndarray:
    """Merz law ``log10 tau_L(V) = log10 tau_0 + V_a / (|V| ln 10)``."""
    return params.log10_tau0 + params.v_a / (np.abs(voltage) * math.log(10.0))


def switched_fraction(params: NLSPolarity, pulse_width: np.ndarray | float, voltage: np.ndarray | float) -> np.ndarray:
    """``S(t, V)`` for arrays of pulse widths and voltages (broadcast), fixed-grid quadrature."""
    log_t = np.log10(np.asarray(pulse_width, dtype=float))
    offset = log_t - tau_centre(params, np.asarray(voltage, dtype=float))  # log10 t - centre
    offset = np.asarray(offset)[..., None]
    hw = params.half_width
    below = 0.5 + np.arctan((offset - _GRID_HALF) / hw) / np.pi  # mass with log10 tau < log10 t - L: kernel = 1
    kernel = -np.expm1(-np.power(10.0, -params.n * _GRID))
    density = (hw / np.pi) / ((offset + _GRID) ** 2 + hw**2)  # F at log10 tau = log10 t + u
    return (below[..., 0] + (kernel * density).sum(axis=-1) * _GRID_STEP).clip(0.0, 1.0)


def half_switching_voltage(params: NLSPolarity, pulse_width: np.ndarray | float) -> np.ndarray:
    """|V| at which the distribution's centre equals the pulse width: ``V_a / (ln10 (log10 t - log10 tau_0))``."""
    decades = np.log10(np.asarray(pulse_width, dtype=float)) - params.log10_tau0
    return params.v_a / (math.log(10.0) * decades)


def _ramp_conductance(params: NLSPolarity, sign: int, fractions: np.ndarray, start: float) -> np.ndarray:
    """Conductance after each pulse of one polarity run, given each pulse's S and the start G (accumulation)."""
    window = params.g_high - params.g_low
    current = (params.g_high - start) / window if sign > 0 else (start - params.g_low) / window
    reached = np.maximum.accumulate(fractions)
    moved = reached > current
    target = params.g_high - window * reached if sign > 0 else params.g_low + window * reached
    return np.where(moved, target, start)


def _simulate(model: NLSModel, times: np.ndarray, amplitudes: np.ndarray, start: float) -> np.ndarray:
    """Conductance after each pulse; ``times`` are the effective switching times per pulse."""
    conductance = np.empty(len(amplitudes))
    signs = np.sign(amplitudes).astype(int)
    if np.any(signs == 0):
        raise ValueError("pulse amplitudes must be non-zero")
    boundaries = np.flatnonzero(np.diff(signs)) + 1
    for block in np.split(np.arange(len(amplitudes)), boundaries):
        sign = int(signs[block[0]])
        params = model.polarity(sign)
        fractions = switched_fraction(params, times[block], amplitudes[block])
        conductance[block] = _ramp_conductance(params, sign, fractions, start)
        start = float(conductance[block[-1]])
    return conductance


def protocol_amplitudes(step: float = 0.042) -> np.ndarray:
    """The measurement protocol: +0.7 V to +5.0 V, then -0.6 V to -3.6 V, in steps of ``step``."""
    down = np.arange(0.7 + step, 5.0 + 1e-9, step)
    up = -np.arange(0.6 + step, 3.6 + 1e-9, step)
    return np.concatenate([down, up])


def _as_dataset(model: NLSModel, pulse_width: float, amplitudes: np.ndarray, conductance: np.ndarray,
                description: str) -> xr.Dataset:
    """The ``measurements.read_summary`` layout, labelled synthetic."""
    n = len(amplitudes)
    resistance = 1.0 / conductance
    return xr.Dataset(
        {
            "amplitude": ("pulse", amplitudes, {"units": "V"}),
            "polarity": ("pulse", np.sign(amplitudes).astype(np.int8)),
            "R_low": ("pulse", resistance, {"units": "ohm"}),
            "R_high": ("pulse", resistance, {"units": "ohm"}),
            "G": ("pulse", conductance, {"units": "S"}),
            "outlier": ("pulse", np.zeros(n, dtype=bool)),
        },
        coords={"pulse": np.arange(n), "pulse_number": ("pulse", np.arange(1, n + 1))},
        attrs={
            "device_id": model.device_id,
            "area_m2": model.area_m2,
            "pulse_width_s": float(pulse_width),
            "data_kind": "synthetic",
            "source_file": f"synthetic: {description} of the NLS model {model!r}",
            "source_sha256": "",
        },
    )


def simulate_ramp(model: NLSModel, pulse_width: float, amplitudes: Sequence[float] | None = None,
                  start_g: float | None = None) -> xr.Dataset:
    """A synthetic amplitude ramp (default ``protocol_amplitudes``) at ``pulse_width`` in the layout of
    ``measurements.read_summary``, from ``start_g``; by default, like the measurements (the second of two
    repetitions), from the state the same ramp leaves behind when run once from the depression window's top."""
    amplitudes = protocol_amplitudes() if amplitudes is None else np.asarray(amplitudes, dtype=float)
    times = np.full(len(amplitudes), float(pulse_width))
    if start_g is None:
        first_run = _simulate(model, times, amplitudes, model.polarity(int(np.sign(amplitudes[0]))).g_high)
        start_g = float(first_run[-1])
    conductance = _simulate(model, times, amplitudes, float(start_g))
    return _as_dataset(model, pulse_width, amplitudes, conductance, "amplitude ramp (second repetition)")


def pulse_train(model: NLSModel, pulse_width: float, amplitude: float, n_pulses: int,
                start_g: float | None = None) -> xr.Dataset:
    """A synthetic train of ``n_pulses`` identical pulses; switching time accumulates: ``S_k = S(k t_p, V)``."""
    amplitudes = np.full(n_pulses, float(amplitude))
    start = model.polarity(int(np.sign(amplitude))).g_high if start_g is None else float(start_g)
    if start_g is None and amplitude < 0:
        start = model.up.g_low
    times = float(pulse_width) * np.arange(1, n_pulses + 1)
    return _as_dataset(model, pulse_width, amplitudes, _simulate(model, times, amplitudes, start),
                       f"train of {n_pulses} pulses at {amplitude:+.3g} V")


# ------------------------------------------------------------------------------------------------- calibration
@dataclass
class Calibration:
    """A calibrated NLS model with the quality of the fit per measurement file."""

    model: NLSModel
    """The fitted model."""
    files: list[dict[str, Any]]
    """Per file: path, sha256, pulse width, rms residual per polarity (fraction of the file's G range)."""


def _ramp_blocks(dataset: xr.Dataset, sign: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Amplitudes, conductances (NaN for outliers) of the ``sign`` ramp, and the conductance before it."""
    polarity = dataset["polarity"].values
    conductance = np.where(dataset["outlier"].values, np.nan, dataset["G"].values)
    index = np.flatnonzero(polarity == sign)
    before = conductance[: index[0]][np.isfinite(conductance[: index[0]])]
    start = float(before[-1]) if before.size else float(conductance[index][np.isfinite(conductance[index])][0])
    return dataset["amplitude"].values[index], conductance[index], start


def _calibrate_polarity(datasets: list[xr.Dataset], sign: int, n: float) -> tuple[NLSPolarity, list[float]]:
    ramps = [_ramp_blocks(ds, sign) for ds in datasets]
    widths = [float(ds.attrs["pulse_width_s"]) for ds in datasets]
    all_g = np.concatenate([g[np.isfinite(g)] for _, g, _ in ramps])
    scale = float(np.median(all_g))

    def build(x: np.ndarray) -> NLSPolarity:
        return NLSPolarity(log10_tau0=float(x[0]), v_a=float(x[1]), half_width=float(x[2]), n=n,
                           g_low=float(x[3] * scale), g_high=float(x[4] * scale))

    def residuals(x: np.ndarray) -> np.ndarray:
        params = build(x)
        out = []
        for (amplitudes, measured, start), width in zip(ramps, widths):
            fractions = switched_fraction(params, width, amplitudes)
            simulated = _ramp_conductance(params, sign, fractions, start)
            valid = np.isfinite(measured)
            out.append((simulated[valid] - measured[valid]) / scale)
        return np.concatenate(out)

    g_min, g_max = all_g.min() / scale, all_g.max() / scale
    x0 = np.array([-10.0, 11.5, 0.3, 0.9 * g_min, 1.02 * g_max])
    lower = np.array([-20.0, 0.5, 0.02, 0.5 * g_min, g_max])
    upper = np.array([-4.0, 60.0, 3.0, g_min, 2.0 * g_max])
    result = least_squares(residuals, x0, bounds=(lower, upper), method="trf", x_scale=[1.0, 5.0, 0.3, 0.2, 0.2])
    if result.status <= 0:
        raise RuntimeError(f"NLS calibration did not converge for polarity {sign:+d}: {result.message}")
    params = build(result.x)
    rms = []
    for (amplitudes, measured, start), width in zip(ramps, widths):
        simulated = _ramp_conductance(params, sign, switched_fraction(params, width, amplitudes), start)
        valid = np.isfinite(measured)
        spread = np.nanmax(measured) - np.nanmin(measured)
        rms.append(float(np.sqrt(np.mean((simulated[valid] - measured[valid]) ** 2)) / spread))
    return params, rms


def calibrate(datasets: Sequence[xr.Dataset], n: float = 2.0) -> Calibration:
    """Fit the NLS parameters per polarity across the pulse widths of one device's measured ramps.

    Free per polarity: log10 tau_0, V_a, the Lorentzian half width and the conductance window; ``n`` is fixed.
    Residuals are conductance differences over every inlier read, each ramp started from its measured start.
    """
    datasets = list(datasets)
    if not datasets:
        raise ValueError("calibrate needs at least one measured ramp")
    device_ids = {ds.attrs.get("device_id") for ds in datasets}
    if len(device_ids) != 1:
        raise ValueError(f"calibrate fits one device at a time, got {sorted(map(str, device_ids))}")
    up, rms_up = _calibrate_polarity(datasets, -1, n)
    down, rms_down = _calibrate_polarity(datasets, +1, n)
    model = NLSModel(up=up, down=down, device_id=str(device_ids.pop()), area_m2=float(datasets[0].attrs.get("area_m2", "nan")))
    files = [
        {
            "file": Path(ds.attrs.get("source_file", "")).name,
            "sha256": ds.attrs.get("source_sha256", ""),
            "pulse_width_s": float(ds.attrs["pulse_width_s"]),
            "rms_residual_up": r_up,
            "rms_residual_down": r_down,
        }
        for ds, r_up, r_down in zip(datasets, rms_up, rms_down)
    ]
    return Calibration(model=model, files=files)


def calibration_path(path: str | Path | None = None) -> Path:
    return Path(path) if path else paths.DATA / CALIBRATION_FILE


def save_calibrations(calibrations: Sequence[Calibration], path: str | Path | None = None) -> Path:
    """Write calibrated models with provenance (files, sha256, residuals, versions) to JSON atomically."""
    document = {
        "description": "NLS (Lorentzian log-tau, Merz law) parameters per device and polarity, fitted by "
                       "ferrolib.physics.calibrate to the measured ramps listed; residuals are rms conductance "
                       "errors as a fraction of each file's conductance range. Synthetic stand-in only.",
        "versions": provenance.versions(),
        "devices": {
            c.model.device_id: {"model": provenance.config_dict(c.model), "files": c.files} for c in calibrations
        },
    }
    return provenance.write_json(document, calibration_path(path))


CALIBRATION_AGREEMENT = 1e-6
"""Two calibrations of the same measurements are the same when every parameter differs by at most this fraction
of its scale (``max(|value|, 1)`` for log10 tau_0, V_a, the half width and n; its own magnitude for the
conductances in S). Derivation: the refinement stops at scipy's xtol of 1e-8 relative to the parameter vector,
whose norm is about 15 (log10 tau_0 near -10, V_a near 11), so it resolves each parameter to about 1.5e-7;
1e-6 lies above that and far below any change that matters (a V_a change of 1e-5 V). Measured: an emulated AVX2
host recalibrates both devices within 6e-9 of scale."""


def calibration_differences(model: NLSModel, reference: NLSModel) -> dict[str, float]:
    """Difference of every parameter of two calibrated models as a fraction of its scale
    (``CALIBRATION_AGREEMENT``), named ``up.v_a``, ``down.g_low``, ...; ``inf`` for another device."""
    differences = {"device_id": 0.0 if model.device_id == reference.device_id else float("inf")}
    for side in ("up", "down"):
        ours, theirs = getattr(model, side), getattr(reference, side)
        for f in fields(NLSPolarity):
            a, b = float(getattr(ours, f.name)), float(getattr(theirs, f.name))
            scale = 0.0 if f.name.startswith("g_") else 1.0
            differences[f"{side}.{f.name}"] = 0.0 if a == b else abs(a - b) / max(abs(a), abs(b), scale)
    return differences


def refresh_calibrations(calibrations: Sequence[Calibration], path: str | Path | None = None,
                         force: bool = False) -> tuple[Path, str]:
    """Write ``calibrations`` (``save_calibrations``) unless the file holds the same devices with every parameter
    within ``CALIBRATION_AGREEMENT``; ``force`` writes anyway. Returns the path and what happened."""
    file = calibration_path(path)
    worst = ("none", 0.0)
    if file.exists() and not force:
        try:
            stored = {c.model.device_id: load_calibration(c.model.device_id, file) for c in calibrations}
        except ValueError:
            stored = {}
        for calibration in calibrations:
            old = stored.get(calibration.model.device_id)
            if old is None:
                worst = (f"{calibration.model.device_id} missing", float("inf"))
                break
            name, difference = max(calibration_differences(calibration.model, old).items(), key=lambda i: i[1])
            if difference > worst[1]:
                worst = (f"{calibration.model.device_id} {name}", difference)
        if stored and worst[1] <= CALIBRATION_AGREEMENT:
            return file, f"kept (the calibration agrees; largest difference {worst[1]:.2g} of scale, {worst[0]})"
    save_calibrations(calibrations, file)
    return file, "written" if worst[1] == 0.0 else f"rewritten (changed: {worst[0]} differs by {worst[1]:.2g} of scale)"


def load_calibration(device_id: str, path: str | Path | None = None) -> NLSModel | None:
    """The calibrated model of ``device_id`` from the JSON file, or None where there is none."""
    file = calibration_path(path)
    if not file.exists():
        return None
    try:
        entry = json.loads(file.read_text())["devices"].get(device_id)
        if entry is None:
            return None
        model = entry["model"]
        return NLSModel(up=NLSPolarity(**model["up"]), down=NLSPolarity(**model["down"]),
                        device_id=model["device_id"], area_m2=float(model["area_m2"]))
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{file}: not a valid physics calibration file ({error!r})") from error


def merz_slope(pulse_widths: Sequence[float], amplitudes: Sequence[float]) -> tuple[float, float]:
    """Least-squares line ``|V| = a + b log10 t``; returns (b in V per decade, a)."""
    slope, intercept = np.polyfit(np.log10(np.asarray(pulse_widths, float)), np.abs(np.asarray(amplitudes, float)), 1)
    return float(slope), float(intercept)


def calibrate_device(device_id: str, source: str | Path | None = None) -> Calibration:
    """Calibrate on every pulse width of a device's measurements (the latest file per width)."""
    from . import measurements

    return calibrate(measurements.load_measurements(device_id, source=source, select="last"))


def half_change_amplitude(dataset: xr.Dataset, sign: int) -> float:
    """|amplitude| at which the ``sign`` ramp (+1 down, -1 up) has made half its conductance change: linear
    interpolation where G crosses the midpoint of the ramp's first and last inlier reads."""
    polarity = dataset["polarity"].values
    keep = (polarity == sign) & ~dataset["outlier"].values.astype(bool)
    conductance, amplitude = dataset["G"].values[keep], np.abs(dataset["amplitude"].values[keep])
    if conductance.size < 2:
        raise ValueError(f"{dataset.attrs.get('source_file', 'dataset')}: no {sign:+d} ramp to analyse")
    progress = (conductance - conductance[0]) / (conductance[-1] - conductance[0])
    index = int(np.argmax(progress >= 0.5))
    if index == 0:
        return float(amplitude[0])
    fraction = (0.5 - progress[index - 1]) / (progress[index] - progress[index - 1])
    return float(amplitude[index - 1] + fraction * (amplitude[index] - amplitude[index - 1]))

"""Fit device models to a measured pulse-response ramp (the paper's recipe, SCIENCE.md section 2).

1. Normalise the inlier conductances: ``w = 2 (G - mean G) / (max G - min G)``.
2. Split the reads by polarity (+1 depression "down", -1 potentiation "up"; one contiguous ramp each).
3. Step per pulse against the state before it, by finite differences along each ramp; differences that
   touch an outlier read are dropped.
4. Piecewise: a degree-5 polynomial of the step per direction, evaluated on 32 nodes over [-1, 1] (held
   constant outside the measured states, clipped at 0), zero at the bound the direction saturates at (up at
   w_max, down at w_min); ``dw_min = min(step_up(0), step_down(0))``; nodes relative to ``dw_min`` and, away
   from the saturating bound, at least ``NODE_FLOOR`` (so that no state traps the device).
5. Refine by least squares (scipy ``least_squares``, trust-region reflective) of the simulated against the
   measured states, each ramp simulated from the state before its first pulse with one model pulse per measured
   pulse, noise off (compiled: ``kernels.pulse_train_states``; the torch loop ``simulate_ramp_states_reference``
   is the reference it is tested against): piecewise refines (up_down, w_min, w_max) with the nodes fixed
   (they stretch with the bounds, aihwkit semantics); soft bounds and power step fit all their parameters this way.
6. Report R^2 of the simulated states per direction, the scatter of measured steps around the model step
   (units of the smaller step at w = 0), the cycle-to-cycle estimate and the number of states.

Approximation kept explicit: the ramp raises the amplitude pulse by pulse, the model gives every pulse of a
polarity the step the ramp showed at that state.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import xarray as xr
from scipy.optimize import least_squares

from .devices import (
    MODEL_KINDS,
    DeviceArray,
    DeviceConfig,
    FittedDevice,
    PiecewiseStep,
    PowStep,
    SoftBounds,
    _scales,
    simulate_sequence,
)
from .kernels import kernel_device, pulse_train_states

POLY_DEGREE = 5
"""Degree of the step-against-state polynomial per direction (the paper's)."""
N_NODES = 32
"""Nodes of the piecewise-step device."""
MIN_PULSES = 8
"""Fewest inlier reads per ramp for a fit."""
MIN_RELATIVE_RANGE = 1e-3
"""A file whose inlier conductance range is below this fraction of its mean is flat."""
MIN_RAMP_CHANGE = 0.05
"""A ramp must move the normalised state by at least this much in its pulse direction."""
NODE_FLOOR = 0.05
"""Smallest relative node value away from the saturating bound: a state where both steps vanish would trap
the device for ever (the polynomial can dip to 0 where a ramp starts slowly)."""
TOLERANCE = 1e-6
"""Relative tolerance on the cost and the parameters of the least-squares refinements (scipy ftol, xtol)."""
MAX_EVALUATIONS = 1000
"""Most residual evaluations of a least-squares refinement before it counts as not converged."""
W_BOUNDS = (0.3, 3.0)
"""Allowed magnitudes of the fitted bounds w_min, w_max (normalised units)."""
FIT_AGREEMENT = TOLERANCE
"""Two fits of one measurement are the same fit when every model parameter and fitted fact differs by at most
this fraction of its scale (``fit_differences``). Derivation: every parameter is a state (w in [-1, 1]), a step
in state units or a dimensionless ratio of order one, so its scale is ``max(|value|, 1)``; the least-squares
refinement resolves the parameters only to ``TOLERANCE`` of that scale (scipy's xtol), so a larger difference is
a different fit, while hosts whose floating-point rounding differs (AVX-512 against AVX2 kernels and BLAS) give
refits that differ by at most 6e-9 of it (measured over every committed device file, emulated AVX2 host)."""


class FitError(ValueError):
    """A fit that cannot be done; the message names the file and the problem."""


@dataclass
class Ramp:
    """One direction's pulses: the state before each pulse and after it (NaN where a read is an outlier)."""

    direction: int
    """+1 up (potentiation, negative pulses), -1 down (depression, positive pulses)."""
    start: float
    """State before the first simulated pulse."""
    after: np.ndarray
    """Measured state after each simulated pulse (NaN for outliers)."""
    indices: np.ndarray
    """Read index (in the file) of every entry of ``after``."""
    step_state: np.ndarray
    """State before each valid finite-difference step."""
    step: np.ndarray
    """Measured step in the pulse direction (positive = moved the way the pulse pushes)."""
    amplitudes: tuple[float, float]
    """First and last amplitude of the ramp (V)."""
    n_inlier: int
    """Inlier reads of the ramp."""


@dataclass
class PreparedData:
    """A ramp file normalised and split, ready for any model fit."""

    origin: str
    w: np.ndarray
    outlier: np.ndarray
    up: Ramp
    down: Ramp
    g_min: float
    g_max: float
    g_mean: float
    dataset: xr.Dataset


def normalise(conductance: np.ndarray) -> tuple[np.ndarray, float, float, float]:
    """``w = 2 (G - mean) / (max - min)``; returns (w, mean, min, max)."""
    g_mean, g_min, g_max = float(np.mean(conductance)), float(np.min(conductance)), float(np.max(conductance))
    return 2.0 * (conductance - g_mean) / (g_max - g_min), g_mean, g_min, g_max


def prepare(dataset: xr.Dataset) -> PreparedData:
    """Validate, normalise and split a ``read_summary``-style Dataset; raises FitError naming the file."""
    origin = str(dataset.attrs.get("source_file", "dataset"))
    for name in ("G", "polarity", "amplitude"):
        if name not in dataset:
            raise FitError(f"{origin}: missing variable {name!r}")
    conductance = np.asarray(dataset["G"].values, dtype=float)
    polarity = np.asarray(dataset["polarity"].values, dtype=int)
    amplitude = np.asarray(dataset["amplitude"].values, dtype=float)
    outlier = np.asarray(dataset["outlier"].values, dtype=bool) if "outlier" in dataset else np.zeros(len(conductance), bool)
    inlier = ~outlier & np.isfinite(conductance)
    if inlier.sum() < 2 * MIN_PULSES:
        raise FitError(f"{origin}: too few pulses ({int(inlier.sum())} inlier reads; need {MIN_PULSES} per ramp)")
    w_inlier, g_mean, g_min, g_max = normalise(conductance[inlier])
    if (g_max - g_min) < MIN_RELATIVE_RANGE * abs(g_mean):
        raise FitError(f"{origin}: flat ramp (conductance range {g_max - g_min:.3g} S is below "
                       f"{MIN_RELATIVE_RANGE:g} of the mean {g_mean:.3g} S)")
    w = np.full(len(conductance), np.nan)
    w[inlier] = w_inlier
    boundaries = np.flatnonzero(np.diff(polarity)) + 1
    blocks = np.split(np.arange(len(polarity)), boundaries)
    signs = [int(polarity[b[0]]) for b in blocks]
    if sorted(signs) != [-1, 1]:
        raise FitError(f"{origin}: expected one contiguous ramp per polarity, found polarity blocks {signs}")
    ramps: dict[int, Ramp] = {}
    for block in blocks:
        direction = -int(polarity[block[0]])  # positive pulses push the state down
        name = "up" if direction > 0 else "down"
        valid = block[inlier[block]]
        if len(valid) < MIN_PULSES:
            raise FitError(f"{origin}: too few pulses on the {name} ramp ({len(valid)} inlier reads, need {MIN_PULSES})")
        before = [i for i in range(block[0] - 1, -1, -1) if inlier[i]]
        if before:
            start_index, simulated = before[0], block
        else:
            start_index, simulated = valid[0], block[block > valid[0]]
        sequence = np.concatenate([[start_index], simulated])
        states = w[sequence]
        steps = direction * np.diff(states)
        ok = np.isfinite(steps) & (np.diff(sequence) == 1)
        change = direction * (w[valid[-1]] - w[start_index])
        if not change > MIN_RAMP_CHANGE:
            moves = "raise" if direction > 0 else "lower"
            raise FitError(f"{origin}: the {name} ramp does not {moves} the conductance (normalised change "
                           f"{change:+.3f}, need more than {MIN_RAMP_CHANGE})")
        ramps[direction] = Ramp(
            direction=direction, start=float(w[start_index]), after=w[simulated], indices=simulated,
            step_state=states[:-1][ok], step=steps[ok],
            amplitudes=(float(amplitude[block[0]]), float(amplitude[block[-1]])), n_inlier=len(valid),
        )
    return PreparedData(origin, w, outlier, ramps[1], ramps[-1], g_min, g_max, g_mean, dataset)


# ------------------------------------------------------------------------------------------------ simulation
def _batch(kind: str, params: np.ndarray, nodes: tuple[np.ndarray, np.ndarray] | None, dw_min: float) -> DeviceArray:
    """A DeviceArray of shape (B,) from a batch of parameter vectors (float64)."""
    p = torch.as_tensor(np.atleast_2d(params), dtype=torch.float64)
    if kind == "piecewise":
        scale_up, scale_down = _scales(dw_min, p[:, 0])
        return DeviceArray("piecewise", w_min=p[:, 1], w_max=p[:, 2], scale_up=scale_up, scale_down=scale_down,
                           dw_min=dw_min, nodes_up=torch.as_tensor(nodes[0]), nodes_down=torch.as_tensor(nodes[1]))
    scale_up, scale_down = torch.exp(p[:, 0]), torch.exp(p[:, 1])
    if kind == "softbounds":
        return DeviceArray("softbounds", w_min=p[:, 2], w_max=p[:, 3], scale_up=scale_up, scale_down=scale_down,
                           dw_min=dw_min)
    return DeviceArray("powstep", w_min=p[:, 4], w_max=p[:, 5], scale_up=scale_up, scale_down=scale_down,
                       dw_min=dw_min, gamma_up=p[:, 2], gamma_down=p[:, 3])


def simulate_ramp_states_reference(devices: DeviceArray, ramp: Ramp) -> torch.Tensor:
    """Reference: states after each pulse of ``ramp`` simulated pulse by pulse in torch from its start (noise off),
    shape (len(after), *shape). Slow (one torch call per pulse); ``simulate_ramp_states`` is the fast path."""
    return simulate_sequence(devices, ramp.start, [ramp.direction] * len(ramp.after))[1:]


def simulate_ramp_states(devices: DeviceArray, ramp: Ramp) -> np.ndarray:
    """States after each pulse of ``ramp`` from its start (noise off): ``w_{k+1} = clip(w_k +- dw(w_k))`` by the
    compiled loop ``kernels.pulse_train_states``, shape (B, len(after)) for a (B,) or () device array (B = 1).
    Same arithmetic, in the same order, as ``simulate_ramp_states_reference``."""
    flat = devices.map(lambda t: t.reshape(1, -1))
    kernel = kernel_device(flat, (1, int(np.prod(devices.shape, dtype=np.int64))))
    return pulse_train_states(kernel, float(ramp.start), bool(ramp.direction > 0), len(ramp.after))


def _residuals(data: PreparedData, make: Callable[[np.ndarray], DeviceArray], params: np.ndarray) -> np.ndarray:
    """Simulated minus measured states over both ramps (outliers excluded), one row per parameter vector."""
    devices = make(params)
    rows = []
    for ramp in (data.down, data.up):
        simulated = simulate_ramp_states(devices, ramp)  # (B, n)
        valid = np.isfinite(ramp.after)
        rows.append(simulated[:, valid] - ramp.after[valid])
    return np.concatenate(rows, axis=1)


def _least_squares(data: PreparedData, make, x0: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Bounded least squares with a batched finite-difference Jacobian (one simulation for all columns)."""
    x0 = np.clip(x0, lower + 1e-9, upper - 1e-9)
    step = 1e-6 * np.maximum(1.0, np.abs(x0))

    def fun(x: np.ndarray) -> np.ndarray:
        return _residuals(data, make, x[None])[0]

    def jac(x: np.ndarray) -> np.ndarray:
        h = np.where(x + step > upper, -step, step)
        shifted = x[None] + np.diag(h)
        batch = _residuals(data, make, np.vstack([x[None], shifted]))
        return (batch[1:] - batch[0]).T / h

    result = least_squares(fun, x0, jac=jac, bounds=(lower, upper), method="trf", max_nfev=MAX_EVALUATIONS,
                           ftol=TOLERANCE, xtol=TOLERANCE)
    if result.status <= 0 or not np.all(np.isfinite(result.x)):
        raise FitError(f"{data.origin}: the least-squares fit did not converge ({result.message})")
    return result.x


# --------------------------------------------------------------------------------------------------- models
def polynomial_step(ramp: Ramp, degree: int = POLY_DEGREE) -> Callable[[np.ndarray], np.ndarray]:
    """Degree-``degree`` polynomial of the measured step against state, held constant outside the measured
    states and clipped at 0."""
    coefficients = np.polyfit(ramp.step_state, ramp.step, degree)
    low, high = float(ramp.step_state.min()), float(ramp.step_state.max())
    return lambda w: np.clip(np.polyval(coefficients, np.clip(w, low, high)), 0.0, None)


def _fit_piecewise(data: PreparedData) -> tuple[DeviceConfig, str]:
    grid = np.linspace(-1.0, 1.0, N_NODES)
    step_up, step_down = polynomial_step(data.up), polynomial_step(data.down)
    dw_min = float(min(step_up(np.zeros(1))[0], step_down(np.zeros(1))[0]))
    if not dw_min > 0.0:
        raise FitError(f"{data.origin}: the fitted step at w = 0 is not positive (up {step_up(np.zeros(1))[0]:.3g}, "
                       f"down {step_down(np.zeros(1))[0]:.3g})")
    nodes_up = np.maximum(step_up(grid) / dw_min, NODE_FLOOR)
    nodes_down = np.maximum(step_down(grid) / dw_min, NODE_FLOOR)
    nodes_up[-1], nodes_down[0] = 0.0, 0.0
    make = lambda x: _batch("piecewise", x, (nodes_up, nodes_down), dw_min)  # noqa: E731
    lower = np.array([-0.9, -W_BOUNDS[1], W_BOUNDS[0]])
    upper = np.array([10.0, -W_BOUNDS[0], W_BOUNDS[1]])
    up_down, w_min, w_max = _least_squares(data, make, np.array([0.0, -1.0, 1.0]), lower, upper)
    config = PiecewiseStep(dw_min=dw_min, up_down=float(up_down), w_min=float(w_min), w_max=float(w_max),
                           piecewise_up=tuple(nodes_up), piecewise_down=tuple(nodes_down))
    method = (f"degree-{POLY_DEGREE} polynomial step per direction on {N_NODES} nodes, zero at the saturating bound; "
              "least squares of the simulated response for up_down, w_min, w_max (scipy trf)")
    return config, method


def _scale_config(cls, a_up: float, a_down: float, **kwargs) -> DeviceConfig:
    """A config from the two step scales in ferrolib's up_down convention (smaller scale = dw_min)."""
    dw_min = min(a_up, a_down)
    up_down = a_up / dw_min - 1.0 if a_up >= a_down else -(a_down / dw_min - 1.0)
    return cls(dw_min=float(dw_min), up_down=float(up_down), **kwargs)


def _initial_scales(data: PreparedData) -> tuple[float, float]:
    return (max(2.0 * float(np.mean(np.clip(data.up.step, 0, None))), 1e-4),
            max(2.0 * float(np.mean(np.clip(data.down.step, 0, None))), 1e-4))


def _fit_softbounds(data: PreparedData) -> tuple[DeviceConfig, str]:
    a_up, a_down = _initial_scales(data)
    make = lambda x: _batch("softbounds", x, None, 1.0)  # noqa: E731
    lower = np.array([-15.0, -15.0, -W_BOUNDS[1], W_BOUNDS[0]])
    upper = np.array([1.0, 1.0, -W_BOUNDS[0], W_BOUNDS[1]])
    x = _least_squares(data, make, np.array([np.log(a_up), np.log(a_down), -1.0, 1.0]), lower, upper)
    config = _scale_config(SoftBounds, float(np.exp(x[0])), float(np.exp(x[1])), w_min=float(x[2]), w_max=float(x[3]))
    return config, "least squares of the simulated response for a_up, a_down, w_min, w_max (scipy trf)"


def _fit_powstep(data: PreparedData) -> tuple[DeviceConfig, str]:
    a_up, a_down = _initial_scales(data)
    make = lambda x: _batch("powstep", x, None, 1.0)  # noqa: E731
    lower = np.array([-15.0, -15.0, 0.05, 0.05, -W_BOUNDS[1], W_BOUNDS[0]])
    upper = np.array([1.0, 1.0, 10.0, 10.0, -W_BOUNDS[0], W_BOUNDS[1]])
    x0 = np.array([np.log(a_up), np.log(a_down), 1.0, 1.0, -1.0, 1.0])
    x = _least_squares(data, make, x0, lower, upper)
    config = _scale_config(PowStep, float(np.exp(x[0])), float(np.exp(x[1])), gamma_up=float(x[2]),
                           gamma_down=float(x[3]), w_min=float(x[4]), w_max=float(x[5]))
    return config, "least squares of the simulated response for a_up, a_down, gamma_up, gamma_down, w_min, w_max (scipy trf)"


_FITTERS = {"piecewise": _fit_piecewise, "softbounds": _fit_softbounds, "powstep": _fit_powstep}


# ------------------------------------------------------------------------------------------------ quality
def _r2(simulated: np.ndarray, measured: np.ndarray) -> float:
    valid = np.isfinite(measured)
    residual = simulated[valid] - measured[valid]
    total = measured[valid] - measured[valid].mean()
    return float(1.0 - residual @ residual / (total @ total))


def fit_ramp(dataset: xr.Dataset, model: str = "piecewise") -> FittedDevice:
    """Fit ``model`` (piecewise, softbounds or powstep) to one ramp file's Dataset (``read_summary`` form)."""
    if model not in MODEL_KINDS:
        raise ValueError(f"unknown device model {model!r}; expected one of {MODEL_KINDS}")
    data = prepare(dataset)
    config, method = _FITTERS[model](data)
    nominal = config.devices()
    zero = torch.zeros((), dtype=torch.float64)
    granularity = float(torch.minimum(nominal.dw_up(zero), nominal.dw_down(zero)))
    quality: dict[str, float] = {}
    residuals, model_steps = [], []
    w_model = np.full(len(data.w), np.nan)
    for name, ramp in (("up", data.up), ("down", data.down)):
        simulated = simulate_ramp_states(nominal, ramp)[0]
        w_model[ramp.indices] = simulated
        quality[f"r2_{name}"] = _r2(simulated, ramp.after)
        state = torch.as_tensor(ramp.step_state)
        expected = (nominal.dw_up(state) if ramp.direction > 0 else nominal.dw_down(state)).numpy()
        quality[f"residual_std_{name}"] = float(np.std(ramp.step - expected) / granularity)
        residuals.append(ramp.step - expected)
        model_steps.append(expected)
    unsimulated = np.isnan(w_model) & np.isfinite(data.w)
    w_model[unsimulated] = data.w[unsimulated]  # the first read: the start state, not simulated
    pooled, steps = np.concatenate(residuals), np.concatenate(model_steps)
    trace = xr.Dataset(
        {
            "amplitude": ("pulse", dataset["amplitude"].values, {"units": "V"}),
            "polarity": ("pulse", dataset["polarity"].values),
            "G": ("pulse", dataset["G"].values, {"units": "S"}),
            "outlier": ("pulse", data.outlier.astype(np.int8)),
            "w_measured": ("pulse", data.w, {"long_name": "normalised measured state (NaN: outlier)"}),
            "w_model": ("pulse", w_model, {"long_name": "simulated state, each ramp from the state before it"}),
        }
    )
    attrs = dataset.attrs
    return FittedDevice(
        config=config,
        device_id=str(attrs.get("device_id", "unknown")),
        pulse_width_s=float(attrs.get("pulse_width_s", float("nan"))),
        data_kind=str(attrs.get("data_kind", "measured")),
        source_file=str(attrs.get("source_file", "")),
        source_sha256=str(attrs.get("source_sha256", "")),
        source_root=str(attrs.get("source_root", "")),
        fit_method=method,
        c2c=float(np.sqrt(np.mean(pooled**2) / np.mean(steps**2))),
        amplitude_range_up=data.up.amplitudes,
        amplitude_range_down=data.down.amplitudes,
        area_m2=float(attrs.get("area_m2", float("nan"))),
        g_min=data.g_min,
        g_max=data.g_max,
        g_mean=data.g_mean,
        n_up=data.up.n_inlier,
        n_down=data.down.n_inlier,
        n_outliers=int(data.outlier.sum()),
        trace=trace,
        **quality,
    )


_EXACT_FACTS = ("device_id", "data_kind", "source_sha256", "n_up", "n_down", "n_outliers")
"""Fitted facts two fits of one measurement share exactly (identity and counts)."""
_SCALED_FACTS = ("c2c", "r2_up", "r2_down", "residual_std_up", "residual_std_down")
"""Dimensionless fitted facts of order one, compared like the model parameters."""
_RELATIVE_FACTS = ("pulse_width_s", "area_m2", "g_min", "g_max", "g_mean")
"""Fitted facts with units (s, m^2, S), compared relative to their own magnitude."""


def _difference(a: float, b: float, scale: float) -> float:
    """``|a - b| / max(|a|, |b|, scale)`` over all entries (0 where both are equal, NaN included)."""
    a, b = np.atleast_1d(np.asarray(a, dtype=float)), np.atleast_1d(np.asarray(b, dtype=float))
    if a.shape != b.shape:
        return float("inf")
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    with np.errstate(invalid="ignore", divide="ignore"):
        relative = np.abs(a - b) / np.maximum(np.maximum(np.abs(a), np.abs(b)), scale)
    return float(np.max(np.where(same, 0.0, np.nan_to_num(relative, nan=np.inf)), initial=0.0))


def fit_differences(fit: FittedDevice, reference: FittedDevice) -> dict[str, float]:
    """Difference of every model parameter and fitted fact of two fits as a fraction of its scale
    (``FIT_AGREEMENT``): ``|a - b| / max(|a|, |b|, 1)`` for parameters and dimensionless facts,
    ``|a - b| / max(|a|, |b|)`` for facts with units; ``inf`` where the model kinds, the measurement (SHA-256)
    or a count differ."""
    if type(fit.config) is not type(reference.config):
        return {"model": float("inf")}
    differences = {name: 0.0 if getattr(fit, name) == getattr(reference, name) else float("inf")
                   for name in _EXACT_FACTS}
    for name in (f.name for f in fields(fit.config)):
        differences[name] = _difference(getattr(fit.config, name), getattr(reference.config, name), 1.0)
    for names, scale in ((_SCALED_FACTS, 1.0), (_RELATIVE_FACTS, 0.0)):
        for name in names:
            differences[name] = _difference(getattr(fit, name), getattr(reference, name), scale)
    return differences


def largest_difference(fit: FittedDevice, reference: FittedDevice) -> tuple[str, float]:
    """The parameter or fact of ``fit_differences`` that differs most, and by how much (``("none", 0.0)`` for
    identical fits)."""
    name, difference = max(fit_differences(fit, reference).items(), key=lambda item: item[1])
    return (name, difference) if difference > 0 else ("none", 0.0)


def same_fit(fit: FittedDevice, reference: FittedDevice, tolerance: float = FIT_AGREEMENT) -> bool:
    """Whether two fits are the same fit of the same measurement within ``tolerance`` (``FIT_AGREEMENT``)."""
    return largest_difference(fit, reference)[1] <= tolerance


def fit_file(path: str | Path, model: str = "piecewise") -> FittedDevice:
    """Read a measurement file (``measurements.read_summary``) and fit ``model`` to it."""
    from .measurements import read_summary

    return fit_ramp(read_summary(path), model)

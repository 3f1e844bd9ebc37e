"""Fit device models to a measured pulse-response ramp (docs/science.md, "Fitting"): ferrolib's recipe, refined from
the paper's (below), and the paper's own as the model ``paper_piecewise``.

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

``paper_piecewise`` is the paper's own recipe instead (its code's ``fit_piecewise_device``, ``paper_fit``): every
read normalised (outliers included), ``np.gradient`` of the states per polarity in read order, degree-5 polynomial,
``|p|`` on the 32 nodes with no floor and no clipping, ``dw_min = min |p(0)|``, and (up_down, w_max, w_min) fitted
with aihwkit's ``fit_measurements`` semantics re-implemented (``fit_measurements``: a float32 piecewise tile started
at the first read, one pulse per read, Powell on lmfit's sine-bounded variables). Its parameters convert from
aihwkit's ``up_down`` convention with ``aihwkit_export.from_aihwkit``.

Approximation kept explicit: the ramp raises the amplitude pulse by pulse, the model gives every pulse of a
polarity the step the ramp showed at that state.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import xarray as xr
from numba import njit
from scipy.optimize import least_squares, minimize

from .aihwkit_export import from_aihwkit
from .devices import MODEL_KINDS, DeviceArray, DeviceConfig, PiecewiseStep, PowStep, SoftBounds, _scales, simulate_sequence
from .fitted import FittedDevice
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


def prepare(dataset: xr.Dataset, all_reads: bool = False) -> PreparedData:
    """Validate, normalise and split a ``read_summary``-style Dataset; raises FitError naming the file.

    The normalisation runs over the inlier reads, or over every finite read (outliers included) with
    ``all_reads`` (the paper's recipe); outliers stay out of the ramps either way."""
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
    normalised = np.isfinite(conductance) if all_reads else inlier
    w_normalised, g_mean, g_min, g_max = normalise(conductance[normalised])
    if (g_max - g_min) < MIN_RELATIVE_RANGE * abs(g_mean):
        raise FitError(f"{origin}: flat ramp (conductance range {g_max - g_min:.3g} S is below "
                       f"{MIN_RELATIVE_RANGE:g} of the mean {g_mean:.3g} S)")
    w = np.full(len(conductance), np.nan)
    w[inlier] = w_normalised[inlier[normalised]]
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


# ------------------------------------------------------------------------------------------ the paper's recipe
PAPER_PARAMETERS: dict[str, tuple[float, float, float]] = {
    "up_down": (0.0, -0.99, 0.99),
    "w_max": (1.0, 0.1, 2.0),
    "w_min": (-1.0, -2.0, -0.1),
}
"""Initial value, lower and upper bound of each parameter the paper's recipe fits (aihwkit's names and its
``up_down`` convention: the larger step is ``dw_min``); ``dw_min`` itself is held fixed."""
PAPER_EVALUATIONS_PER_PARAMETER = 2000
"""lmfit's evaluation budget of a scalar minimiser: ``2000 (n + 1)`` evaluations for n varied parameters."""


@dataclass
class PaperFit:
    """The paper's recipe applied to one file, in aihwkit's convention (``aihwkit_export.from_aihwkit`` converts)."""

    dw_min: float
    """Smaller magnitude of the two step polynomials at w = 0 (held fixed by the fit)."""
    up_down: float
    """aihwkit asymmetry: up step scale ``dw_min (1 + min(u, 0))``, down ``dw_min (1 - max(u, 0))``."""
    w_min: float
    """Fitted lower bound."""
    w_max: float
    """Fitted upper bound."""
    piecewise_up: np.ndarray
    """|up-step polynomial| / dw_min on the nodes, 0 at the last node."""
    piecewise_down: np.ndarray
    """|down-step polynomial| / dw_min on the nodes, 0 at the first node."""
    pulses: np.ndarray
    """Sign of every read's pulse: +1 potentiation (negative amplitude), -1 depression."""
    response: np.ndarray
    """Normalised conductance of every read (outliers included)."""
    model_response: np.ndarray
    """The float32 tile trace at the fitted parameters (``aihwkit_pulse_response``)."""
    loss: float
    """Sum of squared differences of ``model_response`` and ``response``."""
    n_evaluations: int
    """Loss evaluations the optimiser used."""

    def aihwkit_parameters(self) -> dict[str, Any]:
        """aihwkit ``PiecewiseStepDevice`` parameters (input of ``aihwkit_export.from_aihwkit``)."""
        return {"dw_min": self.dw_min, "up_down": self.up_down, "w_min": self.w_min, "w_max": self.w_max,
                "piecewise_up": list(self.piecewise_up), "piecewise_down": list(self.piecewise_down)}


def paper_response(dataset: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Step 1: ``w = 2 (G - mean G) / (max G - min G)`` over every read (outliers included) and the pulse sign of
    each read, ``-1`` for a positive amplitude and ``+1`` otherwise (the paper's ``read_conductance_data``)."""
    origin = str(dataset.attrs.get("source_file", "dataset"))
    conductance = np.asarray(dataset["G"].values, dtype=float)
    if not np.all(np.isfinite(conductance)):
        raise FitError(f"{origin}: the paper's recipe needs a finite conductance at every read "
                       f"({int((~np.isfinite(conductance)).sum())} are not)")
    pulses = np.where(np.asarray(dataset["amplitude"].values, dtype=float) > 0, -1, 1).astype(np.int8)
    return normalise(conductance)[0], pulses


def paper_nodes(response: np.ndarray, pulses: np.ndarray, degree: int = POLY_DEGREE,
                n_nodes: int = N_NODES) -> tuple[np.ndarray, np.ndarray, float]:
    """Steps 2-3: per polarity ``np.gradient`` of the states in read order against the state, a degree-``degree``
    least-squares polynomial (``Polynomial.fit``), ``|p|`` on ``n_nodes`` nodes over [-1, 1] with the node at the
    saturating bound set to 0 (up: last, down: first), ``dw_min = min(|p_up(0)|, |p_down(0)|)``, nodes divided by
    it. No floor, no clipping to the measured states. Returns (piecewise_up, piecewise_down, dw_min)."""
    polynomials = {}
    for sign in (1, -1):
        states = response[pulses == sign]
        polynomials[sign] = np.polynomial.Polynomial.fit(states, np.gradient(states), degree)
    grid = np.linspace(-1.0, 1.0, n_nodes)
    nodes_up, nodes_down = np.abs(polynomials[1](grid)), np.abs(polynomials[-1](grid))
    nodes_up[-1], nodes_down[0] = 0.0, 0.0
    dw_min = float(min(np.abs(polynomials[1](0.0)), np.abs(polynomials[-1](0.0))))
    return nodes_up / dw_min, nodes_down / dw_min, dw_min


def _aihwkit_scales(dw_min: float, up_down: float) -> tuple[np.float32, np.float32]:
    """aihwkit's step scales in float32: ``(min(u, 0) + 1) dw_min`` up, ``(-max(u, 0) + 1) dw_min`` down."""
    u, one, zero = np.float32(up_down), np.float32(1.0), np.float32(0.0)
    up_bias, down_bias = (zero, -u) if u > 0 else (u, zero)
    return (up_bias + one) * np.float32(dw_min), (down_bias + one) * np.float32(dw_min)


@njit(cache=True)
def _piecewise_tile_trace(pulses, start, scale_up, scale_down, w_min, w_max, nodes_up, nodes_down):
    """Compiled body of ``aihwkit_pulse_response`` (float32 scalars and node vectors)."""
    n_sections = nodes_up.shape[0] - 1
    sections, one, zero = np.float32(n_sections), np.float32(1.0), np.float32(0.0)
    out = np.empty(pulses.shape[0], np.float32)
    w = max(min(start, w_max), w_min)
    out[0] = w
    for k in range(pulses.shape[0] - 1):
        w_scaled = max((w - w_min) / (w_max - w_min) * sections, zero)
        index = min(int(math.floor(w_scaled)), n_sections - 1)
        t = min(w_scaled - np.float32(index), one)
        if pulses[k] > 0:
            w = w + scale_up * ((one - t) * nodes_up[index] + t * nodes_up[index + 1])
        else:
            w = w - scale_down * ((one - t) * nodes_down[index] + t * nodes_down[index + 1])
        w = min(max(w, w_min), w_max)
        out[k + 1] = w
    return out


def aihwkit_pulse_response(pulses: np.ndarray, start: float, dw_min: float, up_down: float, w_min: float,
                           w_max: float, nodes_up: np.ndarray, nodes_down: np.ndarray) -> np.ndarray:
    """The trace aihwkit's ``fit_measurements`` compares with the measurement (its ``model_response``): a one-device
    float32 tile of aihwkit's ``PiecewiseStepDevice`` (noise off) set to ``start`` (clipped to the bounds), then one
    pulse per entry of ``pulses[:-1]`` (+1 up, -1 down: learning rate 1, one pulse per update), the state recorded
    after each. Step (``rpu_piecewisestep_device.cpp``): ``s = max((w - w_min)/(w_max - w_min) N, 0)``,
    ``i = min(floor s, N-1)``, ``t = min(s - i, 1)``, ``w +- scale ((1-t) v_i + t v_{i+1})``, clipped; scales
    from ``_aihwkit_scales``. Returns float32, ``len(pulses)`` states (the first is the clipped start)."""
    f32 = np.float32
    scale_up, scale_down = _aihwkit_scales(dw_min, up_down)
    return _piecewise_tile_trace(np.ascontiguousarray(pulses, dtype=np.int8), f32(start), scale_up, scale_down,
                                 f32(w_min), f32(w_max), np.ascontiguousarray(nodes_up, dtype=f32),
                                 np.ascontiguousarray(nodes_down, dtype=f32))


def aihwkit_pulse_response_reference(pulses: np.ndarray, start: float, dw_min: float, up_down: float, w_min: float,
                                     w_max: float, nodes_up: np.ndarray, nodes_down: np.ndarray) -> np.ndarray:
    """Reference of ``aihwkit_pulse_response``: the same float32 steps, one numpy scalar operation at a time."""
    f32 = np.float32
    scale_up, scale_down = _aihwkit_scales(dw_min, up_down)
    low, high, one = f32(w_min), f32(w_max), f32(1.0)
    up, down = [f32(v) for v in nodes_up], [f32(v) for v in nodes_down]
    sections = len(up) - 1
    w = max(min(f32(start), high), low)
    trace = [w]
    for pulse in pulses[:-1]:
        w_scaled = max((w - low) / (high - low) * f32(sections), f32(0.0))
        index = min(int(np.floor(w_scaled)), sections - 1)
        t = min(w_scaled - f32(index), one)
        nodes, scale, sign = (up, scale_up, 1) if pulse > 0 else (down, scale_down, -1)
        step = scale * ((one - t) * nodes[index] + t * nodes[index + 1])
        w = max(min(w + step if sign > 0 else w - step, high), low)
        trace.append(w)
    return np.array(trace, dtype=f32)


class _EvaluationBudgetSpent(Exception):
    """lmfit's abort when a scalar minimiser exceeds its evaluation budget."""


def fit_measurements(pulses: np.ndarray, response: np.ndarray, dw_min: float, nodes_up: np.ndarray,
                     nodes_down: np.ndarray) -> tuple[dict[str, float], float, int]:
    """aihwkit's ``fit_measurements`` as the paper calls it (``method='powell'``, noise suppressed, one pulse per
    update), re-implemented: minimise ``sum (aihwkit_pulse_response - response)^2`` over ``PAPER_PARAMETERS`` by
    scipy's Powell on lmfit's bounded internal variables ``x = lo + (sin z + 1)(hi - lo)/2`` (started at
    ``z0 = arcsin(2 (x0 - lo)/(hi - lo) - 1)``, scipy's default tolerances, at most
    ``PAPER_EVALUATIONS_PER_PARAMETER (n + 1)`` evaluations, after which lmfit keeps the last point).
    Returns (parameters, loss, evaluations)."""
    names = list(PAPER_PARAMETERS)
    initial, lower, upper = (np.array([PAPER_PARAMETERS[n][i] for n in names]) for i in range(3))
    budget = PAPER_EVALUATIONS_PER_PARAMETER * (len(names) + 1)
    evaluations, last = 0, np.arcsin(2 * (initial - lower) / (upper - lower) - 1)

    def external(z: np.ndarray) -> np.ndarray:
        return lower + (np.sin(z) + 1) * (upper - lower) / 2.0

    def loss(z: np.ndarray) -> float:
        nonlocal evaluations, last
        evaluations += 1
        if evaluations > budget:
            raise _EvaluationBudgetSpent
        last = np.array(z, dtype=float)
        x = dict(zip(names, external(last)))
        trace = aihwkit_pulse_response(pulses, response[0], dw_min, x["up_down"], x["w_min"], x["w_max"],
                                       nodes_up, nodes_down)
        residual = trace.astype(float) - response
        return float((residual * residual).sum())

    try:
        z = minimize(loss, last.copy(), method="Powell", options={"maxiter": 2 * budget}).x
    except _EvaluationBudgetSpent:
        z = last
    values = dict(zip(names, (float(v) for v in external(np.atleast_1d(z)))))
    return values, loss(np.atleast_1d(z)), evaluations - 1


def paper_fit(dataset: xr.Dataset) -> PaperFit:
    """The paper's recipe (its ``fit_piecewise_device``) on one ramp file: ``paper_response``, ``paper_nodes``,
    then ``fit_measurements`` of up_down, w_max and w_min with dw_min and the nodes fixed."""
    origin = str(dataset.attrs.get("source_file", "dataset"))
    response, pulses = paper_response(dataset)
    if min((pulses == 1).sum(), (pulses == -1).sum()) <= POLY_DEGREE:
        raise FitError(f"{origin}: the paper's recipe needs more than {POLY_DEGREE} reads of each polarity")
    nodes_up, nodes_down, dw_min = paper_nodes(response, pulses)
    if not (np.isfinite(dw_min) and dw_min > 0.0):
        raise FitError(f"{origin}: the step polynomials vanish at w = 0 (dw_min {dw_min:.3g})")
    values, loss, evaluations = fit_measurements(pulses, response, dw_min, nodes_up, nodes_down)
    model = aihwkit_pulse_response(pulses, response[0], dw_min, values["up_down"], values["w_min"], values["w_max"],
                                   nodes_up, nodes_down)
    return PaperFit(dw_min=dw_min, piecewise_up=nodes_up, piecewise_down=nodes_down, pulses=pulses, response=response,
                    model_response=model, loss=loss, n_evaluations=evaluations, **values)


def _fit_paper_piecewise(data: PreparedData) -> tuple[DeviceConfig, str]:
    fit = paper_fit(data.dataset)
    method = (f"the paper's recipe: every read normalised, np.gradient per polarity, degree-{POLY_DEGREE} polynomial, "
              f"|p| on {N_NODES} nodes over [-1, 1] (0 at the saturating bound, no floor), dw_min = min |p(0)|; "
              "up_down, w_max, w_min by aihwkit fit_measurements semantics (float32 piecewise tile, one pulse per "
              f"read, Powell on lmfit's sine-bounded variables; loss {fit.loss:.6g} after {fit.n_evaluations} "
              "evaluations)")
    return from_aihwkit(fit.aihwkit_parameters()), method


_FITTERS = {"piecewise": _fit_piecewise, "softbounds": _fit_softbounds, "powstep": _fit_powstep,
            "paper_piecewise": _fit_paper_piecewise}


# ------------------------------------------------------------------------------------------------ quality
def _r2(simulated: np.ndarray, measured: np.ndarray) -> float:
    valid = np.isfinite(measured)
    residual = simulated[valid] - measured[valid]
    total = measured[valid] - measured[valid].mean()
    return float(1.0 - residual @ residual / (total @ total))


def fit_ramp(dataset: xr.Dataset, model: str = "piecewise") -> FittedDevice:
    """Fit ``model`` (piecewise, softbounds, powstep or paper_piecewise) to one ramp file's Dataset (``read_summary``
    form). The quality figures (R^2, scatter, c2c) use ferrolib's ramps for every model; ``paper_piecewise``
    normalises over every read, as the paper does."""
    if model not in MODEL_KINDS:
        raise ValueError(f"unknown device model {model!r}; expected one of {MODEL_KINDS}")
    data = prepare(dataset, all_reads=model == "paper_piecewise")
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

"""Compiled device steps (numba): the mean step of every model kind at a state, shared by the pulsed-update
kernels of training and by the fast simulated response of the fits.

The formulas are those of ``devices.DeviceArray.dw_up`` / ``dw_down`` (docs/science.md, "Device models"), written in the
same floating-point order so that the compiled steps reproduce the torch reference:

    piecewise   scale ((1-q) v_i + q v_{i+1}),  t = N (w - w_min)/(w_max - w_min), i = min(floor t, N-1)
    softbounds  up: scale (1 - w/w_max),  down: scale (1 - w/w_min)
    powstep     omega = (w_max - w)/(w_max - w_min);  up: scale omega^gamma,  down: scale (1 - omega)^gamma

This module sits below ``devices`` (it imports nothing of ferrolib); ``kernel_device`` accepts any object with
``DeviceArray``'s attributes.
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
import torch
from numba import njit

MODEL_KINDS: tuple[str, ...] = ("piecewise", "softbounds", "powstep")
"""Device model kinds; the position of each is its integer code inside the kernels."""

KIND_CODES = {kind: code for code, kind in enumerate(MODEL_KINDS)}
"""Integer code of every device model kind inside the numba kernels."""


class KernelDevice(NamedTuple):
    """A DeviceArray as contiguous float64 numpy arrays of the tile's shape, ready for the kernels."""

    kind: int
    w_min: np.ndarray
    w_max: np.ndarray
    scale_up: np.ndarray
    scale_down: np.ndarray
    nodes_up: np.ndarray
    nodes_down: np.ndarray
    gamma_up: np.ndarray
    gamma_down: np.ndarray
    c2c: float


def _read_only(array: np.ndarray) -> np.ndarray:
    """``array`` as a read-only view: the kernels only read device parameters, and one flag for every array
    gives each kernel one compiled signature, whether a parameter was broadcast (a copy) or given per device."""
    view = array.view()
    view.flags.writeable = False
    return view


def kernel_device(devices: Any, shape: tuple[int, int]) -> KernelDevice:
    """Broadcast every per-device parameter of ``devices`` (a ``DeviceArray``) to ``shape`` (float64, C-contiguous,
    read-only)."""

    def full(value: torch.Tensor | None) -> np.ndarray:
        if value is None:
            return _read_only(np.zeros(shape))
        array = value.detach().to("cpu", torch.float64).numpy()
        return _read_only(np.ascontiguousarray(np.broadcast_to(array, shape)))

    def nodes(value: torch.Tensor | None) -> np.ndarray:
        if value is None:
            return _read_only(np.zeros(2))
        return _read_only(np.ascontiguousarray(value.detach().to("cpu", torch.float64).numpy().ravel()))

    return KernelDevice(
        KIND_CODES[devices.kind], full(devices.w_min), full(devices.w_max), full(devices.scale_up),
        full(devices.scale_down), nodes(devices.nodes_up), nodes(devices.nodes_down), full(devices.gamma_up),
        full(devices.gamma_down), float(devices.c2c),
    )


@njit(cache=True, inline="always")
def step_piecewise(w: float, w_min: float, w_max: float, scale: float, nodes: np.ndarray) -> float:
    """``scale ((1-q) v_i + q v_{i+1})`` with ``t = N (w - w_min)/(w_max - w_min)``, ``i = min(floor t, N-1)``."""
    n_segments = nodes.shape[0] - 1
    t = n_segments * (w - w_min) / (w_max - w_min)
    t = min(max(t, 0.0), float(n_segments))
    index = min(int(math.floor(t)), n_segments - 1)
    q = t - index
    return max(scale * ((1.0 - q) * nodes[index] + q * nodes[index + 1]), 0.0)


@njit(cache=True, inline="always")
def step_softbounds(w: float, bound: float, scale: float) -> float:
    """``scale (1 - w/bound)``: bound is w_max for up steps and w_min for down steps."""
    return max(scale * (1.0 - w / bound), 0.0)


@njit(cache=True, inline="always")
def step_powstep(w: float, w_min: float, w_max: float, scale: float, gamma: float, up: bool) -> float:
    """``omega = (w_max - w)/(w_max - w_min)``; up ``scale omega^gamma``, down ``scale (1 - omega)^gamma``."""
    omega = min(max((w_max - w) / (w_max - w_min), 0.0), 1.0)
    base = omega if up else 1.0 - omega
    return max(scale * base**gamma, 0.0)


@njit(cache=True, inline="always")
def device_step(kind: int, up: bool, w: float, i: int, j: int, p: KernelDevice) -> float:
    """Mean magnitude of one step of device (i, j) at state ``w`` in direction ``up``."""
    w_min = p.w_min[i, j]
    w_max = p.w_max[i, j]
    if kind == 0:
        if up:
            return step_piecewise(w, w_min, w_max, p.scale_up[i, j], p.nodes_up)
        return step_piecewise(w, w_min, w_max, p.scale_down[i, j], p.nodes_down)
    if kind == 1:
        if up:
            return step_softbounds(w, w_max, p.scale_up[i, j])
        return step_softbounds(w, w_min, p.scale_down[i, j])
    if up:
        return step_powstep(w, w_min, w_max, p.scale_up[i, j], p.gamma_up[i, j], True)
    return step_powstep(w, w_min, w_max, p.scale_down[i, j], p.gamma_down[i, j], False)


@njit(cache=True)
def pulse_train_states(p: KernelDevice, start: float, up: bool, n_pulses: int) -> np.ndarray:
    """States after each of ``n_pulses`` identical noise-free pulses, every device of a (1, B) array started at
    ``start`` (clipped to its bounds): ``w_{k+1} = clip(w_k +- dw(w_k))``. Returns shape (B, n_pulses)."""
    n_devices = p.w_min.shape[1]
    out = np.empty((n_devices, n_pulses))
    for b in range(n_devices):
        w_min = p.w_min[0, b]
        w_max = p.w_max[0, b]
        w = min(max(start, w_min), w_max)
        for k in range(n_pulses):
            step = device_step(p.kind, up, w, 0, b, p)
            w = w + step if up else w - step
            w = min(max(w, w_min), w_max)
            out[b, k] = w
    return out

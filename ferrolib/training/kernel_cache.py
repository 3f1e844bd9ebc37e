"""Every pulsed kernel compiled ahead into numba's on-disk cache (``make env``), so that training loads them."""
from __future__ import annotations

import numpy as np
import torch

from ..devices import DeviceArray
from .mp_transfer import (accumulate, active_columns, exact_transfer, pulsed_transfer, pulsed_transfer_and_accumulate,
                          transfer_counts)
from .pulse_primitives import c2c_normal, kernel_device
from .pulsed import (apply_deterministic, apply_pulse_counts, apply_pulse_trains, draw_pulse_trains, effective_weight,
                     pulsed_update)
from .reference import transfer_pulse_trains


def compile_kernels() -> None:
    """Call every kernel once with each argument type training uses, so numba compiles them into its on-disk
    cache (``make env`` runs this; a fresh clone's first run then loads instead of compiling).

    Types: float32 layer inputs and errors, float64 transfer requests (mixed precision), float64 states, int64
    counters; device parameters broadcast from scalars (writable copies) or given per device (read-only views, with
    device-to-device variation); the reference of ``sps`` writable or read-only likewise.
    """
    shape = (3, 4)
    x = torch.linspace(-1.0, 1.0, 2 * shape[1], dtype=torch.float32).reshape(2, shape[1])
    d = torch.linspace(-0.5, 0.5, 2 * shape[0], dtype=torch.float32).reshape(2, shape[0])
    for per_device in (False, True):
        ones = torch.ones(shape if per_device else (), dtype=torch.float64)
        devices = DeviceArray("softbounds", -ones, ones, 0.01 * ones, 0.01 * ones, dw_min=0.01, c2c=0.1)
        params = kernel_device(devices, shape)
        state = np.zeros(shape)
        up, down = np.zeros(shape, dtype=np.int64), np.zeros(shape, dtype=np.int64)
        trains = draw_pulse_trains(x, d, 0.1, 0.01, 31, 0, 0)
        apply_pulse_trains(state, trains, params, 0, 0, up, down)
        counts = transfer_counts(np.ones(shape), np.ascontiguousarray(params.scale_up), None,
                                 (d.T @ x).numpy(), -0.1)
        transfer_counts(np.ones(shape), params.scale_up, 2)
        for keep_counts in (True, False):
            exact_transfer(np.ones(shape), np.ascontiguousarray(params.scale_up), None, (d.T @ x).numpy(), -0.1, 0, 0,
                           state, params, up, down, effective_weight(state, np.zeros(shape)), np.zeros(shape),
                           keep_counts=keep_counts)
        apply_pulse_counts(state, counts, params, 0, 0, up, down)
        transfer_pulse_trains(counts, np.ascontiguousarray(params.scale_up), 0.01, 31, 0, 0)
        accumulate(np.ones(shape), (d.T @ x).numpy(), 0.1)
        for inputs in (x, torch.where(x > 0, x, 0.0)):  # every column active, some inactive
            runs, compact = active_columns(inputs.numpy())
            accumulate(np.ones(shape), (d.T @ torch.from_numpy(compact)).numpy(), 0.1, runs)
        for reference in (np.zeros(shape), np.broadcast_to(np.zeros(shape), shape)):
            weight = effective_weight(state, reference)
            apply_pulse_trains(state, trains, params, 0, 0, up, down, weight, reference)
            apply_pulse_counts(state, counts, params, 0, 0, up, down, weight, reference)
            pulsed_transfer(np.ones(shape), np.ascontiguousarray(params.scale_up), None, (d.T @ x).numpy(), -0.1,
                            0.01, 31, 0, 0, state, params, up, down, weight, reference)
            pulsed_transfer_and_accumulate(np.ones(shape), np.ascontiguousarray(params.scale_up), None, x[0].numpy(),
                                           d[0].numpy(), (d.T @ x).numpy(), 0.1, 0.01, 31, 0, 0, state, params, up,
                                           down, weight, reference)
            pulsed_update(x, d, 0.1, 0.01, 31, 0, 0, state, params, up, down, weight, reference)
        for mode in ("implicit", "expected"):
            apply_deterministic(state, x, d, 0.1, 0.01, 31, params, mode, 0, 0, up, down)
    c2c_normal(0, 0, 0, 0, 0)

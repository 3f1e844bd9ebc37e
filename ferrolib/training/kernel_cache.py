"""Every numba kernel compiled ahead into numba's on-disk cache (``make env``), with each argument type training,
fitting and the tests use, so that neither a run nor a test pays a compile."""
from __future__ import annotations

import itertools

import numpy as np
import torch

from ..devices import DeviceArray
from ..fitting import aihwkit_pulse_response
from ..kernels import pulse_train_states
from .algorithms import UpdateSettings, make_layer
from .mp_transfer import (accumulate, active_columns, exact_transfer, pulsed_transfer, pulsed_transfer_and_accumulate,
                          transfer_counts)
from .periphery import IOParameters
from .periphery import backward as periphery_backward
from .periphery import forward as periphery_forward
from .pulse_primitives import c2c_normal, kernel_device
from .pulsed import (apply_deterministic, apply_pulse_counts, apply_pulse_trains, draw_pulse_trains, effective_weight,
                     pulsed_update)
from .reference import bernoulli_bits, transfer_pulse_trains
from .transfer import TRANSFER_ALGORITHMS


def compile_kernels() -> None:
    """Call every kernel once with each argument type training, fitting and the tests use, so numba compiles them
    into its on-disk cache (``make env`` runs this; a fresh clone's first run then loads instead of compiling).

    Types: float32 layer inputs and errors (float64 too: the tests' references), float64 transfer requests (mixed
    precision), float64 states, int64 counters; device parameters read-only (``kernel_device``), broadcast from
    scalars or given per device; the weight float64 or float32 and the reference of ``sps`` writable or read-only;
    the fits' traces (``pulse_train_states``, ``aihwkit_pulse_response``) and the reference bits.
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
        for eps in (params.scale_up, params.scale_up.copy()):
            transfer_counts(np.ones(shape), eps, 2)
            transfer_counts(np.ones(shape), eps, None, (d.T @ x).numpy(), -0.1)
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
        for reference, weight_type in itertools.product((np.zeros(shape), np.broadcast_to(np.zeros(shape), shape)),
                                                        (np.float64, np.float32)):
            eps = params.scale_up if weight_type == np.float64 else params.scale_up.copy()  # read-only or not
            weight = effective_weight(state, reference).astype(weight_type)
            apply_pulse_trains(state, trains, params, 0, 0, up, down, weight, reference)
            apply_pulse_counts(state, counts, params, 0, 0, up, down, weight, reference)
            pulsed_transfer(np.ones(shape), eps, None, (d.T @ x).numpy(), -0.1, 0.01, 31, 0, 0, state, params, up,
                            down, weight, reference)
            pulsed_transfer_and_accumulate(np.ones(shape), eps, None, x[0].numpy(), d[0].numpy(), (d.T @ x).numpy(),
                                           0.1, 0.01, 31, 0, 0, state, params, up, down, weight, reference)
            for inputs, errors in ((x, d), (x.double(), d.double())):
                pulsed_update(inputs, errors, 0.1, 0.01, 31, 0, 0, state, params, up, down, weight, reference)
        for mode in ("implicit", "expected"):
            apply_deterministic(state, x, d, 0.1, 0.01, 31, params, mode, 0, 0, up, down)
    for algorithm in TRANSFER_ALGORITHMS:  # the fused transfer kernel (one signature for every rule and read)
        layer = make_layer(algorithm, torch.zeros(shape), devices, UpdateSettings(desired_bl=5))
        layer.update(x[:, :shape[1]], d[:, :shape[0]], 0.1, 0)
    no_noise = lambda round_index, rows, n_rows, n_out: torch.zeros(n_rows, n_out)  # noqa: E731
    weight32 = torch.full(shape, 20.0, dtype=torch.float32)  # saturates: the fused reads' retries too
    _, saturated, _ = periphery_forward(weight32, x, IOParameters(), no_noise)
    periphery_backward(weight32, d, IOParameters(), no_noise, saturated)
    c2c_normal(0, 0, 0, 0, 0)
    bernoulli_bits(np.full((2, 3), 0.5), np.array([2, 2], dtype=np.int64), 0, 0, 0)
    piecewise = DeviceArray("piecewise", torch.tensor(-1.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64),
                            torch.tensor(0.01, dtype=torch.float64), torch.tensor(0.01, dtype=torch.float64),
                            nodes_up=torch.ones(3, dtype=torch.float64), nodes_down=torch.ones(3, dtype=torch.float64),
                            dw_min=0.01)
    pulse_train_states(kernel_device(piecewise, (1, 1)), 0.0, True, 4)  # fitting.simulate_ramp_states
    aihwkit_pulse_response(np.ones(4), 0.0, 0.01, 0.0, -1.0, 1.0, np.ones(3), np.ones(3))

"""Naive references of the pulsed fast paths: plain loops, one ``DeviceArray.pulse`` per pulse, on the same random
draws (the counter-based hashes of ``training.pulse_primitives``), so the tests compare states, counts and
counters exactly.

* ``draw_pulse_trains_reference``: ``pulse_probabilities`` (torch), then ``bernoulli_bits`` per side
  (of ``pulsed.draw_pulse_trains`` and the fused ``pulsed.pulsed_update``);
* ``apply_pulse_trains_reference``: every coincidence in sample, slot, row, column order (of
  ``pulsed.apply_pulse_trains``);
* ``apply_pulse_counts_reference``: pulse k of every device in turn (of ``pulsed.apply_pulse_counts``);
* ``transfer_pulse_trains``: aihwkit's pulsed transfer of requested counts as trains (with
  ``apply_pulse_trains``, of ``mp_transfer.pulsed_transfer``);
* ``implicit_transfer_reference``: aihwkit's DETERMINISTIC_IMPLICIT transfer, written from its C++ (of
  ``mp_transfer.pulsed_transfer(..., implicit=True)``).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from numba import njit, prange
from torch import Tensor

from ..devices import DeviceArray
from .pulse_primitives import MAX_BL, _line_bits, _sample_hash, _tag_key, c2c_normal
from .pulsed import PulseTrains, draw_pulse_trains, pulse_probabilities


@njit(parallel=True, cache=True)
def _bits_kernel(probability, bl, seed, event0, tag):
    """Line n of sample b: ``_line_bits`` with the sample's key ``(seed, event0 + b)`` and BL ``bl[b]``."""
    batch, lines = probability.shape
    bits = np.zeros((batch, lines), dtype=np.int64)
    for b in prange(batch):
        n_slots = bl[b]
        if n_slots == 0:
            continue
        full = (1 << n_slots) - 1
        key = _tag_key(_sample_hash(seed, event0 + b), tag)
        for line in range(lines):
            bits[b, line] = _line_bits(key, line, probability[b, line], n_slots, full)
    return bits


def bernoulli_bits(probability: np.ndarray, bl: np.ndarray, seed: int, event0: int, tag: int) -> np.ndarray:
    """Packed Bernoulli trains (B, n) int64: bit t (t < BL_b) set with probability ``probability[b, n]``.

    Uniforms come from a counter-based hash of ``(seed, event0 + b, tag, line)`` followed by a splitmix64
    sequence over the slots, so the trains depend only on these keys (deterministic, any thread count).
    """
    return _bits_kernel(np.ascontiguousarray(probability, dtype=np.float64), np.ascontiguousarray(bl, dtype=np.int64),
                        seed, event0, tag)


def draw_pulse_trains_reference(
    x: Tensor, d: Tensor, lr: float, dw_min: float, desired_bl: int, seed: int, event0: int,
    update_management: bool = True, bl_management: bool = True,
) -> PulseTrains:
    """Reference of ``draw_pulse_trains``: ``pulse_probabilities`` (torch), then ``bernoulli_bits`` per side."""
    p, q, bl = pulse_probabilities(x, d, lr, dw_min, desired_bl, update_management, bl_management)
    bl_np = bl.numpy()
    return PulseTrains(
        bernoulli_bits(p.double().numpy(), bl_np, seed, event0, 0),
        bernoulli_bits(q.double().numpy(), bl_np, seed, event0, 1),
        (x < 0).numpy(), (d < 0).numpy(), bl_np,
    )


def apply_pulse_trains_reference(
    state: Tensor, trains: PulseTrains, devices: DeviceArray, seed: int, event0: int,
    count_up: np.ndarray, count_down: np.ndarray,
) -> Tensor:
    """Naive reference: loops over samples, slots, rows, columns; one ``DeviceArray.pulse`` per coincidence."""
    state = state.clone()
    batch, n_in = trains.x_bits.shape
    n_out = trains.d_bits.shape[1]
    for b in range(batch):
        pulses_so_far = np.zeros((n_out, n_in), dtype=np.int64)
        for t in range(MAX_BL):
            for i in range(n_out):
                if not (int(trains.d_bits[b, i]) >> t) & 1:
                    continue
                for j in range(n_in):
                    if not (int(trains.x_bits[b, j]) >> t) & 1:
                        continue
                    up = bool(trains.x_negative[b, j]) != bool(trains.d_negative[b, i])
                    k = pulses_so_far[i, j]
                    device = devices.map(lambda v, i=i, j=j: v[i : i + 1, j : j + 1])
                    noise = torch.tensor([[c2c_normal(seed, event0 + b, i, j, k)]], dtype=state.dtype)
                    direction = torch.tensor([[1.0 if up else -1.0]], dtype=state.dtype)
                    state[i, j] = device.pulse(state[i : i + 1, j : j + 1], direction, noise)[0, 0]
                    pulses_so_far[i, j] += 1
                    (count_up if up else count_down)[i, j] += 1
    return state


def apply_pulse_counts_reference(state: Tensor, counts: np.ndarray, devices: DeviceArray, seed: int,
                                 event: int) -> Tensor:
    """Naive reference of ``apply_pulse_counts``: pulse k of every device in turn through ``DeviceArray.pulse``."""
    state = state.clone()
    counts_t = torch.as_tensor(counts)
    for k in range(int(counts_t.abs().max()) if counts_t.numel() else 0):
        direction = torch.where(counts_t.abs() > k, counts_t.sign(), torch.zeros_like(counts_t)).to(state.dtype)
        noise = torch.tensor(
            [[c2c_normal(seed, event, i, j, k) for j in range(state.shape[1])] for i in range(state.shape[0])],
            dtype=state.dtype,
        )
        state = torch.where(direction != 0, devices.pulse(state, direction, noise), state)
    return state


def transfer_pulse_trains(counts: np.ndarray, eps: np.ndarray, granularity: float, desired_bl: int, seed: int,
                          event0: int) -> PulseTrains:
    """aihwkit's pulsed mixed-precision transfer of the requested counts ``n`` (out, in) as stochastic trains.

    Row i is one pulsed update with ``x = n_i eps_i`` (the requested change, weight units), one-hot ``d = e_i``,
    ``lr = 1``, update and BL management on (``MixedPrecRPUDevice::forwardUpdate``, src/rpucuda/
    rpu_mixedprec_device.cpp; ``setUpPar`` of rpu_mixedprec_device_base.cpp forces both managements). With
    ``k_i = max_j |n_ij eps_ij| / granularity``: column j fires with ``p = |x_j| / max|x|`` scaled as in
    ``pulse_probabilities``, so its pulse count is ``Binomial(BL_i, p_j q_i)`` with mean
    ``|n_ij| eps_ij / granularity`` while ``k_i <= desired_bl``, and at most ``desired_bl``.
    Row i uses the random keys ``(seed, event0 + i)``.
    """
    n_out = counts.shape[0]
    x = -torch.from_numpy(counts * eps)
    d = torch.eye(n_out, dtype=x.dtype)
    return draw_pulse_trains(x, d, 1.0, granularity, desired_bl, seed, event0, True, True)


def implicit_transfer_reference(
    chi: np.ndarray, eps: np.ndarray, max_pulses: int | None, increment: np.ndarray | None, scale: float,
    granularity: float, desired_bl: int, seed: int, event0: int, state: Tensor, devices: DeviceArray,
    count_up: np.ndarray, count_down: np.ndarray,
) -> tuple[Tensor, np.ndarray]:
    """Naive reference of ``pulsed_transfer(..., implicit=True)``, a plain loop written from aihwkit's C++ (CPU):
    returns the new states and the requested counts; chi and the counters change in place.

    Per row i (``MixedPrecRPUDevice::forwardUpdate``, src/rpucuda/rpu_mixedprec_device.cpp): ``chi += scale *
    increment``, ``n = trunc(chi / eps)`` (capped at ``max_pulses``), ``chi -= n eps``; then one pulsed update of
    ``x = -n eps`` (weight units, lr 1; aihwkit sends x = n with lr = eps) and ``d = e_i`` with update and BL
    management on (``MixedPrecRPUDeviceBase::setUpPar``), pulse type DETERMINISTIC_IMPLICIT: BL, A and B of
    ``performUpdateManagement`` (rpu_pulsed_meta_parameter.cpp), ``x_val = clamp(B |x|, 0, 1)``,
    ``d_val = clamp(A, 0, 1)`` (``generateDetImplicit``, resolutions 0), ``c = rint(BL d_val x_val)`` with the
    sign of x (``generateCoincidencesDetI``, dense_bit_line_maker.cpp); ``|c|`` pulses one at a time, up where
    x < 0 (a positive coincidence lowers the weight), pulse k keyed ``(seed, event0 + i, i, j, k)``."""
    state = state.clone()
    n_out, n_in = chi.shape
    eps = np.broadcast_to(eps, chi.shape)
    counts = np.zeros(chi.shape, dtype=np.int64)
    for i in range(n_out):
        for j in range(n_in):
            if increment is not None:
                chi[i, j] += scale * float(increment[i, j])
            n = int(chi[i, j] / eps[i, j])
            if max_pulses is not None:
                n = max(-max_pulses, min(max_pulses, n))
            chi[i, j] -= n * eps[i, j]
            counts[i, j] = n
        x = [-(int(counts[i, j]) * float(eps[i, j])) for j in range(n_in)]
        x_abs_max = max(abs(v) for v in x)
        if x_abs_max == 0.0:  # performUpdateManagement: BL = 0
            continue
        k_val = 1.0 * x_abs_max * 1.0 / granularity
        bl = min(math.ceil(k_val), desired_bl)
        a = math.sqrt(1.0 / (granularity * bl))
        b = a
        d_val = 1.0
        if k_val > desired_bl:
            d_val *= desired_bl / k_val
        a *= math.sqrt(x_abs_max / d_val)
        b *= math.sqrt(d_val / x_abs_max)
        d_value = min(max(abs(1.0) * a, 0.0), 1.0)
        for j in range(n_in):
            x_value = min(max(abs(x[j]) * b, 0.0), 1.0)
            coincidences = round(d_value * bl * (-x_value if x[j] < 0 else x_value))
            device = devices.map(lambda v, i=i, j=j: v[i : i + 1, j : j + 1])
            direction = torch.tensor([[1.0 if coincidences < 0 else -1.0]], dtype=state.dtype)
            for pulse in range(abs(coincidences)):
                noise = torch.tensor([[c2c_normal(seed, event0 + i, i, j, pulse)]], dtype=state.dtype)
                state[i, j] = device.pulse(state[i : i + 1, j : j + 1], direction, noise)[0, 0]
                (count_up if coincidences < 0 else count_down)[i, j] += 1
    return state, counts


__all__ = ["bernoulli_bits", "draw_pulse_trains_reference", "apply_pulse_trains_reference",
           "apply_pulse_counts_reference", "transfer_pulse_trains", "implicit_transfer_reference"]

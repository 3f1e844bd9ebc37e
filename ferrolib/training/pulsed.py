"""Pulsed update engine: stochastic pulse trains (aihwkit semantics), deterministic variants and
integer pulse counts, each with a numba fast path and a naive reference (docs/science.md: device models,
plain analog SGD, mixed precision).

Conventions
-----------
* A rank-one update ``dW = -lr d x^T`` per sample: column j fires in each of BL slots with probability
  ``p_j = min(B |x_j|, 1)``, row i with ``q_i = min(A |d_i|, 1)``; every coincidence applies one device
  step at the current state in direction ``-sign(x_j d_i)`` (up when ``x_j d_i < 0``), then clips.
* Update-BL management: ``k = lr max|x| max|d| / dw_min``, ``BL = min(ceil k, desired_bl)``;
  ``A B = lr / (dw_min BL)``. Update management rebalances A and B so that ``B max|x| = A max|d| = sqrt(k/BL)``;
  when ``k > desired_bl`` it gives ``p = |x|/max|x|`` and ``q = min(k/BL |d|/max|d|, 1)`` instead.
  Both are computed per sample (aihwkit CPU semantics; see ``pulse_probabilities``).
* The bits of one sample's BL slots are packed into an int64 word per line (bit t = slot t), so the number of
  coincidences of row i and column j is ``popcount(dbits[b, i] & xbits[b, j])``.
* Cycle-to-cycle noise is drawn from a counter-based hash (splitmix64 of ``(seed, event, i, j, k)`` followed by
  Box-Muller), so any loop order, and the naive reference, get identical draws. ``event`` is a global sample
  index for pulse trains and a global update index for pulse counts; ``k`` numbers the pulses of one event on
  one device.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic
from torch import Tensor

from ..devices import DeviceArray
from ..kernels import KIND_CODES

MAX_BL = 63
"""Longest pulse train that fits in one packed int64 word."""

_PIECEWISE, _SOFTBOUNDS, _POWSTEP = (KIND_CODES[k] for k in ("piecewise", "softbounds", "powstep"))


# --------------------------------------------------------------------------------------------- device steps
from ..kernels import KernelDevice, device_step, kernel_device, step_piecewise, step_powstep, step_softbounds  # noqa: E402,F401


assert (_PIECEWISE, _SOFTBOUNDS, _POWSTEP) == (0, 1, 2), "kernel kind codes out of sync with MODEL_KINDS"


@njit(cache=True)
def device_step_array(kind: int, up: bool, w: np.ndarray, p: KernelDevice) -> np.ndarray:
    """``device_step`` on every device of a state array (to test the numba steps against DeviceArray)."""
    out = np.empty_like(w)
    for i in range(w.shape[0]):
        for j in range(w.shape[1]):
            out[i, j] = device_step(kind, up, w[i, j], i, j, p)
    return out


# ----------------------------------------------------------------------------------------------- noise
@njit(cache=True, inline="always")
def _mix(z: np.uint64) -> np.uint64:
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit(cache=True)
def c2c_normal(seed: int, event: int, i: int, j: int, k: int) -> float:
    """Standard normal draw keyed by ``(seed, event, i, j, k)``: splitmix64 hashing, then Box-Muller."""
    golden = np.uint64(0x9E3779B97F4A7C15)
    h = _mix(np.uint64(seed) + golden)
    h = _mix(h ^ (np.uint64(event) + golden))
    h = _mix(h ^ (np.uint64(i) + golden))
    h = _mix(h ^ (np.uint64(j) + golden))
    h = _mix(h ^ (np.uint64(k) + golden))
    h2 = _mix(h + golden)
    u1 = (float(h >> np.uint64(11)) + 0.5) * (1.0 / 9007199254740992.0)
    u2 = float(h2 >> np.uint64(11)) * (1.0 / 9007199254740992.0)
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


@njit(cache=True, inline="always")
def _apply_steps(w: float, n: int, up: bool, i: int, j: int, p: KernelDevice, seed: int, event: int) -> float:
    """Apply ``n`` pulses to device (i, j) one at a time at the current state, with c2c noise, clipping."""
    w_min = p.w_min[i, j]
    w_max = p.w_max[i, j]
    for k in range(n):
        step = device_step(p.kind, up, w, i, j, p)
        if p.c2c > 0.0:
            step *= 1.0 + p.c2c * c2c_normal(seed, event, i, j, k)
        w = w + step if up else w - step
        w = min(max(w, w_min), w_max)
    return w


@njit(cache=True, inline="always")
def _pulse_device(state, i, j, pulses, up, p, seed, event, count_up, count_down, weight, reference):
    """``_apply_steps`` of ``pulses`` pulses on device (i, j), its counter and, given a non-empty ``weight``, its
    read-out weight ``state - reference``."""
    state[i, j] = _apply_steps(state[i, j], pulses, up, i, j, p, seed, event)
    if weight.size > 0:
        weight[i, j] = state[i, j] - reference[i, j]
    if up:
        count_up[i, j] += pulses
    else:
        count_down[i, j] += pulses


@njit(cache=True, inline="always")
def _popcount(x: np.int64) -> np.int64:
    x = x - ((x >> 1) & 0x5555555555555555)
    x = (x & 0x3333333333333333) + ((x >> 2) & 0x3333333333333333)
    x = (x + (x >> 4)) & 0x0F0F0F0F0F0F0F0F
    return ((x * 0x0101010101010101) >> 56) & 0xFF


# ------------------------------------------------------------------------------------ stochastic pulse trains
@dataclass
class PulseTrains:
    """Packed stochastic pulse trains of a mini-batch for one tile."""

    x_bits: np.ndarray
    """(B, n_in) int64: bit t set when column j fires in slot t."""
    d_bits: np.ndarray
    """(B, n_out) int64: bit t set when row i fires in slot t."""
    x_negative: np.ndarray
    """(B, n_in) bool: x_j < 0."""
    d_negative: np.ndarray
    """(B, n_out) bool: d_i < 0."""
    bl: np.ndarray
    """(B,) int64 pulse-train length of every sample (0 where x or d is all zero)."""


def pulse_probabilities(
    x: Tensor, d: Tensor, lr: float, dw_min: float, desired_bl: int,
    update_management: bool = True, bl_management: bool = True,
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-sample firing probabilities ``p = min(B|x|, 1)``, ``q = min(A|d|, 1)`` and train lengths BL.

    ``k = lr max|x| max|d| / dw_min``; ``BL = min(ceil k, desired_bl)`` with BL management, else desired_bl;
    ``A B = lr/(dw_min BL)``. Without update management ``A = B``. With update management (always on with BL
    management, as aihwkit forces it) ``B max|x| = A max|d| = sqrt(k/BL)`` while ``k <= desired_bl``; a
    saturated train (``k > desired_bl``) keeps x unclipped: ``p = |x|/max|x|``, ``q = min(k/BL |d|/max|d|, 1)``
    (aihwkit ``PulsedUpdateMetaParameter::performUpdateManagement``, src/rpucuda/rpu_pulsed_meta_parameter.cpp:
    ``d_val *= max_BL / k_val`` before balancing).
    """
    if not 1 <= desired_bl <= MAX_BL:
        raise ValueError(f"desired_bl must be in 1..{MAX_BL}, got {desired_bl}")
    x_max = x.abs().amax(dim=1)
    d_max = d.abs().amax(dim=1)
    k = lr * x_max * d_max / dw_min
    active = k > 0
    if bl_management:
        bl = torch.clamp(torch.ceil(k), 1, desired_bl).long()
    else:
        bl = torch.full_like(x_max, desired_bl, dtype=torch.long)
    bl = torch.where(active, bl, torch.zeros_like(bl))
    product = lr / (dw_min * bl.clamp_min(1).to(x.dtype))
    if update_management or bl_management:
        # aihwkit shrinks d's maximum by desired_bl/k when saturated, so that x fires at most with p = 1.
        d_balanced = d_max * torch.clamp(desired_bl / k.clamp_min(1e-30), max=1.0)
        ratio = torch.where(active, d_balanced / x_max.clamp_min(1e-30), torch.ones_like(x_max))
        scale_x = torch.sqrt(product * ratio)
        scale_d = torch.sqrt(product / ratio)
    else:
        scale_x = scale_d = torch.sqrt(product)
    p = (scale_x[:, None] * x.abs()).clamp_max(1.0)
    q = (scale_d[:, None] * d.abs()).clamp_max(1.0)
    return p, q, bl


@njit(cache=True, inline="always")
def _sample_hash(seed: int, event: int) -> np.uint64:
    """The part of a line's key shared by every line of one sample: ``mix(mix(seed) ^ event)``."""
    golden = np.uint64(0x9E3779B97F4A7C15)
    return _mix(_mix(np.uint64(seed) + golden) ^ (np.uint64(event) + golden))


@njit(cache=True, inline="always")
def _tag_key(sample: np.uint64, tag: int) -> np.uint64:
    """The part of a line's key shared by every line of one side of a sample: ``mix(sample ^ tag)`` (``sample``
    from ``_sample_hash``)."""
    return _mix(sample ^ (np.uint64(tag) + np.uint64(0x9E3779B97F4A7C15)))


@njit(cache=True, inline="always")
def _line_bits(tag_key: np.uint64, line: int, p, n_slots: int, slots: np.int64) -> np.int64:
    """Packed train of one line, drawn in the slots set in ``slots`` only (bits of the other slots stay 0):
    slot t fires when ``u_t < p``, ``u_t`` the top 53 bits of ``mix(h + (t+1) golden)``, ``h`` the line's key
    ``mix(tag_key ^ line)`` (``tag_key`` from ``_tag_key``); ``p >= 1`` fires every slot (``u < 1`` always) without hashing,
    ``p <= 0`` none."""
    if p <= 0.0:
        return 0
    if p >= 1.0:
        return slots
    golden = np.uint64(0x9E3779B97F4A7C15)
    h = _mix(tag_key ^ (np.uint64(line) + golden))
    word = 0
    for t in range(n_slots):
        h = h + golden
        if (slots >> t) & 1 and float(_mix(h) >> np.uint64(11)) * (1.0 / 9007199254740992.0) < p:
            word |= 1 << t
    return word


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


@njit(cache=True, inline="always")
def _train_scales(x_max, d_max, constants, levels, desired_bl, balanced, bl_management):
    """One sample's ``(BL, scale_x, scale_d)`` of ``pulse_probabilities`` (BL 0 when k is not positive).

    ``constants = [lr, dw_min, 1e-30, desired_bl, 1]`` and ``levels[n] = n`` in the dtype of x and d; every
    operation repeats the torch expression of ``pulse_probabilities`` in the same order and precision
    (``a / t`` of a scalar by a tensor is torch's ``reciprocal(t) * a``), so p, q and BL are identical."""
    lr, dw_min, tiny, max_bl, one = constants[0], constants[1], constants[2], constants[3], constants[4]
    k = lr * x_max * d_max / dw_min
    if not k > 0:
        return 0, one, one
    n_slots = desired_bl
    if bl_management:
        ceiling = np.ceil(k)
        n_slots = 1 if ceiling < one else (desired_bl if ceiling >= max_bl else int(ceiling))
    product = one / (dw_min * levels[n_slots]) * lr
    if balanced:
        ratio = d_max * min(one / max(k, tiny) * max_bl, one) / max(x_max, tiny)
        return n_slots, np.sqrt(product * ratio), np.sqrt(product / ratio)
    return n_slots, np.sqrt(product), np.sqrt(product)


@njit(parallel=True, cache=True)
def _draw_kernel(x, d, constants, levels, desired_bl, balanced, bl_management, seed, event0, live_slots_only):
    """``pulse_probabilities`` and ``bernoulli_bits`` fused per sample, in the dtype of x and d (the scales of
    ``_train_scales``), so p, q and BL, hence the bits, are identical to the reference's.

    ``live_slots_only``: the side with fewer non-zero lines is drawn first; the other side only in the slots
    where the first fires (none at all when it is silent), and both keep only the slots where both fire: every
    coincidence, hence every update, is the reference's, at a fraction of the hashing."""
    batch, n_in = x.shape
    n_out = d.shape[1]
    one = constants[4]
    x_bits = np.zeros((batch, n_in), dtype=np.int64)
    d_bits = np.zeros((batch, n_out), dtype=np.int64)
    x_negative = np.empty((batch, n_in), dtype=np.bool_)
    d_negative = np.empty((batch, n_out), dtype=np.bool_)
    bl = np.zeros(batch, dtype=np.int64)
    for b in prange(batch):
        x_max, x_lines = one - one, 0
        for j in range(n_in):
            x_max = max(x_max, abs(x[b, j]))
            x_lines += x[b, j] != 0
            x_negative[b, j] = x[b, j] < 0
        d_max, d_lines = one - one, 0
        for i in range(n_out):
            d_max = max(d_max, abs(d[b, i]))
            d_lines += d[b, i] != 0
            d_negative[b, i] = d[b, i] < 0
        n_slots, scale_x, scale_d = _train_scales(x_max, d_max, constants, levels, desired_bl, balanced,
                                                  bl_management)
        if n_slots == 0:
            continue
        bl[b] = n_slots
        full = (1 << n_slots) - 1
        sample = _sample_hash(seed, event0 + b)
        x_key, d_key = _tag_key(sample, 0), _tag_key(sample, 1)
        if not live_slots_only:
            for j in range(n_in):
                x_bits[b, j] = _line_bits(x_key, j, min(scale_x * abs(x[b, j]), one), n_slots, full)
            for i in range(n_out):
                d_bits[b, i] = _line_bits(d_key, i, min(scale_d * abs(d[b, i]), one), n_slots, full)
        elif x_lines <= d_lines:
            live = _draw_side(x_bits[b], x[b], x_key, scale_x, one, n_slots, full)
            live = _draw_side(d_bits[b], d[b], d_key, scale_d, one, n_slots, live)
            _keep_slots(x_bits[b], live)
        else:
            live = _draw_side(d_bits[b], d[b], d_key, scale_d, one, n_slots, full)
            live = _draw_side(x_bits[b], x[b], x_key, scale_x, one, n_slots, live)
            _keep_slots(d_bits[b], live)
    return x_bits, d_bits, x_negative, d_negative, bl


@njit(cache=True, inline="always")
def _draw_side(bits, values, key, scale, one, n_slots, slots):
    """Bits of one side of a sample in ``slots`` (none when ``slots`` is 0); returns the slots where any fires."""
    fired = 0
    if slots == 0:
        return fired
    for line in range(values.shape[0]):
        word = _line_bits(key, line, min(scale * abs(values[line]), one), n_slots, slots)
        bits[line] = word
        fired |= word
    return fired


@njit(cache=True, inline="always")
def _keep_slots(bits, slots):
    for line in range(bits.shape[0]):
        bits[line] &= slots


def draw_pulse_trains(
    x: Tensor, d: Tensor, lr: float, dw_min: float, desired_bl: int, seed: int, event0: int,
    update_management: bool = True, bl_management: bool = True, live_slots_only: bool = False,
) -> PulseTrains:
    """Stochastic pulse trains of a mini-batch (x: (B, n_in), d: (B, n_out)) for one tile.

    Sample b draws its bits with the keys ``(seed, event0 + b)``: tag 0 for the columns, 1 for the rows. Fast
    path: probabilities, BL and bits in one kernel straight from x and d (in their common dtype), identical to
    ``draw_pulse_trains_reference``. With ``live_slots_only`` the bits are the reference's restricted to the
    slots where both a column and a row fire (``x_bits & OR_i d_bits``, ``d_bits & OR_j x_bits`` per sample):
    the same coincidences, hence the same update, drawn at a fraction of the cost (what training uses).
    """
    x_np, d_np, constants, levels = _draw_arguments(x, d, lr, dw_min, desired_bl)
    return PulseTrains(*_draw_kernel(x_np, d_np, constants, levels, desired_bl, update_management or bl_management,
                                     bl_management, seed, event0, live_slots_only))


def _draw_arguments(x: Tensor, d: Tensor, lr: float, dw_min: float, desired_bl: int) -> tuple:
    """x and d as numpy arrays of their common dtype, the constants and levels of ``_train_scales`` in it."""
    if not 1 <= desired_bl <= MAX_BL:
        raise ValueError(f"desired_bl must be in 1..{MAX_BL}, got {desired_bl}")
    dtype = torch.promote_types(x.dtype, d.dtype)
    x_np, d_np = _contiguous_array(x, dtype), _contiguous_array(d, dtype)
    constants = np.array([lr, dw_min, 1e-30, desired_bl, 1.0], dtype=x_np.dtype)
    return x_np, d_np, constants, _LEVELS[x_np.dtype.type]


def _contiguous_array(values: Tensor, dtype: torch.dtype) -> np.ndarray:
    """``values.detach().to(dtype).contiguous().numpy()``, skipping the steps that would return it unchanged (each
    costs about a microsecond of Python, for x and d of every layer and mini-batch)."""
    if values.dtype != dtype or values.requires_grad or not values.is_contiguous():
        values = values.detach().to(dtype).contiguous()
    return values.numpy()


_LEVELS = {t: np.arange(MAX_BL + 1, dtype=t) for t in (np.float32, np.float64)}
"""``levels[n] = n`` in each dtype the draw kernel runs in (a train length as a float of that dtype)."""

_IEEE = {np.float32: (np.int32, np.int32(0x7FFFFFFF), np.int32(0x7F800000)),
         np.float64: (np.int64, np.int64(0x7FFFFFFFFFFFFFFF), np.int64(0x7FF0000000000000))}
"""Per float dtype: the integer of its width, the mask of |v|'s bits and the bits of +inf (``_magnitude_scan``)."""


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


@njit(cache=True)
def _slot_columns(x_bits):
    """Firing columns of every (sample, slot) in CSR form: ``columns[offsets[b, t]:offsets[b, t + 1]]``."""
    batch, n_in = x_bits.shape
    slots = MAX_BL + 1
    offsets = np.zeros((batch, slots + 1), dtype=np.int64)
    active = np.empty(batch * n_in, dtype=np.int64)
    n_active = 0
    for b in range(batch):
        row = offsets[b]
        for j in range(n_in):
            word = x_bits[b, j]
            if word == 0:
                continue
            active[n_active] = b * n_in + j
            n_active += 1
            while word != 0:
                row[_popcount((word & -word) - 1) + 1] += 1
                word &= word - 1
    total = 0
    for b in range(batch):
        row = offsets[b]
        for t in range(slots):
            count = row[t + 1]
            row[t] = total
            total += count
        row[slots] = total
    columns = np.empty(total, dtype=np.int64)
    for a in range(n_active):
        b, j = divmod(active[a], n_in)
        word = x_bits[b, j]
        while word != 0:
            t = _popcount((word & -word) - 1)
            columns[offsets[b, t]] = j
            offsets[b, t] += 1
            word &= word - 1
    for b in range(batch):  # the fill advanced every start to the next slot's start
        for t in range(slots - 1, 0, -1):
            offsets[b, t] = offsets[b, t - 1]
        offsets[b, 0] = offsets[b - 1, slots] if b > 0 else 0
    return offsets, columns


@njit(parallel=True, cache=True)
def _coincidence_kernel(state, x_bits, d_bits, x_negative, d_negative, p, seed, event0, count_up, count_down,
                        weight, reference):
    """Visit only the coincidences: for every row i (in parallel), sample b, firing slot t of row i, the
    columns firing in slot t. Pulse k of device (i, j) within sample b is ``popcount(d & x & (2^t - 1))``,
    so the noise keys, the per-device order and the states equal the pairwise kernel's. With a non-empty
    ``weight``, ``weight[i, j] = float32(state - reference)`` is kept current at every touched device."""
    n_out = state.shape[0]
    batch = x_bits.shape[0]
    offsets, columns = _slot_columns(x_bits)
    keep_weight = weight.size > 0
    for i in prange(n_out):
        for b in range(batch):
            d_word = d_bits[b, i]
            remaining = d_word
            while remaining != 0:
                below = (remaining & -remaining) - 1
                t = _popcount(below)
                remaining &= remaining - 1
                for c in range(offsets[b, t], offsets[b, t + 1]):
                    j = columns[c]
                    up = x_negative[b, j] != d_negative[b, i]
                    k = _popcount(d_word & x_bits[b, j] & below)
                    w = state[i, j]
                    step = device_step(p.kind, up, w, i, j, p)
                    if p.c2c > 0.0:
                        step *= 1.0 + p.c2c * c2c_normal(seed, event0 + b, i, j, k)
                    w = w + step if up else w - step
                    w = min(max(w, p.w_min[i, j]), p.w_max[i, j])
                    state[i, j] = w
                    if keep_weight:
                        weight[i, j] = w - reference[i, j]
                    if up:
                        count_up[i, j] += 1
                    else:
                        count_down[i, j] += 1


_NO_WEIGHT = np.zeros((0, 0), dtype=np.float32)


def apply_pulse_trains(
    state: np.ndarray, trains: PulseTrains, devices: KernelDevice, seed: int, event0: int,
    count_up: np.ndarray, count_down: np.ndarray, weight: np.ndarray | None = None,
    reference: np.ndarray | None = None,
) -> None:
    """Fast path: apply the coincidences of every sample in order, in place on ``state`` and the counters.

    Cost grows with the number of coincidences (not active rows x active columns). Rows are independent, so
    the kernel runs rows in parallel and keeps the per-sample, per-slot order within a row. Sample b of the
    batch uses noise event ``event0 + b``. Given ``weight`` (float32) and ``reference``, the read-out weight
    ``state - reference`` of every pulsed device is updated in place too.
    """
    if weight is None:
        weight, reference = _NO_WEIGHT, np.zeros((0, 0))
    _coincidence_kernel(state, trains.x_bits, trains.d_bits, trains.x_negative, trains.d_negative, devices, seed,
                        event0, count_up, count_down, weight, reference)


@njit(cache=True, inline="always")
def _draw_lines(values, key, scale, one, n_slots, slots, lines, words):
    """The non-zero words of ``_draw_side`` in compact form: line numbers in ``lines``, words in ``words``;
    returns their count and the slots where any fires."""
    count, fired = 0, 0
    if slots == 0:
        return count, fired
    for line in range(values.shape[0]):
        word = _line_bits(key, line, min(scale * abs(values[line]), one), n_slots, slots)
        if word != 0:
            lines[count], words[count] = line, word
            count += 1
            fired |= word
    return count, fired


@intrinsic
def _float_from_bits(typingctx, bits, like):
    """The float of ``like``'s type whose IEEE bits are the low bits of the integer ``bits`` (an LLVM bitcast)."""
    if not (isinstance(bits, types.Integer) and isinstance(like, types.Float) and bits.bitwidth >= like.bitwidth):
        return None

    def codegen(context, builder, signature, args):
        value = args[0]
        if bits.bitwidth > like.bitwidth:
            value = builder.trunc(value, ir.IntType(like.bitwidth))
        return builder.bitcast(value, context.get_value_type(like))

    return like(bits, like), codegen


@njit(cache=True, inline="always")
def _magnitude_scan(bits, magnitude_mask, infinity, one):
    """``(max(..max(max(0, |v_0|), |v_1|)..), number of v != 0)`` of a row v (in the type of ``one``) from its
    IEEE bits ``bits`` (the row as integers of the float's width), in one branch-free pass that vectorises.

    numba's ``max(m, a)`` is ``a if a > m else m``, so the float loop skips NaN; it does not vectorise (no
    fast-math). For floats that are not NaN, the bits of |v|, ``bits & magnitude_mask``, order as |v| does, so
    the integer maximum over the bits at or below ``infinity`` (NaN lies above) is the bits of the float maximum
    (-0 and +0 both give 0, the start value). ``v != 0`` exactly when ``|v|``'s bits are not 0 (NaN included)."""
    largest, nonzero = magnitude_mask & 0, 0
    for k in range(bits.shape[0]):
        magnitude = bits[k] & magnitude_mask
        largest = max(largest, magnitude if magnitude <= infinity else magnitude & 0)
        nonzero += magnitude != 0
    return _float_from_bits(largest, one), nonzero


_BLOCK = 64
"""Lines per block of ``_draw_single_slot``: one int64 mask."""


@njit(cache=True, inline="always")
def _draw_single_slot(values, key, scale, one, lines, words):
    """``_draw_lines`` of a one-slot train (``n_slots = slots = 1``), in blocks of 64 lines with a branch-free
    inner loop that vectorises: bit k of the mask of the block from ``start`` is ``u < p`` of line
    ``start + k``, ``p = min(scale |v|, one)``, ``u`` the top 53 bits of ``mix(mix(key ^ (line + golden)) +
    golden)`` over 2^53, exactly ``_line_bits``'s hash and comparison in slot 0. It equals ``_line_bits``
    without its two shortcuts: ``0 <= u < 1``, so ``p <= 0`` never fires and ``p >= 1`` always does, as there
    (and NaN never, as there). The firing lines are then read off the mask's set bits, in order, with word 1."""
    golden = np.uint64(0x9E3779B97F4A7C15)
    n, count = values.shape[0], 0
    for start in range(0, n, _BLOCK):
        block, mask = values[start:start + _BLOCK], 0  # indices from 0 in a view: contiguous loads, no gather
        for k in range(block.shape[0]):
            p = min(scale * abs(block[k]), one)
            h = _mix(key ^ (np.uint64(start + k) + golden)) + golden
            fires = float(_mix(h) >> np.uint64(11)) * (1.0 / 9007199254740992.0) < p
            mask |= np.int64(fires) << k
        while mask != 0:
            lines[count], words[count] = start + _popcount((mask & -mask) - 1), 1
            count += 1
            mask &= mask - 1
    return count, min(count, 1)


@njit(cache=True, inline="always")
def _draw_compact(values, key, scale, one, n_slots, slots, lines, words):
    """What ``_draw_lines`` returns, by ``_draw_single_slot`` for a one-slot train drawn in its slot."""
    if n_slots == 1 and slots == 1:
        return _draw_single_slot(values, key, scale, one, lines, words)
    return _draw_lines(values, key, scale, one, n_slots, slots, lines, words)


@njit(parallel=True, cache=True)
def _train_update_kernel(x, d, x_ieee, d_ieee, magnitude_mask, infinity, constants, levels, desired_bl, balanced,
                         bl_management, seed, event0, state, p, count_up, count_down, weight, reference):
    """``_draw_kernel`` with ``live_slots_only`` and ``_coincidence_kernel`` fused, with the trains kept compact.

    1. Samples in parallel: max |v| and the non-zero count of x and d (``_magnitude_scan``: the float loop's
       values, vectorised), scales of ``_train_scales``; one side drawn first, the other only in the slots where
       it fires, both restricted to the slots where both fire; only the firing lines are stored (line, word), by
       ``_draw_compact`` (``_draw_lines``; one-slot trains, the common case with BL management, vectorised).
       The final words are ``x & OR_i d`` and ``d & OR_j x`` of the full draws whichever side goes first, so the
       order only sets the cost: a one-slot side costs its length (every line hashed), first the shorter; a
       longer train hashes only its non-zero lines, first the side with fewer.
    2. The firing rows grouped by row (samples in order).
    3. Rows in parallel: for each sample where row i fires, each firing column j: ``popcount(d & x)`` pulses on
       device (i, j) in a row, pulse k keyed ``(seed, event0 + b, i, j, k)``: the per-device order and keys of
       the coincidence kernel, hence its states, counters and read-out weight. Cost: the hashing of the sparser
       side plus the coincidences, never a dense pass over the tile."""
    batch, n_in = x.shape
    n_out = d.shape[1]
    one = constants[4]
    x_count = np.zeros(batch, dtype=np.int64)
    d_count = np.zeros(batch, dtype=np.int64)
    x_lines = np.empty((batch, n_in), dtype=np.int64)
    x_words = np.empty((batch, n_in), dtype=np.int64)
    d_lines = np.empty((batch, n_out), dtype=np.int64)
    d_words = np.empty((batch, n_out), dtype=np.int64)
    for b in prange(batch):
        x_max, x_nonzero = _magnitude_scan(x_ieee[b], magnitude_mask, infinity, one)
        d_max, d_nonzero = _magnitude_scan(d_ieee[b], magnitude_mask, infinity, one)
        n_slots, scale_x, scale_d = _train_scales(x_max, d_max, constants, levels, desired_bl, balanced,
                                                  bl_management)
        if n_slots == 0:
            continue
        full = (1 << n_slots) - 1
        sample = _sample_hash(seed, event0 + b)
        x_key, d_key = _tag_key(sample, 0), _tag_key(sample, 1)
        if x_nonzero <= d_nonzero if n_slots > 1 else n_in <= n_out:
            nx, live = _draw_compact(x[b], x_key, scale_x, one, n_slots, full, x_lines[b], x_words[b])
            nd, both = _draw_compact(d[b], d_key, scale_d, one, n_slots, live, d_lines[b], d_words[b])
            for c in range(nx):
                x_words[b, c] &= both
        else:
            nd, live = _draw_compact(d[b], d_key, scale_d, one, n_slots, full, d_lines[b], d_words[b])
            nx, both = _draw_compact(x[b], x_key, scale_x, one, n_slots, live, x_lines[b], x_words[b])
            for c in range(nd):
                d_words[b, c] &= both
        x_count[b], d_count[b] = nx, nd
    row_start = np.zeros(n_out + 1, dtype=np.int64)
    for b in range(batch):
        for c in range(d_count[b]):
            row_start[d_lines[b, c] + 1] += 1
    for i in range(n_out):
        row_start[i + 1] += row_start[i]
    row_sample = np.empty(row_start[n_out], dtype=np.int64)
    row_word = np.empty(row_start[n_out], dtype=np.int64)
    fill = row_start[:n_out].copy()
    for b in range(batch):
        for c in range(d_count[b]):
            i = d_lines[b, c]
            row_sample[fill[i]], row_word[fill[i]] = b, d_words[b, c]
            fill[i] += 1
    for i in prange(n_out):
        for e in range(row_start[i], row_start[i + 1]):
            b, d_word = row_sample[e], row_word[e]
            d_negative = d[b, i] < 0
            for c in range(x_count[b]):
                pulses = _popcount(d_word & x_words[b, c])
                if pulses == 0:
                    continue
                j = x_lines[b, c]
                up = (x[b, j] < 0) != d_negative
                _pulse_device(state, i, j, pulses, up, p, seed, event0 + b, count_up, count_down, weight, reference)


def pulsed_update(
    x: Tensor, d: Tensor, lr: float, dw_min: float, desired_bl: int, seed: int, event0: int, state: np.ndarray,
    devices: KernelDevice, count_up: np.ndarray, count_down: np.ndarray, weight: np.ndarray | None = None,
    reference: np.ndarray | None = None, update_management: bool = True, bl_management: bool = True,
) -> None:
    """Training's stochastic pulsed update of a mini-batch in one kernel: ``draw_pulse_trains`` (with
    ``live_slots_only``) then ``apply_pulse_trains``, with identical states, counters and read-out weight, but
    no dense (B, n) trains: only the firing lines of every sample are kept."""
    x_np, d_np, constants, levels = _draw_arguments(x, d, lr, dw_min, desired_bl)
    if weight is None:
        weight, reference = _NO_WEIGHT, np.zeros((0, 0))
    integer, magnitude_mask, infinity = _IEEE[x_np.dtype.type]
    _train_update_kernel(x_np, d_np, x_np.view(integer), d_np.view(integer), magnitude_mask, infinity, constants,
                         levels, desired_bl, update_management or bl_management, bl_management, seed, event0, state,
                         devices, count_up, count_down, weight, reference)


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


# --------------------------------------------------------------------------- deterministic per-sample modes
@njit(parallel=True, cache=True)
def _deterministic_kernel(state, p_x, q_d, x_negative, d_negative, bl, rounded, p, seed, event0, count_up,
                          count_down):
    n_out, n_in = state.shape
    batch = p_x.shape[0]
    for i in prange(n_out):
        for b in range(batch):
            if bl[b] == 0 or q_d[b, i] == 0.0:
                continue
            for j in range(n_in):
                if p_x[b, j] == 0.0:
                    continue
                up = x_negative[b, j] != d_negative[b, i]
                expected = bl[b] * p_x[b, j] * q_d[b, i]
                if rounded:
                    n = int(math.floor(expected + 0.5))
                    if n == 0:
                        continue
                    state[i, j] = _apply_steps(state[i, j], n, up, i, j, p, seed, event0 + b)
                else:
                    w = state[i, j]
                    step = device_step(p.kind, up, w, i, j, p) * expected
                    w = w + step if up else w - step
                    state[i, j] = min(max(w, p.w_min[i, j]), p.w_max[i, j])
                    n = 0
                if up:
                    count_up[i, j] += n
                else:
                    count_down[i, j] += n


def apply_deterministic(
    state: np.ndarray, x: Tensor, d: Tensor, lr: float, dw_min: float, desired_bl: int, devices: KernelDevice,
    mode: str, seed: int, event0: int, count_up: np.ndarray, count_down: np.ndarray,
    update_management: bool = True, bl_management: bool = True,
) -> None:
    """The two deterministic per-sample update modes (same probabilities as the stochastic trains).

    ``implicit``: probabilities quantised to multiples of 1/BL, ``n_ij = round(BL p^_j q^_i)`` pulses applied
    one at a time (counted). ``expected``: the expected change of one stochastic train, ``BL p_j q_i`` times
    the step at the current state, in one move (no pulses are counted: it is not a pulse model).
    """
    if mode not in ("implicit", "expected"):
        raise ValueError(f"unknown deterministic update mode {mode!r}; expected 'implicit' or 'expected'")
    p_x, q_d, bl = pulse_probabilities(x, d, lr, dw_min, desired_bl, update_management, bl_management)
    p_x, q_d = p_x.double(), q_d.double()
    if mode == "implicit":
        blf = bl.clamp_min(1).double()[:, None]
        p_x = torch.round(p_x * blf) / blf
        q_d = torch.round(q_d * blf) / blf
    _deterministic_kernel(state, p_x.numpy(), q_d.numpy(), (x < 0).numpy(), (d < 0).numpy(), bl.numpy(),
                          mode == "implicit", devices, seed, event0, count_up, count_down)


# ------------------------------------------------------------------------------------------ pulse counts
@njit(parallel=True, cache=True)
def _counts_kernel(state, counts, p, seed, event, count_up, count_down, weight, reference):
    n_out, n_in = state.shape
    for i in prange(n_out):
        for j in range(n_in):
            n = counts[i, j]
            if n != 0:
                _pulse_device(state, i, j, abs(n), n > 0, p, seed, event, count_up, count_down, weight, reference)


def apply_pulse_counts(
    state: np.ndarray, counts: np.ndarray, devices: KernelDevice, seed: int, event: int,
    count_up: np.ndarray, count_down: np.ndarray, weight: np.ndarray | None = None,
    reference: np.ndarray | None = None,
) -> None:
    """Apply ``|n_ij|`` pulses of sign ``n_ij`` to every device, one at a time at the current state (in place).

    Given ``weight`` (float32) and ``reference``, ``weight = state - reference`` is updated at every pulsed device.
    """
    if weight is None:
        weight, reference = _NO_WEIGHT, np.zeros((0, 0))
    _counts_kernel(state, np.ascontiguousarray(counts, dtype=np.int64), devices, seed, event, count_up,
                   count_down, weight, reference)


def shared_row(eps: np.ndarray) -> np.ndarray:
    """``eps`` (out, in) as the transfer kernels read it fastest: its first row (1, in) when every row equals it
    (devices without device-to-device variation: the pass over chi then streams no thresholds), else ``eps``."""
    return np.ascontiguousarray(eps[:1]) if np.array_equal(eps, np.broadcast_to(eps[:1], eps.shape)) else eps


def transfer_counts(chi: np.ndarray, eps: np.ndarray, max_pulses: int | None = None,
                    increment: np.ndarray | None = None, scale: float = 0.0,
                    runs: np.ndarray | None = None) -> np.ndarray:
    """Mixed-precision accumulate and transfer, in place on chi: ``chi += scale * increment``, then
    ``n = trunc(chi/eps)`` (capped at ``max_pulses`` if given) and ``chi -= n eps``; returns n.
    ``eps`` is per device (out, in) or one row shared by every row (1, in), as ``shared_row`` gives it.
    ``increment`` covers every column, or only the column ``runs`` of ``active_columns`` (the other columns'
    increments are zeros, which leave chi as it is). Capped counts leave their excess in chi. Needs eps > 0
    everywhere: a hot path, so it is not checked here (``MixedPrecisionLayer`` checks it once, when it is built)."""
    return _transfer_kernel(*_transfer_arguments(chi, eps, max_pulses, increment, scale, runs))


def _transfer_arguments(chi: np.ndarray, eps: np.ndarray, max_pulses: int | None, increment: np.ndarray | None,
                        scale: float, runs: np.ndarray | None = None) -> tuple:
    """``(chi, increment, scale, eps, cap, runs)`` as the transfer kernels take them (no increment: none, and no
    runs; no runs given: every column; no cap, or a negative one: the largest int64, which clamps nothing)."""
    if increment is None:
        increment, scale, runs = _NO_MATRIX, 0.0, _NO_RUNS
    elif runs is None:
        runs = every_column(chi.shape[1])
    cap = _NO_CAP if max_pulses is None or max_pulses < 0 else int(max_pulses)
    return chi, increment, float(scale), eps, cap, runs


def every_column(n_columns: int) -> np.ndarray:
    """The column runs ``[[0, n_columns]]`` of a dense increment."""
    return np.array([[0, n_columns]], dtype=np.uint64)


_NO_CAP = int(np.iinfo(np.int64).max)


_SURELY_BELOW = 1.0 - 2.0**-20
"""``|value| < _SURELY_BELOW eps`` guarantees ``trunc(value/eps) = 0`` (the rounded quotient stays below 1)."""


@njit(cache=True, inline="always")
def _divide(chi_row, eps_row, cap, j):
    """``n = trunc(chi/eps)`` clamped to ``[-cap, cap]``, then ``chi -= n eps``, at device j of a row; returns n.
    Branch-free on rows (1-D views), so that in a kernel compiled with numba's ``error_model="numpy"`` (no
    ZeroDivisionError branch; eps > 0 is checked once by ``MixedPrecisionLayer``) a loop over a row vectorises."""
    n = min(max(np.int64(chi_row[j] / eps_row[j]), -cap), cap)  # int64(): truncation toward zero
    chi_row[j] = chi_row[j] - n * eps_row[j]
    return n


@njit(cache=True, inline="always")
def _add_runs(chi_row, increment_row, runs, factor):
    """``chi[j] += factor * float64(increment[c])`` for the c-th column j of the ``runs`` (uint64 ``[start, stop)``
    pairs, in order): a dense loop per run, so it vectorises. With ``factor = -lr`` this is bit for bit
    ``chi -= lr * increment`` (IEEE negation is exact)."""
    c = np.uint64(0)
    for r in range(runs.shape[0]):
        start, length = runs[r, 0], runs[r, 1] - runs[r, 0]
        for k in range(length):  # unsigned indices: no negative-index wrap-around test in the loop
            chi_row[start + k] += factor * np.float64(increment_row[c + k])
        c += length


@njit(parallel=True, cache=True, error_model="numpy")
def _transfer_kernel(chi, increment, scale, eps, cap, runs):
    n_out, n_in = chi.shape
    counts = np.zeros((n_out, n_in), dtype=np.int64)
    last_eps = eps.shape[0] - 1  # 0 for a shared row (1, n_in)
    for i in prange(n_out):
        chi_row, eps_row, counts_row = chi[i], eps[min(np.int64(i), last_eps)], counts[i]
        if runs.shape[0] > 0:
            _add_runs(chi_row, increment[i], runs, scale)
        for j in range(n_in):
            counts_row[j] = _divide(chi_row, eps_row, cap, j)
    return counts


@njit(cache=True, inline="always")
def _transfer_row_pulses(i, columns, counts, count, x_max, eps_row, constants, levels, desired_bl, seed, event0, state,
                         p, count_up, count_down, weight, reference):
    """Row i's transfer train (sample ``event0 + i``, ``x = -n eps`` at ``columns[:count]`` with the requested
    counts ``n = counts[:count]``, zero elsewhere, one-hot ``d = e_i``, both managements on, scales of
    ``_train_scales``; ``x_max = max|x|``) and, per
    device, its ``popcount(x_bits & d_bits)`` pulses in a row (x drawn only in the slots where row i fires; pulse
    k keyed ``(seed, event0 + i, i, j, k)``, the order of the coincidence kernel within one device)."""
    one = constants[4]
    n_slots, scale_x, scale_d = _train_scales(x_max, one, constants, levels, desired_bl, True, True)
    if n_slots == 0:
        return
    sample = _sample_hash(seed, event0 + i)
    d_word = _line_bits(_tag_key(sample, 1), i, min(scale_d * one, one), n_slots, (1 << n_slots) - 1)
    if d_word == 0:
        return
    x_key = _tag_key(sample, 0)
    for c in range(count):
        j = columns[c]
        requested = -(counts[c] * eps_row[j])
        pulses = _popcount(_line_bits(x_key, j, min(scale_x * abs(requested), one), n_slots, d_word))
        if pulses == 0:
            continue
        up = requested < 0
        _pulse_device(state, i, j, pulses, up, p, seed, event0 + i, count_up, count_down, weight, reference)


@njit(cache=True, inline="always")
def _implicit_scales(x_max, granularity, desired_bl):
    """aihwkit's ``(BL, A, B)`` of one transfer row (x_max = max|x|, one-hot d, lr 1, update and BL management on),
    in the order of ``PulsedUpdateMetaParameter::performUpdateManagement`` (src/rpucuda/
    rpu_pulsed_meta_parameter.cpp): ``k = x_max / g``, ``BL = min(ceil k, desired_bl)``,
    ``A = B = sqrt(1 / (g BL))``; ``d_val = 1``, times ``desired_bl / k`` when ``k > desired_bl``;
    ``A *= sqrt(x_max / d_val)``, ``B *= sqrt(d_val / x_max)``."""
    k = 1.0 * x_max * 1.0 / granularity
    n_slots = min(int(math.ceil(k)), desired_bl)
    a = math.sqrt(1.0 / (granularity * n_slots))
    b = a
    d_val = 1.0
    if k > desired_bl:
        d_val *= desired_bl / k
    a *= math.sqrt(x_max / d_val)
    b *= math.sqrt(d_val / x_max)
    return n_slots, a, b


@njit(cache=True, inline="always")
def _implicit_coincidences(row_scale, b, value):
    """One device's DETERMINISTIC_IMPLICIT coincidences (``DenseBitLineMaker::generateCoincidencesDetI``,
    src/rpucuda/dense_bit_line_maker.cpp, resolutions 0): ``rint(dc x_val)``, ``x_val = min(B |x|, 1)`` and
    ``dc = BL min(A, 1)`` of the row (``row_scale``); rint rounds half to even (aihwkit's ``RPU_ROUNDFUNF``)."""
    return np.int64(np.rint(row_scale * min(b * abs(value), 1.0)))


@njit(cache=True, inline="always")
def _implicit_row_pulses(i, columns, counts, count, x_max, eps_row, granularity, desired_bl, seed, event0, state, p,
                         count_up, count_down, weight, reference):
    """Row i's DETERMINISTIC_IMPLICIT transfer: ``x = -n eps`` at ``columns[:count]`` (requested counts
    ``counts[:count]``), one-hot ``d = e_i``, both managements on (``_implicit_scales``); device (i, j) receives
    ``_implicit_coincidences`` pulses in a row, up where ``x_j < 0`` (pulse k keyed ``(seed, event0 + i, i, j, k)``,
    as the stochastic transfer). With ``k <= desired_bl`` that is ``rint(|n_ij| eps_ij / g)`` up to rounding."""
    if count == 0 or not x_max > 0.0:
        return
    n_slots, a, b = _implicit_scales(x_max, granularity, desired_bl)
    row_scale = min(max(a, 0.0), 1.0) * n_slots
    for c in range(count):
        j = columns[c]
        requested = -(counts[c] * eps_row[j])
        pulses = _implicit_coincidences(row_scale, b, requested)
        if pulses == 0:
            continue
        _pulse_device(state, i, j, pulses, requested < 0, p, seed, event0 + i, count_up, count_down, weight,
                      reference)


_TRANSFER_TRAINS, _TRANSFER_EXACT, _TRANSFER_IMPLICIT = 0, 1, 2
"""Transfer modes of ``_mixed_precision_kernel``: stochastic trains, exact counts, deterministic implicit counts."""


@njit(parallel=True, cache=True, error_model="numpy")
def _mixed_precision_kernel(chi, increment, increment_runs, x0, d0, scale, rest, rest_runs, lr, eps, cap, mode,
                            constants, levels, desired_bl, seed, event0, state, p, count_up, count_down, weight,
                            reference, counts):
    """Row i in parallel, one pass over its chi (still in L1 for the second and third loop):

    1. ``chi += scale * change``: with a non-empty ``x0``, the change of one sample's outer product
       ``float32(d0[i] x0[j])`` (what torch's ``d0^T @ x0`` of float32 rows gives), computed on the fly; else
       ``increment`` on its column runs (``_add_runs``; none: no change). Without dividing where
       ``|value| < (1 - 2^-20) eps``: there ``value/eps`` rounds below 1, so ``n = 0`` and
       ``chi = value - 0 eps = value`` exactly; only a row with a device at or above that bound (or NaN) is
       passed again with the division;
    2. ``mode`` exact: ``|n|`` pulses of sign n on every device with a non-zero request, one at a time (pulse k
       keyed ``(seed, event0, i, j, k)``, as ``apply_pulse_counts``); trains: ``_transfer_row_pulses`` of the
       row's non-zero requests ``-n eps``; implicit: ``_implicit_row_pulses`` of them (granularity
       ``constants[1]``). With a non-empty ``counts`` the requested counts are stored there;
    3. mixed precision's accumulation ``chi -= lr float64(rest)`` on the column runs of ``rest``."""
    n_out, n_in = chi.shape
    outer = x0.size > 0
    keep_counts = counts.size > 0
    exact = mode == _TRANSFER_EXACT
    last_eps = eps.shape[0] - 1  # 0 for a shared row (1, n_in)
    for i in prange(n_out):
        chi_row, eps_row = chi[i], eps[min(np.int64(i), last_eps)]
        near = False  # a device whose value is not surely below its threshold
        if outer:
            d0_i = d0[i]
            for j in range(n_in):
                value = chi_row[j] + scale * (d0_i * x0[j])
                chi_row[j] = value
                near |= not abs(value) < _SURELY_BELOW * eps_row[j]
        else:
            if increment_runs.shape[0] > 0:
                _add_runs(chi_row, increment[i], increment_runs, scale)
            for j in range(n_in):
                near |= not abs(chi_row[j]) < _SURELY_BELOW * eps_row[j]
        if near:  # the pulses change states, never chi: they may precede the accumulation
            columns, requests = np.empty(n_in, dtype=np.int64), np.empty(n_in, dtype=np.int64)
            count, x_max = 0, 0.0
            for j in range(n_in):
                if abs(chi_row[j]) < _SURELY_BELOW * eps_row[j]:
                    continue
                n = _divide(chi_row, eps_row, cap, j)
                if n == 0:
                    continue
                if keep_counts:
                    counts[i, j] = n
                if exact:
                    _pulse_device(state, i, j, abs(n), n > 0, p, seed, event0, count_up, count_down, weight,
                                  reference)
                else:
                    columns[count], requests[count] = j, n
                    x_max = max(x_max, abs(-(n * eps_row[j])))
                    count += 1
            if mode == _TRANSFER_TRAINS:
                _transfer_row_pulses(i, columns, requests, count, x_max, eps_row, constants, levels, desired_bl, seed,
                                     event0, state, p, count_up, count_down, weight, reference)
            elif mode == _TRANSFER_IMPLICIT:
                _implicit_row_pulses(i, columns, requests, count, x_max, eps_row, constants[1], desired_bl, seed,
                                     event0, state, p, count_up, count_down, weight, reference)
        if rest_runs.shape[0] > 0:
            _add_runs(chi_row, rest[i], rest_runs, -lr)


_NO_ROW = np.zeros(0, dtype=np.float32)
_NO_MATRIX = np.zeros((0, 0), dtype=np.float32)
_NO_COUNTS = np.zeros((0, 0), dtype=np.int64)
_NO_RUNS = np.zeros((0, 2), dtype=np.uint64)


def _mixed_precision(chi, eps, max_pulses, increment, increment_runs, x0, d0, scale, rest, rest_runs, lr, granularity,
                     desired_bl, seed, event0, state, devices, count_up, count_down, weight, reference, counts,
                     mode=_TRANSFER_TRAINS) -> None:
    """Checks and argument defaults of ``_mixed_precision_kernel`` (empty arrays stand for absent ones)."""
    if not 1 <= desired_bl <= MAX_BL:
        raise ValueError(f"desired_bl must be in 1..{MAX_BL}, got {desired_bl}")
    if weight is None:
        weight, reference = _NO_WEIGHT, np.zeros((0, 0))
    chi, increment, scale, eps, cap, increment_runs = _transfer_arguments(chi, eps, max_pulses, increment, scale,
                                                                          increment_runs)
    constants = np.array([1.0, granularity, 1e-30, desired_bl, 1.0])
    _mixed_precision_kernel(chi, increment, increment_runs, x0, d0, scale, rest, rest_runs, float(lr), eps, cap,
                            mode, constants, _LEVELS[np.float64], desired_bl, seed, event0, state, devices, count_up,
                            count_down, weight, reference, counts)


def exact_transfer(
    chi: np.ndarray, eps: np.ndarray, max_pulses: int | None, increment: np.ndarray | None, scale: float, seed: int,
    event: int, state: np.ndarray, devices: KernelDevice, count_up: np.ndarray, count_down: np.ndarray,
    weight: np.ndarray | None = None, reference: np.ndarray | None = None, runs: np.ndarray | None = None,
    keep_counts: bool = True,
) -> np.ndarray | None:
    """Fast path of mixed precision's exact transfer in one pass over chi: ``transfer_counts`` then
    ``apply_pulse_counts`` with noise event ``event`` (identical chi, counts, states, counters and read-out
    weight), dividing only where ``|chi| >= (1 - 2^-20) eps``; returns the requested counts (``keep_counts``),
    else None. ``eps``: (out, in) or a shared row (1, in); ``increment``: every column, or the column ``runs`` of
    ``active_columns``."""
    counts = np.zeros(chi.shape, dtype=np.int64) if keep_counts else _NO_COUNTS  # zero pages: written where n != 0
    _mixed_precision(chi, eps, max_pulses, increment, runs, _NO_ROW, _NO_ROW, scale, _NO_MATRIX, _NO_RUNS, 0.0, 0.0,
                     1, seed, event, state, devices, count_up, count_down, weight, reference, counts,
                     mode=_TRANSFER_EXACT)
    return counts if keep_counts else None


def pulsed_transfer(
    chi: np.ndarray, eps: np.ndarray, max_pulses: int | None, increment: np.ndarray | None, scale: float,
    granularity: float, desired_bl: int, seed: int, event0: int, state: np.ndarray, devices: KernelDevice,
    count_up: np.ndarray, count_down: np.ndarray, weight: np.ndarray | None = None,
    reference: np.ndarray | None = None, runs: np.ndarray | None = None, implicit: bool = False,
) -> np.ndarray:
    """Fast path of mixed precision's pulsed transfer in one pass over chi: ``transfer_counts``, then
    ``transfer_pulse_trains`` applied with ``apply_pulse_trains`` (identical chi, counts, states, counters and
    read-out weight); returns the requested counts. ``eps``: (out, in) or a shared row (1, in); ``increment``:
    every column, or the column ``runs`` of ``active_columns``. ``implicit``: aihwkit's DETERMINISTIC_IMPLICIT
    pulses instead of the stochastic trains (identical to ``implicit_transfer_reference``)."""
    counts = np.zeros(chi.shape, dtype=np.int64)  # zero pages: only the non-zero requests are written
    _mixed_precision(chi, eps, max_pulses, increment, runs, _NO_ROW, _NO_ROW, scale, _NO_MATRIX, _NO_RUNS, 0.0,
                     granularity, desired_bl, seed, event0, state, devices, count_up, count_down, weight, reference,
                     counts, _TRANSFER_IMPLICIT if implicit else _TRANSFER_TRAINS)
    return counts


def pulsed_transfer_and_accumulate(
    chi: np.ndarray, eps: np.ndarray, max_pulses: int | None, x0: np.ndarray, d0: np.ndarray, rest: np.ndarray,
    lr: float, granularity: float, desired_bl: int, seed: int, event0: int, state: np.ndarray, devices: KernelDevice,
    count_up: np.ndarray, count_down: np.ndarray, weight: np.ndarray | None = None,
    reference: np.ndarray | None = None, rest_runs: np.ndarray | None = None, implicit: bool = False,
) -> None:
    """Mixed precision's pulsed step after the first mini-batch, in one pass over chi: ``pulsed_transfer`` of the
    first sample's increment ``float32 d0^T x0`` (float32 rows (n_out,), (n_in,); scale ``-lr``), then
    ``accumulate(chi, rest, lr, rest_runs)`` of the other samples' float32 increment ``rest`` (identical chi,
    states, counters and read-out weight; the outer product is never stored and no counts are kept). ``eps``:
    (out, in) or a shared row (1, in). ``implicit``: DETERMINISTIC_IMPLICIT transfer pulses (``pulsed_transfer``)."""
    rest_runs = every_column(chi.shape[1]) if rest_runs is None else rest_runs
    _mixed_precision(chi, eps, max_pulses, _NO_MATRIX, _NO_RUNS, np.ascontiguousarray(x0, dtype=np.float32),
                     np.ascontiguousarray(d0, dtype=np.float32), -lr, rest, rest_runs, lr, granularity, desired_bl,
                     seed, event0, state, devices, count_up, count_down, weight, reference, _NO_COUNTS,
                     _TRANSFER_IMPLICIT if implicit else _TRANSFER_TRAINS)


@njit(parallel=True, cache=True)
def _accumulate_kernel(chi, increment, lr, runs):
    for i in prange(chi.shape[0]):
        _add_runs(chi[i], increment[i], runs, -lr)


def accumulate(chi: np.ndarray, increment: np.ndarray, lr: float, runs: np.ndarray | None = None) -> None:
    """``chi -= lr * float64(increment)`` in place (mixed precision's accumulation, no temporary arrays);
    ``increment`` covers every column, or only the column ``runs`` of ``active_columns``."""
    _accumulate_kernel(chi, increment, float(lr), every_column(chi.shape[1]) if runs is None else runs)


# ----------------------------------------------------------------------------------------- active columns
@njit(cache=True)
def _active_columns_kernel(x):
    batch, n = x.shape
    dense = batch > 0
    for j in range(n):  # a first row without zeros (a hidden layer's sigmoid outputs): every column is active
        if x[0, j] == 0:
            dense = False
            break
    if dense:
        runs = np.empty((1, 2), dtype=np.uint64)
        runs[0, 0], runs[0, 1] = 0, n
        return runs, x
    active = np.zeros(n, dtype=np.uint8)
    for b in range(batch):
        row = x[b]
        for j in range(n):
            active[j] |= row[j] != 0
    runs = np.empty((n // 2 + 1, 2), dtype=np.uint64)  # runs are separated by inactive columns
    columns = np.empty(n, dtype=np.uint64)
    n_runs, n_active = 0, 0
    for j in range(n):
        if not active[j]:
            continue
        if j == 0 or not active[j - 1]:
            runs[n_runs, 0] = j
            n_runs += 1
        runs[n_runs - 1, 1] = j + 1
        columns[n_active] = j
        n_active += 1
    if n_active == n:
        return runs[:n_runs].copy(), x
    compact = np.empty((batch, n_active), dtype=x.dtype)
    for b in range(batch):
        row, compact_row = x[b], compact[b]
        for c in range(n_active):
            compact_row[c] = row[columns[c]]
    return runs[:n_runs].copy(), compact


def active_columns(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The columns of ``x`` (B, n) with a non-zero (or NaN) entry, as ``[start, stop)`` runs (n_runs, 2; uint64)
    in order, and ``x`` restricted to them (B, n_active; ``x`` itself when every column is active).

    The columns of ``d^T x`` outside the runs are sums of ``d x`` with x = 0: zeros, which leave chi as it is,
    so mixed precision accumulates the product of the active columns only (MNIST's inputs: about 490 of 785
    columns in a batch of 64)."""
    return _active_columns_kernel(np.ascontiguousarray(x))


@njit(parallel=True, cache=True)
def _difference_kernel(state, reference, out):
    for i in prange(state.shape[0]):
        for j in range(state.shape[1]):
            out[i, j] = state[i, j] - reference[i, j]


def effective_weight(state: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``state - reference`` as float32 (the tile's read-out weight)."""
    out = np.empty(state.shape, dtype=np.float32)
    _difference_kernel(state, reference, out)
    return out


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


def compile_kernels() -> None:
    """Call every kernel once with each argument type training uses, so numba compiles them into its on-disk
    cache (``make env`` runs this; a fresh clone's first run then loads instead of compiling).

    Types: float32 layer inputs and errors, float64 transfer requests (mixed precision), float64 states, int64 counters; device parameters broadcast from
    scalars (writable copies) or given per device (read-only views, with device-to-device variation); the
    reference of ``sps`` writable or read-only likewise.
    """
    from ..devices import DeviceArray

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
        device_step_array(params.kind, True, state, params)
    c2c_normal(0, 0, 0, 0, 0)


__all__ = [
    "MAX_BL", "KernelDevice", "PulseTrains", "kernel_device", "device_step_array", "c2c_normal",
    "pulse_probabilities", "bernoulli_bits", "draw_pulse_trains", "draw_pulse_trains_reference",
    "apply_pulse_trains", "apply_pulse_trains_reference",
    "apply_deterministic", "apply_pulse_counts", "apply_pulse_counts_reference",
    "shared_row", "transfer_counts", "exact_transfer", "accumulate", "active_columns", "every_column",
    "effective_weight", "compile_kernels",
]


# ------------------------------------------------------------------------- aihwkit parity
def aihwkit_granularity(devices: DeviceArray) -> float:
    """The weight granularity aihwkit's pulsed updater divides by (its ``dw_min`` in ``k = lr |x| |d| / dw_min``).

    aihwkit keeps the larger step scale as its ``dw_min``; a piecewise device multiplies it by the up node at
    index ``N // 2`` (``calcWeightGranularity`` of ``PiecewiseStepRPUDeviceMetaParameter``,
    src/rpucuda/rpu_piecewisestep_device.h): ``g = max(scale_up, scale_down) nodes_up[N // 2]``, averaged over
    the devices (exact without device-to-device spread, where aihwkit takes the nominal value).
    """
    larger = torch.maximum(devices.scale_up, devices.scale_down).to(torch.float64).mean()
    if devices.kind == "piecewise":
        larger = larger * devices.nodes_up[devices.nodes_up.numel() // 2].to(torch.float64)
    granularity = float(larger)
    if not granularity > 0:
        raise ValueError(f"aihwkit granularity of this {devices.kind} device is {granularity}: it cannot be pulsed")
    return granularity


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


__all__ += ["aihwkit_granularity", "transfer_pulse_trains", "pulsed_transfer", "pulsed_transfer_and_accumulate",
            "pulsed_update", "implicit_transfer_reference"]

"""Pulsed updates of a tile: stochastic pulse trains (aihwkit semantics), their deterministic variants and integer
pulse counts, each a numba fast path checked against a naive reference of ``training.reference``
(docs/science.md: device models, plain analog SGD).

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
* Cycle-to-cycle noise and the slot bits come from counter-based hashes (``training.pulse_primitives``), so any
  loop order, and the naive references, get identical draws.

Mixed precision's transfer is in ``training.mp_transfer``; its names, the naive references and
``compile_kernels`` stay importable from here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic
from torch import Tensor

from .. import moved
from ..aihwkit_export import aihwkit_granularity
from .mp_transfer import (accumulate, active_columns, every_column, exact_transfer, pulsed_transfer,
                          pulsed_transfer_and_accumulate, shared_row, transfer_counts)
from .pulse_primitives import (_LEVELS, MAX_BL, EventKey, KernelDevice, UpdateConstants, _apply_steps, _line_bits, _mix,
                               _popcount, _pulse_device, _sample_hash, _tag_key, _train_scales, c2c_normal, device_step,
                               kernel_device, pulse_target)

_IEEE = {np.float32: (np.int32, np.int32(0x7FFFFFFF), np.int32(0x7F800000)),
         np.float64: (np.int64, np.int64(0x7FFFFFFFFFFFFFFF), np.int64(0x7FF0000000000000))}
"""Per float dtype: the integer of its width, the mask of |v|'s bits and the bits of +inf (``_magnitude_scan``)."""


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


@njit(parallel=True, cache=True)
def _draw_kernel(x, d, update, key, live_slots_only):
    """``pulse_probabilities`` and ``bernoulli_bits`` fused per sample, in the dtype of x and d (the scales of
    ``_train_scales`` with ``update``), so p, q and BL, hence the bits, are identical to the reference's; sample b
    keyed ``(key.seed, key.event0 + b)``.

    ``live_slots_only``: the side with fewer non-zero lines is drawn first; the other side only in the slots
    where the first fires (none at all when it is silent), and both keep only the slots where both fire: every
    coincidence, hence every update, is the reference's, at a fraction of the hashing."""
    batch, n_in = x.shape
    n_out = d.shape[1]
    one = update.constants[4]
    seed, event0 = key
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
        n_slots, scale_x, scale_d = _train_scales(x_max, d_max, update)
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
    x_np, d_np, update = _draw_arguments(x, d, lr, dw_min, desired_bl, update_management, bl_management)
    return PulseTrains(*_draw_kernel(x_np, d_np, update, EventKey(seed, event0), live_slots_only))


def _draw_arguments(x: Tensor, d: Tensor, lr: float, dw_min: float, desired_bl: int, update_management: bool,
                    bl_management: bool) -> tuple[np.ndarray, np.ndarray, UpdateConstants]:
    """x and d as numpy arrays of their common dtype, the ``UpdateConstants`` of ``_train_scales`` in it (update
    management on with BL management, as aihwkit forces it)."""
    if not 1 <= desired_bl <= MAX_BL:
        raise ValueError(f"desired_bl must be in 1..{MAX_BL}, got {desired_bl}")
    dtype = torch.promote_types(x.dtype, d.dtype)
    x_np, d_np = _contiguous_array(x, dtype), _contiguous_array(d, dtype)
    constants = np.array([lr, dw_min, 1e-30, desired_bl, 1.0], dtype=x_np.dtype)
    update = UpdateConstants(constants, _LEVELS[x_np.dtype.type], desired_bl, update_management or bl_management,
                             bl_management)
    return x_np, d_np, update


def _contiguous_array(values: Tensor, dtype: torch.dtype) -> np.ndarray:
    """``values.detach().to(dtype).contiguous().numpy()``, skipping the steps that would return it unchanged (each
    costs about a microsecond of Python, for x and d of every layer and mini-batch)."""
    if values.dtype != dtype or values.requires_grad or not values.is_contiguous():
        values = values.detach().to(dtype).contiguous()
    return values.numpy()


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
def _coincidence_kernel(target, x_bits, d_bits, x_negative, d_negative, p, key):
    """Visit only the coincidences: for every row i (in parallel), sample b, firing slot t of row i, the
    columns firing in slot t. Pulse k of device (i, j) within sample b is ``popcount(d & x & (2^t - 1))``
    (keyed ``(key.seed, key.event0 + b, i, j, k)``), so the noise keys, the per-device order and the states
    equal the pairwise kernel's. With a non-empty weight of ``target`` (a ``PulseTarget``),
    ``weight[i, j] = float32(state - reference)`` is kept current at every touched device."""
    state = target.state
    weight = target.weight
    reference = target.reference
    count_up = target.count_up
    count_down = target.count_down
    seed, event0 = key
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
    _coincidence_kernel(pulse_target(state, count_up, count_down, weight, reference), trains.x_bits, trains.d_bits,
                        trains.x_negative, trains.d_negative, devices, EventKey(seed, event0))


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


class IeeeRows(NamedTuple):
    """x and d of ``_train_update_kernel`` as IEEE bits, for ``_magnitude_scan``."""

    x: np.ndarray
    """(B, n_in) x viewed as integers of its float's width."""
    d: np.ndarray
    """(B, n_out) d viewed likewise."""
    magnitude_mask: np.integer
    """The mask of ``|v|``'s bits (all but the sign bit)."""
    infinity: np.integer
    """The bits of +inf."""


@njit(parallel=True, cache=True)
def _train_update_kernel(x, d, ieee, update, key, target, p):
    """``_draw_kernel`` with ``live_slots_only`` and ``_coincidence_kernel`` fused, with the trains kept compact;
    ``ieee`` (``IeeeRows``): the bits of x and d, ``update``: the ``UpdateConstants`` of ``_train_scales``,
    ``key``: the ``EventKey``, ``target``: the ``PulseTarget`` of the devices ``p``.

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
    one = update.constants[4]
    x_ieee, d_ieee, magnitude_mask, infinity = ieee
    seed, event0 = key
    state = target.state
    weight = target.weight
    reference = target.reference
    count_up = target.count_up
    count_down = target.count_down
    x_count = np.zeros(batch, dtype=np.int64)
    d_count = np.zeros(batch, dtype=np.int64)
    x_lines = np.empty((batch, n_in), dtype=np.int64)
    x_words = np.empty((batch, n_in), dtype=np.int64)
    d_lines = np.empty((batch, n_out), dtype=np.int64)
    d_words = np.empty((batch, n_out), dtype=np.int64)
    for b in prange(batch):
        x_max, x_nonzero = _magnitude_scan(x_ieee[b], magnitude_mask, infinity, one)
        d_max, d_nonzero = _magnitude_scan(d_ieee[b], magnitude_mask, infinity, one)
        n_slots, scale_x, scale_d = _train_scales(x_max, d_max, update)
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
    x_np, d_np, update = _draw_arguments(x, d, lr, dw_min, desired_bl, update_management, bl_management)
    integer, magnitude_mask, infinity = _IEEE[x_np.dtype.type]
    _train_update_kernel(x_np, d_np, IeeeRows(x_np.view(integer), d_np.view(integer), magnitude_mask, infinity),
                         update, EventKey(seed, event0), pulse_target(state, count_up, count_down, weight, reference),
                         devices)


# --------------------------------------------------------------------------- deterministic per-sample modes
class TrainProbabilities(NamedTuple):
    """The firing probabilities of a mini-batch's trains (``pulse_probabilities``) and their signs."""

    p: np.ndarray
    """(B, n_in) float64 column probabilities ``p_j``."""
    q: np.ndarray
    """(B, n_out) float64 row probabilities ``q_i``."""
    x_negative: np.ndarray
    """(B, n_in) bool: x_j < 0."""
    d_negative: np.ndarray
    """(B, n_out) bool: d_i < 0."""
    bl: np.ndarray
    """(B,) int64 train length of every sample."""


@njit(parallel=True, cache=True)
def _deterministic_kernel(target, probabilities, rounded, p, key):
    """``BL p_j q_i`` pulses of sample b on device (i, j) (parameters ``p``; state and counters in ``target``, a
    ``PulseTarget`` whose weight is not kept): rounded and applied one at a time (keyed
    ``(key.seed, key.event0 + b, i, j, k)``), else as one move of that many times the step (not counted)."""
    state = target.state
    count_up = target.count_up
    count_down = target.count_down
    p_x, q_d, x_negative, d_negative, bl = probabilities
    seed, event0 = key
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
    probabilities = TrainProbabilities(p_x.numpy(), q_d.numpy(), (x < 0).numpy(), (d < 0).numpy(), bl.numpy())
    _deterministic_kernel(pulse_target(state, count_up, count_down), probabilities, mode == "implicit", devices,
                          EventKey(seed, event0))


# ------------------------------------------------------------------------------------------ pulse counts
@njit(parallel=True, cache=True)
def _counts_kernel(target, counts, p, key):
    """``|n_ij|`` pulses of sign ``n_ij`` on device (i, j) (parameters ``p``, arrays in ``target``, a
    ``PulseTarget``), every pulse of the event ``key.event0``."""
    seed, event = key
    state = target.state
    weight = target.weight
    reference = target.reference
    count_up = target.count_up
    count_down = target.count_down
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
    _counts_kernel(pulse_target(state, count_up, count_down, weight, reference),
                   np.ascontiguousarray(counts, dtype=np.int64), devices, EventKey(seed, event))


# ------------------------------------------------------------------------------------------ read-out weight
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


MOVED_NAMES: dict[str, str] = {
    **dict.fromkeys(("bernoulli_bits", "draw_pulse_trains_reference", "apply_pulse_trains_reference",
                     "apply_pulse_counts_reference", "transfer_pulse_trains", "implicit_transfer_reference"),
                    "reference"),
    "compile_kernels": "kernel_cache",
}
"""Public name -> the ``ferrolib.training`` module that defines it (those modules import this one)."""

__getattr__ = moved.forwarder(__name__, MOVED_NAMES)

__all__ = [
    "MAX_BL", "KernelDevice", "PulseTrains", "kernel_device", "c2c_normal", "pulse_probabilities", "draw_pulse_trains",
    "apply_pulse_trains", "pulsed_update", "apply_deterministic", "apply_pulse_counts", "effective_weight",
    # mixed precision (training.mp_transfer) and aihwkit's granularity (aihwkit_export), importable from here
    "shared_row", "transfer_counts", "exact_transfer", "pulsed_transfer", "pulsed_transfer_and_accumulate",
    "accumulate", "active_columns", "every_column", "aihwkit_granularity",
]

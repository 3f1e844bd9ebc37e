"""The transfer rules' fused kernel: one numba call per mini-batch runs every step of ``transfer.TransferLayer``
(the module docstring of ``transfer``: A's single-sample pulsed updates with auto-scale and choppers, the column
reads of A, the digital buffer, C's pulsed writes, AGAD's reference and the chopper switches), sample by sample in
aihwkit's order, so that a layer pays one call per mini-batch instead of one per sample and transfer.

It reuses the pulse primitives of ``pulsed._train_update_kernel`` (same keys, same arithmetic): A's sample with
global index t draws its bits and noise with event t, C's write of transfer t with ``WRITE_EVENT0 + t``, the
chopper draws of transfer t are ``chop_uniform(seed, CHOP_EVENT0 + t, k)``, the read noise of row i
``c2c_normal(seed, READ_EVENT0 + t, i, 0, 0)``. Its reference is the plain loop of tests/test_transfer.py
(``NaiveTransfer``), written from aihwkit's C++ with the naive pulse-train references, on the same keys.

The column read of A (``v = A e_i`` through the forward periphery with noise and bound management off) is
``v = clip(rint((a x_q + sigma xi) / s_out) s_out, -b, b) out_scale`` in float64 with ``a`` A's float32 weight and
``x_q`` the one-hot input after the DAC (``ReadConstants``); aihwkit computes it in float32, a difference far
below one ADC step.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit, prange

from .pulse_primitives import (_LEVELS, UpdateConstants, _popcount, _pulse_device, _sample_hash, _tag_key, _train_scales,
                               c2c_normal)
from .pulsed import _draw_compact

WRITE_EVENT0 = 1 << 40
"""Event id of C's first transfer write (A's events are sample numbers, far below)."""

CHOP_EVENT0 = 1 << 41
"""Event id of the chopper draws of the first transfer."""

READ_EVENT0 = 1 << 42
"""Event id of the output noise of the first transfer read."""

# indices of the int64 counters array of a layer
SAMPLES, TRANSFERS, SWEEPS, TRANSFER_READS, DIGITAL_MACS = range(5)
# indices of the float64 scales array
M_X, M_D, COUNT_LR = range(3)


class ReadConstants(NamedTuple):
    """A column read of A: ``v = clip(rint((a x_q + noise xi) / step) step, -bound, bound) scale``."""

    input: float
    """The one-hot input after the DAC, ``x_q``."""
    noise: float
    """Standard deviation of the output noise (0: none)."""
    step: float
    """ADC step (0: no quantisation)."""
    bound: float
    """ADC bound (<= 0: no clipping)."""
    scale: float
    """Digital factor on the output (``out_scale``)."""


class TransferConstants(NamedTuple):
    """Everything of a ``TransferLayer`` the kernel reads but never writes (``ChoppedTransferParameters`` fields
    by their names, the rule's derived numbers, the read)."""

    dynamic: bool
    """AGAD's dynamic reference (``DynamicTransferParameters``)."""
    every: int
    """Samples per transfer (``round(transfer_every)``)."""
    transfer_every: float
    fast_lr: float
    scale_fast_lr: bool
    auto_scale: bool
    auto_momentum: float
    desired_bl: int
    """Longest train of A's updates (``UpdateSettings.desired_bl``)."""
    fast_granularity: float
    slow_granularity: float
    transfer_lr: float
    scale_transfer_lr: bool
    auto_granularity: float
    buffer_granularity: float
    correct_gradient_magnitudes: bool
    no_buffer: bool
    forget_buffer: bool
    momentum: float
    cap: float
    """AGAD's buffer cap ``buffer_cap transfer_desired_bl`` (0: none)."""
    transfer_desired_bl: int
    in_chop_prob: float
    in_chop_random: bool
    out_chop_prob: float
    period: int
    """Sweeps per regular chopper period (``transfer.chop_period``)."""
    mean_momentum: float
    """AGAD: ``min(tail_weightening / period, 1)``."""
    seed: int
    read: ReadConstants


class TransferState(NamedTuple):
    """The arrays of a ``TransferLayer`` the kernel updates in place (tiles apart)."""

    buffer: np.ndarray
    """(out, in) float64 digital buffer H."""
    in_chopper: np.ndarray
    """(in,) bool input chopper flags (True: sign -1)."""
    out_chopper: np.ndarray
    """(out,) bool output chopper flags."""
    running_mean: np.ndarray
    """(out, in) float64 AGAD's running mean M."""
    past_mean: np.ndarray
    """(out, in) float64 AGAD's reference P."""
    switched: np.ndarray
    """(in,) bool: AGAD's column whose chopper switched after its last read."""
    counters: np.ndarray
    """int64 [samples seen, transfers, sweeps, transfer reads, digital MACs]."""
    scales: np.ndarray
    """float64 [m_x, m_d, A's pulse-count learning rate of the last sample]."""


@njit(cache=True, inline="always")
def chop_uniform(seed: int, event: int, index: int) -> float:
    """Uniform draw in [0, 1) keyed by ``(seed, event, index)``: ``mix(mix(mix(seed) ^ event) ^ index)``, top 53 bits
    (``transfer.chop_uniforms``, vectorised in numpy)."""
    return float(_tag_key(_sample_hash(seed, event), index) >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@njit(cache=True)
def pulse_count_lr(c: TransferConstants, m_x: float, m_d: float, lr: float) -> float:
    """A's learning rate ``eta_A`` (aihwkit ``getPulseCountLearningRate``): ``fast_lr`` (times ``desired_bl g_A /
    (m_x m_d)`` with auto-scale, times lr with ``scale_fast_lr``); lr itself when ``fast_lr <= 0``."""
    if c.fast_lr <= 0:
        return lr
    if c.auto_scale:
        count_lr = c.fast_lr * c.desired_bl * c.fast_granularity
        if m_x > 0 and m_d > 0:
            count_lr /= m_x * m_d
    else:
        count_lr = c.fast_lr
    return count_lr * lr if c.scale_fast_lr else count_lr


@njit(cache=True)
def lr_scale(c: TransferConstants, lr: float, count_lr: float, n_in: int) -> float:
    """Buffer increment per weight unit read (aihwkit ``getTransferLRScale``): ``|transfer_lr| / threshold``, the
    threshold ``buffer_granularity g_A`` (``auto_granularity``: times ``auto_granularity / (n_in transfer_every)``;
    ``correct_gradient_magnitudes``: times ``g_C / g_A``, the increment divided by ``eta_A`` too)."""
    transfer_lr = c.transfer_lr * lr if c.scale_transfer_lr else c.transfer_lr
    granularity = c.fast_granularity
    if c.auto_granularity > 0:
        granularity *= c.auto_granularity / (n_in * c.transfer_every)
    threshold = c.buffer_granularity * granularity
    if c.correct_gradient_magnitudes:
        threshold *= c.slow_granularity / c.fast_granularity
        return abs(transfer_lr) / count_lr / threshold
    return abs(transfer_lr) / threshold


@njit(cache=True, inline="always")
def _running_max(old: float, value: float, tau: float) -> float:
    """aihwkit's running maximum of auto-scale: the first value, then ``(1 - tau) old + tau value`` for value > 0."""
    if old <= 0:
        return value
    if value > 0:
        return (1.0 - tau) * old + tau * value
    return old


@njit(cache=True, parallel=True)
def _update_sample(xs, ds, update, seed, event, state, weight, reference, count_up, count_down, p,
                   x_lines, x_words, d_lines, d_words):
    """One sample's stochastic pulsed update ``dW = -lr d x^T`` (``pulsed._train_update_kernel`` for a batch of one):
    the same scales, bits, keys and pulses, so the same states, counters and read-out weight. The firing rows run
    as a parallel loop, as there: numba compiles that loop body to code that applies a pulse about twice as fast
    as the same loop in a serial function (measured on one thread, 76 M pulses: 2.4 s against 5.4 s)."""
    one = update.constants[4]
    x_max, x_nonzero = one - one, 0
    for j in range(xs.shape[0]):
        x_max = max(x_max, abs(xs[j]))
        x_nonzero += xs[j] != 0
    d_max, d_nonzero = one - one, 0
    for i in range(ds.shape[0]):
        d_max = max(d_max, abs(ds[i]))
        d_nonzero += ds[i] != 0
    n_slots, scale_x, scale_d = _train_scales(x_max, d_max, update)
    if n_slots == 0:
        return
    full = (1 << n_slots) - 1
    sample = _sample_hash(seed, event)
    x_key, d_key = _tag_key(sample, 0), _tag_key(sample, 1)
    if x_nonzero <= d_nonzero:
        nx, live = _draw_compact(xs, x_key, scale_x, one, n_slots, full, x_lines, x_words)
        nd, both = _draw_compact(ds, d_key, scale_d, one, n_slots, live, d_lines, d_words)
        for c in range(nx):
            x_words[c] &= both
    else:
        nd, live = _draw_compact(ds, d_key, scale_d, one, n_slots, full, d_lines, d_words)
        nx, both = _draw_compact(xs, x_key, scale_x, one, n_slots, live, x_lines, x_words)
        for c in range(nd):
            d_words[c] &= both
    for r in prange(nd):
        i, d_word = d_lines[r], d_words[r]
        d_negative = ds[i] < 0
        for c in range(nx):
            pulses = _popcount(d_word & x_words[c])
            if pulses == 0:
                continue
            j = x_lines[c]
            up = (xs[j] < 0) != d_negative
            _pulse_device(state, i, j, pulses, up, p, seed, event, count_up, count_down, weight, reference)


@njit(cache=True)
def _threshold(omega: float, c: TransferConstants, cap: float) -> tuple[float, float]:
    """The pulse count of buffer value ``omega`` (``clip(trunc(omega), +-transfer_desired_bl)`` where
    ``|omega| >= 1``, else 0) and the buffer value after the transfer."""
    if not abs(omega) >= 1.0:
        return 0.0, omega
    limit = float(c.transfer_desired_bl)
    count = min(max(np.trunc(omega), -limit), limit)
    if c.forget_buffer:
        return count, omega * c.momentum
    kept = omega - (1.0 - min(max(c.momentum, 0.0), 1.0)) * count
    if cap > 0:
        kept = min(max(kept, -cap), cap)
    return count, kept


@njit(cache=True)
def _transfer(lr, c, slow_update, fast_weight, slow, slow_p, s, values, counts, one_hot, minus_counts,
              x_lines, x_words, d_lines, d_words):
    """Transfer number ``s.counters[TRANSFERS]``: read the next column of A, accumulate it in H (AGAD: against its
    reference), write the crossings onto C, switch the choppers."""
    n_out, n_in = fast_weight.shape
    counters = s.counters
    buffer, running_mean, past_mean = s.buffer, s.running_mean, s.past_mean
    in_chopper, out_chopper, switched = s.in_chopper, s.out_chopper, s.switched
    t = counters[TRANSFERS]
    column = t % n_in
    read = c.read
    for i in range(n_out):
        v = float(fast_weight[i, column]) * read.input
        if read.noise > 0:
            v = v + read.noise * c2c_normal(c.seed, READ_EVENT0 + t, i, 0, 0)
        if read.step > 0:
            v = np.rint(v / read.step) * read.step
        if read.bound > 0:
            v = min(max(v, -read.bound), read.bound)
        values[i] = v * read.scale
    counters[TRANSFER_READS] += 1
    scale = lr_scale(c, lr, s.scales[COUNT_LR], n_in)
    write = True
    if c.dynamic:
        if switched[column]:
            for i in range(n_out):
                past_mean[i, column] = running_mean[i, column]
            switched[column] = False
        for i in range(n_out):
            sign = -1.0 if out_chopper[i] != in_chopper[column] else 1.0
            omega = buffer[i, column] + sign * ((values[i] - past_mean[i, column]) * scale)
            counts[i], buffer[i, column] = _threshold(omega, c, c.cap)
            running_mean[i, column] = running_mean[i, column] * (1.0 - c.mean_momentum) + values[i] * c.mean_momentum
        counters[DIGITAL_MACS] += 3 * n_out
        write = counters[SWEEPS] > c.period
    else:
        for i in range(n_out):
            sign = -1.0 if out_chopper[i] != in_chopper[column] else 1.0
            omega = (0.0 if c.no_buffer else buffer[i, column]) + sign * (values[i] * scale)
            counts[i], buffer[i, column] = _threshold(omega, c, 0.0)
        counters[DIGITAL_MACS] += n_out
    if write:
        fire = False
        for i in range(n_out):
            minus_counts[i] = -counts[i]
            fire = fire or counts[i] != 0
        if fire:  # dC = step g_C n e_i^T: x = e_i, d = -n, lr = step g_C
            one_hot[column] = 1.0
            _update_sample(one_hot, minus_counts, slow_update, c.seed, WRITE_EVENT0 + t, slow.state, slow.weight,
                           slow.reference, slow.count_up, slow.count_down, slow_p, x_lines, x_words, d_lines, d_words)
            one_hot[column] = 0.0
    regular = counters[SWEEPS] % c.period + 1 == c.period
    draw = chop_uniform(c.seed, CHOP_EVENT0 + t, 0)
    if c.dynamic:
        if regular or (c.in_chop_random and draw < c.in_chop_prob):
            in_chopper[column] = not in_chopper[column]
            switched[column] = True
    else:
        if c.in_chop_prob > 0 and ((draw < c.in_chop_prob) if c.in_chop_random else regular):
            in_chopper[column] = not in_chopper[column]
        if column == n_in - 1 and c.out_chop_prob > 0:
            for i in range(n_out):
                if chop_uniform(c.seed, CHOP_EVENT0 + t, 1 + i) < c.out_chop_prob:
                    out_chopper[i] = not out_chopper[i]
    if column == n_in - 1:
        counters[SWEEPS] += 1
    counters[TRANSFERS] += 1


@njit(cache=True)
def transfer_batch(x, d, lr, c, fast_update, slow_update, fast, fast_p, slow, slow_p, s):
    """A mini-batch of a transfer rule, sample by sample: auto-scale (``tau = (1 - auto_momentum) / B``), A's
    learning rate, A's pulsed update of the chopped sample ``(c_out d_b)(c_in x_b)^T`` (event: the sample's global
    index), a transfer after every ``c.every``-th sample. ``fast``/``slow``: the tiles' ``PulseTarget`` (weights
    kept current), ``fast_update``/``slow_update``: their ``UpdateConstants`` in the dtype of x and d (A's
    learning rate is written into ``fast_update.constants[0]`` per sample), ``s``: the ``TransferState``."""
    batch, n_in = x.shape
    n_out = d.shape[1]
    counters, scales = s.counters, s.scales
    in_chopper, out_chopper = s.in_chopper, s.out_chopper
    rate = fast_update.constants
    xs = np.empty(n_in, dtype=x.dtype)
    ds = np.empty(n_out, dtype=d.dtype)
    one_hot = np.zeros(n_in, dtype=x.dtype)
    minus_counts = np.empty(n_out, dtype=d.dtype)
    values = np.empty(n_out)
    counts = np.empty(n_out)
    x_lines = np.empty(n_in, dtype=np.int64)
    x_words = np.empty(n_in, dtype=np.int64)
    d_lines = np.empty(n_out, dtype=np.int64)
    d_words = np.empty(n_out, dtype=np.int64)
    tau = (1.0 - c.auto_momentum) / batch
    for b in range(batch):
        if c.auto_scale:
            x_max, d_max = x[b, 0] - x[b, 0], d[b, 0] - d[b, 0]
            for j in range(n_in):
                x_max = max(x_max, abs(x[b, j]))
            for i in range(n_out):
                d_max = max(d_max, abs(d[b, i]))
            scales[M_X] = _running_max(scales[M_X], float(x_max), tau)
            scales[M_D] = _running_max(scales[M_D], float(d_max), tau)
        scales[COUNT_LR] = pulse_count_lr(c, scales[M_X], scales[M_D], lr)
        rate[0] = scales[COUNT_LR]
        for j in range(n_in):
            xs[j] = -x[b, j] if in_chopper[j] else x[b, j]
        for i in range(n_out):
            ds[i] = -d[b, i] if out_chopper[i] else d[b, i]
        _update_sample(xs, ds, fast_update, c.seed, counters[SAMPLES], fast.state, fast.weight, fast.reference,
                       fast.count_up, fast.count_down, fast_p, x_lines, x_words, d_lines, d_words)
        counters[SAMPLES] += 1
        if counters[SAMPLES] % c.every == 0:
            _transfer(lr, c, slow_update, fast.weight, slow, slow_p, s, values, counts, one_hot, minus_counts,
                      x_lines, x_words, d_lines, d_words)


def update_constants(dtype: np.dtype, lr: float, dw_min: float, desired_bl: int, update_management: bool,
                     bl_management: bool) -> UpdateConstants:
    """The ``UpdateConstants`` of a tile's trains in ``dtype`` (as ``pulsed.pulsed_update`` builds them: update
    management on with BL management)."""
    constants = np.array([lr, dw_min, 1e-30, desired_bl, 1.0], dtype=dtype)
    return UpdateConstants(constants, _LEVELS[np.dtype(dtype).type], desired_bl, update_management or bl_management,
                           bl_management)


__all__ = ["WRITE_EVENT0", "CHOP_EVENT0", "READ_EVENT0", "ReadConstants", "TransferConstants", "TransferState",
           "chop_uniform", "pulse_count_lr", "lr_scale", "transfer_batch", "update_constants"]

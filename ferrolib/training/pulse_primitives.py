"""The numba primitives every pulsed kernel shares: cycle-to-cycle noise, one device's pulses, the hashed slot bits
of a pulse train and the train scales of update management (docs/science.md: device models, plain analog SGD).

* Cycle-to-cycle noise is drawn from a counter-based hash (splitmix64 of ``(seed, event, i, j, k)`` followed by
  Box-Muller), so any loop order, and the naive references, get identical draws. ``event`` is a global sample
  index for pulse trains and a global update index for pulse counts; ``k`` numbers the pulses of one event on
  one device.
* The bits of one line of a train come from the sample's key ``(seed, event)``, the side's tag (0 columns, 1 rows)
  and the line number, followed by a splitmix64 sequence over the slots (``_line_bits``).
* The kernels take their arguments grouped in NamedTuples: the arrays a pulse writes (``PulseTarget``), the key of a
  call's draws (``EventKey``) and the constants of ``_train_scales`` (``UpdateConstants``), beside the devices'
  ``KernelDevice``. Reading a tuple's fields anywhere is fine, but numba's parallel loops drop the writes to an array
  reached through a tuple (a field inside ``prange``, or a name unpacked from the tuple: its dead-code elimination
  does not see them alias the argument), so a kernel binds every array it writes to a name of its own first
  (``state = target.state``), and the helpers that write inside ``prange`` (``_pulse_device``) take them one by one.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit

from ..kernels import KIND_CODES, KernelDevice, device_step, kernel_device

MAX_BL = 63
"""Longest pulse train that fits in one packed int64 word."""

assert tuple(KIND_CODES[k] for k in ("piecewise", "softbounds", "powstep")) == (0, 1, 2), \
    "kernel kind codes out of sync with MODEL_KINDS"

_LEVELS = {t: np.arange(MAX_BL + 1, dtype=t) for t in (np.float32, np.float64)}
"""``levels[n] = n`` in each dtype the draw kernel runs in (a train length as a float of that dtype)."""

_NO_WEIGHT = np.zeros((0, 0), dtype=np.float32)
"""The absent read-out weight of the kernels that can keep one current."""

_NO_REFERENCE = np.zeros((0, 0))
"""The reference of the absent read-out weight."""


class PulseTarget(NamedTuple):
    """The arrays of a tile that every pulse updates in place, as the kernels take them."""

    state: np.ndarray
    """(out, in) float64 device states ``w``."""
    count_up: np.ndarray
    """(out, in) int64 up pulses applied so far."""
    count_down: np.ndarray
    """(out, in) int64 down pulses applied so far."""
    weight: np.ndarray
    """(out, in) float32 read-out weight ``state - reference``, kept current; empty: none kept."""
    reference: np.ndarray
    """(out, in) float64 reference subtracted from the state in ``weight``; empty with an empty ``weight``."""


def pulse_target(state: np.ndarray, count_up: np.ndarray, count_down: np.ndarray, weight: np.ndarray | None = None,
                 reference: np.ndarray | None = None) -> PulseTarget:
    """The ``PulseTarget`` of a tile's arrays; no ``weight``: none kept (empty weight and reference)."""
    if weight is None:
        weight, reference = _NO_WEIGHT, _NO_REFERENCE
    return PulseTarget(state, count_up, count_down, weight, reference)


class EventKey(NamedTuple):
    """The key of a kernel call's random draws (cycle-to-cycle noise, slot bits): ``(seed, event)``."""

    seed: int
    """The run's seed."""
    event0: int
    """Event of the call's first sample (sample b: ``event0 + b``; row i of a transfer: ``event0 + i``; pulse
    counts: the event of every pulse)."""


class UpdateConstants(NamedTuple):
    """What ``_train_scales`` needs besides a sample's maxima: the update's constants and managements."""

    constants: np.ndarray
    """``[lr, dw_min, 1e-30, desired_bl, 1]`` in the dtype of x and d."""
    levels: np.ndarray
    """``levels[n] = n`` in that dtype (``_LEVELS``)."""
    desired_bl: int
    """Longest pulse train (1..``MAX_BL``)."""
    balanced: bool
    """Update management: ``B max|x| = A max|d|`` (on with BL management too)."""
    bl_management: bool
    """Update-BL management: ``BL = min(ceil k, desired_bl)`` (else desired_bl)."""


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
    read-out weight ``state - reference`` (the arrays of a ``PulseTarget``, one by one: it runs inside ``prange``)."""
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


# ----------------------------------------------------------------------------- pulse-train bits and scales
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


@njit(cache=True, inline="always")
def _train_scales(x_max, d_max, update):
    """One sample's ``(BL, scale_x, scale_d)`` of ``pulse_probabilities`` (BL 0 when k is not positive).

    ``update`` (``UpdateConstants``) holds ``constants = [lr, dw_min, 1e-30, desired_bl, 1]`` and ``levels[n] = n``
    in the dtype of x and d; every operation repeats the torch expression of ``pulse_probabilities`` in the same
    order and precision (``a / t`` of a scalar by a tensor is torch's ``reciprocal(t) * a``), so p, q and BL are
    identical."""
    constants, levels, desired_bl = update.constants, update.levels, update.desired_bl
    lr, dw_min, tiny, max_bl, one = constants[0], constants[1], constants[2], constants[3], constants[4]
    k = lr * x_max * d_max / dw_min
    if not k > 0:
        return 0, one, one
    n_slots = desired_bl
    if update.bl_management:
        ceiling = np.ceil(k)
        n_slots = 1 if ceiling < one else (desired_bl if ceiling >= max_bl else int(ceiling))
    product = one / (dw_min * levels[n_slots]) * lr
    if update.balanced:
        ratio = d_max * min(one / max(k, tiny) * max_bl, one) / max(x_max, tiny)
        return n_slots, np.sqrt(product * ratio), np.sqrt(product / ratio)
    return n_slots, np.sqrt(product), np.sqrt(product)


__all__ = ["MAX_BL", "KernelDevice", "kernel_device", "device_step", "c2c_normal", "PulseTarget", "pulse_target",
           "EventKey", "UpdateConstants"]

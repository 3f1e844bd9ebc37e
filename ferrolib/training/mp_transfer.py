"""Mixed precision's transfer: the float64 accumulator chi of every device gathers the updates, and whole multiples of
its threshold eps move to the devices as pulses (docs/science.md: mixed precision).

``n = trunc(chi / eps)`` (capped at ``max_pulses``), ``chi -= n eps``; the requested counts are applied exactly
(``exact_transfer``: ``|n|`` pulses of sign n, as ``apply_pulse_counts``) or as aihwkit's pulsed update of
``x = -n eps`` per row (``pulsed_transfer``: stochastic trains, or DETERMINISTIC_IMPLICIT coincidences), each in
one pass over chi; ``accumulate`` adds a mini-batch's increment, on the active columns only (``active_columns``).
The naive references are in ``training.reference``.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit, prange

from .pulse_primitives import (_LEVELS, MAX_BL, EventKey, KernelDevice, UpdateConstants, _line_bits, _popcount,
                               _pulse_device, _sample_hash, _tag_key, _train_scales, pulse_target)


# ------------------------------------------------------------------------------------- accumulate and transfer
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
def _transfer_row_pulses(i, columns, counts, x_max, eps_row, update, key, state, p, count_up, count_down, weight,
                         reference):
    """Row i's transfer train (sample ``event0 + i`` of ``key``, ``x = -n eps`` at ``columns`` with the requested
    counts ``n = counts``, zero elsewhere, one-hot ``d = e_i``, scales of ``_train_scales`` with ``update`` (both
    managements on); ``x_max = max|x|``) and, per device, its ``popcount(x_bits & d_bits)`` pulses in a row by
    ``_pulse_device`` (x drawn only in the slots where row i fires; pulse k keyed ``(seed, event0 + i, i, j, k)``,
    the order of the coincidence kernel within one device)."""
    seed, event0 = key
    one = update.constants[4]
    n_slots, scale_x, scale_d = _train_scales(x_max, one, update)
    if n_slots == 0:
        return
    sample = _sample_hash(seed, event0 + i)
    d_word = _line_bits(_tag_key(sample, 1), i, min(scale_d * one, one), n_slots, (1 << n_slots) - 1)
    if d_word == 0:
        return
    x_key = _tag_key(sample, 0)
    for c in range(columns.shape[0]):
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
def _implicit_row_pulses(i, columns, counts, x_max, eps_row, update, key, state, p, count_up, count_down, weight,
                         reference):
    """Row i's DETERMINISTIC_IMPLICIT transfer: ``x = -n eps`` at ``columns`` (requested counts ``counts``), one-hot
    ``d = e_i``, both managements on (``_implicit_scales`` of the granularity ``update.constants[1]`` and
    ``update.desired_bl``); device (i, j) receives ``_implicit_coincidences`` pulses in a row (``_pulse_device``),
    up where ``x_j < 0`` (pulse k keyed ``(seed, event0 + i, i, j, k)`` of ``key``, as the stochastic transfer).
    With ``k <= desired_bl`` that is ``rint(|n_ij| eps_ij / g)`` up to rounding."""
    count = columns.shape[0]
    if count == 0 or not x_max > 0.0:
        return
    seed, event0 = key
    n_slots, a, b = _implicit_scales(x_max, update.constants[1], update.desired_bl)
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


class Accumulator(NamedTuple):
    """Mixed precision's accumulator and how ``_mixed_precision_kernel`` transfers it."""

    chi: np.ndarray
    """(out, in) float64 accumulator, updated in place."""
    eps: np.ndarray
    """(out, in) float64 thresholds, or one row (1, in) shared by every row (``shared_row``)."""
    cap: int
    """Largest |n| transferred at once (the largest int64: no cap)."""
    mode: int
    """How the requested counts reach the devices: ``_TRANSFER_TRAINS``, ``_TRANSFER_EXACT`` or
    ``_TRANSFER_IMPLICIT``."""
    counts: np.ndarray
    """(out, in) int64, written with the requested counts where they are not 0; empty: not kept."""


class Increment(NamedTuple):
    """A change ``chi += scale * change`` of the accumulator, row by row."""

    values: np.ndarray
    """(out, n_active) increment on the columns of ``runs`` (float32 or float64)."""
    runs: np.ndarray
    """(n_runs, 2) uint64 ``[start, stop)`` column runs of ``values`` (``active_columns``); none: no change."""
    x0: np.ndarray
    """(in,) float32; non-empty: the change is the outer product ``float32(d0[i] x0[j])`` instead of ``values``."""
    d0: np.ndarray
    """(out,) float32 the other factor of that outer product."""
    scale: float
    """The factor of the change."""


@njit(parallel=True, cache=True, error_model="numpy")
def _mixed_precision_kernel(accumulator, change, rest, update, key, target, p):
    """Row i in parallel, one pass over its chi (still in L1 for the second and third loop):

    1. ``chi += scale * change`` (an ``Increment``): with a non-empty ``x0``, the change of one sample's outer
       product ``float32(d0[i] x0[j])`` (what torch's ``d0^T @ x0`` of float32 rows gives), computed on the fly;
       else ``values`` on its column runs (``_add_runs``; none: no change). Without dividing where
       ``|value| < (1 - 2^-20) eps``: there ``value/eps`` rounds below 1, so ``n = 0`` and
       ``chi = value - 0 eps = value`` exactly; only a row with a device at or above that bound (or NaN) is
       passed again with the division;
    2. the ``accumulator``'s ``mode`` exact: ``|n|`` pulses of sign n on every device (parameters ``p``, arrays
       in ``target``) with a non-zero request, one at a time (pulse k keyed ``(seed, event0, i, j, k)`` of ``key``, as
       ``apply_pulse_counts``); trains: ``_transfer_row_pulses`` of the row's non-zero requests ``-n eps`` (scales
       of ``update``); implicit: ``_implicit_row_pulses`` of them (granularity ``update.constants[1]``). With a
       non-empty ``counts`` the requested counts are stored there;
    3. mixed precision's accumulation ``chi += rest.scale float64(rest.values)`` (scale ``-lr``) on the column
       runs of ``rest``."""
    chi = accumulator.chi  # the arrays written inside prange: each bound to a name (``pulse_primitives``)
    counts = accumulator.counts
    eps, cap, mode = accumulator.eps, accumulator.cap, accumulator.mode
    state = target.state
    weight = target.weight
    reference = target.reference
    count_up = target.count_up
    count_down = target.count_down
    increment, increment_runs, x0, d0, scale = change
    seed, event0 = key
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
                _transfer_row_pulses(i, columns[:count], requests[:count], x_max, eps_row, update, key, state, p,
                                     count_up, count_down, weight, reference)
            elif mode == _TRANSFER_IMPLICIT:
                _implicit_row_pulses(i, columns[:count], requests[:count], x_max, eps_row, update, key, state, p,
                                     count_up, count_down, weight, reference)
        if rest.runs.shape[0] > 0:
            _add_runs(chi_row, rest.values[i], rest.runs, rest.scale)


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
    chi, increment, scale, eps, cap, increment_runs = _transfer_arguments(chi, eps, max_pulses, increment, scale,
                                                                          increment_runs)
    constants = np.array([1.0, granularity, 1e-30, desired_bl, 1.0])
    _mixed_precision_kernel(Accumulator(chi, eps, cap, mode, counts),
                            Increment(increment, increment_runs, x0, d0, scale),
                            Increment(rest, rest_runs, _NO_ROW, _NO_ROW, -float(lr)),
                            UpdateConstants(constants, _LEVELS[np.float64], desired_bl, True, True),
                            EventKey(seed, event0), pulse_target(state, count_up, count_down, weight, reference),
                            devices)


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


__all__ = ["shared_row", "transfer_counts", "every_column", "exact_transfer", "pulsed_transfer",
           "pulsed_transfer_and_accumulate", "accumulate", "active_columns"]

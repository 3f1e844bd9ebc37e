"""aihwkit's analog read periphery (``IOParameters``) and tile mapping (``MappingParameters``), forward and backward.

One analog matrix-vector product ``y = W x`` of a tile, as aihwkit 1.2's ``ForwardBackwardPassIOManaged``
(src/rpucuda/rpu_forward_backward_pass.cpp) computes it for every vector of a batch:

1. noise management: ``alpha = max_j |x_j|`` (``abs_max``; capped at ``nm_thres`` when set); a zero vector
   reads zero without an MVM;
2. input (DAC): ``x_q = clip(rint(x / (alpha r) / s_in) s_in, -inp_bound, inp_bound)`` with the bound-management
   reduction ``r`` (1 in the first round) and the step ``s_in = inp_res * 2 inp_bound`` (``inp_res > 1``: a number
   of steps, ``1 / inp_res``); ``rint`` rounds half to even;
3. the analog MVM ``W x_q`` plus Gaussian output noise ``out_noise xi``;
4. output (ADC): ``y_q = clip(rint(y / s_out) s_out, -out_bound, out_bound)``, ``s_out = out_res * 2 out_bound``;
5. iterative bound management (forward only): if any ``y_q`` exceeded ``+out_bound`` (or ``-out_bound`` with
   ``bm_test_negative_bound``; without it, as aihwkit, the last saturating output decides), the vector is read again with ``r`` doubled and fresh noise, until no output
   saturates or ``r > max_bm_factor`` or ``r > max_bm_res / s_in`` (with the defaults: r = 1, 2, 4, 8, 16, at
   most five reads);
6. the result ``y = y_q alpha r out_scale``.

The backward pass ``d_in = W^T d`` is the same with the backward parameters and no bound management (aihwkit
switches it off there). The tile (aihwkit's ``AnalogTile.post_forward`` / ``pre_backward``) zeroes the backward
input of every output whose forward result reached ``out_scale out_bound 0.999`` (when ``out_bound > 0``): the
gradient mask of saturated outputs. It masks only the error sent back to the layer below; the update uses the
unmasked error (``AnalogFunction.backward`` stores ``grad_output`` for the optimizer before any mask).

Not modelled (aihwkit's defaults switch them off): input noise and asymmetry, stochastic rounding, systematic
output-noise variation, output non-linearity, IR drop, voltage offsets, series resistance, weight read noise,
two-pass MVM types and the averaging noise-management types.

``forward`` and ``backward`` are the vectorised reads used in training; ``forward_reference`` and
``backward_reference`` are the per-vector loops written straight from aihwkit's C++ and are tested against them
on the same random draws (``NoiseTable``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Callable

import numpy as np
import torch
from numba import njit
from torch import Tensor

from ..provenance import compact_repr
from .pulsed import _IEEE, _float_from_bits

NOISE_MANAGEMENTS: tuple[str, ...] = ("abs_max", "max", "constant", "none")
"""Noise-management types (aihwkit ``NoiseManagementType`` ABS_MAX, MAX, CONSTANT, NONE)."""

BOUND_MANAGEMENTS: tuple[str, ...] = ("iterative", "none")
"""Bound-management types (aihwkit ``BoundManagementType`` ITERATIVE, NONE)."""

SATURATION_MARGIN = 0.999
"""aihwkit's tile masks the gradient of forward outputs at or beyond ``out_scale * out_bound * 0.999``."""

Draw = Callable[[int, Tensor | None, int, int], Tensor]
"""Output-noise source: ``draw(round, rows, n_rows, n_out)`` -> standard normal draws (n_rows, n_out) for the
given read round and batch rows (``rows`` None: every row, in order)."""


@dataclass(frozen=True)
class IOParameters:
    """The analog read periphery of a tile, one pass (forward or backward); aihwkit 1.2's ``IOParameters`` names
    and defaults (``IOParameters()`` is aihwkit's default, which the paper printed for forward and backward)."""

    is_perfect: bool = False
    """Exact reads ``y = W x out_scale``; every other setting but ``out_bound``'s gradient mask is ignored."""
    inp_bound: float = 1.0
    """Input (DAC) range [-inp_bound, inp_bound]; noise management needs 1."""
    inp_res: float = 1 / (2**7 - 2)
    """DAC resolution as a fraction of the range 2 inp_bound (values > 1: a number of steps; <= 0: none)."""
    out_bound: float = 12.0
    """Output (ADC) range [-out_bound, out_bound]; <= 0: no bound (and no gradient mask)."""
    out_noise: float = 0.06
    """Standard deviation of the Gaussian noise added to every analog output (before the ADC)."""
    out_res: float = 1 / (2**9 - 2)
    """ADC resolution as a fraction of the range 2 out_bound (values > 1: a number of steps; <= 0: none)."""
    out_scale: float = 1.0
    """Fixed digital factor on every output."""
    bound_management: str = "iterative"
    """``iterative``: read again with halved inputs while an output saturates; ``none``. Forward only."""
    noise_management: str = "abs_max"
    """Input scaling per vector: ``abs_max`` (max |x|), ``max`` (max x), ``constant`` (nm_thres, or 1), ``none``."""
    nm_thres: float = 0.0
    """Upper cap of the noise-management scale (``abs_max``, ``max``) or the constant scale; 0: no cap."""
    max_bm_factor: int = 1000
    """Bound management stops once the reduction factor exceeds this."""
    max_bm_res: float = 0.25
    """Bound management stops once the reduction factor exceeds ``max_bm_res / (inp_res 2 inp_bound)``."""
    bm_test_negative_bound: bool = True
    """Bound management also retries when an output reached ``-out_bound``."""

    __repr__ = compact_repr

    @classmethod
    def aihwkit_default(cls) -> "IOParameters":
        """aihwkit 1.2's ``IOParameters()``: 7-bit inputs, 9-bit outputs in +-12, output noise 0.06, abs-max noise
        management, iterative bound management (the paper's forward and backward)."""
        return cls()

    @classmethod
    def perfect(cls) -> "IOParameters":
        """Exact reads without an output bound (so without a gradient mask): ferrolib's reads before the periphery.
        (aihwkit's ``IOParameters(is_perfect=True)`` keeps ``out_bound`` 12 and with it the tile's gradient mask.)"""
        return cls(is_perfect=True, out_bound=0.0)

    def problems(self, name: str) -> list[str]:
        """One line per invalid setting (prefixed with ``name``); empty when valid."""
        lines = []
        if self.noise_management not in NOISE_MANAGEMENTS:
            lines.append(f"{name}.noise_management {self.noise_management!r} is not one of {NOISE_MANAGEMENTS}")
        if self.bound_management not in BOUND_MANAGEMENTS:
            lines.append(f"{name}.bound_management {self.bound_management!r} is not one of {BOUND_MANAGEMENTS}")
        for field_name in ("inp_bound", "inp_res", "out_bound", "out_noise", "out_res", "out_scale", "nm_thres",
                           "max_bm_res"):
            value = getattr(self, field_name)
            if not (isinstance(value, (int, float)) and math.isfinite(value)):
                lines.append(f"{name}.{field_name} must be a finite number, got {value!r}")
        if not lines and not self.is_perfect:
            if self.noise_management != "none" and self.inp_bound != 1.0:
                lines.append(f"{name}: noise management needs inp_bound 1 (aihwkit), got {self.inp_bound}")
            if self.out_noise < 0:
                lines.append(f"{name}.out_noise must be >= 0, got {self.out_noise}")
            if self.max_bm_factor < 1:
                lines.append(f"{name}.max_bm_factor must be >= 1, got {self.max_bm_factor}")
        return lines

    @cached_property
    def input_step(self) -> float:
        """DAC step ``s_in`` as aihwkit computes it in float32 (0: no quantisation)."""
        return _step(self.inp_res, self.inp_bound)

    @cached_property
    def output_step(self) -> float:
        """ADC step ``s_out`` as aihwkit computes it in float32 (0: no quantisation)."""
        return _step(self.out_res, self.out_bound)

    @property
    def saturation_bound(self) -> float | None:
        """Forward outputs at or beyond this magnitude get no backward error (aihwkit's tile); None: no mask."""
        return self.out_scale * self.out_bound * SATURATION_MARGIN if self.out_bound > 0 else None


def _step(res: float, bound: float) -> float:
    """aihwkit's ``checkAndSetRes``: ``res`` (or 1/res if > 1, 0 if < 0) times the range 2 bound, in float32."""
    r = np.float32(max(res, 0.0))
    r = np.float32(1.0) / r if r > 1 else r
    return float(r * np.float32(2.0 * bound)) if bound > 0 else 0.0


@dataclass(frozen=True)
class MappingParameters:
    """How a layer's weight matrix maps onto tiles; aihwkit 1.2's ``MappingParameter`` names and defaults
    (``MappingParameters()`` is aihwkit's default, which the paper used).

    A layer of n inputs becomes ``k = ceil(n / max_input_size)`` tiles of near-equal column blocks (aihwkit's
    ``TileModuleArray.get_split_sizes``: the first ``n mod k`` get one more), each with its own periphery,
    noise and bound management and update; their outputs are summed digitally. A digital bias is a float32
    vector outside the tiles, added after the sum and updated by plain SGD (``b -= lr sum_b d_b``, aihwkit's
    optimizer step on a torch parameter); its gradient is never masked.
    """

    digital_bias: bool = True
    """Bias as a digital float vector (True) or as an extra analog column with input 1 (False)."""
    max_input_size: int = 512
    """Largest number of inputs (columns) per tile; 0: no split."""
    max_output_size: int = 512
    """Largest number of outputs (rows) per tile; 0: no limit (splitting outputs is not modelled: a layer with more
    outputs is refused)."""

    __repr__ = compact_repr

    @classmethod
    def aihwkit_default(cls) -> "MappingParameters":
        """aihwkit 1.2's ``MappingParameter()``: digital bias, tiles of at most 512 x 512."""
        return cls()

    @classmethod
    def single_tile(cls) -> "MappingParameters":
        """One tile per layer with the bias as its last analog column: ferrolib's mapping before the periphery."""
        return cls(digital_bias=False, max_input_size=0, max_output_size=0)

    def split_sizes(self, n_inputs: int) -> list[int]:
        """Column counts of the tiles of a layer with ``n_inputs`` inputs (aihwkit's ``get_split_sizes``)."""
        if self.max_input_size <= 0:
            return [n_inputs]
        n_splits = (n_inputs + self.max_input_size - 1) // self.max_input_size
        base, extra = divmod(n_inputs, n_splits)
        return [base + (i < extra) for i in range(n_splits)]

    def problems(self, layer_sizes: list[int]) -> list[str]:
        """One line per invalid setting for a network of ``layer_sizes`` (inputs, hidden..., outputs)."""
        lines = []
        for name in ("max_input_size", "max_output_size"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 0):
                lines.append(f"mapping.{name} must be an integer >= 0, got {value!r}")
        if lines:
            return lines
        if not self.digital_bias and any(len(self.split_sizes(n)) > 1 for n in layer_sizes[:-1]):
            lines.append("mapping: split tiles keep the bias digital (aihwkit's TileModuleArray); "
                         "set digital_bias=True or max_input_size=0")
        widest = max(layer_sizes[1:])
        if 0 < self.max_output_size < widest:
            lines.append(f"mapping.max_output_size {self.max_output_size} is below the widest layer ({widest} "
                         "outputs): splitting outputs is not modelled")
        return lines


class NoiseTable:
    """A fixed table of draws ``values[round, row, out]``, so that two implementations read the same noise."""

    def __init__(self, values: Tensor) -> None:
        self.values = values

    def __call__(self, round_index: int, rows: Tensor | None, n_rows: int, n_out: int) -> Tensor:
        table = self.values[round_index]
        return table if rows is None else table[rows]


def _nm_scale(x: Tensor, io: IOParameters) -> Tensor | None:
    """Noise-management scale per row (aihwkit ``computeNoiseManagement``); None for ``none``."""
    kind = io.noise_management
    if kind == "none":
        return None
    if kind == "constant":
        return torch.full((x.shape[0],), io.nm_thres if io.nm_thres > 0 else 1.0, dtype=x.dtype)
    value = x.abs().amax(dim=1) if kind == "abs_max" else x.amax(dim=1)
    return value.clamp_max(io.nm_thres) if io.nm_thres > 0 else value


def _quantise(values: Tensor, step: float, bound: float) -> Tensor:
    """``clip(rint(v / step) step, -bound, bound)`` in place (no rounding for step 0, no clip for bound <= 0)."""
    if step > 0:
        values.div_(step).round_().mul_(step)
    if bound > 0:
        values.clamp_(-bound, bound)
    return values


def read(weight: Tensor, x: Tensor, io: IOParameters, draw: Draw, bound_management: bool = True
         ) -> tuple[Tensor, int]:
    """``x @ weight.T`` for every row of ``x`` through the periphery ``io`` (module docstring, steps 1-6).

    Returns the outputs (B, out) and the number of analog MVMs performed (bound-management retries included,
    zero vectors excluded). ``bound_management=False`` is the backward pass (aihwkit never manages bounds there).
    Training's float32 reads with abs-max noise management take ``_fused_read`` (the same bits in two kernels
    per round); every other read, and a batch with a zero or NaN row, this function's torch steps.
    """
    n_rows, n_out = x.shape[0], weight.shape[0]
    if io.is_perfect:
        y = x @ weight.T
        return (y * io.out_scale if io.out_scale != 1.0 else y), n_rows
    managed = bound_management and io.bound_management == "iterative"
    if _fusable(weight, x, io, managed):
        fused = _fused_read(weight, x, io, draw, managed)
        if fused is not None:
            return fused
    nm = _nm_scale(x, io)
    in_step, out_step = io.input_step, io.output_step
    out: Tensor | None = None  # allocated once some rows are placed apart (zero vectors, retries)
    rows: Tensor | None = None
    if nm is not None:
        live = nm > 0
        if not bool(live.all()):
            rows = live.nonzero().flatten()
            x, nm = x[rows], nm[rows]
            out = torch.zeros((n_rows, n_out), dtype=x.dtype)
    inverse = None if nm is None else nm.reciprocal()  # 1 / nm, correctly rounded like aihwkit's division
    reduction, round_index, reads = 1.0, 0, 0
    while x.shape[0] > 0:  # every row may be a zero vector
        scale = inverse
        if managed and (scale is None or reduction != 1.0):  # x / 1 is x: the first round keeps 1 / nm as it is
            scale = (torch.ones(x.shape[0], dtype=x.dtype) if scale is None else scale) / reduction
        values = x * scale[:, None] if scale is not None else x.clone()
        y = _quantise(values, in_step, io.inp_bound) @ weight.T
        if io.out_noise > 0:
            y.add_(draw(round_index, rows, x.shape[0], n_out), alpha=io.out_noise)
        y = _quantise(y, out_step, 0.0)
        reads += x.shape[0]
        bound = io.out_bound
        tested = managed and bound > 0 and not _gave_up(io, reduction)
        failed = _bound_test_failed(y, bound, io.bm_test_negative_bound) if tested else None
        if bound > 0 and not (tested and io.bm_test_negative_bound):
            y.clamp_(-bound, bound)  # a row that passed the full test has nothing to clip; one that failed is read again
        if scale is not None:
            factor = scale.reciprocal() if io.out_scale == 1.0 else io.out_scale / scale
            y.mul_(factor[:, None])
        elif io.out_scale != 1.0:
            y.mul_(io.out_scale)
        out = _place(out, rows, y)
        if failed is None or not bool(failed.any()):
            return out, reads
        keep = failed.nonzero().flatten()
        rows = keep if rows is None else rows[keep]
        x, inverse = x[keep], (None if inverse is None else inverse[keep])
        reduction *= 2.0
        round_index += 1
    return out, reads


def _place(out: Tensor | None, rows: Tensor | None, y: Tensor) -> Tensor:
    """The outputs so far with round ``y`` written at ``rows`` (the first round's ``y`` is the outputs; the rows
    that fail its bound test are written again by a later round)."""
    if out is None:
        return y
    out[rows] = y
    return out


def _gave_up(io: IOParameters, reduction: float) -> bool:
    """Whether bound management stops at reduction factor ``reduction`` (aihwkit's two limits)."""
    in_step = io.input_step
    return int(reduction) > io.max_bm_factor or (in_step > 0 and reduction > io.max_bm_res / in_step)


def _fusable(weight: Tensor, x: Tensor, io: IOParameters, managed: bool) -> bool:
    """Whether ``_fused_read`` computes this read: float32, abs-max noise management without a cap, no output
    scale, and (when bounds are managed) the full bound test."""
    return (x.dtype == torch.float32 and weight.dtype == torch.float32 and io.noise_management == "abs_max"
            and io.nm_thres == 0.0 and io.out_scale == 1.0 and (io.bm_test_negative_bound or not managed)
            and x.shape[0] > 0 and x.shape[1] > 0)


def _fused_read(weight: Tensor, x: Tensor, io: IOParameters, draw: Draw, managed: bool
                ) -> tuple[Tensor, int] | None:
    """``read`` for ``_fusable`` reads: per round one kernel for the inputs (noise-management scale, DAC), the
    MVM and the noise draw in torch as ``read`` does them, one kernel for the outputs (ADC, bound test, clip,
    rescale). Every operation is ``read``'s in float32, in its order, so the result is the same bits (tested on
    the same draws). None when a row is zero or NaN (``read``'s general steps handle those)."""
    n_out = weight.shape[0]
    x = x.contiguous()
    inverse = torch.empty(x.shape[0], dtype=torch.float32)
    values = torch.empty_like(x)
    in_step, inp_bound = np.float32(io.input_step), np.float32(io.inp_bound)
    if not _prepare_inputs(x.numpy(), x.view(torch.int32).numpy(), inverse.numpy(), values.numpy(), in_step,
                           inp_bound, True):
        return None
    out_step, bound = np.float32(io.output_step), np.float32(io.out_bound)
    scale, reduction, round_index, reads = inverse, 1.0, 0, 0
    out: Tensor | None = None
    rows: Tensor | None = None
    failed = torch.empty(x.shape[0], dtype=torch.bool)
    while True:
        y = values @ weight.T
        if io.out_noise > 0:
            y.add_(draw(round_index, rows, x.shape[0], n_out), alpha=io.out_noise)
        reads += x.shape[0]
        tested = managed and io.out_bound > 0 and not _gave_up(io, reduction)
        retry = _finish_outputs(y.numpy(), scale.numpy(), out_step, bound, tested, io.out_bound > 0 and not tested,
                                failed.numpy())
        out = _place(out, rows, y)
        if not retry:
            return out, reads
        keep = failed[:x.shape[0]].nonzero().flatten()
        rows = keep if rows is None else rows[keep]
        x, inverse = x[keep], inverse[keep]
        reduction *= 2.0
        round_index += 1
        scale = inverse / reduction
        values = torch.empty_like(x)
        _prepare_inputs(x.numpy(), x.view(torch.int32).numpy(), scale.numpy(), values.numpy(), in_step, inp_bound,
                        False)


_, _MAGNITUDE32, _INFINITY32 = _IEEE[np.float32]
"""The bits of |v| of a float32 v, and the bits of +inf (NaN lies above)."""


@njit(cache=True, inline="always")
def _quantise_value(value, step, bound):
    """``_quantise`` of one float32 value: ``clip(rint(value / step) step, -bound, bound)`` (no rounding for
    ``step`` 0, no clip for ``bound`` <= 0)."""
    if step > 0:
        value = np.rint(value / step) * step
    if bound > 0:
        value = min(max(value, -bound), bound)
    return value


@njit(cache=True)
def _prepare_inputs(x, bits, scale, values, step, bound, find_scale):
    """The DAC of every row: ``values = clip(rint(x scale / step) step, -bound, bound)`` in float32 (``step`` 0:
    no rounding, ``bound`` <= 0: no clip), as ``read``'s ``x * scale[:, None]`` and ``_quantise``. With
    ``find_scale`` first ``scale = 1 / max_j |x_j|`` per row (abs-max noise management; the maximum from the
    IEEE bits ``bits`` of ``x``, as ``pulsed._magnitude_scan``); returns False, before any values, when some row
    is all zero or holds a NaN."""
    n_rows, n_in = x.shape
    one = np.float32(1.0)
    if find_scale:
        for i in range(n_rows):
            largest, beyond = np.int32(0), np.int32(0)
            for j in range(n_in):
                magnitude = bits[i, j] & _MAGNITUDE32
                largest = max(largest, magnitude)
                beyond = max(beyond, magnitude - _INFINITY32)
            if largest == 0 or beyond > 0:  # a zero vector, or a NaN
                return False
            scale[i] = one / _float_from_bits(largest, one)
    for i in range(n_rows):
        s = scale[i]
        for j in range(n_in):
            values[i, j] = _quantise_value(x[i, j] * s, step, bound)
    return True


@njit(cache=True)
def _finish_outputs(y, scale, step, bound, tested, clip, failed):
    """The ADC of every row in place, as ``read`` after the noise: ``y = rint(y / step) step`` (float32; ``step``
    0: none); with ``tested`` the bound test ``failed_i = max_j |y_ij| > bound`` (a NaN row passes, as torch's
    ``amax`` propagates it, on the values before the clip); with ``clip`` ``y`` clipped to +-bound; then
    ``y *= 1 / scale_i``, all in one pass. Returns whether some row failed."""
    n_rows, n_out = y.shape
    one = np.float32(1.0)
    clip_bound = bound if clip else np.float32(0.0)
    any_failed = False
    for i in range(n_rows):
        largest = np.float32(0.0)
        nan = False
        factor = one / scale[i]
        for j in range(n_out):
            value = _quantise_value(y[i, j], step, np.float32(0.0))
            magnitude = abs(value)
            largest = max(largest, magnitude)
            nan = nan or magnitude != magnitude
            y[i, j] = _quantise_value(value, np.float32(0.0), clip_bound) * factor
        failed[i] = tested and not nan and largest > bound
        any_failed = any_failed or failed[i]
    return any_failed


def _bound_test_failed(y: Tensor, bound: float, test_negative: bool) -> Tensor:
    """Rows whose bound test fails, as aihwkit's ``finalizeOutput`` scans the outputs in order: a flag starting
    true is set false by every output above ``bound`` and set to ``not test_negative`` by every output below
    ``-bound``. With ``test_negative`` any saturation fails; without it the last saturating output decides (an
    output below ``-bound`` after one above it passes the row: aihwkit's loop assigns rather than combines)."""
    if test_negative:
        return y.abs().amax(dim=1) > bound  # max(high, -low) > bound, one pass (aminmax is several times slower)
    above = y > bound
    saturated = above | (y < -bound)
    index = torch.arange(y.shape[1]).expand_as(y)
    last = torch.where(saturated, index, -1).amax(dim=1)
    return saturated.any(dim=1) & above.gather(1, last.clamp_min(0)[:, None])[:, 0]


def forward(weight: Tensor, x: Tensor, io: IOParameters, draw: Draw) -> tuple[Tensor, Tensor | None, int]:
    """The tile's forward read: outputs (B, out), the mask of saturated outputs (None without an output bound) and
    the MVMs performed."""
    y, reads = read(weight, x, io, draw, bound_management=True)
    bound = io.saturation_bound
    if bound is None:
        return y, None, reads
    if y.dtype == torch.float32 and y.is_contiguous():
        saturated = torch.empty(y.shape, dtype=torch.bool)
        _saturated(y.numpy(), np.float32(bound), saturated.numpy())
        return y, saturated, reads
    return y, y.abs() >= bound, reads


@njit(cache=True)
def _saturated(y, bound, mask):
    """``mask = |y| >= bound`` (float32), torch's ``y.abs() >= bound`` in one pass."""
    for i in range(y.shape[0]):
        for j in range(y.shape[1]):
            mask[i, j] = abs(y[i, j]) >= bound


def backward(weight: Tensor, d: Tensor, io: IOParameters, draw: Draw, saturated: Tensor | None = None
             ) -> tuple[Tensor, int]:
    """The tile's backward read ``d @ weight`` (weight (out, in), d (B, out)): the error of every saturated forward
    output zeroed first (``saturated`` from ``forward``), no bound management."""
    if saturated is not None:
        d = d.masked_fill(saturated, 0.0)
    return read(weight.T, d, io, draw, bound_management=False)


# ------------------------------------------------------------------------------------------ per-vector reference
def forward_reference(weight: Tensor, x: Tensor, io: IOParameters, draw: Draw, managed: bool = True
                      ) -> tuple[Tensor, int]:
    """Per-vector loop written from aihwkit's ``forwardVector`` / ``computeAnalogMV`` / ``prepareInput`` /
    ``finalizeOutput`` (one row at a time, element by element); the test reference of ``read``."""
    n_out = weight.shape[0]
    out = torch.zeros((x.shape[0], n_out), dtype=x.dtype)
    in_step, out_step = io.input_step, io.output_step
    reads = 0
    bm = managed and io.bound_management == "iterative"
    nm_on = io.noise_management != "none"
    for row in range(x.shape[0]):
        vector = x[row]
        if io.is_perfect:
            out[row] = (weight @ vector) * io.out_scale
            reads += 1
            continue
        nm = float(_nm_scale(vector[None], io)[0]) if nm_on else 1.0
        if nm_on and nm <= 0.0:
            continue  # short cut: the output is zero
        reduction = 0.5
        passed = False
        round_index = 0
        while not passed:
            reduction *= 2.0
            scale = torch.tensor(1.0, dtype=x.dtype)
            if nm_on:
                scale = scale / nm
            if bm:
                scale = scale / reduction
            prepared = vector.clone()
            for j in range(prepared.shape[0]):
                value = prepared[j] * scale
                if in_step > 0:
                    value = torch.round(value / in_step) * in_step
                prepared[j] = value.clamp(-io.inp_bound, io.inp_bound)
            y = weight @ prepared
            noise = draw(round_index, torch.tensor([row]), 1, n_out)[0] if io.out_noise > 0 else None
            passed = True
            for i in range(n_out):
                value = y[i]
                if noise is not None:
                    value = value + io.out_noise * noise[i]
                if out_step > 0:
                    value = torch.round(value / out_step) * out_step
                if io.out_bound > 0:
                    if value > io.out_bound:
                        value, passed = torch.tensor(io.out_bound, dtype=x.dtype), False
                    elif value < -io.out_bound:
                        value = torch.tensor(-io.out_bound, dtype=x.dtype)
                        passed = not io.bm_test_negative_bound
                y[i] = value
            reads += 1
            if bm:
                passed = passed or int(reduction) > io.max_bm_factor or (
                    in_step > 0 and reduction > io.max_bm_res / in_step)
            else:
                passed = True
            round_index += 1
            out[row] = y * (io.out_scale / scale)
    return out, reads


def backward_reference(weight: Tensor, d: Tensor, io: IOParameters, draw: Draw, saturated: Tensor | None = None
                       ) -> tuple[Tensor, int]:
    """Per-vector backward (aihwkit ``backwardVector``: no bound management) after the tile's gradient mask."""
    if saturated is not None:
        d = d.clone()
        for row in range(d.shape[0]):
            for i in range(d.shape[1]):
                if saturated[row, i]:
                    d[row, i] = 0.0
    return forward_reference(weight.T, d, io, draw, managed=False)


__all__ = ["IOParameters", "MappingParameters", "NOISE_MANAGEMENTS", "BOUND_MANAGEMENTS", "SATURATION_MARGIN",
           "NoiseTable", "read", "forward", "backward", "forward_reference", "backward_reference"]

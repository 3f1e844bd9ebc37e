"""Training rules, one layer class each behind the same small interface (``Layer``).

* ``fp``  floating-point SGD: ``W -= lr D^T [X; 1]`` (D already carries the 1/B of the mean loss).
* ``sgd`` plain analog SGD: one stochastic pulse-train rank-one update per sample (``pulsed``), no reference;
  the train length divides by aihwkit's weight granularity of the device (``pulsed.aihwkit_granularity``).
* ``sps`` the same, with every device paired with a static reference programmed to its own symmetry point,
  so ``w_eff = w_device - w_sp`` and the implicit decay of plain SGD pulls toward ``w_eff = 0``
  (``sps_reference``: how the symmetry point is found; ``sps_init``: where the device states start).
* ``mp``  mixed precision (Nandakumar 2020): a float64 matrix chi accumulates ``-lr d x^T`` per sample (summed
  over the batch in one product, which equals the per-sample sum); after every mini-batch
  ``n = trunc(chi / eps)`` pulses are applied one at a time through the device model and ``chi -= n eps``.
  ``eps`` is per device: the mean of its up and down step at ``w_device = 0`` (the paper's threshold; without
  device-to-device variation it is the same for every device). Large counts are applied in full; with
  ``max_pulses`` set, ``|n|`` is capped and the excess stays in chi (never silently dropped). With
  ``mp_transfer = "pulsed"`` (aihwkit, the ideal profile) n is sent as a stochastic pulse train per row instead;
  with ``"deterministic_implicit"`` (the pulse type the paper's scripts set) as aihwkit's rounded coincidence counts.

Reads. A layer reads exactly (default), through the simplified ``tile.Periphery`` (``periphery``) or through
aihwkit's periphery (``io``: forward and backward ``periphery.IOParameters``, with the gradient mask of saturated
forward outputs). With a ``periphery.MappingParameters`` of digital bias, a layer becomes a ``MappedLayer``: its
columns split over tiles of at most ``max_input_size`` inputs (one analog layer each, with its own periphery,
noise and update), the bias a digital float vector. Every layer counts the analog MVMs it performs
(``reads``: training forward, backward, evaluation; bound-management retries included).

A new rule is one more ``Layer`` subclass plus an entry in ``make_layer``: the transfer rules ``ttv2``, ``cttv2`` and
``agad`` (Tiki-Taka v2, chopped TTv2, AGAD: a fast and a slow tile per layer) live in ``transfer``.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Iterator

import numpy as np
import torch
from torch import Tensor

from ..devices import DeviceArray
from ..provenance import compact_repr
from . import periphery as io_periphery
from . import pulsed
from .periphery import IOParameters, MappingParameters
from .tile import AnalogTile, Periphery, read

if TYPE_CHECKING:
    from .transfer import ChoppedTransferParameters

ALGORITHMS: tuple[str, ...] = ("fp", "sgd", "mp", "sps", "ttv2", "cttv2", "agad")
"""Training rules by name (the last three: ``transfer.TRANSFER_ALGORITHMS``)."""

PULSE_MODES: tuple[str, ...] = ("stochastic", "implicit", "expected")
"""Update modes of the pulsed rules: the paper's stochastic trains (default) and two deterministic variants."""

READ_PHASES: tuple[str, ...] = ("forward", "backward", "eval")
"""What a layer's read counters count: training forward MVMs, training backward (transposed) MVMs, evaluation
forward MVMs."""

SPS_INITS: tuple[str, ...] = ("reference", "device_zero")
"""Where SP shifting starts its device states: around the reference (w_eff = initial weights) or around
w_device = 0 (w_eff = initial weights - reference)."""

MP_TRANSFERS: tuple[str, ...] = ("exact", "pulsed", "deterministic_implicit", "deterministic_implicit_cuda")
"""How mixed precision applies a transfer of ``n = trunc(chi/eps)``: ``exact`` applies exactly n pulses after each
mini-batch; ``pulsed`` is aihwkit's: n through a stochastic pulse train per row (at most desired_bl pulses), after
the first sample of the next mini-batch; ``deterministic_implicit`` is aihwkit's with ``update.pulse_type =
DETERMINISTIC_IMPLICIT`` (the paper's mixed-precision runs), on the same schedule, with the rounded count
``rint(BL p q)`` (about ``|n| eps / g``, at most desired_bl) instead of a train; ``deterministic_implicit_cuda`` the
same pulses on aihwkit's CUDA schedule: the whole mini-batch accumulated, then the transfer (none after the first
mini-batch)."""

IMPLICIT_TRANSFERS: tuple[str, ...] = ("deterministic_implicit", "deterministic_implicit_cuda")
"""The transfers with DETERMINISTIC_IMPLICIT pulses."""


@dataclass
class UpdateSettings:
    """How pulsed and mixed-precision layers program their devices."""

    pulse_mode: str = "stochastic"
    """``stochastic`` pulse trains (aihwkit), ``implicit`` rounded counts or ``expected`` mean change."""
    desired_bl: int = 31
    """Longest pulse train (slots per sample)."""
    update_management: bool = True
    """Balance the x and d firing probabilities (aihwkit ``update_management``)."""
    bl_management: bool = True
    """Shorten trains to ``ceil(lr max|x| max|d| / dw_min)`` slots (aihwkit ``update_bl_management``)."""
    max_pulses: int | None = None
    """Mixed precision: cap on |pulses| per device and update (excess stays in chi); None applies all."""
    seed: int = 0
    """Key of the counter-based random streams (pulse-train bits, cycle-to-cycle noise); one per layer."""
    mp_transfer: str = "exact"
    """Mixed precision: ``exact`` (n pulses per device), ``pulsed`` (aihwkit's stochastic transfer trains and
    schedule) or a DETERMINISTIC_IMPLICIT transfer on aihwkit's CPU or CUDA schedule (``MP_TRANSFERS``)."""
    sps_reference: str = "analytic"
    """SP shifting: how each reference finds its device's symmetry point (``devices.SYMMETRY_POINT_METHODS``)."""
    sps_init: str = "reference"
    """SP shifting: ``reference`` programs every device to its reference plus the initial weight (w_eff starts at
    the initial weights); ``device_zero`` programs the device to the initial weight (w_eff starts shifted by
    minus the reference)."""
    transfer: ChoppedTransferParameters | None = None
    """Transfer rules: their ``transfer.ChoppedTransferParameters`` (None: the algorithm's preset)."""

    __repr__ = compact_repr


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run the enclosed torch products on one thread, whatever the run's thread count, so that every rule gives the
    same numbers for any thread count: MKL's float32 product splits its sums between threads on some hosts (fc1's
    forward, 64 x 785 x 256, differs by up to 2e-6 between one and two threads on an AVX-512 Xeon; the output
    layer's ``d^T x``, 10 x 64 x 129, by up to 2e-9 on an EPYC). The numba kernels keep the run's threads."""
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def batch_outer(d: Tensor, x: Tensor) -> Tensor:
    """``sum_b d_b x_b^T = d^T x`` (float32), computed by one thread (``one_torch_thread``)."""
    with one_torch_thread():
        return d.T @ x


ACTIVE_OUTER_MIN_SHAPE = (16, 32)
"""Smallest (rows, active columns) of a product that ``active_outer`` computes on the active columns only. With
MKL's AVX-512 kernels the float32 product of a column then does not depend on the other columns (measured on an
Intel Xeon: 0 of 5882 random shapes with at least 12 rows and 32 active columns differ); in smaller products its
small-matrix kernels sum in another order. With its AVX2 kernels about 1 % of the columns differ in the last bits
(up to 2e-6 relative): runs stay deterministic on such a host, with other bits than the dense product."""


def active_outer(d: Tensor, x: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """``batch_outer(d, x)`` on the active columns of ``x`` only (``pulsed.active_columns``): the product
    (out, n_active) float32 and the column runs it covers. The other columns of ``d^T x`` are zeros. Each kept
    column equals ``batch_outer``'s (bit for bit with MKL's AVX-512 kernels, within float32 rounding with its AVX2
    ones; tested at the network's shapes), so mixed precision skips MNIST's blank pixels; below
    ``ACTIVE_OUTER_MIN_SHAPE`` the product covers every column."""
    if d.shape[1] >= ACTIVE_OUTER_MIN_SHAPE[0]:
        runs, compact = pulsed.active_columns(x.numpy())
        if compact.shape[1] >= ACTIVE_OUTER_MIN_SHAPE[1]:
            return batch_outer(d, torch.from_numpy(compact)).numpy(), runs
    return batch_outer(d, x).numpy(), pulsed.every_column(x.shape[1])


class Layer:
    """A fully connected layer (out, in + 1 with the bias column) and its update rule."""

    name: str = ""
    digital_macs: int = 0
    """Digital multiply-accumulates spent on weight updates so far (mixed precision only)."""
    tile: AnalogTile | None = None
    periphery: Periphery | None = None
    """Simplified read periphery of an analog layer (``TrainConfig.periphery``; None: see ``io``)."""
    io: tuple[IOParameters, IOParameters] | None = None
    """aihwkit's periphery of an analog layer: forward and backward ``IOParameters`` (None: exact or ``periphery``)."""
    reader: torch.Generator | None = None
    """Source of the periphery's output noise."""
    bias_column: bool = True
    """Whether the last column of ``weight()`` is an analog bias (input 1); False for the tiles of a MappedLayer."""
    bias_input: bool = True
    """Whether ``forward`` and ``update`` take the inputs with the bias column ``[x; 1]`` (B, in + 1); False for a
    MappedLayer, whose bias is digital: it takes ``x`` (B, in)."""
    saturated: Tensor | None = None
    """Mask of the outputs of the last training forward read that reached the output bound (``io`` only)."""

    def weight(self) -> Tensor:
        """Effective weight (out, in + 1) used by forward and backward passes."""
        raise NotImplementedError

    @property
    def reads(self) -> np.ndarray:
        """Analog MVMs performed so far per ``READ_PHASES`` entry (int64, 3)."""
        if "_reads" not in self.__dict__:
            self._reads = np.zeros(len(READ_PHASES), dtype=np.int64)
        return self._reads

    @property
    def device_reads(self) -> np.ndarray:
        """Devices read so far per ``READ_PHASES`` entry: every MVM times the devices of its tile (int64, 3)."""
        return self.reads * self.weight().numel()

    def forward(self, x: Tensor, phase: str = "forward") -> Tensor:
        """``W [x; 1]`` for inputs with bias ``x`` (B, in + 1): one read per row (``phase``: forward or eval)."""
        counter = READ_PHASES.index(phase)
        if self.io is None:
            self.reads[counter] += x.shape[0]
            with one_torch_thread():
                return read(self.weight(), x, self.periphery, self.reader)
        with one_torch_thread():
            y, saturated, reads = io_periphery.forward(self.weight(), x, self.io[0], self._draw)
        self.reads[counter] += reads
        if phase == "forward":
            self.saturated = saturated
        return y

    def backward(self, d: Tensor) -> Tensor:
        """``W[:, :-1]^T d`` for errors ``d`` (B, out): one transposed read per row (with ``io``: the errors of
        the outputs that saturated in the last training forward read are zeroed first)."""
        weight = self.weight()[:, :-1] if self.bias_column else self.weight()
        if self.io is None:
            self.reads[1] += d.shape[0]
            with one_torch_thread():
                return read(weight.T, d, self.periphery, self.reader)
        with one_torch_thread():
            out, reads = io_periphery.backward(weight, d, self.io[1], self._draw, self.saturated)
        self.reads[1] += reads
        return out

    def _draw(self, round_index: int, rows: Tensor | None, n_rows: int, n_out: int) -> Tensor:
        """Output-noise draws of the ``io`` periphery from this layer's ``reader``."""
        return torch.randn((n_rows, n_out), generator=self.reader, dtype=torch.float32)

    def reader_state(self) -> dict:
        return {} if self.reader is None else {"reader": self.reader.get_state()}

    def load_reader_state(self, saved: dict) -> None:
        if self.reader is not None:
            self.reader.set_state(saved["reader"])

    def update(self, x: Tensor, d: Tensor, lr: float, step: int) -> None:
        """Apply one mini-batch: inputs with bias ``x`` (B, in + 1), errors ``d`` (B, out); ``step`` numbers it."""
        raise NotImplementedError

    def state_dict(self) -> dict:
        raise NotImplementedError

    def load_state_dict(self, saved: dict) -> None:
        raise NotImplementedError


class FloatingPointLayer(Layer):
    """Digital float32 weights and plain SGD (the baseline)."""

    name = "fp"

    def __init__(self, weight: Tensor) -> None:
        self._weight = weight.clone().float()

    def weight(self) -> Tensor:
        return self._weight

    def update(self, x: Tensor, d: Tensor, lr: float, step: int) -> None:
        self._weight -= lr * batch_outer(d, x)

    def state_dict(self) -> dict:
        return {"weight": self._weight.clone()}

    def load_state_dict(self, saved: dict) -> None:
        self._weight = saved["weight"].clone()


class PulsedSGDLayer(Layer):
    """Plain analog SGD through pulse trains (``sgd``), or with symmetry-point references (``sps``)."""

    def __init__(self, tile: AnalogTile, settings: UpdateSettings, name: str = "sgd") -> None:
        if settings.pulse_mode not in PULSE_MODES:
            raise ValueError(f"unknown pulse mode {settings.pulse_mode!r}; expected one of {PULSE_MODES}")
        self.tile = tile
        self.settings = settings
        self.name = name
        self.granularity = pulsed.aihwkit_granularity(tile.devices)
        """The ``dw_min`` of ``k = lr max|x| max|d| / dw_min``: aihwkit's weight granularity of the device."""
        self.samples_seen = 0
        """Samples applied so far: sample b of the next update draws its bits and noise with event
        ``samples_seen + b``, so no two samples of a run share a random key (whatever the batch sizes)."""

    def weight(self) -> Tensor:
        return self.tile.weight()

    def update(self, x: Tensor, d: Tensor, lr: float, step: int) -> None:
        s, tile = self.settings, self.tile
        event0 = self.samples_seen
        if s.pulse_mode == "stochastic":
            pulsed.pulsed_update(x, d, lr, self.granularity, s.desired_bl, s.seed, event0, tile.state, tile.params,
                                 tile.count_up, tile.count_down, tile.live_weight(), tile.reference,
                                 s.update_management, s.bl_management)
        else:
            pulsed.apply_deterministic(tile.state, x, d, lr, self.granularity, s.desired_bl, tile.params, s.pulse_mode,
                                       s.seed, event0, tile.count_up, tile.count_down, s.update_management,
                                       s.bl_management)
            tile.invalidate()
        self.samples_seen += x.shape[0]

    def state_dict(self) -> dict:
        return {**self.tile.state_dict(), **self.reader_state(), "samples_seen": self.samples_seen}

    def load_state_dict(self, saved: dict) -> None:
        self.tile.load_state_dict(saved)
        self.load_reader_state(saved)
        self.samples_seen = int(saved["samples_seen"])


class MixedPrecisionLayer(Layer):
    """Mixed-precision SGD: digital accumulator chi, integer pulse transfers after each mini-batch.

    ``mp_transfer = "exact"`` applies the requested ``n = trunc(chi/eps)`` pulses one at a time (capped at
    ``max_pulses`` if set, the excess kept in chi). ``"pulsed"`` is aihwkit's ``MixedPrecisionCompound``: row i
    is one stochastic pulsed update of the requested change ``n_i eps_i`` with one-hot d, update and BL
    management forced on (``pulsed.transfer_pulse_trains``), so device (i, j) receives a
    ``Binomial(BL_i, p_j q_i)`` count with mean ``|n_ij| eps_ij / g`` (g: ``pulsed.aihwkit_granularity``),
    at most ``desired_bl``; chi keeps ``chi - n eps`` whatever was applied, as aihwkit's ``forwardUpdate``
    (src/rpucuda/rpu_mixedprec_device.cpp: ``chi_row[i] = value - dw * granularity_``).
    ``"deterministic_implicit"`` is the same transfer with aihwkit's DETERMINISTIC_IMPLICIT pulse type: device
    (i, j) receives ``rint(BL q_i p_j)`` pulses (``pulsed.implicit_transfer_reference``), ``rint(|n_ij| eps_ij / g)``
    while ``max_j |n_ij| eps_ij / g <= desired_bl``. ``"deterministic_implicit_cuda"`` applies it on the schedule of
    aihwkit's CUDA device (``MixedPrecRPUDeviceCuda::doDirectUpdate``, src/rpucuda/cuda/
    rpucuda_mixedprec_device.cu: the mini-batch's product added to chi in one gemm, then ``doTransfer`` when
    ``current_update_index_ / m_batch > 0``): after every mini-batch but the first, including that mini-batch.
    """

    name = "mp"

    def __init__(self, tile: AnalogTile, settings: UpdateSettings) -> None:
        if settings.mp_transfer not in MP_TRANSFERS:
            raise ValueError(f"unknown mp_transfer {settings.mp_transfer!r}; expected one of {MP_TRANSFERS}")
        self.tile = tile
        self.settings = settings
        self.eps = tile.step_at_zero()
        """Transfer threshold per device (weight units)."""
        if not np.all(self.eps > 0):
            raise ValueError("mixed precision needs a positive mean step at w = 0 on every device")
        self._kernel_eps = pulsed.shared_row(self.eps)
        """``eps`` as the transfer kernels read it (one shared row without device-to-device variation)."""
        self.chi = np.zeros(tile.shape)
        """Digital accumulator (float64)."""
        self.granularity = pulsed.aihwkit_granularity(tile.devices) if settings.mp_transfer != "exact" else 0.0
        """aihwkit's transfers: the device granularity the transfer trains are scaled by (weight units)."""

    def weight(self) -> Tensor:
        return self.tile.weight()

    def transfer(self, step: int, increment: np.ndarray | None = None, scale: float = 0.0,
                 runs: np.ndarray | None = None) -> np.ndarray:
        """``chi += scale * increment`` (every column, or the column ``runs`` of ``active_outer``); request
        ``n = trunc(chi/eps)`` (capped at ``max_pulses`` if set), keep ``chi - n eps`` and apply n exactly or as
        aihwkit's pulsed transfer; returns the requested n. The read-out weight is kept current in place at every
        pulsed device."""
        s, tile = self.settings, self.tile
        if s.mp_transfer != "exact":  # one pass: transfer_counts, then the transfer pulses of every row
            return pulsed.pulsed_transfer(self.chi, self._kernel_eps, s.max_pulses, increment, scale, self.granularity,
                                          s.desired_bl, s.seed, step * tile.shape[0], tile.state, tile.params,
                                          tile.count_up, tile.count_down, tile.live_weight(), tile.reference, runs,
                                          implicit=s.mp_transfer in IMPLICIT_TRANSFERS)
        return self._exact_transfer(step, increment, scale, runs, keep_counts=True)

    def _exact_transfer(self, step: int, increment: np.ndarray | None, scale: float, runs: np.ndarray | None,
                        keep_counts: bool) -> np.ndarray | None:
        """One pass: ``transfer_counts``, then ``apply_pulse_counts`` (noise event ``step``)."""
        s, tile = self.settings, self.tile
        return pulsed.exact_transfer(self.chi, self._kernel_eps, s.max_pulses, increment, scale, s.seed, step,
                                     tile.state, tile.params, tile.count_up, tile.count_down, tile.live_weight(),
                                     tile.reference, runs, keep_counts)

    def update(self, x: Tensor, d: Tensor, lr: float, step: int) -> None:
        """``chi -= lr sum_b d_b x_b^T`` (the per-sample accumulation as one product, on the active columns of x:
        ``active_outer``), then transfer.

        ``pulsed`` and ``deterministic_implicit`` also keep aihwkit's schedule: ``doTransfer``
        (src/rpucuda/rpu_mixedprec_device_base.cpp) tests ``current_update_index_ % m_batch == 0`` before the sample
        counter advances, so a transfer follows the first sample of every mini-batch but the first: the analog
        weights lag one mini-batch. ``deterministic_implicit_cuda`` transfers after every mini-batch but the first.
        """
        self.digital_macs += x.shape[0] * self.chi.size
        transfer = self.settings.mp_transfer
        if transfer == "exact":
            product, runs = active_outer(d, x)
            self._exact_transfer(step, product, -lr, runs, keep_counts=False)
            return
        if step == 0:
            product, runs = active_outer(d, x)
            pulsed.accumulate(self.chi, product, lr, runs)
            return
        if transfer == "deterministic_implicit_cuda":
            product, runs = active_outer(d, x)
            self.transfer(step, product, -lr, runs)
            return
        # transfer(step, d[:1].T @ x[:1], -lr), then accumulate the other samples, in one pass over chi
        s, tile = self.settings, self.tile
        rest, runs = active_outer(d[1:], x[1:])
        pulsed.pulsed_transfer_and_accumulate(
            self.chi, self._kernel_eps, s.max_pulses, x[0].numpy(), d[0].numpy(), rest, lr, self.granularity,
            s.desired_bl, s.seed, step * tile.shape[0], tile.state, tile.params, tile.count_up, tile.count_down,
            tile.live_weight(), tile.reference, runs, implicit=transfer in IMPLICIT_TRANSFERS)

    def state_dict(self) -> dict:
        return {**self.tile.state_dict(), **self.reader_state(), "chi": self.chi.copy(),
                "digital_macs": self.digital_macs}

    def load_state_dict(self, saved: dict) -> None:
        self.tile.load_state_dict(saved)
        self.load_reader_state(saved)
        self.chi[...] = saved["chi"]
        self.digital_macs = int(saved["digital_macs"])


class TileGroup:
    """The tiles of a MappedLayer seen as one array (their columns side by side) for counters and histograms."""

    def __init__(self, tiles: list[AnalogTile]) -> None:
        self.tiles = tiles

    def _joined(self, name: str) -> np.ndarray:
        return np.concatenate([getattr(tile, name) for tile in self.tiles], axis=1)

    @property
    def state(self) -> np.ndarray:
        return self._joined("state")

    @property
    def count_up(self) -> np.ndarray:
        return self._joined("count_up")

    @property
    def count_down(self) -> np.ndarray:
        return self._joined("count_down")

    def symmetry_points(self) -> np.ndarray:
        return np.concatenate([tile.symmetry_points() for tile in self.tiles], axis=1)


class MappedLayer(Layer):
    """An analog layer mapped as aihwkit maps it (``MappingParameters`` with digital bias): column blocks of the
    inputs on separate tiles (``parts``, analog layers without a bias column), each read with its own periphery
    and updated with its own rule; ``y = sum_k W_k x_k + b`` with the digital float32 bias ``b``, which plain SGD
    updates (``b -= lr sum_b d_b``); the input error is the tiles' errors side by side. It takes the inputs
    without a bias column (``bias_input`` False)."""

    bias_input = False

    def __init__(self, parts: list[Layer], sizes: list[int], bias: Tensor) -> None:
        self.parts = parts
        starts = np.cumsum([0, *sizes])
        self.columns = [(int(a), int(b)) for a, b in zip(starts[:-1], starts[1:])]
        """Input columns [start, stop) of every tile."""
        self.bias = bias.clone().float()
        """Digital bias (out,)."""
        self.name = parts[0].name
        self.tile = TileGroup([part.tile for part in parts])
        self._split: tuple[Tensor, list[Tensor]] | None = None
        """The last batch ``split`` saw and its tiles' columns (kept from the forward pass to the update)."""

    @property
    def digital_macs(self) -> int:  # type: ignore[override]
        return sum(part.digital_macs for part in self.parts)

    @property
    def reads(self) -> np.ndarray:
        return sum(part.reads for part in self.parts)

    @property
    def device_reads(self) -> np.ndarray:
        return sum(part.device_reads for part in self.parts)

    def weight(self) -> Tensor:
        """The tiles' effective weights side by side and the digital bias as the last column (out, in + 1)."""
        return torch.cat([part.weight() for part in self.parts] + [self.bias[:, None]], dim=1)

    def split(self, x: Tensor) -> list[Tensor]:
        """Every tile's input columns of ``x``, contiguous; the forward pass's split again when ``update`` gets
        the same batch."""
        if self._split is not None and self._split[0] is x:
            return self._split[1]
        parts = [x[:, start:stop].contiguous() for start, stop in self.columns]
        self._split = (x, parts)
        return parts

    def forward(self, x: Tensor, phase: str = "forward") -> Tensor:
        y = None
        for part, part_x in zip(self.parts, self.split(x)):
            partial = part.forward(part_x, phase)
            y = partial if y is None else y.add_(partial)
        return y + self.bias

    def backward(self, d: Tensor) -> Tensor:
        if len(self.parts) == 1:
            return self.parts[0].backward(d)
        return torch.cat([part.backward(d) for part in self.parts], dim=1)

    def update(self, x: Tensor, d: Tensor, lr: float, step: int) -> None:
        for part, part_x in zip(self.parts, self.split(x)):
            part.update(part_x, d, lr, step)
        self._split = None
        self.bias -= lr * d.sum(dim=0)

    def state_dict(self) -> dict:
        return {"parts": [part.state_dict() for part in self.parts], "bias": self.bias.clone()}

    def load_state_dict(self, saved: dict) -> None:
        for part, part_state in zip(self.parts, saved["parts"]):
            part.load_state_dict(part_state)
        self.bias = saved["bias"].clone()


def make_layer(algorithm: str, weight: Tensor, devices: DeviceArray | None, settings: UpdateSettings,
               periphery: Periphery | None = None, io: tuple[IOParameters, IOParameters] | None = None,
               mapping: MappingParameters | None = None, fast_devices: DeviceArray | None = None) -> Layer:
    """A layer of ``algorithm`` with initial effective ``weight`` (out, in + 1) on ``devices`` of that shape
    (with a digital-bias ``mapping``: of shape (out, in), the bias being digital); the transfer rules put their
    fast tile on ``fast_devices`` (default: ``devices``).

    Analog layers read through ``periphery`` or ``io`` if given (noise seeded from ``settings.seed``); fp reads
    exactly and ignores the mapping. A digital-bias ``mapping`` makes a ``MappedLayer`` whose tile k has the
    update seed ``64 settings.seed + k``.
    """
    if mapping is not None and mapping.digital_bias and algorithm != "fp":
        inputs = weight[:, :-1]
        sizes = mapping.split_sizes(inputs.shape[1])
        if len(sizes) > 64:
            raise ValueError(f"a layer of {inputs.shape[1]} inputs needs {len(sizes)} tiles (at most 64)")
        parts, start = [], 0
        for index, size in enumerate(sizes):
            stop = start + size
            columns = (lambda v, a=start, b=stop: v[:, a:b] if v.dim() == 2 and v.shape[1] == inputs.shape[1] else v)
            part_devices = None if devices is None else devices.map(columns)
            part_fast = None if fast_devices is None else fast_devices.map(columns)
            part_settings = replace(settings, seed=settings.seed * 64 + index)
            part = make_layer(algorithm, inputs[:, start:stop], part_devices, part_settings, periphery, io,
                              fast_devices=part_fast)
            part.bias_column = False
            parts.append(part)
            start = stop
        return MappedLayer(parts, sizes, weight[:, -1])
    layer = _make_layer(algorithm, weight, devices, settings, fast_devices)
    if layer.tile is not None and (periphery is not None or io is not None):
        layer.periphery = periphery
        layer.io = io
        layer.reader = torch.Generator().manual_seed(1_000_003 + settings.seed)
    return layer


def _make_layer(algorithm: str, weight: Tensor, devices: DeviceArray | None, settings: UpdateSettings,
                fast_devices: DeviceArray | None = None) -> Layer:
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algorithm!r}; expected one of {ALGORITHMS}")
    if algorithm == "fp":
        return FloatingPointLayer(weight)
    if devices is None:
        raise ValueError(f"algorithm {algorithm!r} needs devices")
    if algorithm == "mp":
        return MixedPrecisionLayer(AnalogTile(devices, weight), settings)
    if algorithm == "sgd":
        return PulsedSGDLayer(AnalogTile(devices, weight), settings, name=algorithm)
    if algorithm in ("ttv2", "cttv2", "agad"):
        from .transfer import make_transfer_layer

        return make_transfer_layer(algorithm, weight, devices, fast_devices, settings)
    if settings.sps_init not in SPS_INITS:
        raise ValueError(f"unknown sps_init {settings.sps_init!r}; expected one of {SPS_INITS}")
    from ..symmetry import reference_point

    reference = reference_point(devices.map(lambda v: v.to(torch.float64)), settings.sps_reference)
    tile = AnalogTile(devices, weight, reference)
    if settings.sps_init == "device_zero":
        tile.program(weight.to(torch.float64).numpy())
    return PulsedSGDLayer(tile, settings, name=algorithm)

"""Transfer rules for asymmetric devices: Tiki-Taka v2 (``ttv2``), chopped TTv2 (``cttv2``) and AGAD (``agad``),
with aihwkit's semantics (``ChoppedTransferCompound`` and ``DynamicTransferCompound`` in an ``UnitCellRPUConfig``
as ``aihwkit.simulator.configs.build_config`` builds them; C++ ``TransferRPUDevice``, ``ChoppedTransferRPUDevice``
and ``DynamicTransferRPUDevice``, src/rpucuda/rpu_{transfer,chopped_transfer,dynamic_transfer}_device.cpp, CPU).

Every analog layer holds two tiles of the measured device: the fast tile A (starts at w = 0) and the slow tile C
(starts at the initial weights). The network reads the effective weight ``W = gamma s * A + C`` with the chopper
signs ``s_ij = c_out_i c_in_j`` (aihwkit's ``gamma_vec = [gamma, 1]``; gamma = 0, the presets', reads C alone).
Per sample b of a mini-batch of B (aihwkit's CPU tile updates vector by vector):

1. (auto_scale) ``m_x <- (1 - tau) m_x + tau max|x_b|``, the same for d, ``tau = (1 - auto_momentum) / B``;
2. the pulse-count learning rate ``eta_A = fast_lr`` (``scale_fast_lr``: times the SGD lr; ``fast_lr <= 0``: the
   SGD lr); with auto_scale ``eta_A = fast_lr desired_bl g_A / (m_x m_d)``;
3. A receives the stochastic pulse trains of ``dA = -eta_A (c_out d_b)(c_in x_b)^T`` (``pulsed.pulsed_update``,
   the machinery of ``sgd``, with the compound's granularity ``(g_A + g_C) / 2``, ``desired_bl``, update and BL
   management);
4. every ``transfer_every`` samples column i of A (in turn, i = 0, 1, ..., wrapping) is read with the one-hot
   input e_i through the forward periphery with noise and bound management off (aihwkit's ``transfer_forward``
   always has both off): ``v = A e_i`` (+ output noise and ADC of ``forward_io``, ``transfer_kernel.ReadConstants``);
5. the digital buffer H (dimensionless pulse counts): ``H_:i += s_:i lr_scale v`` with ``lr_scale = transfer_lr
   lr / (buffer_granularity g_A)`` (``correct_gradient_magnitudes``: divided by ``eta_A g_C / g_A`` too);
   where ``|H_ji| >= 1``: ``n_j = clip(trunc(H_ji), +-transfer_desired_bl)`` and ``H_ji <- momentum H_ji``
   (``forget_buffer``) or ``H_ji - (1 - momentum) n_j``;
6. C receives the pulsed update of ``dC = step g_C n e_i^T`` (``pulsed.pulsed_update`` with x = e_i, d = -n,
   lr = step g_C, ``transfer_desired_bl`` slots, management per ``transfer_update_management``: one pulse of sign
   n_j per device with the presets);
7. the choppers: after the read of column i, ``c_in_i`` flips with probability ``in_chop_prob``
   (``in_chop_random``) or every ``max(ceil(1 / in_chop_prob), 2)`` sweeps of all columns (regular); after the
   read of the last column every ``c_out_j`` flips with probability ``out_chop_prob``.

AGAD (``DynamicTransferParameters``) replaces step 5 with the dynamic reference: a running mean ``M`` of every
read (``M <- (1 - mu) M + mu v``, ``mu = min(tail_weightening / n_chop, 1)``, ``n_chop = max(ceil(1 /
in_chop_prob), 2)``) and the past mean ``P``, set to M at the first read after column i's chopper switched;
``H_:i += s_:i lr_scale (v - P_:i)``; C is written only after ``n_chop`` full sweeps; the choppers switch
regularly every ``n_chop`` sweeps (and with probability ``in_chop_prob`` when ``in_chop_random``); no output
chopper. M and P are digital (aihwkit keeps them in floating point), so AGAD's reference costs no device write.

Counters (the energy ledger's inputs): both tiles' pulses in the layer's ``tile`` (``TileGroup([C, A])``: C's
columns, then A's), so ``pulses`` holds every A update and C transfer; every transfer read is one forward MVM of
``out`` devices (``reads``, ``device_reads``; the effective-weight MVMs read C's devices, and A's too when gamma
is not 0); the buffer arithmetic in ``digital_macs`` (per transfer ``out`` for H, ``3 out`` for AGAD's H, M).

A's trains use ``TrainConfig.desired_bl`` (default 31, the paper's); aihwkit's ``build_config`` sets the update's
``desired_bl`` to 5 for all three rules (``BUILD_CONFIG_DESIRED_BL``, what the transfer sweeps run; with auto_scale
it sets the pulses per sample).

Random draws are counter-based (``pulsed._mix``): A's trains and noise use the sample counter as event (as
``sgd``), C's writes the transfer counter plus ``WRITE_EVENT0``, the chopper flips ``chop_uniforms`` (event
``CHOP_EVENT0`` plus the transfer counter), the read noise ``c2c_normal`` (``READ_EVENT0`` plus it; the layer's
``reader`` serves the network's forward and backward reads only). A mini-batch is one call of the fused kernel
``transfer_kernel.transfer_batch``; tests/test_transfer.py checks it against a naive loop on the same keys.
Not modelled: ``units_in_mbatch`` (transfer_every counts samples), more than two devices, ``n_reads_per_transfer``
other than 1, row transfers, random column selection, reset, AGAD's experimental feedback and accumulation options
(all off in the presets).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..devices import DeviceArray
from ..provenance import compact_repr
from . import pulsed
from . import transfer_kernel as kernel
from .algorithms import Layer, TileGroup, UpdateSettings
from .pulse_primitives import pulse_target
from .tile import AnalogTile
from .transfer_kernel import CHOP_EVENT0, READ_EVENT0, WRITE_EVENT0

TRANSFER_ALGORITHMS: tuple[str, ...] = ("ttv2", "cttv2", "agad")
"""The transfer rules by name: Tiki-Taka v2, chopped TTv2, AGAD."""

BUILD_CONFIG_DESIRED_BL = 5
"""The ``desired_bl`` of A's trains that aihwkit's ``build_config`` sets for all three rules (``TrainConfig.desired_bl``;
the transfer sweeps set it)."""



@dataclass
class ChoppedTransferParameters:
    """aihwkit's ``ChoppedTransferCompound`` (two devices: fast A, slow C): its names and class defaults
    (``transfer_update`` flattened into ``transfer_desired_bl`` and ``transfer_update_management``).
    ``ttv2()`` and ``cttv2()`` are ``build_config``'s presets."""

    fast_lr: float = 1.0
    """Learning rate of A's pulsed update (``eta_A``); <= 0: the SGD learning rate."""
    scale_fast_lr: bool = False
    """Multiply ``fast_lr`` by the SGD learning rate (schedule included)."""
    transfer_lr: float = 1.0
    """Learning rate of the buffer accumulation ``H += transfer_lr lr v / (buffer_granularity g_A)``."""
    scale_transfer_lr: bool = True
    """Multiply ``transfer_lr`` by the SGD learning rate (schedule included)."""
    transfer_every: float = 1.0
    """Read one column of A every this many samples (aihwkit's mat-vecs, ``units_in_mbatch=False``; rounded)."""
    gamma: float = 0.0
    """Weight of A in the effective weight ``W = gamma s * A + C`` (aihwkit ``gamma_vec = [gamma, 1]``)."""
    in_chop_prob: float = 0.1
    """Switching probability (random) or frequency (regular) of the input choppers; 0: no chopper (TTv2)."""
    in_chop_random: bool = True
    """Switch the input choppers at random (else regularly, every ``max(ceil(1/in_chop_prob), 2)`` sweeps)."""
    out_chop_prob: float = 0.0
    """Switching probability of every output chopper after each full sweep of A's columns."""
    buffer_granularity: float = 1.0
    """Buffer threshold in units of A's granularity g_A (BufferedTransferCompound's ``thres_scale``)."""
    auto_granularity: float = 0.0
    """If > 0, the threshold is also scaled by ``auto_granularity / (n_in transfer_every)``."""
    step: float = 1.0
    """Weight change of one transfer pulse in units of C's granularity (the transfer's lr is ``step g_C``)."""
    momentum: float = 0.0
    """Fraction of a crossing buffer that stays after the transfer."""
    forget_buffer: bool = True
    """After a transfer set ``H <- momentum H`` (else ``H <- H - (1 - momentum) n``)."""
    no_buffer: bool = False
    """Start every accumulation from an empty buffer (Tiki-Taka v1 with gamma = 0)."""
    auto_scale: bool = False
    """Scale A's learning rate by the running maxima of |x| and |d| (``eta_A = fast_lr desired_bl g_A / (m_x m_d)``)."""
    auto_momentum: float = 0.99
    """Momentum of those running maxima (``tau = (1 - auto_momentum) / batch``)."""
    correct_gradient_magnitudes: bool = False
    """Divide the buffer increment by ``eta_A g_C / g_A`` (gradient magnitudes independent of ``fast_lr``)."""
    transfer_desired_bl: int = 1
    """``transfer_update.desired_bl``: longest transfer train, and the cap on |n| per transfer."""
    transfer_update_management: bool = False
    """``transfer_update.update_management`` and ``update_bl_management`` of the transfer writes."""

    __repr__ = compact_repr

    @classmethod
    def ttv2(cls) -> "ChoppedTransferParameters":
        """``build_config("ttv2")``: no chopper, fast_lr 1, no auto-scale."""
        return cls(in_chop_prob=0.0)

    @classmethod
    def cttv2(cls) -> "ChoppedTransferParameters":
        """``build_config("c-ttv2")``: random input chopper 0.1, fast_lr 0.1, auto-scale."""
        return cls(fast_lr=0.1, auto_scale=True)

    def problems(self, name: str) -> list[str]:
        """One line per invalid setting (prefixed with ``name``); empty when valid."""
        lines = []
        for key, value in dataclasses.asdict(self).items():
            if not isinstance(value, (bool, int, float)) or not math.isfinite(value):
                lines.append(f"{name}.{key} must be a finite number, got {value!r}")
        if lines:
            return lines
        checks = [
            ("transfer_lr", self.transfer_lr > 0, "> 0"),
            ("transfer_every", round(self.transfer_every) >= 1, ">= 1 sample (after rounding)"),
            ("gamma", self.gamma >= 0, ">= 0"),
            ("in_chop_prob", 0 <= self.in_chop_prob <= 1, "in [0, 1]"),
            ("out_chop_prob", 0 <= self.out_chop_prob <= 1, "in [0, 1]"),
            ("buffer_granularity", self.buffer_granularity > 0, "> 0"),
            ("auto_granularity", self.auto_granularity >= 0, ">= 0"),
            ("step", self.step > 0, "> 0"),
            ("momentum", 0 <= self.momentum <= 1, "in [0, 1]"),
            ("auto_momentum", 0 < self.auto_momentum < 1, "in (0, 1)"),
            ("transfer_desired_bl", 1 <= self.transfer_desired_bl <= pulsed.MAX_BL, f"in 1..{pulsed.MAX_BL}"),
        ]
        return [f"{name}.{key} must be {what}, got {getattr(self, key)!r}" for key, ok, what in checks if not ok]


@dataclass
class DynamicTransferParameters(ChoppedTransferParameters):
    """aihwkit's ``DynamicTransferCompound`` (AGAD): ``ChoppedTransferCompound`` with the dynamic reference;
    its names and class defaults. ``agad()`` is ``build_config``'s preset."""

    in_chop_random: bool = False
    """Also switch a chopper with probability ``in_chop_prob`` after each read (the regular switch stays)."""
    tail_weightening: float = 5.0
    """Running-mean momentum ``mu = min(tail_weightening / n_chop, 1)``: > 1 weights the tail of a chopper period."""
    buffer_cap: float = 0.0
    """Without ``forget_buffer``: clip H to ``+-buffer_cap transfer_desired_bl`` after a transfer (0: no cap)."""

    __repr__ = compact_repr

    @classmethod
    def agad(cls) -> "DynamicTransferParameters":
        """``build_config("agad")``: regular chopper 0.1, fast_lr 0.1, auto-scale, managed transfer writes."""
        return cls(fast_lr=0.1, auto_scale=True, transfer_update_management=True)

    def problems(self, name: str) -> list[str]:
        lines = super().problems(name)
        if not lines and not self.in_chop_prob > 0:
            lines.append(f"{name}.in_chop_prob must be > 0 for agad (its reference follows the chopper), "
                         f"got {self.in_chop_prob!r}")
        if not lines and not self.tail_weightening > 0:
            lines.append(f"{name}.tail_weightening must be > 0, got {self.tail_weightening!r}")
        if not lines and not self.buffer_cap >= 0:
            lines.append(f"{name}.buffer_cap must be >= 0, got {self.buffer_cap!r}")
        return lines


PRESETS = {"ttv2": ChoppedTransferParameters.ttv2, "cttv2": ChoppedTransferParameters.cttv2,
           "agad": DynamicTransferParameters.agad}
"""Each transfer rule's preset (aihwkit's ``build_config``)."""


def preset(algorithm: str) -> ChoppedTransferParameters:
    """The parameters ``build_config`` gives ``algorithm``."""
    if algorithm not in PRESETS:
        raise ValueError(f"transfer parameters apply to {TRANSFER_ALGORITHMS} only, not to algorithm {algorithm!r}")
    return PRESETS[algorithm]()


def coerce(value: Any, algorithm: str) -> ChoppedTransferParameters | None:
    """``TrainConfig.transfer`` as parameters: None stays None (the algorithm's preset); a preset name; a dict of
    fields applied on top of the algorithm's preset; an instance as it is."""
    if value is None or isinstance(value, ChoppedTransferParameters):
        return value
    if isinstance(value, str):
        if value not in PRESETS:
            raise ValueError(f"unknown transfer preset {value!r}; expected one of {sorted(PRESETS)}")
        return PRESETS[value]()
    if isinstance(value, dict):
        base = preset(algorithm)
        known = {f.name for f in dataclasses.fields(base)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"transfer has unknown field(s) {unknown} for {algorithm}; expected some of "
                             f"{sorted(known)}")
        return dataclasses.replace(base, **value)
    raise ValueError(f"transfer must be transfer parameters, a preset name or a table of fields, got {value!r}")


def check(algorithm: str, params: ChoppedTransferParameters | None) -> None:
    """One clear error for parameters that do not fit ``algorithm`` or are invalid."""
    if params is None:
        return
    if algorithm not in TRANSFER_ALGORITHMS:
        raise ValueError(f"transfer parameters apply to {TRANSFER_ALGORITHMS} only, not to algorithm {algorithm!r}")
    dynamic = isinstance(params, DynamicTransferParameters)
    if dynamic != (algorithm == "agad"):
        expected = "DynamicTransferParameters" if algorithm == "agad" else "ChoppedTransferParameters"
        raise ValueError(f"algorithm {algorithm!r} needs {expected}, got {type(params).__name__}")
    problems = params.problems("transfer")
    if problems:
        raise ValueError(problems[0])


def chop_uniforms(seed: int, event: int, count: int) -> np.ndarray:
    """``count`` uniform draws in [0, 1) keyed by ``(seed, event, index)`` (splitmix64, as ``pulsed.c2c_normal``)."""
    golden = np.uint64(0x9E3779B97F4A7C15)

    def mix(z: np.ndarray) -> np.ndarray:
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))

    with np.errstate(over="ignore"):
        key = mix(mix(np.array([seed], dtype=np.uint64) + golden) ^ (np.array([event], dtype=np.uint64) + golden))
        h = mix(key ^ (np.arange(count, dtype=np.uint64) + golden))
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)


def chop_period(in_chop_prob: float) -> int:
    """Sweeps per regular chopper period: ``max(ceil(1 / in_chop_prob), 2)`` (aihwkit ``getNumInChopSamples``)."""
    return max(math.ceil(1.0 / in_chop_prob), 2) if in_chop_prob > 0 else 2


class TransferLayer(Layer):
    """A layer of two tiles, fast A and slow C, trained by a transfer rule (module docstring); every mini-batch is
    one call of ``transfer_kernel.transfer_batch``."""

    def __init__(self, slow: AnalogTile, fast: AnalogTile, settings: UpdateSettings,
                 params: ChoppedTransferParameters, name: str) -> None:
        if settings.pulse_mode != "stochastic":
            raise ValueError(f"{name} updates A with stochastic pulse trains; pulse mode {settings.pulse_mode!r} "
                             "does not apply")
        check(name, params)
        self.slow, self.fast = slow, fast
        self.tile = TileGroup([slow, fast])
        self.settings, self.params, self.name = settings, params, name
        self.dynamic = isinstance(params, DynamicTransferParameters)
        self.fast_granularity = pulsed.aihwkit_granularity(fast.devices)
        self.slow_granularity = pulsed.aihwkit_granularity(slow.devices)
        self.update_granularity = 0.5 * (self.fast_granularity + self.slow_granularity)
        """The ``dw_min`` of A's trains: the compound's granularity, the mean of its two devices' (aihwkit)."""
        n_out, n_in = slow.shape
        self.state = kernel.TransferState(
            buffer=np.zeros((n_out, n_in)), in_chopper=np.zeros(n_in, dtype=bool),
            out_chopper=np.zeros(n_out, dtype=bool), running_mean=np.zeros((n_out, n_in)),
            past_mean=np.zeros((n_out, n_in)), switched=np.zeros(n_in, dtype=bool),
            counters=np.zeros(5, dtype=np.int64), scales=np.zeros(3))
        """Buffer, choppers, AGAD's means, counters and running scales, updated in place by the kernel."""
        self._weight: Tensor | None = None

    # the kernel's state by name
    buffer = property(lambda self: self.state.buffer, doc="The digital transfer buffer H (pulse counts).")
    in_chopper = property(lambda self: self.state.in_chopper, doc="Input chopper flags (True: sign -1).")
    out_chopper = property(lambda self: self.state.out_chopper, doc="Output chopper flags (True: sign -1).")
    running_mean = property(lambda self: self.state.running_mean, doc="AGAD: running mean M of the reads of A.")
    past_mean = property(lambda self: self.state.past_mean, doc="AGAD: reference P (M at the last chopper switch).")
    samples_seen = property(lambda self: int(self.state.counters[kernel.SAMPLES]),
                            doc="Samples applied to A (aihwkit ``current_update_idx_``; A's random events).")
    transfers = property(lambda self: int(self.state.counters[kernel.TRANSFERS]),
                         doc="Transfer events so far (C's write events, chopper and read-noise draws).")
    sweeps = property(lambda self: int(self.state.counters[kernel.SWEEPS]),
                      doc="Full sweeps over A's columns (aihwkit ``transfer_counter_``).")
    transfer_reads = property(lambda self: int(self.state.counters[kernel.TRANSFER_READS]),
                              doc="Column reads of A so far (also counted in ``reads``, forward phase).")
    digital_macs = property(lambda self: int(self.state.counters[kernel.DIGITAL_MACS]),  # type: ignore[assignment]
                            doc="Buffer arithmetic so far (per transfer ``out``; AGAD ``3 out``).")
    count_lr = property(lambda self: float(self.state.scales[kernel.COUNT_LR]),
                        doc="A's pulse-count learning rate of the last sample.")

    # ----------------------------------------------------------------------------------------- reads
    def signs(self) -> np.ndarray:
        """Chopper signs ``s_ij = c_out_i c_in_j`` (float32, (out, in))."""
        return np.where(self.out_chopper[:, None] != self.in_chopper[None, :], -1.0, 1.0).astype(np.float32)

    def weight(self) -> Tensor:
        """``gamma s * A + C`` (float32); C's own weight when gamma = 0."""
        if self.params.gamma == 0:
            return self.slow.weight()
        if self._weight is None:
            fast = torch.from_numpy(self.signs()) * self.fast.weight()
            self._weight = self.slow.weight() + np.float32(self.params.gamma) * fast
        return self._weight

    @property
    def device_reads(self) -> np.ndarray:
        """Devices read: every effective-weight MVM reads C (and A when gamma is not 0), every transfer read one
        column of A (``out`` devices)."""
        per_mvm = self.slow.state.size * (2 if self.params.gamma != 0 else 1)
        transfer = np.array([self.transfer_reads, 0, 0], dtype=np.int64)
        return (self.reads - transfer) * per_mvm + transfer * self.slow.shape[0]

    def read_constants(self) -> kernel.ReadConstants:
        """The column read of A through this layer's forward periphery, noise and bound management off: the
        one-hot input after the DAC (in float32, as the periphery computes it), the output noise, ADC step and
        bound, the output scale."""
        if self.io is not None:
            io = self.io[0]
            if io.is_perfect:
                return kernel.ReadConstants(1.0, 0.0, 0.0, 0.0, float(io.out_scale))
            return kernel.ReadConstants(_dac_one(io.input_step, io.inp_bound), float(io.out_noise),
                                        float(io.output_step), float(io.out_bound), float(io.out_scale))
        if self.periphery is not None:
            simple = self.periphery
            return kernel.ReadConstants(_dac_one(2.0 / (2**simple.inp_bits - 2), 1.0), float(simple.out_noise),
                                        2.0 * simple.out_bound / (2**simple.out_bits - 2), float(simple.out_bound),
                                        1.0)
        return kernel.ReadConstants(1.0, 0.0, 0.0, 0.0, 1.0)

    def constants(self) -> kernel.TransferConstants:
        """What the kernel reads of this layer (parameters, granularities, the read)."""
        p = self.params
        dynamic = self.dynamic
        return kernel.TransferConstants(
            dynamic=dynamic, every=int(round(p.transfer_every)), transfer_every=float(p.transfer_every),
            fast_lr=float(p.fast_lr), scale_fast_lr=bool(p.scale_fast_lr), auto_scale=bool(p.auto_scale),
            auto_momentum=float(p.auto_momentum), desired_bl=int(self.settings.desired_bl),
            fast_granularity=float(self.fast_granularity), slow_granularity=float(self.slow_granularity),
            transfer_lr=float(p.transfer_lr), scale_transfer_lr=bool(p.scale_transfer_lr),
            auto_granularity=float(p.auto_granularity), buffer_granularity=float(p.buffer_granularity),
            correct_gradient_magnitudes=bool(p.correct_gradient_magnitudes), no_buffer=bool(p.no_buffer),
            forget_buffer=bool(p.forget_buffer), momentum=float(p.momentum),
            cap=float(p.buffer_cap * p.transfer_desired_bl) if dynamic else 0.0,
            transfer_desired_bl=int(p.transfer_desired_bl), in_chop_prob=float(p.in_chop_prob),
            in_chop_random=bool(p.in_chop_random), out_chop_prob=float(p.out_chop_prob),
            period=chop_period(p.in_chop_prob),
            mean_momentum=min(p.tail_weightening / chop_period(p.in_chop_prob), 1.0) if dynamic else 0.0,
            seed=int(self.settings.seed), read=self.read_constants())

    # ---------------------------------------------------------------------------------------- update
    def lr_scale(self, lr: float) -> float:
        """Buffer increment per weight unit read (aihwkit ``getTransferLRScale``) at the last sample's ``eta_A``."""
        return kernel.lr_scale(self.constants(), lr, self.count_lr, self.slow.shape[1])

    def update(self, x: Tensor, d: Tensor, lr: float, step: int) -> None:
        """A's pulsed update sample by sample, a transfer after every ``transfer_every``-th sample: one kernel call."""
        s, p, fast, slow = self.settings, self.params, self.fast, self.slow
        dtype = torch.promote_types(x.dtype, d.dtype)
        x_np, d_np = pulsed._contiguous_array(x, dtype), pulsed._contiguous_array(d, dtype)
        fast_update = kernel.update_constants(x_np.dtype, 0.0, self.update_granularity, s.desired_bl,
                                              s.update_management, s.bl_management)
        slow_update = kernel.update_constants(x_np.dtype, p.step * self.slow_granularity, self.slow_granularity,
                                              p.transfer_desired_bl, p.transfer_update_management,
                                              p.transfer_update_management)
        transfer_reads = self.transfer_reads
        kernel.transfer_batch(
            x_np, d_np, float(lr), self.constants(), fast_update, slow_update,
            pulse_target(fast.state, fast.count_up, fast.count_down, fast.live_weight(), fast.reference), fast.params,
            pulse_target(slow.state, slow.count_up, slow.count_down, slow.live_weight(), slow.reference), slow.params,
            self.state)
        self.reads[0] += self.transfer_reads - transfer_reads  # every transfer read is one forward MVM
        self._weight = None

    # ----------------------------------------------------------------------------------------- state
    _ARRAYS = ("buffer", "in_chopper", "out_chopper", "running_mean", "past_mean", "switched", "counters", "scales")

    def state_dict(self) -> dict:
        state = {f"slow_{k}": v for k, v in self.slow.state_dict().items()}
        state.update({f"fast_{k}": v for k, v in self.fast.state_dict().items()})
        state.update({name: getattr(self.state, name).copy() for name in self._ARRAYS})
        return {**state, **self.reader_state()}

    def load_state_dict(self, saved: dict) -> None:
        for prefix, tile in (("slow_", self.slow), ("fast_", self.fast)):
            tile.load_state_dict({k[len(prefix):]: v for k, v in saved.items() if k.startswith(prefix)})
        for name in self._ARRAYS:
            getattr(self.state, name)[...] = saved[name]
        self.load_reader_state(saved)
        self._weight = None


def _dac_one(step: float, bound: float) -> float:
    """The input 1 after a DAC of ``step`` and ``bound`` in float32 (``periphery._quantise``): ``clip(rint(1 / step)
    step, -bound, bound)``; no rounding for step 0, no clip for bound <= 0."""
    value = np.float32(1.0)
    if step > 0:
        value = np.float32(np.rint(value / np.float32(step)) * np.float32(step))
    return float(np.clip(value, -bound, bound)) if bound > 0 else float(value)


def make_transfer_layer(algorithm: str, weight: Tensor, devices: DeviceArray, fast_devices: DeviceArray | None,
                        settings: UpdateSettings) -> TransferLayer:
    """A transfer layer: C programmed to ``weight`` (aihwkit ``onSetWeights``: C = W / gamma_C, gamma_C = 1),
    A to 0, on ``devices`` and ``fast_devices`` (default: the same devices)."""
    params = settings.transfer if settings.transfer is not None else preset(algorithm)
    slow = AnalogTile(devices, weight)
    fast = AnalogTile(fast_devices if fast_devices is not None else devices, torch.zeros_like(weight))
    return TransferLayer(slow, fast, settings, params, algorithm)


__all__ = ["TRANSFER_ALGORITHMS", "BUILD_CONFIG_DESIRED_BL", "ChoppedTransferParameters", "DynamicTransferParameters", "PRESETS", "preset",
           "coerce", "check", "chop_uniforms", "WRITE_EVENT0", "CHOP_EVENT0", "READ_EVENT0", "chop_period", "TransferLayer", "make_transfer_layer"]

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
   always has both off): ``v = A e_i`` (+ output noise and ADC of ``forward_io``);
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
``desired_bl`` to 5 for all three rules: ``desired_bl=5`` mirrors it (with auto_scale it sets the pulses per sample).

Random draws are counter-based (``pulsed._mix``): A's trains and noise use the sample counter as event (as
``sgd``), C's writes the transfer counter plus ``WRITE_EVENT0``, the chopper flips ``chop_uniforms``.
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
from . import periphery as io_periphery
from . import pulsed
from .algorithms import Layer, TileGroup, UpdateSettings
from .tile import AnalogTile, read

TRANSFER_ALGORITHMS: tuple[str, ...] = ("ttv2", "cttv2", "agad")
"""The transfer rules by name: Tiki-Taka v2, chopped TTv2, AGAD."""

WRITE_EVENT0 = 1 << 40
"""Event id of C's first transfer write (A's events are sample numbers, far below)."""

CHOP_EVENT0 = 1 << 41
"""Event id of the chopper draws of the first transfer."""


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
    """A layer of two tiles, fast A and slow C, trained by a transfer rule (module docstring)."""

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
        self.every = int(round(params.transfer_every))
        n_out, n_in = slow.shape
        self.buffer = np.zeros((n_out, n_in))
        """The digital transfer buffer H (pulse counts)."""
        self.in_chopper = np.zeros(n_in, dtype=bool)
        """Input chopper flags (True: sign -1)."""
        self.out_chopper = np.zeros(n_out, dtype=bool)
        """Output chopper flags (True: sign -1)."""
        self.running_mean = np.zeros((n_out, n_in))
        """AGAD: running mean M of the reads of A."""
        self.past_mean = np.zeros((n_out, n_in))
        """AGAD: reference P (M at the last chopper switch)."""
        self.switched = np.zeros(n_in, dtype=bool)
        """AGAD: column whose chopper switched after its last read."""
        self.samples_seen = 0
        """Samples applied to A (aihwkit ``current_update_idx_``; A's random events)."""
        self.transfers = 0
        """Transfer events so far (C's write events and chopper draws)."""
        self.sweeps = 0
        """Full sweeps over A's columns (aihwkit ``transfer_counter_``)."""
        self.m_x = 0.0
        self.m_d = 0.0
        self.count_lr = 0.0
        """A's pulse-count learning rate of the last sample."""
        self.transfer_reads = 0
        """Column reads of A so far (also counted in ``reads``, forward phase)."""
        self._weight: Tensor | None = None

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

    def read_fast_column(self, column: int) -> np.ndarray:
        """``A e_i`` through the forward periphery with noise and bound management off (float64, (out,))."""
        self.transfer_reads += 1
        self.reads[0] += 1
        fast = self.fast.weight()
        if self.io is None and self.periphery is None:
            return fast[:, column].numpy().astype(np.float64)
        one_hot = torch.zeros((1, fast.shape[1]), dtype=torch.float32)
        one_hot[0, column] = 1.0
        if self.io is not None:
            transfer_io = dataclasses.replace(self.io[0], noise_management="none", bound_management="none")
            y, _ = io_periphery.read(fast, one_hot, transfer_io, self._draw, bound_management=False)
        else:
            y = read(fast, one_hot, self.periphery, self.reader)
        return y[0].numpy().astype(np.float64)

    # ---------------------------------------------------------------------------------------- update
    def pulse_count_lr(self, lr: float) -> float:
        """A's learning rate ``eta_A`` (aihwkit ``getPulseCountLearningRate``)."""
        p = self.params
        if p.fast_lr <= 0:
            return lr
        if p.auto_scale:
            count_lr = p.fast_lr * self.settings.desired_bl * self.fast_granularity
            if self.m_x > 0 and self.m_d > 0:
                count_lr /= self.m_x * self.m_d
        else:
            count_lr = p.fast_lr
        return count_lr * lr if p.scale_fast_lr else count_lr

    def _auto_scale(self, x: Tensor, d: Tensor, batch: int) -> None:
        tau = (1.0 - self.params.auto_momentum) / batch
        for name, value in (("m_x", float(x.abs().max())), ("m_d", float(d.abs().max()))):
            old = getattr(self, name)
            if old <= 0:
                setattr(self, name, value)
            elif value > 0:
                setattr(self, name, (1.0 - tau) * old + tau * value)

    def update(self, x: Tensor, d: Tensor, lr: float, step: int) -> None:
        """A's pulsed update sample by sample (consecutive samples in one call while nothing changes between
        them), a transfer after every ``transfer_every``-th sample."""
        s, fast, batch = self.settings, self.fast, x.shape[0]
        start = 0
        while start < batch:
            if self.params.auto_scale:
                stop = start + 1
                self._auto_scale(x[start], d[start], batch)
            else:
                stop = min(batch, start + self.every - self.samples_seen % self.every)
            self.count_lr = self.pulse_count_lr(lr)
            xs, ds = x[start:stop], d[start:stop]
            if self.in_chopper.any():
                xs = xs * torch.from_numpy(np.where(self.in_chopper, -1.0, 1.0).astype(np.float32))
            if self.out_chopper.any():
                ds = ds * torch.from_numpy(np.where(self.out_chopper, -1.0, 1.0).astype(np.float32))
            pulsed.pulsed_update(xs, ds, self.count_lr, self.update_granularity, s.desired_bl, s.seed,
                                 self.samples_seen, fast.state, fast.params, fast.count_up, fast.count_down,
                                 fast.live_weight(), fast.reference, s.update_management, s.bl_management)
            self.samples_seen += stop - start
            start = stop
            if self.samples_seen % self.every == 0:
                self.transfer(lr)
        self._weight = None

    def lr_scale(self, lr: float) -> float:
        """Buffer increment per weight unit read (aihwkit ``getTransferLRScale``)."""
        p = self.params
        transfer_lr = p.transfer_lr * lr if p.scale_transfer_lr else p.transfer_lr
        granularity = self.fast_granularity
        if p.auto_granularity > 0:
            granularity *= p.auto_granularity / (self.slow.shape[1] * p.transfer_every)
        threshold = p.buffer_granularity * granularity
        if p.correct_gradient_magnitudes:
            threshold *= self.slow_granularity / self.fast_granularity
            return abs(transfer_lr) / self.count_lr / threshold
        return abs(transfer_lr) / threshold

    def transfer(self, lr: float) -> None:
        """Read the next column of A, accumulate it in H, write the crossings onto C, switch the choppers."""
        p, column = self.params, self.transfers % self.slow.shape[1]
        values = self.read_fast_column(column)
        last = column == self.slow.shape[1] - 1
        draws = chop_uniforms(self.settings.seed, CHOP_EVENT0 + self.transfers, 1 + self.slow.shape[0])
        if self.dynamic:
            counts, write = self._accumulate_dynamic(column, values, self.lr_scale(lr))
            self.digital_macs += 3 * values.size
        else:
            counts, write = self._accumulate(column, values, self.lr_scale(lr)), True
            self.digital_macs += values.size
        if write and counts.any():
            self._write(column, counts)
        if self.dynamic:
            period = chop_period(p.in_chop_prob)
            switch = self.sweeps % period + 1 == period or (p.in_chop_random and draws[0] < p.in_chop_prob)
            if switch:
                self.in_chopper[column] = not self.in_chopper[column]
                self.switched[column] = True
        else:
            if p.in_chop_prob > 0:
                if p.in_chop_random:
                    flip = draws[0] < p.in_chop_prob
                else:
                    period = chop_period(p.in_chop_prob)
                    flip = self.sweeps % period + 1 == period
                if flip:
                    self.in_chopper[column] = not self.in_chopper[column]
            if last and p.out_chop_prob > 0:
                self.out_chopper ^= draws[1:] < p.out_chop_prob
        if last:
            self.sweeps += 1
        self.transfers += 1

    def _sign(self, column: int) -> np.ndarray:
        return np.where(self.out_chopper != self.in_chopper[column], -1.0, 1.0)

    def _threshold(self, omega: np.ndarray, cap: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Pulse counts of the buffer values ``omega`` and the buffer after the transfer."""
        p = self.params
        fire = np.abs(omega) >= 1.0
        limit = float(p.transfer_desired_bl)
        counts = np.where(fire, np.clip(np.trunc(omega), -limit, limit), 0.0)
        if p.forget_buffer:
            kept = omega * p.momentum
        else:
            kept = omega - (1.0 - min(max(p.momentum, 0.0), 1.0)) * counts
            if cap > 0:
                kept = np.clip(kept, -cap, cap)
        return counts, np.where(fire, kept, omega)

    def _accumulate(self, column: int, values: np.ndarray, lr_scale: float) -> np.ndarray:
        """``H_:i += s_:i lr_scale v``, then the threshold (aihwkit ``ChoppedTransferRPUDevice::readAndUpdate``)."""
        omega = (0.0 if self.params.no_buffer else self.buffer[:, column]) + self._sign(column) * (values * lr_scale)
        counts, self.buffer[:, column] = self._threshold(omega)
        return counts

    def _accumulate_dynamic(self, column: int, values: np.ndarray, lr_scale: float) -> tuple[np.ndarray, bool]:
        """AGAD: ``H_:i += s_:i lr_scale (v - P_:i)`` with the reference P and running mean M
        (aihwkit ``DynamicTransferRPUDevice::readAndUpdate``); returns the counts and whether C is written."""
        p = self.params
        period = chop_period(p.in_chop_prob)
        momentum = min(p.tail_weightening / period, 1.0)
        if self.switched[column]:
            self.past_mean[:, column] = self.running_mean[:, column]
            self.switched[column] = False
        omega = self.buffer[:, column] + self._sign(column) * ((values - self.past_mean[:, column]) * lr_scale)
        counts, self.buffer[:, column] = self._threshold(omega, p.buffer_cap * p.transfer_desired_bl)
        self.running_mean[:, column] = self.running_mean[:, column] * (1.0 - momentum) + values * momentum
        return counts, self.sweeps > period

    def _write(self, column: int, counts: np.ndarray) -> None:
        """C's pulsed update ``dC = step g_C n e_i^T`` (x = e_i, d = -n, lr = step g_C)."""
        p, s, slow = self.params, self.settings, self.slow
        x = torch.zeros((1, slow.shape[1]), dtype=torch.float32)
        x[0, column] = 1.0
        d = torch.from_numpy(-counts[None, :].astype(np.float32))
        pulsed.pulsed_update(x, d, p.step * self.slow_granularity, self.slow_granularity, p.transfer_desired_bl,
                             s.seed, WRITE_EVENT0 + self.transfers, slow.state, slow.params, slow.count_up,
                             slow.count_down, slow.live_weight(), slow.reference, p.transfer_update_management,
                             p.transfer_update_management)

    # ----------------------------------------------------------------------------------------- state
    _ARRAYS = ("buffer", "in_chopper", "out_chopper", "running_mean", "past_mean", "switched")
    _SCALARS = ("samples_seen", "transfers", "sweeps", "m_x", "m_d", "count_lr", "digital_macs")

    def state_dict(self) -> dict:
        state = {f"slow_{k}": v for k, v in self.slow.state_dict().items()}
        state.update({f"fast_{k}": v for k, v in self.fast.state_dict().items()})
        state.update({name: getattr(self, name).copy() for name in self._ARRAYS})
        state.update({name: getattr(self, name) for name in self._SCALARS})
        return {**state, **self.reader_state()}

    def load_state_dict(self, saved: dict) -> None:
        for prefix, tile in (("slow_", self.slow), ("fast_", self.fast)):
            tile.load_state_dict({k[len(prefix):]: v for k, v in saved.items() if k.startswith(prefix)})
        for name in self._ARRAYS:
            getattr(self, name)[...] = saved[name]
        for name in self._SCALARS:
            setattr(self, name, type(getattr(self, name))(saved[name]))
        self.load_reader_state(saved)
        self._weight = None


def make_transfer_layer(algorithm: str, weight: Tensor, devices: DeviceArray, fast_devices: DeviceArray | None,
                        settings: UpdateSettings) -> TransferLayer:
    """A transfer layer: C programmed to ``weight`` (aihwkit ``onSetWeights``: C = W / gamma_C, gamma_C = 1),
    A to 0, on ``devices`` and ``fast_devices`` (default: the same devices)."""
    params = settings.transfer if settings.transfer is not None else preset(algorithm)
    slow = AnalogTile(devices, weight)
    fast = AnalogTile(fast_devices if fast_devices is not None else devices, torch.zeros_like(weight))
    return TransferLayer(slow, fast, settings, params, algorithm)


__all__ = ["TRANSFER_ALGORITHMS", "ChoppedTransferParameters", "DynamicTransferParameters", "PRESETS", "preset",
           "coerce", "check", "chop_uniforms", "chop_period", "TransferLayer", "make_transfer_layer"]

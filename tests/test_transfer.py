"""Transfer rules (Tiki-Taka v2, chopped TTv2, AGAD): fast paths against a naive loop written from aihwkit's
description on the same random keys, conserved pulse counts, chopper statistics, smoke training with energy,
presets and clear errors."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from ferrolib import energy, provenance
from ferrolib.devices import DeviceArray
from ferrolib.training import TrainConfig, pulsed, result_path, train, validate
from ferrolib.training.algorithms import UpdateSettings, make_layer
from ferrolib.training import periphery as io_periphery
from ferrolib.training.periphery import IOParameters
from ferrolib.training.reference import apply_pulse_trains_reference, draw_pulse_trains_reference
from ferrolib.training.tile import Periphery
from ferrolib.training.tile import read as tile_read
from ferrolib.training.transfer import (CHOP_EVENT0, READ_EVENT0, WRITE_EVENT0, ChoppedTransferParameters,
                                        DynamicTransferParameters, TransferLayer, chop_period, chop_uniforms)

SHAPE = (4, 6)


def make_devices(seed: int, c2c: float = 0.1) -> DeviceArray:
    """Soft-bounds devices with per-device variation (asymmetric: up steps larger)."""
    g = torch.Generator().manual_seed(seed)
    spread = lambda: 1.0 + 0.2 * torch.rand(SHAPE, generator=g, dtype=torch.float64)  # noqa: E731
    return DeviceArray("softbounds", -0.9 * spread(), 1.0 * spread(), 0.03 * spread(), 0.02 * spread(), dw_min=0.02,
                       c2c=c2c)


def linear_devices(dw: float = 0.01) -> DeviceArray:
    ones = torch.ones(SHAPE, dtype=torch.float64)
    nodes = torch.ones(2, dtype=torch.float64)
    return DeviceArray("piecewise", -100 * ones, 100 * ones, dw * ones, dw * ones, dw_min=dw, nodes_up=nodes,
                       nodes_down=nodes)


class NaiveTransfer:
    """aihwkit's transfer compounds as plain loops (CPU semantics: ``TransferRPUDevice::finishUpdateCycle``,
    ``ChoppedTransferRPUDevice::readAndUpdate``, ``DynamicTransferRPUDevice::readAndUpdate``), with the naive
    pulse-train references of ``pulsed`` for every device write."""

    def __init__(self, slow: DeviceArray, fast: DeviceArray, weight: torch.Tensor, params, settings,
                 io: IOParameters | None = None) -> None:
        self.slow_devices, self.fast_devices, self.p, self.s, self.io = slow, fast, params, settings, io
        self.C = torch.clamp(weight.double(), slow.w_min, slow.w_max)
        self.A = torch.clamp(torch.zeros(SHAPE, dtype=torch.float64), fast.w_min, fast.w_max)
        self.counts = {name: np.zeros(SHAPE, np.int64) for name in ("A_up", "A_down", "C_up", "C_down")}
        self.H, self.M, self.P = (np.zeros(SHAPE) for _ in range(3))
        self.in_chop, self.out_chop, self.switched = [False] * SHAPE[1], [False] * SHAPE[0], [False] * SHAPE[1]
        self.samples = self.transfers = self.sweeps = self.flips = 0
        self.m_x = self.m_d = 0.0
        self.g_fast, self.g_slow = pulsed.aihwkit_granularity(fast), pulsed.aihwkit_granularity(slow)
        self.dynamic = isinstance(params, DynamicTransferParameters)

    def update(self, x: torch.Tensor, d: torch.Tensor, lr: float) -> None:
        p, batch = self.p, x.shape[0]
        for b in range(batch):
            if p.auto_scale:
                tau = (1.0 - p.auto_momentum) / batch
                for name, value in (("m_x", float(x[b].abs().max())), ("m_d", float(d[b].abs().max()))):
                    old = getattr(self, name)
                    setattr(self, name, value if old <= 0 else (old if value <= 0 else (1 - tau) * old + tau * value))
            if p.fast_lr <= 0:
                self.count_lr = lr
            else:
                self.count_lr = p.fast_lr
                if p.auto_scale:
                    self.count_lr = p.fast_lr * self.s.desired_bl * self.g_fast
                    if self.m_x > 0 and self.m_d > 0:
                        self.count_lr /= self.m_x * self.m_d
                if p.scale_fast_lr:
                    self.count_lr *= lr
            xs = torch.tensor([[-float(x[b, j]) if self.in_chop[j] else float(x[b, j]) for j in range(SHAPE[1])]],
                              dtype=torch.float32)
            ds = torch.tensor([[-float(d[b, i]) if self.out_chop[i] else float(d[b, i]) for i in range(SHAPE[0])]],
                              dtype=torch.float32)
            compound = 0.5 * (self.g_fast + self.g_slow)  # VectorRPUDevice: the mean of its devices' granularities
            trains = draw_pulse_trains_reference(xs, ds, self.count_lr, compound, self.s.desired_bl,
                                                 self.s.seed, self.samples, self.s.update_management,
                                                 self.s.bl_management)
            self.A = apply_pulse_trains_reference(self.A, trains, self.fast_devices, self.s.seed, self.samples,
                                                  self.counts["A_up"], self.counts["A_down"])
            self.samples += 1
            if self.samples % round(p.transfer_every) == 0:
                self.transfer(lr)

    def transfer(self, lr: float) -> None:
        p, (n_out, n_in) = self.p, SHAPE
        i = self.transfers % n_in
        v = [self.read(float(np.float32(float(self.A[j, i]))), j) for j in range(n_out)]  # A's float32 weight
        transfer_lr = p.transfer_lr * lr if p.scale_transfer_lr else p.transfer_lr
        granularity = self.g_fast * (p.auto_granularity / (n_in * p.transfer_every) if p.auto_granularity > 0 else 1)
        threshold = p.buffer_granularity * granularity
        if p.correct_gradient_magnitudes:
            lr_scale = transfer_lr / self.count_lr / (threshold * self.g_slow / self.g_fast)
        else:
            lr_scale = transfer_lr / threshold
        period = chop_period(p.in_chop_prob)
        if self.dynamic and self.switched[i]:
            for j in range(n_out):
                self.P[j, i] = self.M[j, i]
        if self.dynamic:
            self.switched[i] = False
        n = []
        for j in range(n_out):
            sign = -1.0 if self.in_chop[i] != self.out_chop[j] else 1.0
            if self.dynamic:
                omega = self.H[j, i] + sign * ((v[j] - self.P[j, i]) * lr_scale)
            else:
                omega = (0.0 if p.no_buffer else self.H[j, i]) + sign * (v[j] * lr_scale)
            steps = 0.0
            if abs(omega) >= 1.0:
                steps = max(min(math.trunc(omega), p.transfer_desired_bl), -p.transfer_desired_bl)
                omega = omega * p.momentum if p.forget_buffer else omega - (1.0 - p.momentum) * steps
                cap = getattr(p, "buffer_cap", 0.0) * p.transfer_desired_bl
                if not p.forget_buffer and cap > 0:
                    omega = max(min(omega, cap), -cap)
            self.H[j, i] = omega
            n.append(steps)
            if self.dynamic:
                mu = min(p.tail_weightening / period, 1.0)
                self.M[j, i] = self.M[j, i] * (1.0 - mu) + v[j] * mu
        if any(n) and (not self.dynamic or self.sweeps > period):
            x = torch.tensor([[1.0 if k == i else 0.0 for k in range(n_in)]], dtype=torch.float32)
            d = torch.tensor([[-s for s in n]], dtype=torch.float32)
            event = WRITE_EVENT0 + self.transfers
            trains = draw_pulse_trains_reference(x, d, p.step * self.g_slow, self.g_slow, p.transfer_desired_bl,
                                                 self.s.seed, event, p.transfer_update_management,
                                                 p.transfer_update_management)
            self.C = apply_pulse_trains_reference(self.C, trains, self.slow_devices, self.s.seed, event,
                                                  self.counts["C_up"], self.counts["C_down"])
        draws = chop_uniforms(self.s.seed, CHOP_EVENT0 + self.transfers, 1 + n_out)
        if self.dynamic:
            if self.sweeps % period + 1 == period or (p.in_chop_random and draws[0] < p.in_chop_prob):
                self.flips += 1
                self.in_chop[i] = not self.in_chop[i]
                self.switched[i] = True
        else:
            if p.in_chop_prob > 0:
                regular = self.sweeps % period + 1 == period
                if (draws[0] < p.in_chop_prob) if p.in_chop_random else regular:
                    self.flips += 1
                    self.in_chop[i] = not self.in_chop[i]
            if i == n_in - 1 and p.out_chop_prob > 0:
                for j in range(n_out):
                    if draws[1 + j] < p.out_chop_prob:
                        self.out_chop[j] = not self.out_chop[j]
        if i == n_in - 1:
            self.sweeps += 1
        self.transfers += 1

    def read(self, a: float, row: int) -> float:
        """One output of the column read through the forward periphery, noise and bound management off: the
        one-hot input after the periphery's DAC, output noise keyed by the transfer, the ADC (in float64)."""
        if self.io is None:
            return a
        io = self.io
        one = float(io_periphery._quantise(torch.ones(1), io.input_step, io.inp_bound)[0])
        value = a * one + io.out_noise * pulsed.c2c_normal(self.s.seed, READ_EVENT0 + self.transfers, row, 0, 0)
        value = round(value / io.output_step) * io.output_step  # Python's round: half to even, as rint
        return min(max(value, -io.out_bound), io.out_bound) * io.out_scale

    def weight(self) -> np.ndarray:
        A = self.A.numpy().astype(np.float32)
        C = self.C.numpy().astype(np.float32)
        signs = np.array([[-1.0 if self.in_chop[j] != self.out_chop[i] else 1.0 for j in range(SHAPE[1])]
                          for i in range(SHAPE[0])], dtype=np.float32)
        return C + np.float32(self.p.gamma) * (signs * A)


CASES = {
    "ttv2": ChoppedTransferParameters.ttv2(),
    "ttv2-every-3-gamma": dataclasses.replace(ChoppedTransferParameters.ttv2(), transfer_every=3.0, gamma=0.4,
                                              momentum=0.3, transfer_desired_bl=3),
    "cttv2": dataclasses.replace(ChoppedTransferParameters.cttv2(), in_chop_prob=0.3, out_chop_prob=0.4),
    "cttv2-regular-keep-buffer": dataclasses.replace(ChoppedTransferParameters.cttv2(), in_chop_random=False,
                                                     in_chop_prob=0.5, forget_buffer=False, momentum=0.2,
                                                     correct_gradient_magnitudes=True, gamma=0.2),
    "agad": dataclasses.replace(DynamicTransferParameters.agad(), in_chop_prob=0.5),
    "agad-random-keep-buffer": dataclasses.replace(DynamicTransferParameters.agad(), in_chop_prob=0.4,
                                                   in_chop_random=True, forget_buffer=False, buffer_cap=2.0,
                                                   transfer_update_management=False, transfer_desired_bl=2),
    "cttv2-noisy-reads": dataclasses.replace(ChoppedTransferParameters.cttv2(), in_chop_prob=0.3),
}
NOISY_READS = IOParameters(out_noise=0.02, out_res=0.005, out_bound=0.4, out_scale=1.5)
"""The periphery of the ``-noisy-reads`` case: output noise, ADC steps and a bound the column reads reach."""


@pytest.mark.parametrize("case", list(CASES))
def test_fast_path_equals_the_naive_reference(case: str) -> None:
    params = CASES[case]
    algorithm = "agad" if isinstance(params, DynamicTransferParameters) else ("cttv2" if "cttv2" in case else "ttv2")
    settings = UpdateSettings(desired_bl=5, seed=3, transfer=params)
    slow, fast = make_devices(0), make_devices(1)
    g = torch.Generator().manual_seed(5)
    weight = 0.3 * torch.randn(SHAPE, generator=g)
    io = NOISY_READS if case.endswith("noisy-reads") else None
    layer = make_layer(algorithm, weight, slow, settings, fast_devices=fast, io=None if io is None else (io, io))
    assert isinstance(layer, TransferLayer)
    naive = NaiveTransfer(slow, fast, weight, params, settings, io)
    for step in range(8):
        x = torch.rand(5, SHAPE[1], generator=g) * (torch.rand(5, SHAPE[1], generator=g) > 0.2)
        d = 0.2 * torch.randn(5, SHAPE[0], generator=g)
        lr = 0.5 / (1 + step // 4)
        layer.update(x, d, lr, step)
        naive.update(x, d, lr)
    np.testing.assert_array_equal(layer.fast.count_up, naive.counts["A_up"])
    np.testing.assert_array_equal(layer.fast.count_down, naive.counts["A_down"])
    np.testing.assert_array_equal(layer.slow.count_up, naive.counts["C_up"])
    np.testing.assert_array_equal(layer.slow.count_down, naive.counts["C_down"])
    np.testing.assert_allclose(layer.fast.state, naive.A.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(layer.slow.state, naive.C.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(layer.buffer, naive.H, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(layer.in_chopper, naive.in_chop)
    np.testing.assert_array_equal(layer.out_chopper, naive.out_chop)
    np.testing.assert_allclose(layer.weight().numpy(), naive.weight(), rtol=1e-6, atol=1e-7)
    if naive.dynamic:
        np.testing.assert_allclose(layer.running_mean, naive.M, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(layer.past_mean, naive.P, rtol=1e-12, atol=1e-14)
    assert layer.transfers == naive.transfers == 40 // round(params.transfer_every)
    # The comparison is not vacuous: A and C were both written (AGAD: after its first chopper periods).
    assert naive.counts["A_up"].sum() + naive.counts["A_down"].sum() > 20
    assert naive.counts["C_up"].sum() + naive.counts["C_down"].sum() > 0
    assert naive.flips > 0 if params.in_chop_prob > 0 else naive.flips == 0


def test_counters_equal_the_pulses_applied_and_the_ledger_inputs() -> None:
    """On a linear device without clipping every pulse moves a weight by exactly dw: the states are the counted
    pulses; the layer's tile group and digital work count both tiles' pulses and every transfer's buffer MACs."""
    dw = 0.01
    params = dataclasses.replace(ChoppedTransferParameters.cttv2(), in_chop_prob=0.3, transfer_desired_bl=2)
    layer = make_layer("cttv2", torch.zeros(SHAPE), linear_devices(dw), UpdateSettings(seed=1, transfer=params))
    g = torch.Generator().manual_seed(2)
    for step in range(10):
        layer.update(torch.rand(8, SHAPE[1], generator=g), 0.3 * torch.randn(8, SHAPE[0], generator=g), 0.3, step)
    for tile in (layer.fast, layer.slow):
        np.testing.assert_allclose(tile.state, (tile.count_up - tile.count_down) * dw, atol=1e-12)
        assert tile.count_up.sum() > 0 and tile.count_down.sum() > 0
    np.testing.assert_array_equal(layer.tile.count_up, np.concatenate([layer.slow.count_up, layer.fast.count_up], 1))
    assert layer.tile.count_down.sum() == layer.slow.count_down.sum() + layer.fast.count_down.sum()
    assert layer.transfers == 80 and layer.digital_macs == 80 * SHAPE[0]
    # Transfer reads: one forward MVM of one column of A each.
    assert layer.reads[0] == 80 and layer.device_reads[0] == 80 * SHAPE[0]


def transfer_once(layer: TransferLayer, lr: float) -> None:
    """One sample without error (A is not written) on a layer transferring every sample: exactly one transfer."""
    assert round(layer.params.transfer_every) == 1
    n_out, n_in = layer.slow.shape
    layer.update(torch.zeros(1, n_in), torch.zeros(1, n_out), lr, 0)


def test_chopper_switches_at_the_configured_rate_and_signs_the_buffer() -> None:
    n_in = SHAPE[1]
    draws = np.concatenate([chop_uniforms(7, CHOP_EVENT0 + t, 1) for t in range(4000)])
    assert abs(draws.mean() - 0.5) < 0.02 and 0.0 <= draws.min() and draws.max() < 1.0
    params = dataclasses.replace(ChoppedTransferParameters.cttv2(), in_chop_prob=0.2, out_chop_prob=0.5)
    layer = make_layer("cttv2", torch.zeros(SHAPE), make_devices(0), UpdateSettings(seed=7, transfer=params))
    flips_in = flips_out = 0
    for _ in range(600):
        before_in, before_out = layer.in_chopper.copy(), layer.out_chopper.copy()
        column = layer.transfers % n_in
        transfer_once(layer, 0.1)
        changed_in = np.flatnonzero(before_in != layer.in_chopper)
        assert set(changed_in) <= {column}  # only the column just read may switch
        flips_in += len(changed_in)
        changed_out = int((before_out != layer.out_chopper).sum())
        assert changed_out == 0 or column == n_in - 1  # output choppers switch after a full sweep only
        flips_out += changed_out
    sigma_in = math.sqrt(600 * 0.2 * 0.8)
    assert abs(flips_in - 600 * 0.2) < 4 * sigma_in
    trials_out = 100 * SHAPE[0]
    assert abs(flips_out - trials_out * 0.5) < 4 * math.sqrt(trials_out * 0.25)
    # Regular choppers switch every max(ceil(1/p), 2) sweeps, all columns alike.
    regular = dataclasses.replace(params, in_chop_random=False, in_chop_prob=0.3, out_chop_prob=0.0)
    layer = make_layer("cttv2", torch.zeros(SHAPE), make_devices(0), UpdateSettings(transfer=regular))
    states = []
    for _ in range(8 * n_in):
        transfer_once(layer, 0.1)
        if layer.transfers % n_in == 0:
            states.append(layer.in_chopper.copy())
    assert chop_period(0.3) == 4
    # toggled in the 4th and 8th sweep
    np.testing.assert_array_equal([s.all() for s in states], [False, False, False, True, True, True, True, False])
    assert all(s.all() or not s.any() for s in states)
    # The chopper sign enters the buffer: a flipped input chopper accumulates -v.
    layer = make_layer("ttv2", torch.zeros(SHAPE), make_devices(0), UpdateSettings())
    layer.fast.program(np.full(SHAPE, 0.05))
    layer.in_chopper[0] = True
    layer.out_chopper[1] = True
    transfer_once(layer, 0.01)
    expected = np.array([-1.0, 1.0, -1.0, -1.0]) * (float(np.float32(0.05)) * layer.lr_scale(0.01))
    assert np.abs(expected).max() < 1.0  # below the threshold: the buffer keeps it
    np.testing.assert_allclose(layer.buffer[:, 0], expected, rtol=1e-15)


def test_transfer_reads_go_through_the_forward_periphery() -> None:
    """A's column is read with the forward ADC (noise and bound management off), as the periphery reads the
    one-hot input: quantised to the output step, clipped at the bound, times out_scale."""
    io = IOParameters(out_noise=0.0, out_res=0.01, out_bound=0.3, out_scale=2.0)
    values = np.linspace(-0.5, 0.5, SHAPE[0])[:, None] * np.ones(SHAPE)
    for periphery in (dict(io=(io, io)), dict(periphery=Periphery(out_noise=0.0, out_bound=0.3))):
        layer = make_layer("ttv2", torch.zeros(SHAPE), make_devices(0), UpdateSettings(), **periphery)
        layer.fast.program(values)
        for _ in range(3):
            transfer_once(layer, 0.01)  # columns 0, 1, 2: the buffer holds each read times lr_scale
        read = layer.buffer[:, 2] / layer.lr_scale(0.01)
        one_hot = torch.zeros(1, SHAPE[1])
        one_hot[0, 2] = 1.0
        if "io" in periphery:
            transfer_io = dataclasses.replace(io, noise_management="none", bound_management="none")
            expected, _ = io_periphery.read(layer.fast.weight(), one_hot, transfer_io, None, bound_management=False)
        else:
            expected = tile_read(layer.fast.weight(), one_hot, periphery["periphery"])
        np.testing.assert_allclose(read, expected[0].numpy(), rtol=1e-6, atol=1e-7)
        assert not np.allclose(read, values[:, 2]) and np.abs(read).max() > 0.29  # quantised, and clipped
        assert layer.reads[0] == 3 and layer.device_reads[0] == 3 * SHAPE[0]


def test_transfer_read_noise_has_the_configured_spread() -> None:
    """Read noise: the spread of many reads of a zero column is out_noise x out_scale (one ADC step of jitter)."""
    io = IOParameters(out_noise=0.05, out_res=1e-4, out_bound=10.0, out_scale=2.0)
    layer = make_layer("ttv2", torch.zeros(SHAPE), make_devices(0), UpdateSettings(seed=2), io=(io, io))
    reads = []
    for _ in range(300):
        before = layer.buffer.copy()
        transfer_once(layer, 1e-6)  # far below the threshold: the buffer keeps every read
        reads.append((layer.buffer - before).sum(axis=1) / layer.lr_scale(1e-6))
    reads = np.concatenate(reads)
    assert abs(reads.std() - 0.1) < 0.01 and abs(reads.mean()) < 0.01


@pytest.mark.parametrize("algorithm", ["ttv2", "cttv2", "agad"])
def test_smoke_training_on_the_paper_periphery_writes_pulses_and_energy(algorithm, tmp_path, shared_measurements):
    config = TrainConfig.smoke(algorithm=algorithm, device_id="ID170ZR5000", pulse_width=2e-8, epochs=1,
                               forward_io="aihwkit_default", backward_io="aihwkit_default", mapping="aihwkit_default")
    result = train(config, tmp_path, progress=False)
    assert result_path(config, tmp_path).exists()
    pulses = result["pulses"].values
    assert pulses.sum() > 0 and result.attrs["algorithm"] == algorithm
    fc3 = result["device_pulses_fc3"].values  # (polarity, out, C's columns then A's)
    columns = fc3.shape[2] // 2
    assert fc3[:, :, columns:].sum() > 0  # A's updates
    if algorithm == "ttv2":  # (AGAD writes C only after n_chop sweeps: fc3, 10 x 128 samples > 512)
        assert fc3[:, :, :columns].sum() > 0
    assert int(result["pulses"].sum()) == sum(int(result[f"device_pulses_{n}"].sum()) for n in ("fc1", "fc2", "fc3"))
    assert (result["digital_macs"].values > 0).all()
    assert (result["layer_devices"].values == 2 * result["layer_outputs"].values * result["layer_inputs"].values).all()
    ledger = energy.ledger(result)
    programming = float(ledger["programming_energy_cumulative"][-1])
    assert programming > 0 and math.isfinite(float(ledger["energy_cumulative"][-1]))
    assert float(ledger["energy_term"].sel(term="digital").sum()) > 0


def test_presets_follow_build_config_and_keep_existing_keys() -> None:
    assert repr(ChoppedTransferParameters.ttv2()) == "ChoppedTransferParameters(in_chop_prob=0.0)"
    cttv2 = ChoppedTransferParameters.cttv2()
    assert (cttv2.fast_lr, cttv2.auto_scale, cttv2.in_chop_prob, cttv2.in_chop_random) == (0.1, True, 0.1, True)
    agad = DynamicTransferParameters.agad()
    assert (agad.fast_lr, agad.auto_scale, agad.in_chop_random, agad.tail_weightening, agad.transfer_update_management
            ) == (0.1, True, False, 5.0, True)
    assert "transfer" not in provenance.config_dict(TrainConfig.smoke("mp"))
    config = TrainConfig.smoke("cttv2", transfer={"fast_lr": 0.05})
    assert config.transfer == dataclasses.replace(cttv2, fast_lr=0.05)
    assert TrainConfig.smoke("agad").update_settings().transfer == agad
    assert provenance.config_hash(TrainConfig.smoke("ttv2")) != provenance.config_hash(config)
    for given in (config, TrainConfig.smoke("agad", transfer={"tail_weightening": 2.0})):
        again = TrainConfig(**provenance.config_dict(given))  # a stored configuration rebuilds to the same key
        assert again.transfer == given.transfer and provenance.config_hash(again) == provenance.config_hash(given)


@pytest.mark.parametrize("overrides, message", [
    (dict(algorithm="ttv2", transfer={"in_chop_prob": 2.0}), "transfer.in_chop_prob must be in [0, 1]"),
    (dict(algorithm="ttv2", transfer={"transfer_every": 0.2}), "transfer.transfer_every must be >= 1"),
    (dict(algorithm="cttv2", transfer={"momentum": -0.1}), "transfer.momentum must be in [0, 1]"),
    (dict(algorithm="cttv2", transfer={"transfer_desired_bl": 0}), "transfer.transfer_desired_bl must be in 1..63"),
    (dict(algorithm="agad", transfer={"in_chop_prob": 0.0}), "transfer.in_chop_prob must be > 0 for agad"),
    (dict(algorithm="agad", transfer={"fast_lr": math.nan}), "transfer.fast_lr must be a finite number"),
    (dict(algorithm="agad", transfer="ttv2"), "algorithm 'agad' needs DynamicTransferParameters"),
    (dict(algorithm="sgd", transfer="ttv2"), "transfer parameters apply to"),
    (dict(algorithm="ttv2", pulse_mode="implicit"), "stochastic pulse trains"),
])
def test_bad_hyper_parameters_give_one_clear_line(overrides, message) -> None:
    config = TrainConfig(device_id="synthetic-asymmetric", data="synthetic", **overrides)
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")) as error:
        validate(config)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("value, message", [
    ({"chop": 1}, "transfer has unknown field"), ("tiki", "unknown transfer preset"), (3, "transfer must be"),
])
def test_bad_transfer_values_are_refused_on_construction(value, message) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig(algorithm="ttv2", data="synthetic", transfer=value)


@pytest.mark.parametrize("algorithm", ["cttv2", "agad"])
def test_state_dict_round_trip_resumes_bit_identically(algorithm) -> None:
    params = dataclasses.replace(CASES[algorithm], gamma=0.3)
    settings = UpdateSettings(desired_bl=5, seed=4, transfer=params)
    g = torch.Generator().manual_seed(9)
    batches = [(torch.rand(5, SHAPE[1], generator=g), 0.2 * torch.randn(5, SHAPE[0], generator=g)) for _ in range(12)]

    def fresh():
        return make_layer(algorithm, torch.full(SHAPE, 0.1), make_devices(0), settings, fast_devices=make_devices(1))

    straight, first = fresh(), fresh()
    for step, (x, d) in enumerate(batches):
        straight.update(x, d, 0.4, step)
        if step < 6:
            first.update(x, d, 0.4, step)
    resumed = fresh()
    resumed.load_state_dict(first.state_dict())
    for step, (x, d) in enumerate(batches[6:], start=6):
        resumed.update(x, d, 0.4, step)
    for name, value in straight.state_dict().items():
        np.testing.assert_array_equal(np.asarray(resumed.state_dict()[name]), np.asarray(value), err_msg=name)
    np.testing.assert_array_equal(resumed.weight().numpy(), straight.weight().numpy())

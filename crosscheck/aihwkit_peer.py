"""The aihwkit side of the cross-check (imports aihwkit; runs only in the cross-check environment).

Configurations mirror ferrolib's ideal profile (``TrainConfig.ideal``): MLP 784-256-128-10, sigmoid, log-softmax +
NLL, batch 64, 48,000 samples per epoch from reshuffled passes, lr 0.5 (fp, mp) / 0.1 (sgd, sps) halved every 10
epochs, analog bias in the tile, perfect reads, no device noise, stochastic compressed pulse trains with desired BL
31 and update + BL management. ``sps`` has no aihwkit counterpart; it is emulated exactly: a piecewise step depends
on ``(w - w_min) / (w_max - w_min)`` only (``update_once`` in src/rpucuda/rpu_piecewisestep_device.cpp), so a
device whose bounds are shifted by ``-w_sp`` holds ``w_eff = w - w_sp`` and behaves like the device paired with a
static reference at its symmetry point.

aihwkit's CPU tiles have no pulse counters (``getPulseCounters`` is implemented for CUDA only, src/rpucuda/rpu.h),
so pulses are the *expected* counts of aihwkit's rules, computed from the x and d every tile receives:
sgd/sps ``sum_b BL_b p_bj q_bi`` (``performUpdateManagement``, rpu_pulsed_meta_parameter.cpp); mp replays
chi (``n = trunc(chi/g)``, ``chi -= n g``, rpu_mixedprec_device.cpp) and the pulsed transfer of each row
(``E|count_ij| = |n_ij| / max_j |n_ij| min(k_i, BL)``, ``k_i = g max_j |n_ij| / granularity``).
"""
from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

SIZES = (784, 256, 128, 10)
BATCH = 64
DESIRED_BL = 31
LR = {"fp": 0.5, "mp": 0.5, "sgd": 0.1, "sps": 0.1}


def piecewise_device(params: dict, shift: float = 0.0):
    """aihwkit ``PiecewiseStepDevice`` of exported parameters, noise-free, bounds shifted by ``-shift``."""
    from aihwkit.simulator.configs import PiecewiseStepDevice

    return PiecewiseStepDevice(
        dw_min=params["dw_min"], up_down=params["up_down"], w_min=params["w_min"] - shift,
        w_max=params["w_max"] - shift, piecewise_up=list(params["piecewise_up"]),
        piecewise_down=list(params["piecewise_down"]), dw_min_dtod=0.0, dw_min_std=0.0, w_min_dtod=0.0,
        w_max_dtod=0.0, up_down_dtod=0.0, write_noise_std=0.0, reset_std=0.0)


def device_granularity(params: dict) -> float:
    """aihwkit's ``calcWeightGranularity`` of a piecewise device: ``dw_min piecewise_up[N // 2]``."""
    return params["dw_min"] * params["piecewise_up"][len(params["piecewise_up"]) // 2]


def rpu_config(algo: str, device: dict):
    from aihwkit.simulator.configs import (DigitalRankUpdateRPUConfig, FloatingPointRPUConfig,
                                           MixedPrecisionCompound, SingleRPUConfig)
    from aihwkit.simulator.parameters.enums import PulseType

    if algo == "fp":
        config = FloatingPointRPUConfig()
    elif algo == "mp":
        config = DigitalRankUpdateRPUConfig(device=MixedPrecisionCompound(
            device=piecewise_device(device["params"]), granularity=device["granularity"]))
    else:
        shift = device["symmetry_point"] if algo == "sps" else 0.0
        config = SingleRPUConfig(device=piecewise_device(device["params"], shift))
        config.update.pulse_type = PulseType.STOCHASTIC_COMPRESSED
    if algo != "fp":
        config.update.desired_bl = DESIRED_BL
        config.update.update_management = True
        config.update.update_bl_management = True
        config.forward.is_perfect = True
        config.backward.is_perfect = True
        # A perfect forward has no output bound, and neither may its gradient: aihwkit zeroes the error of every
        # output at or beyond 0.999 out_scale out_bound (handle_output_bound, get_forward_out_bound in
        # aihwkit/simulator/tiles/rpucuda.py, applied in pre_backward) even when is_perfect leaves it unclipped.
        # With the default 12, plain SGD at 20 ns drifts every logit above 12 within ~70 mini-batches and no error
        # reaches fc1, fc2 again. 0 turns the mask off, as ferrolib's perfect reads have no bound.
        config.forward.out_bound = 0.0
    config.mapping.digital_bias = False
    config.mapping.weight_scaling_omega = 0.0
    config.mapping.learn_out_scaling = False
    config.mapping.out_scaling_columnwise = False
    config.mapping.max_input_size = 0
    config.mapping.max_output_size = 0
    return config


class PulseEstimate:
    """Expected device pulses (up, down) of one analog layer under aihwkit's rules, from the tile's x and d, and
    the traffic those came from: the sums over mini-batches of mean |x| (bias excluded) and mean |d|."""

    def __init__(self, algo: str, device: dict, shape: tuple[int, int], analog_bias: bool = True,
                 implicit_transfer: bool = False) -> None:
        self.algo = algo
        self.device_granularity = device_granularity(device["params"])
        self.mp_granularity = device["granularity"]
        self.analog_bias = analog_bias
        """The tile holds the bias as its last column (x gets a column of ones), as in the ideal configuration."""
        self.implicit_transfer = implicit_transfer
        """mp transfers with ``DETERMINISTIC_IMPLICIT`` pulses (the paper's configuration), not stochastic trains."""
        self.chi = torch.zeros(shape, dtype=torch.float64)
        self.up = 0.0
        self.down = 0.0
        self.abs_x = 0.0
        self.abs_d = 0.0
        self.batches = 0

    def totals(self) -> tuple[float, float, float, float, int]:
        """Running (up, down, sum of mean |x|, sum of mean |d|, mini-batches)."""
        return self.up, self.down, self.abs_x, self.abs_d, self.batches

    def observe(self, x: torch.Tensor, d: torch.Tensor, lr: float) -> None:
        self.abs_x += float(x.abs().mean())
        self.abs_d += float(d.abs().mean())
        self.batches += 1
        x = x.double()
        if self.analog_bias:
            x = torch.cat([x, torch.ones(x.shape[0], 1, dtype=torch.float64)], dim=1)
        d = d.double()
        if self.algo == "mp":
            self.chi -= lr * d.T @ x
            n = torch.trunc(self.chi / self.mp_granularity)
            self.chi -= n * self.mp_granularity
            if self.implicit_transfer:
                expected = implicit_transfer_pulses(n, self.mp_granularity, self.device_granularity)
            else:
                n_max = n.abs().amax(dim=1, keepdim=True)
                k = self.mp_granularity * n_max / self.device_granularity
                expected = torch.where(n_max > 0, n.abs() / n_max.clamp_min(1) * k.clamp_max(DESIRED_BL), 0.0)
            self.up += float(expected[n > 0].sum())
            self.down += float(expected[n < 0].sum())
            return
        x_max, d_max = x.abs().amax(dim=1), d.abs().amax(dim=1)
        live = (x_max > 0) & (d_max > 0)  # a sample with x = 0 or d = 0 fires nothing
        x, d, x_max, d_max = x[live], d[live], x_max[live], d_max[live]
        k = lr * x_max * d_max / self.device_granularity
        bl = torch.clamp(torch.ceil(k), 1, DESIRED_BL)
        d_balanced = d_max * torch.clamp(DESIRED_BL / k, max=1.0)
        product = lr / (self.device_granularity * bl)
        ratio = d_balanced / x_max
        p = (torch.sqrt(product * ratio)[:, None] * x.abs()).clamp_max(1.0)
        q = (torch.sqrt(product / ratio)[:, None] * d.abs()).clamp_max(1.0)
        # W -= lr d x^T: up where x_j d_i < 0
        positive_p, negative_p = (p * (x > 0)).sum(1), (p * (x < 0)).sum(1)
        positive_q, negative_q = (q * (d > 0)).sum(1), (q * (d < 0)).sum(1)
        self.up += float((bl * (positive_p * negative_q + negative_p * positive_q)).sum())
        self.down += float((bl * (positive_p * positive_q + negative_p * negative_q)).sum())


def implicit_transfer_pulses(n: torch.Tensor, mp_granularity: float, device_granularity: float) -> torch.Tensor:
    """Pulses per device of mixed precision's ``DETERMINISTIC_IMPLICIT`` transfer of the requested counts ``n``:
    row i is one update with ``x = n_i g_mp``, one-hot d, lr 1 and both managements forced on
    (``performUpdateManagement``, src/rpucuda/rpu_pulsed_meta_parameter.cpp: ``k = max|x| / g``,
    ``BL = min(ceil k, 31)``, ``A = B = sqrt(1 / (g BL))``, ``d = 31 / k`` when ``k > 31``, ``A *= sqrt(max|x| / d)``,
    ``B *= sqrt(d / max|x|)``), and device (i, j) receives ``rint(BL min(A, 1) min(B |x_j|, 1))`` coincidences
    (``generateCoincidencesDetI``, src/rpucuda/dense_bit_line_maker.cpp; rint rounds half to even, as
    ``torch.round``)."""
    value = n.abs() * mp_granularity
    x_max = value.amax(dim=1, keepdim=True)
    k = x_max / device_granularity
    live = x_max > 0
    slots = torch.clamp(torch.ceil(k), 1, DESIRED_BL)
    d_value = torch.where(k > DESIRED_BL, DESIRED_BL / k.clamp_min(1e-300), torch.ones_like(k))
    base = torch.sqrt(1.0 / (device_granularity * slots))
    safe_max = torch.where(live, x_max, torch.ones_like(x_max))
    a = base * torch.sqrt(safe_max / d_value)
    b = base * torch.sqrt(d_value / safe_max)
    pulses = torch.round(slots * a.clamp_max(1.0) * (b * value).clamp_max(1.0))
    return torch.where(live, pulses, torch.zeros_like(pulses))


def build(algo: str, device: dict, initial: list[torch.Tensor]):
    """The aihwkit network programmed with ferrolib's ``initial`` weights ((out, in + 1), bias last) and one
    pulse estimator per analog layer (hooked onto its tile's update)."""
    from aihwkit.nn import AnalogLinear, AnalogSequential

    layers, estimates = [], []
    for index, (n_in, n_out) in enumerate(zip(SIZES[:-1], SIZES[1:])):
        layer = AnalogLinear(n_in, n_out, bias=True, rpu_config=rpu_config(algo, device))
        layer.set_weights(initial[index][:, :-1].float(), initial[index][:, -1].float())
        layers += [layer, nn.Sigmoid() if index < len(SIZES) - 2 else nn.LogSoftmax(dim=1)]
        if algo != "fp":
            estimate = PulseEstimate(algo, device, (n_out, n_in + 1))
            for tile in layer.analog_tiles():
                tile.update = _observed(tile, tile.update, estimate)
            estimates.append(estimate)
    return AnalogSequential(*layers), estimates


def _observed(tile, update, estimate: PulseEstimate):
    def wrapped(x_input, d_input):
        estimate.observe(x_input.detach().cpu(), d_input.detach().cpu(), float(tile.get_learning_rate()))
        return update(x_input, d_input)
    return wrapped


def train(algo: str, device: dict, data, seed: int, epochs: int, samples_per_epoch: int = 48_000) -> dict:
    """One aihwkit run on ferrolib's split ``data``, initial weights and sample order of ``seed``: per-epoch
    validation accuracy, expected pulses per layer and polarity, mean |x| and |d| per layer, samples/s."""
    from aihwkit.optim import AnalogSGD

    from ferrolib.training.loop import _init_weights, _Stream  # the very same start and sample order

    torch.manual_seed(seed)
    model, estimates = build(algo, device, _init_weights(list(SIZES), torch.Generator().manual_seed(seed)))
    optimizer = AnalogSGD(model.parameters(), lr=LR[algo])
    optimizer.regroup_param_groups(model)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=10, gamma=0.5)
    loss_fn = nn.NLLLoss()
    stream = _Stream(len(data.train_y), seed)
    history = {"val_acc": [], "pulses": [], "mean_abs_x": [], "mean_abs_d": [], "samples_per_s": []}
    for _ in range(epochs):
        before = [e.totals() for e in estimates]
        rate, accuracy = run_epoch(model, optimizer, scheduler, loss_fn, stream, data, BATCH, samples_per_epoch)
        history["samples_per_s"].append(rate)
        history["val_acc"].append(accuracy)
        record_epoch(history, estimates, before)
    return history


def run_epoch(model, optimizer, scheduler, loss_fn, stream, data, batch_size: int, samples: int) -> tuple[float, float]:
    """One epoch: ``samples`` training samples in mini-batches of ``batch_size`` from ``stream`` (ferrolib's
    sample order), the lr schedule's step, then the validation accuracy; returns (samples/s, accuracy)."""
    model.train()
    started, seen = time.perf_counter(), 0
    while seen < samples:
        index = stream.take(min(batch_size, samples - seen))
        optimizer.zero_grad()
        loss = loss_fn(model(data.train_x[index]), data.train_y[index])
        loss.backward()
        optimizer.step()
        seen += len(index)
    rate = seen / (time.perf_counter() - started)
    scheduler.step()
    model.eval()
    with torch.no_grad():
        accuracy = float((model(data.val_x).argmax(1) == data.val_y).float().mean())
    return rate, accuracy


def record_epoch(history: dict, estimates: list[PulseEstimate], before: list[tuple]) -> None:
    """Append one epoch of every layer's expected pulses (up, down) and mean |x|, |d| per mini-batch to
    ``history``, from the estimators' running totals now and ``before`` the epoch."""
    changes = [np.subtract(e.totals(), b) for e, b in zip(estimates, before)]
    history["pulses"].append([[float(c[0]), float(c[1])] for c in changes])
    history["mean_abs_x"].append([float(c[2] / max(c[4], 1)) for c in changes])
    history["mean_abs_d"].append([float(c[3] / max(c[4], 1)) for c in changes])


def pulse_response(params: dict, directions: list[int], start: float) -> np.ndarray:
    """State after each single pulse in aihwkit: BL 1 and ``lr`` = the device's weight granularity make
    ``p = q = 1``, one coincidence per update; ``W -= lr d x`` with x = -1 and d = the direction."""
    from aihwkit.simulator.configs import SingleRPUConfig
    from aihwkit.simulator.tiles import AnalogTile

    config = SingleRPUConfig(device=piecewise_device(params))
    config.update.desired_bl = 1
    config.update.update_management = False
    config.update.update_bl_management = False
    tile = AnalogTile(1, 1, config)
    tile.set_learning_rate(device_granularity(params))
    tile.set_weights(torch.full((1, 1), float(start)))
    states = []
    for direction in directions:
        tile.update(-torch.ones(1, 1), torch.full((1, 1), float(direction)))
        states.append(float(tile.get_weights()[0][0, 0]))
    return np.array(states)


def version() -> str:
    import aihwkit

    return aihwkit.__version__

"""aihwkit 1.2 in the paper's configuration, as a throughput peer (imports aihwkit: runs only in the cross-check
environment, started by ``benchmarks/paper_profile_throughput.py``).

The configuration is the one the paper's scripts printed (``RPU_Config.txt``): ``SingleRPUConfig`` for sgd,
``ReferenceUnitCell`` (device and a reference at the symmetry point) for sps, ``DigitalRankUpdateRPUConfig`` with
``MixedPrecisionCompound`` and a ``DETERMINISTIC_IMPLICIT`` transfer for mp; default ``IOParameters()`` forward
and backward, default mapping (digital bias, tiles of at most 512 inputs: fc1 on two tiles of 392) with weight
scaling off, input range off; the network ``nn.Sequential`` of torch's default init converted to analog,
``AnalogSGD``. Device, learning rates, data and batch order are ferrolib's ``paper`` profile's (the same fitted
device, exported with ``to_aihwkit``; the same MNIST tensors and ``randperm`` order as the ferrolib runners).

    python crosscheck/paper_peer.py --device ID170ZR5000 --pulse-width 2e-8 --algorithms sgd sps mp --threads 1 2

Protocol (one JSON object per line): after building every network and training 5 warm-up batches per algorithm
and thread count it prints ``{"ready": ...}``; then for every line ``{"algorithm", "threads", "batches"}`` read on
stdin it trains that many batches and prints ``{"wall": samples/s, "cpu": samples per CPU-second}``, timed in
here (no pipe or data loading in the timing); end of input ends it. Thread counts apply to torch and, through
threadpoolctl, to aihwkit's OpenBLAS and OpenMP pools.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import ferrolib  # noqa: F401, I001 - first: the same thread environment as the ferrolib runners
import torch
from torch import nn

import aihwkit_peer

from ferrolib.devices import to_aihwkit
from ferrolib.training.profiles import config_from_profile
from ferrolib.training.run import TrainConfig, load_data, resolve_device

BUILD_CONFIG_NAMES = {"ttv2": "ttv2", "cttv2": "c-ttv2", "agad": "agad"}
"""aihwkit's ``build_config`` names of ferrolib's transfer rules."""

WARM_UP_BATCHES = 5
"""Batches trained per algorithm and thread count before the first timing (as the ferrolib runners)."""


def piecewise_device(params: dict):
    """aihwkit ``PiecewiseStepDevice`` of exported parameters, noise-free (as the paper's fits)."""
    from aihwkit.simulator.configs import PiecewiseStepDevice

    return PiecewiseStepDevice(
        dw_min=params["dw_min"], up_down=params["up_down"], w_min=params["w_min"], w_max=params["w_max"],
        piecewise_up=list(params["piecewise_up"]), piecewise_down=list(params["piecewise_down"]),
        dw_min_dtod=0.0, dw_min_std=0.0, w_min_dtod=0.0, w_max_dtod=0.0, up_down_dtod=0.0, write_noise_std=0.0,
        reset_std=0.0)


def paper_rpu_config(algorithm: str, params: dict, granularity: float):
    """The paper's RPU configuration of ``algorithm`` (sgd, sps, mp; the transfer rules as ``build_config`` builds
    them, not in the paper): default IO both ways, default mapping."""
    from aihwkit.simulator.configs import (DigitalRankUpdateRPUConfig, IOParameters, MixedPrecisionCompound,
                                           SingleRPUConfig, UpdateParameters)
    from aihwkit.simulator.configs.compounds import ReferenceUnitCell
    from aihwkit.simulator.parameters.enums import PulseType
    from aihwkit.simulator.parameters.mapping import MappingParameter

    mapping = MappingParameter(weight_scaling_omega=0.0, weight_scaling_lr_compensation=False,
                               learn_out_scaling=False)
    update = UpdateParameters()
    if algorithm == "mp":
        update.pulse_type = PulseType.DETERMINISTIC_IMPLICIT
        config = DigitalRankUpdateRPUConfig(
            device=MixedPrecisionCompound(device=piecewise_device(params), granularity=granularity),
            forward=IOParameters(), backward=IOParameters(), update=update, mapping=mapping)
    elif algorithm in ("sgd", "sps"):
        device = piecewise_device(params)
        config = SingleRPUConfig(device=ReferenceUnitCell([device]) if algorithm == "sps" else device,
                                 forward=IOParameters(), backward=IOParameters(), update=update, mapping=mapping)
    elif algorithm in BUILD_CONFIG_NAMES:  # build_config's transfer compound: default IO, update desired_bl 5
        from aihwkit.simulator.configs import build_config

        config = build_config(BUILD_CONFIG_NAMES[algorithm], piecewise_device(params), mapping=mapping)
    else:
        raise ValueError(f"no paper configuration of {algorithm!r} in aihwkit; expected sgd, sps, mp or one of "
                         f"{sorted(BUILD_CONFIG_NAMES)}")
    config.pre_post.input_range.enable = False
    return config


def symmetry_point(params: dict) -> float:
    """The paper's reference value: the mean of the last 5 weights of 100 alternating single pulses from w = 0."""
    from aihwkit.simulator.configs import SingleRPUConfig
    from aihwkit.simulator.tiles import AnalogTile

    config = SingleRPUConfig(device=piecewise_device(params))
    config.update.desired_bl = 1
    config.update.update_management = False
    config.update.update_bl_management = False
    tile = AnalogTile(1, 1, config)
    tile.set_learning_rate(params["dw_min"] * params["piecewise_up"][len(params["piecewise_up"]) // 2])
    tile.set_weights(torch.zeros(1, 1))
    weights = []
    for index in range(100):
        tile.update(-torch.ones(1, 1), torch.full((1, 1), 1.0 if index % 2 == 0 else -1.0))
        weights.append(float(tile.get_weights()[0][0, 0]))
    return sum(weights[-5:]) / 5


def paper_network(algorithm: str, params: dict, granularity: float, seed: int) -> nn.Module:
    """784-256-128-10 sigmoid MLP with torch's default init, converted to analog tiles of the paper's config; sps
    references programmed to the symmetry point, the devices to the initial weights (w_eff = the initial weights)."""
    from aihwkit.nn.conversion import convert_to_analog

    torch.manual_seed(seed)
    model = convert_to_analog(paper_sequential(), paper_rpu_config(algorithm, params, granularity))
    if algorithm == "sps":
        reference = symmetry_point(params)
        for layer in model.analog_layers():
            program_reference(layer, *layer.get_weights(), reference)
    return model


def paper_sequential(sizes: tuple[int, ...] = (784, 256, 128, 10)) -> nn.Module:
    """The paper's sigmoid MLP (784-256-128-10) with a log-softmax output, torch's default init (digital)."""
    layers: list[nn.Module] = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(n_in, n_out), nn.Sigmoid()]
    layers[-1] = nn.LogSoftmax(dim=1)
    return nn.Sequential(*layers)


def program_reference(layer, weight: torch.Tensor, bias: torch.Tensor, reference: float) -> None:
    """Program an sps layer (``ReferenceUnitCell``: device 0 updated, device 1 the reference): every reference
    device to ``reference``, every device to ``weight + reference``, so the effective weight is ``weight``."""
    for tile in layer.analog_tiles():
        tile.set_hidden_update_index(1)
    layer.set_weights(torch.full_like(weight, reference), bias)
    for tile in layer.analog_tiles():
        tile.set_hidden_update_index(0)
    layer.set_weights(weight + reference, bias)


def crosscheck_model(config: TrainConfig, params: dict, granularity: float, reference: float | None):
    """The cross-check's aihwkit network of ``config`` (a ``paper`` profile run): the paper's RPU configuration,
    programmed with ferrolib's initial weights of the run's seed (``loop._init_weights``, bias to the digital bias)
    and, for sps, with ferrolib's reference value ``reference`` (w_eff = the initial weights); one pulse estimate
    per analog tile (fc1's two tiles each their own), hooked onto the tile's update. Returns (model, estimates
    per layer)."""
    from aihwkit.nn.conversion import convert_to_analog
    from aihwkit.simulator.configs import FloatingPointRPUConfig

    from ferrolib.training.loop import _init_weights

    sizes = [784, *config.hidden, 10]
    rpu = FloatingPointRPUConfig() if config.algorithm == "fp" else paper_rpu_config(config.algorithm, params,
                                                                                     granularity)
    model = convert_to_analog(paper_sequential(tuple(sizes)), rpu)
    initial = _init_weights(sizes, torch.Generator().manual_seed(config.seed))
    device = {"params": params, "granularity": granularity}
    estimates = []
    for layer, weight in zip(model.analog_layers(), initial):
        matrix, bias = weight[:, :-1].float().contiguous(), weight[:, -1].float().contiguous()
        if config.algorithm == "sps":
            program_reference(layer, matrix, bias, reference)
        else:
            layer.set_weights(matrix, bias)
        if config.algorithm == "fp" or config.algorithm in BUILD_CONFIG_NAMES:
            continue  # fp programs nothing; aihwkit's transfer compounds apply pulses no estimate here follows
        layer_estimates = []
        for tile in layer.analog_tiles():
            estimate = aihwkit_peer.PulseEstimate(config.algorithm, device, (tile.out_size, tile.in_size),
                                                  analog_bias=False, implicit_transfer=config.algorithm == "mp")
            tile.update = aihwkit_peer._observed(tile, tile.update, estimate)
            layer_estimates.append(estimate)
        estimates.append(layer_estimates)
    return model, estimates


def train(config: TrainConfig, device, data, epochs: int) -> dict:
    """One aihwkit run of the ``paper``-profile run ``config`` on ferrolib's ``data`` (the paper's split), initial
    weights and sample order (``loop._Stream`` of the seed), lr halved every ``config.lr_decay_every`` epochs:
    per-epoch validation accuracy, expected pulses per layer (tiles summed) and polarity, samples/s."""
    from aihwkit.optim import AnalogSGD

    from ferrolib.symmetry import reference_point
    from ferrolib.training.loop import _Stream

    up, down = device.steps_at_zero
    params = to_aihwkit(device)
    reference = None
    if config.algorithm == "sps":  # ferrolib's reference of the nominal device, as its sps layers compute it
        reference = float(reference_point(device.config.devices(torch.float64), config.sps_reference))
    torch.manual_seed(config.seed)
    model, estimates = crosscheck_model(config, params, (abs(up) + abs(down)) / 2, reference)
    optimizer = AnalogSGD(model.parameters(), lr=config.lr)
    optimizer.regroup_param_groups(model)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.lr_decay_every,
                                                gamma=config.lr_decay_factor)
    loss_fn = nn.NLLLoss()
    stream = _Stream(len(data.train_y), config.seed)
    samples_per_epoch = config.samples_per_epoch or len(data.train_y)
    history = {"val_acc": [], "pulses": [], "samples_per_s": [], "reference": reference}
    for _ in range(epochs):
        before = [[e.totals() for e in layer] for layer in estimates]
        rate, accuracy = aihwkit_peer.run_epoch(model, optimizer, scheduler, loss_fn, stream, data, config.batch_size,
                                                samples_per_epoch)
        history["samples_per_s"].append(rate)
        history["val_acc"].append(accuracy)
        history["pulses"].append([[float(sum(e.totals()[p] - b[p] for e, b in zip(layer, start))) for p in (0, 1)]
                                  for layer, start in zip(estimates, before)])
    return history


class PeerRunner:
    """One aihwkit network of one algorithm and the batch stream it trains on (continues across measurements)."""

    def __init__(self, config: TrainConfig, params: dict, granularity: float, data, order: torch.Tensor) -> None:
        from aihwkit.optim import AnalogSGD

        self.config = config
        self.model = paper_network(config.algorithm, params, granularity, config.seed)
        self.optimizer = AnalogSGD(self.model.parameters(), lr=config.lr)
        self.optimizer.regroup_param_groups(self.model)
        self.loss = nn.NLLLoss()
        self.data = data
        self.order = order
        self.step = 0

    def train(self, batches: int) -> tuple[float, float]:
        """Train ``batches`` mini-batches; samples per second of wall time and of this process's CPU time."""
        b = self.config.batch_size
        started, cpu_started = time.perf_counter(), time.process_time()
        for _ in range(batches):
            index = self.order[(self.step * b) % (len(self.order) - b):][:b]
            self.optimizer.zero_grad()
            self.loss(self.model(self.data.train_x.index_select(0, index)), self.data.train_y[index]).backward()
            self.optimizer.step()
            self.step += 1
        return batches * b / (time.perf_counter() - started), batches * b / (time.process_time() - cpu_started)


def set_peer_threads(threads: int) -> None:
    """``threads`` in torch and in every OpenBLAS / OpenMP pool loaded (aihwkit's own, through threadpoolctl)."""
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    threadpool_limits(limits=threads)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="ID170ZR5000")
    parser.add_argument("--pulse-width", type=float, default=2e-8)
    parser.add_argument("--algorithms", nargs="+", default=["sgd", "sps", "mp"])
    parser.add_argument("--threads", type=int, nargs="+", default=[1], help="thread counts to warm up")
    args = parser.parse_args(argv)
    protocol, sys.stdout = sys.stdout, sys.stderr  # what ferrolib and aihwkit print must not enter the protocol
    import aihwkit
    from threadpoolctl import threadpool_info

    configs = {alg: config_from_profile("paper", alg, device_id=args.device, pulse_width=args.pulse_width)
               for alg in args.algorithms}
    first = next(iter(configs.values()))
    device = resolve_device(first)
    up, down = device.steps_at_zero
    data = load_data(first)
    order = torch.randperm(len(data.train_y), generator=torch.Generator().manual_seed(0))
    runners = {alg: PeerRunner(config, to_aihwkit(device), (abs(up) + abs(down)) / 2, data, order)
               for alg, config in configs.items()}
    for n in args.threads:
        set_peer_threads(n)
        for runner in runners.values():
            runner.train(WARM_UP_BATCHES)
    pools = sorted({f"{pool['internal_api']}:{pool['filepath'].rsplit('/', 1)[-1]}" for pool in threadpool_info()})
    print(json.dumps({"ready": True, "aihwkit": aihwkit.__version__, "torch": torch.__version__, "pools": pools}),
          file=protocol, flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        set_peer_threads(request["threads"])
        wall, cpu = runners[request["algorithm"]].train(request["batches"])
        print(json.dumps({"wall": wall, "cpu": cpu}), file=protocol, flush=True)


if __name__ == "__main__":
    main()

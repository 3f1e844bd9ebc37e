"""Training throughput (samples/s) of fp, sgd, mp and sps on the paper's network and batch size.

    python benchmarks/train_throughput.py [--batches 150] [--device ID170ZR5000] [--pulse-width 2e-8] [--json]

All four are measured in the same run on the same MNIST batches (the machine may be shared, so compare the
ratios to fp rather than absolute numbers). Each algorithm runs a few warm-up batches first (JIT compilation),
then ``--batches`` timed mini-batches; the paper profile's run time is extrapolated to its 1.2 M samples.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import torch

from ferrolib.training import ALGORITHMS, PAPER_TRAIN_SAMPLES, TrainConfig
from ferrolib.training.run import build_network, load_data, validate


def measure(algorithm: str, device_id: str, pulse_width: float, batches: int, warmup: int = 5) -> dict:
    """Samples per second of ``batches`` paper-profile mini-batches of ``algorithm``."""
    config = TrainConfig.paper(algorithm, device_id=device_id, pulse_width=pulse_width)
    device = validate(config)
    data = load_data(config)
    network, _ = build_network(config, device, data.train_x.shape[1])
    order = torch.randperm(len(data.train_y), generator=torch.Generator().manual_seed(0))
    b = config.batch_size

    def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        index = order[(step * b) % (len(order) - b):][:b]
        return data.train_x[index], data.train_y[index]

    for step in range(warmup):
        network.train_step(*batch(step), config.lr, step)
    started = time.perf_counter()
    for step in range(warmup, warmup + batches):
        network.train_step(*batch(step), config.lr, step)
    elapsed = time.perf_counter() - started
    rate = batches * b / elapsed
    samples = config.epochs * (config.samples_per_epoch or PAPER_TRAIN_SAMPLES)
    return {"samples_per_s": rate, "paper_run_s": samples / rate}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=150)
    parser.add_argument("--device", default="ID170ZR5000")
    parser.add_argument("--pulse-width", type=float, default=2e-8)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    results = {alg: measure(alg, args.device, args.pulse_width, args.batches) for alg in ALGORITHMS}
    for alg in ALGORITHMS:
        results[alg]["ratio_to_fp"] = results[alg]["samples_per_s"] / results["fp"]["samples_per_s"]
    report = {
        "device": args.device, "pulse_width_s": args.pulse_width, "batch_size": 64, "network": "784-256-128-10",
        "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "algorithms": results,
    }
    if args.json:
        print(json.dumps(report, sort_keys=True))
    else:
        print(f"{args.device} {args.pulse_width:g} s, batch 64, {report['torch_threads']} torch threads")
        print(f"{'algorithm':>9} {'samples/s':>10} {'ratio to fp':>12} {'paper run (s)':>14}")
        for alg, row in results.items():
            print(f"{alg:>9} {row['samples_per_s']:>10.0f} {row['ratio_to_fp']:>12.2f} {row['paper_run_s']:>14.0f}")
    return report


if __name__ == "__main__":
    main()

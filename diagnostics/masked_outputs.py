#!/usr/bin/env python3
"""How many forward outputs the periphery masks: aihwkit's tile sends no error back through an output at or beyond
``0.999 out_scale out_bound`` (12 with the default IO), so a layer whose outputs sit there stops the error from
reaching the layers below it. Trains one run of a profile and counts, per analog tile shape, the fraction of
forward outputs masked over every forward read of the run (training and evaluation).

    python diagnostics/masked_outputs.py --device ID161ZR15000 --pulse-width 2e-8 --algorithm mp --epochs 1

Prints the run's validation accuracy and pulses per layer, then one line per tile shape. The run is not cached
(a temporary results folder), so the count always comes from training.
"""
from __future__ import annotations

import argparse
import collections
import tempfile

import ferrolib  # noqa: F401 - before torch: the thread environment
from ferrolib.training import periphery
from ferrolib.training.loop import train
from ferrolib.training.profiles import config_from_profile


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="ID161ZR15000")
    parser.add_argument("--pulse-width", type=float, default=2e-8)
    parser.add_argument("--algorithm", default="mp")
    parser.add_argument("--profile", default="paper")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samples", type=int, default=None, help="samples per epoch (default: the profile's)")
    parser.add_argument("--subset", action="store_true",
                        help="the offline MNIST subset with a stratified split instead of the profile's data")
    args = parser.parse_args(argv)
    data = {"data": "subset", "split": "stratified", "eval_limit": 500} if args.subset else {}
    config = config_from_profile(args.profile, args.algorithm, device_id=args.device, pulse_width=args.pulse_width,
                                 seed=args.seed, epochs=args.epochs, snapshot_epochs=(),
                                 samples_per_epoch=args.samples, **data)
    masked: dict[tuple[int, int], list[int]] = collections.defaultdict(lambda: [0, 0])
    unmasked_forward = periphery.forward

    def counting_forward(weight, x, io, draw):
        y, saturated, reads = unmasked_forward(weight, x, io, draw)
        if saturated is not None:
            count = masked[tuple(weight.shape)]
            count[0] += int(saturated.sum())
            count[1] += saturated.numel()
        return y, saturated, reads

    periphery.forward = counting_forward
    try:
        with tempfile.TemporaryDirectory() as folder:
            result = train(config, folder, progress=False)
    finally:
        periphery.forward = unmasked_forward
    print(f"{args.device} {args.pulse_width:g} s {args.algorithm} ({args.profile}, seed {args.seed}): validation "
          f"{result['val_acc'].values.round(3).tolist()}, pulses per layer (up, down) "
          f"{result['pulses'].values.sum(0).tolist()}")
    if not masked:
        print("no tile reads with an output bound (no gradient mask in this profile)")
    for shape, (count, total) in masked.items():
        print(f"tile {shape[0]} x {shape[1]}: {count / total:.4f} of {total} forward outputs masked")


if __name__ == "__main__":
    main()

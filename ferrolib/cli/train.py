"""``ferrolib train``: one cached training run of the paper's MLP on a fitted device.

    ferrolib train --device ID170ZR5000 --pulse-width 20e-9 --algorithm mp --epochs 25 --seed 0 [--lr 0.5]
                   [--profile ideal|paper|smoke|plain] [--model piecewise] [--c2c 0] [--d2d 0]
                   [--pulse-mode stochastic] [--periphery]
                   [--results-dir DIR] [--threads N] [--no-progress] [--json] [--fit-missing]

Prints per-epoch accuracy and the pulse totals and writes ``<results>/runs/<config_hash>.nc``. Invalid
input (unknown device, a pulse width with no measurement and no model, a learning rate outside the stable
range or saturating every pulse train, non-finite or negative noise, a results directory that is a file or
not writable) fails with one line before any training starts; a diverging run stops with one line.

The device model: measurements you point at ($FERROLIB_MEASUREMENTS) win over the committed fit of the same id;
else the committed fit (data/devices); a device without one is fitted only with --fit-missing. One line says which
file, which source and why (on stderr with --json).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
from typing import Any

from ..devices import MODEL_KINDS


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..training import ALGORITHMS, PULSE_MODES

    parser = subparsers.add_parser("train", help="train the MLP with fp, sgd, mp or sps on a fitted device",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="ID170ZR5000", help="device id (or synthetic-linear, ...)")
    parser.add_argument("--pulse-width", type=float, default=2e-8, help="programming pulse width in seconds")
    parser.add_argument("--model", choices=MODEL_KINDS, help="device model kind (default: the profile's, else piecewise)")
    parser.add_argument("--algorithm", default="mp", choices=ALGORITHMS)
    from ..training.profiles import PROFILES

    parser.add_argument("--profile", default="ideal", choices=sorted(PROFILES),
                        help="; ".join(f"{p.name}: {p.description}" for p in PROFILES.values()))
    parser.add_argument("--epochs", type=int, help="number of epochs (default: the profile's)")
    parser.add_argument("--lr", type=float, help="learning rate (default per algorithm)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--c2c", type=float, default=0.0, help="cycle-to-cycle noise (relative)")
    parser.add_argument("--d2d", type=float, default=0.0, help="device-to-device spread (relative)")
    parser.add_argument("--pulse-mode", default="stochastic", choices=PULSE_MODES)
    parser.add_argument("--periphery", action="store_true", help="7-bit inputs, 9-bit outputs, output noise")
    parser.add_argument("--data", choices=("auto", "full", "subset", "synthetic"),
                        help="MNIST source: full, subset, auto (what is cached) or synthetic (default: the "
                             "profile's; paper and smoke: subset, plain: auto)")
    parser.add_argument("--split", choices=("stratified", "paper"),
                        help="validation split: stratified (default) or paper (random_split 48,000 / 12,000 of full "
                             "MNIST, generator seeded 2024; needs --data full)")
    parser.add_argument("--results-dir", help="results directory (default: the repository's results/)")
    parser.add_argument("--fit-missing", action="store_true",
                        help="fit a device that has no committed fit now (else: one line naming `make fits`)")
    add_threads_option(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    parser.set_defaults(func=run)


def add_threads_option(parser: argparse.ArgumentParser) -> None:
    """``--threads N``: torch and numba threads (default: FERROLIB_THREADS, else 1: ``ferrolib.threads``)."""
    parser.add_argument("--threads", type=int, help="torch and numba threads per run (default: $FERROLIB_THREADS, "
                                                    "else 1, the fastest on small shared machines); results do "
                                                    "not depend on it")


def config_from_args(args: argparse.Namespace):
    """The TrainConfig the arguments describe: the profile's fields, then every option given (``--lr``,
    ``--model``, ``--data`` and ``--split`` only when given)."""
    from .. import validation
    from ..training import SYNTHETIC_DEVICES
    from ..training.profiles import config_from_profile

    width = args.pulse_width
    if args.device not in SYNTHETIC_DEVICES:
        width = validation.canonical_pulse_width(validation.check_name(args.device, "--device"), width)
    values: dict[str, Any] = dict(
        device_id=args.device, pulse_width=width, device_model=args.model, lr=args.lr, seed=args.seed,
        batch_size=args.batch_size, c2c=args.c2c, d2d=args.d2d, pulse_mode=args.pulse_mode, periphery=args.periphery,
    )
    for name in ("epochs", "data", "split"):
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    given = {name: value for name, value in values.items()
             if not (value is None and name in ("lr", "device_model"))}
    return config_from_profile(args.profile, args.algorithm, **given)


def summary(result) -> dict[str, Any]:
    """Per-epoch accuracies and pulse totals of a result Dataset."""
    pulses = result.pulses.sum("layer")
    return {
        "config_hash": result.attrs["config_hash"],
        "config": json.loads(result.attrs["config"]),
        "data": result.attrs["data_label"],
        "device": json.loads(result.attrs.get("device", "null")),
        "epochs": [
            {"epoch": int(e), "samples_seen": int(result.samples_seen.sel(epoch=e)),
             "train_loss": float(result.train_loss.sel(epoch=e)), "val_acc": float(result.val_acc.sel(epoch=e)),
             "test_acc": float(result.test_acc.sel(epoch=e)),
             "pulses_up": int(pulses.sel(epoch=e, polarity="up")),
             "pulses_down": int(pulses.sel(epoch=e, polarity="down")),
             "wall_time_s": float(result.wall_time.sel(epoch=e))}
            for e in result.epoch.values
        ],
        "pulses_total": {p: int(pulses.sel(polarity=p).sum()) for p in ("up", "down")},
        "final_test_acc": float(result.test_acc[-1]),
    }


def run(args: argparse.Namespace) -> int:
    from ..threads import set_threads
    from ..training import result_path, train

    config = config_from_args(args)
    set_threads(args.threads)
    with contextlib.redirect_stdout(sys.stderr if args.json else sys.stdout):  # --json: stdout holds the JSON only
        result = train(config, args.results_dir, progress=not (args.no_progress or args.json),
                       fit_missing=args.fit_missing)
    facts = summary(result)
    if args.json:
        print(json.dumps(facts, sort_keys=True))
        return 0
    print(f"{config!r}\ndata: {facts['data']}")
    device = facts["device"] or {}
    if device.get("device_used", True) and "device_id" in device:
        print(f"device: {device['device_id']} at {device['pulse_width_s']:g} s, {device['data_kind'].upper()} "
              f"({device.get('source_file', '')})")
    else:
        print("device: none (floating-point reference)")
    print(f"{'epoch':>5} {'samples':>9} {'loss':>7} {'val':>7} {'test':>7} {'pulses up':>12} {'pulses down':>12}")
    for row in facts["epochs"]:
        print(f"{row['epoch']:>5} {row['samples_seen']:>9} {row['train_loss']:>7.4f} {row['val_acc']:>7.4f} "
              f"{row['test_acc']:>7.4f} {row['pulses_up']:>12} {row['pulses_down']:>12}")
    print(f"total pulses: up {facts['pulses_total']['up']}, down {facts['pulses_total']['down']}")
    print(f"result: {result_path(config, args.results_dir)}")
    return 0

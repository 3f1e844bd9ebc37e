"""Time of the pulsed update (``pulsed.pulsed_update``) per layer inside paper-profile training, one thread.

    python benchmarks/pulsed_layers.py [--algorithms sgd sps] [--batches 150] [--device ID170ZR5000]
                                       [--pulse-width 2e-8] [--json]

Each algorithm trains ``--batches`` mini-batches (after a warm-up of 10) of the runner of
``train_throughput.py``; every call of ``pulsed_update`` is timed where training makes it, with the caches as
training leaves them (a kernel timed on its own, on the same inputs over and over, reads warm caches and learnt
branches, and looks up to twice as fast). Reported per layer (tile shape): the median, the quartiles and the
spread ``(q75 - q25)/median`` of the call time, the median number of pulses per call (of 20 more
mini-batches), and the update's share of the mini-batch (sum of the layers' medians over the median batch time).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ferrolib  # noqa: F401, E402, I001 - first: sets the thread environment before torch loads
import numpy as np  # noqa: E402

from ferrolib.threads import set_threads  # noqa: E402
from ferrolib.training import TrainConfig, pulsed  # noqa: E402
from train_throughput import Runner  # noqa: E402


def layer_times(algorithm: str, batches: int, device: str, pulse_width: float) -> dict:
    """Per tile shape: the call times (s) of every ``pulsed_update`` call and the pulses of each call of 20 more
    mini-batches (counted apart: summing the counters passes over them, which would warm the caches for the timed
    calls); and the batch times (s)."""
    runner = Runner.build(TrainConfig.ideal(algorithm, device_id=device, pulse_width=pulse_width))
    runner.train(10)
    update = pulsed.pulsed_update
    calls: dict[str, dict[str, list]] = {}

    def timed(*args) -> None:
        started = time.perf_counter()
        update(*args)
        elapsed = time.perf_counter() - started
        calls.setdefault("x".join(map(str, args[7].shape)), {"seconds": [], "pulses": []})["seconds"].append(elapsed)

    def counted(*args) -> None:
        count_up, count_down = args[9], args[10]
        before = int(count_up.sum() + count_down.sum())
        update(*args)
        calls["x".join(map(str, args[7].shape))]["pulses"].append(int(count_up.sum() + count_down.sum()) - before)

    batch_seconds = []
    try:
        pulsed.pulsed_update = timed
        for _ in range(batches):
            batch_seconds.append(runner.config.batch_size / runner.train(1)[0])
        pulsed.pulsed_update = counted
        runner.train(20)
    finally:
        pulsed.pulsed_update = update
    return {"layers": calls, "batch_seconds": batch_seconds}


def summarize(measured: dict) -> dict:
    """Medians, quartiles and spread per layer; the update's share of the median batch time."""
    layers = {}
    for shape, row in measured["layers"].items():
        q25, median, q75 = np.quantile(row["seconds"], [0.25, 0.5, 0.75])
        layers[shape] = {"median_us": 1e6 * median, "q25_us": 1e6 * q25, "q75_us": 1e6 * q75,
                         "spread": (q75 - q25) / median, "pulses": statistics.median(row["pulses"])}
    batch = statistics.median(measured["batch_seconds"])
    update = sum(row["median_us"] for row in layers.values())
    return {"layers": layers, "update_us": update, "batch_us": 1e6 * batch, "update_share": update / (1e6 * batch)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--algorithms", nargs="+", default=["sgd", "sps"], choices=["sgd", "sps"])
    parser.add_argument("--batches", type=int, default=150, help="timed mini-batches per algorithm")
    parser.add_argument("--device", default="ID170ZR5000")
    parser.add_argument("--pulse-width", type=float, default=2e-8)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args()
    if args.batches < 1:
        parser.error(f"--batches must be at least 1, got {args.batches}")
    set_threads(1)
    result = {alg: summarize(layer_times(alg, args.batches, args.device, args.pulse_width))
              for alg in args.algorithms}
    if args.json:
        print(json.dumps(result, indent=1))
        return
    print(f"{args.device} {args.pulse_width} s, one thread, {args.batches} mini-batches per algorithm")
    print("algorithm     layer  median us    q25    q75  spread  pulses")
    for alg, summary in result.items():
        for shape, row in summary["layers"].items():
            print(f"{alg:>9} {shape:>9} {row['median_us']:10.1f} {row['q25_us']:6.1f} {row['q75_us']:6.1f} "
                  f"{row['spread']:6.0%} {row['pulses']:7.0f}")
        print(f"{alg:>9}     total {summary['update_us']:10.1f} us of a {summary['batch_us']:.0f} us mini-batch "
              f"({summary['update_share']:.0%})")


if __name__ == "__main__":
    main()

"""Training throughput (samples/s, one thread) with exact reads against aihwkit's default periphery.

    python benchmarks/periphery_throughput.py [--algorithms sgd mp] [--repeats 3] [--batches 100]
                                              [--device ID170ZR5000] [--pulse-width 2e-8] [--json]

Per algorithm three variants of the ideal profile on the same MNIST batches: ``perfect`` (exact reads, one tile,
analog bias: today's runs), ``aihwkit_io`` (aihwkit's default ``IOParameters()`` forward and backward) and
``aihwkit_io_mapped`` (the same plus aihwkit's default mapping: digital bias, fc1 on two tiles of 392 inputs).
Repeats are interleaved (every variant of every algorithm once per repeat, rotated); reported are the median
samples/s and the median of the per-repeat ratios to ``perfect`` (same repeat). No timing is asserted anywhere.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import ferrolib  # noqa: F401, I001 - first: sets the thread environment before torch loads (ferrolib.threads)

from ferrolib.threads import set_threads
from ferrolib.training import TrainConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_throughput import Runner  # noqa: E402

VARIANTS: dict[str, dict] = {
    "perfect": {},
    "aihwkit_io": {"forward_io": "aihwkit_default", "backward_io": "aihwkit_default"},
    "aihwkit_io_mapped": {"forward_io": "aihwkit_default", "backward_io": "aihwkit_default",
                          "mapping": "aihwkit_default"},
}
"""TrainConfig overrides of every measured variant."""


def measure(algorithms: list[str], device: str, pulse_width: float, repeats: int, batches: int) -> dict:
    set_threads(1)
    runners = {(alg, name): Runner.build(TrainConfig.ideal(alg, device_id=device, pulse_width=pulse_width, **extra))
               for alg in algorithms for name, extra in VARIANTS.items()}
    for runner in runners.values():
        runner.train(5)
    rates: dict = {key: [] for key in runners}
    keys = list(runners)
    for repeat in range(repeats):
        shift = repeat % len(keys)
        for key in keys[shift:] + keys[:shift]:
            rates[key].append(runners[key].train(batches)[0])
    result: dict = {}
    for alg in algorithms:
        result[alg] = {}
        for name in VARIANTS:
            values = rates[(alg, name)]
            ratios = [v / p for v, p in zip(values, rates[(alg, "perfect")])]
            result[alg][name] = {"samples_per_s": statistics.median(values), "ratio_to_perfect":
                                 statistics.median(ratios), "values": values}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algorithms", nargs="+", default=["sgd", "mp"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--device", default="ID170ZR5000")
    parser.add_argument("--pulse-width", type=float, default=2e-8)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = measure(args.algorithms, args.device, args.pulse_width, args.repeats, args.batches)
    if args.json:
        print(json.dumps(result, indent=1))
        return
    print(f"{'algorithm':>9} {'variant':>18} {'samples/s':>10} {'ratio':>6}")
    for alg, rows in result.items():
        for name, row in rows.items():
            print(f"{alg:>9} {name:>18} {row['samples_per_s']:10.0f} {row['ratio_to_perfect']:6.2f}")


if __name__ == "__main__":
    main()

"""How much of a mini-batch could two threads share: the serial share and Amdahl's bound per rule.

    python benchmarks/serial_share.py [--repeats 3] [--batches 300] [--device ID170ZR5000] [--pulse-width 2e-8]

One thread, the paper's network and batch size, every rule in a rotated order per repeat (as
``train_throughput.py``). The time of a mini-batch is split into its matrix products (every ``tile.read`` of the
forward and backward passes and every ``algorithms.batch_outer`` of the updates: MKL, which threads them), its
numba kernels (``pulsed``'s entry points: parallel over rows) and the rest: Python and the small torch operations
(bias columns, sigmoid, softmax, the error), which torch runs on one thread below its grain size. With a serial
share ``f``, two threads can at best give ``1 / (f + (1 - f) / 2)`` times one thread's throughput, even if every
parallel region cost nothing to start and join (Amdahl). Timers add about a microsecond per call to the parts
they wrap, so the serial share is if anything underestimated.
"""
from __future__ import annotations

import argparse
import statistics
import time

import ferrolib  # noqa: F401, I001 - first: sets the thread environment before torch loads (ferrolib.threads)

from ferrolib.threads import set_threads
from ferrolib.training import algorithms, pulsed
from train_throughput import paper_runners, rotated_algorithms

KERNELS = ("pulsed_update", "pulsed_transfer_and_accumulate", "exact_transfer", "accumulate", "active_columns",
           "apply_deterministic")
"""``pulsed`` entry points that training's layers call (numba kernels behind thin argument checks)."""


def timed(module, name: str, clock: dict, part: str) -> None:
    """Wrap ``module.name`` so that its time adds to ``clock[part]``."""
    function = getattr(module, name)

    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            clock[part] += time.perf_counter() - started

    setattr(module, name, wrapper)


def serial_share(device: str, pulse_width: float, repeats: int, batches: int) -> dict:
    """Per rule: median ms per batch of the whole step, its products and its kernels, the serial share and the
    two-thread bound, over interleaved repeats."""
    set_threads(1)
    clock = {"products": 0.0, "kernels": 0.0}
    timed(algorithms, "read", clock, "products")
    timed(algorithms, "batch_outer", clock, "products")
    for name in KERNELS:
        timed(pulsed, name, clock, "kernels")
    runners = paper_runners(device, pulse_width)
    parts = {alg: [] for alg in runners}
    for runner in runners.values():
        runner.train(10)
    for repeat in range(repeats):
        for alg in rotated_algorithms(repeat):
            clock.update(products=0.0, kernels=0.0)
            started = time.perf_counter()
            runners[alg].train(batches)
            parts[alg].append(((time.perf_counter() - started) / batches, clock["products"] / batches,
                               clock["kernels"] / batches))
    result = {}
    for alg, rows in parts.items():
        step, products, kernels = (statistics.median(row[k] for row in rows) for k in range(3))
        share = max(step - products - kernels, 0.0) / step
        result[alg] = {"step_ms": 1e3 * step, "products_ms": 1e3 * products, "kernels_ms": 1e3 * kernels,
                       "serial_share": share, "two_thread_bound": 1.0 / (share + (1.0 - share) / 2.0)}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--device", default="ID170ZR5000")
    parser.add_argument("--pulse-width", type=float, default=2e-8)
    args = parser.parse_args()
    if args.repeats < 1 or args.batches < 1:
        parser.error("--repeats and --batches must be at least 1")
    result = serial_share(args.device, args.pulse_width, args.repeats, args.batches)
    print(f"{args.device} {args.pulse_width:g} s, one thread, median of {args.repeats} interleaved repeats of "
          f"{args.batches} batches (ms per batch)")
    print("rule    step  products  kernels  serial share  two-thread bound")
    for alg, row in result.items():
        print(f"{alg:>4} {row['step_ms']:7.3f} {row['products_ms']:9.3f} {row['kernels_ms']:8.3f} "
              f"{row['serial_share']:13.0%} {row['two_thread_bound']:16.2f}x")


if __name__ == "__main__":
    main()

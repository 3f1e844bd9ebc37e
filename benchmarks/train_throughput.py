"""Training throughput (samples/s) of fp, sgd, mp and sps on the paper's network and batch size.

    python benchmarks/train_throughput.py [--threads 1 2] [--runs 2] [--repeats 3] [--batches 150]
                                          [--device ID170ZR5000] [--pulse-width 2e-8] [--memory-samples 4800] [--json]

Every algorithm and thread count is measured in the same run on the same MNIST batches, interleaved: repeat r
times every thread count, every algorithm (in a rotated order) ``--batches`` timed mini-batches after a
warm-up. Reported: the median, min and max samples/s over the repeats, the spread ``(max - min)/median``, the
median of the per-repeat ratios to fp (same repeat, same thread count), and each thread count's median over
the one-thread median; the same per second of the process's CPU time (all threads), which a busy neighbour
inflates less than wall time. On a shared machine compare ratios rather than absolute numbers.

Runs in parallel (``--runs``, default: the cores available; 1 skips it): that many one-thread processes train the
same algorithm at once, as sweeps spend the cores (one run per worker); reported is their aggregate samples/s (all
samples over the span from the first start to the last finish) over one such process training alone, measured in
the same repeat, interleaved like the thread counts.

Also measured: the share of a smoke-profile epoch spent in its evaluation passes, and (``--memory-samples``,
default 4800, 0 skips it) the peak resident memory of a paper-profile run shortened to one epoch of that many samples (a fresh process
per algorithm, ``resource.getrusage`` maxrss). aihwkit peer columns are added when ``aihwkit`` imports
(through ``--peers``, the scripts of ``../shared/peers/aihwkit``), otherwise skipped with a note.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Callable
from pathlib import Path

import ferrolib  # noqa: F401, I001 - first: sets the thread environment before torch loads (ferrolib.threads)
import torch

from ferrolib.threads import available_cores, set_threads
from ferrolib.training import ALGORITHMS, PAPER_TRAIN_SAMPLES, TrainConfig
from ferrolib.training.config import validate
from ferrolib.training.data import load_data
from ferrolib.training.loop import build_network
from ferrolib.training.network import MLP

PEERS = Path(__file__).resolve().parents[1].parent / "shared" / "peers" / "aihwkit"
"""The aihwkit peer scripts beside the checkout (``../shared/peers/aihwkit``)."""


@dataclass
class Runner:
    """One network of one algorithm and the batch stream it trains on (continues across measurements)."""

    config: TrainConfig
    network: MLP
    data: object
    order: torch.Tensor
    step: int = 0

    @classmethod
    def build(cls, config: TrainConfig) -> "Runner":
        data = load_data(config)
        network, _ = build_network(config, validate(config), data.train_x.shape[1])
        order = torch.randperm(len(data.train_y), generator=torch.Generator().manual_seed(0))
        return cls(config, network, data, order)

    def train(self, batches: int) -> tuple[float, float]:
        """Train ``batches`` mini-batches; returns samples per second of wall time and of this process's CPU time
        (all its threads: on a shared machine the CPU rate is what the code costs, the wall rate what a run gets)."""
        b = self.config.batch_size
        started, cpu_started = time.perf_counter(), time.process_time()
        for _ in range(batches):
            index = self.order[(self.step * b) % (len(self.order) - b):][:b]
            self.network.train_step(self.data.train_x.index_select(0, index), self.data.train_y[index], self.config.lr,
                                    self.step)
            self.step += 1
        return batches * b / (time.perf_counter() - started), batches * b / (time.process_time() - cpu_started)


def summarize(values: list[float]) -> dict:
    """Median, min, max and spread ``(max - min)/median`` of repeated measurements."""
    median = statistics.median(values)
    return {"median": median, "min": min(values), "max": max(values),
            "spread": (max(values) - min(values)) / median if median else float("nan"), "values": values}


def paper_runners(device: str, pulse_width: float) -> dict[str, Runner]:
    """A paper-profile runner of every algorithm on the device."""
    return {alg: Runner.build(TrainConfig.ideal(alg, device_id=device, pulse_width=pulse_width))
            for alg in ALGORITHMS}


def rotated_algorithms(repeat: int) -> tuple[str, ...]:
    """Every algorithm, starting one further on each repeat (so no rule always runs first)."""
    shift = repeat % len(ALGORITHMS)
    return ALGORITHMS[shift:] + ALGORITHMS[:shift]


def throughput(device: str, pulse_width: float, threads: list[int], repeats: int, batches: int) -> dict:
    """Interleaved repeats of every thread count and algorithm; per thread count and algorithm a summary."""
    runners = paper_runners(device, pulse_width)
    rates = {n: {alg: [] for alg in ALGORITHMS} for n in threads}
    cpu_rates = {n: {alg: [] for alg in ALGORITHMS} for n in threads}
    for n in threads:  # warm-up: compiled kernels loaded, thread pools started
        set_threads(n)
        for runner in runners.values():
            runner.train(5)
    for repeat in range(repeats):
        for n in threads:
            set_threads(n)
            for alg in rotated_algorithms(repeat):
                wall, cpu = runners[alg].train(batches)
                rates[n][alg].append(wall)
                cpu_rates[n][alg].append(cpu)
    result = {}
    for n in threads:
        result[n] = {}
        for alg in ALGORITHMS:
            row = summarize(rates[n][alg])
            row["ratio_to_fp"] = statistics.median(a / f for a, f in zip(rates[n][alg], rates[n]["fp"]))
            row["cpu"] = summarize(cpu_rates[n][alg])
            row["cpu_ratio_to_fp"] = statistics.median(a / f for a, f in zip(cpu_rates[n][alg], cpu_rates[n]["fp"]))
            if threads[0] == 1:
                row["speedup_vs_1_thread"] = row["median"] / statistics.median(rates[1][alg])
            row["paper_run_s"] = PAPER_TRAIN_SAMPLES * TrainConfig.ideal(alg).epochs / row["median"]
            result[n][alg] = row
    return result


def _run_worker(connection, device: str, pulse_width: float, batches: int) -> None:
    """One-thread process holding a runner per algorithm: trains ``batches`` of the algorithm it receives and
    sends back when it started and finished (``time.monotonic``: one clock for every process); None stops it."""
    set_threads(1)
    runners = paper_runners(device, pulse_width)
    for runner in runners.values():
        runner.train(5)
    connection.send("ready")
    while (alg := connection.recv()) is not None:
        started = time.monotonic()
        runners[alg].train(batches)
        connection.send((started, time.monotonic()))


def parallel_runs(device: str, pulse_width: float, runs: int, repeats: int, batches: int) -> dict:
    """Per algorithm: ``runs`` one-thread processes training at once, aggregate samples/s over one of them alone
    (same repeat), interleaved over ``repeats`` in a rotated algorithm order."""
    context = multiprocessing.get_context("spawn")
    pipes, workers = [], []
    for _ in range(runs):
        parent, child = context.Pipe()
        worker = context.Process(target=_run_worker, args=(child, device, pulse_width, batches), daemon=True)
        worker.start()
        pipes.append(parent)
        workers.append(worker)
    samples = batches * TrainConfig.ideal("fp").batch_size
    alone = {alg: [] for alg in ALGORITHMS}
    together = {alg: [] for alg in ALGORITHMS}
    try:
        for pipe in pipes:
            pipe.recv()
        for repeat in range(repeats):
            for alg in rotated_algorithms(repeat):
                pipes[0].send(alg)
                started, finished = pipes[0].recv()
                alone[alg].append(samples / (finished - started))
                for pipe in pipes:
                    pipe.send(alg)
                spans = [pipe.recv() for pipe in pipes]
                together[alg].append(runs * samples / (max(end for _, end in spans) - min(start for start, _ in spans)))
    finally:
        for pipe in pipes:
            pipe.send(None)
        for worker in workers:
            worker.join()
    return {alg: {"one_run": summarize(alone[alg]), "runs": summarize(together[alg]),
                  "speedup_vs_one_run": statistics.median(t / a for t, a in zip(together[alg], alone[alg]))}
            for alg in ALGORITHMS}


def evaluation_share(device: str, pulse_width: float) -> dict:
    """Share of one smoke-profile epoch (train + its validation and test passes) spent evaluating."""
    shares = {}
    for alg in ALGORITHMS:
        config = TrainConfig.smoke(alg, device_id=device, pulse_width=pulse_width)
        runner = Runner.build(config)
        runner.train(2)
        batches = -(-len(runner.data.train_y) // config.batch_size)
        train_s = batches * config.batch_size / runner.train(batches)[0]
        started = time.perf_counter()
        for x in (runner.data.val_x, runner.data.test_x):
            runner.network.predict(x, config.eval_batch_size)
        eval_s = time.perf_counter() - started
        shares[alg] = {"train_s": train_s, "eval_s": eval_s, "eval_share": eval_s / (train_s + eval_s)}
    return shares


_MEMORY_CHILD = """
import json, resource, sys, tempfile
from ferrolib.training import TrainConfig, train
alg, device, width, samples = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
with tempfile.TemporaryDirectory() as results:
    config = TrainConfig.ideal(alg, device_id=device, pulse_width=width, epochs=1, samples_per_epoch=samples)
    train(config, results, progress=False)
print(json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024))
"""


def peak_memory(device: str, pulse_width: float, samples: int, threads: int) -> dict:
    """Peak resident bytes of a fresh process running one paper-profile epoch of ``samples`` samples."""
    env = {**os.environ, "FERROLIB_THREADS": str(threads)}
    return {alg: int(subprocess.run([sys.executable, "-c", _MEMORY_CHILD, alg, device, str(pulse_width),
                                     str(samples)], check=True, capture_output=True, text=True, env=env)
                     .stdout.split()[-1]) for alg in ALGORITHMS}


def peer_columns(peers: Path, threads: list[int], batches: int, pulse_width: float) -> dict:
    """aihwkit samples/s per thread count (its own scripts), or a note saying why there are none."""
    if importlib.util.find_spec("aihwkit") is None:
        return {"note": "aihwkit does not import here: peer columns skipped"}
    if not (peers / "bench_same_device.py").is_file():
        return {"note": f"{peers}: no bench_same_device.py: peer columns skipped"}
    with tempfile.TemporaryDirectory() as folder:
        subprocess.run([sys.executable, str(peers / "export_from_ferrolib.py"), folder], check=True,
                       capture_output=True)
        return {n: json.loads(subprocess.run(
            [sys.executable, str(peers / "bench_same_device.py"), "--devices", f"{folder}/devices.json", "--data",
             f"{folder}/data.npz", "--batches", str(batches), "--threads", str(n), "--width", str(pulse_width)],
            check=True, capture_output=True, text=True).stdout) for n in threads}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="+", help="thread counts to compare (default: 1 and the "
                        "cores available); include 1 for the speedup column")
    parser.add_argument("--runs", type=int, default=available_cores(),
                        help="one-thread runs training at once for the parallel-runs column (default: the cores "
                             "available; 1 skips it)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats (at least 3)")
    parser.add_argument("--batches", type=int, default=150, help="timed mini-batches per measurement")
    parser.add_argument("--device", default="ID170ZR5000")
    parser.add_argument("--pulse-width", type=float, default=2e-8)
    parser.add_argument("--memory-samples", type=int, default=4800,
                        help="peak memory of one paper-profile epoch of this many samples (0: skip)")
    parser.add_argument("--peers", type=Path, default=PEERS, help="folder of the aihwkit peer scripts")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args(argv)
    threads = sorted(set(args.threads or [1, available_cores()]))
    if threads[0] < 1:
        parser.error(f"--threads: thread counts must be positive, got {threads[0]}")
    if args.repeats < 3:
        parser.error(f"--repeats: at least 3 interleaved repeats, got {args.repeats}")
    if args.runs < 1:
        parser.error(f"--runs: must be positive (1 skips the parallel runs), got {args.runs}")
    if args.batches < 1:
        parser.error(f"--batches: must be positive, got {args.batches}")
    if args.memory_samples < 0:
        parser.error(f"--memory-samples: must be 0 (skip) or positive, got {args.memory_samples}")
    load_average = os.getloadavg()
    report = {
        "device": args.device, "pulse_width_s": args.pulse_width, "batch_size": 64, "network": "784-256-128-10",
        "cores_available": available_cores(), "repeats": args.repeats, "batches": args.batches,
        "load_average_before": load_average,
        "thread_environment": {name: os.environ.get(name) for name in
                               ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "NUMBA_THREADING_LAYER_PRIORITY")},
        "throughput": throughput(args.device, args.pulse_width, threads, args.repeats, args.batches),
    }
    if args.runs > 1:
        report["parallel_runs"] = parallel_runs(args.device, args.pulse_width, args.runs, args.repeats, args.batches)
        report["parallel_run_count"] = args.runs
    set_threads(threads[-1])
    report["smoke_evaluation"] = evaluation_share(args.device, args.pulse_width)
    report["peers"] = peer_columns(args.peers, threads, args.batches, args.pulse_width)
    if args.memory_samples:
        report["peak_memory_bytes"] = peak_memory(args.device, args.pulse_width, args.memory_samples, threads[-1])
        report["peak_memory_samples"] = args.memory_samples
    return finish(report, args.json, print_table)


def finish(report: dict, as_json: bool, print_table: Callable[[dict], None]) -> dict:
    """Record the load average after the measurement, print ``report`` as one JSON object or as its table, and
    return it."""
    report["load_average_after"] = os.getloadavg()
    if as_json:
        print(json.dumps(report, sort_keys=True))
    else:
        print_table(report)
    return report


def header(report: dict) -> str:
    """The first line of a throughput table: device, protocol and the machine's load."""
    return (f"{report['device']} {report['pulse_width_s']:g} s, batch 64, {report['repeats']} interleaved repeats "
            f"of {report['batches']} batches; load average {report['load_average_before'][0]:.1f} before, "
            f"{report['load_average_after'][0]:.1f} after, {report['cores_available']} cores")


def print_table(report: dict) -> None:
    print(header(report))
    print(f"{'threads':>7} {'algorithm':>9} {'median/s':>9} {'min':>7} {'max':>7} {'spread':>7} {'vs fp':>6} "
          f"{'vs 1 thr':>8} {'paper run':>10} {'per CPU-s':>9} {'vs fp':>6}")
    for n, rows in report["throughput"].items():
        for alg, row in rows.items():
            speedup = f"{row['speedup_vs_1_thread']:>8.2f}" if "speedup_vs_1_thread" in row else f"{'':>8}"
            print(f"{n:>7} {alg:>9} {row['median']:>9.0f} {row['min']:>7.0f} {row['max']:>7.0f} "
                  f"{row['spread']:>7.0%} {row['ratio_to_fp']:>6.2f} {speedup} {row['paper_run_s'] / 60:>8.1f} m "
                  f"{row['cpu']['median']:>9.0f} {row['cpu_ratio_to_fp']:>6.2f}")
    if "parallel_runs" in report:
        print(f"{report['parallel_run_count']} one-thread runs at once (how sweeps use the cores), aggregate "
              f"samples/s: median (spread), vs one such run alone in the same repeat")
        print("  " + ", ".join(f"{alg} {row['runs']['median']:.0f} ({row['runs']['spread']:.0%}) "
                               f"{row['speedup_vs_one_run']:.2f}x" for alg, row in report["parallel_runs"].items()))
    print("smoke epoch: " + ", ".join(f"{alg} eval {row['eval_share']:.0%} ({row['eval_s']:.2f} of "
                                      f"{row['train_s'] + row['eval_s']:.2f} s)"
                                      for alg, row in report["smoke_evaluation"].items()))
    peers = report["peers"]
    print("aihwkit: " + (peers["note"] if "note" in peers else json.dumps(peers)))
    if "peak_memory_bytes" in report:
        print(f"peak memory, one paper-profile epoch of {report['peak_memory_samples']} samples: " + ", ".join(
            f"{alg} {size / 2**20:.0f} MiB" for alg, size in report["peak_memory_bytes"].items()))


if __name__ == "__main__":
    main()

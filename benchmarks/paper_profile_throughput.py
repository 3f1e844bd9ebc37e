"""Training throughput (samples/s) with the periphery on: ferrolib's ``paper`` profile against its ``ideal`` one
and against aihwkit 1.2 in the paper's configuration, same device, same MNIST batches, one run.

    python benchmarks/paper_profile_throughput.py [--algorithms sgd sps mp] [--threads 1 2] [--repeats 3]
                                                  [--batches 100] [--device ID170ZR5000] [--pulse-width 2e-8]
                                                  [--peer-python .crosscheck-venv/bin/python] [--json]

Measured per rule: ``paper`` (aihwkit's default ``IOParameters()`` forward and backward, default mapping: digital
bias, fc1 on two tiles; the paper's learning rates and mixed-precision transfer), ``ideal`` (exact reads, one tile,
analog bias) and ``aihwkit`` (``crosscheck/paper_peer.py``: aihwkit 1.2 with the paper's RPU configurations, run
in a second process by ``--peer-python``, by default this interpreter when it imports aihwkit, else the cross-check
environment ``.crosscheck-venv``; without aihwkit the column is skipped with a note). All three train the
``paper`` profile's device (the paper's piecewise fit) on the full-MNIST split of the paper, in the same batch
order. Every measurement trains ``--batches`` mini-batches after 5 warm-up batches per thread count (kernels
compiled, pools started); data loading and warm-up are not timed, and aihwkit times itself in its process.
Repeats are interleaved: per repeat every thread count, and in it every (variant, rule) in an order rotated by
one per repeat. Reported: median, min, max and spread ``(max - min)/median`` of samples/s, and the median, min
and max of the per-repeat ratios paper / aihwkit and paper / ideal (same repeat, same thread count); also per
CPU-second of the process that trained (less inflated by busy neighbours). No timing is asserted anywhere.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import ferrolib  # noqa: F401, I001 - first: sets the thread environment before torch loads (ferrolib.threads)
import torch

from ferrolib.threads import available_cores, set_threads
from ferrolib.training.profiles import config_from_profile
from ferrolib.training.run import build_network, load_data, validate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_throughput import Runner, finish, header, summarize  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PEER = ROOT / "crosscheck" / "paper_peer.py"
"""The aihwkit side (imports aihwkit; runs in the cross-check environment)."""
RULES = ("sgd", "sps", "mp")
VARIANTS = ("paper", "ideal", "aihwkit")
WARM_UP_BATCHES = 5


def ferrolib_runners(algorithms: list[str], device: str, pulse_width: float) -> dict[tuple[str, str], Runner]:
    """A runner per (profile, rule): the ``paper`` profile and the ``ideal`` one on the paper's data and device
    (the ideal profile's own data, the MNIST subset, and fit would change what is compared)."""
    same = {"device_id": device, "pulse_width": pulse_width, "data": "full", "split": "paper",
            "device_model": "paper_piecewise"}
    configs = {(profile, alg): config_from_profile(profile, alg, **same) for profile in ("paper", "ideal")
               for alg in algorithms}
    data = load_data(next(iter(configs.values())))
    order = torch.randperm(len(data.train_y), generator=torch.Generator().manual_seed(0))
    return {key: Runner(config, build_network(config, validate(config), data.train_x.shape[1])[0], data, order)
            for key, config in configs.items()}


def default_peer_python() -> Path:
    """This interpreter when it imports aihwkit, else the cross-check environment's (``make crosscheck``)."""
    if importlib.util.find_spec("aihwkit") is not None:
        return Path(sys.executable)
    return ROOT / ".crosscheck-venv" / "bin" / "python"


class Peer:
    """The aihwkit process (``crosscheck/paper_peer.py``): built and warmed up on start, then one measurement per
    request."""

    def __init__(self, python: Path, algorithms: list[str], threads: list[int], device: str,
                 pulse_width: float) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        self.process = subprocess.Popen(
            [str(python), str(PEER), "--device", device, "--pulse-width", str(pulse_width), "--algorithms",
             *algorithms, "--threads", *map(str, threads)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env=env)
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"{PEER.name} ended before it was ready (exit {self.process.wait()})")
        self.info = json.loads(line)

    def train(self, algorithm: str, threads: int, batches: int) -> tuple[float, float]:
        self.process.stdin.write(json.dumps({"algorithm": algorithm, "threads": threads, "batches": batches}) + "\n")
        self.process.stdin.flush()
        reply = json.loads(self.process.stdout.readline())
        return reply["wall"], reply["cpu"]

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


def start_peer(python: Path, algorithms: list[str], threads: list[int], device: str,
               pulse_width: float) -> tuple[Peer | None, str]:
    """The aihwkit peer, or None and a note saying why its columns are skipped."""
    if not python.is_file():
        return None, f"aihwkit columns skipped: no interpreter {python} (build one with `make crosscheck`)"
    check = subprocess.run([str(python), "-c", "import aihwkit, threadpoolctl; print(aihwkit.__version__)"],
                           capture_output=True, text=True)
    if check.returncode != 0:
        return None, f"aihwkit columns skipped: aihwkit does not import in {python}"
    return Peer(python, algorithms, threads, device, pulse_width), f"aihwkit {check.stdout.strip()} from {python}"


def measure(algorithms: list[str], threads: list[int], repeats: int, batches: int, device: str,
            pulse_width: float, peer_python: Path) -> dict:
    """Interleaved, rotated repeats of every (variant, rule) at every thread count; summaries and ratios."""
    runners = ferrolib_runners(algorithms, device, pulse_width)
    peer, note = start_peer(peer_python, algorithms, threads, device, pulse_width)
    variants = [v for v in VARIANTS if v != "aihwkit" or peer is not None]
    for n in threads:
        set_threads(n)
        for runner in runners.values():
            runner.train(WARM_UP_BATCHES)
    keys = [(variant, alg) for alg in algorithms for variant in variants]
    wall = {n: {key: [] for key in keys} for n in threads}
    cpu = {n: {key: [] for key in keys} for n in threads}
    try:
        for repeat in range(repeats):
            shift = repeat % len(keys)
            for n in threads:
                set_threads(n)
                for variant, alg in keys[shift:] + keys[:shift]:
                    rates = (peer.train(alg, n, batches) if variant == "aihwkit"
                             else runners[(variant, alg)].train(batches))
                    wall[n][(variant, alg)].append(rates[0])
                    cpu[n][(variant, alg)].append(rates[1])
    finally:
        if peer is not None:
            peer.close()
    result: dict = {"peer": note, "peer_info": peer.info if peer is not None else None, "threads": {}}
    for n in threads:
        rows: dict = {}
        for alg in algorithms:
            rows[alg] = {variant: {"wall": summarize(wall[n][(variant, alg)]),
                                   "cpu": summarize(cpu[n][(variant, alg)])} for variant in variants}
            for other in ("aihwkit", "ideal"):
                if other in variants:
                    rows[alg][f"paper_over_{other}"] = {
                        kind: ratio_summary(table[n][("paper", alg)], table[n][(other, alg)])
                        for kind, table in (("wall", wall), ("cpu", cpu))}
        result["threads"][n] = rows
    return result


def ratio_summary(numerator: list[float], denominator: list[float]) -> dict:
    """Median, min and max of the per-repeat ratios."""
    ratios = [a / b for a, b in zip(numerator, denominator)]
    return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios), "values": ratios}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algorithms", nargs="+", default=list(RULES), help="rules to measure (sgd, sps, mp)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1], help="thread counts (default 1)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats (at least 3)")
    parser.add_argument("--batches", type=int, default=100, help="timed mini-batches per measurement")
    parser.add_argument("--device", default="ID170ZR5000")
    parser.add_argument("--pulse-width", type=float, default=2e-8)
    parser.add_argument("--peer-python", type=Path, default=None,
                        help="interpreter that imports aihwkit (default: this one if it does, else .crosscheck-venv)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.algorithms) - set(RULES))
    if unknown:
        parser.error(f"--algorithms: {unknown} not among {list(RULES)}")
    threads = sorted(set(args.threads))
    if threads[0] < 1:
        parser.error(f"--threads: thread counts must be positive, got {threads[0]}")
    if args.repeats < 3:
        parser.error(f"--repeats: at least 3 interleaved repeats, got {args.repeats}")
    if args.batches < 1:
        parser.error(f"--batches: must be positive, got {args.batches}")
    report = {"device": args.device, "pulse_width_s": args.pulse_width, "batch_size": 64,
              "cores_available": available_cores(), "repeats": args.repeats, "batches": args.batches,
              "load_average_before": os.getloadavg()}
    report.update(measure(args.algorithms, threads, args.repeats, args.batches, args.device, args.pulse_width,
                          args.peer_python or default_peer_python()))
    return finish(report, args.json, print_table)


def print_table(report: dict) -> None:
    print(f"{header(report)}; {report['peer']}")
    print(f"{'threads':>7} {'rule':>4} {'variant':>8} {'median/s':>9} {'min':>7} {'max':>7} {'spread':>7} "
          f"{'per CPU-s':>9}   paper over it: median [min, max] (per CPU-s)")
    for n, rows in report["threads"].items():
        for alg, row in rows.items():
            for variant in VARIANTS:
                if variant not in row:
                    continue
                wall, cpu = row[variant]["wall"], row[variant]["cpu"]
                ratio = row.get(f"paper_over_{variant}")
                text = (f"{ratio['wall']['median']:.2f} [{ratio['wall']['min']:.2f}, {ratio['wall']['max']:.2f}] "
                        f"({ratio['cpu']['median']:.2f})" if ratio else "")
                print(f"{n:>7} {alg:>4} {variant:>8} {wall['median']:>9.0f} {wall['min']:>7.0f} {wall['max']:>7.0f} "
                      f"{wall['spread']:>7.0%} {cpu['median']:>9.0f}   {text}")


if __name__ == "__main__":
    main()

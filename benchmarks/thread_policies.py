"""Why ferrolib trains one thread per run: two threads against one under each OpenMP wait policy, on an idle
machine and beside one busy process.

    python benchmarks/thread_policies.py [--batches 100] [--repeats 3] [--timeout 600] [--json]

For every wait policy (``OMP_WAIT_POLICY=PASSIVE``, ferrolib's default: idle threads sleep; ``GOMP_SPINCOUNT``
10^4 and 10^5: spin about 0.1 and 1 ms, then sleep; ``OMP_WAIT_POLICY=ACTIVE``: spin) and neighbour (none; one
process spinning on a core), ``train_throughput.py --threads 1 2 --runs 1`` runs in a fresh process with that
environment, and the median two-thread throughput over the one-thread one (same run, interleaved) is printed per
algorithm. Then ``--runs 2`` (two one-thread processes at once, the way sweeps use the cores) on the idle machine. A
measurement that exceeds ``--timeout`` seconds (spinning threads beside a busy process can take minutes) is
reported as timed out.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

THROUGHPUT = Path(__file__).with_name("train_throughput.py")
POLICIES = {
    "sleep (PASSIVE)": {"OMP_WAIT_POLICY": "PASSIVE"},
    "spin 1e4, sleep": {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "10000"},
    "spin 1e5, sleep": {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "100000"},
    "spin (ACTIVE)": {"OMP_WAIT_POLICY": "ACTIVE"},
}
"""Environment of each wait policy (libgomp: an explicit GOMP_SPINCOUNT overrides the policy's spin count)."""


def measure(environment: dict, arguments: list[str], timeout: float) -> dict | None:
    """``train_throughput.py --json`` with ``arguments`` in a fresh process with ``environment``; None on timeout."""
    env = {key: value for key, value in os.environ.items() if key not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    try:
        done = subprocess.run([sys.executable, str(THROUGHPUT), "--json", "--memory-samples", "0", *arguments],
                              env={**env, **environment}, capture_output=True, text=True, timeout=timeout,
                              check=True)
    except subprocess.TimeoutExpired:
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def busy_neighbour() -> subprocess.Popen:
    """A process that keeps one core busy until killed."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=100, help="timed mini-batches per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats (at least 3)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds before a measurement is given up")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args(argv)
    if args.batches < 1 or args.repeats < 3 or args.timeout <= 0:
        parser.error("--batches must be positive, --repeats at least 3 and --timeout positive")
    common = ["--batches", str(args.batches), "--repeats", str(args.repeats)]
    report = {"load_average_before": os.getloadavg(), "two_threads_vs_one": {}}
    for neighbour in ("idle", "one busy process"):
        for name, environment in POLICIES.items():
            spinner = busy_neighbour() if neighbour != "idle" else None
            try:
                result = measure(environment, [*common, "--threads", "1", "2", "--runs", "1"], args.timeout)
            finally:
                if spinner is not None:
                    spinner.kill()
                    spinner.wait()
            report["two_threads_vs_one"][f"{neighbour}, {name}"] = None if result is None else {
                alg: row["speedup_vs_1_thread"] for alg, row in result["throughput"]["2"].items()}
    runs = measure(POLICIES["sleep (PASSIVE)"], [*common, "--threads", "1", "--runs", "2"], args.timeout)
    report["two_runs_vs_one"] = None if runs is None else {
        alg: row["speedup_vs_one_run"] for alg, row in runs["parallel_runs"].items()}
    report["load_average_after"] = os.getloadavg()
    if args.json:
        print(json.dumps(report, sort_keys=True))
        return report
    print(f"load average {report['load_average_before'][0]:.1f} before, {report['load_average_after'][0]:.1f} after; "
          "median throughput ratios, same run")
    for label, row in [*report["two_threads_vs_one"].items(), ("idle, two one-thread runs at once vs one",
                                                                report["two_runs_vs_one"])]:
        text = "timed out" if row is None else "  ".join(f"{alg} {ratio:.2f}x" for alg, ratio in row.items())
        print(f"{label:>40}: {text}")
    return report


if __name__ == "__main__":
    main()

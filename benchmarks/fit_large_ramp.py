"""Fitting a large ramp: time and peak memory of reading and fitting a 200,000-row measurement file.

    python benchmarks/fit_large_ramp.py [--rows 200000] [--models piecewise,softbounds,powstep] [--reference-rows 2000]

The ramp is SYNTHETIC (a soft-bounds device with 5 % cycle-to-cycle scatter, written in the LBE247
``*_Summary.dat`` format to a temporary folder, labelled ``synthetic`` in its header): no measurement is that long.
Each model runs in a fresh process, which prints the wall time of ``read_summary`` + ``fit_ramp``, the peak resident
memory (``ru_maxrss``; the imports of torch, numba, scipy and xarray and the numba compilation, done first on a tiny
ramp, already take about 400 MB) and what the fit added to it, and the peak of the Python-tracked allocations
(``tracemalloc``, numpy included). Then, on ``--reference-rows``
rows, the time of one simulated response of the compiled path against the torch reference (same run, so the ratio
holds on a shared machine).
"""
from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from ferrolib import fitting, measurements
from ferrolib.devices import SoftBounds

HEADER = """test_date,test_time,device_name,device_id
01.01.2025,00:00:00,synthetic,IDSYN5000
groundWGFMU,pulseWGFMU,startVolage1,endVoltage1,startVolage2,endVoltage2,stepSize,riseTime,fallTime,pulseWidth,pulseDelay,measName
SMU2,WGFMU1,0.7,5.0,-0.6,-3.6,0.001,2e-08,2e-08,2e-08,0.001,synthetic
VStartPos (V),VEndPos (V),VStartNeg (V),VEndNeg (V),twidth (s),num_LTP,num_LTD
0.7,5.0,-0.6,-3.6,2e-08,{n_pos},{n_neg}
Pulse Number,index,Pulse Amplitude (V),R_low (ohm),R_high (ohm)
"""


def write_synthetic_ramp(path: Path, rows: int, seed: int = 0) -> Path:
    """A synthetic ramp file: rows/2 positive pulses (down) from w = 1, then rows/2 negative ones (up), of a soft-bounds
    device (steps ``a_up (1 - w)``, ``a_down (1 + w)`` with 5 % cycle-to-cycle scatter)."""
    n_down, n_up = rows // 2, rows - rows // 2
    a_down, a_up = 8.0 / rows, 10.4 / rows
    noise = 1.0 + 0.05 * np.random.default_rng(seed).standard_normal(rows)
    w, states = 1.0, []
    for k in range(rows):
        w = w - a_down * (1.0 + w) * noise[k] if k < n_down else w + a_up * (1.0 - w) * noise[k]
        states.append(w)
    resistance = 1.0 / (1e-8 * (1.2 + 0.5 * np.asarray(states)))
    amplitude = np.concatenate([np.linspace(0.7, 5.0, n_down), -np.linspace(0.6, 3.6, n_up)])
    number = np.arange(1, rows + 1)
    body = "\n".join(f"{k},{k},{a:.6f},{r:.6f},{r * 1.1:.6f}" for k, a, r in zip(number, amplitude, resistance))
    path.write_text(HEADER.format(n_pos=n_down, n_neg=n_up) + body + "\n")
    return path


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def measure_one(path: Path, model: str) -> None:
    """In this (fresh) process: compile on a tiny ramp, then read and fit ``path``; print one line."""
    with tempfile.TemporaryDirectory() as folder:
        small = write_synthetic_ramp(Path(folder) / "IDSYN_small_Summary.dat", 400)
        fitting.fit_ramp(measurements.read_summary(small), model)
    baseline = peak_rss_mb()
    tracemalloc.start()
    start = time.perf_counter()
    fitted = fitting.fit_ramp(measurements.read_summary(path), model)
    elapsed = time.perf_counter() - start
    traced = tracemalloc.get_traced_memory()[1] / 1e6
    tracemalloc.stop()
    print(f"{model:10s} read + fit {elapsed:6.2f} s   peak RSS {peak_rss_mb():5.0f} MB, of which the fit "
          f"+{peak_rss_mb() - baseline:3.0f} MB (imports and compilation {baseline:.0f} MB)   traced peak "
          f"{traced:5.1f} MB   R2 up/down {fitted.r2_up:.4f}/{fitted.r2_down:.4f}", flush=True)


def compare_with_reference(rows: int, repeats: int = 5) -> None:
    """Time one simulated ramp, compiled against the torch reference, on the same device and ramp."""
    with tempfile.TemporaryDirectory() as folder:
        path = write_synthetic_ramp(Path(folder) / "IDSYN_ref_Summary.dat", rows)
        data = fitting.prepare(measurements.read_summary(path))
    devices = SoftBounds(dw_min=8.0 / rows).devices()
    timings = {}
    for name, simulate in (("compiled", fitting.simulate_ramp_states),
                           ("reference", fitting.simulate_ramp_states_reference)):
        simulate(devices, data.down)  # warm-up (compilation)
        start = time.perf_counter()
        for _ in range(repeats):
            simulate(devices, data.down)
        timings[name] = (time.perf_counter() - start) / repeats
    print(f"one simulated ramp of {len(data.down.after)} pulses: compiled {timings['compiled'] * 1e3:.2f} ms, "
          f"torch reference {timings['reference'] * 1e3:.1f} ms (ratio {timings['reference'] / timings['compiled']:.0f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="pulses in the synthetic ramp")
    parser.add_argument("--models", default="piecewise,softbounds,powstep", help="comma-separated model kinds")
    parser.add_argument("--reference-rows", type=int, default=2000, help="rows for the compiled/reference ratio")
    parser.add_argument("--one", nargs=2, metavar=("FILE", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        measure_one(Path(args.one[0]), args.one[1])
        return
    with tempfile.TemporaryDirectory() as folder:
        large = write_synthetic_ramp(Path(folder) / "IDSYN_large_Summary.dat", args.rows)
        print(f"synthetic ramp: {args.rows} rows, {large.stat().st_size / 1e6:.1f} MB; one fresh process per model")
        for model in args.models.split(","):
            subprocess.run([sys.executable, __file__, "--one", str(large), model], check=True)
    compare_with_reference(args.reference_rows)


if __name__ == "__main__":
    main()

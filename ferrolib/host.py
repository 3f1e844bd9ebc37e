"""The floating-point code paths of this host: what makes bit-exact numbers specific to a kind of CPU.

Training and fitting are bit-identical across threads, run order and resume on one host (``ferrolib.threads``),
but compiled kernels and libraries pick their instructions by CPU: numba compiles for the host's CPU name, torch
dispatches its ATen kernels by capability (and its bundled MKL and oneDNN by instruction set, MKL also by the CPU's
vendor), numpy's ufuncs by their dispatch targets, and OpenBLAS (numpy, scipy) by core type. Different instructions round differently (fused
multiply-adds, vector widths, reduction orders), so exact digests hold per ``fingerprint``.

``AVX2_EMULATION`` makes an AVX-512 machine take the code paths of an AVX2-only host (an AMD EPYC or an older
Intel laptop), for tests and ``.ci/run``; each setting is read when its library loads, so it must be in the
environment before Python starts.
"""
from __future__ import annotations

import argparse
import os

AVX2_EMULATION: dict[str, str] = {
    "NUMBA_CPU_NAME": "haswell",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    "OPENBLAS_CORETYPE": "Haswell",
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",
}
"""Environment of an emulated AVX2 host: numba compiles for Haswell, MKL (torch's, bundled) and oneDNN stop at
AVX2, OpenBLAS (numpy's, scipy's) takes its Haswell kernels, torch's ATen kernels their AVX2 build, and numpy
disables its AVX-512 dispatch targets (numpy >= 2.4 names them X86_V4, AVX512_ICL and AVX512_SPR)."""


def cpu_vendor() -> str:
    """The CPU's vendor (``GenuineIntel``, ``AuthenticAMD``; ``/proc/cpuinfo``'s ``vendor_id``, else the platform's
    processor string): MKL picks other kernels on other vendors' CPUs at the same instruction limit."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            for line in info:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor().split()[0] if platform.processor() else "unknown"


def code_paths() -> dict[str, str]:
    """The code path of each library that rounds numbers: the CPU's vendor, numba's target CPU, torch's kernel
    capability, MKL's instruction limit (``MKL_ENABLE_INSTRUCTIONS``; ``auto``: MKL picks the CPU's best),
    OpenBLAS's core type (threadpoolctl) and numpy's enabled dispatch targets."""
    import llvmlite.binding as llvm
    import numba
    import torch
    from numpy._core import _multiarray_umath as umath

    paths = {
        "cpu": cpu_vendor(),
        "numba": str(numba.config.CPU_NAME or llvm.get_host_cpu_name()),
        "torch": str(torch.backends.cpu.get_cpu_capability()),
        "mkl": os.environ.get("MKL_ENABLE_INSTRUCTIONS", "auto"),
    }
    try:
        import threadpoolctl

        blas = [info.get("architecture", "?") for info in threadpoolctl.threadpool_info()
                if info.get("internal_api") == "openblas"]
    except ImportError:  # pragma: no cover - threadpoolctl comes with the test extras
        blas = []
    paths["openblas"] = ",".join(sorted(set(blas))) or "unknown"
    enabled = [t for t in getattr(umath, "__cpu_dispatch__", []) if umath.__cpu_features__.get(t)]
    paths["numpy"] = ",".join(enabled) or "baseline"
    return paths


def fingerprint() -> str:
    """``cpu=GenuineIntel numba=rocketlake torch=AVX512 mkl=auto openblas=SkylakeX numpy=X86_V3,X86_V4,AVX512_ICL``:
    the key of host-exact digests."""
    return " ".join(f"{name}={value}" for name, value in code_paths().items())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m ferrolib.host`` and ``ferrolib host``."""
    parser.add_argument("--avx2", nargs=argparse.REMAINDER, metavar="COMMAND",
                        help="run COMMAND (with its arguments) on an emulated AVX2 host")


def run_command(avx2: list[str] | None) -> int:
    """Print this host's fingerprint (``avx2`` None), or run the command ``avx2`` with ``AVX2_EMULATION`` in its
    environment, replacing this process."""
    if avx2 is None:
        print(fingerprint())
        return 0
    if not avx2:
        raise ValueError("--avx2 needs a command to run")
    os.execvpe(avx2[0], avx2, {**os.environ, **AVX2_EMULATION})
    return 0  # pragma: no cover - execvpe does not return


def main(argv: list[str] | None = None) -> int:
    """``python -m ferrolib.host [--avx2 COMMAND...]``: ``ferrolib host`` without loading the command line's
    modules (``.ci/run`` wraps whole commands in it)."""
    parser = argparse.ArgumentParser(prog="python -m ferrolib.host", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    try:
        return run_command(parser.parse_args(argv).avx2)
    except ValueError as error:
        parser.error(str(error))


if __name__ == "__main__":
    raise SystemExit(main())

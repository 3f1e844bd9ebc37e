"""The host fingerprint that keys the exact digests, and the AVX2 emulation: every setting takes effect."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from ferrolib import host, paths


def _fingerprint(env_extra: dict[str, str]) -> dict[str, str]:
    """``host.code_paths()`` of a fresh interpreter whose environment holds ``env_extra`` (each setting is read when
    its library loads)."""
    code = "import json; from ferrolib.host import code_paths; print(json.dumps(code_paths()))"
    env = {**os.environ, "PYTHONPATH": str(paths.ROOT), **env_extra}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_avx2_emulation_switches_every_code_path():
    """numba compiles for Haswell, torch's kernels run their AVX2 build, MKL stops at AVX2, OpenBLAS takes its
    Haswell kernels and numpy has no AVX-512 dispatch target left, whatever the real CPU (with AVX2)."""
    emulated = _fingerprint(host.AVX2_EMULATION)
    assert emulated["numba"] == "haswell"
    assert emulated["torch"] == "AVX2"
    assert emulated["mkl"] == "AVX2"
    assert emulated["openblas"] == "Haswell"
    assert not any(target in emulated["numpy"] for target in ("X86_V4", "AVX512"))
    assert emulated["cpu"] == host.cpu_vendor() != "unknown"  # no emulation changes the vendor MKL dispatches on
    assert host.fingerprint() == " ".join(f"{k}={v}" for k, v in host.code_paths().items())


def test_host_runs_a_command_under_the_emulation():
    command = [sys.executable, "-m", "ferrolib.host", "--avx2", sys.executable, "-m", "ferrolib.host"]
    out = subprocess.run(command, env={**os.environ, "PYTHONPATH": str(paths.ROOT)},
                         capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.strip().startswith(f"cpu={host.cpu_vendor()} numba=haswell torch=AVX2 mkl=AVX2 openblas=Haswell")

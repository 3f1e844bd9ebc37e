"""Where things live, so code and notebooks run from any working directory (showyourwork style).

Every location can be redirected with an environment variable, which is how tests and smoke runs
keep their outputs away from the real results.
"""
from __future__ import annotations

import os
from pathlib import Path

ROOT: Path = Path(__file__).resolve().parent.parent
"""The repository root (the folder holding ``pyproject.toml``)."""


def _env_path(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value).expanduser().resolve() if value else default


DATA: Path = _env_path("FERROLIB_DATA", ROOT / "data")
"""Small committed data: calibrated model parameters, fitted device files (``data/devices``)."""

CACHE: Path = _env_path("FERROLIB_CACHE", DATA / "cache")
"""Downloaded or converted data sets (MNIST, measurements); never committed."""

RESULTS: Path = _env_path("FERROLIB_RESULTS", ROOT / "results")
"""Training and sweep results, keyed by configuration hash."""

FIGURES: Path = _env_path("FERROLIB_FIGURES", ROOT / "figures")
"""Figures written by the notebooks."""

NOTEBOOKS: Path = ROOT / "notebooks"
"""The py:percent notebook sources."""

DEVICES: Path = DATA / "devices"
"""Fitted device files written by notebook 02 and read by the training notebooks."""

SHARED_MEASUREMENTS: Path = (ROOT.parent / "shared" / "measurements" / "LBE247").resolve()
"""The measurements shipped beside the repository (``../shared/measurements/LBE247``)."""

MEASUREMENTS_ENV = "FERROLIB_MEASUREMENTS"
"""Environment variable naming a user's own directory of ``*_Summary.dat`` files."""

MNIST_ENV = "FERROLIB_MNIST"
"""Environment variable naming a directory that holds the four MNIST IDX files (optionally gzipped)."""


def ensure(path: Path) -> Path:
    """Create ``path`` (a directory) if needed and return it."""
    path.mkdir(parents=True, exist_ok=True)
    return path

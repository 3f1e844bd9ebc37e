"""Shared fixtures: the real LBE247 measurements (skipped where absent) and small synthetic inputs."""
from __future__ import annotations

from pathlib import Path

import pytest

from ferrolib import paths

MAIN_20NS_FILE = "ID170ZR5000/ID170ZR5000_20241024132232_Summary.dat"
"""The 20 ns measurement of the main device ID170ZR5000."""


@pytest.fixture(scope="session")
def shared_measurements() -> Path:
    """The shared LBE247 folder (read-only); skips the test where it is not available."""
    if not (paths.SHARED_MEASUREMENTS / "MANIFEST.tsv").is_file():
        pytest.skip(f"shared measurements not found at {paths.SHARED_MEASUREMENTS}")
    return paths.SHARED_MEASUREMENTS


@pytest.fixture(autouse=True)
def _no_user_data_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see a user's FERROLIB_MEASUREMENTS / FERROLIB_MNIST unless they set it themselves."""
    monkeypatch.delenv(paths.MEASUREMENTS_ENV, raising=False)
    monkeypatch.delenv(paths.MNIST_ENV, raising=False)

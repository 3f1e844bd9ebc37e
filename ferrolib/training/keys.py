"""Run keys: everything that determines a run's numbers (``run_key``): the configuration hash, a content hash
of the device model actually used (``device_hash``), a hash of the training/validation/test arrays actually used
(``data_hash``), ``NUMERICS_VERSION`` and ferrolib's version. Every cached result and checkpoint is used only when
its whole key matches (``loop``)."""
from __future__ import annotations

import dataclasses
from typing import Any

from .. import __version__, provenance
from ..fitted import FittedDevice
from .config import TrainConfig, validate
from .data import load_data

NUMERICS_VERSION = 2
"""Version of the training numerics: update rules, pulse trains, noise draws, event ids, transfers, counters
(2: sample-counter event ids; aihwkit's saturated update management, weight granularity and pulsed transfer).
Rule: bump it in the same commit as any change that alters the numbers a fixed configuration, device and data
produce. It is part of every result's ``run_key``, so all cached results and checkpoints of the older numerics
are then moved aside and recomputed instead of being served."""


def device_hash(device: FittedDevice | None) -> str:
    """Content hash of the device model a run uses: its kind and parameters and every fitted fact (conductances,
    area, amplitudes, source SHA-256), not the file path or the stored trace; "none" for fp."""
    if device is None:
        return "none"
    facts = {f.name: getattr(device, f.name) for f in dataclasses.fields(device)
             if f.name not in ("trace", "source_file")}
    facts["config"] = {"kind": type(device.config).__name__, **provenance.config_dict(device.config)}
    return provenance.content_hash(facts)


def data_hash(data: Any) -> str:
    """Hash of the training, validation and test arrays a run actually uses (after the limits)."""
    return provenance.array_hash({f"{split}_{part}": getattr(data, f"{split}_{part}")
                                  for split in ("train", "val", "test") for part in ("x", "y")})


def run_key(config: TrainConfig, device: FittedDevice | None, data: Any) -> dict[str, str]:
    """Everything that determines a run's numbers: configuration, device model, data, numerics version."""
    return key_from_hashes(config, device_hash(device), data_hash(data))


def key_from_hashes(config: TrainConfig, device: str, data: str) -> dict[str, str]:
    """The ``run_key`` of ``config`` from its (already computed) device and data hashes."""
    return {"config": provenance.config_hash(config), "device": device, "data": data,
            "numerics": str(NUMERICS_VERSION), "ferrolib": __version__}


def expected_key(config: TrainConfig, fit_missing: bool = False) -> dict[str, str]:
    """The ``run_key`` ``config`` would have now (validates it, resolves its device, loads its data)."""
    return run_key(config, validate(config, fit_missing=fit_missing), load_data(config))


__all__ = ["NUMERICS_VERSION", "device_hash", "data_hash", "run_key", "key_from_hashes", "expected_key"]

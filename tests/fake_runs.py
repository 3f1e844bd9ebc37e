"""A stand-in for ``ferrolib.training``: a TrainConfig-like dataclass and a run function that fabricates a
valid tiny result Dataset (the training module's contract) from closed-form curves, so energy and sweep code
can be tested without training. Module-level so that spawned worker processes can import it."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from ferrolib import provenance
from ferrolib.measurements import device_area

LAYERS = ("fc1", "fc2", "fc3")
SHAPES = {"fc1": (784, 256), "fc2": (256, 128), "fc3": (128, 10)}
FINAL_ACCURACY = {"fp": 0.98, "mp": 0.97, "sps": 0.965, "sgd": 0.80}


@dataclass
class FakeConfig:
    device_id: str = "ID170ZR5000"
    pulse_width: float = 2e-8
    device_model: str = "piecewise"
    algorithm: str = "mp"
    lr: float = 0.5
    epochs: int = 4
    seed: int = 0
    batch_size: int = 64
    n_train: int = 1000


def fake_accuracy(config: FakeConfig) -> np.ndarray:
    """Validation accuracy per epoch: shorter pulses converge more slowly (tau grows one epoch per decade)."""
    tau = 0.5 + max(0.0, math.log10(2e-4 / config.pulse_width))
    epochs = np.arange(1, config.epochs + 1)
    return FINAL_ACCURACY[config.algorithm] * (1.0 - np.exp(-epochs / tau)) + 1e-4 * config.seed


def fake_result(config: FakeConfig) -> xr.Dataset:
    """A result Dataset following the training module's contract, with reproducible event counts."""
    rng = np.random.default_rng([config.seed, int(config.pulse_width * 1e9), len(config.algorithm)])
    epochs = np.arange(1, config.epochs + 1)
    acc = fake_accuracy(config)
    analog = config.algorithm != "fp"
    pulses = rng.integers(1_000, 100_000, size=(config.epochs, 3, 2)) * analog
    reads = np.tile([config.n_train, config.n_train, config.n_train], (config.epochs, 1))  # fp counts them too
    macs = np.array([[config.n_train * a * b for a, b in SHAPES.values()]] * config.epochs)
    macs = macs * (config.algorithm == "mp")
    attrs = provenance.provenance_attrs(
        config,
        algorithm=config.algorithm,
        seed=str(config.seed),
        device={"device_used": False} if not analog else {
            "device_id": config.device_id, "pulse_width_s": config.pulse_width, "data_kind": "synthetic",
            "area_m2": device_area(config.device_id), "amplitude_range_up": [-0.6, -3.6],
            "amplitude_range_down": [0.7, 5.0], "g_min": 5e-9, "g_max": 1e-8, "g_mean": 7.5e-9,
            "source_file": "synthetic stand-in (tests/fake_runs.py)"},
        data_source={"kind": "synthetic", "generator": "tests/fake_runs.py"},
        data_label="synthetic stand-in (tests/fake_runs.py)",
    )
    return xr.Dataset(
        {
            "train_loss": ("epoch", 1.0 - acc),
            "val_acc": ("epoch", acc),
            "test_acc": ("epoch", acc - 0.001),
            "samples_seen": ("epoch", epochs * config.n_train),
            "lr": ("epoch", np.full(config.epochs, config.lr)),
            "pulses": (("epoch", "layer", "polarity"), pulses),
            "forward_reads": (("epoch", "layer"), reads),
            "backward_reads": (("epoch", "layer"), reads),
            "digital_macs": (("epoch", "layer"), macs),
            "wall_time": ("epoch", np.full(config.epochs, 0.01)),
            "eval_reads": (("epoch", "layer"), reads // 2),
            "layer_devices": ("layer", [a * b for a, b in SHAPES.values()]),
            "layer_inputs": ("layer", [a for a, _ in SHAPES.values()]),
            "layer_outputs": ("layer", [b for _, b in SHAPES.values()]),
        },
        coords={"epoch": epochs, "layer": list(LAYERS), "polarity": ["up", "down"]},
        attrs=attrs,
    )


def fake_train(config: FakeConfig, results_dir: str | Path | None = None, progress: bool = True) -> xr.Dataset:
    """Run function with ``ferrolib.training.train``'s signature (no caching of its own)."""
    return fake_result(config)


def counting_train(config: FakeConfig, results_dir: str | Path | None = None, progress: bool = True) -> xr.Dataset:
    """Like ``fake_train`` but logs every call to ``<results_dir>/calls.log`` (works across processes)."""
    Path(results_dir).mkdir(parents=True, exist_ok=True)
    with open(Path(results_dir) / "calls.log", "a") as log:
        log.write(json.dumps(provenance.config_dict(config)) + "\n")
    if config.seed == 99:
        raise RuntimeError("simulated crash")
    return fake_result(config)


def calls(results_dir: Path) -> list[dict]:
    """Configurations ``counting_train`` was called with."""
    log = Path(results_dir) / "calls.log"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def sleeping_train(config: FakeConfig, results_dir: str | Path | None = None, progress: bool = True) -> xr.Dataset:
    """A run that never finishes on its own: marks ``<results_dir>/started-<pid>`` and sleeps (kill and Ctrl-C
    tests of sweep workers)."""
    import os
    import time

    Path(results_dir, f"started-{os.getpid()}").touch()
    time.sleep(300)
    return fake_result(config)

"""Helpers that spawned processes import (module level): a ``train`` that logs every computation it starts."""
from __future__ import annotations

import os
import time
from pathlib import Path

from ferrolib.training import loop as loop_module
from ferrolib.training.config import TrainConfig


def tiny(algorithm: str = "mp", **overrides) -> TrainConfig:
    """A sub-second run: synthetic task, synthetic device, 64 training images, one hidden layer of 8."""
    values = dict(algorithm=algorithm, device_id="synthetic-asymmetric", data="synthetic", epochs=2,
                  train_limit=64, eval_limit=50, hidden=(8,), snapshot_epochs=(), batch_size=32)
    return TrainConfig(**{**values, **overrides})


def counting(log: Path, delay_s: float = 0.0):
    """A ``build_network`` replacement that appends this process's id to ``log`` (one line per computation)
    and sleeps ``delay_s`` (so concurrent computations would overlap)."""
    original = loop_module.build_network

    def build_network(*args, **kwargs):
        with open(log, "a") as handle:
            handle.write(f"{os.getpid()}\n")
        time.sleep(delay_s)
        return original(*args, **kwargs)

    return build_network


def counted_train(config: TrainConfig, results_dir: str, log: str, delay_s: float) -> None:
    """``train`` in this process with every computation logged to ``log``."""
    loop_module.build_network = counting(Path(log), delay_s)
    loop_module.train(config, results_dir, progress=False)


def computations(log: Path) -> int:
    """How many computations ``counting`` logged."""
    return len(Path(log).read_text().splitlines()) if Path(log).exists() else 0

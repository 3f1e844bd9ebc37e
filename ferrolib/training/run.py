"""Training runs: every name of ``ferrolib.training.run`` stays importable from here (``MOVED_NAMES``) and is
defined in the module of its concern: ``config`` (``TrainConfig``, its defaults, ``validate`` and the device it
resolves), ``data`` (``load_data``), ``keys`` (``run_key``, ``NUMERICS_VERSION``), ``loop`` (``train``,
``build_network``, checkpoints) and ``results`` (the result Dataset and its provenance).
"""
from __future__ import annotations

from .. import moved

MOVED_NAMES: dict[str, str] = {
    **dict.fromkeys(("TrainConfig", "validate", "resolve_device", "resolve_device_origin", "MAX_LR", "DEFAULT_LR",
                     "PAPER_TRAIN_SAMPLES", "SYNTHETIC_DEVICES", "_coerce", "_check_config", "_check_device"),
                    "config"),
    **dict.fromkeys(("load_data", "_synthetic_digits"), "data"),
    **dict.fromkeys(("NUMERICS_VERSION", "device_hash", "data_hash", "run_key", "key_from_hashes", "expected_key"),
                    "keys"),
    **dict.fromkeys(("train", "build_network", "result_path", "TrainingDiverged", "DIVERGED_LOSS",
                     "CHECKPOINT_PROBE_BYTES", "_train", "_load_checkpoint", "_diverged", "_accuracy", "_lr",
                     "_Stream", "_init_weights"), "loop"),
    **dict.fromkeys(("LAYER_NAMES", "HIST_EDGES", "_histogram", "_snapshot", "_whole_layer_reads", "_dataset",
                     "_device_provenance", "_portable_data"), "results"),
}
"""Name -> the ``ferrolib.training`` module that defines it (``from ferrolib.training.run import train`` works)."""

__getattr__ = moved.forwarder(__name__, MOVED_NAMES)

__all__ = ["TrainConfig", "train", "validate", "run_key", "expected_key", "TrainingDiverged", "NUMERICS_VERSION",
           "MAX_LR", "DIVERGED_LOSS", "resolve_device", "resolve_device_origin", "load_data", "result_path", "DEFAULT_LR",
           "PAPER_TRAIN_SAMPLES", "SYNTHETIC_DEVICES", "LAYER_NAMES"]

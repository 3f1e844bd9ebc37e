"""Crossbar training: analog tiles, the pulsed update engine, training rules (fp, sgd, mp, sps) and cached runs.

Public API: ``TrainConfig`` (with ``.paper`` and ``.smoke`` profiles), ``train``, ``validate``, ``ALGORITHMS``.
"""
from __future__ import annotations

from .algorithms import ALGORITHMS, PULSE_MODES, UpdateSettings, make_layer
from .run import DEFAULT_LR, LAYER_NAMES, PAPER_TRAIN_SAMPLES, SYNTHETIC_DEVICES, TrainConfig, result_path, train, validate

__all__ = ["ALGORITHMS", "PULSE_MODES", "UpdateSettings", "make_layer", "DEFAULT_LR", "LAYER_NAMES",
           "PAPER_TRAIN_SAMPLES", "SYNTHETIC_DEVICES", "TrainConfig", "result_path", "train", "validate"]

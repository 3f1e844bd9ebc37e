"""Crossbar training: analog tiles, the pulsed update engine, training rules (fp, sgd, mp, sps; the transfer rules
ttv2, cttv2, agad) and cached runs.

Public API: ``TrainConfig`` (with ``.ideal`` and ``.smoke`` profiles), ``train``, ``validate``, ``ALGORITHMS``;
the read periphery and tile mapping ``IOParameters`` and ``MappingParameters`` (``periphery``); the named profiles
``PROFILES`` and ``config_from_profile`` (``profiles``).
"""
from __future__ import annotations

from .algorithms import ALGORITHMS, PULSE_MODES, UpdateSettings, make_layer
from .periphery import IOParameters, MappingParameters
from .profiles import PROFILES, config_from_profile
from .config import DEFAULT_LR, PAPER_TRAIN_SAMPLES, SYNTHETIC_DEVICES, TrainConfig, validate
from .loop import result_path, train
from .results import LAYER_NAMES

__all__ = ["ALGORITHMS", "PULSE_MODES", "UpdateSettings", "make_layer", "DEFAULT_LR", "LAYER_NAMES",
           "PAPER_TRAIN_SAMPLES", "SYNTHETIC_DEVICES", "TrainConfig", "result_path", "train", "validate",
           "IOParameters", "MappingParameters", "PROFILES", "config_from_profile"]

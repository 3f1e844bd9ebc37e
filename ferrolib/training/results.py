"""The result Dataset of a training run (``_dataset``): per-epoch loss, accuracies and counted events, weight and
symmetry-point histograms, and the run's provenance (its key, its device and data, never an absolute path).

Counted events per epoch and layer (the energy ledger's inputs): ``pulses`` are device programming pulses
applied during training; ``forward_reads`` one analog MVM per training sample; ``backward_reads`` one transposed
MVM per training sample for fc2 and fc3 (fc1's input error is never needed, so it is not read);
``eval_reads`` the forward MVMs of the validation and test evaluations; ``digital_macs`` the mixed-precision
accumulate operations (B n_out (n_in + 1) per batch). fp counts reads the same way though it has no devices.
The transfer rules (``transfer``) count the pulses of both their tiles (A's updates and C's transfers), their
column reads of A as forward MVMs of one column each, their buffer arithmetic as ``digital_macs``, and have twice
the devices per layer (``layer_devices``: C and A).
The layers count their reads (``algorithms.READ_PHASES``); a read is reported in whole-layer units: the devices
read divided by the layer's devices (``layer_devices``), so the ledger's ``reads * layer_devices`` is the number
of device reads. With one tile and exact reads that is one per sample, as above. Split tiles (``mapping``) read
one MVM each per sample, together one whole-layer read; an iterative bound-management retry (``forward_io``)
re-reads only its tile and adds that tile's share of the layer (the counts are then fractional, float64). Such
runs also store ``analog_mvms`` (epoch, layer, phase): the tile MVMs themselves, retries included (the ADC
conversions are ``analog_mvms`` times the tile's outputs).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .. import paths, provenance
from ..fitted import FittedDevice
from .algorithms import READ_PHASES, Layer
from .config import TrainConfig
from .keys import device_hash
from .periphery import MappingParameters

LAYER_NAMES: tuple[str, ...] = ("fc1", "fc2", "fc3")

HIST_EDGES = np.linspace(-2.0, 2.0, 401)
"""Bin edges of the weight and symmetry-point histograms (device units; out-of-range values go to the end bins)."""


def _histogram(values: np.ndarray) -> np.ndarray:
    return np.histogram(np.clip(values, HIST_EDGES[0], HIST_EDGES[-1]), HIST_EDGES)[0]


def _snapshot(layers: list[Layer]) -> np.ndarray:
    """Histograms (layer, quantity [w_device, w_eff], bin) of the current weights; NaN for fp's device weights."""
    hist = np.full((len(layers), 2, len(HIST_EDGES) - 1), np.nan)
    for index, layer in enumerate(layers):
        hist[index, 1] = _histogram(layer.weight().numpy())
        if layer.tile is not None:
            hist[index, 0] = _histogram(layer.tile.state)
    return hist


def _whole_layer_reads(device_reads: np.ndarray, layer_devices: np.ndarray) -> np.ndarray:
    """Device reads (epoch, layer) in whole-layer reads: int64 where every count is a whole number of layer reads
    (one tile, or split tiles read alike), else float64 (bound-management retries of single tiles)."""
    whole, rest = np.divmod(device_reads, layer_devices[None, :])
    return whole if not rest.any() else device_reads / layer_devices[None, :]


def _dataset(config: TrainConfig, data: Any, device: FittedDevice | None, layers: list[Layer], sizes: list[int],
             history: dict[str, list], histograms: dict[int, np.ndarray], samples_per_epoch: int,
             key: dict[str, str], origin: Any = None) -> xr.Dataset:
    epochs = np.arange(1, len(history["val_acc"]) + 1)
    names = list(LAYER_NAMES[: len(layers)])
    layer_devices = np.array([layer.tile.state.size if layer.tile is not None else layer.weight().numel()
                              for layer in layers], dtype=np.int64)
    reads = np.asarray(history["reads"], dtype=np.int64).reshape(len(epochs), len(layers), 2, 3)
    forward, backward, eval_reads = (_whole_layer_reads(reads[:, :, 1, phase], layer_devices) for phase in range(3))
    snap = sorted(histograms)
    centers = 0.5 * (HIST_EDGES[1:] + HIST_EDGES[:-1])
    variables: dict[str, Any] = {
        "train_loss": ("epoch", np.asarray(history["train_loss"]), {"units": "nats", "long_name": "mean training NLL"}),
        "val_acc": ("epoch", np.asarray(history["val_acc"]), {"units": "1"}),
        "test_acc": ("epoch", np.asarray(history["test_acc"]), {"units": "1"}),
        "samples_seen": ("epoch", epochs * samples_per_epoch, {"units": "samples", "long_name": "cumulative"}),
        "data_passes": ("epoch", epochs * samples_per_epoch / len(data.train_y), {"units": "1"}),
        "lr": ("epoch", np.asarray(history["lr"])),
        "wall_time": ("epoch", np.asarray(history["wall_time"]), {"units": "s"}),
        "pulses": (("epoch", "layer", "polarity"),
                   np.asarray(history["pulses"], dtype=np.int64).reshape(len(epochs), len(layers), 2),
                   {"long_name": "device programming pulses applied during the epoch"}),
        "forward_reads": (("epoch", "layer"), forward, {"long_name": "training forward MVMs (one per sample)"}),
        "backward_reads": (("epoch", "layer"), backward, {"long_name": "training transposed MVMs (none for fc1)"}),
        "eval_reads": (("epoch", "layer"), eval_reads, {"long_name": "validation + test forward MVMs"}),
        "digital_macs": (("epoch", "layer"),
                         np.asarray(history["digital_macs"], dtype=np.int64).reshape(len(epochs), len(layers)),
                         {"long_name": "mixed-precision digital accumulate operations"}),
        "layer_devices": ("layer", layer_devices, {"long_name": "devices per tile including the bias column"}),
        "layer_inputs": ("layer", np.array(sizes[:-1], dtype=np.int64)),
        "layer_outputs": ("layer", np.array(sizes[1:], dtype=np.int64)),
        "weight_hist": (("snapshot", "layer", "quantity", "bin"),
                        np.stack([histograms[e] for e in snap]) if snap
                        else np.zeros((0, len(layers), 2, len(centers))),
                        {"long_name": "weight histogram (device state and effective weight)"}),
    }
    sp_hist = np.full((len(layers), len(centers)), np.nan)
    for index, layer in enumerate(layers):
        if layer.tile is not None:
            sp_hist[index] = _histogram(layer.tile.symmetry_points())
            name = names[index]
            counts = np.stack([layer.tile.count_up, layer.tile.count_down]).astype(np.int32)
            variables[f"device_pulses_{name}"] = (("polarity", f"row_{name}", f"col_{name}"), counts,
                                                  {"long_name": f"pulses per device of {name} over the run"})
    variables["symmetry_point_hist"] = (("layer", "bin"), sp_hist, {"long_name": "histogram of device symmetry points"})
    if config.io_pair() is not None or config.mapping != MappingParameters.single_tile():
        variables["analog_mvms"] = (("epoch", "layer", "phase"), reads[:, :, 0, :],
                                    {"long_name": "tile MVMs (every tile, bound-management retries included)"})
    coords = {"epoch": epochs, "layer": names, "polarity": ["up", "down"], "snapshot": np.array(snap),
              "quantity": ["w_device", "w_eff"], "bin": np.arange(len(centers)), "bin_center": ("bin", centers)}
    if "analog_mvms" in variables:
        coords["phase"] = list(READ_PHASES)
    dataset = xr.Dataset({k: (v[0], v[1], v[2] if len(v) > 2 else {}) for k, v in variables.items()}, coords=coords)
    dataset.attrs = provenance.provenance_attrs(
        config, run_key=key, algorithm=config.algorithm, seed=config.seed, **_portable_data(data.source, data.label),
        device=_device_provenance(device, origin), samples_per_epoch=samples_per_epoch, n_train=len(data.train_y),
        units={"weights": "device units (w = 2 (G - mean G)/(max G - min G))", "wall_time": "s", "acc": "fraction"},
    )
    return dataset


def _device_provenance(device: FittedDevice | None, origin: Any = None) -> dict[str, Any]:
    """Everything the ledger and plots need about the device, so a result file stands alone: conductance range
    and mean, model kind and parameters, area, amplitudes, the measurement's name relative to its
    measurement root with its SHA-256 (never an absolute path), and how it was resolved (``resolution``)."""
    if device is None:
        return {"device_used": False}
    fields = ("device_id", "pulse_width_s", "data_kind", "source_sha256", "fit_method", "area_m2",
              "amplitude_range_up", "amplitude_range_down", "c2c", "g_min", "g_max", "g_mean")
    facts = {name: getattr(device, name) for name in fields}
    roots = [Path(p) for p in (os.environ.get(paths.MEASUREMENTS_ENV), paths.SHARED_MEASUREMENTS) if p]
    facts.update(model=device.model, model_config=repr(device.config),
                 model_parameters=provenance.config_dict(device.config), dw_min=float(device.config.dw_min),
                 symmetry_point_nominal=device.symmetry_point,
                 source_file=provenance.portable_name(device.source_file, roots),
                 device_hash=device_hash(device))
    if origin is not None:
        facts["resolution"] = origin.as_dict()
    return facts


def _portable_data(source: dict, label: str) -> dict[str, Any]:
    """``data_source`` and ``data_label`` attributes without an absolute path: a user's MNIST folder
    (``FERROLIB_MNIST``) is named by its last component only (the SHA-256s identify the files)."""
    origin = str(source.get("origin", ""))
    if not os.path.isabs(origin):
        return {"data_source": source, "data_label": label}
    portable = f"user IDX folder {Path(origin).name}"
    return {"data_source": {**source, "origin": portable}, "data_label": label.replace(origin, portable)}


__all__ = ["LAYER_NAMES", "HIST_EDGES"]

"""The training loop: ``train`` (cached and resumable), the network it builds (``build_network``), its sample
order and its checkpoints.

The result cache. A result is stored as ``<results>/runs/<config_hash>.nc`` (found without resolving the device
or loading data) and carries its full ``run_key`` (``run_key``): the configuration hash, a content hash of the
device model actually used, a hash of the training/validation/test arrays actually used, ``NUMERICS_VERSION``
and ferrolib's version. Every cached load and every checkpoint resume checks the whole key; a mismatch or an
unreadable file is moved aside (``<name>.stale-<UTC time>.nc``, never deleted) with one line saying why, and
the run is recomputed. One process at a time computes a key (``provenance.key_lock``); a second waits and
reuses the result. A run whose loss or weights diverge stops with ``TrainingDiverged``, keeps its last good
checkpoint and caches nothing.
"""
from __future__ import annotations

import dataclasses
import io
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr

from .. import paths, provenance
from ..devices import DeviceNoise
from ..fitted import FittedDevice
from ..provenance import run_path as result_path
from ..threads import ensure_threads
from . import transfer as transfer_rules
from .algorithms import make_layer
from .config import SYNTHETIC_DEVICES, TrainConfig, _check_config, resolve_device_origin, validate
from .data import load_data
from .keys import run_key
from .network import MLP
from .results import _dataset, _snapshot
from .tile import Periphery

DIVERGED_LOSS = 20.0
"""Mean batch loss (nats) above which a run counts as diverged: chance level is ln 10 = 2.3; 20 nats means the
true class gets probability e^-20 on average, which no converging run reaches."""

CHECKPOINT_PROBE_BYTES = 1 << 20
"""Bytes written (and removed) in the runs folder before training: a disk without room for a checkpoint fails
before the first epoch instead of after it."""


class TrainingDiverged(RuntimeError):
    """The loss or the weights of a run left the stable range (NaN, inf, or above ``DIVERGED_LOSS``)."""


def train(config: TrainConfig, results_dir: Path | str | None = None, progress: bool = True,
          fit_missing: bool = False) -> xr.Dataset:
    """Train (or load the cached result of) ``config``; returns the result Dataset (``results``).

    The configuration, the results directory, the device and the data are checked before any work. The device
    model comes from ``catalog.resolve`` (the user's measurements win over the committed fit; a device without a
    committed fit is fitted only with ``fit_missing``); one line says which file, which source and why, and the
    result's provenance (``device.resolution``) stores it. The result
    is written atomically to ``result_path(config, results_dir)``; a per-epoch checkpoint beside it
    (``<hash>.ckpt.pt``) lets an interrupted run resume with identical numbers, and is removed on completion.
    Cached results and checkpoints are used only when their full ``run_key`` matches (module docstring).
    Threads: those chosen with ``ferrolib.threads.set_threads``, else its default (``ensure_threads``).
    """
    root = provenance.check_writable_dir(Path(results_dir or paths.RESULTS), "results directory")
    _check_config(config)
    device, origin = (None, None) if config.algorithm == "fp" else resolve_device_origin(config, fit_missing)
    device = validate(config, device)
    if device is not None and config.device_id not in SYNTHETIC_DEVICES:
        print(f"ferrolib: {origin.line()}")  # a measured device: which file, which source, why (information)
    data = load_data(config)
    ensure_threads()
    key = run_key(config, device, data)
    path = result_path(config, root)
    provenance.check_writable_dir(path.parent, "results directory", probe_bytes=CHECKPOINT_PROBE_BYTES)
    with provenance.key_lock(path):
        cached = provenance.load_checked_netcdf(path, key, config_hash=key["config"], epochs=config.epochs)
        if cached is not None:
            return cached
        result = _train(config, device, data, key, path, progress, origin)
        try:
            provenance.write_netcdf(result, path)
        except provenance.WriteError as error:
            kept = path.with_suffix(".ckpt.pt")
            raise provenance.WriteError(f"{error}; the finished run {key['config']} (run key {key}) is not saved"
                                        + (f", its last checkpoint {kept.name} is kept: run again once the file "
                                           "can be written" if kept.exists() else "")) from error
        path.with_suffix(".ckpt.pt").unlink(missing_ok=True)
    return result


def _train(config: TrainConfig, device: FittedDevice | None, data: Any, key: dict[str, str], path: Path,
           progress: bool, origin: Any = None) -> xr.Dataset:
    """The training loop of ``train`` (resuming from a checkpoint of the same key); returns the result."""
    from tqdm.auto import tqdm

    network, sizes = build_network(config, device, data.train_x.shape[1])
    layers = network.layers
    n_layers = len(layers)
    samples_per_epoch = config.samples_per_epoch or len(data.train_y)
    stream = _Stream(len(data.train_y), config.seed)
    snapshots = [e for e in sorted(set(config.snapshot_epochs)) if 0 <= e <= config.epochs]
    history: dict[str, list] = {name: [] for name in ("train_loss", "val_acc", "test_acc", "lr", "wall_time",
                                                      "pulses", "digital_macs", "reads")}
    histograms: dict[int, np.ndarray] = {}
    if 0 in snapshots:
        histograms[0] = _snapshot(layers)
    step = 0
    checkpoint = path.with_suffix(".ckpt.pt")
    saved = _load_checkpoint(checkpoint, key)
    if saved is not None and "reads" not in saved["history"]:
        provenance.move_aside(checkpoint, "checkpoint without read counters (older ferrolib)")
        saved = None
    if saved is not None:
        for layer, layer_state in zip(layers, saved["layers"]):
            layer.load_state_dict(layer_state)
        stream.load_state_dict(saved["stream"])
        history, histograms, step = saved["history"], saved["histograms"], saved["step"]
    start_epoch = len(history["val_acc"]) + 1

    def counters() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pulses = np.zeros((n_layers, 2), dtype=np.int64)
        macs = np.zeros(n_layers, dtype=np.int64)
        reads = np.zeros((n_layers, 2, 3), dtype=np.int64)  # (layer, [MVMs, device reads], READ_PHASES)
        for index, layer in enumerate(layers):
            if layer.tile is not None:
                pulses[index] = layer.tile.count_up.sum(), layer.tile.count_down.sum()
            macs[index] = layer.digital_macs
            reads[index] = layer.reads, layer.device_reads
        return pulses, macs, reads

    batches_per_epoch = math.ceil(samples_per_epoch / config.batch_size)
    bar = tqdm(total=config.epochs * batches_per_epoch, initial=(start_epoch - 1) * batches_per_epoch,
               disable=not progress, desc=f"{config.algorithm} {config.device_id}", unit="batch")
    for epoch in range(start_epoch, config.epochs + 1):
        started = time.perf_counter()
        lr = _lr(config, epoch)
        pulses_before, macs_before, reads_before = counters()
        losses = []
        remaining = samples_per_epoch
        while remaining > 0:
            index = stream.take(min(config.batch_size, remaining))
            remaining -= len(index)
            loss = network.train_step(data.train_x.index_select(0, index), data.train_y[index], lr, step)
            if not (math.isfinite(loss) and loss <= DIVERGED_LOSS):
                bar.close()
                _diverged(config, checkpoint, epoch, f"batch loss {loss:.4g} nats (bound {DIVERGED_LOSS:g})")
            losses.append(loss * len(index))
            step += 1
            bar.update()
        if not all(bool(torch.isfinite(layer.weight()).all()) for layer in layers):
            bar.close()
            _diverged(config, checkpoint, epoch, "non-finite weights")
        val_acc = _accuracy(network, data.val_x, data.val_y, config.eval_batch_size)
        test_acc = _accuracy(network, data.test_x, data.test_y, config.eval_batch_size)
        pulses_after, macs_after, reads_after = counters()
        history["train_loss"].append(sum(losses) / samples_per_epoch)
        history["val_acc"].append(val_acc)
        history["test_acc"].append(test_acc)
        history["lr"].append(lr)
        history["pulses"].append(pulses_after - pulses_before)
        history["digital_macs"].append(macs_after - macs_before)
        history["reads"].append(reads_after - reads_before)
        history["wall_time"].append(time.perf_counter() - started)
        if epoch in snapshots:
            histograms[epoch] = _snapshot(layers)
        bar.set_postfix(epoch=epoch, val_acc=f"{val_acc:.4f}")
        if epoch < config.epochs:
            state = {"run_key": key, "layers": [layer.state_dict() for layer in layers], "stream": stream.state_dict(),
                     "history": history, "histograms": histograms, "step": step}
            buffer = io.BytesIO()  # serialised in memory: a full disk is an OS error (WriteError), not torch's
            torch.save(state, buffer)
            provenance.atomic_write(checkpoint, lambda tmp: tmp.write_bytes(buffer.getvalue()))
    bar.close()
    return _dataset(config, data, device, layers, sizes, history, histograms, samples_per_epoch, key, origin)


def _load_checkpoint(path: Path, key: dict[str, str]) -> dict | None:
    """The checkpoint at ``path`` if it is readable and of this run key; otherwise it is moved aside."""
    if not path.exists():
        return None
    try:
        saved = torch.load(path, weights_only=False)
        stored = saved.get("run_key") if isinstance(saved, dict) else None
    except Exception as error:  # noqa: BLE001 - any unreadable file is moved aside the same way
        provenance.move_aside(path, f"unreadable checkpoint ({type(error).__name__})")
        return None
    reason = provenance.key_mismatch(stored, key)
    if reason:
        provenance.move_aside(path, f"checkpoint of another run key: {reason}")
        return None
    return saved


def _diverged(config: TrainConfig, checkpoint: Path, epoch: int, what: str) -> None:
    """Stop a diverged run: nothing is cached, the last good checkpoint (if any) stays."""
    kept = (f"the last good checkpoint {checkpoint.name} is kept" if checkpoint.exists()
            else "no checkpoint was written yet")
    raise TrainingDiverged(f"run {provenance.config_hash(config)} ({config!r}) diverged in epoch {epoch}: {what}; "
                           f"nothing cached, {kept}; lower the learning rate (lr {config.lr:g})")


def _accuracy(network: MLP, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
    return float((network.predict(x, batch_size) == y).float().mean())


def _lr(config: TrainConfig, epoch: int) -> float:
    """Learning rate of (1-based) ``epoch``: halved (``lr_decay_factor``) every ``lr_decay_every`` epochs."""
    return config.lr * config.lr_decay_factor ** ((epoch - 1) // config.lr_decay_every)


class _Stream:
    """Training indices as an endless sequence of seeded reshuffled passes (state saved in checkpoints)."""

    def __init__(self, n: int, seed: int) -> None:
        self.n = n
        self.generator = torch.Generator().manual_seed(seed + 7)
        self.order = torch.randperm(n, generator=self.generator)
        self.position = 0

    def take(self, count: int) -> torch.Tensor:
        parts = []
        while count > 0:
            if self.position == self.n:
                self.order = torch.randperm(self.n, generator=self.generator)
                self.position = 0
            chunk = self.order[self.position : self.position + count]
            self.position += len(chunk)
            count -= len(chunk)
            parts.append(chunk)
        return torch.cat(parts)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "order": self.order.clone(), "position": self.position}

    def load_state_dict(self, saved: dict) -> None:
        self.generator.set_state(saved["generator"])
        self.order = saved["order"].clone()
        self.position = int(saved["position"])


def build_network(config: TrainConfig, device: FittedDevice | None, n_inputs: int = 784) -> tuple[MLP, list[int]]:
    """The initialised network of ``config`` (weights, then device sampling, from one seeded generator)."""
    generator = torch.Generator().manual_seed(config.seed)
    sizes = [n_inputs, *config.hidden, 10]
    weights = _init_weights(sizes, generator)
    settings = config.update_settings()
    noise = DeviceNoise(c2c=config.c2c, dw_min_dtod=config.d2d, up_down_dtod=config.d2d, w_min_dtod=config.d2d,
                        w_max_dtod=config.d2d)
    layers = []
    io = config.io_pair()
    digital_bias = config.mapping.digital_bias
    for index, weight in enumerate(weights):
        shape = (weight.shape[0], weight.shape[1] - 1) if digital_bias else tuple(weight.shape)
        devices = None if device is None else device.devices(shape, noise, generator, torch.float64)
        fast = None  # the transfer rules' fast tile: its own device sample, drawn after the slow tile's
        if device is not None and config.algorithm in transfer_rules.TRANSFER_ALGORITHMS:
            fast = device.devices(shape, noise, generator, torch.float64)
        layer_settings = dataclasses.replace(settings, seed=config.seed * 16 + index)
        periphery = Periphery() if config.periphery else None
        layers.append(make_layer(config.algorithm, weight, devices, layer_settings, periphery, io, config.mapping,
                                 fast))
    return MLP(layers), sizes


def _init_weights(sizes: list[int], generator: torch.Generator) -> list[torch.Tensor]:
    """torch/aihwkit Linear init: weight and bias ~ U(-1/sqrt(n_in), 1/sqrt(n_in)), shape (out, in + 1)."""
    weights = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        bound = 1.0 / math.sqrt(n_in)
        weights.append((torch.rand(n_out, n_in + 1, generator=generator) * 2.0 - 1.0) * bound)
    return weights


__all__ = ["train", "build_network", "result_path", "TrainingDiverged", "DIVERGED_LOSS", "CHECKPOINT_PROBE_BYTES"]

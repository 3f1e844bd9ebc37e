"""Named training profiles in one place: aihwkit-style nested presets (periphery, mapping, update, device, data,
schedule) that ``TrainConfig``, ``ferrolib train --profile`` and sweep files (``profile`` in ``[base]``) name.

    PROFILES["paper"].values("sgd")          # the flat TrainConfig fields of a profile for one rule
    config_from_profile("ideal", "mp", seed=1)  # a TrainConfig (overrides win)
    register(Profile(name=..., ...))         # a new profile

* ``ideal``: the paper's hyperparameters with exact reads, one tile per layer and an analog bias, sample-matched
  (25 epochs of 48,000 samples, lr halved every 10, aihwkit's pulsed mixed-precision transfer). ``TrainConfig.ideal``
  returns it.
* ``paper``: the configuration the paper ran (its scripts and printed ``RPU_Config.txt``): aihwkit's default
  ``IOParameters()`` forward and backward, default ``MappingParameter()`` (digital bias, tiles of at most 512
  inputs), learning rates 0.05 (sgd), 0.1 (sps), 0.5 (mp; fp the same SGD at 0.5), 25 epochs, batch 64, lr halved
  every 10 (``StepLR(10, 0.5)``), deterministic-implicit mixed-precision transfer, the SP reference from the
  alternating train from w = 0 with the effective weights starting at the initial weights, full MNIST with the
  paper's 48,000 / 12,000 split (one pass per epoch) and the paper's piecewise fits; the transfer rules (not in
  the paper) at the rates of their search (``TRANSFER_SEARCH_LR``).
* ``smoke``: seconds: 2 epochs over 512 images, 500 validation and test images.
* ``plain``: ``TrainConfig``'s own defaults (one pass per epoch).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..provenance import compact_repr
from .config import PAPER_TRAIN_SAMPLES

TRANSFER_SEARCH_LR: dict[str, float] = {"ttv2": 0.05, "cttv2": 0.005, "agad": 0.01}
"""The transfer rules' learning rates in the paper's configuration: each rule's best validation accuracy after 5
epochs in the search of ``sweeps/transfer-search.toml`` (ID170ZR5000 at 20 ns, ten rates from 0.002 to 2;
TTv2 stays at chance at every rate, so its choice is arbitrary). ``transfer_analysis.search_choice`` reads the
committed search back and a test checks it names these."""

SECTIONS: tuple[str, ...] = ("periphery", "mapping", "update", "device", "data", "schedule")
"""The nested sections of a profile, each a dict of TrainConfig fields."""


@dataclass(frozen=True)
class Profile:
    """A named preset of TrainConfig fields, grouped as aihwkit groups an RPU configuration."""

    name: str
    """Name used by ``--profile``, sweep files and ``config_from_profile``."""
    description: str
    """One line: what the profile is for."""
    periphery: dict = field(default_factory=dict)
    """Read periphery: ``forward_io``, ``backward_io`` (``periphery.IOParameters`` or preset names), ``periphery``."""
    mapping: dict = field(default_factory=dict)
    """Tile mapping: ``mapping`` (``periphery.MappingParameters`` or a preset name)."""
    update: dict = field(default_factory=dict)
    """Update rule settings (``mp_transfer``, ``sps_reference``, ``pulse_mode``, ...) and ``lr_by_algorithm``."""
    device: dict = field(default_factory=dict)
    """Device model settings (``device_model``, noise, ...)."""
    data: dict = field(default_factory=dict)
    """Data: ``data``, ``split``, limits, ``samples_per_epoch``."""
    schedule: dict = field(default_factory=dict)
    """Epochs, learning-rate schedule, batch size, snapshots."""

    __repr__ = compact_repr

    def lr(self, algorithm: str) -> float | None:
        """The profile's learning rate of ``algorithm`` (None: TrainConfig's default for it)."""
        return self.update.get("lr_by_algorithm", {}).get(algorithm)

    def values(self, algorithm: str) -> dict[str, Any]:
        """The flat TrainConfig fields of this profile for ``algorithm`` (``lr`` only where the profile sets it)."""
        flat: dict[str, Any] = {"algorithm": algorithm}
        for section in SECTIONS:
            flat.update({k: v for k, v in getattr(self, section).items() if k != "lr_by_algorithm"})
        if self.lr(algorithm) is not None:
            flat["lr"] = self.lr(algorithm)
        return flat


PROFILES: dict[str, Profile] = {}
"""Every registered profile by name."""


def register(profile: Profile) -> Profile:
    """Add ``profile`` to ``PROFILES`` (a name may be registered once)."""
    if profile.name in PROFILES:
        raise ValueError(f"profile {profile.name!r} is already registered")
    for section in SECTIONS:
        if not isinstance(getattr(profile, section), dict):
            raise ValueError(f"profile {profile.name!r}: section {section!r} must be a dict of TrainConfig fields")
    PROFILES[profile.name] = profile
    return profile


def get_profile(name: str) -> Profile:
    """The registered profile ``name``; one clear error naming the known ones otherwise."""
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; expected one of {sorted(PROFILES)}")
    return PROFILES[name]


def config_from_profile(name: str, algorithm: str, **overrides: Any):
    """The ``TrainConfig`` of profile ``name`` for ``algorithm``, ``overrides`` (TrainConfig fields) applied last."""
    import dataclasses

    from .config import TrainConfig

    values = {**get_profile(name).values(algorithm), **overrides}
    unknown = sorted(set(values) - {f.name for f in dataclasses.fields(TrainConfig)})
    if unknown:
        raise ValueError(f"profile {name!r} sets TrainConfig field(s) {unknown} that this ferrolib lacks")
    return TrainConfig(**values)


register(Profile(
    name="ideal",
    description="the paper's hyperparameters with exact reads, one tile per layer, analog bias, sample-matched",
    update={"mp_transfer": "pulsed"},
    data={"data": "subset", "samples_per_epoch": PAPER_TRAIN_SAMPLES},
    schedule={"epochs": 25, "lr_decay_every": 10},
))
register(Profile(
    name="paper",
    description="the paper's aihwkit configuration: default IO forward and backward, default mapping, its rules",
    periphery={"forward_io": "aihwkit_default", "backward_io": "aihwkit_default"},
    mapping={"mapping": "aihwkit_default"},
    update={"lr_by_algorithm": {"fp": 0.5, "sgd": 0.05, "sps": 0.1, "mp": 0.5, **TRANSFER_SEARCH_LR},
            "mp_transfer": "deterministic_implicit_cuda", "sps_reference": "paper_alternating", "sps_init": "reference"},
    device={"device_model": "paper_piecewise"},
    data={"data": "full", "split": "paper"},
    schedule={"epochs": 25, "lr_decay_every": 10, "lr_decay_factor": 0.5, "batch_size": 64},
))
register(Profile(
    name="smoke",
    description="seconds: 2 epochs over 512 images, 500 validation and test images",
    data={"data": "subset", "train_limit": 512, "eval_limit": 500},
    schedule={"epochs": 2, "snapshot_epochs": (0, 1, 2)},
))
register(Profile(name="plain", description="TrainConfig's own defaults (one pass over the training set per epoch)"))

__all__ = ["TRANSFER_SEARCH_LR", "Profile", "PROFILES", "SECTIONS", "register", "get_profile", "config_from_profile"]

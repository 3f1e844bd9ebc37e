"""The recorded cross-check against aihwkit 1.2 (``make crosscheck``), read back for notebook 07 and the docs.

``crosscheck/run_crosscheck.py`` trains fp, sgd, mp and sps in both simulators on the same exported devices, data
split, initial weights and sample order, in two configurations (``CROSSCHECK_PROFILES``): ``ideal`` (perfect reads,
analog bias, one tile per layer) and ``paper`` (aihwkit's default periphery and mapping, deterministic-implicit
mixed precision, the paper's SP shifting), and the transfer rules in the paper's configuration (``paper-transfer``,
aihwkit's ``build_config`` compounds; accuracy only: aihwkit counts no pulses of them). Its small tables per
record are committed under ``data/crosscheck/`` (ideal), ``data/crosscheck/paper/`` and
``data/crosscheck/paper-transfer/``:

* ``accuracy.csv``: validation accuracy per epoch, mean / min / max over seeds per simulator; ``within``:
  ``|mean_ferrolib - mean_aihwkit| <= max(aihwkit's seed range, 0.03)``; ``agrees``: within, or aihwkit's mean
  inside ferrolib's seed range (a difference ferrolib's own seeds show);
* ``pulses.csv``: device pulses per layer and polarity, ``ratio = ferrolib / aihwkit`` of the means;
* ``verdicts.csv``: one row per rule and pulse width; ``meta.json``: versions, grid, date.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from . import paths

CROSSCHECK_CONFIGURATIONS: dict[str, str] = {"ideal": "ideal", "paper": "paper", "paper-transfer": "paper"}
"""Every recorded cross-check (``run_crosscheck.py --profile``) and the training profile it runs in: the paper's
rules with ideal reads and in the paper's configuration, and the transfer rules (ttv2, cttv2, agad; not in the
paper) in the paper's configuration."""

CROSSCHECK_PROFILES: tuple[str, ...] = tuple(CROSSCHECK_CONFIGURATIONS)
"""The recorded cross-checks by name."""


def crosscheck_dir(profile: str, root: Path | None = None) -> Path:
    """Folder of a recorded cross-check's tables: ``data/crosscheck`` (ideal) or ``data/crosscheck/<profile>``."""
    if profile not in CROSSCHECK_PROFILES:
        raise ValueError(f"unknown cross-check profile {profile!r}; expected one of {CROSSCHECK_PROFILES}")
    base = Path(root) if root is not None else paths.DATA / "crosscheck"
    return base if profile == "ideal" else base / profile


@dataclass(frozen=True)
class CrosscheckRecord:
    """One configuration's recorded cross-check."""

    profile: str
    """``ideal`` or ``paper``."""
    meta: dict
    """``meta.json``: aihwkit version, date, device, seeds, widths, algorithms, epochs, cells missing."""
    accuracy: pd.DataFrame
    """``accuracy.csv``: per rule, width and epoch, both simulators' mean / min / max and the verdicts."""
    pulses: pd.DataFrame
    """``pulses.csv``: per rule, width, span (epoch 1, run) and layer, both simulators' pulses and their ratio."""
    verdicts: pd.DataFrame
    """``verdicts.csv``: per rule and width, epochs within / agreeing, largest difference, pulse-ratio range."""

    def __repr__(self) -> str:
        meta = self.meta
        return (f"CrosscheckRecord(profile={self.profile!r}, aihwkit={meta.get('aihwkit')!r}, "
                f"date={meta.get('date')!r}, algorithms={meta.get('algorithms')}, seeds={meta.get('seeds')}, "
                f"epochs={meta.get('epochs')}, cells={len(self.verdicts)})")


def load_crosscheck(profile: str, root: Path | None = None) -> CrosscheckRecord | None:
    """The recorded cross-check of ``profile``, or None where none is recorded (``make crosscheck`` writes it)."""
    folder = crosscheck_dir(profile, root)
    if not (folder / "accuracy.csv").exists():
        return None
    return CrosscheckRecord(profile=profile, meta=json.loads((folder / "meta.json").read_text()),
                            accuracy=pd.read_csv(folder / "accuracy.csv"), pulses=pd.read_csv(folder / "pulses.csv"),
                            verdicts=pd.read_csv(folder / "verdicts.csv"))


def verdict_summary(record: CrosscheckRecord) -> pd.DataFrame:
    """Per rule over all widths: epochs whose means agree (of all compared), epochs within, the largest difference
    of means, and the range of the pulse ratios over the run with how many layer-polarity counts disagree."""
    verdicts = record.verdicts
    rows = []
    for algorithm, part in verdicts.groupby("algorithm", sort=False):
        compared = part.epochs.sum()
        row = {"rule": algorithm, "widths": len(part), "epochs agree": f"{part.epochs_agree.sum()}/{compared}",
               "epochs within": f"{part.epochs_within.sum()}/{compared}",
               "largest difference": float(part.max_difference.max())}
        if "pulse_ratio_run_min" in part and part.pulse_ratio_run_min.notna().any():
            disagree = part.pulses_disagree_run.fillna("").astype(str)
            ratios = f"{part.pulse_ratio_run_min.min():.2f}-{part.pulse_ratio_run_max.max():.2f}"
            row.update({"pulse ratio (run)": ratios,
                        "pulse counts disagreeing": int(sum(len([c for c in d.split(";") if c.strip()])
                                                            for d in disagree))})
        rows.append(row)
    return pd.DataFrame(rows)


__all__ = ["CROSSCHECK_CONFIGURATIONS", "CROSSCHECK_PROFILES", "CrosscheckRecord", "crosscheck_dir", "load_crosscheck", "verdict_summary"]

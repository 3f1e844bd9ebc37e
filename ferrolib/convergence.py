"""Convergence of training runs: the first epoch, the samples and the energy at which a run reaches an accuracy target
(docs/science.md: "The network and its training").

A target is a fraction of accuracy, absolute or relative to a reference run's accuracy (e.g. 0.99 of fp's final
accuracy); a run that never reaches it reports ``NOT_REACHED`` in every metric.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

NOT_REACHED = -1
"""Sentinel of every convergence metric of a run that never reached its target (see ``reached``)."""


@dataclass(frozen=True)
class TargetCrossing:
    """Where a run first reached an accuracy target; ``reached`` False means never (values are sentinels)."""

    reached: bool
    """Whether the accuracy ever reached the target."""
    epoch: int
    """First epoch (1-based) with accuracy >= threshold; ``NOT_REACHED`` (-1) otherwise."""
    threshold: float
    """The absolute accuracy threshold that was applied."""
    best: float
    """Best accuracy of the run."""

    def __repr__(self) -> str:
        if self.reached:
            return f"TargetCrossing(reached at epoch {self.epoch}, threshold={self.threshold:.4g})"
        return f"TargetCrossing(not reached: best {self.best:.4g} < threshold {self.threshold:.4g})"


def target_threshold(target: float, relative_to: float | None = None) -> float:
    """Absolute threshold: ``target`` itself, or ``target * relative_to`` (e.g. 0.99 of fp's final accuracy)."""
    if not 0.0 < target <= 1.0:
        raise ValueError(f"target must be a fraction in (0, 1], got {target!r}")
    if relative_to is None:
        return float(target)
    if not 0.0 < relative_to <= 1.0:
        raise ValueError(f"relative_to must be a reference accuracy in (0, 1], got {relative_to!r}")
    return float(target * relative_to)


def epochs_to_target(accuracy: Any, target: float, relative_to: float | None = None) -> TargetCrossing:
    """First epoch (1-based) at which ``accuracy`` (one value per epoch, fractions) reaches the target."""
    acc = np.asarray(accuracy, dtype=float).ravel()
    if acc.size == 0 or not np.all(np.isfinite(acc)):
        raise ValueError("accuracy curve must be a non-empty sequence of finite values")
    threshold = target_threshold(target, relative_to)
    hits = np.flatnonzero(acc >= threshold)
    if hits.size == 0:
        return TargetCrossing(False, NOT_REACHED, threshold, float(acc.max()))
    return TargetCrossing(True, int(hits[0]) + 1, threshold, float(acc.max()))


def samples_to_target(accuracy: Any, samples_seen: Any, target: float, relative_to: float | None = None) -> int:
    """Cumulative training samples at the first epoch reaching the target; ``NOT_REACHED`` if never."""
    crossing = epochs_to_target(accuracy, target, relative_to)
    return int(np.asarray(samples_seen).ravel()[crossing.epoch - 1]) if crossing.reached else NOT_REACHED


def energy_to_target(accuracy: Any, cumulative_energy: Any, target: float, relative_to: float | None = None) -> float:
    """Cumulative training energy (J) at the first epoch reaching the target; ``NOT_REACHED`` if never."""
    crossing = epochs_to_target(accuracy, target, relative_to)
    return float(np.asarray(cumulative_energy).ravel()[crossing.epoch - 1]) if crossing.reached else float(NOT_REACHED)


def convergence(result: xr.Dataset, target: float, relative_to: float | xr.DataArray | None = None,
                accuracy: str = "val_acc", energy: xr.DataArray | None = None) -> xr.Dataset:
    """Convergence metrics of one run or of a sweep (any extra dimensions besides ``epoch``).

    Returns ``reached`` (bool), ``epochs_to_target``, ``samples_to_target`` (int) and ``energy_to_target`` (J),
    with ``NOT_REACHED`` (-1) where ``reached`` is False, plus ``final_accuracy`` and ``threshold``.
    ``energy`` is the cumulative energy per epoch; by default the programming energy of the device pulses
    (``programming_energy_cumulative``, the paper's training energy), with the whole ledger (reads and digital
    work included, ``energy_cumulative``) reported as ``system_energy_to_target`` / ``system_energy_total``.
    ``relative_to`` may vary over the sweep dimensions (e.g. fp's final accuracy per seed).
    """
    if accuracy not in result:
        raise ValueError(f"result has no accuracy variable {accuracy!r}")
    acc = result[accuracy]
    system = None
    if energy is None:
        energy = result["programming_energy_cumulative"] if "programming_energy_cumulative" in result else None
        system = result["energy_cumulative"] if "energy_cumulative" in result else None
    reference = xr.DataArray(np.nan) if relative_to is None else xr.DataArray(relative_to) \
        if not isinstance(relative_to, xr.DataArray) else relative_to
    threshold = xr.apply_ufunc(lambda r: target_threshold(target, None if np.isnan(r) else float(r)),
                               reference, vectorize=True)
    hit = acc >= threshold
    reached = hit.any("epoch")
    first = hit.argmax("epoch")  # index of the first True (0 where none; masked below)
    epochs = xr.where(reached, first + 1, NOT_REACHED).astype(int)
    samples = xr.where(reached, result["samples_seen"].isel(epoch=first), NOT_REACHED).astype(np.int64)
    out = xr.Dataset({
        "reached": reached,
        "epochs_to_target": epochs,
        "samples_to_target": samples,
        "final_accuracy": acc.isel(epoch=-1, drop=True),
        "threshold": threshold,
    })
    for prefix, cumulative in (("", energy), ("system_", system)):
        if cumulative is not None:
            out[f"{prefix}energy_to_target"] = xr.where(reached, cumulative.isel(epoch=first), float(NOT_REACHED))
            out[f"{prefix}energy_total"] = cumulative.isel(epoch=-1, drop=True)
            for name in (f"{prefix}energy_to_target", f"{prefix}energy_total"):
                out[name].attrs["units"] = "J"
    for name in ("epochs_to_target", "samples_to_target", "energy_to_target", "system_energy_to_target"):
        if name in out:
            out[name].attrs["not_reached"] = f"{NOT_REACHED} where reached is False"
    out = out.drop_vars([c for c in out.coords if c == "epoch"])
    out.attrs = {"target": target, "relative": str(relative_to is not None), "accuracy": accuracy}
    return out

"""Analysis of sweep results: every convergence metric and every verdict the notebooks show, computed once here.

The paper's claims are tested on a combined sweep Dataset (``sweep.run_sweep`` or a source-data summary, dims
``device, pulse_width, algorithm, seed, epoch``). Each claim is an **effect** computed per unit -- one
``(device, seed)`` pair -- e.g. "epochs to target at the shortest pulse width minus at the longest". Its
**interval** is a two-sided Student-t confidence interval on the mean of the units:

    mean +- t_{(1 + confidence) / 2, n - 1} * s / sqrt(n),     s the sample standard deviation of the n units,

over the seeds of one device ("per device") or over every (device, seed) unit ("pooled": the spread between
devices enters the interval). With one unit the interval is undefined. For a sweep with one seed per device (the
full study), ``claims(..., unit="point")`` takes the accuracy-gap claims' paired difference at every (device, pulse
width, seed) point as the unit instead (widths of one device are not independent: the interval is optimistic). Claims on quantities that no seed changes
(the energy of one pulse) are **exact**: their interval is the range over the units. The **verdict** compares the
interval with the claim's threshold (``ClaimThresholds``): holds when the whole interval lies beyond it, fails
when the whole interval lies on the other side, and is inconclusive when the interval straddles it, is undefined,
or no unit could test the claim (e.g. the reference run never reached the target).

The causes of a collapse (device properties against accuracy) close this module; the SP-limits study's analysis is
in ``ferrolib.splimits_analysis`` (its names stay importable from here, ``MOVED_NAMES``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import xarray as xr
from scipy import stats

from . import convergence, energy, moved, paths, provenance

HOLDS, FAILS, INCONCLUSIVE = "holds", "fails", "inconclusive"
"""The three verdicts."""

MORE_EPOCHS_CLAIM = "Shorter pulses need more epochs to converge"
"""The paper's convergence claim (its rows in ``claims``, one per algorithm)."""

CLAIM_COLUMNS = ["claim", "algorithm", "scope", "devices", "effect", "estimate", "ci_low", "ci_high", "threshold",
                 "n_seeds", "n_units", "verdict", "measured", "method"]
"""Columns of the claims table (one row per claim, algorithm and scope)."""

TRADEOFF_METRICS = ("epochs_to_target", "samples_to_target", "energy_to_target", "system_energy_to_target",
                    "energy_total", "system_energy_total", "final_accuracy")
"""Convergence metrics summarised over seeds for the figures."""


@dataclass
class ClaimThresholds:
    """The documented parameters of every verdict (fractions are of accuracy, 0..1)."""

    target: float = 0.99
    """Validation accuracy a run must reach to count as converged (epochs and energy "to target"); with
    ``relative``, a fraction of fp's final accuracy (0.99: within 1 % of floating point, which on the offline
    MNIST subset ends near 0.948, so an absolute 0.95 would ask more than fp itself reaches)."""
    relative: bool = True
    """Read ``target`` as a fraction of fp's final accuracy at the same device, pulse width and seed."""
    accuracy_margin: float = 0.01
    """Accuracy difference below which two accuracies count as equal: "less accurate" needs the interval above
    +margin, "no accuracy lost" / "matches" need it above -margin."""
    epochs_margin: float = 0.0
    """"Needs more epochs" holds when the interval of epochs(short) - epochs(long) lies above this."""
    energy_margin: float = 0.0
    """"Energy falls" holds when the interval of log10(E_long / E_short) lies above this (0: any decrease)."""
    confidence: float = 0.95
    """Two-sided confidence level of the Student-t intervals."""

    __repr__ = provenance.compact_repr

    @classmethod
    def overriding(cls, **values: Any) -> "ClaimThresholds":
        """The documented defaults with every non-None entry of ``values`` replaced (notebook parameters)."""
        return cls(**{name: value for name, value in values.items() if value is not None})

    def describe_target(self) -> str:
        """The target in words, e.g. ``99% of fp's final accuracy``."""
        return f"{self.target:.0%} of fp's final accuracy" if self.relative else f"{self.target:.0%} validation accuracy"

    def __post_init__(self) -> None:
        if not 0.0 < self.confidence < 1.0:
            raise ValueError(f"ClaimThresholds.confidence must lie in (0, 1), got {self.confidence}")
        if not 0.0 < self.target <= 1.0:
            raise ValueError(f"ClaimThresholds.target must lie in (0, 1], got {self.target}")


# ------------------------------------------------------------------------------------------------ statistics
def t_interval(values: np.ndarray, confidence: float = 0.95) -> tuple[float, float, float, int]:
    """``(mean, low, high, n)`` of the finite ``values``: the Student-t interval of the mean (NaN bounds for n < 2)."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    n = values.size
    if n == 0:
        return float("nan"), float("nan"), float("nan"), 0
    mean = float(values.mean())
    if n < 2:
        return mean, float("nan"), float("nan"), n
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * values.std(ddof=1) / np.sqrt(n))
    return mean, mean - half, mean + half, n


def verdict(low: float, high: float, threshold: float) -> str:
    """holds if the interval lies above ``threshold``, fails if below, inconclusive if it straddles or is NaN."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return INCONCLUSIVE
    if low > threshold:
        return HOLDS
    if high < threshold:
        return FAILS
    return INCONCLUSIVE


def seed_statistics(values: xr.DataArray, confidence: float = 0.95) -> xr.Dataset:
    """Mean, sample standard deviation, Student-t half width and count over ``seed`` (NaNs skipped): what the
    figures draw as "mean with seed spread"."""
    n = values.notnull().sum("seed")
    std = values.std("seed", ddof=1)
    t = xr.apply_ufunc(lambda k: stats.t.ppf(0.5 + confidence / 2, k - 1) if k >= 2 else np.nan, n, vectorize=True)
    return xr.Dataset({"mean": values.mean("seed"), "std": std, "half_width": t * std / np.sqrt(n), "n": n})


# ------------------------------------------------------------------------------------------------ convergence
def fp_reference(sweep_result: xr.Dataset, accuracy: str = "val_acc") -> xr.DataArray:
    """fp's final accuracy per seed (dim ``seed``) from a sweep with fp runs, e.g. the ideal sweep: the
    reference of a relative target for sweeps without fp (the study). fp programs no device, so its runs at every
    device and pulse width of one seed are the same run; ValueError if they differ."""
    if "fp" not in sweep_result["algorithm"].values:
        raise ValueError("fp_reference needs a sweep with an 'fp' entry in its algorithm dimension")
    final = sweep_result[accuracy].sel(algorithm="fp", drop=True).isel(epoch=-1, drop=True)
    others = [d for d in final.dims if d != "seed"]
    if not np.allclose(final.max(others), final.min(others), equal_nan=True):
        raise ValueError("fp's final accuracy differs between devices or pulse widths of one seed")
    reference = final.max(others)
    return reference.drop_vars([c for c in reference.coords if c not in reference.dims])


def sweep_convergence(sweep_result: xr.Dataset, target: float, relative: bool = False,
                      accuracy: str = "val_acc", reference: xr.DataArray | None = None) -> xr.Dataset:
    """Convergence metrics of every run; ``relative`` makes ``target`` a fraction of fp's final accuracy: the
    ``fp`` entry of the ``algorithm`` dimension (per device, pulse width and seed), else ``reference`` (fp's
    final accuracy per seed from another sweep, ``fp_reference``)."""
    if relative:
        if "fp" in sweep_result["algorithm"].values:
            reference = sweep_result[accuracy].sel(algorithm="fp", drop=True).isel(epoch=-1, drop=True)
            reference = reference.drop_vars([c for c in reference.coords if c not in reference.dims])
        elif reference is None:
            raise ValueError("a relative target needs an 'fp' run in the sweep's algorithm dimension "
                             "or a reference (analysis.fp_reference of a sweep with fp)")
        else:
            missing = sorted(set(sweep_result["seed"].values.tolist()) - set(reference["seed"].values.tolist()))
            if missing:
                raise ValueError(f"reference: fp's final accuracy has no seed {missing} of the sweep")
            reference = reference.sel(seed=sweep_result["seed"])
    else:
        reference = None
    return convergence.convergence(sweep_result, target, relative_to=reference, accuracy=accuracy)


def convergence_summary(conv: xr.Dataset, confidence: float = 0.95) -> xr.Dataset:
    """Seed statistics of the trade-off metrics, metrics "to target" over the seeds that reached it only; plus
    ``reached_all`` (every seed reached the target) and ``reached_fraction``."""
    out = {}
    for name in TRADEOFF_METRICS:
        if name not in conv:
            continue
        values = conv[name].where(conv["reached"]) if name.endswith("to_target") else conv[name]
        for stat, array in seed_statistics(values.astype(float), confidence).items():
            out[f"{name}_{stat}"] = array
    out["reached_all"] = conv["reached"].all("seed")
    out["reached_fraction"] = conv["reached"].astype(float).mean("seed")
    return xr.Dataset(out)


def data_kinds(sweep_result: xr.Dataset) -> str:
    """The device data kinds of a sweep's runs, e.g. ``measured`` or ``measured, synthetic`` (fp's ``none`` left
    out), for provenance stamps."""
    kinds = sorted(set(str(k) for k in sweep_result["data_kind"].values.ravel()) - {"none"})
    return ", ".join(kinds) or "none"


def per_update_energy(sweep_result: xr.Dataset, estimate: str | None = None) -> xr.DataArray:
    """Energy of one programming pulse (J), mean of both polarities, per device and pulse width: the ledger's
    components summed, or one entry of ``energy.TABLE_COMPONENTS`` (e.g. ``"leakage_conductance"``)."""
    if estimate is None:
        pulse = sweep_result["energy_per_pulse"].sum("component", min_count=1)  # a width a device lacks stays NaN
    else:
        pulse = sweep_result["energy_per_pulse_estimates"].sel(estimate=estimate, drop=True)
    pulse = pulse.mean("polarity")
    devices = sweep_result["data_kind"] != "none"  # fp runs carry no device: leave them out
    return pulse.where(devices).max([d for d in pulse.dims if d not in ("device", "pulse_width")])


def per_update_energy_without_schottky(sweep_result: xr.Dataset) -> xr.DataArray:
    """Energy of one pulse from the ohmic leakage, capacitive charging and switching (no Schottky upper bound)."""
    return sum(per_update_energy(sweep_result, c) for c in ("leakage_conductance", "capacitive", "switching"))


def histogram_mean(hist: xr.DataArray, centers: xr.DataArray) -> xr.DataArray:
    """Mean of a histogram over ``bin``: sum(h c) / sum(h)."""
    return (hist * centers).sum("bin") / hist.sum("bin")


def pulse_totals(sweep_result: xr.Dataset) -> xr.Dataset:
    """Device pulses per run (all layers and epochs): ``total``, ``up`` and the up share (0..1)."""
    pulses = sweep_result["pulses"].sum(["epoch", "layer"])
    total = pulses.sum("polarity")
    up = pulses.sel(polarity="up", drop=True)
    return xr.Dataset({"total": total, "up": up, "up_share": up / total.where(total > 0)})


# ------------------------------------------------------------------------------------------------ claims
@dataclass
class _Effect:
    """One claim's per-unit effect: values over (device, seed), NaN where a unit cannot test the claim."""

    claim: str
    algorithm: str
    effect: str
    values: xr.DataArray
    threshold: float
    measured: Callable[[xr.DataArray], str]
    exact: bool = False
    condition: str = "no run could test it"


def _extremes(final: xr.DataArray, device: str) -> tuple[float, float] | None:
    """Shortest and longest pulse width with any finished run of ``device`` (None with fewer than two)."""
    present = final.sel(device=device).notnull()
    present = present.any([d for d in present.dims if d != "pulse_width"])
    widths = sorted(float(w) for w in final["pulse_width"].values[present.values])
    return (widths[0], widths[-1]) if len(widths) >= 2 else None


def _at_extremes(values: xr.DataArray, final: xr.DataArray, short: bool) -> xr.DataArray:
    """``values`` at each device's shortest (``short``) or longest pulse width -> dims (device, ...)."""
    pieces = []
    for device in values["device"].values:
        ends = _extremes(final, str(device))
        if ends is None:
            pieces.append(xr.full_like(values.sel(device=device).isel(pulse_width=0, drop=True), np.nan, dtype=float))
        else:
            pieces.append(values.sel(device=device, pulse_width=ends[0 if short else 1], drop=True).astype(float))
    return xr.concat(pieces, dim=values["device"])


def _of(values: xr.DataArray, row: xr.DataArray) -> xr.DataArray:
    """``values`` at the devices of one table row (``row``: the row's effect values)."""
    return values.sel(device=row["device"])


def _width_label(seconds: float) -> str:
    from .units import format_pulse_width

    return format_pulse_width(seconds)


def smallest_adjacent_log_ratio(e_pulse: xr.DataArray) -> xr.DataArray:
    """Per device, ``min_i log10(E(t_{i+1}) / E(t_i))`` over the pulse widths t_1 < t_2 < ... *that device* has
    (a study joins devices measured at different widths: a width another device lacks is skipped, not a gap);
    > 0 everywhere: the energy of one pulse grows with the width. NaN for a device with fewer than two widths."""
    smallest = []
    for device in e_pulse["device"].values:
        row = e_pulse.sel(device=device).sortby("pulse_width").dropna("pulse_width")
        steps = np.log10(row.values[1:] / row.values[:-1])
        smallest.append(float(steps.min()) if steps.size else float("nan"))
    return xr.DataArray(smallest, coords={"device": e_pulse["device"].values}, dims="device")


def _claim_effects(ds: xr.Dataset, conv: xr.Dataset, limits: ClaimThresholds, unit: str = "seed") -> list[_Effect]:
    """Every testable claim of the paper as per-unit effects (``unit``: see ``claims``)."""
    algorithms = [str(a) for a in ds["algorithm"].values]
    n_epochs = ds.sizes["epoch"]
    final = conv["final_accuracy"]
    effects: list[_Effect] = []

    for label, e_pulse in (("ledger model", per_update_energy(ds)),
                           ("without the Schottky bound (ohmic leakage + capacitive + switching)",
                            per_update_energy_without_schottky(ds))):
        e_pulse = e_pulse.sortby("pulse_width")
        units = smallest_adjacent_log_ratio(e_pulse).broadcast_like(final.isel(pulse_width=0, algorithm=0, drop=True))

        def energies(values: xr.DataArray, e_pulse=e_pulse) -> str:
            row = e_pulse.sel(device=values["device"]).mean("device")
            return ", ".join(f"{_width_label(float(w))}: {energy.format_energy(float(v))}"
                             for w, v in zip(row["pulse_width"].values, row.values) if np.isfinite(v))
        effects.append(_Effect(f"Per-update energy falls with shorter pulses, {label}", "all",
                               "smallest log10 ratio of per-pulse energies of adjacent widths (longer/shorter)",
                               units, limits.energy_margin, energies, exact=True))

    for algorithm in [a for a in ("mp", "sps", "sgd") if a in algorithms]:
        c = conv.sel(algorithm=algorithm, drop=True)
        f = final.sel(algorithm=algorithm, drop=True)
        reached_s, reached_l = (_at_extremes(c["reached"], f, short) == 1 for short in (True, False))
        epochs = c["epochs_to_target"].where(c["reached"], n_epochs + 1)  # never reached: more than any that did
        ep_s, ep_l = (_at_extremes(epochs, f, short) for short in (True, False))
        effects.append(_Effect(MORE_EPOCHS_CLAIM, algorithm,
                               "epochs to target, shortest minus longest width (not reached = epochs + 1)",
                               (ep_s - ep_l).where(reached_l), limits.epochs_margin,
                               lambda v, s=ep_s, l_=ep_l, ok=reached_l: f"{float(_of(s.where(ok), v).mean()):.3g} "
                               f"epochs at the shortest, {float(_of(l_.where(ok), v).mean()):.3g} at the longest width",
                               condition="the longest width never reached the target"))
        for label, name in (("programming pulses, the paper's ledger", "energy_to_target"),
                            ("whole system: programming, reads and digital work", "system_energy_to_target")):
            if name not in c:
                continue
            e_s, e_l = (_at_extremes(c[name], f, short) for short in (True, False))
            both = reached_s & reached_l
            effects.append(_Effect(f"Total training energy still falls with shorter pulses ({label})", algorithm,
                                   "log10(energy to target at the longest / at the shortest width)",
                                   np.log10((e_l / e_s).where(both)), limits.energy_margin,
                                   lambda v, s=e_s, l_=e_l, ok=both: "target not reached at both extreme widths"
                                   if not bool(_of(ok, v).any()) else
                                   f"{energy.format_energy(float(_of(s.where(ok), v).mean()))} at the shortest, "
                                   f"{energy.format_energy(float(_of(l_.where(ok), v).mean()))} at the longest",
                                   condition="the target was not reached at both extreme widths"))
        a_s, a_l = (_at_extremes(f, f, short) for short in (True, False))
        effects.append(_Effect("No accuracy is lost with shorter pulses", algorithm,
                               "final accuracy, shortest minus longest width (reference reached the target)",
                               (a_s - a_l).where(reached_l), -limits.accuracy_margin,
                               lambda v, s=a_s, l_=a_l: f"final accuracy {float(_of(s, v).mean()):.4f} at the "
                               f"shortest, {float(_of(l_, v).mean()):.4f} at the longest width",
                               condition="the longest width never reached the target"))

    mean_final = final.mean("pulse_width")
    learned = conv["reached"].sel(algorithm="mp", drop=True).any("pulse_width") if "mp" in algorithms else None

    def gap(better: str, worse: str, threshold: float, claim: str, reference_learned: bool = True) -> None:
        per_width = final.sel(algorithm=better, drop=True) - final.sel(algorithm=worse, drop=True)
        values = per_width if unit == "point" else per_width.mean("pulse_width")
        if reference_learned:  # accuracies of networks that never learned prove nothing
            values = values.where(learned)
        described = "at each (device, pulse width, seed) point" if unit == "point" else "mean over pulse widths"
        effects.append(_Effect(claim, f"{better} vs {worse}",
                               f"final accuracy {better} minus {worse}, {described}", values, threshold,
                               lambda v, b=better, w=worse: f"mean final accuracy {b} "
                               f"{float(_of(mean_final.sel(algorithm=b), v).mean()):.4f}, {w} "
                               f"{float(_of(mean_final.sel(algorithm=w), v).mean()):.4f}",
                               condition="mp, the reference, never reached the target"))

    if {"mp", "sgd"} <= set(algorithms):
        gap("mp", "sgd", limits.accuracy_margin, "Plain analog SGD is less accurate than mixed precision")
    if {"mp", "sgd", "sps"} <= set(algorithms):
        gap("sps", "sgd", limits.accuracy_margin, "Symmetry-point shifting restores accuracy: better than plain SGD")
        gap("sps", "mp", -limits.accuracy_margin, "Symmetry-point shifting restores accuracy: as good as mixed precision")
    if {"mp", "fp"} <= set(algorithms):
        gap("mp", "fp", -limits.accuracy_margin, "Mixed precision matches floating point", reference_learned=False)
    return effects


def _row(effect: _Effect, values: xr.DataArray, scope: str, confidence: float) -> dict:
    """One table row: the interval of ``values`` (dims device, seed, and pulse_width for per-point effects) and
    its verdict."""
    flat = values.values.ravel()
    units = flat[np.isfinite(flat)]
    if effect.exact:
        mean = float(units.mean()) if units.size else float("nan")
        low, high = (float(units.min()), float(units.max())) if units.size else (float("nan"),) * 2
        n, method = units.size, "exact (no seed dependence): range over units"
    else:
        mean, low, high, n = t_interval(flat, confidence)
        if "pulse_width" in values.dims:
            units = "(pulse width, seed) points" if scope != "pooled" else "(device, pulse width, seed) points"
            method = (f"Student-t {confidence:.0%} interval over {units} (paired difference per point; the widths "
                      "of one device share the device, so the interval is optimistic)")
        else:
            method = (f"Student-t {confidence:.0%} interval over "
                      + ("seeds" if scope != "pooled" else "(device, seed) units"))
    tested = values.notnull()
    devices = [str(d) for d in values["device"].values if bool(tested.sel(device=d).any())]
    seeds = int(tested.any([d for d in tested.dims if d != "seed"]).sum()) if "seed" in values.dims else 1
    return {"claim": effect.claim, "algorithm": effect.algorithm, "scope": scope, "devices": ", ".join(devices),
            "effect": effect.effect, "estimate": mean, "ci_low": low, "ci_high": high, "threshold": effect.threshold,
            "n_seeds": seeds, "n_units": n, "verdict": verdict(low, high, effect.threshold),
            "measured": effect.measured(values) if n else f"not testable: {effect.condition}",
            "method": method}


CLAIM_UNITS = ("seed", "point")
"""What one unit of an accuracy-gap claim is (``claims``)."""


def claims(sweep_result: xr.Dataset, thresholds: ClaimThresholds | None = None,
           per_device: bool = True, unit: str = "seed", reference: xr.DataArray | None = None) -> pd.DataFrame:
    """The paper's claims with effect, interval, n seeds and verdict: pooled over devices (first rows of each
    claim) and, when the sweep has several devices and ``per_device``, per device.

    ``unit`` of the accuracy-gap claims (algorithm A vs B): ``"seed"``, the gap averaged over pulse widths per
    (device, seed), the interval over seeds (per device) or over (device, seed) units (pooled); ``"point"``, the
    paired gap at every (device, pulse width, seed) point, for sweeps with one seed per device (the study), where
    the seed unit leaves a device without an interval. Claims comparing the shortest with the longest width have
    one value per (device, seed) either way. ``reference``: fp's final accuracy per seed for a relative target
    when the sweep has no fp runs (``fp_reference``)."""
    limits = thresholds or ClaimThresholds()
    if unit not in CLAIM_UNITS:
        raise ValueError(f"claims: unit must be one of {CLAIM_UNITS}, got {unit!r}")
    if "learning_rate" in sweep_result.dims:
        raise ValueError("claims need one learning rate per algorithm; select one learning_rate first")
    conv = sweep_convergence(sweep_result, limits.target, limits.relative, reference=reference)
    rows = []
    devices = [str(d) for d in sweep_result["device"].values]
    for effect in _claim_effects(sweep_result, conv, limits, unit):
        values = effect.values.transpose("device", "seed", ...)
        rows.append(_row(effect, values, "pooled", limits.confidence))
        if per_device and len(devices) > 1:
            rows += [_row(effect, values.sel(device=[d]), d, limits.confidence) for d in devices]
    table = pd.DataFrame(rows, columns=CLAIM_COLUMNS)
    table.attrs = {"thresholds": repr(limits), "thresholds_config": json.dumps(provenance.config_dict(limits))}
    return table


def verdict_of(table: pd.DataFrame, claim: str, algorithm: str | None = None, scope: str = "pooled") -> pd.Series:
    """The row of ``table`` for one claim (and algorithm, scope)."""
    rows = table[(table["claim"] == claim) & (table["scope"] == scope)]
    if algorithm is not None:
        rows = rows[rows["algorithm"] == algorithm]
    if len(rows) != 1:
        raise KeyError(f"claims table has {len(rows)} rows for claim {claim!r}, algorithm {algorithm!r}, "
                       f"scope {scope!r}")
    return rows.iloc[0]


WRITTEN_DIGITS = 10
"""Significant digits of the numbers in written claims tables: hosts differ in the last bits of their floats
(BLAS, numba's target), and a committed table rendered on another host must read the same."""


def _rounded(table: pd.DataFrame, digits: int = WRITTEN_DIGITS) -> pd.DataFrame:
    """``table`` with every float column rounded to ``digits`` significant digits (NaN stays NaN)."""
    out = table.copy()
    for column in out.columns[[pd.api.types.is_float_dtype(t) for t in out.dtypes]]:
        out[column] = [float(f"{v:.{digits}g}") for v in out[column]]
    return out


def write_claims(table: pd.DataFrame, directory: str | Path, name: str, source: dict) -> tuple[Path, Path]:
    """Write the claims table as ``<name>.csv`` and ``<name>.json`` (with provenance) atomically, its numbers
    rounded to ``WRITTEN_DIGITS`` significant digits."""
    directory = paths.ensure(Path(directory))
    meta = provenance.provenance_attrs(**{k: str(v) for k, v in {**table.attrs, **source}.items()})
    table = _rounded(table)
    csv = provenance.atomic_write(directory / f"{name}.csv", lambda tmp: tmp.write_text(
        "".join(f"# {k}: {v}\n" for k, v in sorted(meta.items())) + table.to_csv(index=False)))
    js = provenance.write_json({"provenance": meta, "claims": json.loads(table.to_json(orient="records"))},
                               directory / f"{name}.json")
    return csv, js


def claims_markdown(table: pd.DataFrame) -> str:
    """The claims table as Markdown: claim, algorithm, scope, effect with interval, seeds, verdict, measured."""
    def interval(row: pd.Series) -> str:
        if not np.isfinite(row.ci_low):
            return "undefined"
        return f"[{row.ci_low:+.3g}, {row.ci_high:+.3g}]"

    lines = ["| claim | algorithm | devices | effect | estimate | interval | threshold | seeds | verdict | measured |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in table.itertuples():
        scope = row.devices if row.scope == "pooled" else f"{row.scope} only"
        lines.append(f"| {row.claim} | {row.algorithm} | {scope} | {row.effect} | {row.estimate:+.3g} | "
                     f"{interval(row)} | {row.threshold:+.3g} | {row.n_seeds} | **{row.verdict}** | {row.measured} |")
    return "\n".join(lines)


def epochs_by_width(sweep_result: xr.Dataset, thresholds: ClaimThresholds | None = None,
                    reference: xr.DataArray | None = None) -> pd.DataFrame:
    """Epochs to target per (device, algorithm, pulse width) over seeds, for the figure of "shorter pulses need
    more epochs": mean and sample standard deviation over the seeds that reached the target, how many did
    (``n_reached``) of ``n_seeds``; fp left out. ``reference`` as in ``claims``."""
    limits = thresholds or ClaimThresholds()
    conv = sweep_convergence(sweep_result, limits.target, limits.relative, reference=reference)
    conv = conv.sel(algorithm=[a for a in conv["algorithm"].values if a != "fp"])
    epochs = conv["epochs_to_target"].where(conv["reached"]).astype(float)
    table = xr.Dataset({"epochs_mean": epochs.mean("seed"), "epochs_std": epochs.std("seed", ddof=1),
                        "n_reached": conv["reached"].sum("seed"),
                        "n_seeds": conv["final_accuracy"].notnull().sum("seed")})
    frame = table.to_dataframe().reset_index()
    frame = frame[frame["n_seeds"] > 0]
    return frame[["device", "algorithm", "pulse_width", "epochs_mean", "epochs_std", "n_reached",
                  "n_seeds"]].reset_index(drop=True)


def tradeoff_lines(summary: xr.Dataset) -> list[str]:
    """Per algorithm, the energy and epochs to target at the shortest and longest pulse widths every seed reached
    (Markdown bullets); ``summary`` is one device's ``convergence_summary``."""
    lines = []
    for algorithm in [a for a in ("mp", "sps", "sgd") if a in summary["algorithm"].values]:
        at = summary.sel(algorithm=algorithm)
        hit = [float(w) for w in at["pulse_width"].values if bool(at["reached_all"].sel(pulse_width=w))]
        if len(hit) < 2:
            lines.append(f"* **{algorithm}**: every seed reached the target at {len(hit)} pulse width(s); "
                         "no trade-off to read off.")
            continue
        (e_s, e_l), (n_s, n_l) = ((float(at[f"{name}_mean"].sel(pulse_width=w)) for w in (hit[0], hit[-1]))
                                  for name in ("energy_to_target", "epochs_to_target"))
        lines.append(f"* **{algorithm}**: {_width_label(hit[0])} needs {n_s:.3g} epochs and "
                     f"{energy.format_energy(e_s)}; {_width_label(hit[-1])} needs {n_l:.3g} epochs and "
                     f"{energy.format_energy(e_l)} (energy ratio {e_l / e_s:.3g}).")
    return lines


# ------------------------------------------------------------------------------------------------ causes
PROPERTIES: dict[str, str] = {
    "sp_distance": "|symmetry point| / weight range",
    "step_asymmetry": "step asymmetry at w = 0\n(dw_up - dw_down) / (dw_up + dw_down)",
    "n_states": "number of states",
    "c2c": "cycle-to-cycle scatter (fit)",
}
"""Device properties the causes analysis relates to accuracy, with their axis labels."""


def device_properties(points: list[tuple[str, float]], model: str = "piecewise") -> pd.DataFrame:
    """The fitted device's properties at every ``(device, pulse width)``: distance of the symmetry point from 0
    in units of the weight range, |w_sp| / (w_max - w_min); step asymmetry at w = 0 (the drift the initial weights
    feel); number of states and cycle-to-cycle scatter."""
    from .catalog import get_device

    rows = []
    for device_id, width in points:
        fit = get_device(device_id, width, model)
        up, down = fit.steps_at_zero
        span = fit.config.w_max - fit.config.w_min
        rows.append({"device": device_id, "pulse_width": float(width), "sp_distance": abs(fit.symmetry_point) / span,
                     "step_asymmetry": (up - down) / (up + down), "n_states": fit.n_states, "c2c": float(fit.c2c)})
    return pd.DataFrame(rows)


def accuracy_by_point(sweep_result: xr.Dataset, algorithms: tuple[str, ...] = ("sgd", "sps")) -> pd.DataFrame:
    """Final validation accuracy (mean over seeds) of each algorithm at every (device, pulse width) with runs."""
    final = sweep_result["val_acc"].isel(epoch=-1).sel(algorithm=list(algorithms)).mean("seed")
    table = final.to_dataframe(name="accuracy").reset_index()[["device", "pulse_width", "algorithm", "accuracy"]]
    return table.dropna(subset=["accuracy"]).reset_index(drop=True)


def threshold_fit(x: np.ndarray, collapsed: np.ndarray, n_boot: int = 2000, seed: int = 0,
                  confidence: float = 0.95) -> dict[str, float]:
    """The one-threshold classifier "collapsed iff x beyond t" with the fewest errors (either direction; t midway
    between neighbouring x), its error rate, and a percentile bootstrap interval of t over resampled points.

    ``direction`` +1: collapse above t; -1: below. With fewer than two distinct x, or when every point (or none)
    collapsed, there is nothing to separate and every value is NaN (a bootstrap draw without both kinds is
    skipped)."""
    x, collapsed = np.asarray(x, float), np.asarray(collapsed, bool)

    def best(xs: np.ndarray, ys: np.ndarray) -> tuple[float, float, float]:
        values = np.unique(xs)
        if values.size < 2 or ys.all() or not ys.any():
            return float("nan"), float("nan"), float("nan")
        candidates = (values[:-1] + values[1:]) / 2
        above = xs[None, :] > candidates[:, None]
        errors_up = (above != ys[None, :]).sum(1)  # collapse above t
        errors_down = (above == ys[None, :]).sum(1)  # collapse below t
        up, down = errors_up.argmin(), errors_down.argmin()
        if errors_up[up] <= errors_down[down]:
            return float(candidates[up]), 1.0, float(errors_up[up]) / xs.size
        return float(candidates[down]), -1.0, float(errors_down[down]) / xs.size

    threshold, direction, error = best(x, collapsed)
    rng = np.random.default_rng(seed)
    draws = [best(x[i], collapsed[i])[0] for i in (rng.integers(0, x.size, x.size) for _ in range(n_boot))]
    draws = np.array([d for d in draws if np.isfinite(d)])
    low, high = (np.quantile(draws, [(1 - confidence) / 2, (1 + confidence) / 2]) if draws.size
                 else (float("nan"), float("nan")))
    return {"threshold": threshold, "direction": direction, "error_rate": error, "ci_low": float(low),
            "ci_high": float(high), "n_points": int(x.size), "n_collapsed": int(collapsed.sum())}


def causes(accuracy: pd.DataFrame, properties: pd.DataFrame, collapse_below: float | dict[str, float] = 0.5,
           confidence: float = 0.95) -> pd.DataFrame:
    """Per algorithm and device property: Spearman's rank correlation with accuracy (and its p-value) and the
    threshold model of "accuracy below ``collapse_below``" (``threshold_fit``) over every device-width point;
    ``collapse_below`` one level for every algorithm or one per algorithm (e.g. plain SGD's collapse is to chance,
    SP shifting's a loss against mixed precision)."""
    joined = accuracy.merge(properties, on=["device", "pulse_width"])
    levels = collapse_below if isinstance(collapse_below, dict) else {}
    missing = sorted(set(joined["algorithm"]) - set(levels)) if levels else []
    if missing:
        raise ValueError(f"collapse_below has no level for algorithm(s) {missing}")
    rows = []
    for algorithm, group in joined.groupby("algorithm", sort=False):
        level = levels.get(algorithm, collapse_below)
        for name in PROPERTIES:
            varies = len(group) > 2 and group[name].nunique() > 1 and group["accuracy"].nunique() > 1
            rho, p_value = stats.spearmanr(group[name], group["accuracy"]) if varies else (np.nan, np.nan)
            fit = threshold_fit(group[name].to_numpy(), (group["accuracy"] < level).to_numpy(),
                                confidence=confidence)
            rows.append({"algorithm": algorithm, "collapse_below": float(level), "property": name,
                         "spearman_rho": float(rho),
                         "p_value": float(p_value), **fit})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------------ moved names
MOVED_NAMES: dict[str, str] = dict.fromkeys(
    ("EXPLAINS_FRACTION", "variant_effects", "COMPARED", "defensible_variant", "restoring_properties",
     "property_ranking", "outside_fraction"), "splimits_analysis")
"""Public name -> the ``ferrolib`` module that defines it (the SP-limits study's analysis, importable from here)."""


__getattr__ = moved.forwarder(__name__, MOVED_NAMES)

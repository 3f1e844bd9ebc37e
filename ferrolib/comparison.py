"""The paper's configuration against ideal reads: what the periphery changes, per rule and pulse width.

The ``paper`` profile runs what the paper ran (aihwkit's default periphery and mapping, its fits, full MNIST); the
``ideal`` profile runs the same grid with exact reads, one tile per layer and ferrolib's fits. Their runs are not
paired (other data, fits and draws), so a difference of means between them takes Welch's interval:

    d = mean_ideal - mean_paper,   se^2 = s_i^2 / n_i + s_p^2 / n_p,
    d +- t(1 - alpha/2, nu) se     (nu: Welch-Satterthwaite degrees of freedom)

and a verdict against ``ClaimThresholds.accuracy_margin`` (``analysis.verdict``).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr
from scipy import stats

from . import analysis

COLLAPSE_BELOW: dict[str, float] = {"sgd": 0.15, "sps": 0.75, "mp": 0.75}
"""Final accuracy under which a rule counts as collapsed: plain SGD near chance (0.10); SP shifting and mixed
precision 20 points under mixed precision's accuracy with ideal reads (about 0.95)."""

COLLAPSED, LEARNS = "collapsed", "learns"
"""Where a rule ends in one profile: its final accuracy's interval below ``collapse_below``, or above it."""


def final_accuracy(results: dict[str, xr.Dataset], accuracy: str = "test_acc") -> pd.DataFrame:
    """Final ``accuracy`` of every (profile, algorithm, pulse width) over seeds: ``mean``, ``std`` (ddof 1),
    ``low``/``high`` (the lowest and highest seed) and ``n``; ``results`` maps profile names to sweep results of
    one device."""
    rows = []
    for profile, result in results.items():
        final = result[accuracy].isel(epoch=-1, device=0)
        for algorithm in final["algorithm"].values:
            for width in final["pulse_width"].values:
                values = final.sel(algorithm=algorithm, pulse_width=width).values.astype(float)
                values = values[np.isfinite(values)]
                rows.append({"profile": profile, "algorithm": str(algorithm), "pulse_width": float(width),
                             "mean": values.mean(), "std": values.std(ddof=1) if values.size > 1 else np.nan,
                             "low": values.min(), "high": values.max(), "n": values.size})
    return pd.DataFrame(rows)


def welch_interval(a: np.ndarray, b: np.ndarray, confidence: float = 0.95) -> tuple[float, float, float]:
    """``(mean(a) - mean(b), low, high)``: Welch's two-sided interval of the difference of means (NaN bounds when
    either sample has fewer than two values or both have no spread)."""
    a, b = (np.asarray(x, dtype=float)[np.isfinite(x)] for x in (a, b))
    difference = float(a.mean() - b.mean())
    if a.size < 2 or b.size < 2:
        return difference, float("nan"), float("nan")
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = np.sqrt(va + vb)
    if se == 0:
        return difference, difference, difference
    nu = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, nu) * se)
    return difference, difference - half, difference + half


def _ends(values: np.ndarray, below: float, confidence: float) -> str:
    """``collapsed`` if the t interval of the mean lies below ``below``, ``learns`` if above, else inconclusive."""
    _, low, high, _ = analysis.t_interval(values, confidence)
    if np.isfinite(high) and high < below:
        return COLLAPSED
    if np.isfinite(low) and low > below:
        return LEARNS
    return analysis.INCONCLUSIVE


def periphery_effect(paper: xr.Dataset, ideal: xr.Dataset, collapse_below: dict[str, float] | None = None,
                     thresholds: analysis.ClaimThresholds | None = None,
                     accuracy: str = "test_acc") -> pd.DataFrame:
    """Per analog rule and pulse width: the final accuracy in each profile, the cost of the periphery (ideal minus
    paper, Welch interval) with its verdict against the accuracy margin ("the paper's periphery costs accuracy"),
    where each profile ends against ``collapse_below[rule]`` and the cause of a collapse: ``periphery`` (collapsed
    with the paper's reads only), ``device`` (collapsed with ideal reads too), ``none`` or ``inconclusive``."""
    limits = thresholds or analysis.ClaimThresholds()
    rows = []
    for algorithm, below in (collapse_below or COLLAPSE_BELOW).items():
        if algorithm not in paper["algorithm"].values:
            continue
        for width in paper["pulse_width"].values:
            samples = {name: result[accuracy].isel(epoch=-1, device=0).sel(algorithm=algorithm, pulse_width=width)
                       .values for name, result in (("paper", paper), ("ideal", ideal))}
            cost, low, high = welch_interval(samples["ideal"], samples["paper"], limits.confidence)
            ends = {name: _ends(values, below, limits.confidence) for name, values in samples.items()}
            if analysis.INCONCLUSIVE in ends.values():
                cause = analysis.INCONCLUSIVE
            elif ends["paper"] == COLLAPSED:
                cause = "device" if ends["ideal"] == COLLAPSED else "periphery"
            else:
                cause = "none"
            rows.append({"algorithm": algorithm, "pulse_width": float(width),
                         "paper": float(np.mean(samples["paper"])), "ideal": float(np.mean(samples["ideal"])),
                         "cost": cost, "ci_low": low, "ci_high": high,
                         "verdict": analysis.verdict(low, high, limits.accuracy_margin),
                         "paper_ends": ends["paper"], "ideal_ends": ends["ideal"], "collapse_below": below,
                         "cause": cause})
    return pd.DataFrame(rows)


def study_by_profile(studies: dict[str, xr.Dataset], collapse_below: dict[str, float] | None = None,
                     accuracy: str = "test_acc") -> pd.DataFrame:
    """The study's final ``accuracy`` per (device, pulse width, rule) in each profile (``studies`` maps profile
    names, ``paper`` and ``ideal``, to combined study results, ``study.load_study``), NaN where a profile lacks the
    point, and per rule of ``collapse_below`` the cause of a collapse at that point: ``device`` (below the line in
    both profiles), ``periphery`` (with the paper's reads only), ``ideal only``, ``none``, or NaN where a profile
    lacks the point. The study runs one seed, so these are single-run readings, not intervals."""
    below = collapse_below or COLLAPSE_BELOW
    columns = []
    for profile, result in studies.items():
        final = result[accuracy].isel(epoch=-1)
        if "seed" in final.dims:
            final = final.mean("seed", skipna=True)
        frame = final.to_dataframe(name=profile)[[profile]].dropna().reset_index()
        columns.append(frame.set_index(["device", "pulse_width", "algorithm"]))
    table = pd.concat(columns, axis=1, join="outer").sort_index().reset_index()
    causes = {(True, True): "device", (True, False): "periphery", (False, True): "ideal only",
              (False, False): "none"}
    table["cause"] = [
        causes[(row.paper < below[row.algorithm], row.ideal < below[row.algorithm])]
        if row.algorithm in below and np.isfinite(row.paper) and np.isfinite(row.ideal) else None
        for row in table.itertuples()]
    return table


def claims_by_profile(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The pooled rows of several claims tables (``analysis.claims``) side by side, one row per claim and
    algorithm: ``<profile>_estimate``, ``<profile>_interval`` and ``<profile>_verdict`` for every profile, and
    ``moved`` where the verdicts differ."""
    merged = None
    for profile, table in tables.items():
        pooled = table[table["scope"] == "pooled"]
        part = pd.DataFrame({
            "claim": pooled["claim"], "algorithm": pooled["algorithm"],
            f"{profile}_estimate": pooled["estimate"],
            f"{profile}_interval": [f"[{lo:+.3g}, {hi:+.3g}]" if np.isfinite(lo) else "undefined"
                                    for lo, hi in zip(pooled["ci_low"], pooled["ci_high"])],
            f"{profile}_verdict": pooled["verdict"]})
        merged = part if merged is None else merged.merge(part, on=["claim", "algorithm"], how="outer", sort=False)
    verdicts = merged[[f"{p}_verdict" for p in tables]]
    merged["moved"] = verdicts.nunique(axis=1, dropna=False) > 1
    return merged.reset_index(drop=True)


def claims_by_profile_markdown(table: pd.DataFrame, profiles: list[str]) -> str:
    """``claims_by_profile`` as Markdown: claim, algorithm, then estimate, interval and verdict per profile."""
    header = "| claim | algorithm | " + " | ".join(f"{p}: effect [interval] | {p}: verdict" for p in profiles) + " |"
    lines = [header, "|---|---|" + "---|---|" * len(profiles)]
    for row in table.to_dict("records"):
        cells = [f"{row[f'{p}_estimate']:+.3g} {row[f'{p}_interval']} | **{row[f'{p}_verdict']}**" for p in profiles]
        lines.append(f"| {row['claim']} | {row['algorithm']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


__all__ = ["COLLAPSE_BELOW", "COLLAPSED", "LEARNS", "final_accuracy", "welch_interval", "periphery_effect",
           "study_by_profile", "claims_by_profile", "claims_by_profile_markdown"]

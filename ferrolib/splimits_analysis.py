"""Analysis of the SP-shifting limits study (notebook 08): why SP shifting loses accuracy at some pulse widths.

Each study variant (an algorithmic choice or a device change) is compared with the baseline, seed by seed, at every
pulse width (``variant_effects``); the algorithm's defensible default among its own choices is the one better than
the baseline somewhere and worse nowhere (``defensible_variant``). The fitted devices' restoring properties around
their symmetry point (``restoring_properties``) are ranked against accuracy (``property_ranking``), and the share of
devices a run leaves outside the measured states is read from its state histograms (``outside_fraction``). The
intervals and verdicts are those of ``ferrolib.analysis``.
"""
from __future__ import annotations

import pandas as pd
import xarray as xr
from scipy import stats

from .analysis import FAILS, HOLDS, INCONCLUSIVE, t_interval, verdict

EXPLAINS_FRACTION = 0.5
"""A variant "explains" the drop of SP shifting at a pulse width when it recovers at least this fraction of the
gap to the control width (the whole interval of its effect above ``EXPLAINS_FRACTION * gap``)."""


def variant_effects(result: xr.Dataset, baseline: str = "default", control: float | None = None,
                    explains_fraction: float = EXPLAINS_FRACTION, confidence: float = 0.95) -> pd.DataFrame:
    """Each variant's effect on the final test accuracy (fraction) against ``baseline`` at every pulse width of a
    combined ``notebook 08`` result (dims ``variant, device, pulse_width, algorithm, seed, epoch``; one device and
    algorithm). Seeds are paired (same initial weights and data order), so the effect is the Student-t interval of
    the per-seed differences. ``gap`` is the baseline's accuracy at the ``control`` width (default: the shortest)
    minus at this width; ``recovered = effect / gap``; the verdict "explains" holds when the whole interval lies
    above ``explains_fraction * gap`` and fails when it lies below (widths with gap <= 0 have no verdict)."""
    final = result["test_acc"].isel(epoch=-1).squeeze(["device", "algorithm"], drop=True)
    widths = [float(w) for w in final["pulse_width"].values]
    control = widths[0] if control is None else float(control)
    base = final.sel(variant=baseline)
    rows = []
    for variant in [str(v) for v in final["variant"].values if v != baseline]:
        for width in widths:
            differences = (final.sel(variant=variant, pulse_width=width) - base.sel(pulse_width=width)).values
            effect, low, high, n = t_interval(differences, confidence)
            gap = float(base.sel(pulse_width=control).mean() - base.sel(pulse_width=width).mean())
            has_gap = width != control and gap > 0
            rows.append({"variant": variant, "pulse_width": width,
                         "baseline": float(base.sel(pulse_width=width).mean()),
                         "accuracy": float(final.sel(variant=variant, pulse_width=width).mean()),
                         "effect": effect, "ci_low": low, "ci_high": high, "n_seeds": n, "gap": gap,
                         "recovered": effect / gap if has_gap else float("nan"),
                         "verdict": verdict(low, high, explains_fraction * gap) if has_gap else "control",
                         "vs_baseline": COMPARED[verdict(low, high, 0.0)]})
    return pd.DataFrame(rows)


COMPARED = {HOLDS: "better", FAILS: "worse", INCONCLUSIVE: "no clear difference"}
"""A variant against the baseline at one width: the whole interval of its effect above 0, below 0, or neither."""


def defensible_variant(effects: pd.DataFrame, choices: tuple[str, ...], baseline: str = "default") -> str:
    """Among the algorithm's own choices (variants that do not change the device), the one to keep as the default:
    a variant that is ``better`` than the baseline at some width and ``worse`` at none (the largest mean effect
    among several), else the baseline."""
    candidates = []
    for variant in choices:
        rows = effects[effects["variant"] == variant]
        if (rows["vs_baseline"] == "better").any() and not (rows["vs_baseline"] == "worse").any():
            candidates.append((float(rows["effect"].mean()), variant))
    return max(candidates)[1] if candidates else baseline


def restoring_properties(device_id: str, widths: list[float], model: str = "piecewise") -> pd.DataFrame:
    """Per pulse width, the fitted device's properties that may limit SP shifting: symmetry point w*, restoring
    slope ``f'(w*)`` of ``f = dw_up - dw_down`` and the decay per zero-mean pulse ``-f'(w*)/2`` (the fraction of its
    distance from w* a device loses per pulse), the mean step there and ``4 m(w*)/|f'(w*)|`` (how far a pulse bias
    of 1 would hold it from w*, linearised), number of states, c2c, stable roots and the measured-state interval."""
    from .catalog import get_device
    from .symmetry import mean_step, restoring_slope

    rows = []
    for width in widths:
        fit = get_device(device_id, width, model)
        nominal = fit.config.devices()
        w_star = fit.symmetry_point
        slope = restoring_slope(nominal, w_star)
        step = mean_step(nominal, w_star)
        low, high = fit.measured_states()
        rows.append({"pulse_width": float(width), "w_star": w_star, "restoring_slope": slope,
                     "decay_per_pulse": -slope / 2, "mean_step": step, "hold_range": 4 * step / abs(slope),
                     "n_states": fit.n_states, "c2c": float(fit.c2c), "n_stable_roots": int(fit.stable_roots().size),
                     "measured_low": low, "measured_high": high})
    return pd.DataFrame(rows)


def property_ranking(accuracy: pd.Series, properties: pd.DataFrame,
                     names: tuple[str, ...] = ("decay_per_pulse", "hold_range", "n_states", "c2c", "w_star")
                     ) -> pd.DataFrame:
    """Spearman's rank correlation of ``accuracy`` (indexed by pulse width) with each property over the widths."""
    joined = properties.set_index("pulse_width").join(accuracy.rename("accuracy"), how="inner")
    rows = []
    for name in names:
        rho, p_value = stats.spearmanr(joined[name], joined["accuracy"])
        rows.append({"property": name, "spearman_rho": float(rho), "p_value": float(p_value), "n_widths": len(joined)})
    return pd.DataFrame(rows)


def outside_fraction(hist: xr.DataArray, centers: xr.DataArray, low: float, high: float) -> xr.DataArray:
    """Fraction of the devices of a histogram (over ``bin``) whose state lies outside ``[low, high]``."""
    outside = (centers < low) | (centers > high)
    return hist.where(outside, 0.0).sum("bin") / hist.sum("bin")

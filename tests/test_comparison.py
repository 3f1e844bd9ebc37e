"""The paper's configuration against ideal reads (ferrolib.comparison)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import stats

from ferrolib import analysis, comparison

WIDTHS = [2e-8, 2e-4]


def sweep_result(final: dict[tuple[str, float], list[float]]) -> xr.Dataset:
    """A one-device result whose last-epoch test accuracy per (algorithm, width) is ``final`` over seeds."""
    algorithms = sorted({a for a, _ in final})
    values = np.full((1, len(WIDTHS), len(algorithms), 3, 2), 0.5)
    for (algorithm, width), seeds in final.items():
        values[0, WIDTHS.index(width), algorithms.index(algorithm), :, -1] = seeds
    coords = {"device": ["D"], "pulse_width": WIDTHS, "algorithm": algorithms, "seed": [0, 1, 2], "epoch": [1, 2]}
    return xr.Dataset({"test_acc": (tuple(coords), values)}, coords=coords)


def test_welch_interval_is_scipys():
    rng = np.random.default_rng(3)
    a, b = rng.normal(0.3, 0.05, 3), rng.normal(0.1, 0.01, 4)
    difference, low, high = comparison.welch_interval(a, b, 0.95)
    reference = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert difference == pytest.approx(a.mean() - b.mean())
    assert (low, high) == pytest.approx((reference.low, reference.high), rel=1e-9)
    assert np.isnan(comparison.welch_interval(a[:1], b)[1])  # one value: no interval


def test_periphery_effect_names_the_cause_of_a_collapse():
    paper = sweep_result({("sgd", WIDTHS[0]): [0.098, 0.101, 0.103], ("sgd", WIDTHS[1]): [0.099, 0.101, 0.100],
                          ("sps", WIDTHS[0]): [0.80, 0.82, 0.81], ("sps", WIDTHS[1]): [0.60, 0.95, 0.30]})
    ideal = sweep_result({("sgd", WIDTHS[0]): [0.30, 0.35, 0.33], ("sgd", WIDTHS[1]): [0.100, 0.102, 0.099],
                          ("sps", WIDTHS[0]): [0.85, 0.86, 0.84], ("sps", WIDTHS[1]): [0.66, 0.64, 0.67]})
    table = comparison.periphery_effect(paper, ideal, {"sgd": 0.15, "sps": 0.75}).set_index(["algorithm", "pulse_width"])
    short, long = table.loc[("sgd", WIDTHS[0])], table.loc[("sgd", WIDTHS[1])]
    assert (short["cause"], short["paper_ends"], short["ideal_ends"]) == ("periphery", "collapsed", "learns")
    assert short["verdict"] == analysis.HOLDS and short["cost"] == pytest.approx(0.3267 - 0.1007, abs=1e-3)
    assert (long["cause"], long["verdict"]) == ("device", analysis.FAILS)  # at chance in both: no cost beyond 0.01
    assert table.loc[("sps", WIDTHS[0]), "cause"] == "none"
    assert table.loc[("sps", WIDTHS[1]), "cause"] == analysis.INCONCLUSIVE  # the paper's seeds straddle 0.75


def test_final_accuracy_and_claims_side_by_side():
    paper = sweep_result({("sgd", w): [0.1, 0.2, 0.3] for w in WIDTHS})
    row = comparison.final_accuracy({"paper": paper}).iloc[0]
    assert (row["mean"], row["low"], row["high"], row["n"]) == pytest.approx((0.2, 0.1, 0.3, 3))
    assert row["std"] == pytest.approx(0.1)

    def table(verdict: str, estimate: float) -> pd.DataFrame:
        return pd.DataFrame([{"claim": "c", "algorithm": "sgd", "scope": "pooled", "estimate": estimate,
                              "ci_low": estimate - 0.1, "ci_high": estimate + 0.1, "verdict": verdict},
                             {"claim": "c", "algorithm": "sgd", "scope": "D", "estimate": 9.0, "ci_low": 8.0,
                              "ci_high": 10.0, "verdict": "holds"}])

    merged = comparison.claims_by_profile({"paper": table("fails", -0.5), "ideal": table("holds", 0.5)})
    assert len(merged) == 1 and bool(merged.loc[0, "moved"])
    assert merged.loc[0, "paper_interval"] == "[-0.6, -0.4]" and merged.loc[0, "ideal_verdict"] == "holds"
    markdown = comparison.claims_by_profile_markdown(merged, ["paper", "ideal"])
    assert "**fails**" in markdown and "**holds**" in markdown and markdown.count("\n") == 2


def study_result(final: dict[tuple[str, float, str], float], widths: list[float]) -> xr.Dataset:
    """A study result (devices D1, D2; one seed) whose last-epoch test accuracy is ``final``, NaN elsewhere (a
    device not measured at a width)."""
    devices, algorithms = ["D1", "D2"], ["mp", "sgd"]
    values = np.full((2, len(widths), 2, 1, 2), np.nan)
    for (device, width, algorithm), value in final.items():
        values[devices.index(device), widths.index(width), algorithms.index(algorithm), 0, :] = value
    coords = {"device": devices, "pulse_width": widths, "algorithm": algorithms, "seed": [0], "epoch": [1, 2]}
    return xr.Dataset({"test_acc": (tuple(coords), values)}, coords=coords)


def test_study_by_profile_joins_the_profiles_point_by_point_and_names_each_collapse():
    paper = study_result({("D1", 2e-8, "sgd"): 0.10, ("D1", 2e-4, "sgd"): 0.11, ("D2", 2e-8, "sgd"): 0.60,
                          ("D1", 2e-8, "mp"): 0.95}, [2e-8, 2e-4])
    ideal = study_result({("D1", 2e-8, "sgd"): 0.30, ("D2", 2e-8, "sgd"): 0.12,
                          ("D2", 5e-8, "sgd"): 0.5}, [2e-8, 5e-8])
    table = comparison.study_by_profile({"paper": paper, "ideal": ideal}, {"sgd": 0.15})
    row = table.set_index(["device", "pulse_width", "algorithm"])
    assert row.loc[("D1", 2e-8, "sgd"), ["paper", "ideal", "cause"]].tolist() == [0.10, 0.30, "periphery"]
    assert row.loc[("D2", 2e-8, "sgd"), "cause"] == "ideal only"
    assert pd.isna(row.loc[("D1", 2e-8, "mp"), "cause"])  # no collapse line for mp here, and no ideal run
    assert np.isnan(row.loc[("D1", 2e-4, "sgd"), "ideal"]) and pd.isna(row.loc[("D1", 2e-4, "sgd"), "cause"])
    assert np.isnan(row.loc[("D2", 5e-8, "sgd"), "paper"])  # the ideal study's width the paper study lacks
    assert len(table) == 5

"""The analysis module on fabricated sweeps with known answers: intervals, each verdict branch, per device and
pooled, exact claims, untestable claims, and the figures' seed statistics."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from ferrolib import analysis
from ferrolib.analysis import FAILS, HOLDS, INCONCLUSIVE, ClaimThresholds
from ferrolib.sweep import Sweep, run_sweep

from fake_runs import FakeConfig, fake_train

WIDTHS = [2e-8, 2e-6, 2e-4]
SGD_VS_MP = "Plain analog SGD is less accurate than mixed precision"
SPS_VS_SGD = "Symmetry-point shifting restores accuracy: better than plain SGD"
SPS_VS_MP = "Symmetry-point shifting restores accuracy: as good as mixed precision"
MORE_EPOCHS = "Shorter pulses need more epochs to converge"
ENERGY_PER_PULSE = "Per-update energy falls with shorter pulses, ledger model"


@pytest.fixture(scope="module")
def fake_sweep(tmp_path_factory):
    """``fake_sweep(seeds, devices, algorithms)``: a fabricated sweep of 8 epochs over three pulse widths, built
    once per argument set in this module (tests copy before changing it)."""
    built: dict[tuple, xr.Dataset] = {}

    def make(seeds=(0, 1, 2), devices=("ID170ZR5000",), algorithms=("mp", "sgd", "sps")) -> xr.Dataset:
        key = (tuple(seeds), tuple(devices), tuple(algorithms))
        if key not in built:
            spec = Sweep(base=FakeConfig(epochs=8), devices=list(devices), pulse_widths=WIDTHS,
                         algorithms=list(algorithms), seeds=list(seeds),
                         lr_by_algorithm={"mp": 0.5, "sgd": 0.1, "sps": 0.1})
            built[key] = run_sweep(spec, tmp_path_factory.mktemp("runs"), run=fake_train, n_workers=1, progress=False)
        return built[key].copy(deep=True)

    return make


def shift_final(ds: xr.Dataset, algorithm: str, offsets: dict) -> xr.Dataset:
    """Add ``offsets[(device, seed)]`` to every epoch's accuracy of ``algorithm`` (a known effect per unit)."""
    shift = xr.zeros_like(ds["val_acc"].isel(epoch=0, drop=True))
    for (device, seed), value in offsets.items():
        shift.loc[dict(device=device, seed=seed, algorithm=algorithm)] = value
    return ds.assign(val_acc=ds["val_acc"] + shift)


def test_t_interval_matches_the_closed_form():
    mean, low, high, n = analysis.t_interval(np.array([1.0, 2.0, 3.0, np.nan]), 0.95)
    half = 4.302652729911275 / np.sqrt(3)  # t_{0.975, 2} * s / sqrt(n), s = 1
    assert n == 3 and mean == 2.0 and np.isclose(low, 2 - half) and np.isclose(high, 2 + half)
    mean, low, high, n = analysis.t_interval(np.array([0.7]))
    assert n == 1 and mean == 0.7 and np.isnan(low) and np.isnan(high)
    assert analysis.t_interval(np.array([]))[3] == 0


def test_verdict_branches():
    assert analysis.verdict(0.02, 0.05, 0.01) == HOLDS
    assert analysis.verdict(-0.05, 0.0, 0.01) == FAILS
    assert analysis.verdict(0.0, 0.05, 0.01) == INCONCLUSIVE  # straddles the threshold
    assert analysis.verdict(np.nan, np.nan, 0.01) == INCONCLUSIVE  # one seed: no interval


def test_claims_on_fabricated_runs_with_known_effects(fake_sweep):
    ds = fake_sweep()
    table = analysis.claims(ds, ClaimThresholds(target=0.9, relative=False))
    assert list(table.columns) == analysis.CLAIM_COLUMNS
    row = analysis.verdict_of(table, SGD_VS_MP)
    # fabricated finals: mp 0.97 and sgd 0.80 times the same rising curve; the gap is the same for every seed
    final = ds["val_acc"].isel(epoch=-1)
    expected = float((final.sel(algorithm="mp") - final.sel(algorithm="sgd")).mean())
    assert row.verdict == HOLDS and np.isclose(row.estimate, expected) and row.n_seeds == 3 and row.n_units == 3
    assert row.ci_low <= row.estimate <= row.ci_high and row.devices == "ID170ZR5000"
    assert analysis.verdict_of(table, SPS_VS_SGD).verdict == HOLDS
    assert analysis.verdict_of(table, SPS_VS_MP).verdict == HOLDS  # 0.965 vs 0.97: within the 0.01 margin
    assert analysis.verdict_of(table, MORE_EPOCHS, "mp").verdict == HOLDS  # tau grows at short widths
    # sgd never reaches 0.9 at the longest width: nothing can test its epochs claim
    sgd_epochs = analysis.verdict_of(table, MORE_EPOCHS, "sgd")
    assert sgd_epochs.verdict == INCONCLUSIVE and sgd_epochs.n_units == 0
    assert sgd_epochs.measured == "not testable: the longest width never reached the target"
    # the fabricated 20 ns curve is still rising at epoch 8 (0.81 against 0.97): accuracy is lost
    assert analysis.verdict_of(table, "No accuracy is lost with shorter pulses", "mp").verdict == FAILS
    assert analysis.verdict_of(table, ENERGY_PER_PULSE, "all").method.startswith("exact")


def test_each_verdict_from_the_seed_spread(fake_sweep):
    ds = fake_sweep()
    device = "ID170ZR5000"
    limits = ClaimThresholds(target=0.9, relative=False, accuracy_margin=0.01)
    # sps - sgd gap per seed, set exactly: the baseline gap is removed, then a known gap added
    base_gap = (ds["val_acc"].sel(algorithm="sps") - ds["val_acc"].sel(algorithm="sgd")).isel(epoch=-1).mean("pulse_width")

    def with_gap(gaps: list[float]) -> xr.Dataset:
        offsets = {(device, seed): gaps[seed] - float(base_gap.sel(device=device, seed=seed)) for seed in range(3)}
        return shift_final(ds, "sps", offsets)

    cases = {HOLDS: [0.05, 0.06, 0.055], FAILS: [-0.05, -0.04, -0.06], INCONCLUSIVE: [0.03, -0.01, 0.02]}
    for expected, gaps in cases.items():
        row = analysis.verdict_of(analysis.claims(with_gap(gaps), limits), SPS_VS_SGD)
        mean, low, high, _ = analysis.t_interval(np.array(gaps), limits.confidence)
        assert row.verdict == expected, (gaps, row.ci_low, row.ci_high)
        assert np.isclose(row.estimate, mean) and np.isclose(row.ci_low, low) and np.isclose(row.ci_high, high)
    single = analysis.claims(with_gap(cases[HOLDS]).sel(seed=[0]), limits)
    row = analysis.verdict_of(single, SPS_VS_SGD)
    assert row.verdict == INCONCLUSIVE and row.n_seeds == 1 and np.isnan(row.ci_low)
    # an exact claim needs no seeds: the energy of one pulse does not depend on them
    assert analysis.verdict_of(single, ENERGY_PER_PULSE, "all").verdict == HOLDS


def test_per_device_and_pooled(fake_sweep):
    devices = ("ID161ZR15000", "ID170ZR5000")
    ds = fake_sweep(devices=devices, seeds=(0, 1))
    # on ID161ZR15000 sps falls 0.2 below its fabricated level, so it no longer beats sgd by more than the margin
    ds = shift_final(ds, "sps", {("ID161ZR15000", 0): -0.2, ("ID161ZR15000", 1): -0.2})
    table = analysis.claims(ds, ClaimThresholds(target=0.9, relative=False))
    assert set(table["scope"]) == {"pooled", *devices}
    assert analysis.verdict_of(table, SPS_VS_SGD, scope="ID170ZR5000").verdict == HOLDS
    assert analysis.verdict_of(table, SPS_VS_SGD, scope="ID161ZR15000").verdict == FAILS
    pooled = analysis.verdict_of(table, SPS_VS_SGD)
    assert pooled.n_units == 4 and pooled.devices == "ID161ZR15000, ID170ZR5000"
    assert pooled.verdict == INCONCLUSIVE  # the devices disagree: the pooled interval straddles the margin
    sps_161 = float(ds["val_acc"].isel(epoch=-1).sel(device="ID161ZR15000", algorithm="sps").mean())
    assert f"sps {sps_161:.4f}," in analysis.verdict_of(table, SPS_VS_SGD, scope="ID161ZR15000").measured  # its own
    assert "(device, seed) units" in pooled.method
    only_pooled = analysis.claims(ds, ClaimThresholds(target=0.9, relative=False), per_device=False)
    assert set(only_pooled["scope"]) == {"pooled"}


def test_relative_target_and_fp_claim(fake_sweep):
    ds = fake_sweep(seeds=(0, 1), algorithms=("fp", "mp"))
    rel = analysis.sweep_convergence(ds, 0.99, relative=True)
    fp_final = ds["val_acc"].sel(algorithm="fp").isel(epoch=-1)
    assert np.allclose(rel["threshold"], 0.99 * fp_final.broadcast_like(rel["threshold"]))
    table = analysis.claims(ds, ClaimThresholds(target=0.9, relative=False))
    # 0.97 against 0.98, times the same rising curve: within the 0.01 margin, until mp loses 0.05
    assert analysis.verdict_of(table, "Mixed precision matches floating point").verdict == HOLDS
    worse = shift_final(ds, "mp", {("ID170ZR5000", 0): -0.05, ("ID170ZR5000", 1): -0.05})
    assert analysis.verdict_of(analysis.claims(worse, ClaimThresholds(target=0.9, relative=False)),
                               "Mixed precision matches floating point").verdict == FAILS
    with pytest.raises(ValueError, match="fp"):
        analysis.sweep_convergence(ds.sel(algorithm=["mp"]), 0.9, relative=True)


def test_seed_statistics_and_convergence_summary(fake_sweep):
    ds = fake_sweep()
    final = ds["val_acc"].isel(epoch=-1)
    statistics = analysis.seed_statistics(final)
    point = final.sel(device="ID170ZR5000", algorithm="mp", pulse_width=2e-8).values
    at = statistics.sel(device="ID170ZR5000", algorithm="mp", pulse_width=2e-8)
    assert np.isclose(at["mean"], point.mean()) and np.isclose(at["std"], point.std(ddof=1)) and int(at["n"]) == 3
    summary = analysis.convergence_summary(analysis.sweep_convergence(ds, 0.9))
    assert not bool(summary["reached_all"].sel(algorithm="sgd").any())
    assert summary["epochs_to_target_mean"].sel(algorithm="sgd").isnull().all()  # never reached: no mean
    totals = analysis.pulse_totals(ds)
    assert np.array_equal(totals["total"], ds["pulses"].sum(["epoch", "layer", "polarity"]))
    assert ((totals["up_share"] > 0) & (totals["up_share"] < 1)).sel(algorithm="sgd").all()


def test_bad_thresholds_and_grids_are_named(fake_sweep):
    with pytest.raises(ValueError, match="confidence"):
        ClaimThresholds(confidence=1.5)
    with pytest.raises(ValueError, match="target"):
        ClaimThresholds(target=0.0)
    assert repr(ClaimThresholds(target=0.9, relative=False)) == "ClaimThresholds(target=0.9, relative=False)"
    ds = fake_sweep(seeds=(0,))
    with pytest.raises(KeyError, match="no such claim"):
        analysis.verdict_of(analysis.claims(ds, ClaimThresholds(relative=False)), "no such claim")


def test_threshold_fit_recovers_a_known_threshold():
    x = np.array([0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9])
    fit = analysis.threshold_fit(x, x > 0.5, n_boot=200)
    assert fit["threshold"] == 0.5 and fit["direction"] == 1.0 and fit["error_rate"] == 0.0
    assert 0.3 <= fit["ci_low"] <= 0.5 <= fit["ci_high"] <= 0.7
    below = analysis.threshold_fit(x, x < 0.25, n_boot=50)
    assert below["threshold"] == 0.25 and below["direction"] == -1.0
    noisy = analysis.threshold_fit(x, np.array([0, 0, 1, 0, 1, 1, 1, 1], bool), n_boot=50)
    assert noisy["error_rate"] == 1 / 8  # one point on the wrong side of the best threshold
    assert np.isnan(analysis.threshold_fit(np.ones(4), np.array([0, 1, 0, 1], bool), n_boot=10)["threshold"])
    assert np.isnan(analysis.threshold_fit(x, np.ones(8, bool), n_boot=10)["threshold"])  # all collapsed


def test_causes_rank_the_property_that_decides_the_collapse():
    properties = pd.DataFrame({"device": ["a"] * 6, "pulse_width": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
                               "sp_distance": [0.1, 0.2, 0.3, 0.5, 0.6, 0.7], "step_asymmetry": [0.1, -0.1] * 3,
                               "n_states": [50.0, 40.0, 60.0, 30.0, 45.0, 55.0], "c2c": [0.2] * 6})
    accuracy = pd.DataFrame({"device": ["a"] * 6, "pulse_width": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
                             "algorithm": ["sgd"] * 6, "accuracy": [0.9, 0.85, 0.8, 0.2, 0.15, 0.1]})
    table = analysis.causes(accuracy, properties, collapse_below=0.5).set_index("property")
    assert np.isclose(table.loc["sp_distance", "spearman_rho"], -1.0)
    assert table.loc["sp_distance", "threshold"] == 0.4 and table.loc["sp_distance", "error_rate"] == 0.0
    assert table.loc["step_asymmetry", "error_rate"] > 0  # alternating: it cannot separate the collapse
    assert np.isnan(table.loc["c2c", "threshold"])  # constant: no threshold
    both = pd.concat([accuracy, accuracy.assign(algorithm="sps", accuracy=accuracy["accuracy"] + 0.05)])
    levels = analysis.causes(both, properties, collapse_below={"sgd": 0.5, "sps": 0.88}).set_index(
        ["algorithm", "property"])
    assert levels.loc[("sps", "sp_distance"), "threshold"] == 0.25  # 0.95, 0.90 | 0.85, ...: its own level
    assert levels.loc[("sgd", "sp_distance"), "threshold"] == 0.4
    with pytest.raises(ValueError, match="sps"):
        analysis.causes(both, properties, collapse_below={"sgd": 0.5})


def test_thresholds_default_to_a_relative_target_and_override_only_given_values():
    """The notebooks' thresholds come from one place: None parameters keep the documented defaults."""
    assert ClaimThresholds.overriding(target=None, relative=None) == ClaimThresholds()
    assert ClaimThresholds().relative and ClaimThresholds().describe_target() == "99% of fp's final accuracy"
    absolute = ClaimThresholds.overriding(target=0.9, relative=False, confidence=None)
    assert absolute == ClaimThresholds(target=0.9, relative=False)
    assert absolute.describe_target() == "90% validation accuracy"


def test_point_units_give_each_device_an_interval_from_one_seed(fake_sweep):
    """The study has one seed per device: the paired gap at every (device, width) point is the unit."""
    devices = ("ID161ZR15000", "ID170ZR5000")
    ds = fake_sweep(devices=devices, seeds=(0,))
    limits = ClaimThresholds(target=0.9, relative=False)
    table = analysis.claims(ds, limits, unit="point")
    gaps = (ds["val_acc"].sel(algorithm="sps") - ds["val_acc"].sel(algorithm="sgd")).isel(epoch=-1)
    pooled = analysis.verdict_of(table, SPS_VS_SGD)
    mean, low, high, n = analysis.t_interval(gaps.values.ravel(), limits.confidence)
    assert pooled.n_units == n == 6 and np.isclose(pooled.estimate, mean) and np.isclose(pooled.ci_low, low)
    assert pooled.verdict == HOLDS and "(device, pulse width, seed) points" in pooled.method
    one = analysis.verdict_of(table, SPS_VS_SGD, scope="ID161ZR15000")
    mean, low, high, n = analysis.t_interval(gaps.sel(device="ID161ZR15000").values.ravel(), limits.confidence)
    assert one.n_units == n == 3 and one.n_seeds == 1 and np.isclose(one.ci_high, high) and one.verdict == HOLDS
    # with seeds as units one seed per device leaves no interval; the width-extreme claims are the same either way
    by_seed = analysis.claims(ds, limits)
    assert analysis.verdict_of(by_seed, SPS_VS_SGD, scope="ID161ZR15000").verdict == INCONCLUSIVE
    assert analysis.verdict_of(by_seed, MORE_EPOCHS, "mp").estimate == analysis.verdict_of(table, MORE_EPOCHS,
                                                                                            "mp").estimate
    with pytest.raises(ValueError, match="unit"):
        analysis.claims(ds, limits, unit="width")


def test_fp_reference_from_another_sweep_gives_the_same_relative_target(fake_sweep):
    ds = fake_sweep(seeds=(0, 1), algorithms=("fp", "mp"))
    fp = ds["val_acc"].sel(algorithm="fp").isel(pulse_width=0, drop=True)  # fp trains no device: one run per seed
    ds["val_acc"] = xr.where(ds["algorithm"] == "fp", fp, ds["val_acc"]).transpose(*ds["val_acc"].dims)
    reference = analysis.fp_reference(ds)
    assert reference.dims == ("seed",)
    assert np.allclose(reference, ds["val_acc"].sel(algorithm="fp").isel(epoch=-1, device=0, pulse_width=0))
    with_fp = analysis.verdict_of(analysis.claims(ds), MORE_EPOCHS, "mp")
    without = analysis.verdict_of(analysis.claims(ds.sel(algorithm=["mp"]), reference=reference), MORE_EPOCHS, "mp")
    assert with_fp.estimate == without.estimate and with_fp.n_units == without.n_units == 2
    with pytest.raises(ValueError, match="reference"):
        analysis.claims(ds.sel(algorithm=["mp"]))
    with pytest.raises(ValueError, match=r"no seed \[1\]"):
        analysis.claims(ds.sel(algorithm=["mp"]), reference=reference.sel(seed=[0]))
    with pytest.raises(ValueError, match="differs"):
        analysis.fp_reference(fake_sweep(seeds=(0, 1), algorithms=("fp", "mp")))  # the fake's fp depends on width


def test_epochs_by_width_counts_only_seeds_that_reached_the_target(fake_sweep):
    ds = fake_sweep()
    limits = ClaimThresholds(target=0.78, relative=False)  # mp reaches it everywhere, sgd (0.80 at most) not at 20 ns
    table = analysis.epochs_by_width(ds, limits).set_index(["algorithm", "pulse_width"])
    conv = analysis.sweep_convergence(ds, 0.78)
    epochs = conv["epochs_to_target"].sel(algorithm="mp", device="ID170ZR5000")
    for width in WIDTHS:
        row = table.loc[("mp", width)]
        at = epochs.sel(pulse_width=width).values
        assert row.n_reached == row.n_seeds == 3 and row.epochs_mean == at.mean()
        assert np.isclose(row.epochs_std, at.std(ddof=1))
    # the fabricated curves: tau grows one epoch per decade, so 20 ns needs more epochs than 200 us
    assert table.loc[("mp", 2e-8), "epochs_mean"] > table.loc[("mp", 2e-4), "epochs_mean"]
    never = table.loc[("sgd", 2e-8)]  # 0.80 times a curve still rising at epoch 8
    assert never.n_reached == 0 and np.isnan(never.epochs_mean)
    assert "fp" not in table.index.get_level_values("algorithm")


def test_smallest_adjacent_log_ratio_skips_widths_a_device_lacks():
    # Two devices joined over the union of their widths (as the study joins ID301's 12 widths with 6-width devices):
    # A measured at 1, 10, 100 (energy x10 per decade), B at 1, 3, 10, 30, 100 (x2 per step, but falling once).
    widths = [1.0, 3.0, 10.0, 30.0, 100.0]
    nan = np.nan
    e_pulse = xr.DataArray([[1.0, nan, 10.0, nan, 100.0], [1.0, 2.0, 4.0, 2.0, 4.0]],
                           coords={"device": ["A", "B"], "pulse_width": widths}, dims=("device", "pulse_width"))
    ratio = analysis.smallest_adjacent_log_ratio(e_pulse)
    assert ratio.sel(device="A") == pytest.approx(1.0)
    assert ratio.sel(device="B") == pytest.approx(np.log10(0.5))
    lone = analysis.smallest_adjacent_log_ratio(e_pulse.where(e_pulse["pulse_width"] == 1.0))
    assert np.isnan(lone.values).all()


def test_per_update_energy_keeps_a_missing_width_missing():
    # A joined study has NaN where a device was not measured; summing the ledger's components must not turn that
    # into an energy of 0 J (log10 -> -inf would decide the energy claims).
    energy_per_pulse = xr.DataArray(np.full((2, 2, 3), np.nan), dims=("pulse_width", "polarity", "component"),
                                    coords={"pulse_width": [1e-8, 2e-8]})
    energy_per_pulse[0] = 1e-9
    data = xr.Dataset({"energy_per_pulse": energy_per_pulse.expand_dims(device=["A"]),
                       "data_kind": xr.DataArray([["measured", "measured"]], dims=("device", "pulse_width"))})
    e = analysis.per_update_energy(data)
    assert float(e.sel(device="A", pulse_width=1e-8)) == pytest.approx(3e-9)
    assert np.isnan(float(e.sel(device="A", pulse_width=2e-8)))


def test_written_claims_read_the_same_on_hosts_that_differ_in_the_last_bits(fake_sweep, tmp_path):
    """Two hosts whose estimates differ by a few ulps (BLAS and numba's target round differently) write the same
    claims files: the numbers carry WRITTEN_DIGITS significant digits."""
    table = analysis.claims(fake_sweep(), ClaimThresholds(target=0.9, relative=False))
    other_host = table.copy()
    for column in ("estimate", "ci_low", "ci_high"):
        other_host[column] = np.nextafter(np.nextafter(table[column].to_numpy(), np.inf), np.inf)
    assert not other_host["estimate"].equals(table["estimate"])
    written = [analysis.write_claims(t, tmp_path / name, "claims", {"data": "fabricated"})
               for name, t in (("here", table), ("there", other_host))]
    for here, there in zip(*written):
        assert here.read_text() == there.read_text()
    reread = pd.read_csv(written[0][0], comment="#")
    finite = np.isfinite(table["estimate"])
    assert np.allclose(reread["estimate"][finite], table["estimate"][finite], rtol=10.0 ** -(analysis.WRITTEN_DIGITS - 1))

"""What limits symmetry-point shifting: stable roots and measured states of piecewise fits, the
SP-shifting options against references, the single-device pulse walk, the variant verdicts, the sweep file and
its committed summary."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import xarray as xr

from ferrolib import analysis, provenance, sourcedata, splimits, splimits_analysis, store, sweep
from ferrolib import devices as dev
from ferrolib.cli import main
from ferrolib.devices import PiecewiseStep, SoftBounds
from ferrolib.fitted import FittedDevice, scale_asymmetry
from ferrolib.symmetry import (SYMMETRY_POINT_METHODS, node_support, random_pulse_walk, reference_point,
                               restoring_slope, step_difference_roots, symmetry_point, symmetry_point_protocol)
from ferrolib.training import TrainConfig
from ferrolib.training.config import validate
from ferrolib.training.loop import build_network

# f = dw_up - dw_down at the nodes x = -1, -0.5, 0, 0.5, 1 is +1, -1, +1, -1, 0: stable roots at -0.75 and 0.25,
# an unstable one at -0.25 (the last segment ends at 0 from below: no root).
TWO_ROOTS = PiecewiseStep(dw_min=1.0, piecewise_up=(2.0, 0.5, 2.0, 0.5, 1.0), piecewise_down=(1.0, 1.5, 1.0, 1.5, 1.0))


def _fitted(config) -> FittedDevice:
    return FittedDevice(config=config, device_id="IDTEST", pulse_width_s=1e-6, data_kind="synthetic")


def _sign_changes(device: dev.DeviceArray, n: int = 100_001) -> tuple[np.ndarray, np.ndarray]:
    """Reference: stable and unstable roots from sign changes of dw_up - dw_down on a fine grid."""
    w = torch.linspace(float(device.w_min), float(device.w_max), n, dtype=torch.float64)
    f = (device.dw_up(w) - device.dw_down(w)).numpy()
    x = w.numpy()
    stable = x[1:][(f[:-1] > 0) & (f[1:] <= 0)]
    unstable = x[1:][(f[:-1] <= 0) & (f[1:] > 0)]
    return stable, unstable


def test_stable_roots_of_a_hand_built_piecewise_model():
    device = TWO_ROOTS.devices()
    stable, unstable = step_difference_roots(device)
    assert stable == pytest.approx([-0.75, 0.25]) and unstable == pytest.approx([-0.25])
    reference_stable, reference_unstable = _sign_changes(device)
    assert stable == pytest.approx(reference_stable, abs=1e-4) and unstable == pytest.approx(reference_unstable, abs=1e-4)
    summary = _fitted(TWO_ROOTS).summary(n_alternating=200)
    assert summary["n_stable_roots"] == 2
    assert summary["sp_analytic"] == pytest.approx(0.25) and summary["sp_analytic_from_bottom"] == pytest.approx(-0.75)
    assert _fitted(SoftBounds(dw_min=0.01, up_down=0.5)).summary(n_alternating=200)["n_stable_roots"] == 1
    with pytest.raises(ValueError, match="one device"):
        step_difference_roots(TWO_ROOTS.sample((2,)))


def test_a_floored_plateau_where_both_steps_agree_counts_as_a_root():
    # up and down both at the floor below 0 differ by 1e-7 dw_min: no drift in 4000 pulses, a trap at the plateau
    config = PiecewiseStep(dw_min=0.1, up_down=2e-6, piecewise_up=(0.05, 0.05, 0.05, 1.0, 0.5, 0.0),
                           piecewise_down=(0.0, 0.05, 0.05, 0.5, 1.0, 1.0))
    stable, _ = step_difference_roots(config.devices())
    assert stable == pytest.approx([-0.6, 0.4], abs=1e-5)
    assert step_difference_roots(config.devices(), tolerance=0.0)[0] == pytest.approx([0.4], abs=1e-5)


def test_measured_states_skip_the_floor_and_the_constant_extrapolation():
    # up: floored at nodes 0-1, held constant at 2-3, measured 3..6, saturating 0 at 8 (7 = 6: held constant)
    up = (0.05, 0.05, 0.3, 0.3, 0.5, 0.7, 0.9, 0.9, 0.0)
    down = (0.0, 0.4, 0.5, 0.6, 0.7, 0.8, 0.05, 0.05, 0.05)  # measured 1..5, floored beyond
    assert node_support(up, 0.05, "last") == (3, 6)
    assert node_support(down, 0.05, "first") == (1, 5)
    config = PiecewiseStep(dw_min=0.1, w_min=-1.0, w_max=1.0, piecewise_up=up, piecewise_down=down)
    positions = np.linspace(-1.0, 1.0, 9)
    assert _fitted(config).measured_states() == pytest.approx((positions[3], positions[5]))
    assert node_support((0.05, 0.05, 0.0), 0.05, "last") == (-1, -1)


def test_reference_point_fast_path_equals_the_per_device_reference():
    config = TWO_ROOTS
    uniform = config.sample((2, 3), dtype=torch.float64)
    varied = config.sample((2, 3), dev.DeviceNoise(dw_min_dtod=0.2, up_down_dtod=0.3), torch.Generator().manual_seed(1),
                           torch.float64)
    for method in SYMMETRY_POINT_METHODS:
        for array in (uniform, varied):
            fast = reference_point(array, method, n_alternating=300)
            for index in np.ndindex(2, 3):
                single = array.map(lambda t, i=index: t[i])
                if method == "protocol":
                    expected = symmetry_point_protocol(single, n_alternating=300)
                elif method == "protocol_from_zero":
                    expected = symmetry_point_protocol(single, n=0, n_alternating=300)
                elif method == "paper_alternating":
                    expected = symmetry_point_protocol(single, n=0, n_alternating=48, tail=5)
                else:
                    expected = symmetry_point(single, start=single.w_min if method.endswith("bottom") else 0.0)
                assert float(fast[index]) == pytest.approx(float(expected), abs=1e-12), (method, index)
    with pytest.raises(ValueError, match="unknown symmetry-point method"):
        reference_point(uniform, "median")


def test_asymmetry_scale_keeps_mean_steps_and_roots_and_scales_the_restoring_slope():
    fitted = _fitted(PiecewiseStep(dw_min=0.05, up_down=0.4, piecewise_up=(1.0, 1.5, 1.0, 0.5, 0.0),
                                   piecewise_down=(0.0, 0.5, 1.0, 1.2, 1.0)))
    assert scale_asymmetry(fitted, 1.0) is fitted
    scaled = scale_asymmetry(fitted, 0.3)
    before, after = fitted.config.devices(), scaled.config.devices()
    w = torch.linspace(-1, 1, 101, dtype=torch.float64)
    assert torch.allclose(before.dw_up(w) + before.dw_down(w), after.dw_up(w) + after.dw_down(w))
    assert torch.allclose(0.3 * (before.dw_up(w) - before.dw_down(w)), after.dw_up(w) - after.dw_down(w))
    assert scaled.symmetry_point == pytest.approx(fitted.symmetry_point)
    slope = restoring_slope(before, fitted.symmetry_point)
    assert slope < 0 and restoring_slope(after, fitted.symmetry_point) == pytest.approx(0.3 * slope, rel=1e-6)
    with pytest.raises(ValueError, match="asymmetry scale"):
        scale_asymmetry(fitted, -1.0)


def test_new_options_keep_existing_hashes_and_reject_bad_values():
    plain = TrainConfig.smoke("sps", device_id="synthetic-asymmetric")
    assert "sps_reference" not in provenance.config_dict(plain)  # so every existing run key is unchanged
    for change in (dict(sps_reference="protocol"), dict(sps_init="device_zero"), dict(asymmetry_scale=0.5)):
        changed = dataclasses.replace(plain, **change)
        assert provenance.config_hash(changed) != provenance.config_hash(plain)
        assert provenance.config_dict(changed)[next(iter(change))] == next(iter(change.values()))
    for bad, match in ((dict(sps_reference="median"), "sps_reference"), (dict(sps_init="zero"), "sps_init"),
                       (dict(asymmetry_scale=float("nan")), "asymmetry_scale")):
        with pytest.raises(ValueError, match=match):
            validate(dataclasses.replace(plain, **bad))


def _sps_layer(**options):
    config = TrainConfig.smoke("sps", device_id="synthetic-asymmetric", hidden=(4,), **options)
    network, _ = build_network(config, validate(config), n_inputs=6)
    return network.layers[0], config


def test_sps_reference_and_init_options_against_the_reference_computation():
    default, config = _sps_layer()
    protocol, _ = _sps_layer(sps_reference="protocol")
    zero_init, _ = _sps_layer(sps_init="device_zero")
    nominal = validate(config).config.devices(torch.float64)
    assert np.allclose(default.tile.reference, float(symmetry_point(nominal)))
    assert np.allclose(protocol.tile.reference, float(symmetry_point_protocol(nominal)))
    initial = default.tile.state - default.tile.reference  # the initial weights (no clipping at these sizes)
    assert np.allclose(zero_init.tile.state, initial)
    assert np.allclose(zero_init.weight().numpy(), initial - zero_init.tile.reference, atol=1e-6)
    assert np.allclose(default.weight().numpy(), initial, atol=1e-6)


def test_random_pulse_walk_holds_the_biased_equilibrium():
    device = SoftBounds(dw_min=0.01).devices(torch.float64)  # E[dw] = 0 where (1/2 + b)(1 - w) = (1/2 - b)(1 + w)
    for bias in (0.0, 0.2, -0.3):
        states = random_pulse_walk(device, 0.0, bias, 1500, 400, torch.Generator().manual_seed(0))
        assert float(states[500:].mean()) == pytest.approx(2 * bias, abs=0.02)
    with pytest.raises(ValueError, match="bias"):
        random_pulse_walk(device, 0.0, 0.7, 10, 10)


def _fake_result(accuracy: dict[str, list[list[float]]]) -> xr.Dataset:
    """variant -> [per width: per seed final accuracy] as a combined result with one epoch."""
    variants = list(accuracy)
    values = np.array([accuracy[v] for v in variants])[:, None, :, None, :, None]
    return xr.Dataset({"test_acc": (("variant", "device", "pulse_width", "algorithm", "seed", "epoch"), values)},
                      coords={"variant": variants, "device": ["D"], "pulse_width": [2e-8, 2e-4], "algorithm": ["sps"],
                              "seed": [0, 1, 2], "epoch": [1]})


def test_variant_verdicts_on_known_effects():
    result = _fake_result({"default": [[0.90, 0.91, 0.89], [0.60, 0.62, 0.58]],
                           "fixes": [[0.90, 0.91, 0.89], [0.88, 0.90, 0.87]],
                           "nothing": [[0.90, 0.91, 0.89], [0.61, 0.61, 0.59]],
                           "noisy": [[0.90, 0.91, 0.89], [0.95, 0.60, 0.60]]})
    table = splimits_analysis.variant_effects(result).set_index(["variant", "pulse_width"])
    assert table.loc[("fixes", 2e-4), "verdict"] == analysis.HOLDS
    assert table.loc[("fixes", 2e-4), "recovered"] == pytest.approx((0.8833 - 0.60) / 0.30, abs=1e-3)
    assert table.loc[("nothing", 2e-4), "verdict"] == analysis.FAILS
    assert table.loc[("noisy", 2e-4), "verdict"] == analysis.INCONCLUSIVE
    assert table.loc[("fixes", 2e-8), "verdict"] == "control"
    assert table.loc[("fixes", 2e-4), "vs_baseline"] == "better"
    effects = splimits_analysis.variant_effects(result)
    assert splimits_analysis.defensible_variant(effects, ("nothing", "noisy")) == "default"
    assert splimits_analysis.defensible_variant(effects, ("nothing", "fixes")) == "fixes"
    worse = splimits_analysis.variant_effects(_fake_result({"default": [[0.90, 0.91, 0.89], [0.60, 0.62, 0.58]],
                                                   "mixed": [[0.80, 0.81, 0.79], [0.88, 0.90, 0.87]]}))
    assert splimits_analysis.defensible_variant(worse, ("mixed",)) == "default"  # better at one width, worse at another


def test_sweep_file_keeps_the_ideal_profile():
    """sp-limits varies widths, the algorithm, seeds and the SP-shifting options only: the rest is ideal.toml's."""
    paper, _ = sweep.load_sweep_config(sweep.resolve_sweep_config("ideal"))
    variants, options = splimits.plan()
    varied = {"pulse_width", "algorithm", "seed", "lr", "sps_reference", "sps_init", "asymmetry_scale"}
    profile = {k: v for k, v in vars(paper.base).items() if k not in varied}
    for name, spec in variants.items():
        assert {k: v for k, v in vars(spec.base).items() if k not in varied} == profile, name
        assert set(spec.axes()["pulse_width"]) <= set(paper.axes()["pulse_width"])
        assert spec.lr_by_algorithm["sps"] == paper.lr_by_algorithm["sps"]
    default = variants["default"]
    assert {provenance.config_hash(c) for _, c in default.points()} <= {
        provenance.config_hash(c) for _, c in paper.points()}  # the default variant is the paper's own runs


def test_references_that_agree_bit_for_bit_share_their_runs():
    """The sweep file runs the alternating train from 0 at 20 ns only: at 20 us and 200 us it equals the protocol."""
    base = TrainConfig.ideal("sps", device_id="ID170ZR5000")
    for width, same in ((2e-5, True), (2e-4, True), (2e-8, False)):
        protocol = dataclasses.replace(base, pulse_width=width, sps_reference="protocol")
        from_zero = dataclasses.replace(protocol, sps_reference="protocol_from_zero")
        assert splimits.equivalent_reference(protocol, from_zero) is same, width
    assert not splimits.equivalent_reference(dataclasses.replace(base, pulse_width=2e-5),
                                             dataclasses.replace(base, pulse_width=2e-5, seed=1))


def test_sweep_file_variants_are_checked(tmp_path):
    text = sweep.resolve_sweep_config("sp-limits").read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace("asymmetry_scale = 0.3", "asymmetry_scal = 0.3"))
    with pytest.raises(ValueError, match="asymmetry_scal.*did you mean 'asymmetry_scale'"):
        sweep.load_sweep_config(bad)



def test_committed_summary_covers_every_variant():
    path = sourcedata.summary_path(splimits.SWEEP_CONFIG)
    summary = provenance.read_netcdf(path)
    variants, _ = splimits.plan()
    assert store.covers(summary, variants) is None
    assert list(summary["variant"].values) == list(variants)
    assert summary["final_device_hist"].sum("bin").min() > 0


def test_dry_run_lists_every_variant_point_with_its_cache_state(tmp_path, capsys):
    variants, _ = splimits.plan()
    assert main(["splimits", "run", "--dry-run", "--results-dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    points = sum(len(list(spec.points())) for spec in variants.values())
    assert sum(line.startswith("to run") for line in lines) == points  # an empty cache holds none of them
    assert lines[-1] == f"{points} runs in {len(variants)} sweeps, 0 cached"
    assert {line.split(":")[0].split()[-1] for line in lines[:-1]} == set(variants)


def test_paper_study_changes_one_ingredient_of_the_paper_profile_per_variant():
    """sp-limits-paper keeps sweeps/paper.toml's configuration but for the one setting each variant names, and its
    default variant is the paper sweep's own sps runs (same run keys)."""
    paper, _ = sweep.load_sweep_config(sweep.resolve_sweep_config("paper"))
    variants, _ = splimits.plan(splimits.PAPER_SWEEP_CONFIG)
    changed = {"default": set(), "analytic_reference": {"sps_reference"}, "ferrolib_fit": {"device_model"},
               "exact_reads": {"forward_io", "backward_io"}}
    assert set(variants) == set(changed)
    reference = vars(paper.base)
    for name, spec in variants.items():
        differs = {k for k, v in vars(spec.base).items() if k not in ("pulse_width", "algorithm", "seed")
                   and v != reference[k]}
        assert differs == changed[name], name
    paper_sps = {provenance.config_hash(c) for _, c in paper.points() if c.algorithm == "sps"}
    assert {provenance.config_hash(dataclasses.replace(c, seed=c.seed % 3))
            for _, c in variants["default"].points()} <= paper_sps  # seeds 3-5 extend the paper sweep's 0-2


def test_committed_paper_study_covers_every_variant_and_seed():
    summary = provenance.read_netcdf(sourcedata.summary_path(splimits.PAPER_SWEEP_CONFIG))
    variants, _ = splimits.plan(splimits.PAPER_SWEEP_CONFIG)
    assert store.covers(summary, variants) is None
    assert list(summary["variant"].values) == list(variants) and summary.sizes["seed"] == 6


def test_dry_run_of_the_paper_study_and_an_unknown_study(tmp_path, capsys):
    variants, _ = splimits.plan(splimits.PAPER_SWEEP_CONFIG)
    assert main(["splimits", "run", "--config", "sp-limits-paper", "--dry-run", "--results-dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    points = sum(len(list(spec.points())) for spec in variants.values())
    assert lines[-1] == f"{points} runs in {len(variants)} sweeps, 0 cached"
    with pytest.raises(SystemExit):
        main(["splimits", "run", "--config", "sp-limits-cuda", "--dry-run"])
    assert "invalid choice: 'sp-limits-cuda'" in capsys.readouterr().err


def test_load_reads_each_study_from_its_own_summary(tmp_path):
    """``splimits.load`` serves both studies from their committed summaries without training, each along its own
    variants, and refuses an unknown results source before any work."""
    for config in splimits.SWEEP_CONFIGS:
        result, source = splimits.load(config, source="summary", results_dir=tmp_path)
        assert f"the committed summary {config}.nc" in source and "no training" in source
        assert list(result["variant"].values) == list(splimits.plan(config)[0])
    with pytest.raises(ValueError, match="results source must be one of"):
        splimits.load(splimits.PAPER_SWEEP_CONFIG, source="cache", results_dir=tmp_path)

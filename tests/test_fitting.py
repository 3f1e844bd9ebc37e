"""Fitting: recovery of known parameters from simulated ramps, real LBE247 files, clear errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from ferrolib import devices as dev
from ferrolib import fitting, paths
from ferrolib.devices import DeviceNoise, PiecewiseStep, PowStep, SoftBounds
from ferrolib.fitted import FittedDevice

HAVE_MEASUREMENTS = paths.SHARED_MEASUREMENTS.is_dir()
N_RAMP = 90


def bell_piecewise() -> PiecewiseStep:
    """Steps zero at the saturating bound (as the recipe forces), quadratic in the state."""
    x = np.linspace(-1, 1, 32)
    return PiecewiseStep(dw_min=0.06, up_down=0.0, piecewise_up=tuple((1 - x) * (1.2 + 0.3 * x) / 2),
                         piecewise_down=tuple((1 + x) * (1.0 - 0.2 * x) / 2))


TRUE = {
    "piecewise": bell_piecewise(),
    "softbounds": SoftBounds(dw_min=0.02, up_down=0.5, w_min=-1.0, w_max=1.0),
    "powstep": PowStep(dw_min=0.03, up_down=-0.3, w_min=-1.0, w_max=1.0, gamma_up=1.6, gamma_down=0.8),
}


def ramp_dataset(config, c2c: float = 0.0, seed: int = 0, name: str = "synthetic.dat") -> tuple[xr.Dataset, np.ndarray]:
    """A read_summary-style file of ``config``: N_RAMP positive pulses from the top, then N_RAMP negative."""
    devices = config.sample((), DeviceNoise(c2c=c2c), dtype=torch.float64)
    directions = [-1] * N_RAMP + [1] * N_RAMP
    w = dev.simulate_sequence(devices, config.w_max, directions, torch.Generator().manual_seed(seed))[1:].numpy()
    conductance = 1e-8 * (1.2 + 0.5 * w)
    amplitude = np.concatenate([np.linspace(0.7, 5.0, N_RAMP), -np.linspace(0.6, 3.6, N_RAMP)])
    dataset = xr.Dataset(
        {"amplitude": ("pulse", amplitude), "polarity": ("pulse", np.sign(amplitude).astype(np.int8)),
         "R_low": ("pulse", 1 / conductance), "R_high": ("pulse", 1 / conductance), "G": ("pulse", conductance),
         "outlier": ("pulse", np.zeros(len(w), bool))},
        attrs={"device_id": "IDSYN", "pulse_width_s": 2e-8, "source_file": name, "data_kind": "synthetic",
               "area_m2": 1e-10},
    )
    return dataset, w


def mapping(w: np.ndarray) -> tuple[float, float]:
    """The fit's normalisation u = s (w - m)."""
    return float(np.mean(w)), 2.0 / float(np.ptp(w))


def expected_steps(config, w: np.ndarray, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    m, s = mapping(w)
    true = config.devices()
    return s * true.dw_up(m + u / s), s * true.dw_down(m + u / s)


@pytest.mark.parametrize("c2c", [0.0, 0.1])
@pytest.mark.parametrize("model", list(TRUE))
def test_fit_recovers_the_simulated_device(model, c2c):
    dataset, w = ramp_dataset(TRUE[model], c2c)
    fitted = fitting.fit_ramp(dataset, model)
    assert fitted.model == model and fitted.data_kind == "synthetic"
    floor = 0.999 if c2c == 0 else 0.98
    assert fitted.r2_up > floor and fitted.r2_down > floor
    m, s = mapping(w)
    if model == "piecewise":
        # steps vanish linearly at the bounds, so the ramps stop short of them: the fitted bounds enclose the
        # visited states (normalised to [-1, 1]) and lie between them and the true bounds
        assert 0.98 < fitted.config.w_max <= s * (TRUE[model].w_max - m) + 0.02
        assert -0.98 > fitted.config.w_min >= s * (TRUE[model].w_min - m) - 0.02
    else:  # the ramps saturate: the bounds in normalised units are identifiable
        assert fitted.config.w_max == pytest.approx(s * (TRUE[model].w_max - m), abs=0.06 + 0.5 * c2c)
        assert fitted.config.w_min == pytest.approx(s * (TRUE[model].w_min - m), abs=0.06 + 0.5 * c2c)
    # the step against state over the visited states
    u = torch.linspace(-0.9, 0.9, 19, dtype=torch.float64)
    up, down = expected_steps(TRUE[model], w, u)
    nominal = fitted.config.devices()
    scale = float(torch.maximum(up.max(), down.max()))
    tolerance = (0.08 if c2c == 0 else 0.2) * scale
    assert torch.allclose(nominal.dw_up(u), up, atol=tolerance)
    assert torch.allclose(nominal.dw_down(u), down, atol=tolerance)
    if model == "powstep":
        assert fitted.config.gamma_up == pytest.approx(1.6, rel=0.05 + c2c)
        assert fitted.config.gamma_down == pytest.approx(0.8, rel=0.05 + c2c)
    if c2c:
        assert 0.5 * c2c < fitted.c2c < 2.0 * c2c
    else:
        assert fitted.c2c < 0.05
    assert fitted.n_states == pytest.approx((fitted.config.w_max - fitted.config.w_min) / min(fitted.steps_at_zero))
    assert fitted.n_up == N_RAMP and fitted.n_down == N_RAMP


def test_piecewise_nodes_follow_the_recipe():
    dataset, _ = ramp_dataset(TRUE["piecewise"])
    config = fitting.fit_ramp(dataset, "piecewise").config
    assert len(config.piecewise_up) == fitting.N_NODES
    assert config.piecewise_up[-1] == 0.0 and config.piecewise_down[0] == 0.0
    assert min(config.piecewise_up + config.piecewise_down) >= 0.0


def test_outliers_are_excluded_and_counted():
    dataset, _ = ramp_dataset(TRUE["softbounds"])
    clean = fitting.fit_ramp(dataset, "softbounds")
    spoiled = dataset.copy(deep=True)
    spoiled["G"][30] = spoiled["G"][30] * 5.0
    spoiled["outlier"][30] = True
    fitted = fitting.fit_ramp(spoiled, "softbounds")
    assert fitted.n_outliers == 1 and fitted.n_down == N_RAMP - 1
    assert fitted.r2_down > 0.999
    assert fitted.config.dw_min == pytest.approx(clean.config.dw_min, rel=0.02)


def test_bad_ramps_give_clear_errors_naming_the_file():
    dataset, _ = ramp_dataset(TRUE["softbounds"], name="bad_file.dat")
    with pytest.raises(fitting.FitError, match="bad_file.dat: too few pulses"):
        fitting.fit_ramp(dataset.isel(pulse=list(range(5)) + list(range(N_RAMP, N_RAMP + 5))))
    flat = dataset.copy(deep=True)
    flat["G"][:] = 1e-8 * (1 + 1e-6 * np.arange(2 * N_RAMP))
    with pytest.raises(fitting.FitError, match="bad_file.dat: flat ramp"):
        fitting.fit_ramp(flat)
    wrong = dataset.copy(deep=True)
    wrong["polarity"][:] = -wrong["polarity"].values
    with pytest.raises(fitting.FitError, match="bad_file.dat: the .* ramp does not"):
        fitting.fit_ramp(wrong)
    one_sided = dataset.isel(pulse=slice(0, N_RAMP))
    with pytest.raises(fitting.FitError, match="bad_file.dat: expected one contiguous ramp per polarity"):
        fitting.fit_ramp(one_sided)
    with pytest.raises(ValueError, match="unknown device model"):
        fitting.fit_ramp(dataset, "linear")


def test_fit_is_deterministic():
    dataset, _ = ramp_dataset(TRUE["softbounds"], c2c=0.1)
    assert fitting.fit_ramp(dataset, "softbounds").config == fitting.fit_ramp(dataset, "softbounds").config


R2_FLOOR = {"piecewise": 0.6, "softbounds": 0.85, "powstep": 0.9}
"""Worst-case R^2 per direction over the main devices' files (measured: piecewise 0.66 at 2 ms up on ID170ZR5000,
where the ramp's slow start is not a function of the state; median above 0.99)."""


@pytest.mark.skipif(not HAVE_MEASUREMENTS, reason="shared LBE247 measurements not present")
@pytest.mark.parametrize("device_id", ["ID170ZR5000", "ID161ZR15000"])
def test_real_measurements_fit_at_every_pulse_width(device_id):
    from ferrolib import measurements

    files = measurements.find_measurements(device_id)
    widths = set()
    r2_piecewise = []
    for path in files:
        for model in ("piecewise", "powstep"):
            fitted = fitting.fit_file(path, model)
            assert fitted.data_kind == "measured" and fitted.source_sha256
            assert min(fitted.r2_up, fitted.r2_down) > R2_FLOOR[model], (path.name, model)
            assert 10 < fitted.n_states < 500
            assert fitted.amplitude_range_down[0] > 0 > fitted.amplitude_range_up[0]
            if model == "piecewise":
                r2_piecewise += [fitted.r2_up, fitted.r2_down]
        widths.add(round(fitted.pulse_width_s, 12))
    assert widths >= {2e-8, 2e-7, 2e-6, 2e-5, 2e-4, 2e-3}
    assert np.median(r2_piecewise) > 0.99


FAST_CASES = {
    "piecewise": lambda rng: fitting._batch("piecewise", np.column_stack([rng.uniform(-0.5, 3.0, 5),
                                                                          rng.uniform(-1.5, -0.5, 5),
                                                                          rng.uniform(0.5, 1.5, 5)]),
                                            (rng.uniform(0.05, 3.0, 32), rng.uniform(0.05, 3.0, 32)), 0.03),
    "softbounds": lambda rng: fitting._batch("softbounds", np.column_stack([np.log(rng.uniform(0.005, 0.1, (5, 2))),
                                                                            rng.uniform(-1.5, -0.5, 5),
                                                                            rng.uniform(0.5, 1.5, 5)]), None, 1.0),
    "powstep": lambda rng: fitting._batch("powstep", np.column_stack([np.log(rng.uniform(0.005, 0.1, (5, 2))),
                                                                      rng.uniform(0.05, 4.0, (5, 2)),
                                                                      rng.uniform(-1.5, -0.5, 5),
                                                                      rng.uniform(0.5, 1.5, 5)]), None, 1.0),
}


@pytest.mark.parametrize("model", list(FAST_CASES))
def test_compiled_ramp_response_equals_the_torch_reference(model):
    """Same random parameter draws (5 devices, steps large enough to reach the bounds), both ramps of a file."""
    data = fitting.prepare(ramp_dataset(TRUE[model], c2c=0.05, seed=3)[0])
    devices = FAST_CASES[model](np.random.default_rng(7))
    for ramp in (data.up, data.down):
        reference = fitting.simulate_ramp_states_reference(devices, ramp).T.numpy()
        fast = fitting.simulate_ramp_states(devices, ramp)
        assert fast.shape == reference.shape == (5, len(ramp.after))
        np.testing.assert_allclose(fast, reference, rtol=1e-13, atol=1e-15)
        assert (np.ptp(fast, axis=1) > 0.1).all()  # the devices move: the comparison is not of constants
    single = fitting.simulate_ramp_states(devices.map(lambda t: t[0]), data.up)
    np.testing.assert_allclose(single[0], fitting.simulate_ramp_states(devices, data.up)[0], rtol=0, atol=0)


@pytest.mark.skipif(not HAVE_MEASUREMENTS, reason="shared LBE247 measurements not present")
@pytest.mark.parametrize("width", [2e-8, 2e-4])
def test_refits_reproduce_the_committed_device_files(width):
    """The committed data/devices files come back on any host: every parameter within fitting.FIT_AGREEMENT of
    its scale (an AVX2 host's refits differ by up to 6e-9 of it, the refinement resolves 1e-6)."""
    from ferrolib import catalog, measurements

    (latest,) = measurements.load_measurements("ID170ZR5000", width, select="last")
    for model in dev.MODEL_KINDS:
        committed = FittedDevice.load(catalog.fitted_device_path("ID170ZR5000", width, model, paths.ROOT / "data" / "devices"))
        refit = fitting.fit_ramp(latest, model)
        assert (committed.source_root, committed.source_file) == (latest.attrs["source_root"], latest.attrs["source_file"])
        name, difference = fitting.largest_difference(refit, committed)
        assert difference <= fitting.FIT_AGREEMENT, f"{model}: {name} differs by {difference:.3g} of its scale"


def _committed_20ns() -> FittedDevice:
    return FittedDevice.load(paths.ROOT / "data" / "devices" / "ID170ZR5000_20ns_piecewise.nc")


def test_fit_agreement_separates_rounding_from_a_change_of_the_fit():
    """Differences are fractions of max(|value|, 1): up_down near 0 (3.9e-6 at 20 ns) that moves by 1e-10 (an AVX2
    host) agrees, although it is 2.6e-5 of its own value; a move by 1e-5 of the state scale is another fit;
    another measurement or model kind never agrees; conductances are compared relative to themselves."""
    import dataclasses

    committed = _committed_20ns()

    def changed(**values) -> FittedDevice:
        return dataclasses.replace(committed, config=dataclasses.replace(committed.config, **values))

    up_down = committed.config.up_down
    assert abs(up_down) < 1e-4
    assert fitting.same_fit(changed(up_down=up_down + 1e-10), committed)
    assert not fitting.same_fit(changed(up_down=up_down + 1e-5), committed)
    assert fitting.largest_difference(changed(w_max=committed.config.w_max * (1 + 1e-4)), committed)[0] == "w_max"
    nodes = list(committed.config.piecewise_up)
    nodes[3] += 1e-3
    assert fitting.largest_difference(changed(piecewise_up=tuple(nodes)), committed)[0] == "piecewise_up"
    assert fitting.largest_difference(committed, committed) == ("none", 0.0)
    other = dataclasses.replace(committed, source_sha256="0" * 64)
    assert fitting.fit_differences(other, committed)["source_sha256"] == float("inf")
    scaled = dataclasses.replace(committed, g_min=committed.g_min * (1 + 1e-3))  # ~1e-11 S absolute: relative
    assert fitting.largest_difference(scaled, committed)[0] == "g_min"
    softbounds = dataclasses.replace(committed, config=SoftBounds(dw_min=committed.config.dw_min))
    assert not fitting.same_fit(softbounds, committed)


def test_save_fit_keeps_the_same_fit_and_rewrites_a_changed_one(tmp_path):
    import dataclasses

    from ferrolib import catalog

    committed = _committed_20ns()
    path, status = catalog.save_fit(committed, tmp_path)
    assert status == "written" and path.parent == tmp_path
    before = path.stat().st_mtime_ns
    nudged = dataclasses.replace(committed, config=dataclasses.replace(committed.config, w_min=committed.config.w_min + 1e-9))
    assert catalog.save_fit(nudged, tmp_path)[1].startswith("kept") and path.stat().st_mtime_ns == before
    assert FittedDevice.load(path).config == committed.config  # the committed numbers stay
    moved = dataclasses.replace(committed, config=dataclasses.replace(committed.config, w_min=committed.config.w_min + 1e-3))
    path, status = catalog.save_fit(moved, tmp_path)
    assert status.startswith("rewritten") and "w_min" in status
    assert FittedDevice.load(path).config.w_min == committed.config.w_min + 1e-3
    assert catalog.save_fit(committed, tmp_path, force=True)[1] == "written"

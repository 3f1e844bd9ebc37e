"""Physics stand-in: the NLS integral, accumulation, the Merz trend, calibration and its file."""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.integrate import quad

from ferrolib import physics
from ferrolib.physics import NLSModel, NLSPolarity

UP = NLSPolarity(log10_tau0=-10.0, v_a=11.5, half_width=0.3, n=2.0, g_low=2e-9, g_high=1e-8)
DOWN = NLSPolarity(log10_tau0=-11.0, v_a=14.0, half_width=0.5, n=2.0, g_low=1.5e-9, g_high=1.1e-8)
MODEL = NLSModel(up=UP, down=DOWN, device_id="IDSYN", area_m2=1e-10)
WIDTHS = (2e-8, 2e-7, 2e-6, 2e-5, 2e-4)


def reference_fraction(params: NLSPolarity, t: float, v: float) -> float:
    """The NLS integral by adaptive quadrature; below log10 t - 8 the kernel is 1 (closed-form Lorentzian mass),
    above log10 t + 8 it is below 1e-16."""
    centre = params.log10_tau0 + params.v_a / (abs(v) * np.log(10))
    hw, log_t = params.half_width, np.log10(t)

    def integrand(x: float) -> float:
        return -np.expm1(-((t / 10.0**x) ** params.n)) * (hw / np.pi) / ((x - centre) ** 2 + hw**2)

    below = 0.5 + np.arctan((log_t - 8 - centre) / hw) / np.pi
    return below + quad(integrand, log_t - 8, log_t + 8, points=[centre, log_t], limit=400)[0]


@pytest.mark.parametrize("t", [2e-8, 2e-6, 2e-4])
@pytest.mark.parametrize("v", [0.8, 1.5, 2.5, 4.0])
def test_switched_fraction_matches_quadrature(t, v):
    for params in (UP, DOWN):
        assert float(physics.switched_fraction(params, t, v)) == pytest.approx(reference_fraction(params, t, v), abs=2e-3)


def test_ramp_accumulates_monotonically_and_is_labelled_synthetic():
    ramp = physics.simulate_ramp(MODEL, 2e-6)
    assert ramp.attrs["data_kind"] == "synthetic" and "synthetic" in ramp.attrs["source_file"]
    assert set(ramp.data_vars) >= {"amplitude", "polarity", "R_low", "R_high", "G", "outlier"}
    down = ramp["G"].values[ramp["polarity"].values > 0]
    up = ramp["G"].values[ramp["polarity"].values < 0]
    assert np.all(np.diff(down) <= 0) and np.all(np.diff(up) >= 0)
    assert down[-1] < 0.5 * down[0] and up[-1] > 2 * up[0]
    # the final state of a ramp is set by its largest amplitude, whatever the start
    other = physics.simulate_ramp(MODEL, 2e-6, start_g=0.7e-8)
    assert other["G"].values[len(down) - 1] == pytest.approx(down[-1])


def test_pulse_train_accumulates_switching_time():
    train = physics.pulse_train(MODEL, 2e-7, -2.0, 200)
    g = train["G"].values
    assert np.all(np.diff(g) >= 0) and g[-1] > g[0]
    expected = UP.g_low + (UP.g_high - UP.g_low) * physics.switched_fraction(UP, 2e-7 * 200, 2.0)
    assert g[-1] == pytest.approx(expected)


def test_merz_trend_shorter_pulses_need_higher_voltage():
    amplitudes = [physics.half_change_amplitude(physics.simulate_ramp(MODEL, w), -1) for w in WIDTHS]
    down = [physics.half_change_amplitude(physics.simulate_ramp(MODEL, w), +1) for w in WIDTHS]
    assert np.all(np.diff(down) < 0)
    assert np.all(np.diff(amplitudes) < 0)
    slope, _ = physics.merz_slope(WIDTHS, amplitudes)
    assert -1.0 < slope < -0.1
    voltage = physics.half_switching_voltage(UP, np.array(WIDTHS))
    assert np.allclose(physics.tau_centre(UP, voltage), np.log10(WIDTHS))
    assert np.all(np.abs(physics.switched_fraction(UP, np.array(WIDTHS), voltage) - 0.55) < 0.1)


def test_calibration_recovers_known_parameters(tmp_path):
    datasets = [physics.simulate_ramp(MODEL, w) for w in WIDTHS]
    calibration = physics.calibrate(datasets)
    fitted = calibration.model
    for true, found in ((UP, fitted.up), (DOWN, fitted.down)):
        for width in (5e-8, 5e-7):  # what the model is for: predicting untested widths
            for v in (1.0, 2.0, 3.0):
                assert float(physics.switched_fraction(found, width, v)) == pytest.approx(
                    float(physics.switched_fraction(true, width, v)), abs=0.02)
        assert found.v_a == pytest.approx(true.v_a, rel=0.1)
    assert max(f["rms_residual_up"] for f in calibration.files) < 0.01
    path = physics.save_calibrations([calibration], tmp_path / "calibration.json")
    assert json.loads(path.read_text())["devices"]["IDSYN"]["files"][0]["pulse_width_s"] == 2e-8
    assert physics.load_calibration("IDSYN", path) == fitted
    assert physics.load_calibration("IDOTHER", path) is None
    assert physics.load_calibration("IDSYN", tmp_path / "missing.json") is None


def test_calibration_rejects_mixed_devices():
    a = physics.simulate_ramp(MODEL, 2e-6)
    b = a.copy()
    b.attrs = dict(a.attrs, device_id="IDOTHER")
    with pytest.raises(ValueError, match="one device at a time"):
        physics.calibrate([a, b])


def test_half_change_amplitude_interpolates_the_midpoint():
    ramp = physics.simulate_ramp(MODEL, 2e-6, amplitudes=[1.0, 2.0, 3.0, -1.0, -2.0, -3.0])
    g = np.array([4.0, 3.0, 1.0, 1.0, 2.0, 5.0])
    ramp["G"][:] = g
    assert physics.half_change_amplitude(ramp, +1) == pytest.approx(2.25)  # midpoint 2.5 between 3 and 1
    assert physics.half_change_amplitude(ramp, -1) == pytest.approx(2.0 + 1.0 / 3.0)  # midpoint 3 between 2 and 5


def test_default_ramp_is_the_second_repetition():
    first = physics.simulate_ramp(MODEL, 5e-8, start_g=DOWN.g_high)
    second = physics.simulate_ramp(MODEL, 5e-8)
    again = physics.simulate_ramp(MODEL, 5e-8, start_g=float(first["G"].values[-1]))
    assert np.array_equal(second["G"].values, again["G"].values)


def test_refresh_calibrations_keeps_the_same_calibration_and_rewrites_a_changed_one(tmp_path):
    """`make fits` and `ferrolib device calibrate` rewrite data/physics_calibration.json only where a parameter moved
    beyond CALIBRATION_AGREEMENT of its scale (conductances relative to themselves)."""
    import dataclasses

    committed = physics.calibration_path()
    models = [physics.load_calibration(d, committed) for d in ("ID170ZR5000", "ID161ZR15000")]
    calibrations = [physics.Calibration(model=m, files=[]) for m in models]
    target = tmp_path / "calibration.json"
    assert physics.refresh_calibrations(calibrations, target) == (target, "written")
    before = target.stat().st_mtime_ns
    nudged = dataclasses.replace(models[0], up=dataclasses.replace(models[0].up, v_a=models[0].up.v_a + 1e-8))
    path, status = physics.refresh_calibrations([physics.Calibration(nudged, []), calibrations[1]], target)
    assert status.startswith("kept") and target.stat().st_mtime_ns == before
    window = dataclasses.replace(models[0], down=dataclasses.replace(models[0].down, g_low=models[0].down.g_low * 1.001))
    path, status = physics.refresh_calibrations([physics.Calibration(window, []), calibrations[1]], target)
    assert status.startswith("rewritten") and "ID170ZR5000 down.g_low" in status
    assert physics.load_calibration("ID170ZR5000", target).down.g_low == window.down.g_low
    assert physics.calibration_differences(models[0], models[1])["device_id"] == float("inf")

"""Device models: interpolation, pulsing, symmetry points, sampling, aihwkit export, fitted-device files."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ferrolib import devices as dev
from ferrolib import paths, symmetry
from ferrolib.aihwkit_export import from_aihwkit, to_aihwkit
from ferrolib.catalog import fitted_device_path
from ferrolib.devices import DeviceNoise, PiecewiseStep, PowStep, SoftBounds
from ferrolib.fitted import MEASURED_TRACE_VARIABLES, FittedDevice

HAVE_MEASUREMENTS = paths.SHARED_MEASUREMENTS.is_dir()


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def monotone_piecewise(up_down: float = 0.3) -> PiecewiseStep:
    """Up step falling, down step rising with the state: one symmetry point."""
    return PiecewiseStep(dw_min=0.01, up_down=up_down, piecewise_up=(2.0, 1.5, 1.0, 0.4, 0.0),
                         piecewise_down=(0.0, 0.6, 1.0, 1.2, 2.5))


CONFIGS = {
    "piecewise": monotone_piecewise(),
    "softbounds": SoftBounds(dw_min=0.01, up_down=-0.4, w_min=-0.8, w_max=1.2),
    "powstep": PowStep(dw_min=0.02, up_down=0.5, gamma_up=1.5, gamma_down=0.7),
}


def test_piecewise_interpolation_matches_hand_computed_values():
    config = PiecewiseStep(dw_min=0.1, up_down=0.0, w_min=-1.0, w_max=1.0,
                           piecewise_up=(1.0, 3.0, 2.0), piecewise_down=(0.0, 1.0, 4.0))
    device = config.devices()
    w = torch.tensor([-1.0, -0.5, 0.0, 0.25, 1.0], dtype=torch.float64)
    # t = 2 (w + 1) / 2 = w + 1: segment 0 for w < 0, segment 1 above, q the fraction.
    assert torch.allclose(device.dw_up(w), torch.tensor([0.1, 0.2, 0.3, 0.275, 0.2], dtype=torch.float64))
    assert torch.allclose(device.dw_down(w), torch.tensor([0.0, 0.05, 0.1, 0.175, 0.4], dtype=torch.float64))


def test_up_down_convention_smaller_scale_is_dw_min():
    up_larger = PiecewiseStep(dw_min=0.01, up_down=0.5).devices()
    assert float(up_larger.scale_up) == pytest.approx(0.015) and float(up_larger.scale_down) == pytest.approx(0.01)
    down_larger = SoftBounds(dw_min=0.01, up_down=-0.5).devices()
    assert float(down_larger.scale_down) == pytest.approx(0.015) and float(down_larger.scale_up) == pytest.approx(0.01)


def test_sampling_is_reproducible_and_spreads_as_configured():
    noise = DeviceNoise(dw_min_dtod=0.2, up_down_dtod=0.05, w_max_dtod=0.1, w_min_dtod=0.1)
    a = CONFIGS["softbounds"].sample((200, 100), noise, generator(3))
    b = CONFIGS["softbounds"].sample((200, 100), noise, generator(3))
    assert torch.equal(a.scale_up, b.scale_up) and torch.equal(a.w_min, b.w_min)
    assert a.shape == (200, 100)
    assert float((a.w_max / 1.2).std()) == pytest.approx(0.1, rel=0.05)
    assert float((a.w_min / -0.8).mean()) == pytest.approx(1.0, abs=0.01)
    assert (a.w_min < 0).all() and (a.w_max > 0).all()
    nominal = CONFIGS["softbounds"].sample((5,), None)
    assert torch.all(nominal.scale_down == nominal.scale_down[0])


def test_bad_configuration_raises():
    with pytest.raises(ValueError, match="w_min < 0 < w_max"):
        SoftBounds(w_min=0.2).sample(())
    with pytest.raises(ValueError, match="non-negative"):
        PiecewiseStep(piecewise_up=(1.0, -1.0), piecewise_down=(1.0, 1.0))


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_pulses_never_leave_the_bounds(kind):
    noise = DeviceNoise(c2c=0.5, dw_min_dtod=0.3, w_max_dtod=0.2, w_min_dtod=0.2)
    devices = CONFIGS[kind].sample((50, 40), noise, generator(1))
    state = torch.zeros(devices.shape)
    g = generator(2)
    for _ in range(20):
        n_up = torch.randint(0, 30, devices.shape, generator=g)
        n_down = torch.randint(0, 30, devices.shape, generator=g)
        state = dev.apply_pulses(devices, state, n_up, n_down, g)
        assert (state >= devices.w_min).all() and (state <= devices.w_max).all()


def reference_apply_pulses(devices, state, n_up, n_down, g):
    """Obviously-correct loop: one device and one pulse at a time, the same noise draws per round."""
    shape = devices.shape
    flat = state.reshape(-1).clone()
    params = {name: getattr(devices, name).reshape(-1) for name in ("w_min", "w_max", "scale_up", "scale_down")}
    for sign, counts in ((1, n_up.reshape(-1)), (-1, n_down.reshape(-1))):
        for k in range(int(counts.max())):
            active = [i for i in range(flat.numel()) if counts[i] > k]
            noise = torch.randn(len(active), generator=g, dtype=state.dtype) if devices.c2c else None
            for j, i in enumerate(active):
                w = float(flat[i])
                a_up, a_down = float(params["scale_up"][i]), float(params["scale_down"][i])
                w_min, w_max = float(params["w_min"][i]), float(params["w_max"][i])
                step = a_up * (1 - w / w_max) if sign > 0 else a_down * (1 - w / w_min)  # soft bounds by hand
                if noise is not None:
                    step *= 1 + devices.c2c * float(noise[j])
                flat[i] = min(max(w + sign * step, w_min), w_max)
    return flat.reshape(shape)


def test_apply_pulses_matches_reference_loop_on_the_same_draws():
    noise = DeviceNoise(c2c=0.3, dw_min_dtod=0.2, up_down_dtod=0.1)
    devices = CONFIGS["softbounds"].sample((6, 7), noise, generator(4), dtype=torch.float64)
    g = generator(5)
    n_up = torch.randint(0, 12, devices.shape, generator=g)
    n_down = torch.randint(0, 12, devices.shape, generator=g)
    start = 0.3 * torch.randn(devices.shape, generator=g, dtype=torch.float64)
    fast = dev.apply_pulses(devices, start, n_up, n_down, generator(6))
    slow = reference_apply_pulses(devices, start, n_up, n_down, generator(6))
    assert torch.allclose(fast, slow, atol=1e-12)


def test_apply_pulses_conserves_pulse_counts_on_a_constant_step_device():
    config = PiecewiseStep(dw_min=0.001, up_down=0.5, w_min=-10.0, w_max=10.0,
                           piecewise_up=(1.0, 1.0), piecewise_down=(1.0, 1.0))
    devices = config.sample((30,), dtype=torch.float64)
    n_up, n_down = torch.arange(30), torch.arange(30).flip(0)
    state = dev.apply_pulses(devices, torch.zeros(30, dtype=torch.float64), n_up, n_down)
    assert torch.allclose(state, (0.0015 * n_up - 0.001 * n_down).double(), atol=1e-12)
    with pytest.raises(ValueError, match="non-negative"):
        dev.apply_pulses(devices, state, -n_up, n_down)


def test_softbounds_symmetry_point_matches_closed_form_oracle():
    a_up, a_down, b = 0.012, 0.007, 0.9
    devices = SoftBounds(dw_min=a_down, up_down=a_up / a_down - 1, w_min=-b, w_max=b).devices()
    assert float(symmetry.symmetry_point(devices)) == pytest.approx(b * (a_up - a_down) / (a_up + a_down), rel=1e-9)
    assert float(symmetry._bisect_symmetry_point(devices)) == pytest.approx(float(symmetry.symmetry_point(devices)), abs=1e-9)


def test_piecewise_closed_form_agrees_with_bisection_on_many_devices():
    noise = DeviceNoise(dw_min_dtod=0.3, up_down_dtod=0.3, w_max_dtod=0.2, w_min_dtod=0.2)
    devices = monotone_piecewise().sample((40, 30), noise, generator(7), dtype=torch.float64)
    closed = symmetry.symmetry_point(devices)
    assert torch.allclose(closed, symmetry._bisect_symmetry_point(devices), atol=1e-9)
    up, down = devices.dw_up(closed), devices.dw_down(closed)
    assert torch.allclose(up, down, atol=1e-12)


def test_symmetry_point_without_root_clamps_to_the_drift_bound():
    always_up = PiecewiseStep(dw_min=0.01, piecewise_up=(3.0, 3.0), piecewise_down=(1.0, 1.0)).devices()
    always_down = PiecewiseStep(dw_min=0.01, piecewise_up=(1.0, 1.0), piecewise_down=(3.0, 3.0)).devices()
    assert float(symmetry.symmetry_point(always_up)) == 1.0
    assert float(symmetry.symmetry_point(always_down)) == -1.0
    assert float(symmetry.symmetry_point_protocol(always_up)) == pytest.approx(1.0, abs=0.03)


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_protocol_symmetry_point_agrees_with_analytic_within_one_step(kind):
    devices = CONFIGS[kind].sample((20,), DeviceNoise(dw_min_dtod=0.2, up_down_dtod=0.2), generator(8), torch.float64)
    analytic = symmetry.symmetry_point(devices)
    protocol = symmetry.symmetry_point_protocol(devices, n=300, n_alternating=4000, tail=200)
    step = torch.maximum(devices.dw_up(analytic), devices.dw_down(analytic))
    assert (torch.abs(protocol - analytic) <= step).all()


def aihwkit_steps(parameters: dict, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """aihwkit's PiecewiseStepDevice, written from its definition: the larger scale is dw_min."""
    up_down = parameters["up_down"]
    scale_up = parameters["dw_min"] * (1 + min(up_down, 0.0))
    scale_down = parameters["dw_min"] * (1 - max(up_down, 0.0))
    up, down = (torch.tensor(parameters[k], dtype=torch.float64) for k in ("piecewise_up", "piecewise_down"))
    t = (len(up) - 1) * (w - parameters["w_min"]) / (parameters["w_max"] - parameters["w_min"])
    i = torch.clamp(t.floor().long(), max=len(up) - 2)
    q = t - i
    return scale_up * ((1 - q) * up[i] + q * up[i + 1]), scale_down * ((1 - q) * down[i] + q * down[i + 1])


@pytest.mark.parametrize("up_down", [0.4, -0.25, 0.0])
def test_aihwkit_export_round_trips_and_keeps_the_steps(up_down):
    config = monotone_piecewise(up_down)
    exported = to_aihwkit(config)
    assert exported["dw_min"] == pytest.approx(0.01 * (1 + abs(up_down)))
    back = from_aihwkit(exported)
    w = torch.linspace(-1, 1, 41, dtype=torch.float64)
    ours = config.devices()
    theirs_up, theirs_down = aihwkit_steps(exported, w)
    assert torch.allclose(ours.dw_up(w), theirs_up) and torch.allclose(ours.dw_down(w), theirs_down)
    assert torch.allclose(back.devices().dw_up(w), ours.dw_up(w))
    assert torch.allclose(back.devices().dw_down(w), ours.dw_down(w))
    assert back.dw_min == pytest.approx(config.dw_min) and back.up_down == pytest.approx(config.up_down)
    with pytest.raises(ValueError, match="piecewise"):
        to_aihwkit(CONFIGS["softbounds"])


def test_fitted_device_file_round_trip(tmp_path):
    fitted = FittedDevice(config=monotone_piecewise(), device_id="IDTEST", pulse_width_s=2e-8,
                          data_kind="synthetic", r2_up=0.9, amplitude_range_up=(-0.6, -3.6), n_up=10)
    path = fitted.save(fitted_device_path("IDTEST", 2e-8, "piecewise", tmp_path))
    assert path.name == "IDTEST_20ns_piecewise.nc"
    loaded = FittedDevice.load(path)
    assert loaded.config == fitted.config
    assert loaded.amplitude_range_up == (-0.6, -3.6) and loaded.n_up == 10 and loaded.data_kind == "synthetic"
    assert math.isnan(loaded.r2_down)
    array = loaded.devices((3, 2))
    assert array.shape == (3, 2) and array.meta["device_id"] == "IDTEST"
    assert set(array.to_dataset(("out", "in")).data_vars) >= {"w_min", "scale_up", "nodes_up"}
    with pytest.raises(FileNotFoundError):
        FittedDevice.load(tmp_path / "missing.nc")


@pytest.mark.skipif(not HAVE_MEASUREMENTS, reason="shared LBE247 measurements not present")
def test_cli_device_fit_prints_json_and_saves(tmp_path, capsys):
    import json

    from ferrolib import measurements
    from ferrolib.cli import main

    (path,) = measurements.find_measurements("ID170ZR5000", 2e-5)
    assert main(["device", "fit", str(path), "--model", "softbounds", "--json", "--save", str(tmp_path)]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["device_id"] == "ID170ZR5000" and row["model"] == "softbounds" and row["r2_up"] > 0.85
    assert abs(row["sp_analytic"] - row["sp_protocol"]) < 2 * max(row["step_up_at_0"], row["step_down_at_0"])
    loaded = FittedDevice.load(tmp_path / "ID170ZR5000_20us_softbounds.nc")
    assert loaded.n_states == pytest.approx(row["n_states"])
    assert (row["source_root"], row["source_file"]) == ("LBE247", f"ID170ZR5000/{path.name}")
    assert list(row) == list(loaded.summary(n_alternating=200))  # the CLI prints FittedDevice.summary
    assert main(["device", "fit", str(tmp_path / "missing_Summary.dat")]) == 2
    assert "missing_Summary.dat" in capsys.readouterr().err


@pytest.mark.skipif(not HAVE_MEASUREMENTS, reason="shared LBE247 measurements not present")
def test_fitted_device_files_hold_no_measured_values(tmp_path):
    from ferrolib import fitting, measurements

    (path,) = measurements.find_measurements("ID170ZR5000", 2e-4)
    fitted = fitting.fit_file(path, "softbounds")
    assert "w_measured" in fitted.trace
    loaded = FittedDevice.load(fitted.save(tmp_path / "fit.nc"))
    assert not set(MEASURED_TRACE_VARIABLES) & set(loaded.trace.data_vars)
    assert np.allclose(loaded.trace["w_model"].values, fitted.trace["w_model"].values, equal_nan=True)
    assert loaded.source_sha256 == measurements.read_summary(path).attrs["source_sha256"]
    assert loaded.r2_up == pytest.approx(fitted.r2_up) and loaded.config == fitted.config


def test_symmetry_point_with_two_stable_roots_depends_on_the_start():
    """f = dw_up - dw_down ~ sin(2 pi w): stable roots at -0.5 and +0.5, an unstable one at 0."""
    nodes = np.linspace(-1.0, 1.0, 33)
    up = 1.0 + 0.5 * np.sin(2 * np.pi * nodes)
    down = 1.0 - 0.5 * np.sin(2 * np.pi * nodes)
    up[-1], down[0] = 0.0, 0.0
    devices = PiecewiseStep(dw_min=0.002, piecewise_up=tuple(up), piecewise_down=tuple(down)).devices()
    assert float(symmetry.symmetry_point(devices, start=0.1)) == pytest.approx(0.5, abs=1e-6)
    assert float(symmetry.symmetry_point(devices, start=-0.1)) == pytest.approx(-0.5, abs=1e-6)
    assert float(symmetry.symmetry_point(devices, start=devices.w_min)) == pytest.approx(-0.5, abs=1e-6)
    from_bottom = symmetry.symmetry_point_protocol(devices, n=2000, n_alternating=4000)
    from_above = symmetry.symmetry_point_protocol(devices, n=0, start=0.1, n_alternating=4000)
    assert float(from_bottom) == pytest.approx(-0.5, abs=0.004)
    assert float(from_above) == pytest.approx(0.5, abs=0.004)

"""The paper's fitting recipe (``fitting.paper_fit``, model ``paper_piecewise``) against the paper's printed fits.

Reference: ``tests/data/paper_fits.json``, the fitted parameters the paper's code printed (dw_min, up_down, w_min,
w_max and the full node vectors, aihwkit convention) for every measurement of the shared LBE247 set it reports.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from ferrolib import catalog, fitting, measurements, paths
from ferrolib import devices as dev
from ferrolib.aihwkit_export import to_aihwkit
from ferrolib.fitted import FittedDevice

HAVE_MEASUREMENTS = paths.SHARED_MEASUREMENTS.is_dir()
PAPER = json.loads((paths.ROOT / "tests" / "data" / "paper_fits.json").read_text())
STUDY_DEVICES = ("ID161ZR15000", "ID170ZR5000", "ID181ZR1000", "ID301XR1000Oct")

PARAMETER_TOLERANCE = {"up_down": 0.015, "w_min": 0.012, "w_max": 0.005}
"""Largest |ferrolib - paper| allowed for the fitted parameters (aihwkit convention), from the fit's scatter under
a rounding-level change: moving the start state by one float32 ulp moves (up_down, w_min, w_max) by up to 0.0081
over the 44 files (ID294YR 11:05, ID300XR1000Oct, ID305ZR500Oct; below 1e-3 on 40 files), because Powell stops
in a flat valley of the float32 loss (restarts from starts moved by 0.02 even spread up_down by up to 0.15 where
the loss has several minima). From the paper's start the differences to the printed values are below 1e-3 on 38
files; the largest are ID305ZR500Oct (up_down 0.0112, w_min 0.0057), ID294YR 11:05 (up_down 0.0072, w_min
0.0080), ID300XR1000Oct (w_min 0.0065), ID166ZR10000 14:15 (w_min 0.0028), ID170ZR5000 200 ns (w_min 0.0017),
ID301XR1000Oct 2 us (w_min 0.0013); w_max differs by at most 0.0020. The one-ulp change lands ID294YR 11:05 and
ID300XR1000Oct on the printed values (``test_a_rounding_level_change_moves_the_fit_onto_the_printed_one``): the
remaining differences are float32 rounding in aihwkit's compiled tile or the optimiser's versions, not the recipe."""
LOSS_TOLERANCE = 5e-3
"""Largest relative difference of the loss at the paper's parameters and at ours (measured: 4.3e-3 on
ID300XR1000Oct, where ours is lower; 1.4e-3 on ID305ZR500Oct, where the paper's is lower; median 2e-6)."""


def _fit_cases():
    return [pytest.param(fit, id=fit["file"].split("/")[-1].removesuffix("_Summary.dat")) for fit in PAPER["fits"]]


# ------------------------------------------------------------------------------------------ the tile's trace
def _random_case(rng: np.random.Generator) -> dict:
    n_nodes = int(rng.integers(2, 40))
    return {"pulses": rng.choice(np.array([-1, 1], np.int8), size=int(rng.integers(2, 300))),
            "start": float(rng.uniform(-1.5, 1.5)), "dw_min": float(rng.uniform(0.005, 0.3)),
            "up_down": float(rng.uniform(-0.99, 0.99)), "w_min": float(rng.uniform(-2.0, -0.1)),
            "w_max": float(rng.uniform(0.1, 2.0)), "nodes_up": rng.uniform(0.0, 5.0, n_nodes),
            "nodes_down": rng.uniform(0.0, 5.0, n_nodes)}


def test_compiled_tile_trace_equals_the_scalar_reference():
    """Same random draws (pulse trains, parameters, node vectors): the compiled float32 trace equals, bit for bit,
    the one-scalar-at-a-time numpy float32 reference, and it moves (not a comparison of constants)."""
    rng = np.random.default_rng(11)
    for _ in range(40):
        case = _random_case(rng)
        fast = fitting.aihwkit_pulse_response(**case)
        reference = fitting.aihwkit_pulse_response_reference(**case)
        assert fast.dtype == reference.dtype == np.float32 and fast.shape == (len(case["pulses"]),)
        np.testing.assert_array_equal(fast, reference)
        assert np.ptp(fast) > 0.0


def test_tile_trace_follows_aihwkit_conventions():
    """Flat nodes: every up step is ``dw_min (1 + min(u, 0))``, every down step ``dw_min (1 - max(u, 0))`` (the
    larger step is dw_min); the start is clipped to the bounds; states saturate at the bounds; the trace holds the
    start and one state after each pulse but the last (``pulses[:-1]``)."""
    flat = np.ones(32)
    for up_down in (0.4, -0.4):
        pulses = np.array([1] * 5 + [-1] * 5, np.int8)
        trace = fitting.aihwkit_pulse_response(pulses, 0.0, 0.05, up_down, -1.0, 1.0, flat, flat).astype(float)
        steps = np.diff(trace)
        assert len(trace) == len(pulses)
        np.testing.assert_allclose(steps[:5], 0.05 * (1 + min(up_down, 0.0)), rtol=1e-5)
        np.testing.assert_allclose(steps[5:], -0.05 * (1 - max(up_down, 0.0)), rtol=1e-5)
    up = fitting.aihwkit_pulse_response(np.ones(30, np.int8), 1.7, 0.1, 0.0, -0.5, 0.8, flat, flat)
    assert up[0] == np.float32(0.8) and (up == np.float32(0.8)).all()
    down = fitting.aihwkit_pulse_response(-np.ones(30, np.int8), 0.0, 0.1, 0.0, -0.5, 0.8, flat, flat)
    assert down[-1] == np.float32(-0.5) and np.all(np.diff(down) <= 0)


def test_fit_measurements_recovers_the_parameters_of_a_simulated_trace():
    """A trace simulated by the tile itself (a ramp up, then down, as the measurements run) is fitted back from
    the paper's start: the up_down, w_min and w_max it was made with, and a loss near zero."""
    grid = np.linspace(-1, 1, 32)
    nodes_up, nodes_down = 1.2 - 0.5 * grid, 1.0 + 0.4 * grid
    pulses = np.array([-1] * 70 + [1] * 70, np.int8)
    true = {"up_down": -0.3, "w_min": -0.9, "w_max": 1.1}
    response = fitting.aihwkit_pulse_response(pulses, 0.95, 0.03, true["up_down"], true["w_min"], true["w_max"],
                                              nodes_up, nodes_down).astype(float)
    values, loss, evaluations = fitting.fit_measurements(pulses, response, 0.03, nodes_up, nodes_down)
    for name, value in true.items():
        assert values[name] == pytest.approx(value, abs=0.01), name
    assert loss < 1e-4 and 0 < evaluations <= fitting.PAPER_EVALUATIONS_PER_PARAMETER * 4


def test_paper_recipe_refuses_bad_input_naming_the_file():
    amplitude = np.concatenate([np.linspace(1, 3, 20), -np.linspace(1, 3, 20)])
    conductance = 1e-8 * np.concatenate([np.linspace(2, 1, 20), np.linspace(1, 2, 20)])
    conductance[3] = np.nan
    dataset = xr.Dataset({"G": ("pulse", conductance), "amplitude": ("pulse", amplitude)},
                         attrs={"source_file": "broken.dat"})
    with pytest.raises(fitting.FitError, match="broken.dat: the paper's recipe needs a finite conductance"):
        fitting.paper_fit(dataset)


# ------------------------------------------------------------------------------- against the printed fits
@pytest.mark.skipif(not HAVE_MEASUREMENTS, reason="shared LBE247 measurements not present")
@pytest.mark.parametrize("paper", _fit_cases())
def test_paper_recipe_reproduces_the_printed_fit(paper):
    """Node vectors and dw_min are deterministic (polynomial fits): equal to the printed ones to 1e-12 (measured:
    bit for bit on all 44 files). up_down, w_min, w_max come from the Powell fit: within ``PARAMETER_TOLERANCE``,
    and the paper's parameters are as good a fit as ours (``LOSS_TOLERANCE``)."""
    dataset = measurements.read_summary(paths.SHARED_MEASUREMENTS / paper["file"])
    assert dataset.attrs["pulse_width_s"] == pytest.approx(paper["pulse_width_s"])
    fit = fitting.paper_fit(dataset)
    np.testing.assert_allclose(fit.piecewise_up, paper["piecewise_up"], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(fit.piecewise_down, paper["piecewise_down"], rtol=1e-12, atol=1e-12)
    assert fit.dw_min == pytest.approx(paper["dw_min"], rel=1e-12)
    for name, tolerance in PARAMETER_TOLERANCE.items():
        assert getattr(fit, name) == pytest.approx(paper[name], abs=tolerance), name
    trace = fitting.aihwkit_pulse_response(fit.pulses, fit.response[0], fit.dw_min, paper["up_down"], paper["w_min"],
                                           paper["w_max"], fit.piecewise_up, fit.piecewise_down)
    paper_loss = float(np.sum((trace.astype(float) - fit.response) ** 2))
    assert abs(paper_loss - fit.loss) <= LOSS_TOLERANCE * fit.loss


@pytest.mark.skipif(not HAVE_MEASUREMENTS, reason="shared LBE247 measurements not present")
def test_paper_piecewise_is_a_fit_model_with_its_own_files():
    """``fit_ramp(..., "paper_piecewise")`` is the paper's fit in ferrolib's convention (``to_aihwkit`` gives the
    paper's numbers back), without ferrolib's node floor; its files are named ``<id>_<width>_paper_piecewise.nc``
    and exist for every width of the study's four devices, each fitted on the latest file at that width."""
    assert "paper_piecewise" in dev.MODEL_KINDS
    path = catalog.fitted_device_path("ID170ZR5000", 2e-8, "paper_piecewise")
    assert path.name == "ID170ZR5000_20ns_paper_piecewise.nc"
    (latest,) = measurements.load_measurements("ID170ZR5000", 2e-8, select="last")
    fitted = fitting.fit_ramp(latest, "paper_piecewise")
    exported = to_aihwkit(fitted)
    fit = fitting.paper_fit(latest)
    for name in ("dw_min", "up_down", "w_min", "w_max"):
        assert exported[name] == pytest.approx(getattr(fit, name), rel=1e-12), name
    np.testing.assert_allclose(exported["piecewise_down"], fit.piecewise_down, rtol=0, atol=0)
    assert min(fitted.config.piecewise_down[1:]) < fitting.NODE_FLOOR  # no floor: the paper's 0.025 stays
    assert fitted.model == "piecewise" and fitted.fit_method.startswith("the paper's recipe")
    for device_id in STUDY_DEVICES:
        for dataset in measurements.load_measurements(device_id, select="last"):
            stored = FittedDevice.load(catalog.fitted_device_path(
                device_id, dataset.attrs["pulse_width_s"], "paper_piecewise", paths.ROOT / "data" / "devices"))
            assert stored.source_file == dataset.attrs["source_file"]
            assert stored.fit_method.startswith("the paper's recipe")


SYMMETRY_POINT_TOLERANCE = 0.035
"""Largest |protocol - printed| for the symmetry points of ID170ZR5000's paper_piecewise models. The printed values
are rounded to 0.01 and come from the paper's symmetry-point script of that time (51 up, 51 down from w = 0, then
150 alternating pulses starting up, mean of the last 5 states). Measured: 0.591, 0.514, 0.353, 0.163, 0.382, 0.120
against the printed 0.60, 0.51, 0.35, 0.16, 0.40, 0.15 (20 ns to 2 ms); the 200 us and 2 ms rows differ by 0.018
and 0.030 although the fitted parameters agree to 1e-4 (the paper's own parameters give the same 0.382 and 0.120),
so the printed runs differed in the protocol, not in the fit."""


def paper_symmetry_point(device: FittedDevice, n_steps: int = 51, n_alternating: int = 150,
                         tail: int = 5) -> float:
    """The paper's symmetry-point protocol on the noise-free nominal device: from w = 0, ``n_steps`` up and
    ``n_steps`` down pulses, then ``n_alternating`` alternating pulses starting up; the mean of the last ``tail``
    states."""
    directions = [1] * n_steps + [-1] * n_steps + [1 if k % 2 == 0 else -1 for k in range(n_alternating)]
    states = dev.simulate_sequence(device.config.devices(), 0.0, directions)[1:]
    return float(states[-tail:].mean())


def test_symmetry_points_of_the_paper_models_follow_the_printed_ones():
    printed = {fit["pulse_width_s"]: fit["symmetry_point"] for fit in PAPER["fits"]
               if fit["device_id"] == "ID170ZR5000"}
    assert len(printed) == 6
    for width, value in printed.items():
        device = FittedDevice.load(catalog.fitted_device_path("ID170ZR5000", width, "paper_piecewise",
                                                              paths.ROOT / "data" / "devices"))
        assert paper_symmetry_point(device) == pytest.approx(value, abs=SYMMETRY_POINT_TOLERANCE), width


@pytest.mark.skipif(not HAVE_MEASUREMENTS, reason="shared LBE247 measurements not present")
@pytest.mark.parametrize("name", ["ID294YR/ID294YR_20240919110516_Summary.dat",
                                  "ID300XR1000Oct/ID300XR1000Oct_20240919131258_Summary.dat"])
def test_a_rounding_level_change_moves_the_fit_onto_the_printed_one(name):
    """The two files whose fit differs most from the printed one after ID305ZR500Oct: with the start state moved
    by one float32 ulp the Powell fit moves by more than 0.005 and lands within 0.001 of the printed parameters."""
    (paper,) = [fit for fit in PAPER["fits"] if fit["file"] == name]
    response, pulses = fitting.paper_response(measurements.read_summary(paths.SHARED_MEASUREMENTS / name))
    nodes_up, nodes_down, dw_min = fitting.paper_nodes(response, pulses)
    nudged = response.copy()
    nudged[0] = float(np.nextafter(np.float32(response[0]), np.float32(2.0)))
    ours, _, _ = fitting.fit_measurements(pulses, response, dw_min, nodes_up, nodes_down)
    moved, _, _ = fitting.fit_measurements(pulses, nudged, dw_min, nodes_up, nodes_down)
    assert max(abs(ours[k] - moved[k]) for k in PARAMETER_TOLERANCE) > 0.005
    assert max(abs(moved[k] - paper[k]) for k in PARAMETER_TOLERANCE) < 0.001


@pytest.mark.skipif(not HAVE_MEASUREMENTS, reason="shared LBE247 measurements not present")
def test_the_paper_normalises_over_every_read_outliers_included():
    """ID170ZR5000 at 2 ms has one outlier read: the paper's normalisation (``prepare(all_reads=True)``, used by
    ``paper_piecewise``) keeps it in the mean, ferrolib's own leaves it out; the ramps exclude it either way."""
    (dataset,) = measurements.load_measurements("ID170ZR5000", 2e-3, select="last")
    outlier = dataset["outlier"].values.astype(bool)
    assert outlier.sum() == 1
    conductance = dataset["G"].values
    paper, own = fitting.prepare(dataset, all_reads=True), fitting.prepare(dataset)
    assert paper.g_mean == pytest.approx(conductance.mean(), rel=1e-15)
    assert own.g_mean == pytest.approx(conductance[~outlier].mean(), rel=1e-15) and own.g_mean != paper.g_mean
    assert np.isnan(paper.w[outlier]).all()
    np.testing.assert_allclose(paper.w[~outlier], fitting.paper_response(dataset)[0][~outlier], rtol=0, atol=1e-15)

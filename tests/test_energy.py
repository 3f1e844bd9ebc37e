"""Energy models and the ledger."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from ferrolib import energy
from ferrolib.energy import CapacitiveCharging, EnergyModel, PolarizationSwitching, PulseConditions, SchottkyLeakage

from fake_runs import FakeConfig, fake_result

AREA = 34 / 9 * (5000e-9) ** 2  # ID170ZR5000


def conditions(**changes) -> PulseConditions:
    values = dict(area_m2=AREA, pulse_width_s=2e-8, amplitude_up_V=3.6, amplitude_down_V=5.0,
                  conductance_S=7e-9, conductance_max_S=1e-8, source="test")
    values.update(changes)
    return PulseConditions(**values)


def test_schottky_bound_matches_a_hand_evaluation():
    # J = alpha T^1.5 E mu exp(-(phi_B - sqrt(E / (4 pi 552634.94 eps_r))) / kT), E = 3.6 V / 5e-7 cm
    field = 3.6 / 5e-7
    lowering = math.sqrt(field / (4 * math.pi * 552634.94 * 18.2))
    j = 3e-4 * 300**1.5 * field * 8.9e-3 * math.exp(-(0.19 - lowering) / (8.617e-5 * 300))  # A/cm^2
    assert lowering == pytest.approx(0.2387, abs=1e-4)
    assert j == pytest.approx(6.6e5, rel=0.02)
    area_cm2 = AREA * 1e4
    expected = 3.6 * j * area_cm2 * 2e-8
    assert float(SchottkyLeakage().energy(3.6, 2e-8, AREA)) == pytest.approx(expected, rel=1e-12)
    assert float(SchottkyLeakage().energy(-3.6, 2e-8, AREA)) == pytest.approx(expected, rel=1e-12)


def test_components_scale_with_width_area_and_voltage():
    leak, cap, sw = SchottkyLeakage(), CapacitiveCharging(), PolarizationSwitching()
    # pulse width: leakage linear, capacitive and switching independent (they take no width)
    assert float(leak.energy(3.0, 2e-6, AREA) / leak.energy(3.0, 2e-8, AREA)) == pytest.approx(100.0)
    # area: all linear
    assert float(leak.energy(3.0, 2e-8, 3 * AREA) / leak.energy(3.0, 2e-8, AREA)) == pytest.approx(3.0)
    assert float(cap.energy(3.0, 3 * AREA) / cap.energy(3.0, AREA)) == pytest.approx(3.0)
    assert float(sw.energy(3.0, 3 * AREA) / sw.energy(3.0, AREA)) == pytest.approx(3.0)
    # voltage: capacitive quadratic, switching linear, Schottky current super-linear
    assert float(cap.energy(4.0, AREA) / cap.energy(2.0, AREA)) == pytest.approx(4.0)
    assert float(sw.energy(4.0, AREA) / sw.energy(2.0, AREA)) == pytest.approx(2.0)
    assert float(leak.current_density(4.0) / leak.current_density(2.0)) > 2.0
    # closed forms
    assert float(cap.energy(2.0, AREA)) == pytest.approx(energy.EPS0 * 30 * AREA / 5e-9 * 4.0)
    assert float(sw.energy(2.0, AREA)) == pytest.approx(2 * 0.15 * AREA * 2.0 / 80)


def test_model_per_pulse_energy_through_the_table():
    cond = conditions()
    width_ratio = (EnergyModel().pulse_energy(conditions(pulse_width_s=2e-6))
                   / EnergyModel().pulse_energy(cond))
    assert np.allclose(width_ratio.sel(component="leakage"), 100.0)
    assert np.allclose(width_ratio.sel(component=["capacitive", "switching"]), 1.0)
    table = energy.pulse_energy_table(cond)
    assert float(table.sel(polarity="down", component="leakage_conductance")) == pytest.approx(3.6**2 * 1e-8 * 2e-8)
    paper = EnergyModel().pulse_energy(cond)
    assert np.allclose(paper.sel(polarity="up"), paper.sel(polarity="down"))  # paper: |most negative| for all
    per_polarity = EnergyModel(amplitude_rule="per_polarity").pulse_energy(cond)
    assert float(per_polarity.sel(polarity="down", component="capacitive")) == pytest.approx(
        float(CapacitiveCharging().energy(5.0, AREA)))


def test_scale_against_the_published_sanity_numbers():
    """Capacitive + switching of a ZR1000 device (3.8 um^2) at 20 ns stay under the 3 pJ of Baigol 2026; the
    Schottky bound is far above every sanity figure (documented in the module docstring)."""
    small = conditions(area_m2=34 / 9 * (1000e-9) ** 2)
    e = EnergyModel().pulse_energy(small).sel(polarity="up")
    assert float(e.sel(component="capacitive") + e.sel(component="switching")) < 3e-12
    assert float(e.sel(component="leakage")) > 1e-10
    assert float(energy.pulse_energy_table(small).sel(polarity="up", component="leakage_conductance")) < 1e-14


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="area_m2"):
        conditions(area_m2=float("nan"))
    with pytest.raises(ValueError, match="amplitude_rule"):
        EnergyModel(amplitude_rule="mean")
    result = fake_result(FakeConfig())
    facts = json.loads(result.attrs["device"])
    del facts["area_m2"]
    with pytest.raises(ValueError, match="no device area"):
        energy.ledger(result.assign_attrs(device=json.dumps(facts)))
    del facts["g_mean"]
    with pytest.raises(ValueError, match="no conductance"):
        energy.ledger(result.assign_attrs(device=json.dumps(facts)))
    with pytest.raises(ValueError, match="negative event counts"):
        energy.ledger(fake_result(FakeConfig()).assign(pulses=lambda d: -d["pulses"]))


def test_ledger_equals_the_hand_computed_sum():
    config = FakeConfig(algorithm="mp", epochs=3)
    result = fake_result(config)
    model = EnergyModel()
    cond = conditions(conductance_S=7.5e-9)  # what fake_result's attrs say: G range [5e-9, 1e-8]
    led = energy.ledger(result, model)
    assert energy.conditions_from_attrs(result.attrs).conductance_S == pytest.approx(cond.conductance_S)
    # hand sum, event by event
    per_pulse_total = sum(float(v) for v in (
        SchottkyLeakage().energy(3.6, 2e-8, AREA), CapacitiveCharging().energy(3.6, AREA),
        PolarizationSwitching().energy(3.6, AREA)))
    per_read = 0.1**2 * 7.5e-9 * 10e-9
    per_op = 4.6e-12 + 2 * 5e-12
    expected = []
    for e in range(3):
        pulses = int(result["pulses"].isel(epoch=e).sum())
        reads = sum(int(sum(result[v].isel(epoch=e, layer=i) for v in ("forward_reads", "backward_reads", "eval_reads")))
                    * int(result["layer_devices"].isel(layer=i)) for i in range(3))
        macs = int(result["digital_macs"].isel(epoch=e).sum())
        expected.append(pulses * per_pulse_total + reads * per_read + macs * per_op)
    assert np.allclose(led["energy_epoch"].values, expected, rtol=1e-10)
    assert np.allclose(led["energy_cumulative"].values, np.cumsum(expected), rtol=1e-10)
    assert float(led["energy_term"].sel(term="digital").sum()) > 0
    assert led["energy_cumulative"].attrs["units"] == "J"
    assert "energy_model" in led.attrs and "version_ferrolib" in led.attrs


def test_ledger_doubles_reads_for_the_sps_reference_and_zero_for_fp():
    mp = energy.ledger(fake_result(FakeConfig(algorithm="mp")))
    sps = energy.ledger(fake_result(FakeConfig(algorithm="sps")))
    assert np.allclose(sps["energy_term"].sel(term="read_forward"), 2 * mp["energy_term"].sel(term="read_forward"))
    assert float(sps["energy_term"].sel(term="digital").sum()) == 0.0
    fp = fake_result(FakeConfig(algorithm="fp"))  # no device provenance at all
    assert float(fp["forward_reads"].sum()) > 0
    assert float(energy.ledger(fp)["energy_term"].sel(term=["program_leakage", "read_forward"]).sum()) == 0.0


def test_conditions_come_from_the_attributes_alone_never_from_a_measurement(monkeypatch):
    """A result is self-contained: without its conductances the ledger refuses clearly instead of opening the
    measurement that ``source_file`` names (which a copied result cannot reach)."""
    measured = energy.conditions_for_device("ID170ZR5000", 2e-8)
    assert 1e-9 < measured.conductance_S < 1e-7  # ~1e8 ohm reads of a 94 um^2 device
    assert measured.amplitude_up_V == pytest.approx(3.582) and measured.amplitude_down_V == pytest.approx(4.984)
    from ferrolib import measurements

    def no_reading(*args, **kwargs):
        raise AssertionError("the ledger opened a measurement")

    monkeypatch.setattr(measurements, "read_summary", no_reading)
    result = fake_result(FakeConfig())
    assert energy.conditions_from_attrs(result.attrs).conductance_S == pytest.approx(7.5e-9)
    facts = json.loads(result.attrs["device"])
    for key in ("g_min", "g_max", "g_mean"):
        del facts[key]
    facts["source_file"] = "ID170ZR5000/ID170ZR5000_20241024132232_Summary.dat"
    with pytest.raises(ValueError, match="no conductance"):
        energy.conditions_from_attrs(result.assign_attrs(device=json.dumps(facts)).attrs)


def test_cli_prints_the_per_pulse_table_and_a_run_ledger(tmp_path, capsys):
    import json as _json

    from ferrolib import provenance
    from ferrolib.cli import main

    assert main(["energy", "--device", "ID181ZR1000", "--pulse-width", "2e-8", "--json"]) == 0
    shown = _json.loads(capsys.readouterr().out)
    assert shown["conditions"]["area_m2"] == pytest.approx(34 / 9 * 1e-12)
    assert set(shown["per_pulse_J"]) == {"up", "down"}
    path = provenance.write_netcdf(fake_result(FakeConfig(epochs=2)), tmp_path / "run.nc")
    assert main(["energy", str(path), "--json"]) == 0
    shown = _json.loads(capsys.readouterr().out)
    expected = energy.ledger(fake_result(FakeConfig(epochs=2)))["energy_cumulative"].values
    assert shown["cumulative_J"] == pytest.approx(list(expected))
    assert main(["energy", str(tmp_path / "missing.nc")]) == 2
    assert "missing.nc" in capsys.readouterr().err


def test_state_dependent_switching_and_conductance():
    import torch

    from ferrolib.devices import DeviceArray

    ones = torch.ones(3, dtype=torch.float64)
    devices = DeviceArray("softbounds", w_min=-ones, w_max=ones, scale_up=0.01 * ones, scale_down=0.02 * ones,
                          dw_min=0.01)
    cond = conditions(conductance_S=7e-9, conductance_min_S=4e-9, conductance_max_S=1e-8)
    w = torch.tensor([-0.5, 0.0, 1.0], dtype=torch.float64)
    up = energy.state_pulse_energy(cond, devices, w, "up")
    down = energy.state_pulse_energy(cond, devices, w, "down")
    # soft bounds: dw_up = 0.01 (1 - w), dw_down = 0.02 (1 + w); window 2 -> fractions dw / 2
    assert np.allclose(up["switching"], 2 * 0.15 * AREA * 3.6 * 0.01 * (1 - w.numpy()) / 2)
    assert np.allclose(down["switching"], 2 * 0.15 * AREA * 3.6 * 0.02 * (1 + w.numpy()) / 2)
    assert up["switching"][2] == 0.0  # a saturated device switches nothing more
    # G(w) = g_mean + w (g_max - g_min) / 2: 5.5e-9, 7e-9, 1e-8 S
    assert np.allclose(up["leakage_conductance"], 3.6**2 * np.array([5.5e-9, 7e-9, 1e-8]) * 2e-8)
    assert np.allclose(up["capacitive"], float(CapacitiveCharging().energy(3.6, AREA)))
    with pytest.raises(ValueError, match="conductance_min_S"):
        energy.state_pulse_energy(conditions(), devices, w, "up")

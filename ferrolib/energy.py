"""Energy of training on ferroelectric synapses: per-pulse models and a ledger over counted events
(docs/science.md: "The energy ledger"); what a run spends to reach a target is in ``ferrolib.convergence``.

Every energy figure is counted events times energy per event; nothing is estimated from epochs alone.

Per programming pulse of amplitude V, width t_p, on a device of area A (SI units throughout):

* leakage / Joule ``E_leak = |V| J(V) A t_p`` with the published modified-Schottky-emission upper bound
  ``J = alpha T^{3/2} E mu exp(-(phi_B - sqrt(q E / (4 pi eps0 eps_r))) / (k T))``, ``E = V/d``
  (:class:`SchottkyLeakage`), or with the device's own measured conductance extrapolated ohmically,
  ``E_leak = V^2 G t_p`` (``leakage="conductance"``);
* capacitive charging ``E_cap = C V^2``, ``C = eps0 eps_r A / d`` (:class:`CapacitiveCharging`);
* polarization switching ``E_sw = 2 P_r A |V| s``, s the switched fraction per pulse
  (:class:`PolarizationSwitching`).

Amplitude charged per pulse (``EnergyModel.amplitude_rule``): ``"paper"`` charges every pulse, up or down, at
the magnitude of the most negative amplitude of the measured ramp, as the published estimate does;
``"per_polarity"`` charges a potentiation pulse at that magnitude and a depression pulse at the largest
positive amplitude of its own ramp. Both are upper ends: the ramps end at their largest amplitude.

Scale check (ID170ZR5000, 94.4 um^2, 20 ns, 3.6 V; see ``tests/test_energy.py``): capacitive ~65 pJ
(eps_r 30), switching ~1.3 pJ (P_r 15 uC/cm^2, 1/80 of the film per pulse), conductance leakage ~2 fJ, while the
Schottky bound gives ~45 nJ: the formula's image-force lowering exceeds phi_B = 0.19 eV at these fields, so it
is a loose upper bound, far above the group's < 1 pJ (2022) and <= 3 pJ per 20 ns pulse (< 100 um^2, 2026)
figures. On a ZR1000 device (3.8 um^2) capacitive + switching come to ~2.7 pJ, inside the 3 pJ figure.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Mapping

import numpy as np
import xarray as xr

from . import provenance

if TYPE_CHECKING:
    from .devices import DeviceArray

EPS0 = 8.8541878128e-12
"""Vacuum permittivity (F/m)."""
EPS0_E2_PER_EV_CM = 552634.94
"""Vacuum permittivity in e^2/(eV cm), as the published Schottky model writes it (docs/science.md, energy ledger)."""
K_B_EV = 8.617e-5
"""Boltzmann constant (eV/K), the value of the published model."""

POLARITIES: tuple[str, ...] = ("up", "down")
"""Pulse polarities: up = potentiation (negative voltage pulse), down = depression (positive pulse)."""
COMPONENTS: tuple[str, ...] = ("leakage", "capacitive", "switching")
"""Components of the energy of one programming pulse."""
TABLE_COMPONENTS: tuple[str, ...] = ("leakage_schottky", "leakage_conductance", "capacitive", "switching")
"""Every per-pulse estimate: both leakage models, capacitive charging, polarization switching."""
TERMS: tuple[str, ...] = ("program_leakage", "program_capacitive", "program_switching", "read_forward",
                          "read_backward", "read_eval", "digital")
"""Terms of the training-energy ledger."""


@dataclass
class SchottkyLeakage:
    """Modified Schottky emission through the film, the published upper bound of the leakage energy."""

    alpha: float = 3e-4
    """Prefactor alpha (A s cm^-3 K^-3/2); published model (Garg et al. 2025)."""
    mobility_mass_factor: float = 8.9e-3
    """mu (m*/m0)^{3/2} (cm^2 / (V s)); published model."""
    barrier_eV: float = 0.19
    """Barrier height phi_B (eV); published model."""
    eps_r: float = 18.2
    """Relative (dynamic) permittivity of the image-force lowering; published model."""
    temperature_K: float = 300.0
    """Temperature T (K)."""
    thickness_m: float = 5e-9
    """Film thickness d (m); the HZO superlattice is about 5 nm."""

    __repr__ = provenance.compact_repr

    def current_density(self, voltage: Any) -> np.ndarray:
        """J(V) in A/m^2 (the equation is evaluated in its published units, V/cm and A/cm^2)."""
        field_v_per_cm = np.abs(np.asarray(voltage, dtype=float)) / (self.thickness_m * 100.0)
        lowering_eV = np.sqrt(field_v_per_cm / (4.0 * math.pi * EPS0_E2_PER_EV_CM * self.eps_r))
        j_a_per_cm2 = (self.alpha * self.temperature_K**1.5 * field_v_per_cm * self.mobility_mass_factor
                       * np.exp(-(self.barrier_eV - lowering_eV) / (K_B_EV * self.temperature_K)))
        return j_a_per_cm2 * 1e4

    def energy(self, voltage: Any, pulse_width_s: Any, area_m2: Any) -> np.ndarray:
        """E_leak = |V| J(V) A t_p (J)."""
        return np.abs(np.asarray(voltage, dtype=float)) * self.current_density(voltage) * np.asarray(area_m2) \
            * np.asarray(pulse_width_s)


@dataclass
class CapacitiveCharging:
    """Charging the device capacitance once per pulse: E_cap = C V^2 with C = eps0 eps_r A / d."""

    eps_r: float = 30.0
    """Relative permittivity of HZO (about 25-35; docs/science.md, "The energy ledger")."""
    thickness_m: float = 5e-9
    """Dielectric thickness d (m)."""

    __repr__ = provenance.compact_repr

    def energy(self, voltage: Any, area_m2: Any) -> np.ndarray:
        """C V^2 (J), independent of the pulse width."""
        capacitance = EPS0 * self.eps_r * np.asarray(area_m2, dtype=float) / self.thickness_m
        return capacitance * np.asarray(voltage, dtype=float) ** 2


@dataclass
class PolarizationSwitching:
    """Reversing a fraction s of the remanent polarization per pulse: E_sw = 2 P_r A |V| s."""

    remanent_polarization_C_per_m2: float = 0.15
    """P_r (C/m^2): 15 uC/cm^2, the middle of the 10-20 uC/cm^2 range in docs/science.md, "The energy ledger"."""
    switched_fraction: float = 1.0 / 80.0
    """s, fraction of the film switched by one pulse: a ramp of 60-100 pulses sweeps the whole window."""

    __repr__ = provenance.compact_repr

    def energy(self, voltage: Any, area_m2: Any) -> np.ndarray:
        """2 P_r A |V| s (J), independent of the pulse width."""
        return (2.0 * self.remanent_polarization_C_per_m2 * np.asarray(area_m2, dtype=float)
                * np.abs(np.asarray(voltage, dtype=float)) * self.switched_fraction)


@dataclass
class ReadModel:
    """Read energy of an analog matrix-vector product: V_read^2 G t_read per device per read."""

    voltage_V: float = 0.1
    """Read voltage (V): the +/-0.1 V of the measurement's read sweep, at which G was measured."""
    duration_s: float = 10e-9
    """Read integration time t_read (s); an assumption (typical crossbar read pulse), not measured."""

    __repr__ = provenance.compact_repr

    def energy(self, conductance_S: Any) -> np.ndarray:
        """V_read^2 G t_read (J) per device per read."""
        return self.voltage_V**2 * np.asarray(conductance_S, dtype=float) * self.duration_s


@dataclass
class DigitalModel:
    """Digital overhead of mixed precision: one multiply-accumulate into chi plus its memory traffic per op."""

    mac_J: float = 4.6e-12
    """Energy of one FP32 multiply-add (J): 3.7 pJ mult + 0.9 pJ add, Horowitz ISSCC 2014, 45 nm."""
    memory_access_J: float = 5e-12
    """Energy of one 32-bit SRAM access (J): half the 10 pJ 64-bit read of an 8 kB SRAM, Horowitz 2014."""
    accesses_per_mac: float = 2.0
    """chi words moved per accumulate: read and write back (no register reuse assumed)."""

    __repr__ = provenance.compact_repr

    def energy_per_op(self) -> float:
        """Energy of one counted digital accumulate (J)."""
        return self.mac_J + self.accesses_per_mac * self.memory_access_J


@dataclass
class PulseConditions:
    """What a device and its measurement fix about a programming pulse."""

    area_m2: float
    """Device area (m^2)."""
    pulse_width_s: float
    """Programming pulse width t_p (s)."""
    amplitude_up_V: float
    """Magnitude of the most negative amplitude of the potentiation ramp (V)."""
    amplitude_down_V: float
    """Largest amplitude of the depression ramp (V)."""
    conductance_S: float
    """Mean conductance of the device over its measured states, read at 0.1 V (S)."""
    conductance_max_S: float | None = None
    """Largest measured conductance (S), used by the conductance leakage model; None: ``conductance_S``."""
    conductance_min_S: float | None = None
    """Smallest measured conductance (S); with the largest it maps a state w back to G (``state_pulse_energy``)."""
    source: str = ""
    """Where these numbers come from (device id, measured/synthetic)."""

    __repr__ = provenance.compact_repr

    def __post_init__(self) -> None:
        for name in ("area_m2", "pulse_width_s", "amplitude_up_V", "amplitude_down_V", "conductance_S"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"PulseConditions.{name} must be a positive finite number, got {value!r}")


@dataclass
class EnergyModel:
    """Per-pulse, read and digital energy models with the rule fixing the amplitude of each pulse."""

    amplitude_rule: Literal["paper", "per_polarity"] = "paper"
    """``paper``: every pulse at |most negative ramp amplitude| (published estimate); ``per_polarity``: each
    polarity at the largest magnitude of its own ramp."""
    leakage: Literal["schottky", "conductance"] = "schottky"
    """Leakage model of the ledger: the Schottky upper bound or the ohmic extrapolation V^2 G_max t_p."""
    schottky: SchottkyLeakage = field(default_factory=SchottkyLeakage)
    """Schottky-emission leakage parameters."""
    capacitive: CapacitiveCharging = field(default_factory=CapacitiveCharging)
    """Capacitive charging parameters."""
    switching: PolarizationSwitching = field(default_factory=PolarizationSwitching)
    """Polarization switching parameters."""
    read: ReadModel = field(default_factory=ReadModel)
    """Read energy parameters."""
    digital: DigitalModel = field(default_factory=DigitalModel)
    """Digital (mixed precision) overhead parameters."""

    __repr__ = provenance.compact_repr

    def __post_init__(self) -> None:
        if self.amplitude_rule not in ("paper", "per_polarity"):
            raise ValueError(f"amplitude_rule must be 'paper' or 'per_polarity', got {self.amplitude_rule!r}")
        if self.leakage not in ("schottky", "conductance"):
            raise ValueError(f"leakage must be 'schottky' or 'conductance', got {self.leakage!r}")

    def amplitude(self, conditions: PulseConditions, polarity: str) -> float:
        """Amplitude magnitude (V) at which one pulse of ``polarity`` is charged."""
        if polarity not in POLARITIES:
            raise ValueError(f"polarity must be one of {POLARITIES}, got {polarity!r}")
        if self.amplitude_rule == "paper" or polarity == "up":
            return abs(conditions.amplitude_up_V)
        return abs(conditions.amplitude_down_V)

    def pulse_energy(self, conditions: PulseConditions) -> xr.DataArray:
        """Energy of one programming pulse (J) per ``polarity`` and ``component`` (the ledger's leakage model)."""
        return self.components(pulse_energy_table(conditions, self))

    def components(self, table: xr.DataArray) -> xr.DataArray:
        """The ledger's components (leakage of this model's kind, capacitive, switching) of a pulse table."""
        picked = table.sel(component=["leakage_" + self.leakage, "capacitive", "switching"])
        out = picked.assign_coords(component=list(COMPONENTS)).transpose("polarity", "component")
        out.attrs = {"units": "J", "leakage_model": self.leakage, "amplitude_rule": self.amplitude_rule}
        return out


def pulse_energy_table(conditions: PulseConditions, model: EnergyModel | None = None) -> xr.DataArray:
    """Energy of one pulse (J) per polarity, for both leakage models, capacitive charging and switching."""
    model = model or EnergyModel()
    rows = []
    for polarity in POLARITIES:
        volts = model.amplitude(conditions, polarity)
        g_max = conditions.conductance_max_S or conditions.conductance_S
        rows.append([
            float(model.schottky.energy(volts, conditions.pulse_width_s, conditions.area_m2)),
            volts**2 * g_max * conditions.pulse_width_s,
            float(model.capacitive.energy(volts, conditions.area_m2)),
            float(model.switching.energy(volts, conditions.area_m2)),
        ])
    return xr.DataArray(
        np.array(rows), dims=("polarity", "component"),
        coords={"polarity": list(POLARITIES), "component": list(TABLE_COMPONENTS)},
        name="pulse_energy",
        attrs={"units": "J", "amplitude_rule": model.amplitude_rule, "source": conditions.source,
               "amplitude_up_V": model.amplitude(conditions, "up"),
               "amplitude_down_V": model.amplitude(conditions, "down")},
    )


def state_pulse_energy(conditions: PulseConditions, devices: "DeviceArray", w: Any, polarity: str,
                       model: EnergyModel | None = None) -> dict[str, np.ndarray]:
    """Per-pulse energy components (J) of a pulse of ``polarity`` on devices at state ``w``.

    The state enters twice: polarization switching charges the fraction of the film this step switches,
    ``s(w) = dw(w) / (w_max - w_min)`` (the whole window is the whole film); the ohmic leakage uses the state's
    conductance ``G(w) = g_mean + w (g_max - g_min) / 2`` (the inverse of the weight normalisation). The
    Schottky bound and capacitive charging do not depend on the state. The ledger, which counts pulses but not
    the states they hit, uses ``PolarizationSwitching.switched_fraction`` and ``g_max`` instead.
    """
    import torch

    model = model or EnergyModel()
    if conditions.conductance_min_S is None or conditions.conductance_max_S is None:
        raise ValueError("state_pulse_energy needs PulseConditions.conductance_min_S and conductance_max_S")
    state = torch.as_tensor(w, dtype=devices.w_min.dtype)
    step = devices.dw_up(state) if polarity == "up" else devices.dw_down(state)
    fraction = (step / (devices.w_max - devices.w_min)).numpy()
    volts = model.amplitude(conditions, polarity)
    g_window = conditions.conductance_max_S - conditions.conductance_min_S
    g_state = conditions.conductance_S + state.numpy() * g_window / 2
    switching = dataclasses.replace(model.switching, switched_fraction=1.0)
    return {
        "leakage_schottky": np.broadcast_to(model.schottky.energy(volts, conditions.pulse_width_s, conditions.area_m2),
                                            fraction.shape),
        "leakage_conductance": volts**2 * np.clip(g_state, 0.0, None) * conditions.pulse_width_s,
        "capacitive": np.broadcast_to(model.capacitive.energy(volts, conditions.area_m2), fraction.shape),
        "switching": switching.energy(volts, conditions.area_m2) * fraction,
    }


def format_energy(joules: float) -> str:
    """Human label of an energy: 4.3e-08 -> '43.3 nJ'."""
    if joules == 0:
        return "0 J"
    for unit, factor in (("J", 1.0), ("mJ", 1e-3), ("uJ", 1e-6), ("nJ", 1e-9), ("pJ", 1e-12), ("fJ", 1e-15)):
        if abs(joules) >= factor * 0.9995:
            return f"{joules / factor:.3g} {unit}"
    return f"{joules:.3g} J"


# ----------------------------------------------------------------------------------------------- conditions
_UP_KEYS = ("amplitude_range_up", "amplitude_up_V")
_DOWN_KEYS = ("amplitude_range_down", "amplitude_down_V")


def _parse(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _lookup(facts: Mapping[str, Any], keys: tuple[str, ...], what: str, origin: str) -> Any:
    for key in keys:
        if key in facts:
            return facts[key]
    raise ValueError(f"{origin}: no {what} in the device provenance (looked for {', '.join(keys)}); "
                     f"pass PulseConditions explicitly")


def _magnitude(value: Any) -> float:
    return float(np.max(np.abs(np.asarray(value, dtype=float))))


def device_facts(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Device provenance of a run result or fitted device: top-level attributes, overlaid by the JSON
    ``device`` attribute that ``ferrolib.training`` writes."""
    facts = {key: _parse(value) for key, value in attrs.items()}
    nested = facts.get("device")
    if isinstance(nested, dict):
        facts.update(nested)
    return facts


def conditions_from_attrs(attrs: Mapping[str, Any], origin: str = "result") -> PulseConditions:
    """PulseConditions from device provenance (``area_m2``, ``pulse_width_s``, ``amplitude_range_up`` and
    ``_down`` as [first, last] V, conductance ``g_mean``/``g_max``/``g_min`` in S).

    Amplitude ranges contribute their largest magnitude. Everything is read from the attributes alone (a result
    file is self-contained; no measurement is opened), so a result copied anywhere can be accounted for.
    """
    facts = device_facts(attrs)
    if not ("g_mean" in facts and "g_max" in facts):
        raise ValueError(f"{origin}: no conductance in the device provenance (g_mean and g_max; results of "
                         f"older ferrolib versions lack them: re-run); pass PulseConditions explicitly")
    g_mean, g_max = float(facts["g_mean"]), float(facts["g_max"])
    g_min = float(facts["g_min"]) if "g_min" in facts else None
    return PulseConditions(
        area_m2=float(_lookup(facts, ("area_m2",), "device area", origin)),
        pulse_width_s=float(_lookup(facts, ("pulse_width_s",), "pulse width", origin)),
        amplitude_up_V=_magnitude(_lookup(facts, _UP_KEYS, "potentiation (negative) amplitude", origin)),
        amplitude_down_V=_magnitude(_lookup(facts, _DOWN_KEYS, "depression (positive) amplitude", origin)),
        conductance_S=g_mean,
        conductance_max_S=g_max,
        conductance_min_S=g_min,
        source=f"{facts.get('data_kind', 'unknown')} {facts.get('device_id', '?')}",
    )


def conditions_from_measurement(measurement: xr.Dataset) -> PulseConditions:
    """PulseConditions of one measured ramp (``ferrolib.measurements.read_summary``): the largest pulse
    magnitude of each polarity and the conductance of the reads not flagged as outliers."""
    origin = str(measurement.attrs.get("source_file", "measurement"))
    amplitude, polarity = measurement["amplitude"].values, measurement["polarity"].values
    if not (np.any(polarity < 0) and np.any(polarity > 0)):
        raise ValueError(f"{origin}: needs pulses of both polarities to fix the programming amplitudes")
    good = ~measurement["outlier"].values.astype(bool) if "outlier" in measurement else slice(None)
    conductance = measurement["G"].values[good]
    return PulseConditions(
        area_m2=float(measurement.attrs.get("area_m2", math.nan)),
        pulse_width_s=float(measurement.attrs["pulse_width_s"]),
        amplitude_up_V=_magnitude(amplitude[polarity < 0]),
        amplitude_down_V=_magnitude(amplitude[polarity > 0]),
        conductance_S=float(conductance.mean()),
        conductance_max_S=float(conductance.max()),
        conductance_min_S=float(conductance.min()),
        source=f"measured {measurement.attrs.get('device_id', '?')} ({Path(origin).name})",
    )


def conditions_for_device(device_id: str, pulse_width: float, source: str | Path | None = None) -> PulseConditions:
    """PulseConditions of a measured device at a pulse width (the latest measurement at that width)."""
    from . import measurements

    return conditions_from_measurement(measurements.load_measurements(device_id, pulse_width, source, "last")[0])


def pulse_energy_vs_width(device_id: str, pulse_widths: Any, model: EnergyModel | None = None,
                          source: str | Path | None = None) -> xr.Dataset:
    """Per-pulse energy estimates of a measured device at each pulse width (each width's own measurement).

    Variables: ``pulse_energy(pulse_width, polarity, component)`` over ``TABLE_COMPONENTS`` (J), ``total``
    (the model's ledger components summed, J), ``amplitude(pulse_width, polarity)`` (V), ``conductance`` (S).
    """
    model = model or EnergyModel()
    widths = [float(w) for w in pulse_widths]
    conditions = [conditions_for_device(device_id, w, source) for w in widths]
    tables = [pulse_energy_table(c, model) for c in conditions]
    width = xr.DataArray(widths, dims="pulse_width", name="pulse_width", attrs={"units": "s"})
    table = xr.concat(tables, dim=width)
    out = xr.Dataset({
        "pulse_energy": table.assign_attrs(units="J"),
        "total": xr.concat([model.pulse_energy(c).sum("component") for c in conditions], dim=width)
        .assign_attrs(units="J", description=f"leakage_{model.leakage} + capacitive + switching"),
        "amplitude": xr.DataArray([[model.amplitude(c, p) for p in POLARITIES] for c in conditions],
                                  dims=("pulse_width", "polarity"), attrs={"units": "V"}),
        "conductance": xr.DataArray([c.conductance_S for c in conditions], dims="pulse_width",
                                    attrs={"units": "S"}),
    })
    out.attrs = provenance.provenance_attrs(
        energy_model=repr(model), energy_model_config=provenance.config_dict(model), device_id=device_id,
        area_m2=conditions[0].area_m2, data_kind="measured", sources=[c.source for c in conditions])
    return out


# -------------------------------------------------------------------------------------------------- ledger
def _counts(result: xr.Dataset, name: str, dims: tuple[str, ...]) -> xr.DataArray:
    if name not in result:
        raise ValueError(f"run result has no {name!r} variable (the ledger counts events from it)")
    counts = result[name]
    missing = [d for d in dims if d not in counts.dims]
    if missing:
        raise ValueError(f"run result variable {name!r} lacks dimension(s) {missing}")
    if bool((counts < 0).any()):
        raise ValueError(f"run result variable {name!r} has negative event counts")
    return counts.astype(float)


def ledger(result: xr.Dataset, energy_model: EnergyModel | None = None,
           conditions: PulseConditions | None = None) -> xr.Dataset:
    """Training energy of one run (J): counted events times energy per event, per epoch and cumulative.

    * programming: ``pulses(epoch, layer, polarity) * E_pulse(polarity, component)``;
    * reads: ``reads(epoch, layer) * layer_devices * n_ref * V_read^2 G t_read`` for the training forward and
      backward MVMs and the evaluation MVMs (``eval_reads``, if counted); n_ref = 2 for symmetry-point
      shifting (the reference array is read with every device), else 1;
    * digital: ``digital_macs(epoch, layer) * (E_mac + accesses * E_memory)``.

    ``conditions`` default to the device provenance in ``result.attrs`` (see ``conditions_from_attrs``). The
    floating-point reference (``algorithm`` fp) runs on no device: its analog terms are zero by definition.
    """
    model = energy_model or EnergyModel()
    pulses = _counts(result, "pulses", ("epoch", "layer", "polarity"))
    forward = _counts(result, "forward_reads", ("epoch", "layer"))
    backward = _counts(result, "backward_reads", ("epoch", "layer"))
    evaluation = _counts(result, "eval_reads", ("epoch", "layer")) if "eval_reads" in result else 0.0 * forward
    macs = _counts(result, "digital_macs", ("epoch", "layer"))
    devices_per_layer = _counts(result, "layer_devices", ("layer",))
    algorithm = str(_parse(result.attrs.get("algorithm", "")))
    if algorithm == "fp":
        if float(pulses.sum()) > 0:
            raise ValueError(f"run {result.attrs.get('config_hash', '?')}: an fp run with device pulses")
        conditions = None
    elif conditions is None:
        conditions = conditions_from_attrs(result.attrs, origin=f"run {result.attrs.get('config_hash', '?')}")
    if conditions is not None:
        table = pulse_energy_table(conditions, model)
        per_read = float(model.read.energy(conditions.conductance_S))
    else:
        table = xr.DataArray(np.zeros((len(POLARITIES), len(TABLE_COMPONENTS))), dims=("polarity", "component"),
                             coords={"polarity": list(POLARITIES), "component": list(TABLE_COMPONENTS)})
        per_read = 0.0
    per_pulse = model.components(table)
    reference_factor = 2.0 if algorithm == "sps" else 1.0
    read_scale = devices_per_layer * reference_factor * per_read

    program_events = pulses * per_pulse
    program = program_events.sum(("layer", "polarity"))
    terms = xr.concat(
        [program.sel(component=c, drop=True) for c in COMPONENTS]
        + [(forward * read_scale).sum("layer"), (backward * read_scale).sum("layer"),
           (evaluation * read_scale).sum("layer"),
           (macs * model.digital.energy_per_op()).sum("layer")],
        dim=xr.DataArray(list(TERMS), dims="term", name="term"),
    ).transpose("epoch", "term")
    total = terms.sum("term")
    out = xr.Dataset(
        {
            "energy_per_pulse": per_pulse,
            "energy_per_pulse_estimates": table.rename(component="estimate"),
            "energy_read_per_device": xr.DataArray(per_read),
            "energy_per_digital_op": xr.DataArray(model.digital.energy_per_op()),
            "energy_program": program_events.transpose("epoch", "layer", "polarity", "component"),
            "energy_term": terms,
            "energy_epoch": total,
            "energy_cumulative": total.cumsum("epoch"),
            "energy_cumulative_term": terms.cumsum("epoch"),
            "programming_energy_cumulative": program.sum("component").cumsum("epoch"),
        }
    )
    for name in out.data_vars:
        out[name].attrs["units"] = "J"
    out["energy_per_pulse_estimates"].attrs["description"] = "per pulse, both leakage models (ledger uses one)"
    out["energy_program"].attrs["description"] = "pulses(epoch, layer, polarity) x energy_per_pulse"
    out["energy_term"].attrs["description"] = "energy per epoch and ledger term"
    out["programming_energy_cumulative"].attrs["description"] = (
        "device programming pulses only (the paper's training energy); energy_cumulative adds reads and digital work")
    out.attrs = provenance_attrs_for(model, conditions, result)
    return out


def provenance_attrs_for(model: EnergyModel, conditions: PulseConditions | None, result: xr.Dataset) -> dict:
    """Attributes of a ledger: energy model, conditions, the run it accounts for, versions."""
    return provenance.provenance_attrs(
        energy_model=repr(model),
        energy_model_config=provenance.config_dict(model),
        conditions=provenance.config_dict(conditions) if conditions is not None else "none (fp runs on no device)",
        run_config_hash=str(result.attrs.get("config_hash", "")),
        algorithm=str(_parse(result.attrs.get("algorithm", ""))),
        data_kind=str(device_facts(result.attrs).get("data_kind", "none")),
        units="J",
    )

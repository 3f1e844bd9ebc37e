"""``ferrolib energy``: per-pulse energy of a measured device, or the energy ledger of a finished run.

    ferrolib energy --device ID170ZR5000 --pulse-width 20e-9 [--amplitude-rule per_polarity] [--json]
    ferrolib energy results/runs/<hash>.nc [--leakage conductance] [--json]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ferrolib import energy, provenance


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "energy", help="per-pulse energy of a device, or the energy ledger of a run result",
        description="Per-pulse energy components (both polarities) of a measured device at a pulse width, "
                    "or the ledger (counted events x energy per event) of a finished training run.")
    parser.add_argument("result", nargs="?", help="a run result file (.nc) to account for")
    parser.add_argument("--device", help="device id, e.g. ID170ZR5000 (with --pulse-width)")
    parser.add_argument("--pulse-width", type=float, help="pulse width in seconds, e.g. 20e-9")
    parser.add_argument("--source", help="directory of *_Summary.dat measurements (default: the shipped ones)")
    parser.add_argument("--amplitude-rule", choices=("paper", "per_polarity"), default="paper")
    parser.add_argument("--leakage", choices=("schottky", "conductance"), default="schottky")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    model = energy.EnergyModel(amplitude_rule=args.amplitude_rule, leakage=args.leakage)
    if args.result and (args.device or args.pulse_width):
        raise ValueError("give either a result file or --device/--pulse-width, not both")
    if args.result:
        return _ledger(Path(args.result), model, args.json)
    if not (args.device and args.pulse_width):
        raise ValueError("give a result file, or both --device and --pulse-width")
    return _per_pulse(args.device, args.pulse_width, args.source, model, args.json)


def _per_pulse(device: str, width: float, source: str | None, model: energy.EnergyModel, as_json: bool) -> int:
    conditions = energy.conditions_for_device(device, width, source)
    table = energy.pulse_energy_table(conditions, model)
    chosen = model.pulse_energy(conditions).sum("component")
    if as_json:
        print(json.dumps({
            "conditions": provenance.config_dict(conditions), "energy_model": provenance.config_dict(model),
            "per_pulse_J": {p: {c: float(table.sel(polarity=p, component=c)) for c in table["component"].values}
                            for p in energy.POLARITIES},
            "total_J": {p: float(chosen.sel(polarity=p)) for p in energy.POLARITIES},
        }, indent=2))
        return 0
    print(f"{conditions.source}: area {conditions.area_m2 * 1e12:.4g} um^2, pulse width {width:g} s, "
          f"amplitude rule {model.amplitude_rule!r}")
    print(f"{'polarity':<9}{'V':>7}" + "".join(f"{c:>21}" for c in table["component"].values) + f"{'total':>13}")
    for p in energy.POLARITIES:
        cells = "".join(f"{float(table.sel(polarity=p, component=c)):>18.4g} J" for c in table["component"].values)
        print(f"{p:<9}{model.amplitude(conditions, p):>7.3f}{cells}{float(chosen.sel(polarity=p)):>11.4g} J")
    print(f"total = leakage_{model.leakage} + capacitive + switching; leakage_schottky is the published upper bound")
    return 0


def _ledger(path: Path, model: energy.EnergyModel, as_json: bool) -> int:
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such result file")
    try:
        result = provenance.read_netcdf(path)
    except Exception as error:  # noqa: BLE001 - h5py/xarray raise many types for truncated or garbage files
        raise ValueError(f"{path}: not a readable run result ({type(error).__name__})") from error
    ledger = energy.ledger(result, model)
    terms = {str(t): float(v) for t, v in zip(ledger["term"].values, ledger["energy_term"].sum("epoch").values)}
    total = float(ledger["energy_cumulative"].isel(epoch=-1))
    if as_json:
        print(json.dumps({"file": str(path), "energy_model": provenance.config_dict(model), "terms_J": terms,
                          "total_J": total,
                          "cumulative_J": [float(v) for v in ledger["energy_cumulative"].values]}, indent=2))
        return 0
    print(f"{path}: {ledger.attrs['algorithm'] or 'run'} {ledger.attrs['run_config_hash']}, "
          f"{ledger.sizes['epoch']} epochs, {model!r}")
    for term, value in terms.items():
        print(f"  {term:<20}{value:>12.4g} J  ({100 * value / total if total else 0:5.1f} %)")
    print(f"  {'total':<20}{total:>12.4g} J")
    return 0

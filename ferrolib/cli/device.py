"""``ferrolib device``: fit device models to measured ramps and calibrate the physics model.

    ferrolib device fit FILES... [--model piecewise|softbounds|powstep|all] [--json]
    ferrolib device fit --device ID170ZR5000 [--pulse-width 2e-8] [--source DIR] [--save data/devices] [--force]
    ferrolib device fit --committed [--save data/devices] [--force]     # refit every committed fit (ferrolib fits)
    ferrolib device calibrate [--device ID ...] [--output data/physics_calibration.json] [--force]

``--save`` writes a fit only where the file there is not the same fit (same measurement, every parameter within
``fitting.FIT_AGREEMENT``), so refitting on another host leaves the committed files untouched; ``--force``
writes anyway. ``calibrate`` does the same with ``physics.CALIBRATION_AGREEMENT``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .. import provenance
from ..catalog import fitted_device_path, refit_committed, save_fit
from ..devices import MODEL_KINDS


_COLUMNS = ("device_id", "pulse_width_s", "model", "dw_min", "step_up_at_0", "step_down_at_0", "w_min", "w_max",
            "sp_analytic", "sp_protocol_from_zero", "sp_analytic_from_bottom", "sp_protocol", "n_stable_roots",
            "measured_low", "measured_high", "r2_up", "r2_down", "n_states")


def _table(rows: list[dict]) -> str:
    def cell(value) -> str:
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    cells = [[cell(row[c]) for c in _COLUMNS] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(_COLUMNS)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(_COLUMNS, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    lines += [f"flag: {row['device_id']} {row['pulse_width_s']:g} s {row['model']} has {row['n_stable_roots']} stable "
              "roots of dw_up - dw_down: its symmetry point depends on the start (sp_analytic vs "
              "sp_analytic_from_bottom)" for row in rows if row["n_stable_roots"] > 1]
    lines += ["measured_low/high: the states where both steps come from the measured ramps; beyond them the model "
              "runs on the node floor or the polynomial held constant"]
    return "\n".join(lines)


def _fit(args: argparse.Namespace) -> int:
    from .. import fitting, measurements

    if (bool(args.files) + bool(args.device) + args.committed) != 1:
        raise ValueError("give one of measurement FILES, --device or --committed")
    if args.save:
        _check_folder(Path(args.save))
    if args.committed:
        report_refits(args.save, args.source, args.force)
        return 0
    if args.device:
        datasets = measurements.load_measurements(args.device, args.pulse_width, args.source)
    else:
        missing = [f for f in args.files if not Path(f).is_file()]
        if missing:
            raise FileNotFoundError(f"no such measurement file: {', '.join(missing)}")
        datasets = [measurements.read_summary(f) for f in args.files]
    models = MODEL_KINDS if args.model == "all" else (args.model,)
    jobs = [(ds, model) for ds in datasets for model in models]
    targets = [fitted_device_path(ds.attrs["device_id"], ds.attrs["pulse_width_s"], model, args.save)
               for ds, model in jobs] if args.save else []  # ids checked before any fit
    if args.save:
        provenance.check_writable_dir(Path(args.save), "--save")
    for target in targets:
        if target.is_dir():
            raise ValueError(f"--save {args.save}: {target.name} is a directory, where the fit would be written")
    fits = [fitting.fit_ramp(ds, model) for ds, model in jobs]
    rows = [fitted.summary() for fitted in fits]
    print(json.dumps(rows, indent=2) if args.json else _table(rows))
    for fitted, target in zip(fits, targets):
        path, status = save_fit(fitted, target.parent, args.force)
        print(f"{path}: {status}", file=sys.stderr)
    return 0


def _check_folder(folder: Path) -> None:
    """Raise ValueError unless ``folder`` is a directory or can be created as one (no file in the way)."""
    for part in (folder, *folder.parents):
        if part.exists():
            if not part.is_dir():
                what = "exists and is not a directory" if part == folder else f"lies under the file {part}"
                raise ValueError(f"--save {folder}: {what}; give a folder for the .nc files")
            return


def report_refits(save: str | Path | None, source: str | Path | None, force: bool) -> None:
    """Refit every committed fit (in ``save``, writing only what changed, or in ``data/devices`` without writing
    when ``save`` is None) and print one line per file."""
    for row in refit_committed(save, source, force, write=bool(save)):
        print(f"{row['file']}: largest difference {row['largest_difference']:.2g} of scale ({row['parameter']}); "
              f"{row['status']}")


def _calibrate(args: argparse.Namespace) -> int:
    report_calibration(args.device, args.source, args.output, args.force)
    return 0


def report_calibration(devices: list[str] | None, source: str | Path | None, output: str | Path | None,
                       force: bool) -> None:
    """Calibrate the physics model of ``devices`` (default the main devices), refresh the calibration file
    (``output``, default ``data/physics_calibration.json``) and print one line per device and the file's status."""
    from .. import measurements, physics

    calibrations = [physics.calibrate_device(d, source) for d in devices or measurements.MAIN_DEVICES]
    path, status = physics.refresh_calibrations(calibrations, output, force)
    for c in calibrations:
        worst = max(max(f["rms_residual_up"], f["rms_residual_down"]) for f in c.files)
        print(f"{c.model.device_id}: up V_a={c.model.up.v_a:.2f} V log10 tau0={c.model.up.log10_tau0:.2f}; "
              f"down V_a={c.model.down.v_a:.2f} V log10 tau0={c.model.down.log10_tau0:.2f}; "
              f"worst rms residual {worst:.3f} of the G range")
    print(f"{path}: {status}")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("device", help="fit device models to measured ramps; calibrate the physics model")
    commands = parser.add_subparsers(dest="device_command", required=True)

    fit = commands.add_parser("fit", help="fit a device model to measurement files or to a device's measurements")
    fit.add_argument("files", nargs="*", help="*_Summary.dat measurement files")
    fit.add_argument("--device", help="fit every measurement of this device id (resolved through the sources)")
    fit.add_argument("--pulse-width", type=float, default=None, help="with --device: only this pulse width (s)")
    fit.add_argument("--source", default=None, help="directory of measurement files (default: the shared set)")
    fit.add_argument("--model", default="piecewise", choices=(*MODEL_KINDS, "all"))
    fit.add_argument("--json", action="store_true", help="print JSON instead of a table")
    fit.add_argument("--committed", action="store_true",
                     help="refit every committed fit (data/devices, or --save DIR) from its measurement")
    fit.add_argument("--save", default=None, help="also write each fit as <DIR>/<device>_<width>_<model>.nc, unless "
                                                  "the file there is the same fit within fitting.FIT_AGREEMENT")
    fit.add_argument("--force", action="store_true", help="with --save: write even where the same fit is there")
    fit.set_defaults(func=_fit)

    calibrate = commands.add_parser("calibrate", help="calibrate the NLS physics model per device")
    calibrate.add_argument("--device", action="append", help="device id (repeatable; default: the main devices)")
    calibrate.add_argument("--source", default=None, help="directory of measurement files")
    calibrate.add_argument("--output", default=None, help="JSON file (default data/physics_calibration.json)")
    calibrate.add_argument("--force", action="store_true",
                           help="write even where the file holds the same calibration within tolerance")
    calibrate.set_defaults(func=_calibrate)

#!/usr/bin/env python3
"""Cross-check ferrolib against aihwkit 1.2 on the same exported devices, data split, initial weights and sample
order. Run by ``make crosscheck`` with the cross-check environment (ferrolib + aihwkit).

Every run is cached (ferrolib: its result file; aihwkit: one JSON per run), so an interrupted cross-check resumes
where it stopped and a reduced grid (``--seeds``, ``--widths``, ``--algos``, ``--epochs``) can be extended later.
Two configurations (``--profile``): ``ideal`` (perfect reads, analog bias, one tile per layer, ferrolib's
``ideal`` profile against ``aihwkit_peer``) writes ``data/crosscheck/{accuracy,pulses,responses,verdicts}.csv`` +
``meta.json`` and ``figures/crosscheck_*.png``; ``paper`` (the paper's aihwkit configuration: default IO both ways,
digital bias, tiles of at most 512 inputs, deterministic-implicit mixed precision, SP shifting from the alternating
train; ferrolib's ``paper`` profile against ``paper_peer``) writes the same under ``data/crosscheck/paper/`` and
``figures/crosscheck_paper_*.png``; ``paper-transfer`` runs the transfer rules (ttv2, cttv2, agad, as aihwkit's
``build_config`` builds them) in the paper's configuration, accuracy only, into ``data/crosscheck/paper-transfer/``.
ferrolib's epochs come from the profile's committed summary where it holds the same run (``--summary``;
``data/results/transfer-headline.nc`` for the transfer rules).
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import sys
from pathlib import Path

import ferrolib  # noqa: F401 - before torch: sets its thread environment (ferrolib/threads.py)
import numpy as np
import pandas as pd
import torch
import xarray as xr

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "crosscheck"))

import aihwkit_peer  # noqa: E402
import paper_peer  # noqa: E402

from ferrolib import parity, provenance  # noqa: E402
from ferrolib.aihwkit_export import to_aihwkit  # noqa: E402
from ferrolib.catalog import get_device  # noqa: E402
from ferrolib.training.config import TrainConfig  # noqa: E402
from ferrolib.training.data import load_data  # noqa: E402
from ferrolib.training.keys import expected_key  # noqa: E402
from ferrolib.training.profiles import config_from_profile  # noqa: E402
from ferrolib.training.loop import train  # noqa: E402
from ferrolib.training.transfer import BUILD_CONFIG_DESIRED_BL, TRANSFER_ALGORITHMS  # noqa: E402
from ferrolib.units import format_pulse_width  # noqa: E402

DEVICE_ID = "ID170ZR5000"
WIDTHS = (2e-8, 2e-7, 2e-6, 2e-5, 2e-4)
PAPER_RULES = ("fp", "sgd", "mp", "sps")
SUMMARIES = {"paper-transfer": "transfer-headline.nc"}
"""The committed summary holding a record's ferrolib runs where it is not the profile's (``<profile>.nc``)."""
RECORD_GRIDS = {"paper-transfer": (TRANSFER_ALGORITHMS, (2e-8, 2e-4))}
"""Rules and widths of a record where they are not ``PAPER_RULES`` at every width of ``WIDTHS``: the transfer rules
at the shortest and the longest width (their aihwkit compounds take about 20 CPU-s per epoch)."""
TRAINS = {"up": [1] * 60, "down": [-1] * 60, "alternating": [1, -1] * 30}
"""Single-device pulse trains of the response check (60 pulses each, from w = 0)."""


PAPER_MP_TRANSFER = "deterministic_implicit"
"""ferrolib's mixed-precision transfer in the paper cross-check: aihwkit 1.2's CPU schedule (a transfer after the
first sample of every mini-batch but the first), the schedule of the peer; the ``paper`` profile's own is the CUDA
schedule the paper ran (``deterministic_implicit_cuda``), compared beside it."""


def run_config(profile: str, algo: str, pulse_width: float, seed: int, epochs: int) -> TrainConfig:
    """ferrolib's configuration of one cross-check run: ``TrainConfig.ideal`` or the ``paper`` profile (mp with
    ``PAPER_MP_TRANSFER``, the schedule aihwkit 1.2 runs on the CPU)."""
    if profile == "ideal":
        return TrainConfig.ideal(algo, pulse_width=pulse_width, seed=seed, epochs=epochs, device_id=DEVICE_ID,
                                 snapshot_epochs=())
    overrides = {"mp_transfer": PAPER_MP_TRANSFER} if algo == "mp" else {}
    if algo in TRANSFER_ALGORITHMS:
        overrides = {"desired_bl": BUILD_CONFIG_DESIRED_BL}
    return config_from_profile("paper", algo, pulse_width=pulse_width, seed=seed, epochs=epochs, device_id=DEVICE_ID,
                               snapshot_epochs=(), **overrides)


def exported_device(pulse_width: float, profile: str = "ideal") -> dict:
    """aihwkit parameters of the profile's fitted piecewise device (ferrolib's fit, or the paper's recipe), the MP
    granularity (ferrolib's eps, the mean step at w = 0), the symmetry point the ideal sps programs, the model."""
    device = get_device(DEVICE_ID, pulse_width, "piecewise" if profile == "ideal" else "paper_piecewise")
    up, down = device.steps_at_zero
    return {"pulse_width": pulse_width, "params": to_aihwkit(device), "granularity": (abs(up) + abs(down)) / 2,
            "symmetry_point": device.symmetry_point, "fitted": device}


def ferrolib_run(algo: str, pulse_width: float, seed: int, epochs: int, out: Path, summary=None,
                 profile: str = "ideal") -> dict:
    """ferrolib's history of the first ``epochs`` epochs: read from the profile's summary when it holds this
    run under the current run key (its lr is halved every 10 epochs, and the sample order and pulse keys do not
    depend on the total number of epochs, so its first epochs are those of a shorter run; verified bit for bit
    on the 3-epoch runs), otherwise trained (cached under ``out``)."""
    reused = from_summary(summary, algo, pulse_width, seed, epochs, profile)
    if reused is not None:
        return reused
    config = run_config(profile, algo, pulse_width, seed, epochs)
    result = train(config, out / "ferrolib", progress=False)
    pulses = result["pulses"].values if "pulses" in result else np.zeros((epochs, 0, 2))
    return {"val_acc": [float(v) for v in result["val_acc"].values], "pulses": pulses.tolist()}


def from_summary(summary, algo: str, pulse_width: float, seed: int, epochs: int,
                 profile: str = "ideal") -> dict | None:
    """The run's first ``epochs`` epochs from the profile's summary (``data/results/ideal.nc``, ``paper.nc``), or
    None when the summary lacks it, is shorter or was trained under another run key (configuration, device, data,
    numerics)."""
    if summary is None or algo not in summary.algorithm or pulse_width not in summary.pulse_width \
            or seed not in summary.seed or summary.sizes["epoch"] < epochs:
        return None
    run = summary.sel(device=DEVICE_ID, algorithm=algo, pulse_width=pulse_width, seed=seed)
    config = dataclasses.replace(run_config(profile, algo, pulse_width, seed, summary.sizes["epoch"]),
                                 snapshot_epochs=TrainConfig.snapshot_epochs)
    if provenance.key_mismatch(json.loads(str(run.run_key.values)), expected_key(config)):
        return None
    return {"val_acc": [float(v) for v in run.val_acc.values[:epochs]], "pulses": run.pulses.values[:epochs].tolist(),
            "source": "summary"}


def aihwkit_path(out: Path, algo: str, pulse_width: float, seed: int, epochs: int, profile: str = "ideal") -> Path:
    """The cache file of one aihwkit run."""
    folder = "aihwkit" if profile == "ideal" else f"aihwkit-{profile}"
    return out / folder / f"{algo}_{pulse_width:g}_seed{seed}_epochs{epochs}.json"


def cached(path: Path, compute) -> dict:
    """The JSON at ``path``, or ``compute()`` written there atomically (an interrupted cross-check resumes)."""
    if path.exists():
        return json.loads(path.read_text())
    result = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(path)
    return result


def aihwkit_run(algo: str, device: dict, seed: int, epochs: int, data, out: Path, profile: str = "ideal") -> dict:
    """One aihwkit run (cached): ``aihwkit_peer`` in the ideal configuration, ``paper_peer`` in the paper's."""
    path = aihwkit_path(out, algo, device["pulse_width"], seed, epochs, profile)
    if profile == "ideal":
        return cached(path, lambda: aihwkit_peer.train(algo, device, data, seed, epochs))
    config = run_config(profile, algo, device["pulse_width"], seed, epochs)
    return cached(path, lambda: paper_peer.train(config, device["fitted"], data, epochs))


def responses(device: dict) -> list[dict]:
    """State after every pulse of up, down and alternating trains from 0, in both simulators."""
    nominal = device["fitted"].config.devices()
    rows = []
    for name, directions in TRAINS.items():
        theirs = aihwkit_peer.pulse_response(device["params"], directions, 0.0)
        w, ours = torch.tensor(0.0, dtype=torch.float64), []
        for direction in directions:
            w = nominal.pulse(w, torch.tensor(float(direction)))
            ours.append(float(w))
        for index, (a, b) in enumerate(zip(ours, theirs)):
            rows.append({"pulse_width": device["pulse_width"], "train": name, "pulse": index + 1, "ferrolib": a,
                         "aihwkit": b})
    return rows


ACCURACY_TOLERANCE = 0.03
"""An epoch's mean accuracies are ``within`` when they differ by at most aihwkit's seed range or this."""
PULSE_TOLERANCE = 0.10
"""Pulses per layer and polarity are within when ferrolib's total is within 10 % of aihwkit's."""


def inside(value, low, high):
    """``low <= value <= high`` (elementwise): aihwkit's mean inside ferrolib's seed range is seed variation, a
    difference ferrolib's own seeds show (aihwkit's unseeded pulse trains make its range no measure of it)."""
    return (value >= low) & (value <= high)


def summarise(runs: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-epoch accuracy (mean, min, max over seeds; ``within``: |difference of means| <= max(aihwkit's seed
    range, ``ACCURACY_TOLERANCE``); ``in_ferrolib_range``: aihwkit's mean inside ferrolib's seed range; ``agrees``:
    either) and pulses per layer and polarity (mean, min, max over seeds; ``ratio``: ferrolib / aihwkit of the
    means; ``agrees``: ratio within ``PULSE_TOLERANCE`` or aihwkit's mean inside ferrolib's seed range) in the
    first epoch and over the run."""
    accuracy, pulses = [], []
    for run in runs:
        for epoch, value in enumerate(run["val_acc"], start=1):
            accuracy.append({**run["key"], "epoch": epoch, "val_acc": value})
        for epoch, layers in enumerate(run["pulses"], start=1):
            for layer, (up, down) in enumerate(layers):
                pulses.append({**run["key"], "epoch": epoch, "layer": f"fc{layer + 1}", "up": up, "down": down})
    keys = ["algorithm", "pulse_width", "simulator", "epoch"]
    acc = pd.DataFrame(accuracy).groupby(keys)["val_acc"].agg(["mean", "min", "max", "count"]).reset_index()
    wide = acc.pivot_table(index=["algorithm", "pulse_width", "epoch"], columns="simulator",
                           values=["mean", "min", "max", "count"])
    wide.columns = [f"{sim}_{stat}" for stat, sim in wide.columns]
    wide = wide.reset_index()
    if {"ferrolib_mean", "aihwkit_mean"} <= set(wide.columns):
        spread = (wide["aihwkit_max"] - wide["aihwkit_min"]).clip(lower=ACCURACY_TOLERANCE)
        wide["within"] = (wide["ferrolib_mean"] - wide["aihwkit_mean"]).abs() <= spread
        wide["in_ferrolib_range"] = inside(wide["aihwkit_mean"], wide["ferrolib_min"], wide["ferrolib_max"])
        wide["agrees"] = wide["within"] | wide["in_ferrolib_range"]
    total = pd.DataFrame(pulses)
    if not total.empty:
        total = total[total.algorithm != "fp"]  # fp programs no devices
        spans = [total[total.epoch == 1].assign(span="epoch 1"), total.assign(span="run")]
        keys = ["algorithm", "pulse_width", "span", "simulator", "layer"]
        per_seed = pd.concat(spans).groupby(keys + ["seed"])[["up", "down"]].sum().groupby(keys)
        total = pd.concat([per_seed.mean(), per_seed.min().add_suffix("_min"), per_seed.max().add_suffix("_max")],
                          axis=1).reset_index()
        total = total.pivot_table(index=["algorithm", "pulse_width", "span", "layer"], columns="simulator",
                                  values=[c for c in total.columns if c.startswith(("up", "down"))])
        total.columns = [f"{sim}_{polarity}" for polarity, sim in total.columns]
        total = total.reset_index()
        if {"ferrolib_up", "aihwkit_up"} <= set(total.columns):
            for polarity in ("up", "down"):
                ratio = total[f"ferrolib_{polarity}"] / total[f"aihwkit_{polarity}"]
                total[f"ratio_{polarity}"] = ratio
                total[f"agrees_{polarity}"] = ((ratio - 1).abs() <= PULSE_TOLERANCE) | inside(
                    total[f"aihwkit_{polarity}"], total[f"ferrolib_{polarity}_min"], total[f"ferrolib_{polarity}_max"])
    return wide, total


def verdicts(accuracy: pd.DataFrame, pulses: pd.DataFrame) -> pd.DataFrame:
    """One row per (algorithm, pulse width): how many epochs' mean accuracies are ``within`` and
    how many ``agree`` (within, or aihwkit's mean inside ferrolib's seed range), the largest |difference of means|
    and the epoch it occurs at, the final epoch's means, and over the first epoch (same start) and over the run:
    the range of the pulse ratios (ferrolib / aihwkit over layers and polarities), whether all lie within
    ``PULSE_TOLERANCE``, whether all agree (within, or inside ferrolib's seed range) and the ones that do not
    (``pulses_disagree_*``: "layer polarity ratio", ";"-separated)."""
    rows = []
    for (algo, width), part in accuracy.groupby(["algorithm", "pulse_width"]):
        difference = (part["ferrolib_mean"] - part["aihwkit_mean"]).abs()
        last = part.loc[part.epoch.idxmax()]
        row = {"algorithm": algo, "pulse_width": width, "epochs": int(part.epoch.max()),
               "seeds": int(min(part["ferrolib_count"].min(), part["aihwkit_count"].min())),
               "epochs_within": int(part["within"].sum()), "epochs_agree": int(part["agrees"].sum()),
               "accuracy_within": bool(part["within"].all()), "accuracy_agrees": bool(part["agrees"].all()),
               "max_difference": float(difference.max()), "at_epoch": int(part.epoch[difference.idxmax()]),
               "ferrolib_final": float(last["ferrolib_mean"]), "aihwkit_final": float(last["aihwkit_mean"])}
        counted = pulses[(pulses.algorithm == algo) & (pulses.pulse_width == width)] if len(pulses) else pulses
        for span, label in (("epoch 1", "epoch1"), ("run", "run")):
            part_pulses = counted[counted.span == span] if len(counted) else counted
            if len(part_pulses) and {"ratio_up", "ratio_down"} <= set(part_pulses.columns):
                ratios = np.concatenate([part_pulses.ratio_up.values, part_pulses.ratio_down.values])
                disagree = [f"{layer} {polarity} {ratio:.2f}" for polarity in ("up", "down")
                            for layer, ratio, agrees in zip(part_pulses.layer, part_pulses[f"ratio_{polarity}"],
                                                            part_pulses[f"agrees_{polarity}"]) if not agrees]
                row.update({f"pulse_ratio_{label}_min": float(np.min(ratios)),
                            f"pulse_ratio_{label}_max": float(np.max(ratios)),
                            f"pulses_within_{label}": bool(np.all(np.abs(ratios - 1) <= PULSE_TOLERANCE)),
                            f"pulses_agree_{label}": not disagree, f"pulses_disagree_{label}": "; ".join(disagree)})
        rows.append(row)
    return pd.DataFrame(rows)


def figures(accuracy: pd.DataFrame, response: pd.DataFrame, figures_dir: Path, stamp: str,
            prefix: str = "crosscheck") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ferrolib import plotting

    fig = plotting.simulator_accuracy_grid(
        accuracy, f"ferrolib vs aihwkit, {DEVICE_ID} (mean and seed range) - {stamp}")
    fig.savefig(figures_dir / f"{prefix}_accuracy.png", dpi=110)
    plt.close(fig)
    if response.empty:
        return
    trains = list(TRAINS)
    widths = sorted(response["pulse_width"].unique())
    fig, axes = plt.subplots(len(trains), len(widths), figsize=(3 * len(widths), 2.2 * len(trains)), squeeze=False,
                             sharey=True)
    for row, name in enumerate(trains):
        for col, width in enumerate(widths):
            part = response[(response.train == name) & (response.pulse_width == width)]
            ax = axes[row, col]
            ax.plot(part.pulse, part.ferrolib, "C0-", label="ferrolib")
            ax.plot(part.pulse, part.aihwkit, "C3.", ms=3, label="aihwkit")
            ax.set_title(f"{name}, {format_pulse_width(width)}", fontsize=9)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(f"single-device pulse responses from w = 0 - {stamp}", fontsize=10)
    fig.tight_layout()
    fig.savefig(figures_dir / f"{prefix}_responses.png", dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="ideal", choices=parity.CROSSCHECK_PROFILES,
                        help="ideal: perfect reads, analog bias, one tile; paper: the paper's aihwkit configuration; "
                             "paper-transfer: the transfer rules in it")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument("--widths", default=None, help="pulse widths (s); default: the record's")
    parser.add_argument("--algos", default=None, help="default: the record's rules")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "crosscheck", help="run cache")
    parser.add_argument("--table", type=Path, default=None,
                        help="default: the profile's recorded tables (ferrolib.parity.crosscheck_dir)")
    parser.add_argument("--figures", type=Path, default=ROOT / "figures")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--summary", type=Path, default=None,
                        help="summary whose runs (same run key) supply ferrolib's epochs (default "
                             "data/results/<profile>.nc)")
    parser.add_argument("--cached-only", action="store_true",
                        help="compare only the cells whose aihwkit run is cached (the rest are listed as missing)")
    parser.add_argument("--simulators", default="ferrolib,aihwkit",
                        help="which simulators to run (aihwkit alone fills the run cache in the background)")
    args = parser.parse_args(argv)
    record, profile = args.profile, parity.CROSSCHECK_CONFIGURATIONS[args.profile]
    default_algos, default_widths = RECORD_GRIDS.get(record, (PAPER_RULES, WIDTHS))
    seeds = [int(s) for s in args.seeds.split(",") if s]
    widths = [float(w) for w in args.widths.split(",") if w] if args.widths else list(default_widths)
    algos = [a for a in args.algos.split(",") if a] if args.algos else list(default_algos)
    simulators = [s for s in args.simulators.split(",") if s]
    known = set(aihwkit_peer.LR) | (set(TRANSFER_ALGORITHMS) if profile == "paper" else set())
    unknown = sorted(set(algos) - known) + sorted(set(simulators) - {"ferrolib", "aihwkit"})
    if unknown or not seeds or not widths or not simulators or args.epochs < 1:
        parser.error(f"need known algorithms and simulators (got unknown {unknown}), seeds, widths and epochs >= 1")
    torch.set_num_threads(args.threads)
    table = args.table or parity.crosscheck_dir(record)
    summary_path = args.summary or ROOT / "data" / "results" / SUMMARIES.get(record, f"{profile}.nc")
    devices = {w: exported_device(w, profile) for w in widths}
    data = load_data(run_config(profile, "fp", widths[0], seeds[0], args.epochs))
    summary = xr.open_dataset(summary_path) if summary_path.exists() else None
    runs, missing, ferrolib_sources = [], [], []
    for seed in seeds:
        for width in widths:
            for algo in algos:
                if args.cached_only and not aihwkit_path(args.work, algo, width, seed, args.epochs, profile).exists():
                    missing.append({"algorithm": algo, "pulse_width": width, "seed": seed})
                    continue
                for simulator in simulators:
                    if simulator == "ferrolib":
                        history = ferrolib_run(algo, width, seed, args.epochs, args.work, summary, profile)
                        ferrolib_sources.append(history.get("source", "trained"))
                    else:
                        history = aihwkit_run(algo, devices[width], seed, args.epochs, data, args.work, profile)
                    key = {"algorithm": algo, "pulse_width": width, "simulator": simulator, "seed": seed}
                    runs.append({"key": key, **history})
                    print(json.dumps({**key, "val_acc": [round(v, 4) for v in history["val_acc"]]}), flush=True)
    response = pd.DataFrame([row for w in widths for row in responses(devices[w])])
    accuracy, pulses = summarise(runs)
    stamp = f"aihwkit {aihwkit_peer.version()}, {datetime.date.today().isoformat()}"
    table.mkdir(parents=True, exist_ok=True)
    args.figures.mkdir(parents=True, exist_ok=True)
    accuracy.to_csv(table / "accuracy.csv", index=False, float_format="%.6g")
    pulses.to_csv(table / "pulses.csv", index=False, float_format="%.6g")
    if "within" in accuracy:
        verdicts(accuracy, pulses).to_csv(table / "verdicts.csv", index=False, float_format="%.4g")
    response.to_csv(table / "responses.csv", index=False, float_format="%.6g")
    meta = {"aihwkit": aihwkit_peer.version(), "date": datetime.date.today().isoformat(), "profile": profile,
            "record": record,
            "device": DEVICE_ID,
            "seeds": seeds, "widths": widths, "algorithms": algos, "epochs": args.epochs, "missing": missing,
            "ferrolib_runs": {source: ferrolib_sources.count(source) for source in sorted(set(ferrolib_sources))},
            "max_response_difference": float((response.ferrolib - response.aihwkit).abs().max())}
    (table / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    figures(accuracy, response, args.figures, stamp,
            "crosscheck" if record == "ideal" else f"crosscheck_{record.replace('-', '_')}")
    print(json.dumps(meta))


if __name__ == "__main__":
    main()

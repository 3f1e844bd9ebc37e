#!/usr/bin/env python3
"""Side-by-side probe of what each simulator's tiles receive, to tell a pulse-count difference of rule from one of
trajectory. Run in the cross-check environment (``--simulators aihwkit`` needs aihwkit).

For one algorithm, pulse width and seed, ferrolib trains as ``ferrolib.training.loop.train`` does (same network,
sample order and lr schedule, so its counted pulses equal the committed summary's run, checked) while a
``aihwkit_peer.PulseEstimate`` on each of its layers applies aihwkit's rules to ferrolib's own x and d; the aihwkit
run records its expected pulses and mean |x|, |d| the same way. Per layer and polarity, over the run:

    counted / estimate, both from ferrolib's x and d      ->  the rule (1 when both apply the same rule)
    estimate on ferrolib's x, d / aihwkit's on its own     ->  the trajectory (the x and d received differ)

and their product is the cross-check's pulse ratio. The expected count of a coincidence scales with
``lr |x| |d| / granularity``, so a trajectory ratio that follows the ratio of mean |d| is the network's state, not
the update rule. Writes ``data/crosscheck/probe.csv``; every run is cached under ``build/crosscheck/probe/``.
"""
from __future__ import annotations

import argparse
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
import run_crosscheck  # noqa: E402

from ferrolib.threads import set_threads  # noqa: E402
from ferrolib.training.config import TrainConfig, validate  # noqa: E402
from ferrolib.training.data import load_data  # noqa: E402
from ferrolib.training.loop import _lr, _Stream, build_network  # noqa: E402


def ferrolib_probe(config: TrainConfig, device: dict) -> dict:
    """ferrolib's run of ``config`` (the loop of ``train``) with aihwkit's expected pulses on its own x and d
    (``device``: ``run_crosscheck.exported_device``): per epoch the validation accuracy, counted pulses, estimated
    pulses and mean |x|, |d| per layer."""
    algo, data = config.algorithm, load_data(config)
    network, _ = build_network(config, validate(config), data.train_x.shape[1])
    estimates = []
    for layer in network.layers:
        estimate = aihwkit_peer.PulseEstimate(algo, device, tuple(layer.tile.shape))
        layer.update = _observed(layer.update, estimate)
        estimates.append(estimate)
    stream = _Stream(len(data.train_y), config.seed)
    history = {"val_acc": [], "counted": [], "pulses": [], "mean_abs_x": [], "mean_abs_d": []}
    step = 0
    for epoch in range(1, config.epochs + 1):
        lr = _lr(config, epoch)
        before = [e.totals() for e in estimates]
        counted = [(int(layer.tile.count_up.sum()), int(layer.tile.count_down.sum())) for layer in network.layers]
        remaining = config.samples_per_epoch or len(data.train_y)
        while remaining > 0:
            index = stream.take(min(config.batch_size, remaining))
            remaining -= len(index)
            network.train_step(data.train_x[index], data.train_y[index], lr, step)
            step += 1
        aihwkit_peer.record_epoch(history, estimates, before)
        history["counted"].append([[int(layer.tile.count_up.sum()) - up, int(layer.tile.count_down.sum()) - down]
                                   for layer, (up, down) in zip(network.layers, counted)])
        predicted = network.predict(data.val_x, config.eval_batch_size)
        history["val_acc"].append(float((predicted == data.val_y).float().mean()))
    return history


def lockstep_errors(config: TrainConfig, device: dict, warmup: int) -> list[float]:
    """Per layer, the largest |d_aihwkit - d_ferrolib| / max |d_ferrolib| of the errors both simulators
    back-propagate on one mini-batch from the same weights: ferrolib's after ``warmup`` mini-batches of ``config``
    (ferrolib's effective weights programmed into aihwkit's layers), the next mini-batch of its sample order."""
    from aihwkit.optim import AnalogSGD

    data = load_data(config)
    network, _ = build_network(config, validate(config), data.train_x.shape[1])
    stream = _Stream(len(data.train_y), config.seed)
    for step in range(warmup):
        index = stream.take(config.batch_size)
        network.train_step(data.train_x[index], data.train_y[index], config.lr, step)
    index = stream.take(config.batch_size)
    model, _ = aihwkit_peer.build(config.algorithm, device, [layer.weight() for layer in network.layers])
    theirs, ours = [], []
    for tile in (tile for layer in model.children() if hasattr(layer, "analog_tiles") for tile in layer.analog_tiles()):
        tile.update = _recorded(tile.update, theirs)
    for layer in network.layers:
        layer.update = _recorded(layer.update, ours)
    network.train_step(data.train_x[index], data.train_y[index], config.lr, warmup)
    optimizer = AnalogSGD(model.parameters(), lr=config.lr)
    optimizer.regroup_param_groups(model)
    torch.nn.NLLLoss()(model(data.train_x[index]), data.train_y[index]).backward()
    optimizer.step()
    return [float((a.double() - b).abs().max() / b.abs().max()) for a, b in zip(theirs, ours)]


def _recorded(update, errors: list):
    """``update`` that first appends its d (the layer's back-propagated error) to ``errors``."""
    def wrapped(x, d, *rest):
        errors.append(d.detach().clone())
        return update(x, d, *rest)
    return wrapped


def _observed(update, estimate):
    """``update`` that first shows the layer's x (bias column dropped) and d to ``estimate``."""
    def wrapped(x, d, lr, step):
        estimate.observe(x[:, :-1], d, lr)
        return update(x, d, lr, step)
    return wrapped


def probe_table(ferrolib_runs: dict, aihwkit_runs: dict) -> pd.DataFrame:
    """Per (algorithm, width, layer, polarity), summed over the run and averaged over the seeds each simulator ran:
    ferrolib's counted and estimated pulses, aihwkit's estimated pulses, the rule and trajectory ratios and the
    ratios of mean |x| and |d| (ferrolib / aihwkit). Runs are keyed by (algorithm, width, seed)."""
    rows = []
    for simulator, runs in (("ferrolib", ferrolib_runs), ("aihwkit", aihwkit_runs)):
        for (algo, width, seed), run in runs.items():
            counted = np.asarray(run.get("counted", run["pulses"]), dtype=float).sum(0)
            estimate = np.asarray(run["pulses"], dtype=float).sum(0)
            abs_x, abs_d = np.mean(run["mean_abs_x"], axis=0), np.mean(run["mean_abs_d"], axis=0)
            for layer in range(estimate.shape[0]):
                for polarity, name in enumerate(("up", "down")):
                    rows.append({"algorithm": algo, "pulse_width": width, "layer": f"fc{layer + 1}",
                                 "polarity": name, "simulator": simulator, "seed": seed,
                                 "counted": counted[layer, polarity], "estimate": estimate[layer, polarity],
                                 "mean_abs_x": abs_x[layer], "mean_abs_d": abs_d[layer]})
    frame = pd.DataFrame(rows).groupby(["algorithm", "pulse_width", "layer", "polarity", "simulator"]).agg(
        counted=("counted", "mean"), estimate=("estimate", "mean"), mean_abs_x=("mean_abs_x", "mean"),
        mean_abs_d=("mean_abs_d", "mean"), seeds=("seed", "count")).unstack("simulator")
    table = pd.DataFrame({
        "ferrolib_counted": frame["counted", "ferrolib"], "ferrolib_estimate": frame["estimate", "ferrolib"],
        "aihwkit_estimate": frame["estimate", "aihwkit"],
        "pulse_ratio": frame["counted", "ferrolib"] / frame["estimate", "aihwkit"],
        "rule_ratio": frame["counted", "ferrolib"] / frame["estimate", "ferrolib"],
        "trajectory_ratio": frame["estimate", "ferrolib"] / frame["estimate", "aihwkit"],
        "abs_x_ratio": frame["mean_abs_x", "ferrolib"] / frame["mean_abs_x", "aihwkit"],
        "abs_d_ratio": frame["mean_abs_d", "ferrolib"] / frame["mean_abs_d", "aihwkit"],
        "ferrolib_seeds": frame["seeds", "ferrolib"], "aihwkit_seeds": frame["seeds", "aihwkit"]})
    return table.reset_index()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", default="mp:2e-5,sgd:2e-5", help="comma-separated algorithm:pulse_width")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--simulators", default="ferrolib,aihwkit")
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "crosscheck" / "probe")
    parser.add_argument("--table", type=Path, default=ROOT / "data" / "crosscheck" / "probe.csv")
    parser.add_argument("--summary", type=Path, default=ROOT / "data" / "results" / "paper.nc")
    parser.add_argument("--lockstep", default="",
                        help="comma-separated warm-up mini-batches: instead of training, compare the errors both "
                             "simulators back-propagate from ferrolib's weights after each (needs aihwkit)")
    args = parser.parse_args(argv)
    try:
        cells = [(algo, float(width)) for algo, width in (cell.split(":") for cell in args.cells.split(","))]
    except ValueError:
        parser.error(f"--cells: expected algorithm:pulse_width pairs, got {args.cells!r}")
    if any(algo not in ("sgd", "sps", "mp") for algo, _ in cells) or args.epochs < 1:
        parser.error(f"--cells: only sgd, sps and mp program devices, and --epochs >= 1 (got {args.cells!r}, "
                     f"{args.epochs})")
    seeds = [int(s) for s in args.seeds.split(",") if s]
    set_threads(1)
    if args.lockstep:
        for algo, width in cells:
            for seed in seeds:
                config = TrainConfig.ideal(algo, pulse_width=width, seed=seed, device_id=run_crosscheck.DEVICE_ID)
                for warmup in (int(n) for n in args.lockstep.split(",")):
                    errors = lockstep_errors(config, run_crosscheck.exported_device(width), warmup)
                    print(f"{algo} {width:g} seed {seed} after {warmup} mini-batches: largest relative difference "
                          f"of d per layer {', '.join(f'{e:.2g}' for e in errors)}", flush=True)
        return
    summary = xr.open_dataset(args.summary) if args.summary.exists() else None
    runs: dict[str, dict] = {"ferrolib": {}, "aihwkit": {}}
    data = None
    for algo, width in cells:
        device = run_crosscheck.exported_device(width)
        for seed in seeds:
            name = f"{algo}_{width:g}_seed{seed}_epochs{args.epochs}.json"
            if "ferrolib" in args.simulators:
                config = TrainConfig.ideal(algo, pulse_width=width, seed=seed, epochs=args.epochs,
                                           device_id=run_crosscheck.DEVICE_ID, snapshot_epochs=())
                run = run_crosscheck.cached(args.work / f"ferrolib_{name}", lambda: ferrolib_probe(config, device))
                reference = run_crosscheck.from_summary(summary, algo, width, seed, args.epochs)
                if reference is not None and not np.array_equal(reference["pulses"], run["counted"]):
                    raise SystemExit(f"{name}: the probe's ferrolib pulses differ from the summary's run")
                runs["ferrolib"][algo, width, seed] = run
            if "aihwkit" in args.simulators:
                if data is None:
                    data = load_data(TrainConfig.ideal("fp", device_id=run_crosscheck.DEVICE_ID))
                runs["aihwkit"][algo, width, seed] = run_crosscheck.cached(
                    args.work / f"aihwkit_{name}", lambda: aihwkit_peer.train(algo, device, data, seed, args.epochs))
            print(name, flush=True)
    if runs["ferrolib"] and runs["aihwkit"]:
        table = probe_table(runs["ferrolib"], runs["aihwkit"])
        args.table.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.table, index=False, float_format="%.4g")
        print(table.to_string())


if __name__ == "__main__":
    main()

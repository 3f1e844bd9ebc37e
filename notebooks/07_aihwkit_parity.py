# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     notebook_metadata_filter: -jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 07 · Parity with aihwkit: the mixed-precision transfer
#
# The paper trained with IBM's aihwkit. Its `MixedPrecisionCompound` does not apply the requested
# `n = trunc(chi / eps)` pulses exactly: each row's transfer is one stochastic pulsed update of `n eps` with a
# one-hot `d`, update and BL management forced on (`src/rpucuda/rpu_mixedprec_device.cpp`, `forwardUpdate`). A
# device then receives a binomial count with mean `|n| eps / g` (g: aihwkit's weight granularity of the device,
# its `dw_min` times the middle up node) and at most BL = 31 pulses, and chi forgets whatever was not applied.
# aihwkit also transfers after the *first sample of the next* mini-batch (`doTransfer` tests the sample counter
# before advancing it), so its analog weights lag one mini-batch.
# ferrolib offers both: `mp_transfer="pulsed"` (aihwkit's, the ideal profile's default) and `"exact"`.
# This notebook trains both on the same device and seed, and shows the recorded cross-check against aihwkit
# itself (`make crosscheck`, table in `data/crosscheck/`).

# %% tags=["parameters"]
smoke: bool = False
output_dir: str = ""
results_dir: str = ""
summary_dir: str = ""
results_source: str = "auto"  # "runs": never render from the committed summary; "summary": never train
n_workers: int = 2

# %%
import dataclasses
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

from ferrolib import parity, paths, plotting, provenance, sourcedata, store, sweep

plotting.style()
profile = "smoke" if smoke else "ideal"
spec, options = sweep.load_sweep_config(sweep.resolve_sweep_config("mp-transfer"))
summary = sourcedata.summary_path(spec.name, summary_dir or None)
if smoke:  # the smoke profile's base, one width, 2 epochs; never the committed summary
    smoke_spec, _ = sweep.load_sweep_config(sweep.resolve_sweep_config("smoke"))
    spec = dataclasses.replace(spec, base=dataclasses.replace(smoke_spec.base, epochs=2),
                               pulse_widths=spec.pulse_widths[:1], name=f"{spec.name}-smoke")
    summary = Path(results_dir or paths.RESULTS) / f"{spec.name}.nc"
variants = sweep.variant_sweeps(spec, options["variants"])
result, used = store.load_results(variants, options, results_source, results_dir or None, summary, n_workers,
                                  write=not smoke)
device_id, seed, widths = spec.devices[0], spec.seeds[0], spec.pulse_widths
display(Markdown(f"Profile **{profile}**, device {device_id}, seed {seed}; runs: {used}."))

# %% [markdown]
# ## Exact against pulsed transfers
#
# Validation accuracy per epoch (left) and device pulses per epoch, all layers (right). The pulsed transfer
# applies fewer pulses than requested whenever a row asks for more than BL times the device granularity (the
# difference is dropped from chi), and its one-mini-batch lag at lr 0.5 slows the first epochs markedly.

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
rows = []
for mode in result["variant"].values:
    for width in widths:
        run = result.sel(variant=mode, device=device_id, pulse_width=width, algorithm="mp", seed=seed)
        style = "-" if mode == "pulsed" else "--"
        colour = plotting.pulse_width_color(width)
        axes[0].plot(run["epoch"], run["val_acc"], style, color=colour, label=f"{mode}, {width * 1e9:g} ns")
        pulses = run["pulses"].sum(("layer", "polarity"))
        axes[1].plot(run["epoch"], pulses, style, color=colour)
        rows.append({"transfer": str(mode), "pulse width (s)": width, "final val acc": float(run["val_acc"][-1]),
                     "pulses": int(run["pulses"].sum())})
axes[0].set(xlabel="epoch", ylabel="validation accuracy")
axes[1].set(xlabel="epoch", ylabel="device pulses per epoch", yscale="log")
axes[0].legend(fontsize=8)
plotting.save(fig, "07_mp_transfer_modes", output_dir or None,
              provenance=f"ferrolib mp, exact vs pulsed transfer; {device_id}; seed {seed}; {profile}")
display(pd.DataFrame(rows))

# %% [markdown]
# ## The recorded cross-check against aihwkit 1.2
#
# `make crosscheck` builds aihwkit into its own environment and trains fp, sgd, mp and sps in both simulators on
# the same exported devices, data split, initial weights and sample order, in two configurations, and the transfer
# rules in the second:
#
# * **ideal**: perfect reads, the bias in the tile, one tile per layer, stochastic mixed-precision transfer
#   (ferrolib's `ideal` profile against the same settings in aihwkit);
# * **paper**: the paper's own configuration, aihwkit's default `IOParameters()` forward and backward (7-bit
#   inputs, 9-bit outputs, output noise 0.06, bound 12, noise and bound management), digital bias, fc1 on two
#   tiles of 392 inputs, `DETERMINISTIC_IMPLICIT` mixed precision, SP shifting with the reference from the
#   alternating train. aihwkit 1.2 runs on the CPU, whose mixed precision transfers after the first sample of
#   every mini-batch; ferrolib's mp runs on that schedule here (the `paper` profile itself keeps the CUDA schedule
#   the paper ran, shown against it below);
# * **paper-transfer**: the transfer rules of notebook 09 (Tiki-Taka v2, chopped TTv2, AGAD; not in the paper) in
#   the paper's configuration, as aihwkit's `build_config` builds them, at the search's learning rates, at the
#   shortest and the longest width. Accuracy only: aihwkit's transfer compounds apply pulses no estimate here
#   follows (ferrolib's counts are tested against a naive loop of the same rules).
#
# Per-epoch validation accuracy is compared as mean and range over seeds. An epoch is *within* when the means
# differ by at most aihwkit's seed range or 0.03; it and a pulse count *agree* when they are within (pulses:
# 10 %) or aihwkit's mean lies inside ferrolib's own seed range, a difference ferrolib's seeds show by
# themselves. aihwkit's pulses are the expected counts of its rules on the x and d its tiles receive (its CPU
# tiles have no pulse counters).

# %%
records = {name: parity.load_crosscheck(name) for name in parity.CROSSCHECK_PROFILES}
for name, record in records.items():
    if record is None:
        folder = parity.crosscheck_dir(name).relative_to(paths.ROOT)
        display(Markdown(f"No recorded **{name}** cross-check in `{folder}` yet: run `make crosscheck`."))
        continue
    meta = record.meta
    fig = plotting.simulator_accuracy_grid(record.accuracy)
    plotting.save(fig, f"07_crosscheck_{name.replace('-', '_')}", output_dir or None,
                  provenance=f"ferrolib vs aihwkit {meta['aihwkit']} ({meta['date']}), {name} configuration, "
                             f"{meta['device']}, seeds {meta['seeds']}: mean and seed range")
    display(Markdown(f"**{name}** configuration: aihwkit {meta['aihwkit']}, {meta['date']}, seeds {meta['seeds']}, "
                     f"{meta['epochs']} epochs; largest single-device response difference "
                     f"{meta['max_response_difference']:.2g}. Per rule over all widths:"))
    display(parity.verdict_summary(record).round(3))
    display(record.verdicts.round(3))

# %% [markdown]
# ### Mixed precision: aihwkit 1.2's CPU schedule against the CUDA schedule the paper ran
#
# aihwkit 1.2's CPU tiles transfer after the first sample of every mini-batch but the first; its CUDA tiles, on
# which the paper ran, accumulate the whole mini-batch first. The paper cross-check compares ferrolib and aihwkit on
# the CPU schedule (`mp_transfer = "deterministic_implicit"`); the `paper` profile keeps the CUDA one
# (`"deterministic_implicit_cuda"`, `data/results/paper.nc`). Mean and seed range over the cross-check's seeds.

# %%
record = records.get("paper")
if record is not None:
    paper_summary = provenance.read_netcdf(sourcedata.summary_path("paper", summary_dir or None))
    mp = record.accuracy[record.accuracy.algorithm == "mp"]
    schedule_widths = sorted(mp.pulse_width.unique())
    fig, axes = plt.subplots(1, len(schedule_widths), figsize=(2.6 * len(schedule_widths), 2.6), sharey=True,
                             squeeze=False, layout="constrained")
    for ax, width in zip(axes[0], schedule_widths):
        part = mp[mp.pulse_width == width]
        for simulator, colour in (("ferrolib", "C0"), ("aihwkit", "C3")):
            ax.plot(part.epoch, part[f"{simulator}_mean"], color=colour, label=f"{simulator}, CPU schedule")
            ax.fill_between(part.epoch, part[f"{simulator}_min"], part[f"{simulator}_max"], color=colour, alpha=0.2)
        cuda = paper_summary["val_acc"].sel(device=record.meta["device"], algorithm="mp", pulse_width=width,
                                            seed=record.meta["seeds"]).isel(epoch=slice(0, int(part.epoch.max())))
        ax.plot(cuda["epoch"], cuda.mean("seed"), "k--", label="ferrolib, CUDA schedule (paper profile)")
        ax.set(title=f"mp, {plotting.format_pulse_width(width)}", xlabel="epoch", ylim=(0, 1))
    axes[0, 0].set_ylabel("val. accuracy")
    axes[0, 0].legend(fontsize=7, loc="lower right")
    plotting.save(fig, "07_mp_schedule", output_dir or None,
                  provenance=f"paper configuration, {record.meta['device']}, seeds {record.meta['seeds']}; "
                             f"aihwkit {record.meta['aihwkit']} ({record.meta['date']}); CUDA: data/results/paper.nc")

# %% [markdown]
# In the ideal configuration `probe.csv` (`crosscheck/tile_probe.py`) splits a pulse ratio into the rule
# (ferrolib's count over aihwkit's rule applied to ferrolib's own x and d) and the trajectory (the x and d the
# tiles received): a rule ratio of 1 means both simulators apply the same rule.

# %%
probe = parity.crosscheck_dir("ideal") / "probe.csv"
if probe.exists():
    display(pd.read_csv(probe).round(3))

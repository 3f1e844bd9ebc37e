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
# # 03 · Floating point, plain analog SGD, mixed precision and symmetry-point shifting
#
# The paper's MLP (784-256-128-10, sigmoid, batch 64) trained with four rules on the fitted models of one
# measured device at every pulse width:
#
# * `fp`: floating-point SGD, the reference (no devices);
# * `sgd`: plain analog SGD, every sample's rank-one update applied through stochastic pulse trains (aihwkit
#   semantics, BL up to 31);
# * `mp`: mixed precision, a digital accumulator whose integer multiples of the device step become pulses;
# * `sps`: plain analog SGD with every device paired with a reference at its own symmetry point.
#
# The runs are the sweep `sweeps/paper.toml`, the paper's own configuration (the `paper` profile, shared with
# notebooks 04 and 05): aihwkit's default periphery (7-bit inputs, 9-bit outputs with noise and a bound) and
# mapping (digital bias, fc1 split into two tiles), the paper's fits, learning rates and SP-shifting protocol, full
# MNIST with its 48,000 / 12,000 split, 25 epochs, learning rate halved every 10, three seeds. Section 5 sets it
# beside `sweeps/ideal.toml`, the same grid with exact reads (the `ideal` profile), to show what the periphery
# changes. Curves and bars are means over the seeds with their spread; verdicts come from `ferrolib.analysis` and
# `ferrolib.comparison`. Without the runs in `results/`, the notebook renders from the committed summaries in
# `data/results/`.

# %% tags=["parameters"]
smoke: bool = False
output_dir: str = ""
results_dir: str = ""
summary_dir: str = ""
results_source: str = "auto"  # "runs": never render from the committed summary; "summary": never train
sweep_config: str = "paper"
ideal_config: str = "ideal"  # the same grid with exact reads, shown beside it in section 5
target: float | None = None  # None: the documented default of analysis.ClaimThresholds
n_workers: int = 2

# %%

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from ferrolib import analysis, comparison, plotting, sourcedata, store

plotting.style()
profile = "smoke" if smoke else "paper"
spec, options, config_path, result, used = store.notebook_results(sweep_config, smoke, results_source, results_dir,
                                                                   summary_dir, n_workers)
table = analysis.claims(result, analysis.ClaimThresholds.overriding(target=target))
device_id = str(result["device"].values[0])
widths = [float(w) for w in result["pulse_width"].values]
analog = [a for a in ("sgd", "mp", "sps") if a in result["algorithm"].values]
seeds = [int(s) for s in result["seed"].values]
kinds = sorted(set(result["data_kind"].values.ravel()) - {"none"})
run = result.sel(device=device_id)
source = (f"{device_id} {', '.join(kinds)} fits; {result.attrs['data_label']}; profile {profile}, "
          f"{len(seeds)} seed(s), bands = min..max over seeds")
passes = float(run["data_passes"].isel(epoch=-1).max())
display(Markdown(f"Profile **{profile}** (`{config_path.name}`): {int(result.attrs['n_runs'])} runs, "
                 f"{int(run['samples_seen'].isel(epoch=-1).max()):,} training samples each ({passes:.1f} passes); "
                 f"seeds {seeds}. Results: {used}."))


def label(algorithm: str) -> str:
    return {"fp": "fp (floating point)", "sgd": "sgd (plain analog)", "mp": "mp (mixed precision)",
            "sps": "sps (SP-shifted)"}[algorithm]


# %% [markdown]
# ## 1 · Accuracy during training
#
# Validation accuracy after every epoch (top) and against the number of training samples seen (bottom), one
# column per pulse width: the mean over seeds, the band from the lowest to the highest seed.

# %%
fig, axes = plt.subplots(2, len(widths), figsize=(3.2 * len(widths) + 0.5, 5.8), sharey=True, squeeze=False,
                         layout="constrained")
for column, width in enumerate(widths):
    for algorithm in ["fp", *analog]:
        acc = 100 * run["val_acc"].sel(pulse_width=width, algorithm=algorithm)
        samples = run["samples_seen"].sel(pulse_width=width, algorithm=algorithm).mean("seed")
        color = plotting.ALGORITHM_COLORS[algorithm]
        for row, x in enumerate((acc["epoch"], samples)):
            axes[row, column].plot(x, acc.mean("seed"), "-o" if row == 0 else "-", ms=2.5, color=color,
                                   label=label(algorithm))
            axes[row, column].fill_between(x, acc.min("seed"), acc.max("seed"), color=color, alpha=0.2, lw=0)
    axes[0, column].set_title(f"{plotting.format_pulse_width(width)} pulses")
    axes[0, column].set_xlabel("epoch")
    axes[0, column].xaxis.get_major_locator().set_params(integer=True)
    axes[1, column].set_xlabel("training samples seen")
    axes[1, column].ticklabel_format(axis="x", style="sci", scilimits=(0, 0))
axes[0, 0].set_ylabel("validation accuracy (%)")
axes[1, 0].set_ylabel("validation accuracy (%)")
fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside right upper")
fig.suptitle(f"{device_id}: training with fitted device models ({', '.join(kinds)} data)")
plotting.save(fig, "03_accuracy_vs_epoch", output_dir, provenance=source)
plt.show()

# %% [markdown]
# ## 2 · Final accuracy
#
# Test accuracy after the last epoch (the paper reports test accuracy at the end), in percent: mean ± standard
# deviation over seeds. The verdicts below are `ferrolib.analysis.claims` (the same rows as notebook 05's table).

# %%
final = analysis.seed_statistics(100 * run["test_acc"].isel(epoch=-1))
display(pd.DataFrame({plotting.format_pulse_width(w): {
    label(a): f"{float(final['mean'].sel(algorithm=a, pulse_width=w)):.2f} ± "
              f"{float(final['std'].sel(algorithm=a, pulse_width=w)):.2f}" for a in ["fp", *analog]} for w in widths}))
rows = table[(table["scope"] == "pooled") & table["claim"].str.contains("accura|precision")]
display(Markdown("| claim | algorithms | effect (accuracy, fraction) | 95 % interval | seeds | verdict |\n"
                 "|---|---|---|---|---|---|\n" + "\n".join(
                     f"| {r.claim} | {r.algorithm} | {r.estimate:+.4f} | [{r.ci_low:+.4f}, {r.ci_high:+.4f}] | "
                     f"{r.n_seeds} | **{r.verdict}** |" for r in rows.itertuples())))

# %% [markdown]
# ## 3 · Where the weights go: symmetry point drift
#
# Histograms of every layer's effective weights at the stored snapshots, for the first pulse width and seed.
# Under plain SGD (top) the weight is the device state itself; gradient noise gives roughly as many up as down
# pulses and pulls every device toward its symmetry point (grey, dashed). Under symmetry-point shifting (bottom)
# the weight `w_device - w_ref` is measured from the symmetry point, so the same pull is toward 0.

# %%
hists = sourcedata.histograms(result).sel(device=device_id)
width = float(hists["pulse_width"])
layers = list(hists["layer"].values)
centers = result["bin_center"]
fig, axes = plt.subplots(2, len(layers), figsize=(4 * len(layers), 5.8), sharex=True, layout="constrained")
for row, algorithm in enumerate(["sgd", "sps"]):
    for column, layer in enumerate(layers):
        ax = axes[row, column]
        hist = hists["weight_hist"].sel(algorithm=algorithm, layer=layer, quantity="w_eff")
        shades = plt.cm.viridis(np.linspace(0.1, 0.85, hist.sizes["snapshot"]))
        for shade, snapshot in zip(shades, hist.snapshot.values):
            values = hist.sel(snapshot=snapshot)
            ax.plot(centers, values / values.sum(), color=shade, label=f"after epoch {snapshot}")
        if algorithm == "sgd":
            sp = hists["symmetry_point_hist"].sel(algorithm=algorithm, layer=layer)
            ax.plot(centers, sp / sp.sum(), "--", color="#888888", label="device symmetry points")
        else:
            ax.axvline(0.0, ls="--", color="#888888", label="w_eff = 0 (symmetry point)")
        ax.set(yscale="log", ylim=(1e-5, 1.5), xlim=(-1.6, 1.6),
               title=f"{label(algorithm)}: {layer}", xlabel="effective weight (device units)")
    axes[row, 0].set_ylabel("fraction of devices")
    axes[row, 0].legend(loc="upper left", fontsize=7)
fig.suptitle(f"{device_id} {plotting.format_pulse_width(width)}, seed {int(hists['seed'])}: weight distributions")
plotting.save(fig, "03_weight_distributions", output_dir, provenance=source)
plt.show()

mean_weight = analysis.histogram_mean(hists["weight_hist"].sel(quantity="w_eff"), centers)
snapshots = [int(s) for s in hists["snapshot"].values]
first, last = snapshots[0], snapshots[-1]
sp_mean = float(analysis.histogram_mean(hists["symmetry_point_hist"].sel(algorithm="sgd", layer=layers[-1]), centers))
lines = [f"At {plotting.format_pulse_width(width)} the devices' symmetry points average **{sp_mean:+.2f}**. "
         f"Mean effective weight per layer, epoch {first} → {last}:", "",
         "| layer | plain SGD | SP shifting |", "|---|---|---|"]
for layer in layers:
    lines.append("| " + " | ".join([layer] + [
        f"{float(mean_weight.sel(algorithm=a, layer=layer, snapshot=first)):+.3f} → "
        f"{float(mean_weight.sel(algorithm=a, layer=layer, snapshot=last)):+.3f}" for a in ("sgd", "sps")]) + " |")
drift = {a: float(mean_weight.sel(algorithm=a, layer=layers[-1], snapshot=last)) for a in ("sgd", "sps")}
lines += ["", f"In the output layer plain SGD ends {abs(drift['sgd'] - sp_mean):.2f} from the mean symmetry point and "
          f"{abs(drift['sgd']):.2f} from 0; SP shifting ends {abs(drift['sps']):.2f} from 0. Layers whose inputs are "
          "mostly zero (fc1: MNIST pixels) receive few pulses and move little."]
display(Markdown("\n".join(lines)))

# %% [markdown]
# ## 4 · Device programming pulses
#
# Total device pulses over the run (all three layers) per algorithm and pulse width, the count the energy ledger
# of notebook 04 charges (left, mean over seeds with the seed range), and the share of them that are
# potentiation (up) pulses (right).

# %%
totals = analysis.pulse_totals(run)
fig, (ax, ax_share) = plt.subplots(1, 2, figsize=(1.9 * len(widths) + 5, 3.6), layout="constrained",
                                   gridspec_kw={"width_ratios": [1.6, 1]})
bar_width = 0.8 / len(analog)
ticks = np.arange(len(widths))
for index, algorithm in enumerate(analog):
    positions = ticks + (index - (len(analog) - 1) / 2) * bar_width
    total = totals["total"].sel(algorithm=algorithm)
    mean = total.mean("seed").values
    color = plotting.ALGORITHM_COLORS[algorithm]
    ax.bar(positions, mean, bar_width, color=color, label=label(algorithm),
           yerr=[mean - total.min("seed").values, total.max("seed").values - mean], capsize=2)
    ax_share.plot(ticks, 100 * totals["up_share"].sel(algorithm=algorithm).mean("seed"), "-o", color=color,
                  label=label(algorithm))
for axis in (ax, ax_share):
    axis.set_xticks(ticks, [plotting.format_pulse_width(w) for w in widths])
    axis.set_xlabel("pulse width")
ax.set(yscale="log", ylabel="device pulses per run (up + down)", title=f"{device_id}: programming pulses per run")
ax_share.set(ylabel="up pulses (% of all)", ylim=(0, 100), title="share of potentiation pulses")
ax_share.axhline(50, color="#888888", lw=0.8)
ax_share.legend(loc="lower left")
plotting.save(fig, "03_device_pulses", output_dir, provenance=source)
plt.show()

per_run = {a: totals["total"].sel(algorithm=a).mean("seed").values for a in analog}
display(Markdown(
    f"Mixed precision applies {per_run['mp'].min():,.0f} to {per_run['mp'].max():,.0f} pulses per run, plain SGD "
    f"{per_run['sgd'].min():,.0f} to {per_run['sgd'].max():,.0f} and SP shifting {per_run['sps'].min():,.0f} to "
    f"{per_run['sps'].max():,.0f} (means over seeds): the pulse-train rules program about "
    f"{np.median(per_run['sgd'] / np.maximum(per_run['mp'], 1)):.0f} times more pulses than mixed precision "
    f"(median over pulse widths), which pays instead with "
    f"{float(run['digital_macs'].sel(algorithm='mp').isel(pulse_width=0).sum(['epoch', 'layer']).mean()):,.0f} "
    f"digital accumulate operations per run."
))

# %% [markdown]
# ## 5 · The paper's periphery against ideal reads
#
# The same grid with exact reads, one tile per layer, an analog bias and ferrolib's piecewise fits (the `ideal`
# profile, `sweeps/ideal.toml`, on the offline MNIST subset with the same number of samples per epoch). Final test
# accuracy per rule and pulse width in both (mean over seeds, bars from the lowest to the highest seed); the table
# gives the periphery's cost (ideal minus paper, Welch 95 % interval over the seeds of each) with its verdict against
# the accuracy margin, and where each profile ends against the collapse line (`comparison.COLLAPSE_BELOW`): a
# collapse only with the paper's reads is the periphery's, one with ideal reads too is the device's.

# %%
_, _, ideal_path, ideal, ideal_used = store.notebook_results(ideal_config, smoke, results_source, results_dir,
                                                             summary_dir, n_workers)
finals = comparison.final_accuracy({"paper": result, "ideal": ideal})
PROFILE_READS = {"paper": "aihwkit's default periphery", "ideal": "exact reads"}
fig, axes = plt.subplots(1, len(analog), figsize=(4.2 * len(analog), 3.6), sharey=True, layout="constrained")
for ax, algorithm in zip(np.atleast_1d(axes), analog):
    for profile, style in (("paper", "-o"), ("ideal", "--s")):
        rows = finals[(finals["profile"] == profile) & (finals["algorithm"] == algorithm)]
        ax.errorbar(rows["pulse_width"], 100 * rows["mean"], fmt=style, ms=4, capsize=2,
                    yerr=[100 * (rows["mean"] - rows["low"]), 100 * (rows["high"] - rows["mean"])],
                    color=plotting.ALGORITHM_COLORS[algorithm], alpha=1.0 if profile == "paper" else 0.6,
                    label=f"{profile} ({PROFILE_READS[profile]})")
    ax.axhline(100 * comparison.COLLAPSE_BELOW[algorithm], color="#888888", lw=0.6)
    ax.set(xscale="log", xlabel="pulse width (s)", title=label(algorithm))
    ax.legend(loc="lower left", fontsize=7)
np.atleast_1d(axes)[0].set_ylabel("final test accuracy (%)")
fig.suptitle(f"{device_id}: the paper's configuration against ideal reads")
plotting.save(fig, "03_paper_vs_ideal", output_dir,
              provenance=f"{source}; ideal: {ideal.attrs['data_label']}, {ideal_path.name}")
plt.show()

effect = comparison.periphery_effect(result, ideal, thresholds=analysis.ClaimThresholds.overriding(target=target))
display(Markdown(f"Ideal reads: `{ideal_path.name}`, {ideal_used}.\n\n"
                 "| rule | pulse width | paper | ideal | cost of the periphery [95 % interval] | verdict | "
                 "paper ends | ideal ends | collapse due to |\n|---|---|---|---|---|---|---|---|---|\n" + "\n".join(
                     f"| {r.algorithm} | {plotting.format_pulse_width(r.pulse_width)} | {r.paper:.3f} | {r.ideal:.3f} | "
                     f"{r.cost:+.3f} [{r.ci_low:+.3f}, {r.ci_high:+.3f}] | **{r.verdict}** | {r.paper_ends} | "
                     f"{r.ideal_ends} | {r.cause} |" for r in effect.itertuples())))


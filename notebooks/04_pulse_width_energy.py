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
# # 04 · Pulse width, energy per update and convergence
#
# Shorter programming pulses cost less energy per update but move the device less reliably, so training needs
# more epochs. This notebook measures both sides for one device:
#
# 1. the energy of one programming pulse against the pulse width, split into its components (leakage as the
#    published Schottky-emission upper bound and as an ohmic estimate from the measured conductance, capacitive
#    charging, polarization switching), from the measured ramps of every pulse width;
# 2. a training sweep over pulse widths and algorithms (mixed precision `mp`, plain analog SGD `sgd`,
#    symmetry-point shifting `sps`): epochs to reach the target accuracy, final accuracy and the total training
#    energy, the latter a ledger of counted events (pulses, reads, digital operations) times energy per event.
#
# The runs are the sweep `sweeps/paper.toml` (shared with notebooks 03 and 05, three seeds); points are means over
# seeds with the seed spread. Without the runs in `results/`, the notebook renders from the committed summary in
# `data/results/` and says so.

# %% tags=["parameters"]
smoke: bool = False
output_dir: str = ""
results_dir: str = ""
summary_dir: str = ""
results_source: str = "auto"  # "runs": never render from the committed summary; "summary": never train
sweep_config: str = "paper"
target: float | None = None  # None: the documented default of analysis.ClaimThresholds
n_workers: int = 2

# %%
import dataclasses
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Markdown, display

from ferrolib import analysis, energy, measurements, plotting, store

plotting.style()
profile = "smoke" if smoke else "paper"
spec, options, config_path, result, used = store.notebook_results(sweep_config, smoke, results_source, results_dir,
                                                                   summary_dir, n_workers)
energy_model = options["energy_model"]
device_id = spec.axes()["device"][0]
display(Markdown(f"Profile **{profile}**: sweep `{config_path.name}`, {len(spec)} runs "
                 f"({', '.join(f'{len(v)} {k}' for k, v in spec.axes().items())}); energy model `{energy_model!r}`."))

# %% [markdown]
# ## 1 · Energy of one programming pulse
#
# Each pulse width has its own measured ramp, hence its own programming amplitudes: shorter pulses need larger
# voltages. Following the published estimate, every pulse is charged at the magnitude of the most negative
# ramp amplitude (`amplitude_rule="paper"`).

# %%
measured = measurements.load_measurements(device_id, select="last")
widths_measured = [float(m.attrs["pulse_width_s"]) for m in measured]
per_pulse = energy.pulse_energy_vs_width(device_id, widths_measured, energy_model)
area_um2 = float(per_pulse.attrs["area_m2"]) * 1e12
source_files = f"{len(measured)} files, {Path(measured[0].attrs['source_file']).name} … {Path(measured[-1].attrs['source_file']).name}"

fig, (ax, ax_v) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [1.6, 1]})
up = per_pulse["pulse_energy"].sel(polarity="up")
labels = {"leakage_schottky": "leakage, Schottky upper bound", "leakage_conductance": "leakage, ohmic (measured G)",
          "capacitive": "capacitive charging $CV^2$", "switching": "polarization switching $2P_rAVs$"}
styles = {"leakage_schottky": "-", "leakage_conductance": ":", "capacitive": "--", "switching": "-."}
for component, label in labels.items():
    ax.loglog(widths_measured, up.sel(component=component), styles[component], marker="o", ms=4, label=label)
no_bound = up.sel(component=["leakage_conductance", "capacitive", "switching"]).sum("component")
ax.loglog(widths_measured, no_bound, color="k", lw=2, alpha=0.6, label="sum without the Schottky bound")
for level, text, offset in ((1e-12, "1 pJ (group, 2022)", 0.45), (3e-12, "3 pJ, < 100 µm² (group, 2026)", 1.25)):
    ax.axhline(level, color="grey", lw=0.8)
    ax.text(widths_measured[-1], level * offset, text, fontsize=7, color="grey", ha="right")
ax.axvspan(2e-8, 2e-4, color="#f3f3f3", zorder=-1, label="paper's range 20 ns – 0.2 ms")
ax.set(xlabel="pulse width (s)", ylabel="energy per pulse (J)",
       title=f"{device_id} ({area_um2:.3g} µm², measured ramps): energy of one pulse")
fig.legend(*ax.get_legend_handles_labels(), fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3)
ax_v.semilogx(widths_measured, per_pulse["amplitude"].sel(polarity="up"), "o-", label="charged (paper rule)")
per_polarity = energy.pulse_energy_vs_width(device_id, widths_measured,
                                            dataclasses.replace(energy_model, amplitude_rule="per_polarity"))
ax_v.semilogx(widths_measured, per_polarity["amplitude"].sel(polarity="down"), "s--",
              label="largest depression amplitude")
ax_v.set(xlabel="pulse width (s)", ylabel="|amplitude| (V)", title="amplitude at the end of each ramp")
ax_v.legend()
plotting.save(fig, "04_per_pulse_energy", output_dir,
              provenance=f"measured: LBE247 {device_id} ({source_files}); energy model {energy_model!r}; profile {profile}")
plt.show()

# %%
shortest, longest = widths_measured[0], max(w for w in widths_measured if w <= 2e-4 * 1.001)  # paper's range
e = lambda component, w: float(up.sel(component=component, pulse_width=w))  # noqa: E731
schottky_largest = bool((up.sel(component="leakage_schottky") >= up.max("component")).all())
display(Markdown(
    f"From {plotting.format_pulse_width(shortest)} to {plotting.format_pulse_width(longest)} the Schottky bound "
    f"grows from {energy.format_energy(e('leakage_schottky', shortest))} to "
    f"{energy.format_energy(e('leakage_schottky', longest))} per pulse (x{e('leakage_schottky', longest) / e('leakage_schottky', shortest):.3g} "
    f"for x{longest / shortest:.0f} in width: linear in the width at fixed amplitude, while the amplitude falls from "
    f"{float(per_pulse['amplitude'].sel(polarity='up', pulse_width=shortest)):.2f} V to "
    f"{float(per_pulse['amplitude'].sel(polarity='up', pulse_width=longest)):.2f} V). It is "
    f"{'the largest estimate at every width' if schottky_largest else 'not everywhere the largest estimate'}, "
    f"so under it shorter pulses are {'cheaper' if e('leakage_schottky', shortest) < e('leakage_schottky', longest) else 'not cheaper'}. "
    f"The capacitive term ({energy.format_energy(e('capacitive', shortest))} to "
    f"{energy.format_energy(e('capacitive', longest))}) follows the amplitude squared instead; the ohmic "
    f"leakage from the measured conductance is only {energy.format_energy(e('leakage_conductance', shortest))} to "
    f"{energy.format_energy(e('leakage_conductance', longest))}. Without the Schottky bound the energy per pulse is "
    f"{energy.format_energy(float(no_bound.sel(pulse_width=shortest)))} at {plotting.format_pulse_width(shortest)}, "
    f"{'above' if float(no_bound.sel(pulse_width=shortest)) > 3e-12 else 'within'} the 3 pJ the group reports "
    f"for devices under 100 µm² (this device: {area_um2:.3g} µm²; all terms scale with the area)."
))

# %% [markdown]
# ## 2 · Training across pulse widths
#
# Every run of the sweep is loaded from the cache (or trained, or read from the committed summary); its energy
# ledger multiplies the counted programming pulses per polarity, analog reads and mixed-precision digital
# operations by their energies. Points: mean over seeds; error bars: standard deviation over seeds.

# %%
display(Markdown(f"Results: {used}."))
thresholds = analysis.ClaimThresholds.overriding(target=target)
conv = analysis.sweep_convergence(result, thresholds.target, relative=thresholds.relative)
summary = analysis.convergence_summary(conv).isel(device=0)
algorithms = [a for a in ("mp", "sps", "sgd") if a in result["algorithm"].values]
widths = result["pulse_width"].values
n_epochs = result.sizes["epoch"]
data_note = f"{result.attrs['data_label']}; device {device_id} ({analysis.data_kinds(result)})"


fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
for index, algorithm in enumerate(algorithms):
    color = plotting.ALGORITHM_COLORS[algorithm]
    at = summary.sel(algorithm=algorithm)
    reached = at["reached_all"].values
    axes[0].errorbar(widths[reached], at["epochs_to_target_mean"].values[reached],
                     at["epochs_to_target_std"].fillna(0).values[reached], marker="o", color=color, label=algorithm,
                     capsize=3)
    axes[0].plot(widths[~reached], np.full((~reached).sum(), n_epochs + 0.4 + 0.2 * index), "v", mfc="none",
                 color=color)
    axes[1].errorbar(widths, at["final_accuracy_mean"], at["final_accuracy_std"].fillna(0), marker="o", color=color,
                     label=algorithm, capsize=3)
    axes[2].errorbar(widths, at["energy_total_mean"], at["energy_total_std"].fillna(0), marker="o", color=color,
                     label=f"{algorithm}, whole run", capsize=3)
    if reached.any():
        axes[2].plot(widths[reached], at["energy_to_target_mean"].values[reached], "*", ms=10, color=color,
                     label=f"{algorithm}, to target")
axes[0].axhline(n_epochs + 0.25, color="grey", lw=0.6)
axes[0].set(xscale="log", xlabel="pulse width (s)", ylabel="epochs to target",
            title=f"epochs to {thresholds.describe_target()} (▽ = not reached)", ylim=(0, n_epochs + 1.2))
if not thresholds.relative:
    axes[1].axhline(thresholds.target, color="grey", lw=0.6, ls="--")
axes[1].set(xscale="log", xlabel="pulse width (s)", ylabel="final validation accuracy", title="final accuracy")
axes[2].set(xscale="log", yscale="log", xlabel="pulse width (s)", ylabel="training energy (J)",
            title="total training energy (ledger)")
for ax in axes:
    ax.legend(fontsize=7)
plotting.save(fig, "04_convergence_vs_width", output_dir,
              provenance=f"{data_note}; {len(result['seed'])} seed(s), error bars = std over seeds; profile {profile}")
plt.show()

# %%
final = summary["final_accuracy_mean"]
lines = []
for algorithm in algorithms:
    hit = [plotting.format_pulse_width(w) for w in widths
           if float(summary["reached_fraction"].sel(algorithm=algorithm, pulse_width=w)) > 0]
    total = summary["energy_total_mean"].sel(algorithm=algorithm)
    lines.append(
        f"* **{algorithm}**: final accuracy {float(final.sel(algorithm=algorithm).min()):.3f} to "
        f"{float(final.sel(algorithm=algorithm).max()):.3f}; reached {thresholds.describe_target()} at "
        f"{', '.join(hit) if hit else 'no pulse width'}; whole-run energy "
        f"{energy.format_energy(float(total.sel(pulse_width=widths[0])))} at {plotting.format_pulse_width(widths[0])} and "
        f"{energy.format_energy(float(total.sel(pulse_width=widths[-1])))} at {plotting.format_pulse_width(widths[-1])}.")
display(Markdown(f"After {n_epochs} epochs ({profile} profile):\n\n" + "\n".join(lines)))

# %% [markdown]
# ## 3 · Where the training energy goes
#
# The ledger's terms summed over the run, per algorithm: programming (three components), analog reads
# (forward, backward, evaluation) and the digital accumulation of mixed precision.

# %%
terms = result["energy_term"].sum("epoch").isel(device=0).mean("seed")
term_colors = dict(zip(energy.TERMS, plt.get_cmap("tab10").colors))
fig, axes = plt.subplots(1, len(algorithms), figsize=(4.2 * len(algorithms), 3.6), sharey=True, squeeze=False)
for ax, algorithm in zip(axes[0], algorithms):
    for term in energy.TERMS:
        values = terms.sel(algorithm=algorithm, term=term)
        if float(values.max()) > 0:
            ax.loglog(widths, values, marker="o", color=term_colors[term], label=term.replace("_", " "))
    ax.set(title=algorithm, xlabel="pulse width (s)")
axes[0][0].set_ylabel("energy over the run (J)")
handles = [plt.Line2D([], [], color=c, marker="o", label=t.replace("_", " ")) for t, c in term_colors.items()]
fig.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(handles), fontsize=7)
plotting.save(fig, "04_energy_breakdown", output_dir,
              provenance=f"{data_note}; energy model {energy_model!r}; profile {profile}")
plt.show()

# %%
shares = (terms / terms.sum("term")).sel(pulse_width=widths[0])
display(Markdown("At " + plotting.format_pulse_width(widths[0]) + ", the largest term is " + "; ".join(
    f"**{a}**: {str(shares.sel(algorithm=a).idxmax('term').values).replace('_', ' ')} "
    f"({float(shares.sel(algorithm=a).max()):.0%})" for a in algorithms) + "."))

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
# # 09 · Beyond the paper: Tiki-Taka v2, chopped TTv2 and AGAD on the measured devices
#
# The paper compares plain analog SGD, mixed precision (mp) and symmetry-point shifting (sps). The algorithms
# built for asymmetric devices keep a fast analog tile A that accumulates the gradient and move what it holds into
# the slow tile C that the network reads: Tiki-Taka v2 (ttv2, Gokmen 2021), chopped TTv2 (cttv2, which flips the
# sign of A's inputs at random so that A's drift towards its symmetry point cancels) and AGAD (agad, which also
# subtracts a running reference of A's reads). ferrolib runs them with aihwkit 1.2's semantics and presets
# (`training.transfer`, `build_config`'s `ChoppedTransferCompound` and `DynamicTransferCompound`) in the
# paper's configuration: its periphery and tile mapping, its fits, full MNIST with its split. Every pulse on A
# and C, every column read of A and the digital buffer's arithmetic enter the same energy ledger as the other
# rules.
#
# Three steps: a learning-rate search on one device and width (`sweeps/transfer-search.toml`), the rates fixed
# for all; the headline device at five widths with three seeds (`sweeps/transfer-headline.toml`) against the
# paper's rules from `data/results/paper.nc`; every measured device at every width, one seed
# (`sweeps/study-transfer.toml` against `sweeps/study-paper.toml`). The transfer rules run 10 epochs; the
# paper's rules are cut to their first 10 (the same runs: the learning rate halves only after epoch 10). Every
# number comes from `ferrolib.transfer_analysis` and `ferrolib.analysis`. aihwkit 1.2 itself, running its own
# `build_config` compounds in the same configuration on the same devices, split, initial weights and sample order,
# agrees with these runs in every epoch at 20 ns and 200 us (the `paper-transfer` cross-check, notebook 07).

# %% tags=["parameters"]
smoke: bool = False
output_dir: str = ""
results_dir: str = ""
summary_dir: str = ""
results_source: str = "auto"  # "runs": never render from the committed summary; "summary": never train
n_workers: int = 2

# %%
import dataclasses

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Markdown, display

from ferrolib import analysis, plotting, store, study, sweep, transfer_analysis
from ferrolib.training.profiles import TRANSFER_SEARCH_LR

plotting.style()
rules = transfer_analysis.TRANSFER_RULES
thresholds = transfer_analysis.COMPARISON
reference = transfer_analysis.REFERENCE_RULE


def smoke_sweep(name: str, **changes) -> tuple[sweep.Sweep, dict]:
    """The smoke sweep (two widths, 2 epochs, the npm subset) with the transfer rules at their rates."""
    spec, options, _ = sweep.notebook_sweep("smoke", True)
    base = dataclasses.replace(spec.base, desired_bl=5)
    changes = {"lr_by_algorithm": dict(TRANSFER_SEARCH_LR), **changes}
    return dataclasses.replace(spec, base=base, algorithms=list(rules), name=name, **changes), options


def load(config: str, smoke_changes: dict | None = None):
    """The results of sweep file ``config`` (or of its smoke stand-in) and where they came from."""
    if not smoke:
        return store.notebook_results(config, False, results_source, results_dir, summary_dir, n_workers)[3:]
    spec, options = smoke_sweep(f"{config}-smoke", **(smoke_changes or {}))
    return store.load_results(spec, options, "runs", results_dir or None, None, n_workers)


# %% [markdown]
# ## 1. The learning-rate search
#
# One device and width: ID170ZR5000 at 20 ns (the paper's device at its shortest pulse), five epochs, seed 0,
# ten learning rates from 0.002 to 2 per rule (30 runs, about 6 minutes on two cores). The SGD learning rate sets
# each preset's transfer rate (`transfer_lr` is scaled by it) and the digital bias's; the fast tile's own rate is
# the preset's (c-TTv2 and AGAD normalise it by auto-scale). The rate with the best validation accuracy after
# epoch 5 (filled marker) is fixed for every device and width (`profiles.TRANSFER_SEARCH_LR`).

# %%
search, search_used = load("transfer-search", {"learning_rates": [0.005, 0.05], "lr_by_algorithm": {},
                                               "pulse_widths": [2e-8]})
choice = transfer_analysis.search_choice(search.isel(device=[0], pulse_width=[0], seed=[0]))
final = 100 * search["val_acc"].isel(device=0, pulse_width=0, seed=0, epoch=-1)
fig, ax = plt.subplots(figsize=(5.6, 3.6), layout="constrained")
for rule in rules:
    color = plotting.ALGORITHM_COLORS[rule]
    ax.plot(final["learning_rate"], final.sel(algorithm=rule), "o-", mfc="white", color=color, label=rule)
    ax.plot(choice[rule], final.sel(algorithm=rule, learning_rate=choice[rule]), "o", color=color, ms=8)
ax.axhline(10, color="#999999", lw=0.6)
ax.set(xscale="log", xlabel="learning rate", ylabel=f"validation accuracy after epoch {search.sizes['epoch']} (%)",
       ylim=(0, 100))
ax.legend(loc="upper right")
plotting.save(fig, "09_learning_rate_search", output_dir, provenance=f"{search.attrs.get('data_label', '')}; "
              f"{search_used}")
plt.show()
agree = "equal to" if smoke or choice == TRANSFER_SEARCH_LR else "**different from**"
display(Markdown(f"Chosen rates: {', '.join(f'{r} {choice[r]:g}' for r in rules)}, {agree} the rates the "
                 f"studies run (`TRANSFER_SEARCH_LR`: {TRANSFER_SEARCH_LR}). Results: {search_used}."))

# %% [markdown]
# ## 2. The headline device: accuracy, epochs and energy to the target against pulse width
#
# ID170ZR5000 at the five widths of the paper's sweep, three seeds per rule. Left: validation accuracy after
# epoch 10; middle: epochs to 90 % validation accuracy (only the seeds that got there; a missing point never
# did); right: the programming energy spent until then. Lines are seed means, bars Student-t 95 % intervals.

# %%
headline, headline_used = load("transfer-headline")
paper, paper_used = (store.notebook_results("paper", smoke, results_source, results_dir, summary_dir, n_workers,
                                            write=False)[3:])
result = transfer_analysis.joined(headline, paper)
conv = transfer_analysis.convergence(result)
summary = analysis.convergence_summary(conv)
device_id = str(result["device"].values[0])
shown = [a for a in ("fp", "mp", "sgd", "sps", *rules) if a in result["algorithm"].values]
fig, axes = plt.subplots(1, 3, figsize=(14, 3.9), layout="constrained")
panels = (("final_accuracy", 100, "validation accuracy after epoch 10 (%)"),
          ("epochs_to_target", 1, "epochs to 90 % validation accuracy"),
          ("energy_to_target", 1, "programming energy to 90 % (J)"))
for ax, (metric, scale, label) in zip(axes, panels):
    for rule in shown:
        if metric == "energy_to_target" and rule == "fp":
            continue  # fp programs no device
        stats = summary.sel(device=device_id, algorithm=rule)
        mean = scale * stats[f"{metric}_mean"]
        half = scale * stats[f"{metric}_half_width"].fillna(0)
        ax.errorbar(result["pulse_width"], mean, yerr=half, marker="o", ms=4, capsize=2,
                    color=plotting.ALGORITHM_COLORS[rule], label=rule, ls="--" if rule in rules else "-")
    ax.set(xscale="log", xlabel="pulse width (s)", ylabel=label)
    if metric != "final_accuracy" and not np.isfinite(summary[f"{metric}_mean"].values).any():
        ax.text(0.5, 0.5, "no run reached 90 %", transform=ax.transAxes, ha="center", color="#666666")
    elif metric == "energy_to_target":
        ax.set_yscale("log")
axes[0].set_ylim(0, 100)
axes[0].legend(loc="lower left", ncol=2, fontsize=8)
plotting.save(fig, "09_rules_against_pulse_width", output_dir,
              provenance=f"{device_id}; transfer rules: {headline_used}; paper's rules: {paper_used}")
plt.show()

# %% [markdown]
# Learning curves at the shortest and the longest width (seed means; the shaded band spans the seeds).

# %%
widths = [float(result["pulse_width"].values[0]), float(result["pulse_width"].values[-1])]
fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), sharey=True, layout="constrained")
for ax, width in zip(axes, widths):
    for rule in shown:
        curve = 100 * result["val_acc"].sel(device=device_id, pulse_width=width, algorithm=rule)
        color = plotting.ALGORITHM_COLORS[rule]
        ax.plot(curve["epoch"], curve.mean("seed"), color=color, label=rule, ls="--" if rule in rules else "-")
        ax.fill_between(curve["epoch"], curve.min("seed"), curve.max("seed"), color=color, alpha=0.15, lw=0)
    ax.set(title=f"{device_id}, {plotting.format_pulse_width(width)}", xlabel="epoch")
axes[0].set(ylabel="validation accuracy (%)", ylim=(0, 100))
axes[1].legend(loc="lower right", ncol=2, fontsize=8)
plotting.save(fig, "09_learning_curves", output_dir, provenance=f"{headline_used}; {paper_used}")
plt.show()

# %% [markdown]
# ### The claims on the headline device
#
# For every transfer rule: does it reach mp's accuracy after epoch 10 (the interval of the paired difference
# above -1 point), and does it spend less programming energy than mp to reach 90 % (the interval of
# log10(E_mp / E_rule) above 0), and less energy with the whole ledger (reads and digital work: mp's digital
# accumulation, the transfer rules' reads of A and their buffer)? One row per width (three seeds) and one pooled
# over widths and seeds.

# %%
table = transfer_analysis.claims(result, by="pulse_width")
analysis.write_claims(table, plotting.output_dir(output_dir), "09_claims_headline",
                      {"data": f"{headline_used}; {paper_used}", "target": thresholds.describe_target()})
display(Markdown(analysis.claims_markdown(table)))

# %% [markdown]
# Where the energy goes: the pulses of each rule after 10 epochs, by tile, at the shortest width (seed 0). The
# transfer rules write A on every sample, however small the gradient; C only when the buffer crosses.

# %%
pulses = result["pulses"].sel(device=device_id, pulse_width=widths[0], seed=result["seed"].values[0]).sum(
    ("layer", "polarity"))
display(Markdown("| rule | device pulses in 10 epochs | programming energy (J) | validation accuracy |\n"
                 "|---|---|---|---|\n" + "\n".join(
                     f"| {rule} | {float(pulses.sel(algorithm=rule).sum()):.3g} | "
                     f"{float(conv['energy_total'].sel(device=device_id, pulse_width=widths[0], algorithm=rule).isel(seed=0)):.3g} | "
                     f"{float(conv['final_accuracy'].sel(device=device_id, pulse_width=widths[0], algorithm=rule).isel(seed=0)):.3f} |"
                     for rule in shown if rule != "fp")))

# %% [markdown]
# ## 3. Every measured device
#
# The same rules on the four measured devices at every width each was measured at, one seed
# (`sweeps/study-transfer.toml`, `make study`), against mp, sgd and sps of the study in the paper's configuration.
# Top: validation accuracy after epoch 10; bottom: the programming energy spent until 90 %, where the run got there.
# With one seed a per-width interval does not exist: per device the unit is each width (not independent, so the
# interval is optimistic), pooled every device-width point.

# %%
try:
    if smoke:
        raise FileNotFoundError("smoke profile: the headline's smoke runs instead of the study")
    transfer_study, transfer_study_used = study.committed_study("study-transfer", summary_dir or None)
    paper_study, paper_study_used = study.committed_study("study-paper", summary_dir or None)
    every = transfer_analysis.joined(transfer_study, paper_study, rules=("mp", "sgd", "sps"))
except FileNotFoundError as reason:
    every, transfer_study_used, paper_study_used = result.isel(seed=[0]), f"seed 0 of the headline ({reason})", ""
every_conv = transfer_analysis.convergence(every)
devices = [str(d) for d in every["device"].values]
fig, axes = plt.subplots(2, len(devices), figsize=(3.6 * len(devices), 6.4), sharey="row", sharex="col",
                         squeeze=False, layout="constrained")
for column, device in enumerate(devices):
    for rule in [a for a in ("mp", "sgd", "sps", *rules) if a in every["algorithm"].values]:
        style = dict(marker="o", ms=3.5, color=plotting.ALGORITHM_COLORS[rule], label=rule,
                     ls="--" if rule in rules else "-")
        run = every_conv.sel(device=device, algorithm=rule).isel(seed=0)
        accuracy = 100 * run["final_accuracy"].dropna("pulse_width")  # the widths this device was measured at
        axes[0][column].plot(accuracy["pulse_width"], accuracy, **style)
        energy = run["energy_to_target"].where(run["reached"]).dropna("pulse_width")  # only where it got there
        axes[1][column].plot(energy["pulse_width"], energy, **style)
    axes[0][column].set(xscale="log", title=device)
    axes[1][column].set(xscale="log", xlabel="pulse width (s)")
    if every_conv["reached"].sel(device=device).any():
        axes[1][column].set_yscale("log")
    else:
        axes[1][column].text(0.5, 0.5, "no run reached 90 %", transform=axes[1][column].transAxes, ha="center",
                             color="#666666")
axes[0][0].set(ylabel="validation accuracy after epoch 10 (%)", ylim=(0, 100))
axes[1][0].set(ylabel="programming energy to 90 % (J)")
axes[0][-1].legend(loc="lower right", fontsize=8, ncol=2)
plotting.save(fig, "09_rules_on_every_device", output_dir,
              provenance=f"transfer rules: {transfer_study_used}; paper's rules: {paper_study_used}")
plt.show()
every_table = transfer_analysis.claims(every, by="device")
analysis.write_claims(every_table, plotting.output_dir(output_dir), "09_claims_every_device",
                      {"data": f"{transfer_study_used}; {paper_study_used}", "unit": "(device, width) point"})
display(Markdown(f"Results: {transfer_study_used}; {paper_study_used}.\n\n" + analysis.claims_markdown(every_table)))

# %% [markdown]
# ## What the runs say
#
# The verdicts of the pooled rows, computed above (headline device, three seeds; every device, one seed):

# %%
lines = []
for name, claims_table in (("headline device", table), ("every device", every_table)):
    pooled = claims_table[claims_table["scope"] == "pooled"]
    lines += [f"- {name}: {row.claim}: **{row.verdict}** (" + (
        f"{row.estimate:+.3g}, interval [{row.ci_low:+.3g}, {row.ci_high:+.3g}]; " if np.isfinite(row.estimate)
        else "") + f"{row.measured})" for row in pooled.itertuples()]
display(Markdown("\n".join(lines)))

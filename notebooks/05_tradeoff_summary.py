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
# # 05 · The energy–convergence trade-off and the paper's claims
#
# One point per pulse width and algorithm: how much training energy a run needs to reach the target accuracy
# against how many epochs (or samples) it needs (means over seeds). Then every claim of Garg et al. 2025 next to
# what this reproduction measured: an effect with its confidence interval over seeds, and a verdict computed by
# `ferrolib.analysis.claims`. The runs are those of notebooks 03 and 04 (`sweeps/paper.toml`, the paper's own
# configuration); the last section sets every verdict beside the one the same grid gives with exact reads
# (`sweeps/ideal.toml`). Without the runs in `results/`, the notebook renders from the committed summaries in
# `data/results/` in seconds.

# %% tags=["parameters"]
smoke: bool = False
output_dir: str = ""
results_dir: str = ""
summary_dir: str = ""
results_source: str = "auto"  # "runs": never render from the committed summary; "summary": never train
sweep_config: str = "paper"
ideal_config: str = "ideal"  # the same grid with exact reads: its verdicts beside the paper configuration's
target: float | None = None  # None: the documented defaults of analysis.ClaimThresholds
relative_target: bool | None = None
accuracy_margin: float | None = None
confidence: float | None = None
n_workers: int = 2

# %%
import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from ferrolib import analysis, comparison, plotting, store

plotting.style()
profile = "smoke" if smoke else "paper"
spec, options, config_path, result, used = store.notebook_results(sweep_config, smoke, results_source, results_dir,
                                                                   summary_dir, n_workers)
thresholds = analysis.ClaimThresholds.overriding(target=target, relative=relative_target,
                                                accuracy_margin=accuracy_margin, confidence=confidence)
conv = analysis.sweep_convergence(result, thresholds.target, relative=thresholds.relative)
algorithms = [a for a in ("mp", "sps", "sgd") if a in result["algorithm"].values]
widths = result["pulse_width"].values
device_id = str(result["device"].values[0])
data_note = (f"{result.attrs['data_label']}; device {device_id} "
             f"({analysis.data_kinds(result)}); energy model {options['energy_model']!r}; "
             f"{len(result['seed'])} seed(s), means over seeds; profile {profile}")
target_text = thresholds.describe_target()
display(Markdown(f"Profile **{profile}**: `{config_path.name}`, {len(spec)} runs of {result.sizes['epoch']} epochs; "
                 f"target {target_text}. Results: {used}."))

# %% [markdown]
# ## The trade-off
#
# Left and middle: energy to reach the target against epochs and samples to reach it (points where every seed
# reached it; colour = pulse width, marker = algorithm). Right: whole-run energy against final accuracy.

# %%
markers = {"mp": "o", "sps": "s", "sgd": "^"}
summary = analysis.convergence_summary(conv, thresholds.confidence).isel(device=0)
mean = {name: summary[f"{name}_mean"] for name in
        ("epochs_to_target", "samples_to_target", "energy_to_target", "energy_total", "final_accuracy")}
reached = summary["reached_all"]
fig, axes = plt.subplots(1, 3, figsize=(13.5, 4))
for algorithm in algorithms:
    hit = reached.sel(algorithm=algorithm).values
    for ax, x_name in zip(axes[:2], ("epochs_to_target", "samples_to_target")):
        x = mean[x_name].sel(algorithm=algorithm).values[hit]
        y = mean["energy_to_target"].sel(algorithm=algorithm).values[hit]
        ax.plot(x, y, color=plotting.ALGORITHM_COLORS[algorithm], lw=0.8, alpha=0.6)
        ax.scatter(x, y, c=[plotting.pulse_width_color(w) for w in widths[hit]], marker=markers[algorithm],
                   s=55, edgecolor=plotting.ALGORITHM_COLORS[algorithm], zorder=3)
    axes[2].plot(mean["final_accuracy"].sel(algorithm=algorithm), mean["energy_total"].sel(algorithm=algorithm),
                 color=plotting.ALGORITHM_COLORS[algorithm], lw=0.8, alpha=0.6)
    axes[2].scatter(mean["final_accuracy"].sel(algorithm=algorithm), mean["energy_total"].sel(algorithm=algorithm),
                    c=[plotting.pulse_width_color(w) for w in widths], marker=markers[algorithm], s=55,
                    edgecolor=plotting.ALGORITHM_COLORS[algorithm], zorder=3)
for ax in axes[:2]:
    if bool(reached.any()):
        ax.set_yscale("log")
    else:
        ax.text(0.5, 0.5, f"no run reached the target\n({target_text})", ha="center", va="center",
                transform=ax.transAxes, color="grey")
        ax.set(xticks=[], yticks=[])
axes[0].set(xlabel="epochs to target", ylabel="training energy to target (J)", title="energy against epochs to target")
axes[1].set(xlabel="samples to target", title="energy against samples to target")
axes[2].set(xlabel="final validation accuracy", ylabel="whole-run training energy (J)", yscale="log",
            title="every run: energy and final accuracy")
handles = [plt.Line2D([], [], ls="", marker=markers[a], color=plotting.ALGORITHM_COLORS[a], label=a) for a in algorithms]
handles += [plt.Line2D([], [], ls="", marker="o", color=plotting.pulse_width_color(w), label=plotting.format_pulse_width(w))
            for w in widths]
fig.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(handles), fontsize=8)
plotting.save(fig, "05_tradeoff", output_dir, provenance=data_note)
plt.show()

# %%
display(Markdown("\n".join(analysis.tradeoff_lines(summary))))

# %% [markdown]
# ## The paper's claims against this reproduction
#
# Each row is computed by `ferrolib.analysis.claims`: the claim's effect per seed (and per device), its mean with
# a Student-t confidence interval over the seeds, and the verdict: **holds** when the whole interval lies beyond
# the threshold, **fails** when it lies on the other side, **inconclusive** when it straddles the threshold, when
# there is a single seed, or when no run could test the claim (e.g. the reference never reached the target).
# Thresholds: `ClaimThresholds` (accuracy margin, target, confidence), printed below the table.

# %%
table = analysis.claims(result, thresholds)
csv_path, json_path = analysis.write_claims(
    table, plotting.output_dir(output_dir), "05_claims",
    {"data": data_note, "sweep": config_path.name, "results": used})
display(Markdown(analysis.claims_markdown(table)))
counts = table.loc[table["scope"] == "pooled", "verdict"].value_counts()
display(Markdown(f"{counts.get('holds', 0)} of {int((table['scope'] == 'pooled').sum())} claims hold, "
                 f"{counts.get('fails', 0)} fail, {counts.get('inconclusive', 0)} are inconclusive in the {profile} "
                 f"profile ({thresholds!r}). Written to `{csv_path.name}` and `{json_path.name}` beside the figures."))

# %% [markdown]
# ## The paper's configuration against ideal reads
#
# The same claims, computed the same way, on the same grid with exact reads, one tile per layer, an analog bias
# and ferrolib's fits (`sweeps/ideal.toml`): where a verdict moves, the periphery and the fits of the paper's setup
# decide it, not the device's pulse response alone. Written to `05_claims_ideal.csv/json`.

# %%
_, _, ideal_path, ideal, ideal_used = store.notebook_results(ideal_config, smoke, results_source, results_dir,
                                                             summary_dir, n_workers)
ideal_table = analysis.claims(ideal, thresholds)
analysis.write_claims(ideal_table, plotting.output_dir(output_dir), "05_claims_ideal",
                      {"data": f"{ideal.attrs['data_label']}; exact reads", "sweep": ideal_path.name,
                       "results": ideal_used})
side_by_side = comparison.claims_by_profile({profile: table, "ideal": ideal_table})
display(Markdown(comparison.claims_by_profile_markdown(side_by_side, [profile, "ideal"])))
display(Markdown(f"{int(side_by_side['moved'].sum())} of {len(side_by_side)} verdicts differ between the {profile} "
                 f"configuration and ideal reads (ideal: `{ideal_path.name}`, {ideal_used})."))


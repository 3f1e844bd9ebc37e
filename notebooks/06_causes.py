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
# # 06 · Why plain analog SGD loses accuracy
#
# Plain-SGD and SP-shifted accuracy against each property of the fitted device, across every device-width point
# of the study (`make study`: four measured devices, 6 to 12 pulse widths each): the distance of the symmetry
# point from 0, the asymmetry of the up and down steps at w = 0 (the drift the initial weights feel), the number
# of states and the cycle-to-cycle scatter of the fit. For each property: Spearman's rank correlation with the
# accuracy, and a one-threshold model of the collapse ("accuracy below `collapse_below`" iff the property lies
# beyond a threshold) with its error rate and a bootstrap interval of the threshold over the points
# (`ferrolib.analysis.causes`). The notebook renders from the study's committed summaries; without them it uses
# the paper profile (one device) and says so.

# %% tags=["parameters"]
smoke: bool = False
output_dir: str = ""
results_dir: str = ""
summary_dir: str = ""
collapse_below: float = 0.5
n_workers: int = 2

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Markdown, display

from ferrolib import analysis, paths, plotting, sourcedata, study, sweep

plotting.style()
try:
    if smoke:
        raise FileNotFoundError("smoke profile: the smoke sweep instead of the study")
    result = study.load_study("study", summary_dir or None)
    used = f"the study's committed summaries ({result.sizes['device']} devices)"
except FileNotFoundError as reason:
    spec, options, _ = sweep.notebook_sweep("paper", smoke)
    result, how = sourcedata.sweep_results(spec, options, Path(results_dir) if results_dir else paths.RESULTS,
                                           sourcedata.summary_path(spec.name, summary_dir or None), n_workers)
    used = f"{spec.name} sweep, {how} ({reason})"
model = "piecewise"
accuracy = analysis.accuracy_by_point(result)
points = sorted({(d, w) for d, w in zip(accuracy["device"], accuracy["pulse_width"])})
properties = analysis.device_properties(points, model)
table = analysis.causes(accuracy, properties, collapse_below)
display(Markdown(f"Results: {used}; {len(points)} device-width points; collapse = final validation accuracy below "
                 f"{collapse_below:.0%}."))

# %% [markdown]
# ## Accuracy against each device property
#
# One point per device and pulse width (marker = device), plain SGD (red) and SP shifting (green); the dashed
# line is the fitted collapse threshold of plain SGD, the band its bootstrap interval.

# %%
names = list(analysis.PROPERTIES)
markers = dict(zip(sorted({d for d, _ in points}), "osD^v<>"))
joined = accuracy.merge(properties, on=["device", "pulse_width"])
fig, axes = plt.subplots(1, len(names), figsize=(3.4 * len(names), 3.4), sharey=True, layout="constrained")
for ax, name in zip(axes, names):
    for (algorithm, device), group in joined.groupby(["algorithm", "device"]):
        ax.scatter(group[name], 100 * group["accuracy"], marker=markers[device], s=30, alpha=0.8,
                   color=plotting.ALGORITHM_COLORS[algorithm], label=f"{algorithm}, {device}")
    fit = table[(table["algorithm"] == "sgd") & (table["property"] == name)].iloc[0]
    if np.isfinite(fit.threshold):
        ax.axvline(fit.threshold, ls="--", color=plotting.ALGORITHM_COLORS["sgd"], lw=1)
        ax.axvspan(fit.ci_low, fit.ci_high, color=plotting.ALGORITHM_COLORS["sgd"], alpha=0.1, lw=0)
    ax.axhline(100 * collapse_below, color="#888888", lw=0.6)
    ax.set(xlabel=analysis.PROPERTIES[name], title=f"sgd: rho = {fit.spearman_rho:+.2f}, errors {fit.error_rate:.0%}")
axes[0].set_ylabel("final validation accuracy (%)")
handles, labels = axes[0].get_legend_handles_labels()
fig.legend(handles, labels, loc="outside right upper", fontsize=7)
plotting.save(fig, "06_accuracy_vs_device_properties", output_dir,
              provenance=f"{used}; {result.attrs.get('data_label', '')}; fitted {model} models")
plt.show()

# %% [markdown]
# ## Which property predicts the collapse
#
# Per algorithm and property: the rank correlation with accuracy and its p-value, and the threshold model (the
# side of the threshold on which runs collapse, its error rate over the points, the bootstrap 95 % interval of the
# threshold). The property whose threshold separates the points with the fewest errors and the narrowest interval
# predicts the collapse best; with few points every interval is wide.

# %%
shown = table.assign(side=table["direction"].map({1.0: "above", -1.0: "below"}))
display(shown[["algorithm", "property", "spearman_rho", "p_value", "threshold", "side", "ci_low", "ci_high",
               "error_rate", "n_collapsed", "n_points"]].round(3))
sgd = table[table["algorithm"] == "sgd"].dropna(subset=["threshold"])
if len(sgd):
    best = sgd.sort_values(["error_rate", "p_value"]).iloc[0]
    display(Markdown(
        f"For plain SGD the best single predictor here is **{analysis.PROPERTIES[best.property]}**: collapse "
        f"{'above' if best.direction > 0 else 'below'} {best.threshold:.3g} (95 % bootstrap interval "
        f"{best.ci_low:.3g} to {best.ci_high:.3g}), {best.error_rate:.0%} of {best.n_points} points misclassified, "
        f"rank correlation {best.spearman_rho:+.2f} (p = {best.p_value:.2g})."))
else:
    display(Markdown("No property varies across these points: nothing to relate the collapse to."))

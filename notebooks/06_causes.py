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
# # 06 · The full study: claims on every device, why plain SGD collapses, and noise
#
# Four questions over the runs of `make study` (`sweeps/study.toml`: four measured devices at every pulse width
# they were measured at, mp, sgd and sps, seed 0; `sweeps/study-noise.toml`: ID170ZR5000 with each width's fitted
# cycle-to-cycle scatter and a stated 10 % device-to-device spread, seeds 0 to 2; both with exact reads, the
# `ideal` profile; `sweeps/study-paper.toml`: the four devices in the paper's configuration) and of the paper's
# comparison in its own configuration (`sweeps/paper.toml`):
#
# 1. Is the collapse of plain analog SGD in the paper's configuration the device's or the periphery's, on
#    ID170ZR5000 (three seeds) and on every measured device (one seed)?
# 2. Do the paper's claims hold on every device, and pooled over devices?
# 3. Which property of the fitted device predicts the collapse of plain analog SGD (and of SP shifting)?
# 4. Does device noise make shorter pulses need more epochs, as the paper says?
#
# Every number is computed by `ferrolib.analysis`; this notebook only displays it. It renders from the study's
# committed summaries (`data/results/study-*.nc`) and says which sweeps are missing; without any, it uses the
# ideal sweep (one device) and says so. The relative target (99 % of fp's final accuracy) takes fp from the
# ideal sweep (`analysis.fp_reference`): fp programs no device, so its run of one seed serves every device.

# %% tags=["parameters"]
smoke: bool = False
output_dir: str = ""
results_dir: str = ""
summary_dir: str = ""
results_source: str = "auto"  # "runs": never render from the committed summary; "summary": never train
collapse_below: dict | None = None  # per rule; None: comparison.COLLAPSE_BELOW (sgd near chance, sps 20 points under mp)
target: float | None = None  # None: the documented defaults of analysis.ClaimThresholds
relative_target: bool | None = None
confidence: float | None = None
n_workers: int = 2

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import xarray as xr
from IPython.display import Markdown, display

from ferrolib import analysis, comparison, plotting, store, study

plotting.style()
thresholds = analysis.ClaimThresholds.overriding(target=target, relative=relative_target, confidence=confidence)
collapse_below = collapse_below or {a: comparison.COLLAPSE_BELOW[a] for a in ("sgd", "sps")}
spec, _, _, ideal, ideal_used = store.notebook_results("ideal", smoke, results_source, results_dir, summary_dir,
                                                      n_workers, write=False)
reference = analysis.fp_reference(ideal)
parts = study.plan()
try:
    if smoke:
        raise FileNotFoundError("smoke profile: the smoke sweep instead of the study")
    result, used = study.committed_study("study", summary_dir or None, parts)
except FileNotFoundError as reason:
    result = ideal
    used = f"{spec.name} sweep, {ideal_used} ({reason})"
study_reference = None if "fp" in result["algorithm"].values else reference
display(Markdown(f"Results: {used}. Noise-free reference and fp: {spec.name} sweep, {ideal_used}. "
                 f"Target: {thresholds.describe_target()}."))

# %% [markdown]
# ## The collapse in the paper's configuration: the device or the periphery?
#
# The paper attributes plain SGD's collapse at short pulses to the device. Its configuration also reads through
# aihwkit's default periphery (7-bit inputs, 9-bit outputs with noise 0.06 and a bound at 12, noise and bound
# management) and maps fc1 onto two tiles with a digital bias. The same grid with exact reads (the ideal sweep)
# separates the two: per rule and pulse width, where each ends against the collapse line (Student-t interval of
# the mean over three seeds), the accuracy the periphery costs (ideal minus paper, Welch interval) and its
# verdict against the accuracy margin. A collapse with the paper's reads only is the periphery's; one with exact
# reads too is the device's (with the caveat that the two profiles also differ in their fits and data: the
# paper's piecewise fits and full MNIST against ferrolib's and the subset).

# %%
_, _, _, paper, paper_config_used = store.notebook_results("paper", smoke, results_source, results_dir, summary_dir,
                                                            n_workers, write=False)
periphery = comparison.periphery_effect(paper, ideal, collapse_below, thresholds)
display(Markdown("| rule | pulse width | paper | ideal | cost of the periphery [95 % interval] | verdict | "
                 "paper ends | ideal ends | collapse due to |\n|---|---|---|---|---|---|---|---|---|\n" + "\n".join(
                     f"| {r.algorithm} | {plotting.format_pulse_width(r.pulse_width)} | {r.paper:.3f} | "
                     f"{r.ideal:.3f} | {r.cost:+.3f} [{r.ci_low:+.3f}, {r.ci_high:+.3f}] | **{r.verdict}** | "
                     f"{r.paper_ends} | {r.ideal_ends} | {r.cause} |" for r in periphery.itertuples())))
causes_of = periphery.groupby("algorithm")["cause"].value_counts().unstack(fill_value=0)
display(Markdown("Collapses by cause over the pulse widths: " + "; ".join(
    f"**{a}**: " + ", ".join(f"{n} {c}" for c, n in row.items() if n) for a, row in causes_of.iterrows())
    + f". Paper configuration: {paper_config_used}."))

# %% [markdown]
# ### On every measured device
#
# The same question over the study: every device at every width it was measured at, in the paper's configuration
# (`sweeps/study-paper.toml`) and with exact reads (`sweeps/study.toml`), one seed each, so each point is a single
# reading against the collapse line, not an interval (`comparison.study_by_profile`). Solid lines: the paper's
# configuration; dashed: exact reads; grey: the collapse line of each rule.

# %%
try:
    if smoke:
        raise FileNotFoundError("smoke profile: the smoke sweeps instead of the study")
    paper_study, paper_study_used = study.committed_study("study-paper", summary_dir or None, parts)
    studies, ideal_study_used = {"paper": paper_study, "ideal": result}, used
except FileNotFoundError as reason:
    paper_study_used = f"seed 0 of the paper sweep, {paper_config_used} ({reason})"
    studies = {"paper": paper.isel(seed=[0]), "ideal": ideal.isel(seed=[0])}
    ideal_study_used = f"seed 0 of the ideal sweep, {ideal_used}"
by_point = comparison.study_by_profile(studies, collapse_below)
shown_rules = [a for a in ("mp", "sgd", "sps") if a in set(by_point["algorithm"])]
study_devices = sorted(set(by_point["device"]))
fig, axes = plt.subplots(1, len(study_devices), figsize=(3.4 * len(study_devices), 3.2), sharey=True,
                         squeeze=False, layout="constrained")
for ax, device in zip(axes[0], study_devices):
    for algorithm in shown_rules:
        rows = by_point[(by_point["device"] == device) & (by_point["algorithm"] == algorithm)]
        color = plotting.ALGORITHM_COLORS.get(algorithm)
        for profile, line in (("paper", "-"), ("ideal", "--")):
            here = rows.dropna(subset=[profile])
            ax.plot(here["pulse_width"], 100 * here[profile], line, marker="o", ms=3.5, color=color,
                    label=f"{algorithm}, {profile}")
        if algorithm in collapse_below:
            ax.axhline(100 * collapse_below[algorithm], color="#999999", lw=0.6)
    ax.set_xscale("log")
    ax.set_title(device, fontsize=10)
    ax.set_xlabel("pulse width (s)")
axes[0][0].set_ylabel("final test accuracy (%)")
handles, labels = axes[0][0].get_legend_handles_labels()
fig.legend(handles, labels, loc="outside right upper", fontsize=8)
plotting.save(fig, "06_study_paper_vs_ideal", output_dir,
              provenance=f"paper: {paper_study_used}; ideal: {ideal_study_used}")
plt.show()
collapses = by_point.dropna(subset=["cause"]).groupby("algorithm")["cause"].value_counts().unstack(fill_value=0)
display(Markdown(f"Results: paper configuration: {paper_study_used}; ideal: {ideal_study_used}. Collapses by "
                 "cause over the device-width points: " + "; ".join(
    f"**{a}**: " + ", ".join(f"{n} {c}" for c, n in row.items() if n) for a, row in collapses.iterrows()) + "."))

# %% [markdown]
# ## The claims per device and pooled
#
# The study trains one seed per device, so a per-device interval over seeds does not exist. The accuracy-gap
# claims (sgd vs mp, sps vs sgd, sps vs mp) therefore take the paired difference at every (device, pulse width)
# point as the unit (`analysis.claims(..., unit="point")`): per device a Student-t interval over its widths,
# pooled one over every device-width point. Widths of one device share that device, so these intervals are
# narrower than independent draws would give; the device-level check is the per-device rows, which must agree.
# Claims comparing the shortest with the longest width have one value per device: per device they are
# inconclusive by construction (one unit), pooled their interval is over the devices (n = number of devices).

# %%
table = analysis.claims(result, thresholds, unit="point", reference=study_reference)
analysis.write_claims(table, plotting.output_dir(output_dir), "06_study_claims",
                      {"data": used, "unit": "paired difference per (device, pulse width) point"})
display(Markdown(analysis.claims_markdown(table)))

# %% [markdown]
# ## Accuracy against each device property
#
# One point per device and pulse width (colour = device), plain SGD (top) and SP shifting (bottom), against the
# fitted piecewise model's distance of the symmetry point from 0 (in units of the weight range w_max - w_min),
# the asymmetry of the up and down steps at w = 0 (the drift the initial weights feel), the number of states and
# the cycle-to-cycle scatter of the fit. Collapse (grey line, `collapse_below`) means, for plain SGD, ending near
# chance (below 15 %; ten classes give 10 %), and for SP shifting ending more than 20 points under mixed
# precision's 95 % (below 75 %). The model of each panel: the one-threshold classifier "collapsed iff the
# property lies beyond t" with the fewest errors (dashed line) and the 95 % percentile bootstrap interval of t
# over resampled points (band); no line where every point, or none, collapsed.

# %%
model = "piecewise"
accuracy = analysis.accuracy_by_point(result)
points = sorted({(d, w) for d, w in zip(accuracy["device"], accuracy["pulse_width"])})
properties = analysis.device_properties(points, model)
causes = analysis.causes(accuracy, properties, collapse_below)
joined = accuracy.merge(properties, on=["device", "pulse_width"])
devices = sorted({d for d, _ in points})
colors = dict(zip(devices, plt.get_cmap("tab10").colors))
names = list(analysis.PROPERTIES)
rule_algorithms = [a for a in ("sgd", "sps") if a in set(joined["algorithm"])]
fig, axes = plt.subplots(len(rule_algorithms), len(names), figsize=(3.3 * len(names), 3.0 * len(rule_algorithms)),
                         sharey=True, squeeze=False, layout="constrained")
for row, algorithm in zip(axes, rule_algorithms):
    here = joined[joined["algorithm"] == algorithm]
    for ax, name in zip(row, names):
        for device, group in here.groupby("device"):
            ax.scatter(group[name], 100 * group["accuracy"], s=32, alpha=0.85, color=colors[device], label=device)
        fit = causes[(causes["algorithm"] == algorithm) & (causes["property"] == name)].iloc[0]
        if np.isfinite(fit.threshold):
            ax.axvline(fit.threshold, ls="--", color="#444444", lw=1)
            ax.axvspan(fit.ci_low, fit.ci_high, color="#444444", alpha=0.12, lw=0)
        ax.axhline(100 * collapse_below[algorithm], color="#888888", lw=0.6)
        ax.set_title(f"{algorithm}: rho {fit.spearman_rho:+.2f}, {fit.error_rate:.0%} misclassified", fontsize=9)
        ax.set_xlabel(analysis.PROPERTIES[name])
    row[0].set_ylabel(f"{algorithm}: final validation accuracy (%)")
handles, labels = axes[0][0].get_legend_handles_labels()
fig.legend(handles, labels, loc="outside right upper", fontsize=8)
plotting.save(fig, "06_accuracy_vs_device_properties", output_dir,
              provenance=f"{used}; {result.attrs.get('data_label', '')}; fitted {model} models; "
                         f"{len(points)} device-width points")
plt.show()

# %% [markdown]
# ## Which property predicts the collapse
#
# Per algorithm and property: Spearman's rank correlation with accuracy and its p-value, and the threshold model
# (the side of the threshold on which runs collapse, its error rate over the points, the bootstrap 95 % interval
# of the threshold). The property whose threshold separates the points with the fewest errors and the narrowest
# interval predicts the collapse best. The points are few, and the widths of one device are not independent.

# %%
shown = causes.assign(side=causes["direction"].map({1.0: "above", -1.0: "below"}))
display(shown[["algorithm", "property", "spearman_rho", "p_value", "threshold", "side", "ci_low", "ci_high",
               "error_rate", "n_collapsed", "n_points"]].round(3))
for algorithm in rule_algorithms:
    ranked = causes[causes["algorithm"] == algorithm].dropna(subset=["threshold"])
    if not len(ranked) or not 0 < ranked["n_collapsed"].iloc[0] < ranked["n_points"].iloc[0]:
        display(Markdown(f"**{algorithm}**: no collapse to explain, or every point collapsed "
                         f"({int(causes.loc[causes['algorithm'] == algorithm, 'n_collapsed'].max())} of "
                         f"{len(points)} points below {collapse_below[algorithm]:.0%})."))
        continue
    best = ranked.sort_values(["error_rate", "p_value"]).iloc[0]
    display(Markdown(
        f"**{algorithm}**: the best single predictor here is **{analysis.PROPERTIES[best.property].replace(chr(10), ' ')}**: collapse "
        f"{'above' if best.direction > 0 else 'below'} {best.threshold:.3g} (95 % bootstrap interval "
        f"{best.ci_low:.3g} to {best.ci_high:.3g}), {best.error_rate:.0%} of {best.n_points} points misclassified "
        f"({best.n_collapsed} collapsed), rank correlation {best.spearman_rho:+.2f} (p = {best.p_value:.2g}); "
        f"{len(devices)} device(s)."))

# %% [markdown]
# ## Noise and "shorter pulses need more epochs"
#
# Epochs to reach the target against pulse width, noise-free (seeds 0 to 2) and with each width's fitted
# cycle-to-cycle scatter and 10 % device-to-device spread (seeds 0 to 2), in both profiles: with ideal reads
# (`sweeps/ideal.toml` against `sweeps/study-noise.toml`) and in the paper's configuration (`sweeps/paper.toml`
# against `sweeps/study-noise-paper.toml`, the paper's fits and their c2c; mp and sps, as plain SGD stays at
# chance there): mean over the seeds that reached the target, bars one standard deviation, and "k/n" where only
# k of n seeds reached it. Below each figure, the claim's row from `analysis.claims` for each condition: epochs at
# the shortest minus the longest width per seed (a seed that never reaches counts as epochs + 1), its 95 %
# Student-t interval over seeds and the verdict.

# %%
def load_noisy(prefix: str) -> tuple[xr.Dataset | None, str]:
    """The committed noise grid ``prefix`` (``study.committed_noise``) and a line saying what it holds."""
    try:
        if smoke:
            raise FileNotFoundError("smoke profile: no noisy runs")
        return study.committed_noise(prefix, summary_dir or None, parts)
    except FileNotFoundError as reason:
        return None, f"no noisy runs ({reason})"


def epochs_against_width(noise_free: xr.Dataset, noise_free_used: str, prefix: str, figure: str) -> None:
    """Epochs to target against pulse width, noise-free and with the noise grid ``prefix``, and the claim's rows."""
    noisy, noisy_used = load_noisy(prefix)
    baseline = analysis.fp_reference(noise_free)
    conditions = {"noise-free": noise_free}
    if noisy is not None:
        conditions["c2c as measured, d2d 10 %"] = noisy
    epochs = pd.concat([analysis.epochs_by_width(ds, thresholds, baseline).assign(condition=name)
                        for name, ds in conditions.items()], ignore_index=True)
    trend = pd.concat([analysis.claims(ds, thresholds, reference=baseline).assign(condition=name)
                       for name, ds in conditions.items()], ignore_index=True)
    trend = trend[trend["claim"] == analysis.MORE_EPOCHS_CLAIM]
    reached = epochs.groupby("algorithm")["n_reached"].sum()
    epoch_algorithms = [a for a in ("mp", "sps", "sgd") if reached.get(a, 0) > 0] or ["mp"]  # mp: an empty panel
    display(Markdown(f"Never reached {thresholds.describe_target()} at any width, in any condition: "
                     f"{', '.join(a for a in reached.index if reached[a] == 0) or 'none'}."))
    fig, axes = plt.subplots(1, len(epoch_algorithms), figsize=(4.2 * len(epoch_algorithms), 3.4), sharey=True,
                             squeeze=False, layout="constrained")
    for ax, algorithm in zip(axes[0], epoch_algorithms):
        for (name, group), style in zip(epochs[epochs["algorithm"] == algorithm].groupby("condition", sort=False),
                                        ({"ls": "-", "marker": "o"}, {"ls": "--", "marker": "s"})):
            ax.errorbar(group["pulse_width"], group["epochs_mean"], yerr=group["epochs_std"].fillna(0), capsize=3,
                        color=plotting.ALGORITHM_COLORS[algorithm], alpha=1.0 if style["ls"] == "-" else 0.65,
                        label=name, **style)
            for _, point in group[group["n_reached"] < group["n_seeds"]].iterrows():
                ax.annotate(f"{point.n_reached}/{point.n_seeds}", (point.pulse_width, point.epochs_mean
                            if np.isfinite(point.epochs_mean) else 1), fontsize=7, textcoords="offset points",
                            xytext=(4, 4))
        ax.set(xscale="log", xlabel="pulse width (s)", title=algorithm)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel(f"epochs to {thresholds.describe_target()}")
    plotting.save(fig, figure, output_dir, provenance=f"noise-free: {noise_free_used}; noisy: {noisy_used}; "
                                                      f"{noise_free.attrs.get('data_label', '')}")
    plt.show()
    display(trend[["condition", "algorithm", "estimate", "ci_low", "ci_high", "n_units", "verdict", "measured"]]
            .round(3))


display(Markdown("**With ideal reads**"))
epochs_against_width(ideal, ideal_used, "study-noise", "06_epochs_vs_pulse_width_noise")
display(Markdown("**In the paper's configuration**"))
epochs_against_width(paper, paper_config_used, "study-noise-paper", "06_epochs_vs_pulse_width_noise_paper")

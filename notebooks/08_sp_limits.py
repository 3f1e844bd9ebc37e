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
# # 08 · What limits symmetry-point shifting at long pulses
#
# Symmetry-point shifting (`sps`) pairs every device with a static reference at its symmetry point w*, so that the
# implicit pull of plain analog SGD toward w* becomes a pull toward w_eff = 0. On ID170ZR5000 it reaches about
# 90 % test accuracy with 20 ns pulses but only about 65 % with 20 µs and 200 µs pulses (notebook 03), while
# mixed precision stays at 94.5 % at every width. This notebook tests four candidate causes, each with runs or a
# single-device experiment and a figure:
#
# * **(a) where the reference sits**: the analytic root of dw_up = dw_down reached from w = 0 (today's) against
#   the point where the experimenter's protocol (n up, n down, alternating pulses) ends;
# * **(b) where the weights start**: device states around the reference (today's: w_eff starts at the initial
#   weights) against device states around w_device = 0 (w_eff starts shifted by minus the reference);
# * **(c) the devices' restoring force**: how strongly zero-mean pulses pull a device back to w*, the slope of
#   dw_up - dw_down there; tested by scaling the step asymmetry (and with it that slope) by 0.3, keeping the
#   mean step and the symmetry point;
# * **(d) the model outside the measured states**: fitted piecewise models can have a second, spurious stable root
#   (the node floor and the polynomial held constant beyond the measured states), and devices may wander there.
#
# The runs are `sweeps/sp-limits.toml`: sps on ID170ZR5000 at 20 ns (the control), 20 µs and 200 µs, three seeds,
# the ideal profile (exact reads, `sweeps/ideal.toml`), one sweep per variant (the default variant is that
# sweep's own sps runs). Verdicts and effects come from `ferrolib.analysis` and `ferrolib.splimits_analysis`;
# without the runs in `results/` the notebook renders from `data/results/sp-limits.nc`.

# %% tags=["parameters"]
smoke: bool = False
output_dir: str = ""
results_dir: str = ""
summary_dir: str = ""
results_source: str = "auto"  # "runs": never render from the committed summary; "summary": never train
n_workers: int = 2

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from ferrolib import analysis, plotting, provenance, sourcedata, splimits, splimits_analysis, symmetry
from ferrolib.catalog import get_device

import torch  # noqa: E402  (after ferrolib, which sets the thread environment before torch loads)

plotting.style()
profile = "smoke" if smoke else "ideal"
result, used = splimits.load(splimits.SWEEP_CONFIG, smoke, results_source, results_dir or None, summary_dir or None,
                             n_workers)
device_id = str(result["device"].values[0])
widths = [float(w) for w in result["pulse_width"].values]
names = [str(v) for v in result["variant"].values]
final = 100 * result["test_acc"].isel(epoch=-1).sel(device=device_id, algorithm="sps")
effects = splimits_analysis.variant_effects(result)
ideal = provenance.read_netcdf(sourcedata.summary_path("ideal"))  # the committed ideal sweep: sps at 5 widths
ideal_widths = [float(w) for w in ideal["pulse_width"].values]
ideal_sps = 100 * ideal["test_acc"].isel(epoch=-1).sel(device=device_id, algorithm="sps")
properties = splimits_analysis.restoring_properties(device_id, ideal_widths)
fits = {w: get_device(device_id, w) for w in ideal_widths}
source = (f"{device_id} measured fits; {result.attrs['data_label']}; profile {profile}, "
          f"{result.sizes['seed']} seed(s); bars = mean, whiskers = min..max over seeds")
display(Markdown(f"Profile **{profile}**: variants {', '.join(names)}; widths "
                 f"{', '.join(plotting.format_pulse_width(w) for w in widths)}; seeds "
                 f"{[int(s) for s in result['seed'].values]}. Results: {used}."))
LABELS = {"default": "default (analytic w*, states around it)", "protocol_reference": "(a) reference = protocol",
          "zero_protocol_reference": "(a') reference = train from 0",
          "device_zero_init": "(b) states start around 0", "weak_restoring": "(c) asymmetry x 0.3"}


def bars(ax, variant_names: list[str], accuracy=None, labels: dict | None = None) -> None:
    """Final test accuracy (%, variant x pulse_width x seed; default: this study's) per width for
    ``variant_names``: mean over seeds, whiskers min..max."""
    accuracy = final if accuracy is None else accuracy
    labels = LABELS if labels is None else labels
    all_names = [str(v) for v in accuracy["variant"].values]
    bar_widths = [float(w) for w in accuracy["pulse_width"].values]
    width = 0.8 / len(variant_names)
    for index, name in enumerate(variant_names):
        values = accuracy.sel(variant=name)
        mean = values.mean("seed").values
        positions = np.arange(len(bar_widths)) + (index - (len(variant_names) - 1) / 2) * width
        ax.bar(positions, mean, width, label=labels.get(name, name), color=f"C{all_names.index(name)}",
               yerr=[mean - values.min("seed").values, values.max("seed").values - mean], capsize=2)
    ax.set_xticks(np.arange(len(bar_widths)), [plotting.format_pulse_width(w) for w in bar_widths])
    ax.set(xlabel="pulse width", ylabel="final test accuracy (%)", ylim=(0, 100))
    ax.legend(loc="lower left")


def effect_lines(variant: str) -> str:
    """The variant's effects as a markdown table (from ``splimits_analysis.variant_effects``)."""
    rows = effects[effects["variant"] == variant]
    return "\n".join([f"**{LABELS.get(variant, variant)}** against the default (final test accuracy, %):", "",
                      "| width | default | variant | effect (points) | 95 % interval | gap recovered | verdict |",
                      "|---|---|---|---|---|---|---|"] + [
        f"| {plotting.format_pulse_width(r.pulse_width)} | {100 * r.baseline:.1f} | {100 * r.accuracy:.1f} | "
        f"{100 * r.effect:+.1f} | [{100 * r.ci_low:+.1f}, {100 * r.ci_high:+.1f}] | "
        f"{'' if np.isnan(r.recovered) else f'{100 * r.recovered:.0f} %'} | **{r.verdict}** |"
        for r in rows.itertuples()])


# %% [markdown]
# ## (a) Where the reference sits
#
# Left: the nominal models' symmetry point by the four methods of `FittedDevice.symmetry_points` at every
# measured width: the analytic root reached from w = 0 (today's reference), an alternating train started at 0, the
# analytic root reached from w_min and the experimenter's full protocol. Right: final test accuracy with the
# reference at the analytic point (default), where the experimenter's protocol ends (a) and where an alternating
# train started at w = 0 settles (a'). Where two references agree bit for bit their runs are identical, so a
# variant narrowed to fewer widths in the sweep file takes the other's runs there (listed under the figure).

# %%
methods = list(symmetry.SYMMETRY_POINT_METHODS)
points = pd.DataFrame({w: fits[w].symmetry_points(1000 if smoke else 4000) for w in ideal_widths}).T
fig, (ax, ax_bars) = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
for index, method in enumerate(methods):
    ax.plot(ideal_widths, points[method], ["o-", "s--", "^:", "v-.", "D-"][index], label=method, ms=6 - index)
ax.set(xscale="log", xlabel="pulse width (s)", ylabel="symmetry point w*", title=f"{device_id}: symmetry points")
ax.axhline(0, color="#888888", lw=0.8)
ax.legend(loc="lower left")
bars(ax_bars, [n for n in ("default", "protocol_reference", "zero_protocol_reference") if n in names])
ax_bars.set_title("reference at the analytic point vs at the protocol's end")
plotting.save(fig, "08_reference", output_dir, provenance=source)
plt.show()
display(Markdown(f"Runs shared by identical references: {result.attrs.get('filled') or 'none'}.\n\n"
                 + effect_lines("protocol_reference") + "\n\n" + effect_lines("zero_protocol_reference")))

# %% [markdown]
# ## (b) Where the weights start
#
# Today's SP shifting programs every device to its reference plus the initial weight, so the effective weights
# start at the initial weights (centred on 0). The variant programs the devices to the initial weights themselves,
# so the effective weights start at minus the reference (listed under the figure).

# %%
fig, ax = plt.subplots(figsize=(6, 3.8), layout="constrained")
bars(ax, [n for n in ("default", "device_zero_init") if n in names])
ax.set_title("initial device states around the reference vs around 0")
plotting.save(fig, "08_initial_weights", output_dir, provenance=source)
plt.show()
display(Markdown("Initial shift of the effective weights in the variant (minus the reference): " + ", ".join(
    f"{plotting.format_pulse_width(w)} {-fits[w].symmetry_point:+.2f}" for w in widths if w in fits)
    + ".\n\n" + effect_lines("device_zero_init")))

# %% [markdown]
# ## (c) The restoring force at the symmetry point
#
# Under zero-mean pulses a device drifts by E[dw] = f(w)/2 per pulse, f = dw_up - dw_down, so near w* it loses the
# fraction -f'(w*)/2 of its distance from w* with every pulse: the implicit decay that SP shifting turns into a
# pull toward w_eff = 0. Left: f around w* in units of the mean step there. Middle: a single-device experiment
# (no training): 2,000 copies of each model under random pulses, up with probability 1/2 + bias; the mean state
# after the walk has settled, minus w*, is the effective weight a steady gradient bias can hold. Right: final sps
# accuracy of the ideal sweep (five widths, three seeds) against the decay per pulse, with the variant whose
# asymmetry, and so its decay, is scaled by 0.3 (open markers; same widths).

# %%
offsets = np.linspace(-0.6, 0.6, 121)
biases = np.linspace(-0.4, 0.4, 5 if smoke else 9)
walk = {}
for width in ideal_widths:
    nominal = fits[width].config.devices(torch.float64)
    w_star = fits[width].symmetry_point
    generator = torch.Generator().manual_seed(0)
    walk[width] = [float(symmetry.random_pulse_walk(nominal, w_star, float(b), 100 if smoke else 400,
                                                    200 if smoke else 2000, generator)[50 if smoke else 200:].mean())
                   - w_star for b in biases]
fig, (ax_f, ax_walk, ax_acc) = plt.subplots(1, 3, figsize=(14, 3.9), layout="constrained")
for width in ideal_widths:
    nominal = fits[width].config.devices(torch.float64)
    row = properties.set_index("pulse_width").loc[width]
    states = torch.as_tensor(row.w_star + offsets)
    force = (nominal.dw_up(states) - nominal.dw_down(states)).numpy() / row.mean_step
    color, name = plotting.pulse_width_color(width), plotting.format_pulse_width(width)
    ax_f.plot(offsets, force, color=color, label=f"{name}: f'(w*)/2 = {row.restoring_slope / 2:+.3f}")
    ax_walk.plot(biases, walk[width], "o-", color=color, ms=3, label=name)
ax_f.set(xlabel="w - w* (device units)", ylabel="(dw_up - dw_down) / mean step at w*",
         title="restoring force around the symmetry point")
ax_f.axhline(0, color="#888888", lw=0.8)
ax_f.legend(loc="upper right", fontsize=7)
ax_walk.set(xlabel="pulse bias (P(up) - 1/2)", ylabel="held state - w*", title="single device: state a bias holds")
ax_walk.axhline(0, color="#888888", lw=0.8)
ax_walk.legend(loc="upper left", fontsize=7)
decay = properties.set_index("pulse_width")["decay_per_pulse"]
for width in ideal_widths:
    values = ideal_sps.sel(pulse_width=width)
    ax_acc.errorbar(decay[width], float(values.mean()), yerr=[[float(values.mean() - values.min())],
                    [float(values.max() - values.mean())]], fmt="o", color=plotting.pulse_width_color(width),
                    capsize=2, label=f"{plotting.format_pulse_width(width)} (ideal profile)")
if "weak_restoring" in names:
    for width in widths:
        values = final.sel(variant="weak_restoring", pulse_width=width)
        ax_acc.errorbar(0.3 * decay[width], float(values.mean()), yerr=[[float(values.mean() - values.min())],
                        [float(values.max() - values.mean())]], fmt="o", mfc="white",
                        color=plotting.pulse_width_color(width), capsize=2)
ax_acc.set(xlabel="decay per zero-mean pulse, -f'(w*)/2", ylabel="final sps test accuracy (%)",
           title="accuracy against the restoring force (open: asymmetry x 0.3)")
ax_acc.legend(loc="lower left", fontsize=7)
plotting.save(fig, "08_restoring_force", output_dir, provenance=source)
plt.show()
ranking = splimits_analysis.property_ranking(ideal_sps.mean("seed").to_series(), properties)
display(properties.assign(width=[plotting.format_pulse_width(w) for w in properties["pulse_width"]])
        .drop(columns="pulse_width").set_index("width").style.format(precision=3))
display(Markdown("Spearman rank correlation of the ideal profile's sps accuracy with each property over the "
                 f"{int(ranking['n_widths'].iloc[0])} widths: " + "; ".join(
                     f"{r.property} ρ = {r.spearman_rho:+.2f} (p = {r.p_value:.2f})" for r in ranking.itertuples())
                 + ". Five widths cannot tell correlated properties apart (the runs are noise-free, so the fits' c2c "
                   "cannot act in them at all); the runs with the asymmetry scaled change the restoring force alone "
                   "(mean step, bounds and symmetry point unchanged):\n\n" + effect_lines("weak_restoring")))

# %% [markdown]
# ## (d) The model outside the measured states
#
# The step difference f = dw_up - dw_down of every nominal model over its whole state range, with the interval
# where both steps come from the measured ramps (shaded; beyond it the model runs on the node floor or on the
# polynomial held constant) and its stable roots (dots; `FittedDevice.stable_roots`, where a drift below 1e-4
# dw_min per pulse counts as none): a second stable root is the spurious one the protocol from the bottom can
# end in. At 20 ns it is a plateau where both steps sit at the node floor and differ by about 1e-7 dw_min, so the
# protocol stalls at -0.90 although the exact analytic root from w_min is 0.59. The table gives the fraction of the devices whose state after the last epoch lies
# outside the measured interval, per variant and layer (mean over seeds).

# %%
fig, axes = plt.subplots(1, len(ideal_widths), figsize=(3.1 * len(ideal_widths), 3.2), sharey=True,
                         layout="constrained")
for ax, width in zip(axes, ideal_widths):
    nominal = fits[width].config.devices(torch.float64)
    states = torch.linspace(float(nominal.w_min), float(nominal.w_max), 400, dtype=torch.float64)
    ax.plot(states, (nominal.dw_up(states) - nominal.dw_down(states)) / nominal.dw_min, color="C0")
    low, high = fits[width].measured_states()
    ax.axvspan(low, high, color="#dddddd", alpha=0.6, lw=0)
    roots = fits[width].stable_roots()
    ax.plot(roots, np.zeros_like(roots), "o", color="C3", ms=5)
    ax.axhline(0, color="#888888", lw=0.8)
    ax.set(title=f"{plotting.format_pulse_width(width)}: {roots.size} stable root(s)", xlabel="state w")
axes[0].set_ylabel("(dw_up - dw_down) / dw_min")
plotting.save(fig, "08_measured_states", output_dir, provenance=f"{device_id} fitted piecewise models")
plt.show()
outside = {}
for name in names:
    for width in widths:
        low, high = fits[width].measured_states() if width in fits else get_device(device_id, width).measured_states()
        hist = result["final_device_hist"].sel(variant=name, device=device_id, algorithm="sps", pulse_width=width)
        share = splimits_analysis.outside_fraction(hist, result["bin_center"], low, high).mean("seed")
        outside[(LABELS.get(name, name), plotting.format_pulse_width(width))] = {
            str(layer): f"{100 * float(share.sel(layer=layer)):.2f} %" for layer in share["layer"].values}
display(pd.DataFrame(outside).T)

# %% [markdown]
# ## Verdict
#
# Which candidate explains the drop: a variant "explains" it at a width when the whole 95 % interval of its
# effect (paired over seeds) lies above half the gap between the default at 20 ns and at that width
# (`splimits_analysis.EXPLAINS_FRACTION`); "fails" when the whole interval lies below.

# %%
verdicts = effects[effects["verdict"] != "control"]
display(Markdown(
    "| variant | width | effect (points) | 95 % interval | gap recovered | verdict |\n|---|---|---|---|---|---|\n"
    + "\n".join(f"| {LABELS.get(r.variant, r.variant)} | {plotting.format_pulse_width(r.pulse_width)} | "
                f"{100 * r.effect:+.1f} | [{100 * r.ci_low:+.1f}, {100 * r.ci_high:+.1f}] | "
                f"{100 * r.recovered:.0f} % | **{r.verdict}** |" for r in verdicts.itertuples())))
explaining = sorted({LABELS.get(r.variant, r.variant) for r in verdicts.itertuples() if r.verdict == analysis.HOLDS})
algorithmic = tuple(n for n in ("protocol_reference", "zero_protocol_reference", "device_zero_init") if n in names)
keep = splimits_analysis.defensible_variant(effects, algorithmic)
comparison = "; ".join(f"{LABELS.get(r.variant, r.variant)} at {plotting.format_pulse_width(r.pulse_width)}: "
                       f"{r.vs_baseline}" for r in effects[effects["variant"].isin(algorithmic)].itertuples())
display(Markdown(
    f"Variants that explain the drop at some long width: **{', '.join(explaining) or 'none'}**.\n\n"
    f"Among the algorithm's own choices (the reference, the initial states; (c) changes the device and is a test "
    f"of the cause, not an option for real devices), the one to keep is **{LABELS.get(keep, keep)}** "
    f"(`splimits_analysis.defensible_variant`: better than the default at some width, worse at none; else the "
    "default). "
    f"Against the default: {comparison}."))


# %% [markdown]
# ## In the paper's configuration
#
# In the `paper` profile (aihwkit's default periphery and mapping, the paper's fits and its SP-shifting reference,
# where an alternating train from w = 0 settles) SP shifting does not drop at long pulses: 83 to 85 % at every
# width (notebook 03). `sweeps/sp-limits-paper.toml` asks which ingredient keeps it up: each variant puts one
# ingredient of the ideal profile back into the paper's configuration, at 20 ns and 200 us, six seeds: the
# analytic reference, ferrolib's own piecewise fit, exact reads. Effects are paired over seeds against the paper's
# configuration (95 % Student-t intervals, `splimits_analysis.variant_effects`); "worse" / "better" when the whole
# interval lies below / above 0.

# %%
PAPER_LABELS = {"default": "paper's configuration", "analytic_reference": "analytic reference (ideal's)",
                "ferrolib_fit": "ferrolib's piecewise fit", "exact_reads": "exact reads (no periphery)"}
paper_result, paper_used = splimits.load(splimits.PAPER_SWEEP_CONFIG, smoke, results_source, results_dir or None,
                                         summary_dir or None, n_workers)
paper_final = 100 * paper_result["test_acc"].isel(epoch=-1).sel(device=device_id, algorithm="sps")
paper_effects = splimits_analysis.variant_effects(paper_result)
fig, ax = plt.subplots(figsize=(8, 3.8), layout="constrained")
bars(ax, [str(v) for v in paper_result["variant"].values], paper_final, PAPER_LABELS)
ax.set_title("SP shifting in the paper's configuration, one ideal ingredient at a time")
plotting.save(fig, "08_paper_configuration_variants", output_dir or None,
              provenance=f"{device_id}; {paper_result.attrs['data_label']}; sweeps/sp-limits-paper.toml; "
                         f"{paper_result.sizes['seed']} seed(s); bars = mean, whiskers = min..max over seeds")
rows = [f"| {PAPER_LABELS.get(r.variant, r.variant)} | {plotting.format_pulse_width(r.pulse_width)} | "
        f"{100 * r.baseline:.1f} | {100 * r.accuracy:.1f} | {100 * r.effect:+.1f} | "
        f"[{100 * r.ci_low:+.1f}, {100 * r.ci_high:+.1f}] | **{r.vs_baseline}** |" for r in paper_effects.itertuples()]
display(Markdown(f"Runs: {paper_used}.\n\n| ingredient of the ideal profile | width | paper's configuration | with it "
                 "| effect (points) | 95 % interval | against the paper's |\n|---|---|---|---|---|---|---|\n"
                 + "\n".join(rows)))

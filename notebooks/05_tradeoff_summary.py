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
# against how many epochs (or samples) it needs. Then every claim of Garg et al. 2025 next to what this
# reproduction measured, with a verdict computed from the results by `ferrolib.sweep.claims`.
# The runs are the same cached runs as in notebook 04 (same sweep file, same configuration hashes).

# %% tags=["parameters"]
smoke: bool = False
output_dir: str = ""
results_dir: str = ""
sweep_config: str = "paper"
n_seeds: int = 1
target: float = 0.95
relative_target: bool = False
tolerance: float = 0.01
n_workers: int = 2

# %%
from pathlib import Path

import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from ferrolib import energy, paths, plotting, sweep

plotting.style()
profile = "smoke" if smoke else "full"
spec, options, config_path = sweep.notebook_sweep(sweep_config, smoke, n_seeds)
results = Path(results_dir) if results_dir else paths.RESULTS
result = sweep.run_sweep(spec, results, n_workers=n_workers, energy_model=options["energy_model"])
conv = sweep.sweep_convergence(result, target, relative=relative_target)
algorithms = [a for a in ("mp", "sps", "sgd") if a in result["algorithm"].values]
widths = result["pulse_width"].values
device_id = str(result["device"].values[0])
data_note = (f"{result.attrs['data_label']}; device {device_id} "
             f"({', '.join(sorted(set(result['data_kind'].values.ravel())))}); energy model {options['energy_model']!r}; "
             f"{len(result['seed'])} seed(s); profile {profile}")
target_text = f"{target:.0%} of fp's final accuracy" if relative_target else f"{target:.0%} validation accuracy"
display(Markdown(f"Profile **{profile}**: `{config_path.name}`, {len(spec)} runs of {result.sizes['epoch']} epochs; "
                 f"target {target_text}."))

# %% [markdown]
# ## The trade-off
#
# Left and middle: energy to reach the target against epochs and samples to reach it (only runs that reached
# it; colour = pulse width, marker = algorithm). Right: every run, whole-run energy against final accuracy.

# %%
markers = {"mp": "o", "sps": "s", "sgd": "^"}
mean = {name: conv[name].isel(device=0).mean("seed") for name in
        ("epochs_to_target", "samples_to_target", "energy_to_target", "energy_total", "final_accuracy")}
reached = conv["reached"].isel(device=0).all("seed")
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
lines = []
for algorithm in algorithms:
    hit = [w for w in widths if bool(reached.sel(algorithm=algorithm, pulse_width=w))]
    if len(hit) >= 2:
        short, long_ = hit[0], hit[-1]
        e_s = float(mean["energy_to_target"].sel(algorithm=algorithm, pulse_width=short))
        e_l = float(mean["energy_to_target"].sel(algorithm=algorithm, pulse_width=long_))
        n_s = float(mean["epochs_to_target"].sel(algorithm=algorithm, pulse_width=short))
        n_l = float(mean["epochs_to_target"].sel(algorithm=algorithm, pulse_width=long_))
        lines.append(f"* **{algorithm}**: {plotting.format_pulse_width(short)} needs {n_s:.3g} epochs and "
                     f"{energy.format_energy(e_s)}; {plotting.format_pulse_width(long_)} needs {n_l:.3g} epochs and "
                     f"{energy.format_energy(e_l)} (energy ratio {e_l / e_s:.3g}).")
    else:
        lines.append(f"* **{algorithm}**: reached the target at {len(hit)} pulse width(s); no trade-off to read off.")
display(Markdown("\n".join(lines)))

# %% [markdown]
# ## The paper's claims against this reproduction
#
# Each verdict is computed by `ferrolib.sweep.claims` from the runs above (means over seeds and devices; the
# extreme pulse widths of the sweep; accuracies within the tolerance count as equal). "not testable" means
# the sweep lacks what the claim needs (e.g. the target was not reached at both extreme widths).

# %%
table = sweep.claims(result, target=target, relative=relative_target, tolerance=tolerance)
csv_path, json_path = sweep.write_claims(
    table, plotting.output_dir(output_dir), "05_claims",
    {"data": data_note, "sweep": config_path.name, "sweep_config_hash": result.attrs.get("config_hash", "")})
verdict = {True: "holds", False: "does not hold", None: "not testable"}
display(Markdown("| claim | algorithm | measured | verdict |\n|---|---|---|---|\n" + "\n".join(
    f"| {row.claim} | {row.algorithm} | {row.measured} | **{verdict[row.holds]}** |" for row in table.itertuples())))
counts = table["holds"].map(verdict).value_counts()
display(Markdown(f"{counts.get('holds', 0)} of {len(table)} rows hold, {counts.get('does not hold', 0)} do not, "
                 f"{counts.get('not testable', 0)} are not testable in the {profile} profile. "
                 f"Written to `{csv_path.name}` and `{json_path.name}` beside the figures."))

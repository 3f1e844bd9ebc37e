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
# # 01 · Measured update curves of the ferroelectric synapses
#
# Every measurement is an amplitude ramp at a fixed pulse width: positive pulses of rising amplitude lower the
# conductance G (depression, "down"), then negative pulses of rising magnitude raise it (potentiation, "up"); G is
# read after every pulse. This notebook shows, for the two main devices and every pulse width, what the training
# model is built from: G against pulse number and amplitude, the step per pulse against the state, the on/off
# ratio and the number of states, and the amplitude needed for half the conductance change (a Merz-like law).
# All data here are **measured** (LBE247 set); nothing is modelled except the fitted trend lines.

# %% tags=["parameters"]
smoke: bool = False
output_dir: str = ""
results_dir: str = ""
measurement_source: str = ""
devices: str = "ID170ZR5000,ID161ZR15000"

# %%
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Markdown, display

from ferrolib import fitting, measurements, physics, plotting

plotting.style()
profile = "smoke" if smoke else "full"
ramps = measurements.load_ramps(devices.split(","), measurement_source or None, smoke)
device_ids = list(ramps)
widths = sorted({ds.attrs["pulse_width_s"] for sets in ramps.values() for ds in sets})
provenance_line = f"data: {measurements.describe_ramps(ramps)}; profile: {profile}"
display(Markdown(f"Devices {', '.join(device_ids)}; pulse widths "
                 f"{', '.join(plotting.format_pulse_width(w) for w in widths)}; one file per width (the latest)."))

# %% [markdown]
# ## Conductance against pulse number and amplitude
# Left: G after every pulse (the down ramp first, then the up ramp). Right: the same reads against the pulse
# amplitude; positive amplitudes are the depression ramp.

# %%
fig, axes = plt.subplots(len(device_ids), 2, figsize=(10, 3.4 * len(device_ids)), squeeze=False, layout="constrained")
for row, device_id in enumerate(device_ids):
    for ds in ramps[device_id]:
        width = ds.attrs["pulse_width_s"]
        colour, label = plotting.pulse_width_color(width), plotting.format_pulse_width(width)
        g_nS = ds["G"].values * 1e9
        axes[row, 0].plot(ds["pulse"].values, g_nS, ".-", ms=2, lw=0.8, color=colour, label=label)
        axes[row, 1].plot(ds["amplitude"].values, g_nS, ".", ms=3, color=colour, label=label)
        flagged = ds["outlier"].values
        axes[row, 0].plot(ds["pulse"].values[flagged], g_nS[flagged], "kx", ms=6)
    axes[row, 0].set(xlabel="pulse number", ylabel="G (nS)", title=f"{device_id}: G after each pulse (x: outlier read)")
    axes[row, 1].set(xlabel="pulse amplitude (V)", ylabel="G (nS)", title=f"{device_id}: G against amplitude")
    axes[row, 0].legend(ncol=2)
plotting.save(fig, "01_conductance_ramps", output_dir, provenance=provenance_line)
plt.show()

# %% [markdown]
# ## Step per pulse against the state
# With ``w = 2 (G - mean)/(max - min)`` each measured ramp gives a step per pulse (finite differences) at the state
# before the pulse. Dots are measured steps, lines the degree-5 polynomial the piecewise model is built from.

# %%
fig, axes = plt.subplots(len(device_ids), 2, figsize=(10, 3.4 * len(device_ids)), squeeze=False, sharey="row", layout="constrained")
grid = np.linspace(-1, 1, 101)
for row, device_id in enumerate(device_ids):
    for ds in ramps[device_id]:
        data = fitting.prepare(ds)
        colour, label = plotting.pulse_width_color(ds.attrs["pulse_width_s"]), plotting.format_pulse_width(ds.attrs["pulse_width_s"])
        for column, ramp in enumerate((data.up, data.down)):
            axes[row, column].plot(ramp.step_state, ramp.step, ".", ms=3, alpha=0.5, color=colour)
            axes[row, column].plot(grid, fitting.polynomial_step(ramp)(grid), "-", color=colour, label=label)
    axes[row, 0].set(xlabel="state w before the pulse", ylabel="step |dw| per pulse", title=f"{device_id}: up (negative pulses)")
    axes[row, 1].set(xlabel="state w before the pulse", title=f"{device_id}: down (positive pulses)")
    axes[row, 0].legend()
plotting.save(fig, "01_step_vs_state", output_dir, provenance=provenance_line)
plt.show()

# %% [markdown]
# ## On/off ratio and number of states against pulse width
# On/off ratio = max G / min G over the file (inlier reads); number of states = ``(w_max - w_min) / dw_min``
# of the piecewise fit (the smaller of the two steps at w = 0 is the granularity).

# %%
rows = []
for device_id in device_ids:
    for ds in ramps[device_id]:
        fitted = fitting.fit_ramp(ds, "piecewise")
        rows.append({
            "device_id": device_id,
            "pulse_width_s": ds.attrs["pulse_width_s"],
            "on_off": fitted.g_max / fitted.g_min,
            "n_states": fitted.n_states,
            "v_half_down": physics.half_change_amplitude(ds, +1),
            "v_half_up": physics.half_change_amplitude(ds, -1),
        })
fig, axes = plt.subplots(1, 2, figsize=(10, 3.4), layout="constrained")
for device_id, marker in zip(device_ids, "os"):
    mine = [r for r in rows if r["device_id"] == device_id]
    x = [r["pulse_width_s"] for r in mine]
    axes[0].semilogx(x, [r["on_off"] for r in mine], marker + "-", label=device_id)
    axes[1].semilogx(x, [r["n_states"] for r in mine], marker + "-", label=device_id)
axes[0].set(xlabel="pulse width (s)", ylabel="on/off ratio Gmax/Gmin", title="on/off ratio")
axes[1].set(xlabel="pulse width (s)", ylabel="states (w_max - w_min)/dw_min", title="number of states (piecewise fit)")
axes[0].legend()
plotting.save(fig, "01_on_off_states", output_dir, provenance=provenance_line)
plt.show()
best = max(rows, key=lambda r: r["on_off"])
most = max(rows, key=lambda r: r["n_states"])
display(Markdown(
    f"The on/off ratio ranges from {min(r['on_off'] for r in rows):.1f} to {best['on_off']:.1f} (largest for "
    f"{best['device_id']} at {plotting.format_pulse_width(best['pulse_width_s'])}). The number of states ranges from "
    f"{min(r['n_states'] for r in rows):.0f} to {most['n_states']:.0f} ({most['device_id']} at "
    f"{plotting.format_pulse_width(most['pulse_width_s'])})."
))

# %% [markdown]
# ## Amplitude for half the conductance change: a Merz-like law
# For each ramp, the pulse amplitude at which G has made half of the ramp's change (interpolated), against the
# pulse width, with a straight line in log10(width).

# %%
fig, ax = plt.subplots(figsize=(6.5, 4.2), layout="constrained")
slopes = []
for device_id, marker, fill in zip(device_ids, "os", ("filled", "open")):
    mine = [r for r in rows if r["device_id"] == device_id]
    x = np.array([r["pulse_width_s"] for r in mine])
    for key, style, name in (("v_half_up", "-", "up"), ("v_half_down", "--", "down")):
        y = np.array([r[key] for r in mine])
        colour = "C0" if key == "v_half_up" else "C3"
        slope, intercept = physics.merz_slope(x, y) if len(x) >= 2 else (float("nan"), float("nan"))
        slopes.append((device_id, name, slope))
        ax.semilogx(x, y, marker + style, color=colour, mfc="none" if fill == "open" else colour, lw=0,
                    label=f"{device_id} {name} ({fill} {'circles' if marker == 'o' else 'squares'}): {slope:+.2f} V/decade")
        ax.semilogx(x, intercept + slope * np.log10(x), style, color=colour, lw=1)
ax.set(xlabel="pulse width (s)", ylabel="|amplitude| at half change (V)", title="shorter pulses need higher voltage")
ax.legend(fontsize=7, title="half-change amplitude, line: fit |V| = a + b log10 t", title_fontsize=7)
plotting.save(fig, "01_merz_trend", output_dir, provenance=provenance_line)
plt.show()
display(Markdown("Fitted slopes (|V| per decade of pulse width): " + "; ".join(
    f"{d} {n}: **{s:+.3f} V/decade**" for d, n, s in slopes)))

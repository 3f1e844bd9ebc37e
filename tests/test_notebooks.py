"""Every notebook runs end to end with its smoke parameters through papermill (as `make smoke` does),
writes its figures to the requested folder and nowhere else."""
from __future__ import annotations

from pathlib import Path

import jupytext
import papermill
import pytest

from ferrolib import paths

NOTEBOOKS = sorted(paths.NOTEBOOKS.glob("[0-9][0-9]_*.py"))


@pytest.fixture(scope="module")
def smoke_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("smoke")


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_smoke_profile(notebook: Path, smoke_root: Path):
    figures_before = {p: p.stat().st_mtime for p in paths.FIGURES.glob("*")} if paths.FIGURES.exists() else {}
    source = smoke_root / f"{notebook.stem}.source.ipynb"
    jupytext.write(jupytext.read(notebook), source)
    output_dir = smoke_root / "figures"
    executed = papermill.execute_notebook(
        str(source),
        str(smoke_root / f"{notebook.stem}.ipynb"),
        parameters={"smoke": True, "output_dir": str(output_dir), "results_dir": str(smoke_root / "results")},
        cwd=str(paths.NOTEBOOKS),
        kernel_name="python3",
        progress_bar=False,
    )
    errors = [o for cell in executed.cells for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    written = sorted(output_dir.glob(f"{notebook.stem[:2]}_*.png"))
    assert written, f"{notebook.name} wrote no figure into the smoke output folder"
    assert all(p.stat().st_size > 5_000 for p in written), "a figure file is suspiciously small"
    figures_after = {p: p.stat().st_mtime for p in paths.FIGURES.glob("*")} if paths.FIGURES.exists() else {}
    assert figures_after == figures_before, "the smoke profile touched the repository's figures/"

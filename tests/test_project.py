"""Project-level consistency: dependencies, notebook sources, Makefile contract."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from ferrolib import imports, paths

NOTEBOOKS = sorted(paths.NOTEBOOKS.glob("[0-9][0-9]_*.py"))
REQUIREMENT_NAME = re.compile(r"^\s*([A-Za-z0-9_.\-]+)")


def _name(requirement: str) -> str:
    return REQUIREMENT_NAME.match(requirement).group(1).lower().replace("_", "-")


def _pyproject() -> dict:
    return tomllib.loads((paths.ROOT / "pyproject.toml").read_text())


def test_environment_yml_names_the_same_packages_as_pyproject():
    project = _pyproject()["project"]
    declared = {_name(r) for r in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        declared |= {_name(r) for r in extra}

    env = yaml.safe_load((paths.ROOT / "environment.yml").read_text())
    conda, pip = set(), set()
    for entry in env["dependencies"]:
        if isinstance(entry, dict):
            pip |= {_name(r) for r in entry["pip"] if not r.startswith("-e")}
        else:
            conda.add(_name(entry))
    mirrored = (conda | pip) - {"python", "pip"}
    assert mirrored == declared, f"only in environment.yml: {mirrored - declared}; only in pyproject: {declared - mirrored}"


def test_torch_is_pinned_exactly_everywhere():
    deps = _pyproject()["project"]["dependencies"]
    assert "torch==2.13.0" in deps
    assert "torch==2.13.0" in (paths.ROOT / "environment.yml").read_text()


def test_there_are_ordered_notebooks_starting_with_the_data_overview():
    names = [nb.stem for nb in NOTEBOOKS]
    assert names and names[0] == "00_data"
    numbers = [int(name[:2]) for name in names]
    assert numbers == sorted(set(numbers)), "notebook numbers must be unique and ordered"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_has_one_parameters_cell_with_smoke_and_output_parameters(notebook: Path):
    text = notebook.read_text()
    assert "name: python3" in text, "kernelspec python3 keeps papermill working on a rebuilt .ipynb"
    assert "format_name: percent" in text
    cells = re.split(r"^# %%", text, flags=re.M)
    tagged = [cell for cell in cells if re.match(r'[^\n]*tags=\[[^\]]*"parameters"', cell)]
    assert len(tagged) == 1, f"{notebook.name}: expected exactly one parameters cell, found {len(tagged)}"
    for parameter in ("smoke", "output_dir", "results_dir"):
        assert re.search(rf"^{parameter}\s*(:\s*\w+\s*)?=", tagged[0], flags=re.M), f"{notebook.name}: no {parameter}"


@pytest.mark.slow
def test_notebook_sources_are_in_canonical_jupytext_form(tmp_path: Path):
    """`jupytext --sync` would change nothing: each .py round-trips through .ipynb unchanged."""
    jupytext = shutil.which("jupytext", path=str(Path(sys.executable).parent))
    assert jupytext, "jupytext is not installed in this environment"
    for notebook in NOTEBOOKS:
        copy = tmp_path / notebook.name
        shutil.copy(notebook, copy)
        subprocess.run([jupytext, "--quiet", "--sync", str(copy)], check=True, cwd=tmp_path)
        assert copy.with_suffix(".ipynb").exists()
        assert copy.read_text() == notebook.read_text(), f"jupytext --sync rewrites {notebook.name}"


def test_makefile_has_the_documented_targets():
    makefile = (paths.ROOT / "Makefile").read_text()
    for target in ("env", "data", "figures", "test", "smoke", "lab", "sync", "clean", "bench"):
        assert re.search(rf"^{target}:", makefile, flags=re.M), f"Makefile has no '{target}' target"
    assert ".DELETE_ON_ERROR:" in makefile and "pipefail" in makefile


def test_makefile_states_what_every_notebook_reads_for_both_profiles():
    """No fixed chain: each notebook has its own inputs (``reads_NN`` for `make figures`, ``smoke_reads_NN`` for
    `make smoke`), so a new notebook must state them."""
    makefile = (paths.ROOT / "Makefile").read_text()
    for notebook in NOTEBOOKS:
        for variable in (f"reads_{notebook.stem[:2]}", f"smoke_reads_{notebook.stem[:2]}"):
            assert re.search(rf"^{variable} :=", makefile, flags=re.M), f"Makefile states no {variable}"
    assert "$(word $(shell expr" not in makefile, "the notebooks are chained again"


def test_notebooks_depend_on_exactly_the_ferrolib_files_they_can_import():
    rules = imports.notebook_rules([paths.NOTEBOOKS / "00_data.py", paths.NOTEBOOKS / "06_causes.py"], ["build"])
    data, causes = (set(line.split(": ")[1].split()) for line in rules.splitlines())
    assert {"ferrolib/measurements.py", "ferrolib/lbe247_manifest.tsv", "ferrolib/plotting.py"} <= data
    assert not any(f.startswith(("ferrolib/training/", "ferrolib/cli/")) or f == "ferrolib/study.py" for f in data)
    assert {"ferrolib/study.py", "ferrolib/training/run.py", "ferrolib/store.py"} <= causes
    for notebook in NOTEBOOKS:  # the command line, the site and the host tools re-run no notebook
        assert not imports.reachable_modules(notebook) & {"cli", "site", "host", "__main__"}, notebook.name
    assert imports.reachable_modules(paths.NOTEBOOKS / "03_sgd_variants.py") >= {"store", "training", "plotting"}


def test_readme_leads_with_the_two_commands():
    readme = (paths.ROOT / "README.md").read_text()
    first_figures = readme.index("make figures")
    assert first_figures < 1500 and readme.index("make test") < 1500


def test_no_measurement_files_are_committed():
    listed = subprocess.run(["git", "ls-files"], cwd=paths.ROOT, capture_output=True, text=True).stdout.split()
    assert not [f for f in listed if f.endswith("_Summary.dat")]

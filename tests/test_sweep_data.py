"""Every committed sweep names its MNIST source, so fetching full MNIST never changes a committed run's key."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import xarray as xr

from ferrolib import mnist, paths, provenance, sourcedata, sweep

SWEEP_FILES = sorted((paths.ROOT / "sweeps").glob("*.toml"))


def _points(spec: sweep.Sweep, variants: dict) -> dict[str, list[str]]:
    """Config hash of every run of a sweep and of each of its variants."""
    sweeps = {spec.name: spec, **sweep.variant_sweeps(spec, variants)}
    return {name: [provenance.config_hash(config) for _, config in s.points()] for name, s in sweeps.items()}


@pytest.mark.parametrize("path", SWEEP_FILES, ids=lambda path: path.stem)
def test_every_sweep_names_its_data(path: Path):
    assert tomllib.loads(path.read_text())["base"].get("data") in ("subset", "full", "synthetic"), path.name


@pytest.mark.parametrize("path", SWEEP_FILES, ids=lambda path: path.stem)
def test_naming_the_subset_keeps_every_config_hash(path: Path, tmp_path, monkeypatch):
    """Before: the file without its ``data`` line, 'auto' resolved to the cached subset (as the committed runs were
    made). After: the file as committed, with full MNIST cached (so 'auto' would now resolve to 'full')."""
    before = tmp_path / path.name
    before.write_text(re.sub(r"(?m)^data = .*\n", "", path.read_text()))
    monkeypatch.setattr(mnist, "resolve_auto", lambda cache_dir=None: "subset")
    old, old_options = sweep.load_sweep_config(before)
    monkeypatch.setattr(mnist, "resolve_auto", lambda cache_dir=None: "full")
    new, new_options = sweep.load_sweep_config(path)
    assert _points(new, new_options["variants"]) == _points(old, old_options["variants"])
    assert provenance.config_hash(new) == provenance.config_hash(old)


@pytest.mark.parametrize("name", ["paper", "ideal"])
def test_the_paper_sweeps_keep_the_committed_summarys_config_hashes(monkeypatch, name: str):
    """Every run of sweeps/paper.toml (and of its ideal-reads twin), with full MNIST cached, has the configuration
    hash stored for it in data/results/<name>.nc (and the sweep its stored hash)."""
    monkeypatch.setattr(mnist, "resolve_auto", lambda cache_dir=None: "full")
    spec, _ = sweep.load_sweep_config(sweep.resolve_sweep_config(name))
    with xr.open_dataset(sourcedata.summary_path(name)) as summary:
        stored = {key: str(summary["config_hash"].sel(dict(zip(spec.axes(), key))).values) for key, _ in spec.points()}
        assert summary.attrs["sweep_config_hash"] == provenance.config_hash(spec)
    assert len(stored) == 60
    assert stored == {key: provenance.config_hash(config) for key, config in spec.points()}

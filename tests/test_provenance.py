"""Configuration hashes, atomic writes and compact reprs shared by every module."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from ferrolib import provenance


@dataclass
class _Config:
    lr: float = 0.1
    """learning rate"""
    widths: list[float] = field(default_factory=lambda: [2e-8])
    """pulse widths"""
    seed: int = 0
    """seed"""

    __repr__ = provenance.compact_repr


def test_config_hash_is_stable_and_sensitive():
    assert provenance.config_hash(_Config()) == provenance.config_hash(_Config())
    assert provenance.config_hash(_Config()) != provenance.config_hash(_Config(seed=1))
    assert provenance.config_hash(_Config(lr=0.1)) != provenance.config_hash(_Config(lr=0.10000001))
    assert len(provenance.config_hash(_Config())) == 12


def test_compact_repr_lists_only_changed_fields():
    assert repr(_Config()) == "_Config()"
    assert repr(_Config(lr=0.5, widths=[1.0])) == "_Config(lr=0.5, widths=[1.0])"


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path: Path):
    target = tmp_path / "result.json"
    provenance.write_json({"a": 1}, target)

    def broken(tmp: Path) -> None:
        tmp.write_text("partial")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        provenance.atomic_write(target, broken)
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"], "temporary file left behind"


def test_netcdf_round_trip_keeps_provenance(tmp_path: Path):
    ds = xr.Dataset({"acc": ("epoch", np.array([0.5, 0.9]))}, coords={"epoch": [1, 2]})
    ds.attrs.update(provenance.provenance_attrs(_Config(seed=3), data_source={"name": "mnist"}))
    back = provenance.read_netcdf(provenance.write_netcdf(ds, tmp_path / "run.nc"))
    xr.testing.assert_identical(back, ds)
    assert json.loads(back.attrs["config"])["seed"] == 3
    assert back.attrs["version_ferrolib"] and json.loads(back.attrs["data_source"]) == {"name": "mnist"}

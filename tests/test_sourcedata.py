"""Committed source data: summaries of fabricated sweeps, where notebooks take their results from, the
reproduction check's tolerances, and the fast check of the committed smoke summary against a fresh run."""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from ferrolib import provenance, sourcedata, store
from ferrolib.cli import main
from ferrolib.sourcedata import CheckTolerances
from ferrolib.sweep import Sweep, run_sweep

from fake_runs import FakeConfig, fake_train

SPEC = Sweep(base=FakeConfig(epochs=4), pulse_widths=[2e-8, 2e-4], algorithms=["mp", "sgd"], seeds=[0, 1, 2],
             lr_by_algorithm={"mp": 0.5, "sgd": 0.1}, name="fake")
OPTIONS = {"energy_model": None}


def fake_summary(tmp_path: Path, spec: Sweep = SPEC) -> xr.Dataset:
    return sourcedata.summarize(run_sweep(spec, tmp_path / "runs", run=fake_train, n_workers=1, progress=False), spec)


def test_summary_keeps_every_runs_numbers_and_configuration(tmp_path: Path):
    full = run_sweep(SPEC, tmp_path, run=fake_train, n_workers=1, progress=False)
    summary = sourcedata.summarize(full, SPEC)
    path = sourcedata.write_summary(summary, sourcedata.summary_path("fake", tmp_path / "out"))
    back = provenance.read_netcdf(path)
    for name in ("val_acc", "test_acc", "pulses", "energy_cumulative", "programming_energy_cumulative"):
        assert np.array_equal(back[name].values, full[name].values), name
    for key, config in SPEC.points():
        run = back.sel(dict(zip(SPEC.axes(), key)))
        assert json.loads(str(run["run_config"].values)) == provenance.config_dict(config)
        assert str(run["config_hash"].values) == provenance.config_hash(config)
    assert back.attrs["summary_of"] == "fake" and path.stat().st_size < sourcedata.SUMMARY_LIMIT_BYTES
    assert store.covers(back, SPEC) is None
    longer = dataclasses.replace(SPEC, base=FakeConfig(epochs=5))
    assert "hash" in store.covers(back, longer)
    assert "not in the summary" in store.covers(back, dataclasses.replace(SPEC, seeds=[0, 7]))


def test_rewriting_the_same_summary_leaves_the_file_and_its_time_stamp(tmp_path: Path):
    """The Makefile re-runs a notebook when a summary it reads is newer: a notebook that writes the summary it
    rendered from (the same runs) must not make it newer."""
    summary = fake_summary(tmp_path)
    path = sourcedata.write_summary(summary, tmp_path / "fake.nc")
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    assert sourcedata.write_summary(summary, path) == path
    assert path.stat().st_mtime_ns == 1_000_000_000
    changed = summary.copy(deep=True)
    changed["test_acc"] = changed["test_acc"] + 0.01
    sourcedata.write_summary(changed, path)
    assert path.stat().st_mtime_ns > 1_000_000_000
    assert np.allclose(provenance.read_netcdf(path)["test_acc"], changed["test_acc"])
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_check_tolerances_come_from_the_seed_spread(tmp_path: Path):
    committed = fake_summary(tmp_path)
    fresh = committed.sel(seed=[0], pulse_width=[2e-8])
    table = sourcedata.compare(committed, fresh, CheckTolerances(confidence=0.95, accuracy_floor=0.0, log_floor=0.0))
    assert table["ok"].all() and set(table["algorithm"]) == {"mp", "sgd"}
    row = table[(table["quantity"] == "final validation accuracy") & (table["algorithm"] == "mp")].iloc[0]
    values = committed["val_acc"].sel(algorithm="mp", pulse_width=2e-8).isel(device=0, epoch=-1).values
    assert np.isclose(row.tolerance, 4.302653 * values.std(ddof=1) * np.sqrt(1 / 3 + 1 / 1))  # t(0.975, 2)
    assert np.isclose(row.committed, values.mean()) and np.isclose(row.fresh, values[0])
    assert "seed spread (3 seeds)" in row.basis
    # a committed number moved by more than its tolerance makes the check fail, on that number only
    altered = committed.copy(deep=True)
    altered["val_acc"].loc[dict(algorithm="mp", pulse_width=2e-8)] += 0.02
    off = sourcedata.compare(altered, fresh)
    assert list(off.loc[~off["ok"], "quantity"]) == ["final validation accuracy"]
    single = sourcedata.compare(committed.sel(seed=[1]), fresh)
    assert set(single["basis"]) == {"floor"}  # one committed seed: no spread, the documented floor only
    changed = fresh.copy(deep=True)
    changed["config_hash"].values[...] = "000000000000"
    with pytest.raises(ValueError, match="configuration hashes differ"):
        sourcedata.compare(committed, changed)
    with pytest.raises(ValueError, match="no pulse_width"):
        sourcedata.compare(committed.sel(pulse_width=[2e-4]), fresh)


@pytest.fixture(scope="module")
def check_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("check")


@pytest.mark.slow
def test_committed_smoke_summary_reproduces(check_cache: Path, capsys):
    """The fast variant of ``make check``: one fresh run of the committed smoke-check profile."""
    code = main(["check", "smoke-check", "--seeds", "0", "--algorithms", "mp", "--results-dir", str(check_cache),
                 "--workers", "1"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "final validation accuracy" in out and "numbers within tolerance" in out


@pytest.mark.slow
def test_altered_committed_number_fails_the_check(check_cache: Path, tmp_path: Path, capsys):
    committed = provenance.read_netcdf(sourcedata.summary_path("smoke-check"))
    committed["test_acc"] = committed["test_acc"] + 0.3  # far beyond the floor and the t-interval of 2 seeds (0.11)
    altered = sourcedata.write_summary(committed, tmp_path / "altered.nc")
    code = main(["check", "smoke-check", "--seeds", "0", "--algorithms", "mp", "--summary", str(altered),
                 "--results-dir", str(check_cache), "--workers", "1"])
    out = capsys.readouterr().out
    assert code == 1 and "OFF" in out
    assert main(["check", "smoke-check", "--seeds", "9"]) == 2
    assert capsys.readouterr().err.startswith("ferrolib check: error: --seeds [9] not in smoke-check")

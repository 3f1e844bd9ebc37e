"""The result store: where results come from (the cached runs, the committed summary, or training), the source
a caller asks for, and every committed summary holding its runs under the keys they have now (no training)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from ferrolib import provenance, sourcedata, splimits, store, sweep
from ferrolib.sweep import Sweep, run_sweep

from fake_runs import FakeConfig, calls, counting_train, fake_train

SPEC = Sweep(base=FakeConfig(epochs=4), pulse_widths=[2e-8, 2e-4], algorithms=["mp", "sgd"], seeds=[0, 1, 2],
             lr_by_algorithm={"mp": 0.5, "sgd": 0.1}, name="fake")
OPTIONS = {"energy_model": None}


def fake_summary(tmp_path: Path, spec: Sweep = SPEC):
    return sourcedata.summarize(run_sweep(spec, tmp_path / "runs", run=fake_train, n_workers=1, progress=False), spec)


def test_results_come_from_the_cache_then_the_summary_then_training(tmp_path: Path, capsys):
    summary_file = sourcedata.write_summary(fake_summary(tmp_path), tmp_path / "fake.nc")
    cache = tmp_path / "cache"
    result, source = store.load_results(SPEC, OPTIONS, "auto", cache, summary_file, n_workers=1, run=counting_train)
    assert "committed summary fake.nc" in source and calls(cache) == []  # rendered without training
    assert np.array_equal(result["val_acc"].values, provenance.read_netcdf(summary_file)["val_acc"].values)
    with pytest.raises(ValueError, match="results source must be one of"):
        store.load_results(SPEC, OPTIONS, "cache", cache, summary_file)
    forced = dataclasses.replace(SPEC, seeds=[0])  # covered by the summary, but "runs" trains it
    result, source = store.load_results(forced, OPTIONS, "runs", cache, summary_file, n_workers=1, run=counting_train)
    assert len(calls(cache)) == len(forced) and "trained where missing" in source
    other = dataclasses.replace(SPEC, seeds=[0, 5])  # not covered: says why and trains (seed 0 is cached)
    with pytest.raises(ValueError, match=r"results source 'summary': run .*'seed': 5\} is not in the summary"):
        store.load_results(other, OPTIONS, "summary", cache, summary_file, run=counting_train)
    assert len(calls(cache)) == len(forced)  # "summary" never trains
    result, source = store.load_results(other, OPTIONS, "auto", cache, summary_file, n_workers=1, run=counting_train)
    assert len(calls(cache)) == len(other) and "trained where missing" in source
    assert "seed': 5} is not in the summary" in capsys.readouterr().out
    result, source = store.load_results(other, OPTIONS, "auto", cache, tmp_path / "other.nc", run=counting_train,
                                        write=True)
    assert len(calls(cache)) == len(other) and "summary written to other.nc" in source
    assert store.covers(provenance.read_netcdf(tmp_path / "other.nc"), other) is None
    count = len(calls(cache))  # every run of `forced` cached now: the cache wins over the summary
    result, source = store.load_results(forced, OPTIONS, "auto", cache, summary_file, n_workers=1, run=counting_train)
    assert "runs from cache/" in source and len(calls(cache)) == count
    with pytest.raises(ValueError, match="missing.nc does not exist"):
        store.load_results(SPEC, OPTIONS, "summary", cache, tmp_path / "missing.nc")


def test_check_run_says_cached_stale_or_to_run_and_changes_nothing(tmp_path: Path):
    config = FakeConfig(epochs=4)
    assert store.check_run(config, tmp_path) == "to run"
    run_sweep(Sweep(base=config, name="one"), tmp_path, run=fake_train, n_workers=1, progress=False)
    assert store.check_run(config, tmp_path) == "cached"
    assert store.cached_run(config, tmp_path) is not None
    key = {"config": provenance.config_hash(config), "device": "other"}
    assert store.check_run(config, tmp_path, key) == "stale: no run key stored (written by an older ferrolib)"
    assert store.cached_run(config, tmp_path) is not None  # check_run moved nothing


def _committed_summaries() -> list[tuple[str, object]]:
    """Every committed summary in data/results with the sweep (or variants) it summarises now."""
    from ferrolib import study

    specs: dict[str, object] = {}
    for name in ("paper", "ideal", "smoke-check", "transfer-search", "transfer-headline"):
        spec, _ = sweep.load_sweep_config(sweep.resolve_sweep_config(name))
        specs[spec.name] = spec
    for config in splimits.SWEEP_CONFIGS:
        specs[config] = splimits.plan(config)[0]
    transfer, options = sweep.load_sweep_config(sweep.resolve_sweep_config("mp-transfer"))
    specs[transfer.name] = sweep.variant_sweeps(transfer, options["variants"])
    specs.update({part.name: part.spec for part in study.plan()})
    committed = sorted(sourcedata.SOURCE_DATA.glob("*.nc"))
    assert committed, "the committed summaries are in data/results/"
    unknown = [p.name for p in committed if p.stem not in specs]
    assert not unknown, f"summaries of no known sweep: {unknown}"
    return [(p.stem, specs[p.stem]) for p in committed]


def test_every_committed_run_is_found_without_training(shared_measurements: Path, tmp_path: Path, monkeypatch):
    """A fresh clone on any host renders from data/results: every committed summary holds each of its runs under
    the run key it has now (the device enters through its committed file), so load_results with source "summary"
    (which never trains) serves every one of them."""
    monkeypatch.delenv("FERROLIB_MEASUREMENTS", raising=False)

    def never(*args, **kwargs):
        raise AssertionError("load_results trained a run")

    for name, spec in _committed_summaries():
        result, source = store.load_results(spec, {"energy_model": None}, "summary", tmp_path, run=never)
        assert f"the committed summary {name}.nc" in source and "no training" in source, name
        assert result.attrs["summary_of"] == name, name

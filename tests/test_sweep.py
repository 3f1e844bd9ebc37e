"""Sweeps: grid structure, caching and resuming, process-pool and dask paths, config files (claims: test_analysis)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from ferrolib import energy, provenance, sweep
from ferrolib.sweep import Sweep, run_sweep

import fake_runs
from fake_runs import FakeConfig, calls, counting_train, fake_train

WIDTHS = [2e-8, 2e-6, 2e-4]


def small_sweep(**changes) -> Sweep:
    values = dict(base=FakeConfig(epochs=5), pulse_widths=WIDTHS, algorithms=["mp", "sgd", "sps"], seeds=[0, 1],
                  lr_by_algorithm={"mp": 0.5, "sgd": 0.1, "sps": 0.1}, name="test")
    values.update(changes)
    return Sweep(**values)


def test_sweep_dataset_has_the_grid_dimensions_and_each_runs_numbers(tmp_path: Path):
    s = small_sweep()
    ds = run_sweep(s, tmp_path, run=counting_train, n_workers=1, progress=False)
    assert len(calls(tmp_path)) == len(s) == 18
    assert dict(ds["val_acc"].sizes) == {"device": 1, "pulse_width": 3, "algorithm": 3, "seed": 2, "epoch": 5}
    assert ds["pulses"].dims == ("device", "pulse_width", "algorithm", "seed", "epoch", "layer", "polarity")
    assert list(ds["algorithm"].values) == ["mp", "sgd", "sps"]
    assert list(ds["learning_rate"].values) == [0.5, 0.1, 0.1]
    for key, config in s.points():
        point = ds.sel(dict(zip(s.axes(), key)))
        expected = fake_runs.fake_result(config)
        assert np.array_equal(point["val_acc"].values, expected["val_acc"].values)
        assert np.array_equal(point["pulses"].values, expected["pulses"].values)
        assert str(point["config_hash"].values) == provenance.config_hash(config)
        assert np.allclose(point["energy_epoch"].values, energy.ledger(expected)["energy_epoch"].values)
        assert (tmp_path / "runs" / f"{provenance.config_hash(config)}.nc").exists()
    assert "version_ferrolib" in ds.attrs and "synthetic" in ds.attrs["data_kinds"]
    provenance.write_netcdf(ds, tmp_path / "sweep.nc")
    back = provenance.read_netcdf(tmp_path / "sweep.nc")
    assert np.array_equal(back["energy_cumulative"].values, ds["energy_cumulative"].values)


@pytest.mark.slow
def test_interrupted_sweep_resumes_without_recomputing(tmp_path: Path):
    crashing = small_sweep(seeds=[0, 99])  # counting_train raises on seed 99
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_sweep(crashing, tmp_path, run=counting_train, n_workers=1, progress=False)
    done = {c["pulse_width"] for c in calls(tmp_path) if c["seed"] == 0}
    assert len(calls(tmp_path)) == 2  # mp seed 0 finished, mp seed 99 crashed
    first = run_sweep(small_sweep(), tmp_path, run=counting_train, n_workers=1, progress=False)
    log = calls(tmp_path)
    assert len(log) == 2 + len(small_sweep()) - 1  # the finished run is reused
    assert sum(1 for c in log if c["seed"] == 0 and c["algorithm"] == "mp" and c["pulse_width"] in done) == 1
    again = run_sweep(small_sweep(), tmp_path, run=counting_train, n_workers=1, progress=False)
    assert len(calls(tmp_path)) == len(log)  # nothing recomputed
    xr.testing.assert_identical(first.drop_attrs(), again.drop_attrs())


def test_incomplete_or_foreign_cached_run_is_moved_aside(tmp_path: Path):
    config = FakeConfig(epochs=5)
    partial = fake_runs.fake_result(config).isel(epoch=slice(0, 2))
    provenance.write_netcdf(partial, provenance.run_path(config, tmp_path))
    assert sweep.load_cached(config, tmp_path) is None
    provenance.write_netcdf(partial.assign_attrs(config_hash="0000"), provenance.run_path(config, tmp_path))
    assert sweep.load_cached(config, tmp_path) is None
    aside = sorted((tmp_path / "runs").glob("*.stale-*.nc"))
    assert len(aside) == 2 and not provenance.run_path(config, tmp_path).exists()  # moved aside, never deleted
    assert {provenance.read_netcdf(a).attrs["config_hash"] for a in aside} == {"0000", provenance.config_hash(config)}


def test_dask_gives_the_same_dataset_as_in_process(tmp_path: Path):
    from distributed import Client, LocalCluster

    s = small_sweep(algorithms=["mp", "sgd"], seeds=[0], pulse_widths=WIDTHS[:2])
    local = run_sweep(s, tmp_path / "local", run=fake_train, n_workers=1, progress=False)
    with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster, Client(cluster) as client:
        dask = run_sweep(s, tmp_path / "dask", run=fake_train, scheduler=client, progress=False)
        address = run_sweep(s, tmp_path / "address", run=fake_train, scheduler=cluster.scheduler_address,
                            progress=False)
    xr.testing.assert_identical(local.drop_attrs(), dask.drop_attrs())
    xr.testing.assert_identical(local.drop_attrs(), address.drop_attrs())


@pytest.mark.slow
def test_process_pool_gives_the_same_dataset_as_in_process(tmp_path: Path):
    s = small_sweep(algorithms=["mp", "sgd"], seeds=[0], pulse_widths=WIDTHS[:2])
    local = run_sweep(s, tmp_path / "local", run=fake_train, n_workers=1, progress=False)
    pool = run_sweep(s, tmp_path / "pool", run=counting_train, n_workers=2, progress=False)
    assert len(calls(tmp_path / "pool")) == 4  # every run ran once, in the worker processes
    xr.testing.assert_identical(local.drop_attrs(), pool.drop_attrs())


def test_learning_rate_dimension_and_bad_grids():
    s = Sweep(base=FakeConfig(), learning_rates=[0.1, 0.5], algorithms=["sgd"])
    assert list(s.axes()) == ["device", "pulse_width", "algorithm", "seed", "learning_rate"]
    assert [c.lr for _, c in s.points()] == [0.1, 0.5]
    with pytest.raises(ValueError, match="repeated"):
        Sweep(base=FakeConfig(), seeds=[0, 0])
    with pytest.raises(ValueError, match="either"):
        Sweep(base=FakeConfig(), learning_rates=[0.1], lr_by_algorithm={"sgd": 0.1})
    with pytest.raises(ValueError, match="dataclass"):
        Sweep(base={"lr": 0.1})


def test_sweep_config_files(tmp_path: Path):
    from ferrolib.training import TrainConfig

    root = Path(__file__).resolve().parent.parent / "sweeps"
    from ferrolib.training.profiles import config_from_profile

    for name in ("paper", "ideal"):  # the same grid; same runs, same cache keys as the training module's profile
        spec, options = sweep.load_sweep_config(root / f"{name}.toml")
        assert len(spec) == 5 * 4 * 3 and options["energy_model"].amplitude_rule == "paper"  # widths, rules, seeds
        assert [provenance.config_hash(c) for _, c in spec.points() if c.pulse_width == 2e-8 and c.seed == 0] == [
            provenance.config_hash(config_from_profile(name, a, pulse_width=2e-8, device_id="ID170ZR5000"))
            for a in ("fp", "mp", "sgd", "sps")]
    assert TrainConfig.ideal("sgd") == config_from_profile("ideal", "sgd")
    smoke, _ = sweep.load_sweep_config(sweep.resolve_sweep_config("smoke"))
    assert len(smoke) == 8 and smoke.base.train_limit == 512
    toml = tmp_path / "bad.toml"
    toml.write_text('[sweep]\npulse_width = [2e-8]\n')
    with pytest.raises(ValueError, match="bad.toml: unknown \\[sweep\\] key"):
        sweep.load_sweep_config(toml, base_factory=FakeConfig)
    yml = tmp_path / "s.yaml"
    yml.write_text("sweep:\n  pulse_widths: [2.0e-8, 2.0e-4]\nbase:\n  epochs: 2\nenergy:\n  leakage: conductance\n")
    s, options = sweep.load_sweep_config(yml, base_factory=FakeConfig)
    assert s.axes()["pulse_width"] == [2e-8, 2e-4] and s.base.epochs == 2
    assert options["energy_model"].leakage == "conductance"
    with pytest.raises(FileNotFoundError):
        sweep.load_sweep_config(tmp_path / "missing.toml", base_factory=FakeConfig)


@pytest.mark.slow
def test_real_tiny_training_runs_through_the_sweep(tmp_path: Path):
    """Integration with ferrolib.training: two real runs on the measured ID170ZR5000 (synthetic task data)."""
    from ferrolib.training import TrainConfig, result_path

    base = TrainConfig.smoke("mp", data="synthetic", train_limit=128, eval_limit=100, epochs=1)
    s = Sweep(base=base, algorithms=["mp", "sgd"], name="tiny")
    assert [c.lr for _, c in s.points()] == [0.5, 0.1]  # each algorithm's default, not the base's
    ds = run_sweep(s, tmp_path, n_workers=1, progress=False)
    for _, config in s.points():
        assert provenance.run_path(config, tmp_path) == result_path(config, tmp_path)  # one cache for both
        assert provenance.run_path(config, tmp_path).exists()
    assert ds["data_kind"].values.ravel().tolist() == ["measured", "measured"]
    assert float(ds["energy_term"].sel(algorithm="mp", term="digital").sum()) > 0
    assert float(ds["energy_term"].sel(algorithm="sgd", term="digital").sum()) == 0
    pulses = ds["pulses"].sum(["epoch", "layer", "polarity"])
    per_pulse = ds["energy_per_pulse"].sel(component="leakage").mean("polarity")
    assert np.allclose(ds["energy_term"].sel(term="program_leakage").sum("epoch"), pulses * per_pulse)
    again = run_sweep(s, tmp_path, run=counting_train, n_workers=1, progress=False)
    assert calls(tmp_path) == []  # everything came from the cache
    xr.testing.assert_identical(ds.drop_attrs(), again.drop_attrs())


def test_cli_runs_a_sweep_file_and_resumes(tmp_path: Path, capsys):
    from ferrolib.cli import main

    config = tmp_path / "tiny.toml"
    config.write_text('[sweep]\nname = "tiny"\nalgorithms = ["sgd"]\n\n[base]\ndata = "synthetic"\nepochs = 1\n'
                      'train_limit = 64\neval_limit = 50\nsnapshot_epochs = [0]\n')
    assert main(["sweep", str(config), "--results-dir", str(tmp_path), "--dry-run"]) == 0
    assert capsys.readouterr().out.startswith("to run")
    assert main(["sweep", str(config), "--results-dir", str(tmp_path), "--workers", "1"]) == 0
    written = sorted((tmp_path / "sweeps").glob("tiny_*.nc"))
    assert len(written) == 1 and str(written[0]) in capsys.readouterr().out
    assert main(["sweep", str(config), "--results-dir", str(tmp_path), "--dry-run"]) == 0
    assert capsys.readouterr().out.startswith("cached")
    ds = provenance.read_netcdf(written[0])
    assert ds["val_acc"].dims == ("device", "pulse_width", "algorithm", "seed", "epoch")
    config.write_text("[sweep]\n[oops]\n")
    assert main(["sweep", str(config)]) == 2
    assert "unknown table" in capsys.readouterr().err


def test_notebook_sweep_picks_the_profile_and_the_seeds():
    smoke, _, smoke_path = sweep.notebook_sweep("paper", smoke=True, n_seeds=2)
    paper, options, paper_path = sweep.notebook_sweep("paper", smoke=False)
    assert smoke_path.name == "smoke.toml" and paper_path.name == "paper.toml"
    assert smoke.seeds == [0, 1] and paper.seeds == [0, 1, 2]  # n_seeds None: the file's seeds
    assert paper.base.split == "paper" and paper.base.samples_per_epoch is None and "energy_model" in options
    ideal, _, _ = sweep.notebook_sweep("ideal", smoke=False)
    assert ideal.base.samples_per_epoch == 48_000 and ideal.base.data == "subset"


def _blocked_signals(queue) -> None:
    """Child of the worker-start test: report the signals blocked at its start."""
    import signal

    queue.put(sorted(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, [])))


def test_ctrl_c_while_workers_start_is_neither_lost_nor_felt_by_the_workers():
    """A Ctrl-C that arrives while the worker processes start interrupts the sweep once they have started (it
    was lost when the parent ignored SIGINT in that moment, and the sweep then waited forever), and a worker
    starts with SIGINT blocked until its initializer ignores it."""
    import multiprocessing
    import os
    import signal

    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    reached = []
    # as from a terminal: a shell starts background jobs (and so pytest run with &) with Ctrl-C ignored
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    with pytest.raises(KeyboardInterrupt):
        with sweep._workers_ignore_ctrl_c():
            child = context.Process(target=_blocked_signals, args=(queue,))
            child.start()
            os.kill(os.getpid(), signal.SIGINT)
            reached.append("inside, after the Ctrl-C")
        reached.append("after the block")  # not reached: the pending Ctrl-C interrupts as the block ends
    signal.signal(signal.SIGINT, previous)
    assert reached == ["inside, after the Ctrl-C"]
    assert int(signal.SIGINT) in queue.get(timeout=120)
    child.join(60)
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, [])  # the parent's mask is restored

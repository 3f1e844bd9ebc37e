"""Validation before any work: every bad input ends in one clear line naming it, before training starts and
with nothing computed lost; a diverging run stops, keeps its last good checkpoint and caches nothing."""
from __future__ import annotations

import math
from pathlib import Path

import pytest

from ferrolib import sweep
from ferrolib.cli import main
from ferrolib.training import network as network_module
from ferrolib.training import result_path, train
from ferrolib.training import config as config_module
from ferrolib.training import keys as keys_module
from ferrolib.training import loop as loop_module

from fake_runs import FakeConfig
from run_helpers import computations, counting, tiny

TINY = ["--device", "synthetic-asymmetric", "--data", "synthetic", "--profile", "smoke", "--epochs", "1"]


@pytest.fixture
def count(tmp_path, monkeypatch):
    """Counts training computations in this process: ``count()`` -> number so far."""
    log = tmp_path / "computations.log"
    monkeypatch.setattr(loop_module, "build_network", counting(log))
    return lambda: computations(log)


def a_file(tmp_path: Path) -> Path:
    path = tmp_path / "occupied"
    path.write_text("not a directory")
    return path


BAD_TRAIN_INPUT = [  # (arguments, what the one line must say)
    (["--d2d", "nan"], "d2d must be a finite number >= 0, got nan"),
    (["--c2c", "inf"], "c2c must be a finite number >= 0, got inf"),
    (["--c2c", "nan"], "c2c must be a finite number >= 0, got nan"),
    (["--c2c", "-0.1"], "c2c must be a finite number >= 0"),
    (["--algorithm", "mp", "--lr", "1e6"], "learning rate 1e+06 is above the stable range of mp"),
    (["--algorithm", "fp", "--lr", "1e6"], "learning rate 1e+06 is above the stable range of fp"),
    (["--pulse-width", "nan"], "pulse_width must be a positive number"),
    (["--results-dir", a_file], "exists and is not a directory"),  # callables get tmp_path
    (["--results-dir", lambda tmp: a_file(tmp) / "below"], "not writable"),
]


@pytest.mark.parametrize("arguments, message", BAD_TRAIN_INPUT,
                         ids=[" ".join(a if isinstance(a, str) else "<file>" for a in args) for args, _ in BAD_TRAIN_INPUT])
def test_bad_train_input_is_one_line_before_any_work(tmp_path, capsys, count, arguments, message):
    arguments = [str(a(tmp_path)) if callable(a) else a for a in arguments]
    if "--results-dir" not in arguments:
        arguments += ["--results-dir", str(tmp_path / "results")]
    assert main(["train", *TINY, *arguments]) == 2
    captured = capsys.readouterr()
    (line,) = captured.err.strip().splitlines()
    assert line.startswith("ferrolib train: error:") and message in line
    assert count() == 0 and not list(tmp_path.glob("results/runs/*.nc"))


def test_fp_without_json_prints_its_table(tmp_path, capsys):
    assert main(["train", *TINY, "--algorithm", "fp", "--results-dir", str(tmp_path), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "device: none (floating-point reference)" in printed and "total pulses: up 0, down 0" in printed


def test_divergence_stops_the_run_and_caches_nothing(tmp_path, monkeypatch):
    monkeypatch.setitem(config_module.MAX_LR, "fp", math.inf)  # let the up-front check through
    config = tiny("fp", lr=1e6)
    with pytest.raises(loop_module.TrainingDiverged, match="diverged in epoch 1: batch loss .* nothing cached"):
        train(config, tmp_path, progress=False)
    assert not result_path(config, tmp_path).exists()


def test_divergence_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    config = tiny("mp", epochs=3)
    reference = train(config, tmp_path / "reference", progress=False)
    original = network_module.MLP.train_step

    def nan_from_epoch_two(self, x, y, lr, step):
        loss = original(self, x, y, lr, step)
        return float("nan") if step >= 2 else loss  # 64 images in batches of 32: epoch 2 starts at step 2

    monkeypatch.setattr(network_module.MLP, "train_step", nan_from_epoch_two)
    with pytest.raises(loop_module.TrainingDiverged, match="epoch 2: batch loss nan .* checkpoint .* is kept"):
        train(config, tmp_path, progress=False)
    checkpoint = result_path(config, tmp_path).with_suffix(".ckpt.pt")
    assert checkpoint.exists() and not result_path(config, tmp_path).exists()
    monkeypatch.setattr(network_module.MLP, "train_step", original)
    resumed = train(config, tmp_path, progress=False)  # epoch 1 is not recomputed: identical numbers
    assert resumed.val_acc.values.tolist() == reference.val_acc.values.tolist()


def test_diverged_weights_are_caught_at_the_end_of_the_epoch(tmp_path, monkeypatch):
    original = network_module.MLP.train_step

    def poison(self, x, y, lr, step):
        loss = original(self, x, y, lr, step)
        if step == 1:  # the last batch of epoch 1: its loss is still finite
            self.layers[0]._weight[0, 0] = float("inf")
        return loss

    monkeypatch.setattr(network_module.MLP, "train_step", poison)
    with pytest.raises(loop_module.TrainingDiverged, match="non-finite weights"):
        train(tiny("fp"), tmp_path, progress=False)


SWEEP_TYPOS = [  # (file text, what the one line must say)
    ("[sweep]\n[run]\nn_worker = 2\n", "unknown [run] key(s) 'n_worker' (did you mean 'n_workers'?)"),
    ("[sweep]\n[base]\nepoch = 2\n", "unknown [base] key(s) 'epoch' (did you mean 'epochs'?)"),
    ("[sweep]\npulse_width = [2e-8]\n", "unknown [sweep] key(s) 'pulse_width' (did you mean 'pulse_widths'?)"),
    ("[sweep]\n[energy]\nleakge = 'conductance'\n", "unknown [energy] option(s) 'leakge' (did you mean 'leakage'?)"),
    ("[sweep]\n[bse]\nepochs = 2\n", "unknown table(s) 'bse' (did you mean 'base'?)"),
    ("[sweep]\nalgorithms = ['mp', 'sps']\n[sweep.lr_by_algorithm]\nspss = 0.1\n",
     "unknown [sweep.lr_by_algorithm] algorithm(s) 'spss' (did you mean 'sps'?)"),
]


@pytest.mark.parametrize("text, message", SWEEP_TYPOS, ids=[m.split(" (")[0] for _, m in SWEEP_TYPOS])
def test_unknown_sweep_keys_are_errors_with_the_nearest_name(tmp_path, text, message):
    path = tmp_path / "typo.toml"
    path.write_text(text)
    with pytest.raises(ValueError) as error:
        sweep.load_sweep_config(path, base_factory=FakeConfig)
    assert message in str(error.value) and len(str(error.value).splitlines()) == 1


def test_invalid_grid_points_fail_before_any_run_and_dry_run_marks_them(tmp_path, capsys, count):
    config = tmp_path / "lr.toml"
    config.write_text('[sweep]\nname = "lr"\nalgorithms = ["sgd"]\nlearning_rates = [0.1, 5.0]\n\n[base]\n'
                      'device_id = "synthetic-asymmetric"\ndata = "synthetic"\nepochs = 1\ntrain_limit = 64\n'
                      'eval_limit = 50\nhidden = [8]\nsnapshot_epochs = [0]\n')
    assert main(["sweep", str(config), "--results-dir", str(tmp_path), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("to run") and lines[1].startswith("invalid") and "stable range" in lines[1]
    assert main(["sweep", str(config), "--results-dir", str(tmp_path), "--workers", "1"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "1 of 2 grid points are invalid, nothing was run" in line and "learning_rate=5.0" in line
    assert count() == 0 and not list(tmp_path.glob("runs/*.nc"))


def test_sweep_dry_run_marks_stale_runs(tmp_path, capsys, monkeypatch):
    config = tmp_path / "one.toml"
    config.write_text('[sweep]\nname = "one"\nalgorithms = ["fp"]\n\n[base]\ndevice_id = "synthetic-asymmetric"\n'
                      'data = "synthetic"\nepochs = 1\ntrain_limit = 64\neval_limit = 50\nhidden = [8]\n'
                      'snapshot_epochs = [0]\n')
    assert main(["sweep", str(config), "--results-dir", str(tmp_path), "--workers", "1"]) == 0
    monkeypatch.setattr(keys_module, "NUMERICS_VERSION", keys_module.NUMERICS_VERSION + 1)
    capsys.readouterr()
    assert main(["sweep", str(config), "--results-dir", str(tmp_path), "--dry-run"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith("stale") and "numerics changed" in line
    assert len(list(tmp_path.glob("runs/*.nc"))) == 1  # a dry run moves nothing


def test_energy_of_a_garbage_result_is_one_line(tmp_path, capsys):
    garbage = tmp_path / "run.nc"
    garbage.write_bytes(b"\x89HDF\r\n not really")
    assert main(["energy", str(garbage)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "run.nc: not a readable run result" in line

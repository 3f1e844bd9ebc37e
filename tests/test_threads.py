"""Thread settings: one count for torch and numba, sleeping pools, and results independent of the count."""
from __future__ import annotations

import os
import subprocess
import sys

import numba
import numpy as np
import pytest
import torch

from ferrolib import threads
from ferrolib.cli import main
from ferrolib.training import TrainConfig, train


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads(), numba.get_num_threads()
    yield
    torch.set_num_threads(before[0])
    numba.set_num_threads(before[1])


def test_default_is_the_environment_else_one_thread_per_run(monkeypatch) -> None:
    monkeypatch.delenv(threads.THREADS_ENV, raising=False)
    assert threads.default_threads() == 1
    monkeypatch.setenv(threads.THREADS_ENV, "3")
    assert threads.default_threads() == 3
    for bad in ("0", "-2", "two"):
        monkeypatch.setenv(threads.THREADS_ENV, bad)
        with pytest.raises(ValueError, match=f"FERROLIB_THREADS: .*positive integer, got '{bad}'"):
            threads.default_threads()


def test_environment_defaults_never_override_the_user(monkeypatch) -> None:
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    monkeypatch.delenv("NUMBA_THREADING_LAYER_PRIORITY", raising=False)
    monkeypatch.setenv(threads.THREADS_ENV, "2")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("NUMBA_NUM_THREADS", "1")
    threads.prepare_environment()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
    assert os.environ["NUMBA_THREADING_LAYER_PRIORITY"].startswith("omp")
    assert os.environ["OMP_NUM_THREADS"] == "2" and os.environ["NUMBA_NUM_THREADS"] == "1"


def test_set_threads_sets_torch_and_numba(restore_threads) -> None:
    assert threads.set_threads(1) == 1
    assert torch.get_num_threads() == 1 and numba.get_num_threads() == 1
    with pytest.raises(ValueError, match="--threads: .*got 0"):
        threads.set_threads(0)


def test_cli_rejects_a_bad_thread_count_before_training(tmp_path, capsys) -> None:
    status = main(["train", "--profile", "smoke", "--threads", "0", "--results-dir", str(tmp_path), "--json"])
    assert status == 2
    assert "--threads: number of threads must be a positive integer, got 0" in capsys.readouterr().err
    assert not any(tmp_path.rglob("*.nc"))


@pytest.mark.skipif(threads.available_cores() < 2 or numba.config.NUMBA_NUM_THREADS < 2,
                    reason="needs two cores")
@pytest.mark.parametrize("algorithm, mp_transfer, device_id", [
    ("sgd", "exact", "synthetic-asymmetric"), ("fp", "exact", "ID170ZR5000"), ("mp", "exact", "ID170ZR5000"),
    ("mp", "pulsed", "ID170ZR5000")])
def test_one_and_two_threads_give_identical_results(tmp_path, restore_threads, algorithm: str, mp_transfer: str,
                                                    device_id: str) -> None:
    """The paper's network (its matrices are big enough for torch to split) on 768 MNIST images: the fused
    pulsed update (sgd), fp and both mixed-precision transfers, whose ``d^T x`` of the output layer differed
    between one and two MKL threads before ``algorithms.batch_outer``."""
    config = TrainConfig.smoke(algorithm, device_id=device_id, pulse_width=2e-8, epochs=1, train_limit=768,
                               eval_limit=200, c2c=0.1, snapshot_epochs=(1,), mp_transfer=mp_transfer)
    results = []
    for count in (1, 2):
        threads.set_threads(count)
        results.append(train(config, tmp_path / str(count), progress=False))
    pulse_records = () if algorithm == "fp" else ("pulses", "device_pulses_fc1")  # fp has no devices
    for name in ("train_loss", "val_acc", "weight_hist", *pulse_records):
        np.testing.assert_array_equal(results[0][name], results[1][name])


def test_torch_loaded_first_without_a_wait_policy_is_warned() -> None:
    """The wait policy only takes effect when set before torch loads: say so when it is too late."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    late = subprocess.run([sys.executable, "-c", "import torch, ferrolib"], env=env, capture_output=True, text=True)
    assert late.returncode == 0 and "torch was imported before ferrolib" in late.stderr
    early = subprocess.run([sys.executable, "-c", "import ferrolib, torch, os; print(os.environ['OMP_WAIT_POLICY'])"],
                           env=env, capture_output=True, text=True)
    assert early.stdout.strip() == "PASSIVE" and "torch was imported" not in early.stderr


_TRAIN_IN_A_FRESH_PROCESS = """
import sys, tempfile
import numba, torch
from ferrolib import threads
from ferrolib.training import TrainConfig, train
if sys.argv[1] != "default":
    threads.set_threads(int(sys.argv[1]))
config = TrainConfig.smoke("fp", epochs=1, train_limit=64, eval_limit=64, snapshot_epochs=(1,))
with tempfile.TemporaryDirectory() as results:
    train(config, results, progress=False)
print(torch.get_num_threads(), numba.get_num_threads())
"""


@pytest.mark.skipif(threads.available_cores() < 2 or numba.config.NUMBA_NUM_THREADS < 2,
                    reason="needs two cores")
@pytest.mark.parametrize("chosen, expected", [("default", "1 1"), ("2", "2 2")])
def test_training_in_a_script_uses_one_thread_unless_one_was_chosen(monkeypatch, chosen: str, expected: str) -> None:
    """``train`` called from a notebook or script (not the CLI) gets the one-thread default, not torch's and
    numba's own (every core); a count chosen with ``set_threads`` before it is kept."""
    monkeypatch.delenv(threads.THREADS_ENV, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("NUMBA_NUM_THREADS", raising=False)
    done = subprocess.run([sys.executable, "-c", _TRAIN_IN_A_FRESH_PROCESS, chosen], capture_output=True, text=True,
                          check=True)
    assert done.stdout.split()[-2:] == expected.split()

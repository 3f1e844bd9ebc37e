"""Training runs: accuracy bands, the result contract, cache, determinism, resume, validation."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from ferrolib import provenance
from ferrolib.training import PAPER_TRAIN_SAMPLES, TrainConfig, result_path, train, validate
from ferrolib.training import network as network_module
from ferrolib.training import loop as loop_module
from ferrolib.training.data import load_data
from ferrolib.training.keys import data_hash


def small(algorithm: str, **overrides) -> TrainConfig:
    """A seconds-long run on the synthetic task with a synthetic device."""
    values = dict(algorithm=algorithm, device_id="synthetic-asymmetric", data="synthetic", epochs=3,
                  train_limit=256, eval_limit=200, hidden=(32, 16), snapshot_epochs=(0, 3), batch_size=32)
    return TrainConfig(**{**values, **overrides})


@pytest.fixture(scope="module")
def mnist_runs(tmp_path_factory) -> dict[str, xr.Dataset]:
    """fp and mp (linear synthetic device) on the MNIST subset: 4 passes over 6,400 images."""
    directory = tmp_path_factory.mktemp("runs")
    common = dict(device_id="synthetic-linear", data="subset", epochs=4, eval_limit=1000, snapshot_epochs=(0, 4))
    return {alg: train(TrainConfig(algorithm=alg, **common), directory, progress=False) for alg in ("fp", "mp")}


@pytest.mark.slow
def test_fp_reaches_accuracy_band_on_mnist_subset(mnist_runs) -> None:
    fp = mnist_runs["fp"]
    assert 0.75 <= float(fp.val_acc[-1]) <= 0.95
    assert float(fp.train_loss[-1]) < float(fp.train_loss[0])
    assert fp.attrs["data_label"].startswith("MNIST")


@pytest.mark.slow
def test_mp_on_linear_device_is_close_to_fp(mnist_runs) -> None:
    fp, mp = mnist_runs["fp"], mnist_runs["mp"]
    assert abs(float(mp.val_acc[-1]) - float(fp.val_acc[-1])) < 0.06
    assert int(mp.pulses.sum()) > 0 and int(mp.digital_macs.sum()) > 0 and int(fp.pulses.sum()) == 0


def test_result_contract_and_counters(tmp_path) -> None:
    ds = train(small("sgd"), tmp_path, progress=False)
    assert list(ds.epoch.values) == [1, 2, 3]
    assert list(ds.layer.values) == ["fc1", "fc2", "fc3"] and list(ds.polarity.values) == ["up", "down"]
    for name in ("train_loss", "val_acc", "test_acc", "samples_seen", "lr", "pulses", "forward_reads",
                 "backward_reads", "digital_macs", "wall_time", "layer_devices", "layer_inputs", "layer_outputs",
                 "weight_hist", "symmetry_point_hist", "device_pulses_fc1", "device_pulses_fc3"):
        assert name in ds, name
    assert ds.pulses.dtype == np.int64 and ds.device_pulses_fc1.dtype == np.int32
    np.testing.assert_array_equal(ds.samples_seen, [256, 512, 768])
    np.testing.assert_array_equal(ds.layer_devices, [32 * 785, 16 * 33, 10 * 17])
    # Per-epoch pulse totals add up to the final per-device counters.
    for layer in ("fc1", "fc2", "fc3"):
        per_device = ds[f"device_pulses_{layer}"].sum(dim=[d for d in ds[f"device_pulses_{layer}"].dims if d != "polarity"])
        np.testing.assert_array_equal(ds.pulses.sel(layer=layer).sum("epoch"), per_device)
    np.testing.assert_array_equal(ds.forward_reads.sel(epoch=1), [256, 256, 256])
    np.testing.assert_array_equal(ds.backward_reads.sel(epoch=1), [0, 256, 256])
    assert int(ds.digital_macs.sum()) == 0
    hist = ds.weight_hist.sel(snapshot=0)
    np.testing.assert_array_equal(hist.sum("bin"), [[32 * 785] * 2, [16 * 33] * 2, [10 * 17] * 2])
    # asymmetric soft bounds: every symmetry point at 0.2
    assert float(ds.bin_center[ds.symmetry_point_hist.sel(layer="fc1").argmax("bin")]) == pytest.approx(0.2, abs=0.05)
    assert ds.attrs["config_hash"] == provenance.config_hash(small("sgd"))
    assert '"data_kind": "synthetic"' in ds.attrs["device"] and ds.attrs["algorithm"] == "sgd"
    assert result_path(small("sgd"), tmp_path).exists()


def test_cached_result_is_loaded_without_training(tmp_path, monkeypatch) -> None:
    first = train(small("mp"), tmp_path, progress=False)

    def fail(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr(network_module.MLP, "train_step", fail)
    second = train(small("mp"), tmp_path, progress=False)
    xr.testing.assert_identical(first, second)


@pytest.mark.parametrize("algorithm", ["sgd", "mp", "sps"])
def test_same_seed_same_numbers(tmp_path, algorithm: str) -> None:
    config = small(algorithm, c2c=0.2, d2d=0.1, epochs=2, snapshot_epochs=(2,))
    a = train(config, tmp_path / "a", progress=False)
    b = train(config, tmp_path / "b", progress=False)
    for name in ("val_acc", "train_loss", "pulses", "device_pulses_fc1", "weight_hist"):
        np.testing.assert_array_equal(a[name], b[name])
    c = train(small(algorithm, c2c=0.2, d2d=0.1, epochs=2, snapshot_epochs=(2,), seed=1), tmp_path / "c", progress=False)
    assert not np.array_equal(a.device_pulses_fc1, c.device_pulses_fc1)


def test_resume_after_interruption_gives_identical_result(tmp_path, monkeypatch) -> None:
    config = small("sgd", c2c=0.1, epochs=3)
    reference = train(config, tmp_path / "full", progress=False)
    calls = {"n": 0}
    original = loop_module._accuracy

    def interrupt_in_epoch_two(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # the validation pass of epoch 2 (two passes per epoch)
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(loop_module, "_accuracy", interrupt_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "resumed", progress=False)
    checkpoint = result_path(config, tmp_path / "resumed").with_suffix(".ckpt.pt")
    assert checkpoint.exists() and not result_path(config, tmp_path / "resumed").exists()
    monkeypatch.setattr(loop_module, "_accuracy", original)
    resumed = train(config, tmp_path / "resumed", progress=False)
    assert not checkpoint.exists()
    for name in ("val_acc", "test_acc", "train_loss", "pulses", "device_pulses_fc1", "weight_hist"):
        np.testing.assert_array_equal(reference[name], resumed[name])


def test_expected_mode_on_linear_device_equals_fp(tmp_path) -> None:
    """The expected change of a pulse train on an unbounded-in-practice linear device is exactly -lr d x^T."""
    common = dict(device_id="synthetic-linear", lr=0.5, epochs=1)
    fp = train(small("fp", **common), tmp_path, progress=False)
    expected = train(small("sgd", pulse_mode="expected", **common), tmp_path, progress=False)
    np.testing.assert_allclose(fp.train_loss, expected.train_loss, rtol=1e-4)
    np.testing.assert_allclose(fp.val_acc, expected.val_acc, atol=0.011)


def test_profiles_and_learning_rate_schedule() -> None:
    paper = TrainConfig.ideal("mp")
    assert paper.samples_per_epoch == PAPER_TRAIN_SAMPLES and paper.epochs == 25 and paper.lr == 0.5
    assert TrainConfig.ideal("sgd").lr == 0.1 and TrainConfig(algorithm="sps", lr=0.05).lr == 0.05
    lrs = [loop_module._lr(paper, epoch) for epoch in (1, 10, 11, 20, 21, 25)]
    assert lrs == [0.5, 0.5, 0.25, 0.25, 0.125, 0.125]
    assert "algorithm='sgd'" in repr(TrainConfig.smoke("sgd")) and "epochs=2" in repr(TrainConfig.smoke("sgd"))
    assert provenance.config_hash(TrainConfig.smoke("sgd")) != provenance.config_hash(TrainConfig.smoke("sps"))


def test_invalid_configurations_fail_before_training() -> None:
    with pytest.raises(ValueError, match="unknown algorithm"):
        validate(TrainConfig(algorithm="adam", lr=0.1))
    with pytest.raises(ValueError, match="learning rate"):
        validate(small("sgd", lr=-0.1))
    with pytest.raises(ValueError, match="saturates every pulse train"):
        validate(small("sgd", lr=1.0, batch_size=4))
    with pytest.raises(ValueError, match="pulse mode"):
        validate(small("sgd", pulse_mode="exact"))
    with pytest.raises(ValueError, match="desired_bl"):
        validate(small("sgd", desired_bl=64))


def test_unknown_device_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="ID999"):
        validate(TrainConfig(algorithm="mp", device_id="ID999ZR1"))


def test_synthetic_task_is_labelled() -> None:
    data = load_data(small("fp"))
    assert data.source["kind"] == "synthetic" and "synthetic" in data.label
    assert data.train_x.shape == (256, 784) and float(data.train_x.max()) <= 1.0
    assert torch.equal(data.train_y, load_data(small("fp")).train_y)


def test_cli_trains_prints_json_and_rejects_bad_input(tmp_path, capsys) -> None:
    import json

    from ferrolib.cli import main

    common = ["train", "--device", "synthetic-asymmetric", "--data", "synthetic", "--profile", "smoke",
              "--results-dir", str(tmp_path)]
    assert main([*common, "--algorithm", "sps", "--epochs", "1", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["config"]["algorithm"] == "sps" and len(summary["epochs"]) == 1
    assert summary["pulses_total"]["up"] + summary["pulses_total"]["down"] > 0
    assert (tmp_path / "runs" / f"{summary['config_hash']}.nc").exists()
    assert summary["device"]["data_kind"] == "synthetic"
    assert main([*common, "--algorithm", "sps", "--epochs", "1"]) == 0  # cached: the table, device labelled
    printed = capsys.readouterr().out
    assert "device: synthetic-asymmetric at" in printed and "SYNTHETIC" in printed
    assert main([*common, "--algorithm", "sgd", "--lr", "1.5", "--batch-size", "4"]) == 2
    assert "saturates every pulse train" in capsys.readouterr().err


def test_cli_data_defaults_to_the_profiles_and_the_split_is_passed_on(monkeypatch) -> None:
    from ferrolib import mnist
    from ferrolib.cli import build_parser
    from ferrolib.cli.train import config_from_args

    monkeypatch.setattr(mnist, "resolve_auto", lambda cache_dir=None: "full")

    def config(*arguments: str) -> TrainConfig:
        return config_from_args(build_parser().parse_args(["train", *arguments]))

    assert (config().data, config("--profile", "smoke").data, config("--profile", "plain").data) == (
        "subset", "subset", "full")
    paper = config("--data", "full", "--split", "paper")
    assert (paper.data, paper.split) == ("full", "paper") and config().split == "stratified"


def test_periphery_run_is_deterministic_and_resumable(tmp_path, monkeypatch) -> None:
    config = small("mp", periphery=True, epochs=2, snapshot_epochs=(2,))
    reference = train(config, tmp_path / "full", progress=False)
    exact = train(small("mp", epochs=2, snapshot_epochs=(2,)), tmp_path / "exact", progress=False)
    assert not np.array_equal(reference.device_pulses_fc1, exact.device_pulses_fc1)
    original = loop_module._accuracy
    calls = {"n": 0}

    def interrupt(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(loop_module, "_accuracy", interrupt)
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "resumed", progress=False)
    monkeypatch.setattr(loop_module, "_accuracy", original)
    resumed = train(config, tmp_path / "resumed", progress=False)
    for name in ("val_acc", "train_loss", "device_pulses_fc1"):
        np.testing.assert_array_equal(reference[name], resumed[name])


def test_limited_data_is_a_stratified_subset():
    """Stored splits may be ordered by class (the npm subset is): a limit must not keep one digit only."""
    data = load_data(TrainConfig.smoke("fp"))
    for split, limit in (("train", 512), ("val", 500), ("test", 500)):
        labels = getattr(data, f"{split}_y")
        assert len(labels) == limit
        counts = torch.bincount(labels, minlength=10)
        assert counts.min() >= 0.07 * limit, f"{split}: class counts {counts.tolist()}"


def test_auto_data_is_resolved_into_the_result_key(monkeypatch):
    from ferrolib import mnist

    monkeypatch.setattr(mnist, "resolve_auto", lambda cache_dir=None: "subset")
    subset = TrainConfig.ideal("mp", data="auto")
    monkeypatch.setattr(mnist, "resolve_auto", lambda cache_dir=None: "full")
    full = TrainConfig.ideal("mp", data="auto")
    assert (subset.data, full.data) == ("subset", "full")
    assert result_path(subset) != result_path(full)
    assert TrainConfig.ideal("mp", data="synthetic").data == "synthetic"


def test_profiles_name_the_subset_so_a_cached_full_mnist_keeps_their_keys(monkeypatch):
    """The paper and smoke profiles ran on the subset when 'auto' resolved to it: naming it keeps every key."""
    from ferrolib import mnist

    monkeypatch.setattr(mnist, "resolve_auto", lambda cache_dir=None: "subset")
    before = [TrainConfig.ideal("sps", data="auto"), TrainConfig.smoke("mp", data="auto")]
    monkeypatch.setattr(mnist, "resolve_auto", lambda cache_dir=None: "full")
    after = [TrainConfig.ideal("sps"), TrainConfig.smoke("mp")]
    assert [c.data for c in after] == ["subset", "subset"]
    assert [provenance.config_hash(c) for c in after] == [provenance.config_hash(c) for c in before]


def test_the_split_option_keeps_old_keys_and_needs_full_mnist():
    stratified = TrainConfig.ideal("mp")
    assert provenance.config_hash(TrainConfig.ideal("mp", split="stratified")) == provenance.config_hash(stratified)
    assert "split" not in repr(stratified)
    paper = TrainConfig.ideal("mp", data="full", split="paper")
    assert provenance.config_hash(paper) != provenance.config_hash(TrainConfig.ideal("mp", data="full"))
    with pytest.raises(ValueError, match="split 'paper' .*needs data='full', got data='subset'"):
        validate(TrainConfig.ideal("fp", split="paper"))
    with pytest.raises(ValueError, match="unknown split 'random'"):
        validate(TrainConfig.ideal("fp", data="full", split="random"))


def test_the_paper_split_changes_the_data_hash(tmp_path, monkeypatch):
    """With full MNIST (here a small fake set in ``FERROLIB_MNIST``) the two splits give different arrays."""
    from ferrolib import mnist, paths
    from test_mnist import fake_mnist_dir

    fake_mnist_dir(tmp_path / "idx", n_train=100, n_test=20)
    monkeypatch.setenv(paths.MNIST_ENV, str(tmp_path / "idx"))
    monkeypatch.setattr(paths, "CACHE", tmp_path / "cache")
    stratified = load_data(TrainConfig.smoke("fp", data="full", train_limit=None, eval_limit=None))
    paper = load_data(TrainConfig.smoke("fp", data="full", split="paper", train_limit=None, eval_limit=None))
    assert (len(paper.train_y), len(paper.val_y), len(paper.test_y)) == (80, 20, 20)
    assert torch.equal(paper.test_x, stratified.test_x)
    assert data_hash(paper) != data_hash(stratified)
    train, _ = mnist.random_split_indices(100, (0.8, 0.2), 2024)
    assert torch.equal(paper.train_y, torch.from_numpy(np.arange(100) % 10)[train])

"""The study's grid: every device at its own measured widths, the noise grid with each width's fitted c2c, how
each device resolves, and combining per-device summaries with different widths."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from ferrolib import catalog, provenance, sourcedata, store, study
from ferrolib.sweep import Sweep, run_sweep
from ferrolib.training.profiles import TRANSFER_SEARCH_LR
from ferrolib.training.transfer import BUILD_CONFIG_DESIRED_BL

from fake_runs import FakeConfig, fake_train


def test_study_plan_covers_every_measured_width(shared_measurements: Path):
    parts = {part.name: part for part in study.plan()}
    devices = ("ID161ZR15000", "ID170ZR5000", "ID181ZR1000", "ID301XR1000Oct")
    by_device = ("study", "study-paper", "study-transfer")
    assert set(parts) == {*(f"{prefix}-{d}" for prefix in by_device for d in devices),
                          *(f"{prefix}-{w}" for prefix in ("study-noise", "study-noise-paper")
                            for w in ("20ns", "200ns", "2us", "20us", "200us"))}
    for prefix in by_device:
        assert len(parts[f"{prefix}-ID301XR1000Oct"].spec.axes()["pulse_width"]) == 12
        assert all(len(parts[f"{prefix}-{d}"].spec.axes()["pulse_width"]) == 6 for d in devices[:3])
    assert sum(len(p.spec) for p in parts.values()) == 3 * (3 * 6 + 12) * 3 + 5 * 3 * 3 + 5 * 2 * 3
    transfer = parts["study-transfer-ID170ZR5000"].spec  # the rules at the search's rates, build_config's BL
    assert {(c.algorithm, c.lr, c.desired_bl, c.epochs, c.forward_io.out_noise) for _, c in transfer.points()} == {
        (rule, TRANSFER_SEARCH_LR[rule], BUILD_CONFIG_DESIRED_BL, 10, 0.06) for rule in TRANSFER_SEARCH_LR}
    paper = parts["study-paper-ID170ZR5000"].spec
    assert {(c.device_model, c.data, c.mp_transfer) for _, c in paper.points()} == {
        ("paper_piecewise", "full", "deterministic_implicit_cuda")}
    assert {(c.algorithm, c.lr) for _, c in paper.points()} == {("mp", 0.5), ("sgd", 0.05), ("sps", 0.1)}
    noise = parts["study-noise-20ns"].spec
    fit = catalog.get_device("ID170ZR5000", 2e-8, "piecewise")
    assert {c.c2c for _, c in noise.points()} == {round(fit.c2c, 4)} and fit.c2c > 0
    assert {c.d2d for _, c in noise.points()} == {0.1} and noise.axes()["seed"] == [0, 1, 2]
    paper_noise = parts["study-noise-paper-20ns"].spec  # the paper's configuration with its own fits' c2c
    paper_fit = catalog.get_device("ID170ZR5000", 2e-8, "paper_piecewise")
    assert {(c.c2c, c.d2d, c.device_model, c.mp_transfer) for _, c in paper_noise.points()} == {
        (round(paper_fit.c2c, 4), 0.1, "paper_piecewise", "deterministic_implicit_cuda")}
    assert paper_noise.axes()["algorithm"] == ["mp", "sps"]
    assert study.resolution("ID170ZR5000", 2e-8, "piecewise").startswith(
        "device ID170ZR5000 20ns piecewise: committed fit data/devices/ID170ZR5000_20ns_piecewise.nc")
    assert study.resolution("ID181ZR1000", 2e-8, "piecewise").startswith(("device ID181ZR1000", "to fit from"))
    with pytest.raises(ValueError, match="no measurement"):
        study.resolution("ID181ZR1000", 3e-8, "piecewise")


def test_load_study_joins_devices_with_different_widths(tmp_path: Path):
    for device, widths in (("ID170ZR5000", [2e-8, 2e-4]), ("ID161ZR15000", [2e-8, 2e-6, 2e-4])):
        spec = Sweep(base=FakeConfig(epochs=2), devices=[device], pulse_widths=widths, algorithms=["mp", "sgd"],
                     name=f"study-{device}")
        summary = sourcedata.summarize(run_sweep(spec, tmp_path / "runs", run=fake_train, n_workers=1,
                                                 progress=False), spec)
        sourcedata.write_summary(summary, sourcedata.summary_path(spec.name, tmp_path))
    combined = study.load_study("study", tmp_path)
    assert list(combined["device"].values) == ["ID161ZR15000", "ID170ZR5000"]
    assert list(combined["pulse_width"].values) == [2e-8, 2e-6, 2e-4]
    final = combined["val_acc"].isel(epoch=-1)
    assert bool(np.isnan(final.sel(device="ID170ZR5000", pulse_width=2e-6)).all())
    assert bool(final.sel(device="ID161ZR15000").notnull().all())
    with pytest.raises(FileNotFoundError, match="make study"):
        study.load_study("study", tmp_path / "empty")
    planned = [study.StudyPart(name, None, {}) for name in
               ("study-ID170ZR5000", "study-ID161ZR15000", "study-X1", "study-paper-X1", "study-noise-20ns")]
    _, line = study.committed_study("study", tmp_path, planned)
    assert line == "the study summaries (2 devices, seed 0; not yet run: study-X1)"
    single = tmp_path / "single"
    single.mkdir()
    shutil.copy(sourcedata.summary_path("study-ID170ZR5000", tmp_path), sourcedata.summary_path("study-ID170ZR5000",
                                                                                                 single))
    assert study.committed_study("study", single, planned[:1])[1] == "the study summaries (1 device, seed 0)"


def test_load_noise_joins_widths_and_missing_parts_are_named(tmp_path: Path):
    for width, prefix in ((2e-4, "study-noise"), (2e-8, "study-noise"), (2e-6, "study-noise-paper")):
        spec = Sweep(base=FakeConfig(epochs=2), pulse_widths=[width], algorithms=["mp"], seeds=[0, 1],
                     name=f"{prefix}-{study.width_label(width)}")
        summary = sourcedata.summarize(run_sweep(spec, tmp_path / "runs", run=fake_train, n_workers=1,
                                                 progress=False), spec)
        sourcedata.write_summary(summary, sourcedata.summary_path(spec.name, tmp_path))
    noise = study.load_noise("study-noise", tmp_path)  # not the paper's noise grid beside it
    assert list(noise["pulse_width"].values) == [2e-8, 2e-4] and noise.sizes["seed"] == 2
    assert list(study.load_noise("study-noise-paper", tmp_path)["pulse_width"].values) == [2e-6]
    assert bool(noise["val_acc"].notnull().all())
    with pytest.raises(FileNotFoundError, match="make study"):
        study.load_study("study", tmp_path)  # noise summaries are not device summaries
    parts = [study.StudyPart(name, None, {}) for name in ("study-noise-20ns", "study-noise-2us", "study-X")]
    assert study.missing_parts(parts, tmp_path) == ["study-noise-2us", "study-X"]
    planned = [study.StudyPart(name, None, {}) for name in
               ("study-noise-20ns", "study-noise-200us", "study-noise-2us", "study-noise-paper-20us", "study-X")]
    _, line = study.committed_noise("study-noise", tmp_path, planned)
    assert line == "study-noise summaries (not yet run: study-noise-2us)"


@pytest.mark.slow
def test_committed_study_summaries_hold_the_runs_of_the_study_now(shared_measurements: Path):
    """What notebook 06 and the findings of docs/results.md render from: every committed study summary belongs to a sweep
    of the plan and holds each of its runs under the run key it would have now (configuration, device model,
    data, numerics); the device summaries join into one study."""
    parts = {part.name: part for part in study.plan()}
    committed = sorted(sourcedata.SOURCE_DATA.glob("study*.nc"))
    assert committed, "make study's summaries are committed in data/results/"
    for path in committed:
        assert path.stem in parts, f"{path.name} is the summary of no sweep of the study"
        assert store.covers(provenance.read_netcdf(path), parts[path.stem].spec) is None, path.name
    for prefix in ("study", "study-paper"):
        devices = sorted(p.stem.removeprefix(f"{prefix}-") for p in committed
                         if p.stem.startswith(f"{prefix}-ID"))
        if devices:
            assert sorted(study.load_study(prefix)["device"].values.tolist()) == devices, prefix


@pytest.mark.parametrize("name", ["study", "study-noise"])
def test_study_sweeps_train_with_the_ideal_profile(name: str):
    """The study varies devices, widths and noise only: every other training setting is the ideal profile's."""
    from ferrolib import sweep

    paper, _ = sweep.load_sweep_config(sweep.resolve_sweep_config("ideal"))
    spec, _ = sweep.load_sweep_config(sweep.resolve_sweep_config(name))
    varied = {"device_id", "pulse_width", "algorithm", "seed", "lr", "c2c", "d2d"}
    profile = {k: v for k, v in vars(paper.base).items() if k not in varied}
    assert {k: v for k, v in vars(spec.base).items() if k not in varied} == profile

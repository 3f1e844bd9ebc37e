"""Convergence metrics: the first epoch, samples and energy at which a run reaches its accuracy target."""
from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from ferrolib import convergence, energy
from ferrolib.convergence import NOT_REACHED

from fake_runs import FakeConfig, fake_result


def test_epochs_to_target_on_synthetic_curves():
    acc = [0.5, 0.8, 0.94, 0.96, 0.97]
    crossing = convergence.epochs_to_target(acc, 0.95)
    assert crossing.reached and crossing.epoch == 4
    assert convergence.epochs_to_target(acc, 0.95, relative_to=0.98).epoch == 3  # threshold 0.931
    assert convergence.epochs_to_target(acc, 0.95, relative_to=0.98).threshold == pytest.approx(0.931)
    missed = convergence.epochs_to_target(acc, 0.99)
    assert not missed.reached and missed.epoch == NOT_REACHED and "not reached" in repr(missed)
    assert convergence.samples_to_target(acc, [100, 200, 300, 400, 500], 0.95) == 400
    assert convergence.samples_to_target(acc, [100, 200, 300, 400, 500], 0.99) == NOT_REACHED
    assert convergence.energy_to_target(acc, [1.0, 2.0, 3.0, 4.0, 5.0], 0.8) == 2.0
    assert convergence.energy_to_target(acc, [1.0, 2.0, 3.0, 4.0, 5.0], 0.99) == NOT_REACHED
    with pytest.raises(ValueError, match="fraction"):
        convergence.epochs_to_target(acc, 95)
    with pytest.raises(ValueError, match="finite"):
        convergence.epochs_to_target([0.5, float("nan")], 0.9)


def test_convergence_dataset_matches_the_scalar_reference():
    runs = [fake_result(FakeConfig(pulse_width=w, epochs=6)) for w in (2e-8, 2e-6, 2e-4)]
    ledgers = [energy.ledger(r)[["energy_cumulative", "programming_energy_cumulative"]] for r in runs]
    stacked = xr.concat([r.merge(led, combine_attrs="drop") for r, led in zip(runs, ledgers)],
                        dim=xr.DataArray([2e-8, 2e-6, 2e-4], dims="pulse_width", name="pulse_width"))
    conv = convergence.convergence(stacked, 0.95)
    for i, run in enumerate(runs):
        crossing = convergence.epochs_to_target(run["val_acc"].values, 0.95)
        assert bool(conv["reached"][i]) == crossing.reached
        assert int(conv["epochs_to_target"][i]) == crossing.epoch
        for prefix, name in (("", "programming_energy_cumulative"), ("system_", "energy_cumulative")):
            cumulative = stacked[name].isel(pulse_width=i).values
            assert float(conv[f"{prefix}energy_to_target"][i]) == convergence.energy_to_target(
                run["val_acc"].values, cumulative, 0.95)
    assert bool((conv["system_energy_total"] >= conv["energy_total"]).all())
    assert not bool(conv["reached"][0]) and int(conv["epochs_to_target"][0]) == NOT_REACHED
    assert bool(conv["reached"][2])
    assert not np.isnan(conv["energy_to_target"]).any()

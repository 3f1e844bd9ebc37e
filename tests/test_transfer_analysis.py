"""The transfer rules' analysis (notebook 09): the search's choice (and that the studies run it), joining the
paper's runs over the common epochs, and the claims' effects, intervals and verdicts on constructed runs."""
from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from ferrolib import analysis, provenance, sourcedata, transfer_analysis
from ferrolib.training.profiles import PROFILES, TRANSFER_SEARCH_LR

WIDTHS = [2e-8, 2e-4]
SEEDS = [0, 1, 2]


def runs(curves: dict[str, list[float]], energy_per_epoch: dict[str, float], epochs: int = 4,
         jitter: float = 0.002) -> xr.Dataset:
    """Runs of one device at two widths and three seeds: every rule follows its accuracy curve (plus a small seed
    offset) and spends a fixed programming energy per epoch."""
    rules = list(curves)
    shape = (1, len(WIDTHS), len(rules), len(SEEDS), epochs)
    accuracy = np.empty(shape)
    energy = np.empty(shape)
    for r, rule in enumerate(rules):
        for s in range(len(SEEDS)):
            accuracy[0, :, r, s] = np.array(curves[rule][:epochs]) + jitter * (s - 1)
            energy[0, :, r, s] = energy_per_epoch[rule] * np.arange(1, epochs + 1)
    dims = ("device", "pulse_width", "algorithm", "seed", "epoch")
    coords = {"device": ["D"], "pulse_width": WIDTHS, "algorithm": rules, "seed": SEEDS,
              "epoch": np.arange(1, epochs + 1)}
    samples = np.broadcast_to(48_000 * np.arange(1, epochs + 1), shape)
    return xr.Dataset({"val_acc": (dims, accuracy), "programming_energy_cumulative": (dims, energy),
                       "energy_cumulative": (dims, 2 * energy), "samples_seen": (dims, samples)}, coords=coords)


def test_search_choice_is_the_best_rate_per_rule_and_the_studies_run_the_committed_one():
    search = xr.Dataset({"val_acc": (("algorithm", "learning_rate", "epoch"),
                                     [[[0.1, 0.5], [0.2, 0.9], [0.3, 0.9]], [[0.1, 0.95], [0.1, 0.2], [0.1, 0.1]]])},
                        coords={"algorithm": ["cttv2", "agad"], "learning_rate": [0.01, 0.1, 1.0], "epoch": [1, 2]})
    assert transfer_analysis.search_choice(search) == {"cttv2": 0.1, "agad": 0.01}  # first of equals
    with pytest.raises(ValueError, match="one device, width and seed"):
        transfer_analysis.search_choice(search.expand_dims(seed=[0, 1]))
    committed = provenance.read_netcdf(sourcedata.summary_path("transfer-search"))
    assert transfer_analysis.search_choice(committed) == TRANSFER_SEARCH_LR
    paper = PROFILES["paper"]
    assert all(paper.lr(rule) == TRANSFER_SEARCH_LR[rule] for rule in transfer_analysis.TRANSFER_RULES)


def test_joined_cuts_the_paper_runs_to_the_common_epochs_and_names_what_is_missing():
    paper = runs({"fp": [0.9, 0.95, 0.96, 0.97], "mp": [0.8, 0.91, 0.95, 0.96]}, {"fp": 0.0, "mp": 1.0})
    transfer = runs({"cttv2": [0.5, 0.8]}, {"cttv2": 2.0}, epochs=2)
    both = transfer_analysis.joined(transfer, paper)
    assert list(both["algorithm"].values) == ["fp", "mp", "cttv2"] and both.sizes["epoch"] == 2
    np.testing.assert_array_equal(both["val_acc"].sel(algorithm="mp").values, paper["val_acc"].sel(
        algorithm="mp").isel(epoch=[0, 1]).values)
    with pytest.raises(ValueError, match="fewer than the 4"):
        transfer_analysis.joined(paper.rename(algorithm="rule").assign_coords(rule=["cttv2", "agad"]).rename(
            rule="algorithm"), transfer)
    with pytest.raises(ValueError, match=r"lack seed \[3\]"):
        transfer_analysis.joined(transfer.assign_coords(seed=[0, 1, 3]), paper)


def test_claims_pair_each_rule_with_mp_per_width_and_pooled():
    result = runs({"mp": [0.80, 0.91, 0.95, 0.96],        # reaches 0.9 at epoch 2: energy 2 x 1.0
                   "agad": [0.85, 0.93, 0.96, 0.965],     # as accurate, reaches at epoch 2 with 0.1 per epoch
                   "cttv2": [0.5, 0.7, 0.85, 0.91],       # reaches at epoch 4 with 3 per epoch: costs more
                   "ttv2": [0.1, 0.1, 0.1, 0.1]},         # chance: never reaches
                  {"mp": 1.0, "agad": 0.1, "cttv2": 3.0, "ttv2": 0.5})
    table = transfer_analysis.claims(result)
    assert set(table["scope"]) == {"20 ns", "200 us", "pooled"}
    row = lambda claim, rule, scope="pooled": table[(table["claim"] == claim.format(rule=rule, reference="mp"))  # noqa: E731
                                                    & (table["scope"] == scope)].iloc[0]
    reaches, energy = transfer_analysis.REACHES_CLAIM, transfer_analysis.ENERGY_CLAIM
    assert row(reaches, "agad").verdict == analysis.HOLDS and row(reaches, "agad", "20 ns").n_units == 3
    assert np.isclose(row(reaches, "agad").estimate, 0.005) and row(reaches, "agad").n_units == 6
    assert row(reaches, "cttv2").verdict == analysis.FAILS and row(reaches, "ttv2").verdict == analysis.FAILS
    assert row(energy, "agad").verdict == analysis.HOLDS and np.isclose(row(energy, "agad").estimate, 1.0)
    assert row(energy, "cttv2").verdict == analysis.FAILS  # log10(2 / 12) < 0 at every point
    assert np.isclose(row(energy, "cttv2").estimate, np.log10(2.0 / 12.0))
    never = row(energy, "ttv2")  # never reached: it cannot cost less to get there
    assert never.verdict == analysis.FAILS and never.n_units == 0 and "0/6" in never.measured
    system = row(transfer_analysis.SYSTEM_ENERGY_CLAIM, "agad")  # the whole ledger: twice each, the same ratio
    assert system.verdict == analysis.HOLDS and np.isclose(system.estimate, 1.0) and system.n_units == 6


def test_points_a_device_was_not_run_at_count_nowhere():
    """A study joins devices measured at different widths (NaN where a device has none): those points are neither
    units of the intervals nor counted as missed targets."""
    result = runs({"mp": [0.80, 0.91, 0.95, 0.96], "agad": [0.85, 0.93, 0.96, 0.965]}, {"mp": 1.0, "agad": 0.1})
    result["val_acc"].loc[{"pulse_width": 2e-4, "seed": 2}] = np.nan
    table = transfer_analysis.claims(result).set_index(["claim", "scope"])
    energy = table.loc[(transfer_analysis.ENERGY_CLAIM.format(rule="agad", reference="mp"), "pooled")]
    assert energy.n_units == 5 and "5/5 points" in energy.measured and energy.verdict == analysis.HOLDS
    accuracy = table.loc[(transfer_analysis.REACHES_CLAIM.format(rule="agad", reference="mp"), "200 us")]
    assert accuracy.n_units == 2

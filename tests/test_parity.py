"""aihwkit parity: saturated update management, the two mixed-precision transfers, aihwkit's weight
granularity, and (only where aihwkit is importable, as under ``make crosscheck``) single-device round trips."""
from __future__ import annotations

import dataclasses
import importlib
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from ferrolib.aihwkit_export import from_aihwkit, to_aihwkit
from ferrolib.devices import DeviceArray, PiecewiseStep
from ferrolib.training import pulsed
from ferrolib.training.algorithms import UpdateSettings, make_layer


def test_saturated_update_management_matches_aihwkit_hand_values() -> None:
    """k = lr max|x| max|d| / dw_min = 46.5 > BL = 31: p = |x|/max|x|, q = min(k/BL |d|/max|d|, 1)."""
    x = torch.tensor([[1.0, 0.5, -0.25, 0.0]], dtype=torch.float64)
    d = torch.tensor([[0.2, -0.1, 0.02]], dtype=torch.float64)
    dw_min = 0.2 / 46.5
    for update_management, bl_management in ((True, True), (True, False), (False, True)):
        p, q, bl = pulsed.pulse_probabilities(x, d, 1.0, dw_min, 31, update_management, bl_management)
        assert int(bl[0]) == 31
        np.testing.assert_allclose(p[0].numpy(), [1.0, 0.5, 0.25, 0.0], rtol=1e-12)
        np.testing.assert_allclose(q[0].numpy(), [1.0, 0.75, 0.15], rtol=1e-12)


def test_unsaturated_update_management_balances_and_bl_management_forces_it() -> None:
    """k = 9.5 <= 31: BL = 10, ``B max|x| = A max|d| = sqrt(k/BL)``; BL management alone behaves the same
    (aihwkit turns update management on with it); neither: A = B = sqrt(lr/(dw_min BL))."""
    x = torch.tensor([[1.0, 0.5]], dtype=torch.float64)
    d = torch.tensor([[0.0095, -0.002]], dtype=torch.float64)
    scale = np.sqrt(9.5 / 10)
    for update_management in (True, False):
        p, q, bl = pulsed.pulse_probabilities(x, d, 0.1, 1e-4, 31, update_management, True)
        assert int(bl[0]) == 10
        np.testing.assert_allclose(p[0].numpy(), [scale, 0.5 * scale], rtol=1e-12)
        np.testing.assert_allclose(q[0].numpy(), [scale, scale * 0.002 / 0.0095], rtol=1e-12)
    p, q, bl = pulsed.pulse_probabilities(x, d, 0.1, 1e-4, 31, False, False)
    a = np.sqrt(0.1 / (1e-4 * 31))
    assert int(bl[0]) == 31
    np.testing.assert_allclose(p[0].numpy(), np.minimum(a * np.array([1.0, 0.5]), 1.0), rtol=1e-12)
    np.testing.assert_allclose(q[0].numpy(), a * np.array([0.0095, 0.002]), rtol=1e-12)


def test_saturation_branch_is_continuous_at_k_equal_bl() -> None:
    x = torch.tensor([[1.0, 0.3]], dtype=torch.float64)
    d = torch.tensor([[1.0, 0.6]], dtype=torch.float64)
    below = pulsed.pulse_probabilities(x, d, 31.0 * (1 - 1e-9), 1.0, 31)
    above = pulsed.pulse_probabilities(x, d, 31.0 * (1 + 1e-9), 1.0, 31)
    for a, b in zip(below[:2], above[:2]):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6)


def linear_piecewise(shape: tuple[int, int], up: float, down: float) -> DeviceArray:
    """Constant steps ``up`` and ``down`` over [-100, 100] (no clipping in these tests)."""
    ones = torch.ones(shape, dtype=torch.float64)
    nodes = torch.ones(2, dtype=torch.float64)
    return DeviceArray("piecewise", -100 * ones, 100 * ones, up * ones, down * ones, dw_min=min(up, down),
                       nodes_up=nodes, nodes_down=nodes)


def test_aihwkit_granularity_is_the_larger_scale_times_the_middle_up_node() -> None:
    config = PiecewiseStep(dw_min=0.02, up_down=0.5, w_min=-1, w_max=1, piecewise_up=(3.0, 2.0, 1.0, 0.5),
                           piecewise_down=(1.0, 1.0, 1.0, 1.0))
    # aihwkit: dw_min_aihwkit = 0.02 * 1.5 = 0.03 (the larger step), times piecewise_up[4 // 2] = 1.0
    assert pulsed.aihwkit_granularity(config.devices()) == pytest.approx(0.03)
    assert to_aihwkit(config)["dw_min"] * config.piecewise_up[2] == pytest.approx(0.03)
    with pytest.raises(ValueError, match=r"piecewise_up\[2\] is 0.0"):
        to_aihwkit(PiecewiseStep(piecewise_up=(1.0, 1.0, 0.0, 1.0), piecewise_down=(1.0,) * 4))


def test_pulsed_sgd_divides_by_aihwkits_granularity() -> None:
    """x = (0.5, 1), d = 0.25, lr = 0.25 on steps 1/64 up / 0.01 down: k = lr |x| |d| / g = 4 with g = 1/64
    (not 6.25, as with the smaller step): BL = 4, p = (0.5, 1), q = 1, both columns step down (x d > 0):
    column 1 gets exactly 4 pulses per sample, column 0 Binomial(4, 0.5)."""
    samples = 2000
    layer = make_layer("sgd", torch.zeros(1, 2), linear_piecewise((1, 2), up=1 / 64, down=0.01),
                       UpdateSettings(seed=3))
    assert layer.granularity == 1 / 64
    x = torch.tensor([[0.5, 1.0]]).repeat(samples, 1)  # dyadic values: k is exactly 4 in float32
    d = torch.full((samples, 1), 0.25)
    layer.update(x, d, lr=0.25, step=0)
    assert layer.tile.count_up.sum() == 0
    assert layer.tile.count_down[0, 1] == 4 * samples
    assert abs(layer.tile.count_down[0, 0] - 2 * samples) < 4 * np.sqrt(samples)  # variance 1 per sample


CHI_ROW = (3.7, -1.2, 0.4, 40.0)
"""Requested transfer per row, in units of eps: n = (3, -1, 0, 40)."""


def mp_layer(mp_transfer: str, rows: int, chi_row: tuple[float, ...]):
    devices = linear_piecewise((rows, len(chi_row)), up=0.015, down=0.01)  # eps = 0.0125, granularity 0.015
    layer = make_layer("mp", torch.zeros(rows, len(chi_row)), devices,
                       UpdateSettings(mp_transfer=mp_transfer, seed=5))
    layer.chi[...] = np.array(chi_row) * layer.eps
    return layer


def test_exact_transfer_applies_the_requested_pulses() -> None:
    layer = mp_layer("exact", 2, CHI_ROW)
    counts = layer.transfer(step=0)
    np.testing.assert_array_equal(counts, [[3, -1, 0, 40]] * 2)
    np.testing.assert_array_equal(layer.tile.count_up - layer.tile.count_down, counts)
    np.testing.assert_allclose(layer.chi / layer.eps, [[0.7, -0.2, 0.4, 0.0]] * 2, atol=1e-9)


def test_pulsed_transfer_counts_follow_aihwkits_binomials() -> None:
    """Row (3, -1, 0, 40) eps: k = 40 eps / g = 33.3 > 31, so BL = 31, q = 1, p_j = |n_j| / 40: device j gets
    Binomial(31, |n_j|/40) pulses in the sign of n_j; chi keeps chi - n eps whatever was applied. A row of
    (3, -1) alone: k = 3 eps/g = 2.5, BL = 3, p q = (|n_j|/3) (2.5/3): Binomial(3, 0.833) and Binomial(3, 0.278)."""
    rows = 4000
    for chi_row, bl, success in ((CHI_ROW, 31, [3 / 40, 1 / 40, 0.0, 1.0]),
                                 ((3.7, -1.2), 3, [2.5 / 3, 2.5 / 9])):
        layer = mp_layer("pulsed", rows, chi_row)
        assert layer.granularity == pytest.approx(0.015)
        requested = layer.transfer(step=0)
        np.testing.assert_allclose(layer.chi, (np.array(chi_row) - np.trunc(chi_row)) * layer.eps, atol=1e-12)
        applied = layer.tile.count_up - layer.tile.count_down
        assert np.all(np.sign(applied) * np.sign(requested) >= 0)  # never against the requested sign
        np.testing.assert_allclose(layer.tile.state, 0.015 * layer.tile.count_up - 0.01 * layer.tile.count_down)
        for j, probability in enumerate(success):
            observed = np.bincount(np.abs(applied[:, j]), minlength=bl + 1)
            assert len(observed) == bl + 1  # never more than BL pulses
            expected = rows * stats.binom.pmf(np.arange(bl + 1), bl, probability)
            keep = expected > 5  # chi-square on the well-populated counts; all others must be rare
            if keep.sum() >= 2:
                chi2 = ((observed[keep] - expected[keep]) ** 2 / expected[keep]).sum()
                assert stats.chi2.sf(chi2, keep.sum() - 1) > 1e-3, (j, observed, expected.round(1))
            else:
                assert observed[keep].sum() == rows
            assert observed[~keep].sum() <= max(5.0, 5 * expected[~keep].sum())


def test_pulsed_transfer_keeps_aihwkits_schedule() -> None:
    """aihwkit transfers after the first sample of every batch but the first: nothing moves after batch 0; batch
    1 transfers batch 0 plus its own first sample (chi = 2.5 + 0.625 eps: 3 requested pulses, at most BL)."""
    devices = linear_piecewise((1, 1), up=1 / 64, down=1 / 64)
    layer = make_layer("mp", torch.zeros(1, 1), devices, UpdateSettings(mp_transfer="pulsed", seed=2))
    x = torch.ones(4, 1)
    d = torch.full((4, 1), -1 / 64 / 4)  # lr 2.5: each sample adds 2.5/4 eps
    layer.update(x, d, lr=2.5, step=0)
    assert layer.tile.count_up.sum() == 0 and layer.chi[0, 0] == pytest.approx(2.5 / 64)
    layer.update(x, d, lr=2.5, step=1)  # first sample: chi = 2.5 eps + 2.5/4 eps -> n = 3, then 3 more samples
    assert 0 < layer.tile.count_up[0, 0] <= 3
    assert layer.chi[0, 0] == pytest.approx((2.5 + 0.625 - 3 + 3 * 0.625) / 64)


def test_mp_transfer_mode_is_validated() -> None:
    with pytest.raises(ValueError, match="mp_transfer"):
        mp_layer("stochastic", 1, (1.0,))


# --------------------------------------------------------------------- against aihwkit itself (optional)
def crosscheck_module(name: str):
    """A module of crosscheck/ (the aihwkit peer imports aihwkit only inside its functions)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "crosscheck"))
    return importlib.import_module(name)


TRAINS = {"up": [1] * 60, "down": [-1] * 60, "alternating": [1, -1] * 30}


def ferrolib_trace(config: PiecewiseStep, directions: list[int], start: float) -> np.ndarray:
    devices = config.devices()
    w = torch.tensor(start, dtype=torch.float64)
    states = []
    for direction in directions:
        w = devices.pulse(w, torch.tensor(float(direction)))
        states.append(float(w))
    return np.array(states)


@pytest.mark.parametrize("pulse_width", [2e-8, 2e-7, 2e-6, 2e-5, 2e-4])
def test_to_aihwkit_pulse_responses_match_state_by_state(pulse_width: float) -> None:
    """Exported fitted devices step identically in aihwkit (one pulse per update, crosscheck/aihwkit_peer.py)."""
    pytest.importorskip("aihwkit", reason="aihwkit is not installed (run `make crosscheck`)")
    aihwkit_peer = crosscheck_module("aihwkit_peer")
    from ferrolib.catalog import get_device

    config = get_device("ID170ZR5000", pulse_width, "piecewise").config
    parameters = to_aihwkit(config)
    back = from_aihwkit(parameters)
    for name, directions in TRAINS.items():
        for start in (0.0, config.w_min * 0.5, config.w_max * 0.5):
            ours = ferrolib_trace(back, directions, start)
            theirs = aihwkit_peer.pulse_response(parameters, directions, start)
            # aihwkit computes in float32: agree to float32 rounding accumulated over 60 pulses
            np.testing.assert_allclose(theirs, ours, atol=2e-5, err_msg=f"{pulse_width} {name} from {start}")


@pytest.mark.parametrize("algorithm", ["sgd", "sps", "mp"])
def test_peer_passes_back_the_errors_of_outputs_beyond_the_default_bound(algorithm: str) -> None:
    """With perfect reads the peer's layers pass every output's error back, as ferrolib's do: aihwkit zeroes the
    errors of outputs beyond 0.999 x its default forward.out_bound (12) even when the forward does not clip them,
    which kept plain SGD at chance; the peer sets out_bound = 0."""
    pytest.importorskip("aihwkit", reason="aihwkit is not installed (run `make crosscheck`)")
    from aihwkit.nn import AnalogLinear

    run_crosscheck = crosscheck_module("run_crosscheck")
    layer = AnalogLinear(3, 2, bias=False, rpu_config=run_crosscheck.aihwkit_peer.rpu_config(
        algorithm, run_crosscheck.exported_device(2e-8)))
    weights = torch.tensor([[0.3, 0.2, 0.1], [0.2, -0.1, 0.1]])
    layer.set_weights(weights)
    x = torch.full((1, 3), 30.0, requires_grad=True)
    y = layer(x)
    assert float(y[0, 0]) == pytest.approx(18.0, rel=1e-5)  # unclipped, beyond 12
    y.sum().backward()
    np.testing.assert_allclose(x.grad[0].numpy(), weights.sum(0).numpy(), rtol=1e-5)


def test_paper_peer_starts_where_ferrolib_starts_and_trains_fp_identically(tmp_path: Path) -> None:
    """The paper cross-check's harness: aihwkit's network in the paper's configuration holds ferrolib's initial
    weights (sps: effective weights, devices at init + reference, references at ferrolib's reference), and fp
    trained on the same split, order and init gives ferrolib's paper-profile accuracies to float32 rounding."""
    pytest.importorskip("aihwkit", reason="aihwkit is not installed (run `make crosscheck`)")
    from ferrolib.training.config import resolve_device
    from ferrolib.training.data import load_data
    from ferrolib.training.loop import _init_weights, train
    from ferrolib.training.profiles import config_from_profile

    paper_peer = crosscheck_module("paper_peer")
    small = {"data": "subset", "split": "stratified", "train_limit": 640, "eval_limit": 200, "samples_per_epoch": 640,
             "epochs": 2, "snapshot_epochs": ()}
    sps = config_from_profile("paper", "sps", device_id="ID170ZR5000", pulse_width=2e-4, seed=3, **small)
    device = resolve_device(sps)
    model, estimates = paper_peer.crosscheck_model(sps, to_aihwkit(device), 0.05, 0.25)
    initial = _init_weights([784, 256, 128, 10], torch.Generator().manual_seed(3))
    for layer, weight in zip(model.analog_layers(), initial):
        matrix, bias = layer.get_weights()
        np.testing.assert_allclose(matrix.numpy(), weight[:, :-1].numpy(), atol=1e-6)
        np.testing.assert_allclose(bias.numpy(), weight[:, -1].numpy(), atol=1e-6)
    assert [len(tiles) for tiles in estimates] == [2, 1, 1]  # fc1 on two tiles of 392 inputs
    fp = config_from_profile("paper", "fp", device_id="ID170ZR5000", pulse_width=2e-8, seed=1, **small)
    theirs = paper_peer.train(fp, resolve_device(fp), load_data(fp), 2)["val_acc"]
    ours = train(fp, tmp_path, progress=False)["val_acc"].values
    np.testing.assert_allclose(theirs, ours, atol=2 / 200)


# ------------------------------------------------- the cross-check's own bookkeeping (no aihwkit needed)
@pytest.mark.parametrize("analog_bias", [True, False], ids=["analog bias", "digital bias"])
def test_peer_pulse_estimate_is_the_expected_count_of_aihwkits_trains(analog_bias: bool) -> None:
    """The cross-check's expected aihwkit pulses (sum_b BL_b p_bj q_bi, up where x_j d_i < 0) equal those of
    ``pulsed.pulse_probabilities`` (tested against aihwkit's hand values above) on the same x and d, including a
    saturated sample (k > BL), a sample with d = 0, which fires nothing (it gave NaN before), and one whose only
    non-zero input is the bias (with an analog bias; with a digital one, the paper's, it fires nothing)."""
    peer = crosscheck_module("aihwkit_peer")
    params = {"dw_min": 0.05, "piecewise_up": [0.5, 1.6, 1.2, 0.4]}
    granularity = 0.05 * 1.2
    generator = torch.Generator().manual_seed(3)
    x = torch.rand(6, 5, generator=generator, dtype=torch.float64) - 0.3
    d = (torch.rand(6, 4, generator=generator, dtype=torch.float64) - 0.5) * 0.02
    d[1] = 0.0
    x[2] = 0.0
    d[3] *= 20000.0  # k = lr max|x| max|d| / granularity > 31
    estimate = peer.PulseEstimate("sgd", {"params": params, "granularity": 0.0}, (4, 6 if analog_bias else 5),
                                  analog_bias=analog_bias)
    estimate.observe(x, d, 0.1)
    with_bias = torch.cat([x, torch.ones(6, 1, dtype=torch.float64)], dim=1) if analog_bias else x
    p, q, bl = pulsed.pulse_probabilities(with_bias, d, 0.1, granularity, peer.DESIRED_BL, True, True)
    live = (with_bias.abs().amax(1) > 0) & (d.abs().amax(1) > 0)
    expected = bl[:, None, None] * q[:, :, None] * p[:, None, :] * live[:, None, None]
    up = (d[:, :, None] * with_bias[:, None, :]) < 0
    down = (d[:, :, None] * with_bias[:, None, :]) > 0
    assert int(bl[3]) == peer.DESIRED_BL and estimate.up > 0 and estimate.down > 0
    assert estimate.up == pytest.approx(float(expected[up].sum()), rel=1e-12)
    assert estimate.down == pytest.approx(float(expected[down].sum()), rel=1e-12)


def test_peer_estimate_on_ferrolibs_own_x_and_d_gives_its_counted_mp_pulses(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The paper cross-check's aihwkit pulses of mixed precision are the counts of aihwkit's DETERMINISTIC_IMPLICIT
    transfer replayed on the x and d each tile receives (digital bias, fc1 on two tiles of 392 inputs). Fed
    ferrolib's own x and d in a paper-profile run (the CUDA schedule: a transfer after every mini-batch, as the
    replay), they are ferrolib's counted pulses exactly, layer by layer and polarity by polarity."""
    from ferrolib.training import algorithms
    from ferrolib.training.config import resolve_device
    from ferrolib.training.loop import train
    from ferrolib.training.profiles import config_from_profile

    peer = crosscheck_module("aihwkit_peer")
    algorithm = "mp"
    config = config_from_profile("paper", algorithm, device_id="ID170ZR5000", pulse_width=2e-8, data="subset",
                                 split="stratified", train_limit=3200, eval_limit=100, samples_per_epoch=3200, epochs=1,
                                 snapshot_epochs=())
    device = resolve_device(config)
    up, down = device.steps_at_zero
    exported = {"params": to_aihwkit(device), "granularity": (abs(up) + abs(down)) / 2}
    layer_class = algorithms.MixedPrecisionLayer
    original, estimates = layer_class.update, {}

    def observed(layer, x, d, lr, step):
        if id(layer) not in estimates:
            estimates[id(layer)] = peer.PulseEstimate(algorithm, exported, layer.tile.shape, analog_bias=False,
                                                      implicit_transfer=True)
        estimates[id(layer)].observe(torch.as_tensor(x), torch.as_tensor(d), lr)
        return original(layer, x, d, lr, step)

    monkeypatch.setattr(layer_class, "update", observed)
    counted = train(config, tmp_path, progress=False)["pulses"].values[0]
    tiles = list(estimates.values())
    assert [t.chi.shape for t in tiles] == [(256, 392), (256, 392), (128, 256), (10, 128)]
    per_layer = np.array([[tiles[0].up + tiles[1].up, tiles[0].down + tiles[1].down],
                          [tiles[2].up, tiles[2].down], [tiles[3].up, tiles[3].down]])
    assert counted[1].sum() > 0 and counted[2].min() > 1000  # fc2 and fc3 both move
    np.testing.assert_array_equal(per_layer, counted)


def test_crosscheck_verdicts_compare_means_within_the_seed_range_and_pulse_ratios() -> None:
    """sgd: ferrolib's mean 0.02 above aihwkit's (within 0.03) in epoch 1, 0.10 above in epoch 2 (aihwkit's range
    0.04): not within; fc1 pulses 8 % / 29 % above in the first epoch / over the run. fp has no pulse row."""
    crosscheck = crosscheck_module("run_crosscheck")
    runs = []
    for simulator, accuracy, fc1 in (("ferrolib", (0.52, 0.80), (108, 150)), ("aihwkit", (0.50, 0.70), (100, 100))):
        for seed, offset in ((0, -0.02), (1, 0.02)):
            key = {"algorithm": "sgd", "pulse_width": 2e-8, "simulator": simulator, "seed": seed}
            pulses = [[[count, count], [50, 50]] for count in fc1]
            runs.append({"key": key, "val_acc": [a + offset for a in accuracy], "pulses": pulses})
            runs.append({"key": {**key, "algorithm": "fp"}, "val_acc": [0.9, 0.95], "pulses": [[[0, 0]]] * 2})
    accuracy, pulses = crosscheck.summarise(runs)
    sgd = accuracy[accuracy.algorithm == "sgd"].set_index("epoch")
    assert list(sgd.within) == [True, False]
    assert sgd.loc[2, "aihwkit_max"] - sgd.loc[2, "aihwkit_min"] == pytest.approx(0.04)
    assert set(pulses.algorithm) == {"sgd"}
    verdict = crosscheck.verdicts(accuracy, pulses).set_index("algorithm")
    assert not verdict.loc["sgd", "accuracy_within"] and verdict.loc["fp", "accuracy_within"]
    assert verdict.loc["sgd", "max_difference"] == pytest.approx(0.10) and verdict.loc["sgd", "at_epoch"] == 2
    assert (verdict.loc["sgd", "pulse_ratio_epoch1_min"], verdict.loc["sgd", "pulse_ratio_epoch1_max"]) == \
        pytest.approx((1.0, 1.08))
    assert verdict.loc["sgd", "pulses_within_epoch1"] and not verdict.loc["sgd", "pulses_within_run"]
    assert verdict.loc["sgd", "pulse_ratio_run_max"] == pytest.approx(1.29)


def test_crosscheck_counts_a_difference_inside_ferrolibs_seed_range_as_seed_variation() -> None:
    """Epoch 1: means 0.50 / 0.61 differ by 0.11 > max(aihwkit's range 0.02, 0.03), not within, but aihwkit's
    mean lies inside ferrolib's seed range [0.30, 0.70]: agrees. Epoch 2: outside both. fc1 up: ratio 1.11 (not
    within 10 %) but aihwkit's 100 lies inside ferrolib's [80, 153]: agrees; fc1 down 1.25 outside [120, 130]:
    disagrees, named; fc2 0.96: within."""
    crosscheck = crosscheck_module("run_crosscheck")
    runs = []
    ferrolib = {"accuracy": ((0.30, 0.50), (0.50, 0.52), (0.70, 0.54)), "fc1": ((80, 120), (100, 125), (153, 130))}
    for seed in range(3):
        key = {"algorithm": "sgd", "pulse_width": 2e-5, "simulator": "ferrolib", "seed": seed}
        pulses = [[list(ferrolib["fc1"][seed]), [50, 50]], [[0, 0], [0, 0]]]
        runs.append({"key": key, "val_acc": list(ferrolib["accuracy"][seed]), "pulses": pulses})
    for seed, accuracy in ((0, (0.60, 0.60)), (1, (0.62, 0.62))):
        key = {"algorithm": "sgd", "pulse_width": 2e-5, "simulator": "aihwkit", "seed": seed}
        runs.append({"key": key, "val_acc": list(accuracy), "pulses": [[[100, 100], [52, 52]], [[0, 0], [0, 0]]]})
    accuracy, pulses = crosscheck.summarise(runs)
    assert list(accuracy.within) == [False, False]
    assert list(accuracy.in_ferrolib_range) == [True, False]
    assert list(accuracy.agrees) == [True, False]
    fc1 = pulses[(pulses.layer == "fc1") & (pulses.span == "run")].iloc[0]
    assert (fc1.ferrolib_up_min, fc1.ferrolib_up, fc1.ferrolib_up_max) == pytest.approx((80, 111, 153))
    assert fc1.ratio_up == pytest.approx(1.11) and fc1.agrees_up and not fc1.agrees_down
    verdict = crosscheck.verdicts(accuracy, pulses).iloc[0]
    assert (verdict.seeds, verdict.epochs_within, verdict.epochs_agree) == (2, 0, 1)
    assert not verdict.pulses_within_run and not verdict.pulses_agree_run
    assert verdict.pulses_disagree_run == "fc1 down 1.25"


def test_recorded_crosscheck_reads_back_per_configuration(tmp_path: Path) -> None:
    """``ferrolib.parity`` reads a configuration's tables from its own folder (ideal: data/crosscheck, paper:
    data/crosscheck/paper) and sums the verdicts per rule: sgd at two widths, one epoch of two disagreeing at the
    first (aihwkit 0.10 below, outside ferrolib's range), both agreeing at the second; one pulse count off."""
    from ferrolib import parity, plotting

    crosscheck = crosscheck_module("run_crosscheck")
    runs = []
    for width, gap in ((2e-8, 0.10), (2e-5, 0.0)):
        for simulator, shift in (("ferrolib", 0.0), ("aihwkit", -gap)):
            for seed in (0, 1):
                key = {"algorithm": "sgd", "pulse_width": width, "simulator": simulator, "seed": seed}
                fc1 = 150 if simulator == "ferrolib" and width == 2e-8 else 100
                runs.append({"key": key, "val_acc": [0.50 + 0.01 * seed, 0.80 + shift + 0.01 * seed],
                             "pulses": [[[fc1, 100], [50, 50]]] * 2})
    accuracy, pulses = crosscheck.summarise(runs)
    folder = parity.crosscheck_dir("paper", tmp_path)
    assert folder == tmp_path / "paper" and parity.crosscheck_dir("ideal", tmp_path) == tmp_path
    assert parity.load_crosscheck("paper", tmp_path) is None
    folder.mkdir()
    accuracy.to_csv(folder / "accuracy.csv", index=False)
    pulses.to_csv(folder / "pulses.csv", index=False)
    crosscheck.verdicts(accuracy, pulses).to_csv(folder / "verdicts.csv", index=False)
    (folder / "meta.json").write_text('{"aihwkit": "1.2.0", "seeds": [0, 1], "epochs": 2}')
    record = parity.load_crosscheck("paper", tmp_path)
    assert "profile='paper'" in repr(record) and "cells=2" in repr(record)
    summary = parity.verdict_summary(record).set_index("rule")
    assert summary.loc["sgd", "epochs agree"] == "3/4" and summary.loc["sgd", "widths"] == 2
    assert summary.loc["sgd", "largest difference"] == pytest.approx(0.10)
    assert summary.loc["sgd", "pulse ratio (run)"] == "1.00-1.50"
    assert summary.loc["sgd", "pulse counts disagreeing"] == 1
    fig = plotting.simulator_accuracy_grid(record.accuracy, "title")
    assert [ax.get_title() for ax in fig.axes] == ["sgd, 20 ns", "sgd, 20 us"]
    assert [line.get_label() for line in fig.axes[0].get_lines()] == ["ferrolib", "aihwkit"]
    with pytest.raises(ValueError, match="unknown cross-check profile 'cuda'"):
        parity.crosscheck_dir("cuda")


def test_paper_crosscheck_runs_mixed_precision_on_aihwkits_cpu_schedule() -> None:
    """The paper cross-check compares with aihwkit 1.2 on the CPU: ferrolib's mp there transfers on that schedule
    (the paper profile's own is the CUDA one the paper ran); every other setting is the ``paper`` profile's, and the
    ideal cross-check runs ``TrainConfig.ideal``."""
    from ferrolib.training.config import TrainConfig
    from ferrolib.training.profiles import config_from_profile

    crosscheck = crosscheck_module("run_crosscheck")
    mp = crosscheck.run_config("paper", "mp", 2e-8, 1, 10)
    profile = config_from_profile("paper", "mp", pulse_width=2e-8, seed=1, epochs=10, device_id="ID170ZR5000",
                                  snapshot_epochs=())
    assert profile.mp_transfer == "deterministic_implicit_cuda" and mp.mp_transfer == "deterministic_implicit"
    assert mp == dataclasses.replace(profile, mp_transfer="deterministic_implicit")
    assert crosscheck.run_config("paper", "sps", 2e-8, 1, 10).sps_reference == "paper_alternating"
    assert crosscheck.run_config("ideal", "mp", 2e-8, 1, 10) == TrainConfig.ideal(
        "mp", pulse_width=2e-8, seed=1, epochs=10, device_id="ID170ZR5000", snapshot_epochs=())


def test_transfer_crosscheck_runs_the_headline_sweeps_configurations(shared_measurements) -> None:
    """The paper-transfer record trains the transfer rules as sweeps/transfer-headline.toml does (so ferrolib's
    epochs come from its committed summary under the same run key), and reads back without pulse ratios (aihwkit
    counts no pulses of its transfer compounds)."""
    from ferrolib import parity, sweep

    crosscheck = crosscheck_module("run_crosscheck")
    headline, _ = sweep.load_sweep_config(sweep.resolve_sweep_config("transfer-headline"))
    points = {(c.algorithm, c.pulse_width, c.seed): c for _, c in headline.points()}
    for rule in crosscheck.TRANSFER_ALGORITHMS:
        config = crosscheck.run_config("paper", rule, 2e-8, 1, 10)
        assert dataclasses.replace(config, snapshot_epochs=points[rule, 2e-8, 1].snapshot_epochs) == points[rule, 2e-8, 1]
    assert parity.CROSSCHECK_CONFIGURATIONS["paper-transfer"] == "paper"
    assert parity.crosscheck_dir("paper-transfer", Path("x")) == Path("x") / "paper-transfer"
    runs = [{"key": {"algorithm": "agad", "pulse_width": 2e-8, "simulator": simulator, "seed": seed},
             "val_acc": [0.8 + 0.01 * seed, 0.9], "pulses": [[[10, 10]]] * 2 if simulator == "ferrolib" else [[], []]}
            for simulator in ("ferrolib", "aihwkit") for seed in (0, 1)]
    accuracy, pulses = crosscheck.summarise(runs)
    verdicts = crosscheck.verdicts(accuracy, pulses)
    assert bool(verdicts.accuracy_agrees.iloc[0]) and "pulse_ratio_run_min" not in verdicts


def test_tile_probe_splits_the_pulse_ratio_into_rule_and_trajectory() -> None:
    """ferrolib counts 90 where aihwkit's rule on ferrolib's x, d expects 100 (rule 0.9) and aihwkit expects 125
    on its own x, d (trajectory 0.8): the cross-check's ratio 0.72 is their product; |x|, |d| ratios per layer."""
    probe = crosscheck_module("tile_probe")
    ferrolib = {("mp", 2e-5, 0): {"counted": [[[90, 40]]], "pulses": [[[100, 40]]], "mean_abs_x": [[0.2]],
                                  "mean_abs_d": [[0.003]]}}
    aihwkit = {("mp", 2e-5, seed): {"pulses": [[[125 + offset, 40]]], "mean_abs_x": [[0.25]],
                                    "mean_abs_d": [[0.004 + offset / 1e4]]} for seed, offset in ((0, -5), (1, 5))}
    table = probe.probe_table(ferrolib, aihwkit).set_index("polarity")
    up = table.loc["up"]
    assert (up.rule_ratio, up.trajectory_ratio, up.pulse_ratio) == pytest.approx((0.9, 0.8, 0.72))
    assert (up.abs_x_ratio, up.abs_d_ratio) == pytest.approx((0.8, 0.75))
    assert (up.ferrolib_seeds, up.aihwkit_seeds) == (1, 2)
    assert table.loc["down", "pulse_ratio"] == pytest.approx(1.0)


def test_tile_probe_reproduces_ferrolibs_training_loop(tmp_path: Path) -> None:
    """The probe's loop (layers wrapped to show x and d to aihwkit's pulse estimator) trains exactly as ``train``:
    same accuracies and counted pulses per epoch; the estimator saw every layer's x and d (non-zero mean |x|,
    |d| and expected pulses)."""
    from ferrolib.training.config import TrainConfig
    from ferrolib.training.loop import train

    probe = crosscheck_module("tile_probe")
    config = TrainConfig.smoke("sgd", device_id="ID170ZR5000", pulse_width=2e-5, train_limit=256, eval_limit=200,
                               snapshot_epochs=())
    run = probe.ferrolib_probe(config, probe.run_crosscheck.exported_device(2e-5))
    reference = train(config, tmp_path, progress=False)
    np.testing.assert_array_equal(run["counted"], reference["pulses"].values)
    np.testing.assert_allclose(run["val_acc"], reference["val_acc"].values, rtol=0, atol=1e-12)
    assert np.asarray(run["counted"]).sum() > 0
    assert np.all(np.asarray(run["mean_abs_x"]) > 0) and np.all(np.asarray(run["mean_abs_d"]) > 0)
    assert np.all(np.asarray(run["pulses"]).sum(axis=(0, 2)) > 0)


@pytest.mark.parametrize("algorithm", ["sgd", "mp"])
def test_both_simulators_back_propagate_the_same_errors_from_the_same_weights(algorithm: str) -> None:
    """From ferrolib's weights after 3 mini-batches, aihwkit's layers receive the errors d that ferrolib's do, to
    float32 rounding (the tile probe's lockstep check: a pulse-count gap with the same rule and the same
    back-propagation is the trajectory)."""
    pytest.importorskip("aihwkit", reason="aihwkit is not installed (run `make crosscheck`)")
    from ferrolib.training.config import TrainConfig

    probe = crosscheck_module("tile_probe")
    config = TrainConfig.smoke(algorithm, device_id="ID170ZR5000", pulse_width=2e-8, train_limit=256,
                               eval_limit=200, mp_transfer="pulsed")
    errors = probe.lockstep_errors(config, probe.run_crosscheck.exported_device(2e-8), warmup=3)
    assert len(errors) == 3 and max(errors) < 1e-4

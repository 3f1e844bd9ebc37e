"""The paper's own update rules: mixed precision's DETERMINISTIC_IMPLICIT transfer (fast path against the loop
written from aihwkit's C++, closed-form counts) and SP shifting's reference from the short alternating train."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ferrolib import devices as dev
from ferrolib.symmetry import PAPER_ALTERNATING_PULSES, PAPER_ALTERNATING_TAIL, reference_point
from ferrolib.training import TrainConfig, pulsed, train
from ferrolib.training.algorithms import MP_TRANSFERS, UpdateSettings, make_layer
from ferrolib.training.reference import implicit_transfer_reference
from test_pulsed import SHAPE, make_devices


@pytest.mark.parametrize("kind", ["piecewise", "softbounds", "powstep"])
@pytest.mark.parametrize("c2c, max_pulses", [(0.0, None), (0.3, 4)])
def test_implicit_transfer_fast_path_equals_the_aihwkit_loop(kind: str, c2c: float, max_pulses) -> None:
    """``pulsed_transfer(implicit=True)`` and ``pulsed_transfer_and_accumulate(implicit=True)`` leave chi, the
    requested counts, states, counters and read-out weight exactly as ``implicit_transfer_reference`` (then the
    accumulation of the other samples), over three transfers with a silent row, a saturated row (k > desired_bl)
    and a non-zero reference."""
    devices = make_devices(kind, c2c)
    params = pulsed.kernel_device(devices, SHAPE)
    eps = params.scale_up.copy()
    g = torch.Generator().manual_seed(4)
    state0 = (devices.w_min + torch.rand(SHAPE, generator=g, dtype=torch.float64) * (devices.w_max - devices.w_min))
    chi0 = (torch.randn(SHAPE, generator=g, dtype=torch.float64) * 3 * torch.from_numpy(eps)).numpy()
    chi0[0] = 0.0  # a silent row
    chi0[1] *= 40.0  # a saturated row
    reference = 0.1 * torch.randn(SHAPE, generator=g, dtype=torch.float64).numpy()
    x = torch.randn(4, SHAPE[1], generator=g)
    d = torch.randn(4, SHAPE[0], generator=g)
    d[:, 0] = 0.0
    first, rest = (d[:1].T @ x[:1]).numpy(), (d[1:].T @ x[1:]).numpy()
    granularity, desired_bl, seed = 0.01, 7, 9
    results = {}
    for variant in ("loop", "fast", "fast and accumulate"):
        chi, state = chi0.copy(), state0.numpy().copy()
        up, down = np.zeros(SHAPE, np.int64), np.zeros(SHAPE, np.int64)
        weight = pulsed.effective_weight(state, reference)
        fields = {"chi": chi, "up": up, "down": down}
        for step in range(3):
            event0 = step * SHAPE[0]
            if variant == "loop":
                new_state, counts = implicit_transfer_reference(
                    chi, eps, max_pulses, first, -0.5, granularity, desired_bl, seed, event0, torch.from_numpy(state),
                    devices, up, down)
                state = new_state.numpy()
                fields[f"counts{step}"] = counts
                pulsed.accumulate(chi, rest, 0.5)
            elif variant == "fast":
                fields[f"counts{step}"] = pulsed.pulsed_transfer(
                    chi, eps, max_pulses, first, -0.5, granularity, desired_bl, seed, event0, state, params, up, down,
                    weight, reference, implicit=True)
                pulsed.accumulate(chi, rest, 0.5)
            else:
                pulsed.pulsed_transfer_and_accumulate(chi, eps, max_pulses, x[0].numpy(), d[0].numpy(), rest, 0.5,
                                                      granularity, desired_bl, seed, event0, state, params, up, down,
                                                      weight, reference, implicit=True)
        fields["state"] = state
        fields["weight"] = weight if variant != "loop" else pulsed.effective_weight(state, reference)
        results[variant] = fields
    expected = results["loop"]
    assert expected["up"].sum() > 10 and expected["down"].sum() > 10
    assert not (expected["up"] + expected["down"])[0].any()
    assert (expected["up"] + expected["down"])[1].max() >= desired_bl  # the saturated row got full trains
    for variant, fields in results.items():
        for name, value in fields.items():
            np.testing.assert_array_equal(value, expected[name], err_msg=f"{variant}: {name}")


def test_implicit_counts_are_the_requested_change_over_the_granularity() -> None:
    """Without saturation every device receives ``rint(|n| eps / g)`` pulses in the direction of n (the counters
    count them, as every transfer does); a row with ``max |n| eps / g > desired_bl`` gives its largest request
    ``desired_bl`` pulses and the others ``rint(desired_bl |n| / max |n|)``."""
    devices = make_devices("softbounds")
    params = pulsed.kernel_device(devices, SHAPE)
    eps = np.full((1, SHAPE[1]), 0.013)
    granularity, desired_bl = 0.02, 31
    requested = np.array([[0, 1, -2, 3, -7, 12]] * SHAPE[0])
    requested[4] = [0, 100, -40, 25, -10, 5]  # saturated: 100 * 0.013 / 0.02 = 65 > 31
    chi = (requested + 0.5 * np.sign(requested)) * eps  # trunc(chi / eps) = requested
    up, down = np.zeros(SHAPE, np.int64), np.zeros(SHAPE, np.int64)
    state = np.zeros(SHAPE)
    counts = pulsed.pulsed_transfer(chi, eps, None, None, 0.0, granularity, desired_bl, 0, 0, state, params, up, down,
                                    implicit=True)
    np.testing.assert_array_equal(counts, requested)
    ratio = np.abs(requested[:4]) * 0.013 / granularity
    assert np.abs(ratio - np.floor(ratio) - 0.5).min() > 1e-6  # no ties
    np.testing.assert_array_equal((up - down)[:4], np.sign(requested[:4]) * np.rint(ratio))
    expected_saturated = np.rint(desired_bl * np.abs(requested[4]) / 100)
    np.testing.assert_array_equal((up + down)[4], expected_saturated)
    assert (up + down)[4].max() == desired_bl


def test_mixed_precision_transfers_are_validated_and_named() -> None:
    assert {"deterministic_implicit", "deterministic_implicit_cuda"} <= set(MP_TRANSFERS)
    with pytest.raises(ValueError, match="mp_transfer"):
        make_layer("mp", torch.zeros(2, 2), make_devices("softbounds").map(lambda v: v[:2, :2]),
                   UpdateSettings(mp_transfer="implicit"))


def test_cuda_schedule_transfers_after_every_mini_batch_but_the_first() -> None:
    """``deterministic_implicit_cuda`` adds the whole first mini-batch to chi without pulsing, then each later
    mini-batch in full before its transfer: chi ends as ``-lr sum d^T x`` minus the transferred ``n eps``."""
    devices = make_devices("softbounds").map(lambda v: v[:3, :4])
    layer = make_layer("mp", torch.zeros(3, 4), devices, UpdateSettings(mp_transfer="deterministic_implicit_cuda"))
    g = torch.Generator().manual_seed(2)
    batches = [(torch.randn(8, 4, generator=g), torch.randn(8, 3, generator=g)) for _ in range(3)]
    layer.update(*batches[0], lr=0.5, step=0)
    assert layer.tile.count_up.sum() + layer.tile.count_down.sum() == 0
    np.testing.assert_allclose(layer.chi, -0.5 * (batches[0][1].T @ batches[0][0]).double().numpy(), rtol=1e-6)
    for step, (x, d) in enumerate(batches[1:], start=1):
        total = layer.chi - 0.5 * (d.T @ x).double().numpy()
        layer.update(x, d, lr=0.5, step=step)
        assert np.all(np.abs(layer.chi) < layer.eps)
        np.testing.assert_allclose(layer.chi, total - np.trunc(total / layer.eps) * layer.eps, rtol=1e-6, atol=1e-9)
    assert layer.tile.count_up.sum() + layer.tile.count_down.sum() > 0


# ------------------------------------------------------------------------------------- SP shifting's reference
def _soft_bounds(a_up, a_down, w_min, w_max) -> dev.DeviceArray:
    as_tensor = lambda v: torch.as_tensor(v, dtype=torch.float64)  # noqa: E731
    return dev.DeviceArray("softbounds", as_tensor(w_min), as_tensor(w_max), as_tensor(a_up), as_tensor(a_down),
                           dw_min=float(np.min(a_down)))


def _paper_alternating_closed_form(a_up, a_down, w_min, w_max):
    """Soft bounds from w = 0, up first: after the up pulse of pair m ``u_m = u* + (alpha beta)^(m-1) (a_up - u*)``,
    after its down pulse ``v_m = beta u_m - a_down``, with ``alpha = 1 - a_up/w_max``, ``beta = 1 + a_down/w_min``
    and ``u* = (a_up - alpha a_down) / (1 - alpha beta)``; the reference is the mean of the states after pulses
    44 to 48: ``(v_22 + u_23 + v_23 + u_24 + v_24) / 5``."""
    alpha, beta = 1 - a_up / w_max, 1 + a_down / w_min
    u_star = (a_up - alpha * a_down) / (1 - alpha * beta)
    u = lambda m: u_star + (alpha * beta) ** (m - 1) * (a_up - u_star)  # noqa: E731
    v = lambda m: beta * u(m) - a_down  # noqa: E731
    return (v(22) + u(23) + v(23) + u(24) + v(24)) / 5


def test_paper_alternating_reference_is_the_closed_form_on_soft_bounds() -> None:
    """Per device (with device-to-device variation, so each device runs its own train): the mean of the last 5
    of 48 alternating pulses from w = 0, up first, equals the closed form, transient included."""
    a_up = np.array([[0.08, 0.01], [0.2, 0.03]])
    a_down = np.array([[0.05, 0.012], [0.1, 0.05]])
    w_min, w_max = np.array([[-0.8, -1.0], [-1.2, -0.6]]), np.array([[1.0, 0.7], [1.1, 1.3]])
    devices = _soft_bounds(a_up, a_down, w_min, w_max)
    reference = reference_point(devices, "paper_alternating").numpy()
    np.testing.assert_allclose(reference, _paper_alternating_closed_form(a_up, a_down, w_min, w_max), rtol=0,
                               atol=1e-13)
    assert PAPER_ALTERNATING_PULSES == 48 and PAPER_ALTERNATING_TAIL == 5
    # slow devices still carry the start's transient: the reference is not the analytic root there
    analytic = reference_point(devices, "analytic").numpy()
    assert abs(reference[0, 1] - analytic[0, 1]) > 4 * a_up[0, 1]


def test_paper_alternating_agrees_with_the_long_train_from_zero_once_converged() -> None:
    """Where the train has converged within 24 pairs (large steps), the paper's reference and ``protocol_from_zero``
    (4000 pulses, mean of the last 200) differ only by where the 5-state mean sits in the two-state cycle: a tenth
    of the down step, ``(v* - u*) / 10``; the same on a piecewise device. The noise-free model is used even for a
    noisy device."""
    devices = _soft_bounds(0.15, 0.1, -1.0, 1.0)
    paper = float(reference_point(devices, "paper_alternating"))
    long_train = float(reference_point(devices, "protocol_from_zero"))
    alpha, beta = 1 - 0.15, 1 - 0.1
    u_star = (0.15 - alpha * 0.1) / (1 - alpha * beta)
    assert paper - long_train == pytest.approx((beta * u_star - 0.1 - u_star) / 10, abs=1e-3)  # transient 0.765^23
    assert abs(paper - long_train) < 0.2 * 0.1
    piecewise = dev.DeviceArray("piecewise", torch.tensor(-1.0, dtype=torch.float64),
                                torch.tensor(1.0, dtype=torch.float64), torch.tensor(0.1, dtype=torch.float64),
                                torch.tensor(0.1, dtype=torch.float64), dw_min=0.1, c2c=0.5,
                                nodes_up=torch.tensor([1.5, 1.2, 1.0, 0.6, 0.2], dtype=torch.float64),
                                nodes_down=torch.tensor([0.2, 0.6, 1.0, 1.2, 1.5], dtype=torch.float64))
    step = float(piecewise.dw_up(torch.tensor(0.0, dtype=torch.float64)))
    paper = float(reference_point(piecewise, "paper_alternating"))
    assert paper == pytest.approx(float(reference_point(piecewise, "protocol_from_zero")), abs=0.2 * step)
    assert paper == float(reference_point(piecewise, "paper_alternating"))  # noise-free: reproducible


def test_sps_with_the_paper_reference_starts_at_the_initial_weights() -> None:
    """``sps_init="reference"``: every device is programmed to its reference plus the initial weight, so the
    effective weights start at the initial weights exactly (where no bound clips)."""
    devices = _soft_bounds(np.full((3, 4), 0.05), np.full((3, 4), 0.03), np.full((3, 4), -1.0), np.full((3, 4), 1.0))
    weight = 0.1 * torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    layer = make_layer("sps", weight, devices, UpdateSettings(sps_reference="paper_alternating"))
    expected = reference_point(devices, "paper_alternating").numpy()
    np.testing.assert_array_equal(layer.tile.reference, expected)
    np.testing.assert_array_equal(layer.tile.state, expected + weight.double().numpy())
    np.testing.assert_allclose(layer.weight().numpy(), weight.numpy(), atol=1e-7)


# ------------------------------------------------------------------------------------------------ smoke runs
@pytest.mark.parametrize("overrides", [dict(algorithm="mp", mp_transfer="deterministic_implicit"),
                                       dict(algorithm="mp", mp_transfer="deterministic_implicit_cuda"),
                                       dict(algorithm="sps", sps_reference="paper_alternating")],
                         ids=["mp-implicit", "mp-implicit-cuda", "sps-paper"])
def test_paper_rules_learn_the_synthetic_task(tmp_path, overrides: dict) -> None:
    """Three epochs over 512 synthetic samples (10 classes, chance 0.1) on the asymmetric synthetic device."""
    config = TrainConfig(device_id="synthetic-asymmetric", data="synthetic", epochs=3, train_limit=512,
                         eval_limit=200, hidden=(32,), snapshot_epochs=(), batch_size=32, **overrides)
    ds = train(config, tmp_path, progress=False)
    assert float(ds.val_acc[-1]) > 0.5 and int(ds.pulses.sum()) > 0

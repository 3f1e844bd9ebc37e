"""Training rules: mixed-precision transfers, symmetry-point references, counters, fp update."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ferrolib.devices import DeviceArray, SoftBounds
from ferrolib.symmetry import symmetry_point
from ferrolib.training.algorithms import (FloatingPointLayer, MixedPrecisionLayer, PulsedSGDLayer, UpdateSettings,
                                          make_layer)


def soft_bounds(shape, a_up: float, a_down: float, bound: float = 1.0) -> DeviceArray:
    return SoftBounds(dw_min=min(a_up, a_down), up_down=a_up / a_down - 1.0 if a_up >= a_down else 1.0 - a_down / a_up,
                      w_min=-bound, w_max=bound).sample(shape, dtype=torch.float64)


def test_soft_bounds_helper_scales() -> None:
    devices = soft_bounds((1,), 0.015, 0.01)
    assert float(devices.scale_up) == pytest.approx(0.015) and float(devices.scale_down) == pytest.approx(0.01)


def test_mixed_precision_applies_exact_integer_pulses_and_keeps_remainder() -> None:
    shape = (3, 4)
    devices = soft_bounds(shape, 0.01, 0.01, bound=1e6)  # effectively linear near 0: step 0.01 everywhere
    weight = torch.zeros(shape)
    layer = make_layer("mp", weight, devices, UpdateSettings())
    assert isinstance(layer, MixedPrecisionLayer)
    np.testing.assert_allclose(layer.eps, 0.01)
    g = torch.Generator().manual_seed(0)
    x, d = torch.rand(8, 4, generator=g), torch.randn(8, 3, generator=g)
    total = np.zeros(shape)
    for step in range(5):
        layer.update(x, d, lr=0.3, step=step)
        total += -0.3 * (d.T @ x).double().numpy()
    applied = layer.tile.count_up - layer.tile.count_down
    # Every accumulated eps has become exactly one pulse; |remainder| < eps; nothing lost.
    np.testing.assert_allclose(applied * 0.01 + layer.chi, total, rtol=1e-5, atol=1e-6)
    assert np.all(np.abs(layer.chi) < 0.01)
    np.testing.assert_allclose(layer.tile.state, applied * 0.01, rtol=1e-6, atol=1e-9)
    assert layer.digital_macs == 5 * 8 * 12


def test_mixed_precision_large_counts_are_applied_or_kept() -> None:
    shape = (1, 2)
    devices = soft_bounds(shape, 0.01, 0.01)
    x, d = torch.tensor([[1.0, 1.0]]), torch.tensor([[-1.0]])
    full = make_layer("mp", torch.zeros(shape), devices, UpdateSettings())
    full.update(x, d, lr=5.0, step=0)  # 500 pulses per device: the device saturates at its bound
    np.testing.assert_array_equal(full.tile.count_up, [[500, 500]])
    assert np.all(full.tile.state <= 1.0) and np.all(full.tile.state > 0.99)
    capped = make_layer("mp", torch.zeros(shape), devices, UpdateSettings(max_pulses=31))
    capped.update(x, d, lr=5.0, step=0)
    np.testing.assert_array_equal(capped.tile.count_up, [[31, 31]])
    np.testing.assert_allclose(capped.chi, 5.0 - 31 * 0.01)  # the excess waits in chi


def test_sps_reference_puts_zero_weight_at_the_symmetry_point() -> None:
    shape = (4, 5)
    devices = soft_bounds(shape, 0.015, 0.01)  # w* = b (a_up - a_down)/(a_up + a_down) = 0.2
    layer = make_layer("sps", torch.zeros(shape), devices, UpdateSettings())
    np.testing.assert_allclose(layer.tile.reference, 0.2, rtol=1e-9)
    np.testing.assert_allclose(layer.tile.state, 0.2, rtol=1e-9)
    assert torch.all(layer.weight() == 0)
    plain = make_layer("sgd", torch.zeros(shape), devices, UpdateSettings())
    np.testing.assert_array_equal(plain.tile.reference, 0.0)


@pytest.mark.parametrize("algorithm", ["sgd", "sps"])
def test_random_updates_drift_to_the_symmetry_point(algorithm: str) -> None:
    """Zero-mean gradients pull plain SGD devices toward w* = 0.2 and sps weights toward w_eff = 0."""
    shape = (6, 6)
    devices = soft_bounds(shape, 0.015, 0.01)
    layer = make_layer(algorithm, torch.full(shape, -0.5), devices, UpdateSettings())
    g = torch.Generator().manual_seed(1)
    for step in range(300):
        layer.update(torch.randn(16, 6, generator=g), torch.randn(16, 6, generator=g), lr=0.01, step=step)
    w_eff = layer.weight().numpy()
    sp = symmetry_point(devices).numpy()
    expected = float(sp.mean()) if algorithm == "sgd" else 0.0
    assert np.abs(w_eff.mean() - expected) < 0.05
    np.testing.assert_allclose(layer.tile.state, layer.tile.reference + w_eff, atol=1e-6)


def test_pulse_counters_add_up_to_the_change_on_a_linear_device() -> None:
    shape = (3, 3)
    ones = torch.ones(shape, dtype=torch.float64)
    nodes = torch.ones(2, dtype=torch.float64)
    devices = DeviceArray("piecewise", -10 * ones, 10 * ones, 0.01 * ones, 0.01 * ones, dw_min=0.01,
                          nodes_up=nodes, nodes_down=nodes)
    for algorithm in ("sgd", "mp"):
        layer = make_layer(algorithm, torch.zeros(shape), devices, UpdateSettings())
        g = torch.Generator().manual_seed(2)
        for step in range(20):
            layer.update(torch.rand(8, 3, generator=g), torch.randn(8, 3, generator=g), lr=0.2, step=step)
        change = layer.tile.state
        np.testing.assert_allclose(change, 0.01 * (layer.tile.count_up - layer.tile.count_down), atol=1e-9)
        assert layer.tile.count_up.sum() > 0 and layer.tile.count_down.sum() > 0


def test_fp_update_is_plain_sgd() -> None:
    weight = torch.randn(3, 4)
    layer = make_layer("fp", weight, None, UpdateSettings())
    assert isinstance(layer, FloatingPointLayer) and layer.tile is None
    x, d = torch.randn(5, 4), torch.randn(5, 3)
    layer.update(x, d, 0.1, 0)
    torch.testing.assert_close(layer.weight(), weight - 0.1 * d.T @ x)


def test_invalid_algorithm_and_mode() -> None:
    devices = soft_bounds((2, 2), 0.01, 0.01)
    with pytest.raises(ValueError, match="unknown algorithm"):
        make_layer("tiki", torch.zeros(2, 2), devices, UpdateSettings())
    with pytest.raises(ValueError, match="needs devices"):
        make_layer("mp", torch.zeros(2, 2), None, UpdateSettings())
    with pytest.raises(ValueError, match="pulse mode"):
        make_layer("sgd", torch.zeros(2, 2), devices, UpdateSettings(pulse_mode="exact"))
    assert isinstance(make_layer("sgd", torch.zeros(2, 2), devices, UpdateSettings(pulse_mode="implicit")),
                      PulsedSGDLayer)


def test_periphery_read_quantises_within_its_resolution_and_adds_seeded_noise() -> None:
    from ferrolib.training.tile import Periphery, read

    g = torch.Generator().manual_seed(3)
    weight, x = 0.1 * torch.randn(20, 30, generator=g), torch.rand(8, 30, generator=g)
    exact = read(weight, x)
    torch.testing.assert_close(exact, x @ weight.T)
    quiet = read(weight, x, Periphery(out_noise=0.0))
    alpha = x.abs().amax(dim=1, keepdim=True)
    in_step, out_step = 2 / (2**7 - 2), 2 * 12 / (2**9 - 2)
    bound = alpha * (0.5 * in_step * weight.abs().sum(dim=1) + 0.5 * out_step)  # input plus output rounding
    assert torch.all((quiet - exact).abs() <= bound + 1e-6)
    assert not torch.equal(quiet, exact)
    noisy = [read(weight, x, Periphery(), torch.Generator().manual_seed(s)) for s in (0, 0, 1)]
    assert torch.equal(noisy[0], noisy[1]) and not torch.equal(noisy[0], noisy[2])
    assert 0.03 < float(((noisy[0] - quiet) / alpha).std()) < 0.09  # output noise 0.06 in scaled units

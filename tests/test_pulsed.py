"""The pulsed update engine: numba steps, fast paths against naive references, expectation, counters."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from numba import njit

from ferrolib import host
from ferrolib import kernels as device_kernels
from ferrolib.devices import DeviceArray
from ferrolib.kernels import device_step
from ferrolib.training import mp_transfer, pulse_primitives, pulsed, transfer_kernel
from ferrolib.training.kernel_cache import compile_kernels
from ferrolib.training.reference import (apply_pulse_counts_reference, apply_pulse_trains_reference, bernoulli_bits,
                                         draw_pulse_trains_reference, transfer_pulse_trains)

SHAPE = (5, 6)


def make_devices(kind: str, c2c: float = 0.0, seed: int = 0) -> DeviceArray:
    """Small arrays of every model kind with per-device variation (float64)."""
    g = torch.Generator().manual_seed(seed)
    spread = lambda: 1.0 + 0.2 * torch.rand(SHAPE, generator=g, dtype=torch.float64)  # noqa: E731
    extra = {}
    if kind == "piecewise":
        extra = {"nodes_up": torch.tensor([1.2, 1.0, 0.7, 0.3, 0.0], dtype=torch.float64),
                 "nodes_down": torch.tensor([0.0, 0.5, 0.9, 1.0, 1.3], dtype=torch.float64)}
    if kind == "powstep":
        extra = {"gamma_up": 1.5 * spread(), "gamma_down": 0.8 * spread()}
    return DeviceArray(kind, -0.9 * spread(), 1.0 * spread(), 0.03 * spread(), 0.02 * spread(), dw_min=0.02,
                       c2c=c2c, **extra)


def random_state(devices: DeviceArray, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(SHAPE, generator=g, dtype=torch.float64)
    return devices.w_min + u * (devices.w_max - devices.w_min)


@njit
def device_step_array(kind: int, up: bool, w: np.ndarray, p: pulsed.KernelDevice) -> np.ndarray:
    """``device_step`` on every device of a state array."""
    out = np.empty_like(w)
    for i in range(w.shape[0]):
        for j in range(w.shape[1]):
            out[i, j] = device_step(kind, up, w[i, j], i, j, p)
    return out


@pytest.mark.parametrize("kind", ["piecewise", "softbounds", "powstep"])
def test_numba_steps_match_device_array(kind: str) -> None:
    devices = make_devices(kind)
    params = pulsed.kernel_device(devices, SHAPE)
    w = random_state(devices)
    for up, reference in ((True, devices.dw_up(w)), (False, devices.dw_down(w))):
        np.testing.assert_allclose(device_step_array(params.kind, up, w.numpy(), params), reference.numpy(),
                                   rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("kind", ["piecewise", "softbounds", "powstep"])
@pytest.mark.parametrize("c2c", [0.0, 0.3])
def test_pulse_trains_fast_path_equals_reference(kind: str, c2c: float) -> None:
    devices = make_devices(kind, c2c)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(4, SHAPE[1], generator=g, dtype=torch.float64)
    x[:, 0] = 0.0  # a silent column
    d = torch.randn(4, SHAPE[0], generator=g, dtype=torch.float64)
    trains = pulsed.draw_pulse_trains(x, d, lr=0.5, dw_min=0.02, desired_bl=31, seed=5, event0=100)
    assert trains.bl.max() == 31 and (trains.x_bits[:, 0] == 0).all()
    state = random_state(devices)
    fast = state.numpy().copy()
    up, down = np.zeros(SHAPE, np.int64), np.zeros(SHAPE, np.int64)
    pulsed.apply_pulse_trains(fast, trains, pulsed.kernel_device(devices, SHAPE), 7, 100, up, down)
    ref_up, ref_down = np.zeros(SHAPE, np.int64), np.zeros(SHAPE, np.int64)
    reference = apply_pulse_trains_reference(state, trains, devices, 7, 100, ref_up, ref_down)
    np.testing.assert_array_equal(up, ref_up)
    np.testing.assert_array_equal(down, ref_down)
    assert up.sum() + down.sum() > 100
    np.testing.assert_allclose(fast, reference.numpy(), rtol=1e-12, atol=1e-14)
    # Pulse counts equal the coincidences: sum over samples of popcount(d & x).
    coincidences = sum(bin(int(db) & int(xb)).count("1") for b in range(4)
                       for db in trains.d_bits[b] for xb in trains.x_bits[b])
    assert up.sum() + down.sum() == coincidences


@pytest.mark.parametrize("kind", ["piecewise", "softbounds", "powstep"])
@pytest.mark.parametrize("c2c", [0.0, 0.3])
def test_coincidence_engine_equals_reference_on_sparse_managed_trains(kind: str, c2c: float) -> None:
    """Update- and BL-managed trains (short, sparse, varying BL per sample, silent rows and samples), with the
    read-out weight kept current in place: states, counters and weights equal the naive reference."""
    devices = make_devices(kind, c2c)
    g = torch.Generator().manual_seed(8)
    x = torch.randn(12, SHAPE[1], generator=g, dtype=torch.float64) * torch.rand(12, 1, generator=g)
    d = torch.randn(12, SHAPE[0], generator=g, dtype=torch.float64) * torch.rand(12, 1, generator=g)
    x[3] = 0.0  # a silent sample
    d[:, 2] = 0.0  # a silent row
    trains = pulsed.draw_pulse_trains(x, d, lr=0.05, dw_min=0.02, desired_bl=31, seed=4, event0=9)
    assert len(set(trains.bl.tolist())) > 2 and trains.bl[3] == 0 and (trains.d_bits[:, 2] == 0).all()
    state = random_state(devices)
    reference_weight = 0.1 * torch.ones(SHAPE, dtype=torch.float64)
    fast = state.numpy().copy()
    weight = (fast - reference_weight.numpy()).astype(np.float32)
    up, down = np.zeros(SHAPE, np.int64), np.zeros(SHAPE, np.int64)
    pulsed.apply_pulse_trains(fast, trains, pulsed.kernel_device(devices, SHAPE), 3, 9, up, down, weight,
                              reference_weight.numpy())
    ref_up, ref_down = np.zeros(SHAPE, np.int64), np.zeros(SHAPE, np.int64)
    reference = apply_pulse_trains_reference(state, trains, devices, 3, 9, ref_up, ref_down)
    np.testing.assert_array_equal(up, ref_up)
    np.testing.assert_array_equal(down, ref_down)
    assert 10 < up.sum() + down.sum() and (up + down == 0).any()  # some devices pulsed, some not
    np.testing.assert_allclose(fast, reference.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(weight, (fast - reference_weight.numpy()).astype(np.float32))


def test_bits_kernel_equals_a_scalar_reference() -> None:
    """Packed bits equal a plain-Python evaluation of the documented key scheme (including p >= 1 and BL 0)."""
    rng = np.random.default_rng(5)
    probability = rng.uniform(-0.2, 1.2, (6, 7)).clip(0.0, 1.0)
    bl = np.array([0, 1, 5, 31, 63, 2])
    bits = bernoulli_bits(probability, bl, 11, 40, 1)
    golden, mask = 0x9E3779B97F4A7C15, (1 << 64) - 1

    def mix(z: int) -> int:
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        return z ^ (z >> 31)

    for b in range(6):
        for line in range(7):
            h = mix(mix(mix(mix(11 + golden) ^ (40 + b + golden)) ^ (1 + golden)) ^ (line + golden))
            word = 0
            for t in range(bl[b]):
                h = (h + golden) & mask
                if probability[b, line] > 0 and (mix(h) >> 11) / 2.0**53 < probability[b, line]:
                    word |= 1 << t
            assert int(bits[b, line]) & mask == word, (b, line)


def test_event_ids_follow_the_samples_applied_and_resume_bit_identically(monkeypatch) -> None:
    """Batches of 64 then 10 get events [0, 64) and [64, 74) (never an earlier batch's keys);
    a layer restored from ``state_dict`` continues exactly as the uninterrupted one."""
    from ferrolib.training.algorithms import UpdateSettings, make_layer

    devices = make_devices("softbounds", c2c=0.2)
    weight = torch.zeros(SHAPE, dtype=torch.float32)
    g = torch.Generator().manual_seed(3)
    batches = [(torch.randn(n, SHAPE[1], generator=g), torch.randn(n, SHAPE[0], generator=g))
               for n in (64, 10, 64, 7)]
    events: list[range] = []
    update = pulsed.pulsed_update  # what the layer calls: draw and apply in one kernel

    def recording(x, d, lr, dw_min, desired_bl, seed, event0, *args, **kwargs):
        events.append(range(event0, event0 + x.shape[0]))
        return update(x, d, lr, dw_min, desired_bl, seed, event0, *args, **kwargs)

    monkeypatch.setattr(pulsed, "pulsed_update", recording)
    settings = UpdateSettings(seed=2)
    whole = make_layer("sgd", weight, devices, settings)
    for step, (x, d) in enumerate(batches):
        whole.update(x, d, 0.5, step)
    assert events[:2] == [range(0, 64), range(64, 74)]
    assert sum(len(e) for e in events) == len(set().union(*map(set, events)))  # no event id used twice
    resumed = make_layer("sgd", weight, devices, settings)
    for step, (x, d) in enumerate(batches[:2]):
        resumed.update(x, d, 0.5, step)
    saved = resumed.state_dict()
    resumed = make_layer("sgd", weight, devices, settings)
    resumed.load_state_dict(saved)
    for step, (x, d) in enumerate(batches[2:], start=2):
        resumed.update(x, d, 0.5, step)
    np.testing.assert_array_equal(resumed.tile.state, whole.tile.state)
    np.testing.assert_array_equal(resumed.tile.count_up, whole.tile.count_up)
    torch.testing.assert_close(resumed.weight(), whole.weight(), rtol=0, atol=0)


@pytest.mark.parametrize("kind", ["piecewise", "softbounds", "powstep"])
def test_pulse_counts_fast_path_equals_reference(kind: str) -> None:
    devices = make_devices(kind, c2c=0.2)
    counts = np.random.default_rng(3).integers(-40, 41, SHAPE)
    counts[0, :2] = 0  # untouched devices keep their weight
    state = random_state(devices)
    fast = state.numpy().copy()
    read_out_reference = np.full(SHAPE, 0.1)
    weight = (fast - read_out_reference).astype(np.float32)
    up, down = np.zeros(SHAPE, np.int64), np.zeros(SHAPE, np.int64)
    pulsed.apply_pulse_counts(fast, counts, pulsed.kernel_device(devices, SHAPE), 11, 3, up, down, weight,
                              read_out_reference)
    reference = apply_pulse_counts_reference(state, counts, devices, 11, 3)
    np.testing.assert_allclose(fast, reference.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(weight, (fast - read_out_reference).astype(np.float32))
    np.testing.assert_array_equal(up, np.clip(counts, 0, None))
    np.testing.assert_array_equal(down, np.clip(-counts, 0, None))


def test_pulse_counts_match_devices_apply_pulses_without_noise() -> None:
    from ferrolib.devices import apply_pulses

    devices = make_devices("piecewise")
    counts = np.random.default_rng(4).integers(-30, 31, SHAPE)
    state = random_state(devices)
    fast = state.numpy().copy()
    pulsed.apply_pulse_counts(fast, counts, pulsed.kernel_device(devices, SHAPE), 0, 0,
                              np.zeros(SHAPE, np.int64), np.zeros(SHAPE, np.int64))
    counts_t = torch.as_tensor(counts)
    expected = apply_pulses(devices, state, counts_t.clamp_min(0), (-counts_t).clamp_min(0))
    np.testing.assert_allclose(fast, expected.numpy(), rtol=1e-12, atol=1e-14)


def linear_devices(shape: tuple[int, int], dw_min: float) -> DeviceArray:
    ones = torch.ones(shape, dtype=torch.float64)
    nodes = torch.ones(2, dtype=torch.float64)
    return DeviceArray("piecewise", -100 * ones, 100 * ones, dw_min * ones, dw_min * ones, dw_min=dw_min,
                       nodes_up=nodes, nodes_down=nodes)


@pytest.mark.parametrize("bl_management", [True, False])
def test_stochastic_update_matches_rank_one_in_expectation(bl_management: bool) -> None:
    """Mean change of many independent trains on a linear noise-free device equals -lr d x^T."""
    shape, dw_min, lr, repeats = (3, 4), 0.001, 0.05, 4000
    devices = linear_devices(shape, dw_min)
    x = torch.tensor([[0.9, -0.4, 0.0, 0.2]], dtype=torch.float64).repeat(repeats, 1)
    d = torch.tensor([[0.3, -0.05, 0.12]], dtype=torch.float64).repeat(repeats, 1)
    trains = pulsed.draw_pulse_trains(x, d, lr, dw_min, 31, seed=1, event0=0, bl_management=bl_management)
    state = np.zeros(shape)
    up, down = np.zeros(shape, np.int64), np.zeros(shape, np.int64)
    pulsed.apply_pulse_trains(state, trains, pulsed.kernel_device(devices, shape), 0, 0, up, down)
    expected = -lr * torch.outer(d[0], x[0]).numpy()
    mean = state / repeats
    # Binomial standard error of the mean per device: dw_min sqrt(BL p q (1 - p q) / repeats).
    p, q, bl = pulsed.pulse_probabilities(x[:1], d[:1], lr, dw_min, 31, True, bl_management)
    pq = torch.outer(q[0], p[0]).numpy()
    stderr = dw_min * np.sqrt(int(bl[0]) * pq * (1 - pq) / repeats) + 1e-12
    assert np.all(np.abs(mean - expected) <= 5 * stderr)
    np.testing.assert_allclose(state, dw_min * (up - down), atol=1e-9)  # counters add up to the change


def test_update_management_balances_probabilities_and_caps_bl() -> None:
    x = torch.tensor([[1.0, 0.5]])
    d = torch.tensor([[0.0095, -0.002]])
    p, q, bl = pulsed.pulse_probabilities(x, d, lr=0.1, dw_min=0.0001, desired_bl=31)
    k = 0.1 * 1.0 * 0.0095 / 0.0001  # = 9.5
    assert int(bl) == 10
    assert p.max().item() == pytest.approx(np.sqrt(k / 10), rel=1e-5)
    assert q.max().item() == pytest.approx(np.sqrt(k / 10), rel=1e-5)
    p, q, bl = pulsed.pulse_probabilities(x, d, lr=10.0, dw_min=0.0001, desired_bl=31)
    assert int(bl) == 31 and p.max() == 1.0 and q.max() == 1.0  # saturated, capped at desired_bl
    _, _, bl = pulsed.pulse_probabilities(torch.zeros(1, 2), d, lr=0.1, dw_min=0.0001, desired_bl=31)
    assert int(bl) == 0
    with pytest.raises(ValueError, match="desired_bl"):
        pulsed.pulse_probabilities(x, d, 0.1, 0.001, 64)


def test_bits_are_deterministic_and_have_the_right_rate() -> None:
    probability = np.full((200, 50), 0.3)
    bl = np.full(200, 20)
    bits = bernoulli_bits(probability, bl, 3, 0, 0)
    np.testing.assert_array_equal(bits, bernoulli_bits(probability, bl, 3, 0, 0))
    assert not np.array_equal(bits, bernoulli_bits(probability, bl, 4, 0, 0))
    assert (bits >> 20 == 0).all()  # no bit beyond BL
    rate = np.vectorize(lambda v: bin(int(v)).count("1"))(bits).sum() / (200 * 50 * 20)
    assert rate == pytest.approx(0.3, abs=0.01)


def test_c2c_noise_is_standard_normal() -> None:
    draws = np.array([pulsed.c2c_normal(1, 2, i, 3, k) for i in range(100) for k in range(100)])
    assert abs(draws.mean()) < 0.03 and abs(draws.std() - 1.0) < 0.03


@pytest.mark.parametrize("mode", ["implicit", "expected"])
def test_deterministic_modes_track_rank_one_update(mode: str) -> None:
    shape, dw_min, lr = (3, 4), 0.001, 0.05
    devices = linear_devices(shape, dw_min)
    x = torch.tensor([[0.9, -0.4, 0.0, 0.2]], dtype=torch.float64)
    d = torch.tensor([[0.3, -0.05, 0.12]], dtype=torch.float64)
    state = np.zeros(shape)
    up, down = np.zeros(shape, np.int64), np.zeros(shape, np.int64)
    pulsed.apply_deterministic(state, x, d, lr, dw_min, 31, pulsed.kernel_device(devices, shape), mode, 0, 0, up, down)
    expected = -lr * torch.outer(d[0], x[0]).numpy()
    tolerance = 0.0 if mode == "expected" else dw_min * 2.0
    np.testing.assert_allclose(state, expected, atol=tolerance + 1e-12)
    if mode == "implicit":
        np.testing.assert_allclose(state, dw_min * (up - down), atol=1e-12)
    with pytest.raises(ValueError, match="update mode"):
        pulsed.apply_deterministic(state, x, d, lr, dw_min, 31, pulsed.kernel_device(devices, shape), "bogus", 0,
                                   0, up, down)


def test_transfer_counts_keep_remainder_and_cap() -> None:
    chi = np.array([[0.35, -0.35, 0.09, -0.09, 123.456]])
    eps = np.full(chi.shape, 0.1)
    counts = pulsed.transfer_counts(chi.copy(), eps)
    np.testing.assert_array_equal(counts, [[3, -3, 0, 0, 1234]])
    capped_chi = chi.copy()
    capped = pulsed.transfer_counts(capped_chi, eps, max_pulses=10)
    np.testing.assert_array_equal(capped, [[3, -3, 0, 0, 10]])
    np.testing.assert_allclose(capped_chi + capped * eps, chi)  # nothing lost


def test_compile_kernels_covers_every_signature_training_uses() -> None:
    """After ``compile_kernels`` (what ``make env`` runs), training with every rule, pulse mode, per-device
    variation on and off, a piecewise and a soft-bounds device compiles nothing new."""
    from numba.core.registry import CPUDispatcher

    from ferrolib.training import TrainConfig
    from ferrolib.training.config import validate
    from ferrolib.training.data import load_data
    from ferrolib.training.loop import build_network

    compile_kernels()
    kernels = {f"{module.__name__}.{name}": k
               for module in (device_kernels, pulse_primitives, pulsed, mp_transfer, transfer_kernel)
               for name, k in vars(module).items() if isinstance(k, CPUDispatcher)}
    before = {name: len(k.signatures) for name, k in kernels.items()}
    runs = [("sgd", "stochastic", 0.0), ("sps", "stochastic", 0.1), ("mp", "stochastic", 0.1), ("sgd", "implicit", 0.1),
            ("sps", "expected", 0.0), ("sps", "stochastic", 0.0), ("sgd", "stochastic", 0.1), ("mp", "stochastic", 0.0)]
    runs += [("mp", "pulsed", 0.1), ("mp", "pulsed", 0.0)]  # mixed precision's pulsed transfer (the paper profile)
    runs += [("cttv2", "stochastic", 0.1), ("agad", "paper_io", 0.0), ("ttv2", "stochastic", 0.0)]  # transfer rules
    for index, (algorithm, mode, d2d) in enumerate(runs):
        device_id = "synthetic-asymmetric" if index % 2 else "synthetic-linear"
        transfer = {"mp_transfer": "pulsed"} if mode == "pulsed" else {"pulse_mode": mode}
        if mode == "paper_io":  # the transfer reads through aihwkit's periphery
            transfer = {"forward_io": "aihwkit_default", "backward_io": "aihwkit_default", "desired_bl": 5}
        config = TrainConfig(algorithm=algorithm, device_id=device_id, data="synthetic", train_limit=64, eval_limit=64,
                             hidden=(8,), d2d=d2d, c2c=0.1, **transfer)
        data = load_data(config)
        network, _ = build_network(config, validate(config), data.train_x.shape[1])
        for step in range(2):  # the pulsed transfer starts at the second mini-batch
            network.train_step(data.train_x[16 * step:16 * step + 16], data.train_y[16 * step:16 * step + 16], 0.1,
                               step)
        network.predict(data.val_x[:16], 16)
    assert {name: len(k.signatures) for name, k in kernels.items()} == before


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_draw_equals_probabilities_then_bits_on_the_same_keys(dtype: torch.dtype) -> None:
    """``draw_pulse_trains`` (one kernel from x and d) gives the reference's bits, signs and BL exactly, over
    every management setting, sparse and saturated trains (k > desired_bl), silent samples and lines; with
    ``live_slots_only`` exactly the reference's bits in the slots where both sides fire."""
    g = torch.Generator().manual_seed(3)
    saturated = partial = dropped = 0
    for trial in range(240):
        x = torch.rand(5, 17, generator=g, dtype=dtype) * (torch.rand(5, 17, generator=g, dtype=dtype) < 0.5)
        x = x * torch.randn(5, 17, generator=g, dtype=dtype).sign() * 10 ** (4 * torch.rand((), generator=g).item() - 2)
        d = torch.randn(5, 9, generator=g, dtype=dtype) * 10 ** (-4 * torch.rand((), generator=g).item())
        x[0], d[1, 3] = 0.0, 0.0
        lr, dw_min = 10 ** (3 * torch.rand((), generator=g).item() - 2), 10 ** (-3 * torch.rand((), generator=g).item())
        desired_bl = int(torch.randint(1, pulsed.MAX_BL + 1, (), generator=g))
        managements = (bool(trial % 2), bool(trial // 2 % 2))
        fast = pulsed.draw_pulse_trains(x, d, lr, dw_min, desired_bl, 3, trial, *managements)
        reference = draw_pulse_trains_reference(x, d, lr, dw_min, desired_bl, 3, trial, *managements)
        for field in ("x_bits", "d_bits", "x_negative", "d_negative", "bl"):
            np.testing.assert_array_equal(getattr(fast, field), getattr(reference, field), err_msg=f"{field} {trial}")
        live = pulsed.draw_pulse_trains(x, d, lr, dw_min, desired_bl, 3, trial, *managements, live_slots_only=True)
        x_fired = np.bitwise_or.reduce(reference.x_bits, axis=1)[:, None]
        d_fired = np.bitwise_or.reduce(reference.d_bits, axis=1)[:, None]
        np.testing.assert_array_equal(live.x_bits, reference.x_bits & d_fired, err_msg=f"live x {trial}")
        np.testing.assert_array_equal(live.d_bits, reference.d_bits & x_fired, err_msg=f"live d {trial}")
        np.testing.assert_array_equal(live.bl, reference.bl)
        dropped += int((live.x_bits != reference.x_bits).sum() + (live.d_bits != reference.d_bits).sum())
        k = lr * x.abs().amax(1) * d.abs().amax(1) / dw_min
        saturated += int((k > desired_bl).sum())
        p, _, _ = pulsed.pulse_probabilities(x, d, lr, dw_min, desired_bl, *managements)
        partial += int(((p > 0) & (p < 1)).sum())
    assert saturated > 50 and partial > 1000  # both branches of update management and real Bernoulli draws
    assert dropped > 100  # live slots only did drop dead slots
    with pytest.raises(ValueError, match="desired_bl"):
        pulsed.draw_pulse_trains(x, d, 0.1, 0.01, 64, 0, 0)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["piecewise", "softbounds", "powstep"])
@pytest.mark.parametrize("c2c, max_pulses", [(0.0, None), (0.3, 4)])
def test_fused_pulsed_transfer_equals_counts_trains_and_coincidences(kind: str, c2c: float, max_pulses) -> None:
    """``pulsed_transfer`` (one pass) leaves chi, the requested counts, states, counters and read-out weight
    exactly as ``transfer_counts`` + ``transfer_pulse_trains`` + ``apply_pulse_trains`` on the same keys,
    with silent rows, saturated rows (k > desired_bl) and partial trains."""
    devices = make_devices(kind, c2c)
    params = pulsed.kernel_device(devices, SHAPE)
    eps = pulsed.kernel_device(devices, SHAPE).scale_up.copy()
    g = torch.Generator().manual_seed(4)
    state = random_state(devices)
    chi = (torch.randn(SHAPE, generator=g, dtype=torch.float64) * 3 * torch.from_numpy(eps)).numpy()
    chi[0] = 0.0  # a silent row
    chi[1] *= 40.0  # a saturated row
    increment = torch.randn(SHAPE, generator=g).numpy()
    increment[0] = 0.0
    reference_weight = torch.zeros(SHAPE, dtype=torch.float64).numpy()
    results = []
    for fused in (True, False):
        fields = {"chi": chi.copy(), "state": state.numpy().copy(), "up": np.zeros(SHAPE, np.int64),
                  "down": np.zeros(SHAPE, np.int64)}
        fields["weight"] = pulsed.effective_weight(fields["state"], reference_weight)
        for step in range(3):
            if fused:
                fields[f"counts{step}"] = pulsed.pulsed_transfer(
                    fields["chi"], eps, max_pulses, increment, -0.5, 0.01, 7, 9, step * SHAPE[0], fields["state"],
                    params, fields["up"], fields["down"], fields["weight"], reference_weight)
            else:
                counts = pulsed.transfer_counts(fields["chi"], eps, max_pulses, increment, -0.5)
                trains = transfer_pulse_trains(counts, eps, 0.01, 7, 9, step * SHAPE[0])
                pulsed.apply_pulse_trains(fields["state"], trains, params, 9, step * SHAPE[0], fields["up"],
                                          fields["down"], fields["weight"], reference_weight)
                fields[f"counts{step}"] = counts
                if step == 0:
                    assert (trains.bl[1] == 7 and trains.bl[0] == 0 and 0 < trains.bl[2:].min()
                            and np.abs(counts[1] * eps[1]).max() / 0.01 > 7)
        results.append(fields)
    assert results[1]["up"].sum() + results[1]["down"].sum() > 0
    for name, value in results[1].items():
        np.testing.assert_array_equal(results[0][name], value, err_msg=name)


@pytest.mark.parametrize("kind", ["piecewise", "softbounds", "powstep"])
@pytest.mark.parametrize("c2c, max_pulses", [(0.0, None), (0.3, 4)])
def test_fused_exact_transfer_equals_counts_then_pulse_counts(kind: str, c2c: float, max_pulses) -> None:
    """``exact_transfer`` (one pass, dividing only near the threshold) leaves chi, the requested counts, states,
    counters and read-out weight exactly as ``transfer_counts`` then ``apply_pulse_counts`` on the same keys,
    with a silent row, a row of large requests, a non-zero reference, the increment dense or on column runs,
    and without keeping the counts."""
    devices = make_devices(kind, c2c)
    params = pulsed.kernel_device(devices, SHAPE)
    eps = params.scale_up.copy()
    g = torch.Generator().manual_seed(31)
    state0 = random_state(devices).numpy()
    chi0 = (torch.randn(SHAPE, generator=g, dtype=torch.float64) * 3 * torch.from_numpy(eps)).numpy()
    chi0[0] = 0.0  # a silent row
    chi0[1] *= 40.0  # large requests
    reference = 0.1 * torch.randn(SHAPE, generator=g, dtype=torch.float64).numpy()
    x = sparse_inputs(g, 8, SHAPE[1])
    d = torch.randn(8, SHAPE[0], generator=g)
    d[:, 0] = 0.0
    dense = (d.T @ x).numpy()
    runs, _ = pulsed.active_columns(x.numpy())
    on_runs = np.ascontiguousarray(dense[:, run_columns(runs)])
    results = {}
    for variant in ("reference", "fused", "fused on runs", "fused without counts"):
        chi, state = chi0.copy(), state0.copy()
        up, down = np.zeros(SHAPE, np.int64), np.zeros(SHAPE, np.int64)
        weight = pulsed.effective_weight(state, reference)
        fields = {"chi": chi, "state": state, "up": up, "down": down, "weight": weight}
        for step in range(3):
            if variant == "reference":
                counts = pulsed.transfer_counts(chi, eps, max_pulses, dense, -0.5)
                pulsed.apply_pulse_counts(state, counts, params, 9, step, up, down, weight, reference)
            else:
                increment, given = (on_runs, runs) if variant == "fused on runs" else (dense, None)
                counts = pulsed.exact_transfer(chi, eps, max_pulses, increment, -0.5, 9, step, state, params, up,
                                               down, weight, reference, given, variant != "fused without counts")
            if counts is not None:
                fields[f"counts{step}"] = counts
        results[variant] = fields
    expected = results["reference"]
    assert expected["up"].sum() + expected["down"].sum() > 20 and np.abs(expected["counts0"][1]).min() >= 4
    assert not (expected["up"] + expected["down"])[0].any()
    for variant, fields in results.items():
        assert set(fields) == set(expected) or variant == "fused without counts"
        for name, value in fields.items():
            np.testing.assert_array_equal(value, expected[name], err_msg=f"{variant}: {name}")


def test_accumulate_equals_the_numpy_expression() -> None:
    g = torch.Generator().manual_seed(6)
    chi = torch.randn(7, 9, generator=g, dtype=torch.float64).numpy()
    increment = torch.randn(7, 9, generator=g).numpy()
    expected = chi - 0.37 * increment.astype(np.float64)
    pulsed.accumulate(chi, increment, 0.37)
    np.testing.assert_array_equal(chi, expected)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["piecewise", "softbounds", "powstep"])
@pytest.mark.parametrize("c2c", [0.0, 0.3])
def test_fused_pulsed_update_equals_draw_then_apply(kind: str, c2c: float) -> None:
    """``pulsed_update`` (training's one kernel, compact trains) leaves states, counters and read-out weight exactly
    as the naive references ``draw_pulse_trains_reference`` + ``apply_pulse_trains_reference`` on the same keys,
    over managed sparse trains, dense long trains, unmanaged trains, silent samples and rows, both dtypes."""
    devices = make_devices(kind, c2c)
    params = pulsed.kernel_device(devices, SHAPE)
    g = torch.Generator().manual_seed(11)
    cases = [(0.05, 31, True, True, torch.float32), (0.5, 31, True, True, torch.float64),
             (0.02, 7, False, False, torch.float32), (2.0, 1, True, True, torch.float64)]
    pulses = 0
    for trial, (lr, desired_bl, update_management, bl_management, dtype) in enumerate(cases):
        x = torch.randn(10, SHAPE[1], generator=g, dtype=dtype) * torch.rand(10, 1, generator=g, dtype=dtype)
        d = torch.randn(10, SHAPE[0], generator=g, dtype=dtype) * torch.rand(10, 1, generator=g, dtype=dtype)
        x[2], d[:, 1], x[:, 4] = 0.0, 0.0, 0.0  # a silent sample, row and column
        state = random_state(devices, seed=trial)
        reference_weight = np.full(SHAPE, 0.1)
        fast = state.numpy().copy()
        weight = (fast - reference_weight).astype(np.float32)
        up, down = np.zeros(SHAPE, np.int64), np.zeros(SHAPE, np.int64)
        pulsed.pulsed_update(x, d, lr, 0.02, desired_bl, 3, 40 * trial, fast, params, up, down, weight,
                             reference_weight, update_management, bl_management)
        trains = draw_pulse_trains_reference(x, d, lr, 0.02, desired_bl, 3, 40 * trial, update_management,
                                             bl_management)
        ref_up, ref_down = np.zeros(SHAPE, np.int64), np.zeros(SHAPE, np.int64)
        reference = apply_pulse_trains_reference(state, trains, devices, 3, 40 * trial, ref_up, ref_down)
        np.testing.assert_array_equal(up, ref_up, err_msg=f"case {trial}")
        np.testing.assert_array_equal(down, ref_down, err_msg=f"case {trial}")
        np.testing.assert_allclose(fast, reference.numpy(), rtol=1e-12, atol=1e-14, err_msg=f"case {trial}")
        np.testing.assert_array_equal(weight, (fast - reference_weight).astype(np.float32))
        assert (up + down)[:, 4].sum() == 0 and (up + down)[1].sum() == 0
        pulses += int(up.sum() + down.sum())
    assert pulses > 200


@njit
def _compact_draws(values, scale, one, bl, slots, seed, event0, tag):
    """``_draw_compact`` of every row b (BL ``bl[b]``, drawn in ``slots[b]``) on the keys of ``bernoulli_bits``,
    expanded back to dense words; also returns the slots where any line fired."""
    words = np.zeros(values.shape, dtype=np.int64)
    fired = np.zeros(values.shape[0], dtype=np.int64)
    lines, compact = np.empty(values.shape[1], dtype=np.int64), np.empty(values.shape[1], dtype=np.int64)
    for b in range(values.shape[0]):
        key = pulsed._tag_key(pulsed._sample_hash(seed, event0 + b), tag)
        count, fired[b] = pulsed._draw_compact(values[b], key, scale, one, bl[b], slots[b], lines, compact)
        for c in range(count):
            words[b, lines[c]] = compact[c]
    return words, fired


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compact_draw_equals_line_bits_on_the_same_keys(dtype) -> None:
    """The training kernel's drawing (``_draw_compact``: the vectorised one-slot blocks, else ``_draw_lines``)
    fires exactly the lines and slots of ``bernoulli_bits`` (``_line_bits``) with ``p = min(scale |v|, 1)``, over
    p of 0 (also -0), exactly 1, above 1, NaN and random, one slot and longer trains, all slots and some, rows
    longer than one 64-line block."""
    rng = np.random.default_rng(8)
    values = (rng.standard_normal((40, 150)) * (rng.random((40, 150)) < 0.6)).astype(dtype)
    values[:, :3] = [0.0, -0.0, np.nan]
    scale, one = dtype(0.7), dtype(1.0)
    values[:, 3], values[:, 4] = 1 / scale, -5.0  # p exactly 1 (when scale/scale rounds to 1), p > 1
    bl = np.where(np.arange(40) < 24, 1, rng.integers(2, pulsed.MAX_BL + 1, 40))
    full = (np.int64(1) << bl) - 1
    some = np.where(np.arange(40) % 3 == 0, full & rng.integers(0, 2**62, 40), full)
    probability = np.minimum(scale * np.abs(values), one).astype(np.float64)
    reference = bernoulli_bits(probability, bl, 5, 70, 1)
    assert ((scale * np.abs(values[:, 3])) == 1).all() and ((probability > 0) & (probability < 1)).sum() > 2000
    for slots in (full, some):
        words, fired = _compact_draws(values, scale, one, bl, slots, 5, 70, 1)
        np.testing.assert_array_equal(words, reference & slots[:, None])
        np.testing.assert_array_equal(fired, np.bitwise_or.reduce(reference & slots[:, None], axis=1))
    assert (reference[:24, 4] == 1).all() and (reference[:, :3] == 0).all()
    assert 0 < (reference[:24] != 0).mean() < 0.5


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_magnitude_scan_equals_the_float_loop(dtype) -> None:
    """``_magnitude_scan`` (integer max over the IEEE bits) gives the float loop's ``max(m, |v|)`` from 0, which
    skips NaN, and the count of ``v != 0``, over signed zeros, NaN, infinity, subnormals and an all-zero row."""
    rng = np.random.default_rng(9)
    integer, magnitude_mask, infinity = pulsed._IEEE[dtype]
    tiny = np.finfo(dtype).smallest_subnormal
    rows = [rng.standard_normal(100).astype(dtype), np.array([-0.0, 0.0], dtype=dtype),
            np.array([np.nan, -3.0, 2.0, np.nan], dtype=dtype), np.array([1.0, -np.inf, np.nan], dtype=dtype),
            np.array([tiny, -2 * tiny, 0.0], dtype=dtype), np.zeros(70, dtype=dtype)]
    for row in rows:
        largest, nonzero = _scan(row.view(integer), magnitude_mask, infinity, dtype(1.0))
        expected = dtype(0.0)
        for value in row:
            expected = abs(value) if abs(value) > expected else expected
        assert (largest, nonzero) == (expected, np.count_nonzero(row)) and np.signbit(largest) == 0


@njit
def _scan(bits, magnitude_mask, infinity, one):
    return pulsed._magnitude_scan(bits, magnitude_mask, infinity, one)


@pytest.mark.parametrize("shape, dtype", [((7, 150), torch.float32), ((130, 9), torch.float64)])
def test_fused_pulsed_update_with_one_slot_and_longer_trains_in_one_batch(shape, dtype) -> None:
    """``pulsed_update`` on a batch whose samples have one-slot trains (the vectorised drawing) and longer ones
    (``_draw_lines``), on rows longer than a 64-line block, with more columns than rows and fewer: states,
    counters and read-out weight exactly as ``draw_pulse_trains_reference`` + ``apply_pulse_trains_reference``."""
    g = torch.Generator().manual_seed(12)
    ones = torch.ones(shape, dtype=torch.float64)
    spread = 1.0 + 0.2 * torch.rand(shape, generator=g, dtype=torch.float64)
    devices = DeviceArray("softbounds", -0.9 * spread, spread, 0.03 * spread, 0.02 * ones, dw_min=0.02, c2c=0.2)
    params = pulsed.kernel_device(devices, shape)
    x = torch.randn(12, shape[1], generator=g, dtype=dtype) * (torch.rand(12, shape[1], generator=g) < 0.4)
    d = torch.randn(12, shape[0], generator=g, dtype=dtype)
    x = x * torch.tensor([0.03, 0.3, 1.0, 3.0], dtype=dtype).repeat(3)[:, None]  # k from below 1 to above
    d[5] = 0.0
    lr, dw_min, desired_bl = 0.05, 0.02, 31
    bl = pulsed.pulse_probabilities(x, d, lr, dw_min, desired_bl)[2]
    assert (bl == 1).sum() >= 3 and (bl > 1).sum() >= 3 and bl[5] == 0
    state = devices.w_min + torch.rand(shape, generator=g, dtype=torch.float64) * (devices.w_max - devices.w_min)
    fast, reference_weight = state.numpy().copy(), np.full(shape, 0.05)
    weight = (fast - reference_weight).astype(np.float32)
    up, down = np.zeros(shape, np.int64), np.zeros(shape, np.int64)
    pulsed.pulsed_update(x, d, lr, dw_min, desired_bl, 4, 90, fast, params, up, down, weight, reference_weight)
    trains = draw_pulse_trains_reference(x, d, lr, dw_min, desired_bl, 4, 90)
    ref_up, ref_down = np.zeros(shape, np.int64), np.zeros(shape, np.int64)
    reference = apply_pulse_trains_reference(state, trains, devices, 4, 90, ref_up, ref_down)
    np.testing.assert_array_equal(up, ref_up)
    np.testing.assert_array_equal(down, ref_down)
    np.testing.assert_allclose(fast, reference.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(weight, (fast - reference_weight).astype(np.float32))
    one_slot = (bl == 1).numpy()
    assert (up + down).sum() > 100 and (trains.x_bits[one_slot] != 0).sum() > 0


@pytest.mark.parametrize("c2c, max_pulses, batch", [(0.0, None, 8), (0.3, 2, 8), (0.0, None, 1)])
def test_fused_transfer_and_accumulate_equals_transfer_then_accumulate(c2c: float, max_pulses, batch: int) -> None:
    """``pulsed_transfer_and_accumulate`` (the first sample's outer product formed on the fly, one pass) leaves
    chi, states, counters and read-out weight exactly as ``pulsed_transfer`` of torch's ``d[:1].T @ x[:1]`` then
    ``accumulate`` of ``d[1:].T @ x[1:]`` (what mixed precision did before), over several steps."""
    devices = make_devices("piecewise", c2c)
    params = pulsed.kernel_device(devices, SHAPE)
    eps = params.scale_up.copy()
    g = torch.Generator().manual_seed(12)
    chi0 = (torch.randn(SHAPE, generator=g, dtype=torch.float64) * torch.from_numpy(eps)).numpy()
    reference_weight = np.zeros(SHAPE)
    results = []
    for fused in (True, False):
        g.manual_seed(13)
        chi, state = chi0.copy(), random_state(devices).numpy().copy()
        up, down = np.zeros(SHAPE, np.int64), np.zeros(SHAPE, np.int64)
        weight = pulsed.effective_weight(state, reference_weight)
        for step in range(1, 6):
            x = torch.randn(batch, SHAPE[1], generator=g) * 3
            d = torch.randn(batch, SHAPE[0], generator=g)
            rest = (d[1:].T @ x[1:]).numpy()
            arguments = (0.01, 7, 9, step * SHAPE[0], state, params, up, down, weight, reference_weight)
            if fused:
                pulsed.pulsed_transfer_and_accumulate(chi, eps, max_pulses, x[0].numpy(), d[0].numpy(), rest, 0.5,
                                                      *arguments)
            else:
                pulsed.pulsed_transfer(chi, eps, max_pulses, (d[:1].T @ x[:1]).numpy(), -0.5, *arguments)
                pulsed.accumulate(chi, rest, 0.5)
        results.append({"chi": chi, "state": state, "up": up, "down": down, "weight": weight})
    assert results[1]["up"].sum() + results[1]["down"].sum() > 10
    for name, value in results[1].items():
        np.testing.assert_array_equal(results[0][name], value, err_msg=name)


def test_transfers_with_a_shared_threshold_row_equal_the_full_thresholds() -> None:
    """Without device-to-device variation ``shared_row`` gives the kernels one row of thresholds (1, in), and
    ``transfer_counts``, ``pulsed_transfer`` and ``pulsed_transfer_and_accumulate`` leave chi, counts, states,
    counters and read-out weight exactly as with the full (out, in) matrix; thresholds that differ between rows
    are passed on whole."""
    devices = make_devices("piecewise", 0.3)
    params = pulsed.kernel_device(devices, SHAPE)
    row = params.scale_up[0].copy()
    eps = np.ascontiguousarray(np.broadcast_to(row, SHAPE))  # every row the same, columns differ
    shared = pulsed.shared_row(eps)
    assert shared.shape == (1, SHAPE[1]) and shared.flags.c_contiguous
    varied = eps.copy()
    varied[3, 2] *= 1.5
    assert pulsed.shared_row(varied) is varied
    g = torch.Generator().manual_seed(21)
    chi0 = (torch.randn(SHAPE, generator=g, dtype=torch.float64) * 3 * torch.from_numpy(eps)).numpy()
    state0 = random_state(devices).numpy()
    reference_weight = np.zeros(SHAPE)
    results = []
    for thresholds in (eps, shared):
        g.manual_seed(22)
        chi, state = chi0.copy(), state0.copy()
        up, down = np.zeros(SHAPE, np.int64), np.zeros(SHAPE, np.int64)
        weight = pulsed.effective_weight(state, reference_weight)
        fields = {"chi": chi, "state": state, "up": up, "down": down, "weight": weight}
        for step in range(1, 5):
            x, d = torch.randn(8, SHAPE[1], generator=g) * 3, torch.randn(8, SHAPE[0], generator=g)
            arguments = (0.01, 7, 9, step * SHAPE[0], state, params, up, down, weight, reference_weight)
            fields[f"counts{step}"] = pulsed.transfer_counts(chi, thresholds, 2, (d.T @ x).numpy(), -0.1)
            fields[f"exact{step}"] = pulsed.exact_transfer(chi, thresholds, 2, (d.T @ x).numpy(), -0.1, 9, step,
                                                           state, params, up, down, weight, reference_weight)
            fields[f"pulsed{step}"] = pulsed.pulsed_transfer(chi, thresholds, None, (d.T @ x).numpy(), -0.5,
                                                             *arguments)
            pulsed.pulsed_transfer_and_accumulate(chi, thresholds, None, x[0].numpy(), d[0].numpy(),
                                                  (d[1:].T @ x[1:]).numpy(), 0.5, *arguments)
        results.append({name: value.copy() for name, value in fields.items()})
    assert results[0]["up"].sum() + results[0]["down"].sum() > 10 and np.abs(results[0]["counts1"]).sum() > 0
    for name, value in results[0].items():
        np.testing.assert_array_equal(results[1][name], value, err_msg=name)


def sparse_inputs(g: torch.Generator, batch: int, n: int) -> torch.Tensor:
    """Inputs with exact zeros, like MNIST's blank pixels: whole blank columns, scattered zeros, a bias column."""
    x = torch.rand(batch, n, generator=g)
    x[torch.rand(batch, n, generator=g) < 0.6] = 0.0
    x[:, torch.rand(n, generator=g) < 0.3] = 0.0
    x[:, -1] = 1.0
    return x


def run_columns(runs: np.ndarray) -> np.ndarray:
    """The column indices that ``[start, stop)`` runs cover, in order."""
    return np.concatenate([np.arange(int(start), int(stop)) for start, stop in runs])


def test_active_columns_are_the_non_zero_columns_as_runs() -> None:
    """``active_columns`` gives the columns with a non-zero (or NaN) entry as ``[start, stop)`` runs, and x on
    them, as numpy's boolean indexing does; with every column active it returns x itself."""
    g = torch.Generator().manual_seed(21)
    for trial in range(20):
        x = sparse_inputs(g, 1 + trial % 7, 3 + 5 * trial).numpy()
        if trial == 3:
            x[0, 0] = np.nan
        active = (x != 0).any(axis=0)
        runs, compact = pulsed.active_columns(x)
        covered = np.zeros(x.shape[1], dtype=bool)
        for start, stop in runs:
            assert stop > start and not covered[start:stop].any()
            covered[start:stop] = True
        np.testing.assert_array_equal(covered, active)
        assert all(stop < next_start for (_, stop), (next_start, _) in zip(runs[:-1], runs[1:]))  # separated
        np.testing.assert_array_equal(compact, x[:, active])
    dense = np.ones((3, 4), dtype=np.float32)
    assert pulsed.active_columns(dense)[1] is dense
    runs, compact = pulsed.active_columns(np.zeros((2, 5), dtype=np.float32))
    assert runs.shape == (0, 2) and compact.shape == (2, 0)


COLUMN_EXACT_MKL = host.code_paths()["torch"] == "AVX512" and host.code_paths()["mkl"] == "auto"
"""Whether MKL's float32 product of a column is independent of the other columns here: measured on AVX-512 (an
Intel Xeon); on AVX2 (emulated) 1 % of the active-column products differ from the dense one by up to 2e-6 relative."""


@pytest.mark.parametrize("batch, n_out, n_in", [(64, 256, 785), (63, 256, 785), (1, 256, 785), (64, 128, 257),
                                                 (63, 16, 129), (64, 300, 100), (7, 5, 6), (63, 10, 129)])
def test_active_outer_equals_the_full_product_on_every_column(batch: int, n_out: int, n_in: int) -> None:
    """The product on the active columns equals ``batch_outer``'s columns, at the paper network's shapes (MNIST
    batches included) and others, and the skipped columns are zeros; small products (fewer than
    ``ACTIVE_OUTER_MIN_SHAPE``) cover every column. Bit for bit where MKL runs its AVX-512 kernels
    (``COLUMN_EXACT_MKL``); elsewhere within the float32 rounding bound of a ``batch``-term sum,
    ``batch * eps * sum_b |d_b| |x_b|``."""
    from ferrolib.training import TrainConfig
    from ferrolib.training.algorithms import ACTIVE_OUTER_MIN_SHAPE, active_outer, batch_outer
    from ferrolib.training.data import load_data
    from ferrolib.training.tile import append_bias

    g = torch.Generator().manual_seed(22 + batch + n_out + n_in)
    mnist = append_bias(load_data(TrainConfig.smoke("fp")).train_x) if n_in == 785 else None
    for trial in range(10):
        if mnist is None or trial % 2:
            x = sparse_inputs(g, batch, n_in)
        else:
            x = mnist[(trial * batch) % (len(mnist) - batch):][:batch]
        d = torch.randn(batch, n_out, generator=g) * 1e-3
        full = batch_outer(d, x).numpy()
        product, runs = active_outer(d, x)
        columns = run_columns(runs)
        if COLUMN_EXACT_MKL:
            np.testing.assert_array_equal(product, full[:, columns])
        else:
            bound = batch * np.finfo(np.float32).eps * batch_outer(d.abs(), x.abs()).numpy()[:, columns]
            assert (np.abs(product - full[:, columns]) <= bound).all()
        skipped = np.setdiff1d(np.arange(n_in), columns)
        assert not full[:, skipped].any()
        assert len(skipped) > 0 if n_out >= ACTIVE_OUTER_MIN_SHAPE[0] else len(skipped) == 0


def test_transfers_on_column_runs_equal_the_dense_increment() -> None:
    """``transfer_counts``, ``accumulate``, ``pulsed_transfer`` and ``pulsed_transfer_and_accumulate`` given the
    increment on the active column runs leave chi, counts, states, counters and read-out weight exactly as with
    the dense increment, over several steps with pulses."""
    devices = make_devices("piecewise")
    params = pulsed.kernel_device(devices, SHAPE)
    eps = params.scale_up.copy()
    g = torch.Generator().manual_seed(23)
    chi0 = (torch.randn(SHAPE, generator=g, dtype=torch.float64) * torch.from_numpy(eps)).numpy()
    results = []
    for on_runs in (True, False):
        g.manual_seed(24)
        chi, state = chi0.copy(), random_state(devices).numpy().copy()
        up, down = np.zeros(SHAPE, np.int64), np.zeros(SHAPE, np.int64)
        weight = pulsed.effective_weight(state, np.zeros(SHAPE))
        fields = {}
        for step in range(1, 6):
            x = sparse_inputs(g, 8, SHAPE[1]) * 3
            d = torch.randn(8, SHAPE[0], generator=g)
            product, rest_product = (d.T @ x).numpy(), (d[1:].T @ x[1:]).numpy()
            runs, rest_runs = pulsed.active_columns(x.numpy())[0], pulsed.active_columns(x[1:].numpy())[0]
            given, given_rest = (runs, rest_runs) if on_runs else (None, None)
            if on_runs:  # the same products on the active columns only
                product = np.ascontiguousarray(product[:, run_columns(runs)])
                rest_product = np.ascontiguousarray(rest_product[:, run_columns(rest_runs)])
            arguments = (0.01, 7, 9, step * SHAPE[0], state, params, up, down, weight, np.zeros(SHAPE))
            fields[f"counts{step}"] = pulsed.transfer_counts(chi, eps, 3, product, -0.2, given)
            pulsed.accumulate(chi, product, 0.3, given)
            fields[f"pulsed{step}"] = pulsed.pulsed_transfer(chi, eps, None, product, -0.2, *arguments, given)
            pulsed.pulsed_transfer_and_accumulate(chi, eps, None, x[0].numpy(), d[0].numpy(), rest_product, 0.5,
                                                  *arguments, given_rest)
        results.append({**fields, "chi": chi, "state": state, "up": up, "down": down, "weight": weight})
    assert results[1]["up"].sum() + results[1]["down"].sum() > 10
    for name, value in results[1].items():
        np.testing.assert_array_equal(results[0][name], value, err_msg=name)
        assert results[0][name].tobytes() == value.tobytes(), name  # signed zeros too

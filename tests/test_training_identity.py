"""Short smoke trainings give exactly the numbers recorded before the fused fast paths.

The digests were recorded from the code before the fused pulse-train and transfer kernels landed; any change of
a state, a counter, a mixed-precision accumulator, a loss or an accuracy changes them. Those of mixed precision were
recorded again from that code (main at b7aa1b5) with one thread: it had been recorded with two, and MKL's output
layer product ``d^T x`` then differed in the last bits (``algorithms.batch_outer`` now computes it with one thread
whatever the setting, so every case gives these digests with one or two threads).
"""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from ferrolib.training import TrainConfig
from ferrolib.training.run import build_network, load_data, validate

CASES: dict[str, dict] = {
    "sgd": dict(algorithm="sgd"),
    "sps": dict(algorithm="sps"),
    "mp-exact": dict(algorithm="mp", mp_transfer="exact"),
    "mp-pulsed": dict(algorithm="mp", mp_transfer="pulsed"),
    "sgd-c2c-d2d": dict(algorithm="sgd", c2c=0.1, d2d=0.1),
    "sgd-unmanaged": dict(algorithm="sgd", update_management=False, bl_management=False, lr=0.01),
    "sgd-lr1-bl1": dict(algorithm="sgd", lr=1.0, desired_bl=1),
    "sps-implicit": dict(algorithm="sps", pulse_mode="implicit"),
}
"""Smoke configurations covering every fast path (managed and unmanaged trains, BL 1, both mp transfers)."""

RECORDED: dict[str, str] = {
    "sgd": "d4c21793c9c4535fe705ab74ca5c323a6dc330411d1437c2fa3f556611b552fd",
    "sps": "3d66b11d702d8c6699a342bb1e19876d27653be457b2dc1ee51b2408c6ec858d",
    "mp-exact": "2d186e24efed8471927eb3c07c270583757d68d5e104f8c37647c44b7d947157",
    "mp-pulsed": "472c1f1167d54624808e6cb78262b783e01d3759817d8b29661f5a48f23c3dee",
    "sgd-c2c-d2d": "167970d559822680eb1d5682b276e7f7cd4e185e2db1f5d575abcf643c9ec047",
    "sgd-unmanaged": "501a930948f312c4cc8c9dd5d215960e3e49d7ea880282c3eb96ce2c55583dea",
    "sgd-lr1-bl1": "80a4fafca996d8f22716df0521288a14eac438a554bdbd6d5df2b684d816e993",
    "sps-implicit": "42e25b18bc594f29faaf595acb8541dc51eac595379708d80073a0140e4535d3",
}
"""sha256 of every case's fingerprint, recorded from the code before the fused kernels."""


def fingerprint(case: dict, batches: int = 12) -> str:
    """Train ``batches`` mini-batches of a smoke configuration on the real device; hash states, counters, chi,
    the losses and the test accuracy."""
    config = TrainConfig.smoke(device_id="ID170ZR5000", pulse_width=2e-8, **case)
    data = load_data(config)
    network, _ = build_network(config, validate(config), data.train_x.shape[1])
    digest = hashlib.sha256()
    b = config.batch_size
    for step in range(batches):
        start = (step * b) % (len(data.train_y) - b)
        loss = network.train_step(data.train_x[start:start + b], data.train_y[start:start + b], config.lr, step)
        digest.update(np.float64(loss).tobytes())
    for layer in network.layers:
        for name, value in sorted(layer.state_dict().items()):
            digest.update(name.encode() + np.ascontiguousarray(np.asarray(value)).tobytes())
        digest.update(layer.weight().numpy().tobytes())
    accuracy = (network.predict(data.test_x, config.eval_batch_size) == data.test_y).double().mean()
    digest.update(np.float64(accuracy).tobytes())
    return digest.hexdigest()


@pytest.mark.parametrize("name", list(CASES))
def test_smoke_training_numbers_are_unchanged(name: str, shared_measurements) -> None:
    torch.manual_seed(0)
    assert fingerprint(CASES[name]) == RECORDED[name]

"""aihwkit's periphery (IOParameters) and mapping (MappingParameters): the vectorised reads against the per-vector
reference on the same draws, against aihwkit's formulas (quantisation steps, bound-management rounds, gradient mask,
output-noise statistics), and mapped layers (digital bias, split tiles) in training."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ferrolib import provenance
from ferrolib.training import TrainConfig
from ferrolib.training.algorithms import MappedLayer, UpdateSettings, make_layer
from ferrolib.training.config import validate
from ferrolib.training.loop import build_network, train
from ferrolib.training import periphery
from ferrolib.training.periphery import (IOParameters, MappingParameters, NoiseTable, backward, backward_reference,
                                         forward, forward_reference, read)

QUIET = IOParameters(out_noise=0.0)
"""aihwkit's default periphery without output noise (deterministic)."""


def no_noise(round_index, rows, n_rows, n_out):
    raise AssertionError("no noise may be drawn")


def test_defaults_are_aihwkits() -> None:
    io = IOParameters.aihwkit_default()
    assert (io.inp_res, io.out_res, io.out_noise, io.out_bound, io.inp_bound) == (1 / 126, 1 / 510, 0.06, 12.0, 1.0)
    assert (io.noise_management, io.bound_management, io.max_bm_factor, io.max_bm_res) == ("abs_max", "iterative",
                                                                                           1000, 0.25)
    assert io.input_step == pytest.approx(2 / 126, rel=1e-7) and io.output_step == pytest.approx(24 / 510, rel=1e-7)
    assert IOParameters(inp_res=126).input_step == io.input_step  # > 1: a number of steps
    assert repr(IOParameters.perfect()) == "IOParameters(is_perfect=True, out_bound=0.0)"
    mapping = MappingParameters()
    assert (mapping.digital_bias, mapping.max_input_size, mapping.max_output_size) == (True, 512, 512)


def test_quantisation_steps_are_aihwkits_formula() -> None:
    x = torch.tensor([[0.5, -0.25, 0.3, 0.07], [0.2, 0.1, -0.05, 0.0]], dtype=torch.float64)
    weight = torch.eye(4, dtype=torch.float64) * 3.0
    y, reads = read(weight, x, QUIET, no_noise)
    s_in, s_out = QUIET.input_step, QUIET.output_step  # aihwkit's float32 steps (2/126, 24/510)
    alpha = x.abs().amax(dim=1, keepdim=True).numpy()
    x_q = np.clip(np.rint(x.numpy() / alpha / s_in) * s_in, -1, 1)
    expected = np.clip(np.rint(3.0 * x_q / s_out) * s_out, -12, 12) * alpha
    np.testing.assert_array_equal(y.numpy(), expected)
    assert reads == 2
    zero, reads = read(weight, torch.zeros(3, 4, dtype=torch.float64), QUIET, no_noise)
    assert reads == 0 and not zero.any()  # a zero vector reads zero without an MVM (aihwkit's short cut)


@pytest.mark.parametrize("gain, reads, reduction", [(30.0, 3, 4), (1000.0, 5, 16), (5.0, 1, 1)])
def test_iterative_bound_management_rounds(gain: float, reads: int, reduction: int) -> None:
    """y = gain: retried with the input halved while it saturates (r = 1, 2, 4, ...), at most until r = 16 >
    max_bm_res / s_in = 15.75; the result is the last read, quantised and clipped, times r."""
    x = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    weight = torch.tensor([[gain, 0.0]], dtype=torch.float64)
    y, n = read(weight, x, QUIET, no_noise)
    s_in, s_out = QUIET.input_step, QUIET.output_step
    x_q = np.rint(1.0 / reduction / s_in) * s_in
    assert n == reads and float(y) == min(np.rint(gain * x_q / s_out) * s_out, 12.0) * reduction
    y, n = read(weight, x, IOParameters(out_noise=0.0, bound_management="none"), no_noise)
    assert n == 1 and float(y) == min(float(y), 12.0)


def test_negative_saturation_retries_only_when_tested() -> None:
    x = torch.tensor([[1.0]], dtype=torch.float64)
    weight = torch.tensor([[-30.0]], dtype=torch.float64)
    assert read(weight, x, QUIET, no_noise)[1] == 3
    untested = IOParameters(out_noise=0.0, bm_test_negative_bound=False)
    y, n = read(weight, x, untested, no_noise)
    assert n == 1 and float(y) == -12.0
    # aihwkit's scan: the last saturating output decides (negative last: passed; positive last: retried)
    x2 = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    assert read(torch.tensor([[30.0, 0.0], [-30.0, 0.0]], dtype=torch.float64), x2, untested, no_noise)[1] == 1
    assert read(torch.tensor([[-30.0, 0.0], [30.0, 0.0]], dtype=torch.float64), x2, untested, no_noise)[1] == 3


def test_gradient_mask_zeroes_the_errors_of_saturated_outputs() -> None:
    weight = torch.tensor([[20.0, 0.0], [1.0, 1.0], [-20.0, 0.0]], dtype=torch.float64)
    x = torch.tensor([[1.0, 1.0]], dtype=torch.float64)
    io = IOParameters(out_noise=0.0, bound_management="none")
    y, saturated, _ = forward(weight, x, io, no_noise)
    assert saturated.tolist() == [[True, False, True]]  # |y| = 12 >= 0.999 * 12
    d = torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64)
    d_in, _ = backward(weight, d, IOParameters.perfect(), no_noise, saturated)
    torch.testing.assert_close(d_in, torch.tensor([[2.0, 2.0]], dtype=torch.float64))
    assert forward(weight, x, IOParameters.perfect(), no_noise)[1] is None  # no bound: no mask


@pytest.mark.parametrize("io", [IOParameters(), IOParameters(noise_management="none", out_noise=0.3),
                                IOParameters(noise_management="max", bm_test_negative_bound=False),
                                IOParameters(inp_res=0.0, out_res=0.0, out_scale=2.0)], ids=repr)
def test_vectorised_reads_equal_the_per_vector_reference_on_the_same_draws(io: IOParameters) -> None:
    generator = torch.Generator().manual_seed(3)
    x = torch.rand(40, 30, generator=generator, dtype=torch.float64) * 2 - 1
    x[5] = 0.0
    weight = torch.randn(12, 30, generator=generator, dtype=torch.float64) * 2.5  # many outputs saturate
    table = NoiseTable(torch.randn(8, 40, 12, generator=generator, dtype=torch.float64))
    y, saturated, reads = forward(weight, x, io, table)
    y_ref, reads_ref = forward_reference(weight, x, io, table)
    assert reads == reads_ref and reads > 40  # bound management retried some rows
    exact = io.inp_res > 0 and io.out_res > 0  # quantised: equal; else up to the MVM's summation order
    torch.testing.assert_close(y, y_ref, rtol=0 if exact else 1e-12, atol=0 if exact else 1e-12)
    d = torch.randn(40, 12, generator=generator, dtype=torch.float64)
    table = NoiseTable(torch.randn(1, 40, 30, generator=generator, dtype=torch.float64))
    d_in, back_reads = backward(weight, d, io, table, saturated)
    d_ref, back_ref = backward_reference(weight, d, io, table, saturated)
    assert back_reads == back_ref
    torch.testing.assert_close(d_in, d_ref, rtol=0 if exact else 1e-12, atol=0 if exact else 1e-12)


def torch_steps(monkeypatch):
    """``read`` without its fused kernels: the torch steps every read took before them (the reference)."""
    monkeypatch.setattr(periphery, "_fusable", lambda *args: False)


@pytest.mark.parametrize("io", [IOParameters(), IOParameters(inp_res=0.0), IOParameters(out_res=0.0),
                                IOParameters(bound_management="none"), IOParameters(out_noise=0.0, out_bound=0.0),
                                IOParameters(inp_res=64, out_res=1 / 254, out_bound=3.0, max_bm_factor=4)], ids=repr)
def test_fused_reads_equal_the_torch_steps_on_the_same_draws(io: IOParameters, monkeypatch) -> None:
    """Training's float32 reads (``_fused_read``: two kernels per round) give ``read``'s torch steps bit for bit,
    forward (bound management with retries) and backward, on tile slices (non-contiguous), with the same draws;
    the saturation mask equals ``|y| >= bound``."""
    generator = torch.Generator().manual_seed(11)
    retried = 0
    for trial in range(12):
        rows, columns, outputs = (int(v) for v in torch.randint(1, 90, (3,), generator=generator))
        full = torch.rand(rows, columns + 3, generator=generator) * 2 - 0.5
        x = (full * (torch.rand(full.shape, generator=generator) > 0.4))[:, 1:columns + 1]  # a tile's columns
        x[:, 0] += 0.01  # no zero rows
        weight = torch.randn(outputs, columns, generator=generator) * (1 + trial) / columns ** 0.5
        table = NoiseTable(torch.randn(6, rows, max(outputs, columns), generator=generator))
        draw = lambda r, rows_, n, m: table(r, rows_, n, m)[:, :m]  # noqa: E731
        d = torch.randn(rows, outputs, generator=generator)
        y, saturated, reads = forward(weight, x, io, draw)
        d_in, back_reads = backward(weight, d, io, draw, saturated)
        retried += reads > rows
        if saturated is not None:
            assert torch.equal(saturated, y.abs() >= io.saturation_bound)
        with monkeypatch.context() as patch:
            torch_steps(patch)
            y_ref, saturated_ref, reads_ref = forward(weight, x, io, draw)
            d_ref, back_ref = backward(weight, d, io, draw, saturated_ref)
        assert torch.equal(y, y_ref) and reads == reads_ref and back_reads == back_ref
        assert (saturated is None and saturated_ref is None) or torch.equal(saturated, saturated_ref)
        assert torch.equal(d_in, d_ref)
    if io.bound_management == "iterative" and io.out_bound > 0:
        assert retried > 3  # the saturating tiles were read again


def test_fused_read_leaves_zero_and_nan_rows_to_the_torch_steps() -> None:
    weight = torch.randn(4, 6)
    x = torch.rand(3, 6)
    assert periphery._fused_read(weight, x, IOParameters(), no_noise_fused, True) is not None
    for bad in (0.0, float("nan")):
        x_bad = x.clone()
        x_bad[1] = bad
        assert periphery._fused_read(weight, x_bad, IOParameters(), no_noise_fused, True) is None
    y, reads = read(weight, torch.cat([x, torch.zeros(1, 6)]), IOParameters(out_noise=0.0), no_noise)
    assert reads == 3 and not y[3].any()  # the torch steps: a zero vector reads zero without an MVM


def no_noise_fused(round_index, rows, n_rows, n_out):
    return torch.zeros(n_rows, n_out)


@pytest.mark.parametrize("algorithm", ["sgd", "sps", "mp"])
def test_paper_periphery_training_is_the_same_with_and_without_the_fused_reads(tmp_path, monkeypatch,
                                                                               algorithm: str) -> None:
    config = small(algorithm, forward_io="aihwkit_default", backward_io="aihwkit_default", mapping="aihwkit_default")
    fused_reads = []
    original = periphery._fused_read
    monkeypatch.setattr(periphery, "_fused_read", lambda *args: fused_reads.append(1) or original(*args))
    fused = train(config, tmp_path / "fused", progress=False)
    assert len(fused_reads) >= 24  # 4 batches: 6 reads each (fc1 on two tiles, fc2, fc3; fc3, fc2 back)
    torch_steps(monkeypatch)
    reference = train(config, tmp_path / "torch", progress=False)
    for name in ("val_acc", "train_loss", "weight_hist", "device_pulses_fc1", "analog_mvms"):
        np.testing.assert_array_equal(fused[name], reference[name])


def quantised_normal_std(sigma: float, step: float) -> float:
    """Standard deviation of ``rint(sigma xi / step) step`` for a standard normal xi (exact sum over the bins)."""
    cdf = lambda v: 0.5 * (1 + math.erf(v / (sigma * math.sqrt(2))))  # noqa: E731
    second = sum((k * step) ** 2 * (cdf((k + 0.5) * step) - cdf((k - 0.5) * step)) for k in range(-60, 61))
    return math.sqrt(second)


@pytest.mark.parametrize("alpha", [1.0, 0.25])
def test_output_noise_statistics(alpha: float) -> None:
    """With W = 0 every output is the quantised output noise times the noise-management scale alpha: mean 0 and
    the standard deviation of the quantised normal, within 5 standard errors (n = 40,000)."""
    n = 40_000
    x = torch.zeros(n // 10, 8)
    x[:, 0] = alpha
    y, _ = read(torch.zeros(10, 8), x, IOParameters(), lambda r, rows, k, m: torch.randn(k, m, generator=gen))
    expected = alpha * quantised_normal_std(0.06, 24 / 510)
    values = y.double().flatten()
    assert abs(float(values.mean())) < 5 * expected / math.sqrt(n)
    assert abs(float(values.std()) - expected) < 5 * expected / math.sqrt(2 * n)


gen = torch.Generator().manual_seed(11)


def test_split_sizes_follow_aihwkit_and_bad_mappings_are_refused() -> None:
    mapping = MappingParameters()
    assert mapping.split_sizes(784) == [392, 392] and mapping.split_sizes(785) == [393, 392]
    assert mapping.split_sizes(256) == [256] and MappingParameters(max_input_size=0).split_sizes(784) == [784]
    assert MappingParameters(max_input_size=300).split_sizes(784) == [262, 261, 261]
    assert "digital" in MappingParameters(digital_bias=False).problems([784, 256, 10])[0]
    assert "max_output_size" in MappingParameters(max_output_size=100).problems([784, 256, 10])[0]


def test_mapped_layer_reads_tiles_and_keeps_a_digital_bias() -> None:
    generator = torch.Generator().manual_seed(0)
    weight = (torch.rand(6, 11, generator=generator) - 0.5) * 0.4  # 10 inputs + bias column
    from ferrolib.devices import SoftBounds

    devices = SoftBounds(dw_min=0.002).sample((6, 10), dtype=torch.float64)
    layer = make_layer("sgd", weight, devices, UpdateSettings(), mapping=MappingParameters(max_input_size=4))
    assert isinstance(layer, MappedLayer) and layer.columns == [(0, 4), (4, 7), (7, 10)]
    torch.testing.assert_close(layer.weight(), weight)
    x = torch.rand(5, 10, generator=generator)  # no bias column: the bias is digital
    assert not layer.bias_input
    torch.testing.assert_close(layer.forward(x), torch.cat([x, torch.ones(5, 1)], dim=1) @ weight.T)
    d = torch.rand(5, 6, generator=generator) * 0.01
    torch.testing.assert_close(layer.backward(d), d @ weight[:, :-1])
    assert layer.reads.tolist() == [15, 15, 0] and layer.device_reads.tolist() == [5 * 60, 5 * 60, 0]
    layer.update(x, d, 0.1, 0)
    torch.testing.assert_close(layer.bias, weight[:, -1] - 0.1 * d.sum(dim=0))
    assert layer.tile.count_up.shape == (6, 10) and layer.tile.count_up.sum() + layer.tile.count_down.sum() > 0


def test_config_fields_keep_hashes_coerce_and_validate() -> None:
    base = TrainConfig(algorithm="sgd", data="synthetic")
    explicit = TrainConfig(algorithm="sgd", data="synthetic", forward_io="perfect", backward_io={"is_perfect": True,
                           "out_bound": 0.0}, mapping="single_tile")
    assert provenance.config_hash(explicit) == provenance.config_hash(base)
    assert base.io_pair() is None
    paper_io = TrainConfig(algorithm="sgd", data="synthetic", forward_io="aihwkit_default")
    assert paper_io.forward_io == IOParameters() and paper_io.io_pair() == (IOParameters(), IOParameters.perfect())
    assert provenance.config_hash(paper_io) != provenance.config_hash(base)
    with pytest.raises(ValueError, match="unknown forward_io preset"):
        TrainConfig(algorithm="sgd", data="synthetic", forward_io="ideal")
    with pytest.raises(ValueError, match="unknown field"):
        TrainConfig(algorithm="sgd", data="synthetic", mapping={"max_inputs": 3})
    for bad, message in ((dict(periphery=True, forward_io="aihwkit_default"), "periphery=True"),
                         (dict(backward_io={"noise_management": "abs"}), "backward_io.noise_management"),
                         (dict(mapping={"digital_bias": False}), "digital")):
        with pytest.raises(ValueError, match=message):
            validate(TrainConfig(algorithm="fp", data="synthetic", **bad))


def small(algorithm: str, **overrides):
    values = dict(device_id="synthetic-softbounds", data="synthetic", epochs=1, train_limit=256, eval_limit=100,
                  hidden=(32, 16), snapshot_epochs=(1,))
    return TrainConfig(algorithm=algorithm, **{**values, **overrides})


@pytest.mark.parametrize("algorithm", ["sgd", "mp", "sps"])
def test_training_with_the_papers_periphery_and_mapping_counts_reads_per_tile(tmp_path, algorithm: str) -> None:
    config = small(algorithm, forward_io="aihwkit_default", backward_io="aihwkit_default", mapping="aihwkit_default")
    network, sizes = build_network(config, validate(config))
    assert [len(layer.parts) for layer in network.layers] == [2, 1, 1]  # 784 inputs: two tiles of 392
    result = train(config, tmp_path, progress=False)
    np.testing.assert_array_equal(result.layer_devices, [32 * 784, 16 * 32, 10 * 16])
    mvms = result.analog_mvms.sel(epoch=1)
    assert int(mvms.sel(layer="fc1", phase="forward")) >= 2 * 256  # two tiles per sample, retries on top
    assert int(mvms.sel(layer="fc1", phase="backward")) == 0 and int(mvms.sel(layer="fc2", phase="backward")) <= 256
    forward_reads = result.forward_reads.sel(epoch=1).values
    assert np.all(forward_reads >= 256) and np.all(forward_reads <= 5 * 256)
    # whole-layer units: fc1's two equal tiles make one layer read per two MVMs; the others one per MVM
    forward_mvms = mvms.sel(phase="forward").values
    np.testing.assert_array_equal(forward_reads, forward_mvms / np.array([2, 1, 1]))
    np.testing.assert_array_equal(result.eval_reads.sel(epoch=1) * [2, 1, 1], mvms.sel(phase="eval"))
    again = train(config, tmp_path / "again", progress=False)
    np.testing.assert_array_equal(again.val_acc, result.val_acc)
    np.testing.assert_array_equal(again.pulses, result.pulses)


@pytest.mark.parametrize("algorithm", ["sgd", "mp"])
def test_mapped_periphery_run_resumes_with_identical_numbers(tmp_path, monkeypatch, algorithm: str) -> None:
    """A checkpoint holds every tile's state, noise generator and the digital bias: an interrupted run resumes
    with the numbers of an uninterrupted one (read counters included)."""
    from test_run_cache import interrupt_after_first_epoch

    config = small(algorithm, forward_io="aihwkit_default", backward_io="aihwkit_default", mapping="aihwkit_default",
                   epochs=2, snapshot_epochs=(2,))
    reference = train(config, tmp_path / "full", progress=False)
    interrupt_after_first_epoch(monkeypatch, config, tmp_path / "resumed")
    resumed = train(config, tmp_path / "resumed", progress=False)
    for name in ("val_acc", "train_loss", "device_pulses_fc1", "weight_hist", "forward_reads", "analog_mvms"):
        np.testing.assert_array_equal(reference[name], resumed[name])

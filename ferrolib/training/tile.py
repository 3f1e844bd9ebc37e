"""Analog tile: a crossbar of devices with its state, optional static reference devices and pulse counters.

The tile has shape ``(out, in + 1)``: the last column is the analog bias (an input of 1 appended, as in
aihwkit). The effective weight is ``w_eff = w_device - w_ref`` in device units (no extra weight scaling:
one device unit is one weight unit). Forward ``y = W_eff [x; 1]`` and backward ``d_in = W_eff[:, :-1]^T d``
are exact by default; ``Periphery`` adds input/output quantisation and output noise (``read``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..devices import DeviceArray
from ..provenance import compact_repr
from . import pulsed


@dataclass
class Periphery:
    """Analog read periphery in the spirit of aihwkit's preset IO (7-bit inputs, 9-bit outputs, output noise).

    Simplified: absolute-max noise management per vector, no bound-management retries (clipped outputs stay
    clipped). Steps are ``2 bound / (2^bits - 2)`` over the symmetric ranges [-1, 1] (inputs) and
    [-out_bound, out_bound] (outputs).
    """

    inp_bits: int = 7
    """DAC resolution of the inputs (after scaling each vector by its absolute maximum)."""
    out_bits: int = 9
    """ADC resolution of the outputs."""
    out_noise: float = 0.06
    """Standard deviation of the additive Gaussian output noise (in scaled output units)."""
    out_bound: float = 12.0
    """Output range of the ADC (scaled output units)."""

    __repr__ = compact_repr


def read(weight: Tensor, x: Tensor, periphery: Periphery | None = None,
         generator: torch.Generator | None = None) -> Tensor:
    """One analog vector read per row of ``x``: ``x @ weight.T``, exact or through the ``periphery``:
    ``alpha = max|x|``, ``x_q = Q_in(x/alpha)``, ``y = alpha Q_out(W x_q + sigma xi)``."""
    if periphery is None:
        return x @ weight.T
    alpha = x.abs().amax(dim=1, keepdim=True)
    in_step = 2.0 / (2**periphery.inp_bits - 2)
    x_q = torch.clamp(torch.round(x / alpha.clamp_min(1e-30) / in_step) * in_step, -1.0, 1.0)
    y = x_q @ weight.T
    if periphery.out_noise > 0:
        y = y + periphery.out_noise * torch.randn(y.shape, generator=generator, dtype=y.dtype)
    out_step = 2.0 * periphery.out_bound / (2**periphery.out_bits - 2)
    y = torch.clamp(torch.round(y / out_step) * out_step, -periphery.out_bound, periphery.out_bound)
    return y * alpha


def append_bias(x: Tensor) -> Tensor:
    """``[x; 1]`` for every row of a batch (B, n) -> (B, n + 1)."""
    return torch.cat([x, torch.ones(x.shape[0], 1, dtype=x.dtype)], dim=1)


class AnalogTile:
    """A crossbar of ``devices`` (shape (out, in + 1)) with float64 state and per-device pulse counters."""

    def __init__(self, devices: DeviceArray, weight: Tensor, reference: Tensor | None = None) -> None:
        """Program the initial effective ``weight`` (out, in + 1) on top of ``reference`` (default 0), clipped."""
        shape = tuple(weight.shape)
        self.devices = devices.map(lambda v: v.to(torch.float64))
        self.params = pulsed.kernel_device(self.devices, shape)
        self.reference = (
            np.zeros(shape) if reference is None
            else np.ascontiguousarray(np.broadcast_to(reference.to(torch.float64).numpy(), shape))
        )
        self.state = np.ascontiguousarray(
            np.clip(self.reference + weight.to(torch.float64).numpy(), self.params.w_min, self.params.w_max)
        )
        self.count_up = np.zeros(shape, dtype=np.int64)
        """Potentiation pulses applied to every device so far."""
        self.count_down = np.zeros(shape, dtype=np.int64)
        """Depression pulses applied to every device so far."""
        self._weight: Tensor | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.state.shape

    @property
    def dw_min(self) -> float:
        return float(self.devices.dw_min)

    def weight(self) -> Tensor:
        """Effective weight ``w_device - w_ref`` (float32 tensor, (out, in + 1)), cached until ``invalidate``."""
        if self._weight is None:
            self._weight = torch.from_numpy(pulsed.effective_weight(self.state, self.reference))
        return self._weight

    def live_weight(self) -> np.ndarray:
        """The float32 array behind ``weight()``, for kernels that keep it current in place at every device they
        pulse (so no full recomputation is needed after a sparse update)."""
        return self.weight().numpy()

    def program(self, states: np.ndarray) -> None:
        """Set every device's state to ``states`` (out, in + 1), clipped to its bounds."""
        self.state[...] = np.clip(states, self.params.w_min, self.params.w_max)
        self.invalidate()

    def invalidate(self) -> None:
        """Drop the cached effective weight: call after every in-place change of ``state``."""
        self._weight = None

    def step_at_zero(self) -> np.ndarray:
        """Mean of the up and down step of every device at w_device = 0 (the mixed-precision threshold)."""
        zero = torch.zeros(self.shape, dtype=torch.float64)
        mean = 0.5 * (self.devices.dw_up(zero) + self.devices.dw_down(zero))
        return np.ascontiguousarray(np.broadcast_to(mean.numpy(), self.shape))

    def symmetry_points(self) -> np.ndarray:
        """Every device's symmetry point (device units), from ``ferrolib.symmetry.symmetry_point``."""
        from ..symmetry import symmetry_point

        return np.broadcast_to(symmetry_point(self.devices).to(torch.float64).numpy(), self.shape).copy()

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"state": self.state.copy(), "count_up": self.count_up.copy(), "count_down": self.count_down.copy()}

    def load_state_dict(self, saved: dict[str, np.ndarray]) -> None:
        for name in ("state", "count_up", "count_down"):
            getattr(self, name)[...] = saved[name]
        self.invalidate()

"""Device models: the mean step up and down as functions of the state, with per-device parameters.

Conventions (docs/science.md, "Device models"; aihwkit semantics):

* States are weights in device units, nominally in [-1, 1]; every device has its own bounds
  ``w_min < 0 < w_max``.
* ``dw_up(w) >= 0`` is the magnitude of one potentiation step (a negative voltage pulse, G rises),
  ``dw_down(w) >= 0`` of one depression step (positive pulse, G falls). A pulse moves the state by
  ``+dw_up(w) (1 + sigma_c2c xi)`` or ``-dw_down(w) (1 + sigma_c2c xi)``, xi ~ N(0, 1), evaluated at the
  current state, then clips to ``[w_min, w_max]``.
* Model kinds share one canonical parameter set so that every consumer (the pulsed-update kernel, the
  energy ledger, the file format) handles all of them alike:

  ``piecewise``   step = scale * ((1-q) v_i + q v_{i+1}),  t = N (w - w_min)/(w_max - w_min), i = min(floor t, N-1)
  ``softbounds``  up = scale_up (1 - w/w_max),   down = scale_down (1 - w/w_min)
  ``powstep``     omega = (w_max - w)/(w_max - w_min):  up = scale_up omega^gamma_up,
                  down = scale_down (1 - omega)^gamma_down

* ``up_down`` convention of ferrolib's configurations: the **smaller** step scale equals ``dw_min`` and the
  larger one is ``dw_min (1 + |up_down|)``; ``up_down > 0`` makes potentiation (up) the larger step::

      scale_up = dw_min (1 + max(up_down, 0)),   scale_down = dw_min (1 + max(-up_down, 0))

  aihwkit keeps the **larger** step at its ``dw_min`` and shrinks the other by ``(1 - |up_down|)``;
  ``to_aihwkit`` / ``from_aihwkit`` convert explicitly (``dw_min_aihwkit = dw_min (1 + |u|)``,
  ``up_down_aihwkit = u / (1 + |u|)``).
* Piecewise node vectors are relative to ``dw_min`` and spread evenly over each device's own
  ``[w_min, w_max]``; fitted ones are zero at the bound each direction saturates at.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import torch
import xarray as xr
from torch import Tensor

from . import provenance
from .kernels import MODEL_KINDS as KERNEL_KINDS
from .units import format_pulse_width

ModelKind = Literal["piecewise", "softbounds", "powstep"]

MODEL_KINDS: tuple[str, ...] = (*KERNEL_KINDS, "paper_piecewise")
"""Fitted device models (``fitting.fit_ramp`` and the file names of ``catalog.fitted_device_path``): the three kernel
kinds fitted by ferrolib's recipe, and ``paper_piecewise``, a piecewise device fitted by the paper's recipe (its
``DeviceArray.kind`` is ``piecewise``)."""


@dataclass
class DeviceArray:
    """An array of devices (any shape) with their sampled per-device parameters as named tensors.

    All per-device tensors have the array's shape; node vectors are shared by all devices.
    """

    kind: str
    """Model kind: one of ``KERNEL_KINDS``."""
    w_min: Tensor
    """Lower bound of every device's state (negative)."""
    w_max: Tensor
    """Upper bound of every device's state (positive)."""
    scale_up: Tensor
    """Potentiation step scale per device (weight units); see the module docstring per kind."""
    scale_down: Tensor
    """Depression step scale per device (weight units)."""
    dw_min: float
    """Nominal granularity: the smaller of the mean up and down steps at w = 0 (weight units)."""
    c2c: float = 0.0
    """Cycle-to-cycle noise: relative standard deviation of every single step."""
    nodes_up: Tensor | None = None
    """Piecewise only: N+1 relative step values for potentiation, spread over [w_min, w_max]."""
    nodes_down: Tensor | None = None
    """Piecewise only: N+1 relative step values for depression."""
    gamma_up: Tensor | None = None
    """Power step only: exponent of the potentiation step per device."""
    gamma_down: Tensor | None = None
    """Power step only: exponent of the depression step per device."""
    write_noise: float = 0.0
    """Write noise: standard deviation of the read-back (visible) weight around the hidden state, in units
    of ``dw_min``, drawn afresh at every read (aihwkit ``write_noise_std``); the hidden state is unaffected."""
    meta: dict = field(default_factory=dict, repr=False)
    """Provenance (source device id, pulse width, measurement file, fit method, ...)."""

    def __post_init__(self) -> None:
        if self.kind not in KERNEL_KINDS:
            raise ValueError(f"unknown device model kind {self.kind!r}; expected one of {KERNEL_KINDS}")
        if self.kind == "piecewise" and (self.nodes_up is None or self.nodes_down is None):
            raise ValueError("a piecewise device needs nodes_up and nodes_down")
        if self.kind == "powstep" and (self.gamma_up is None or self.gamma_down is None):
            raise ValueError("a power-step device needs gamma_up and gamma_down")

    @property
    def shape(self) -> torch.Size:
        return self.w_min.shape

    def _piecewise(self, w: Tensor, nodes: Tensor) -> Tensor:
        n_segments = nodes.numel() - 1
        t = n_segments * (w - self.w_min) / (self.w_max - self.w_min)
        t = t.clamp(0.0, float(n_segments))
        index = torch.clamp(t.floor().long(), max=n_segments - 1)
        q = t - index
        return (1.0 - q) * nodes[index] + q * nodes[index + 1]

    def dw_up(self, w: Tensor) -> Tensor:
        """Mean magnitude of one potentiation step at state ``w`` (non-negative)."""
        if self.kind == "piecewise":
            step = self.scale_up * self._piecewise(w, self.nodes_up)
        elif self.kind == "softbounds":
            step = self.scale_up * (1.0 - w / self.w_max)
        else:
            omega = ((self.w_max - w) / (self.w_max - self.w_min)).clamp(0.0, 1.0)
            step = self.scale_up * omega.pow(self.gamma_up)
        return step.clamp_min(0.0)

    def dw_down(self, w: Tensor) -> Tensor:
        """Mean magnitude of one depression step at state ``w`` (non-negative)."""
        if self.kind == "piecewise":
            step = self.scale_down * self._piecewise(w, self.nodes_down)
        elif self.kind == "softbounds":
            step = self.scale_down * (1.0 - w / self.w_min)
        else:
            omega = ((self.w_max - w) / (self.w_max - self.w_min)).clamp(0.0, 1.0)
            step = self.scale_down * (1.0 - omega).pow(self.gamma_down)
        return step.clamp_min(0.0)

    def pulse(self, w: Tensor, direction: Tensor, noise: Tensor | None = None) -> Tensor:
        """One pulse on every device where ``direction`` is +1 (up) or -1 (down); 0 leaves it alone.

        ``noise`` holds standard normal draws (same shape) for the cycle-to-cycle term.
        """
        step = torch.where(direction > 0, self.dw_up(w), self.dw_down(w))
        if self.c2c > 0.0 and noise is not None:
            step = step * (1.0 + self.c2c * noise)
        new = w + direction.to(w.dtype) * step
        return torch.minimum(torch.maximum(new, self.w_min), self.w_max)

    def clip(self, w: Tensor) -> Tensor:
        """Clip states to every device's bounds."""
        return torch.minimum(torch.maximum(w, self.w_min), self.w_max)

    def map(self, fn) -> "DeviceArray":
        """A copy with ``fn`` applied to every per-device tensor (e.g. indexing, ``.to(dtype)``)."""
        per_device = {
            name: fn(getattr(self, name))
            for name in ("w_min", "w_max", "scale_up", "scale_down", "gamma_up", "gamma_down")
            if getattr(self, name) is not None
        }
        return replace(self, **per_device)

    def visible(self, w: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The weight as read back: ``w + write_noise dw_min xi`` (xi ~ N(0, 1) per read); ``w`` if noise-free."""
        if self.write_noise <= 0.0:
            return w
        noise = torch.randn(w.shape, generator=generator, dtype=w.dtype, device=w.device)
        return w + self.write_noise * self.dw_min * noise

    def to_dataset(self, dims: Sequence[str] | None = None) -> xr.Dataset:
        """The per-device parameters as an xarray Dataset (for inspection and saving)."""
        dims = tuple(dims) if dims is not None else tuple(f"dim_{i}" for i in range(len(self.shape)))
        if len(dims) != len(self.shape):
            raise ValueError(f"need {len(self.shape)} dimension names for shape {tuple(self.shape)}, got {dims}")
        data: dict[str, Any] = {}
        for name in ("w_min", "w_max", "scale_up", "scale_down", "gamma_up", "gamma_down"):
            value = getattr(self, name)
            if value is not None:
                data[name] = (dims, value.detach().cpu().numpy())
        for name in ("nodes_up", "nodes_down"):
            value = getattr(self, name)
            if value is not None:
                data[name] = (("node",), value.detach().cpu().numpy())
        attrs = {"kind": self.kind, "dw_min": self.dw_min, "c2c": self.c2c, "write_noise": self.write_noise}
        attrs.update({f"meta_{k}": v if isinstance(v, str) else repr(v) for k, v in self.meta.items()})
        return xr.Dataset(data, attrs=attrs)


# --------------------------------------------------------------------------------------------------------------
# Configurations and sampling


@dataclass
class DeviceNoise:
    """Noise of a device model: cycle-to-cycle per pulse, device-to-device drawn once per device, write noise.

    Device-to-device draws (xi ~ N(0, 1), one per device and quantity)::

        gain = max(1 + dw_min_dtod xi, 0.05);  u = up_down + up_down_dtod xi
        w_max (1 + w_max_dtod xi) (kept >= 0.05 |w_max|);  w_min (1 + w_min_dtod xi) (kept <= -0.05 |w_min|)
        gamma (1 + gamma_dtod xi) (power step; kept >= 0.05)
    """

    c2c: float = 0.0
    """Cycle-to-cycle: relative standard deviation of every single step (aihwkit ``dw_min_std``)."""
    dw_min_dtod: float = 0.0
    """Device-to-device relative spread of the step gain (both directions alike)."""
    up_down_dtod: float = 0.0
    """Device-to-device absolute spread of the up/down asymmetry ``up_down``."""
    w_min_dtod: float = 0.0
    """Device-to-device relative spread of the lower bound."""
    w_max_dtod: float = 0.0
    """Device-to-device relative spread of the upper bound."""
    gamma_dtod: float = 0.0
    """Device-to-device relative spread of the power-step exponents."""
    write_noise: float = 0.0
    """Write noise on the read-back weight, in units of ``dw_min``."""

    __repr__ = provenance.compact_repr


def _draw(shape: tuple[int, ...], spread: float, generator: torch.Generator | None, dtype: torch.dtype) -> Tensor:
    """``spread * xi`` with xi ~ N(0, 1) of ``shape``; zeros (and no draw) when ``spread`` is 0."""
    if spread == 0.0:
        return torch.zeros(shape, dtype=dtype)
    return spread * torch.randn(shape, generator=generator, dtype=dtype)


def _scales(dw_min: Tensor | float, up_down: Tensor | float) -> tuple[Tensor, Tensor]:
    """ferrolib convention: the smaller scale is ``dw_min``, the larger ``dw_min (1 + |up_down|)``."""
    up_down = torch.as_tensor(up_down)
    return dw_min * (1.0 + up_down.clamp_min(0.0)), dw_min * (1.0 + (-up_down).clamp_min(0.0))


@dataclass
class _StepConfig:
    """Fields and sampling shared by every device model configuration."""

    dw_min: float = 0.01
    """Granularity: the smaller of the up and down step scales (weight units)."""
    up_down: float = 0.0
    """Asymmetry: the larger scale is ``dw_min (1 + |up_down|)``; > 0 means up is larger (ferrolib convention)."""
    w_min: float = -1.0
    """Lower bound of the state."""
    w_max: float = 1.0
    """Upper bound of the state."""

    kind = "piecewise"

    def _extra(self, shape: tuple[int, ...], noise: DeviceNoise, generator, dtype) -> dict[str, Any]:
        return {}

    def sample(
        self,
        shape: Sequence[int] = (),
        noise: DeviceNoise | None = None,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> DeviceArray:
        """An array of ``shape`` devices with device-to-device parameters drawn once per device."""
        if not self.w_min < 0.0 < self.w_max:
            raise ValueError(f"{type(self).__name__}: need w_min < 0 < w_max, got {self.w_min}, {self.w_max}")
        if not self.dw_min > 0.0:
            raise ValueError(f"{type(self).__name__}: dw_min must be positive, got {self.dw_min}")
        noise = noise or DeviceNoise()
        shape = tuple(shape)
        gain = (1.0 + _draw(shape, noise.dw_min_dtod, generator, dtype)).clamp_min(0.05)
        up_down = self.up_down + _draw(shape, noise.up_down_dtod, generator, dtype)
        scale_up, scale_down = _scales(self.dw_min * gain, up_down)
        w_max = (self.w_max * (1.0 + _draw(shape, noise.w_max_dtod, generator, dtype))).clamp_min(0.05 * self.w_max)
        w_min = (self.w_min * (1.0 + _draw(shape, noise.w_min_dtod, generator, dtype))).clamp_max(0.05 * self.w_min)
        return DeviceArray(
            kind=self.kind,
            w_min=w_min,
            w_max=w_max,
            scale_up=scale_up.to(dtype),
            scale_down=scale_down.to(dtype),
            dw_min=self.dw_min,
            c2c=noise.c2c,
            write_noise=noise.write_noise,
            meta={"config": repr(self), "noise": repr(noise)},
            **self._extra(shape, noise, generator, dtype),
        )

    def devices(self, dtype: torch.dtype = torch.float64) -> DeviceArray:
        """The single noise-free nominal device (shape ``()``)."""
        return self.sample((), None, None, dtype)


@dataclass
class PiecewiseStep(_StepConfig):
    """Piecewise-linear step against state (aihwkit ``PiecewiseStepDevice`` semantics, ferrolib ``up_down``)."""

    piecewise_up: tuple[float, ...] = (1.0, 1.0)
    """Relative potentiation step at N evenly spread nodes over [w_min, w_max] (multiplies the up scale)."""
    piecewise_down: tuple[float, ...] = (1.0, 1.0)
    """Relative depression step at the same nodes."""

    kind = "piecewise"
    __repr__ = provenance.compact_repr

    def __post_init__(self) -> None:
        self.piecewise_up = tuple(float(v) for v in self.piecewise_up)
        self.piecewise_down = tuple(float(v) for v in self.piecewise_down)
        if len(self.piecewise_up) != len(self.piecewise_down) or len(self.piecewise_up) < 2:
            raise ValueError("piecewise_up and piecewise_down need the same length, at least 2 nodes")
        if min(self.piecewise_up + self.piecewise_down) < 0.0:
            raise ValueError("piecewise node values must be non-negative (they are step magnitudes)")

    def _extra(self, shape, noise, generator, dtype) -> dict[str, Any]:
        return {
            "nodes_up": torch.tensor(self.piecewise_up, dtype=dtype),
            "nodes_down": torch.tensor(self.piecewise_down, dtype=dtype),
        }


@dataclass
class SoftBounds(_StepConfig):
    """Soft bounds: ``dw_up = a_up (1 - w/w_max)``, ``dw_down = a_down (1 - w/w_min)``; a = the scales at w = 0."""

    kind = "softbounds"
    __repr__ = provenance.compact_repr


@dataclass
class PowStep(_StepConfig):
    """Power step: ``omega = (w_max - w)/(w_max - w_min)``, up ``a_up omega^gamma_up``, down
    ``a_down (1 - omega)^gamma_down``; here the scales ``a`` are the steps at the far bound, not at w = 0."""

    gamma_up: float = 1.0
    """Exponent of the potentiation step."""
    gamma_down: float = 1.0
    """Exponent of the depression step."""

    kind = "powstep"
    __repr__ = provenance.compact_repr

    def _extra(self, shape, noise, generator, dtype) -> dict[str, Any]:
        gammas = {}
        for name in ("gamma_up", "gamma_down"):
            spread = _draw(shape, noise.gamma_dtod, generator, dtype)
            gammas[name] = (getattr(self, name) * (1.0 + spread)).clamp_min(0.05)
        return gammas


DeviceConfig = PiecewiseStep | SoftBounds | PowStep
CONFIG_CLASSES: dict[str, type] = {"piecewise": PiecewiseStep, "softbounds": SoftBounds, "powstep": PowStep}


# --------------------------------------------------------------------------------------------------------------
# Pulsing


def apply_pulses(
    devices: DeviceArray,
    state: Tensor,
    n_up: Tensor,
    n_down: Tensor,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Apply ``n_up`` potentiation pulses, **then** ``n_down`` depression pulses, to every device.

    Pulses are applied one at a time at the current state (step, c2c noise, clip to the bounds), all devices
    at once: round k pulses every device whose count exceeds k. Counts are non-negative integers of the
    array's shape. c2c draws are taken per round for the devices still pulsing, in flat (row-major) order,
    all up rounds before all down rounds. Returns the new state (the input is not modified).
    """
    shape = devices.shape
    state = state.reshape(shape).clone()
    flat_devices = devices.map(lambda t: t.reshape(-1))
    flat_state = state.reshape(-1)
    for sign, counts in ((1.0, n_up), (-1.0, n_down)):
        counts = torch.as_tensor(counts).expand(shape).reshape(-1)
        if (counts < 0).any():
            raise ValueError("pulse counts must be non-negative; pass negative updates as n_down")
        active = torch.nonzero(counts > 0).squeeze(1)
        remaining = counts[active]
        while active.numel() > 0:
            subset = flat_devices.map(lambda t: t[active])
            noise = None
            if devices.c2c > 0.0:
                noise = torch.randn(active.shape, generator=generator, dtype=state.dtype)
            direction = torch.full(active.shape, sign, dtype=state.dtype)
            flat_state[active] = subset.pulse(flat_state[active], direction, noise)
            remaining = remaining - 1
            keep = remaining > 0
            active, remaining = active[keep], remaining[keep]
    return state


def simulate_sequence(devices: DeviceArray, start: Tensor | float, directions: Sequence[int] | Tensor,
                      generator: torch.Generator | None = None) -> Tensor:
    """States after each pulse of a sequence of directions (+1 up, -1 down, 0 none) applied to every device.

    Returns a tensor of shape ``(len(directions) + 1, *devices.shape)`` whose first entry is the start state.
    """
    state = devices.clip(torch.as_tensor(start, dtype=devices.w_min.dtype).expand(devices.shape).clone())
    states = [state]
    for direction in torch.as_tensor(directions).tolist():
        noise = None
        if devices.c2c > 0.0:
            noise = torch.randn(devices.shape, generator=generator, dtype=state.dtype)
        state = devices.pulse(state, torch.full(devices.shape, float(direction), dtype=state.dtype), noise)
        states.append(state)
    return torch.stack(states)


# --------------------------------------------------------------------------------------------------------------
# Symmetry point


def _bisect_symmetry_point(devices: DeviceArray, iterations: int = 60) -> Tensor:
    """Root of ``dw_up - dw_down`` by bisection, keeping f(lo) > 0 >= f(hi); the bound rule of
    ``symmetry_point`` where there is no sign change. Exact for monotone f, a root otherwise."""
    lo, hi = devices.w_min.clone(), devices.w_max.clone()
    f_lo = devices.dw_up(lo) - devices.dw_down(lo)
    f_hi = devices.dw_up(hi) - devices.dw_down(hi)
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        positive = devices.dw_up(mid) - devices.dw_down(mid) > 0
        lo = torch.where(positive, mid, lo)
        hi = torch.where(positive, hi, mid)
    root = 0.5 * (lo + hi)
    root = torch.where(f_lo <= 0, devices.w_min, root)
    return torch.where((f_lo > 0) & (f_hi > 0), devices.w_max, root)


def _piecewise_symmetry_point(devices: DeviceArray, start: Tensor) -> Tensor:
    """Closed form per segment: both steps are linear between the shared nodes x_i, so where ``f = dw_up - dw_down``
    goes from > 0 to <= 0 on segment i, ``w* = x_i + q (x_{i+1} - x_i)`` with ``q = f_i / (f_i - f_{i+1})``.
    Of these stable roots it returns the one a device at ``start`` drifts to: the lowest at or above ``start`` where
    ``f(start) > 0``, else the highest at or below ``start``; without one, the bound it drifts to."""
    up = devices.scale_up.unsqueeze(-1) * devices.nodes_up
    down = devices.scale_down.unsqueeze(-1) * devices.nodes_down
    f = up - down
    n_segments = f.shape[-1] - 1
    crossing = (f[..., :-1] > 0) & (f[..., 1:] <= 0)
    f_i, f_next = f[..., :-1], f[..., 1:]
    q = f_i / torch.where(crossing, f_i - f_next, torch.ones_like(f_i))
    width = ((devices.w_max - devices.w_min) / n_segments).unsqueeze(-1)
    index = torch.arange(n_segments, dtype=width.dtype)
    roots = devices.w_min.unsqueeze(-1) + (index + q) * width
    drifts_up = (devices.dw_up(start) - devices.dw_down(start)) > 0
    above = crossing & (roots >= start.unsqueeze(-1))
    below = crossing & (roots <= start.unsqueeze(-1))
    lowest_above = torch.where(above, roots, torch.full_like(roots, math.inf)).amin(dim=-1)
    highest_below = torch.where(below, roots, torch.full_like(roots, -math.inf)).amax(dim=-1)
    up_root = torch.where(above.any(dim=-1), lowest_above, devices.w_max)
    down_root = torch.where(below.any(dim=-1), highest_below, devices.w_min)
    return torch.where(drifts_up, up_root, down_root)


def symmetry_point(devices: DeviceArray, start: Tensor | float = 0.0) -> Tensor:
    """Analytic symmetry point ``w*`` with ``dw_up(w*) = dw_down(w*)`` per device (any array shape).

    * soft bounds: closed form ``w* = (a_up - a_down) / (a_up/w_max - a_down/w_min)``;
    * piecewise: closed form per segment; where ``dw_up - dw_down`` has several stable roots (measured devices
      can), the one a device starting at ``start`` converges to under alternating pulses. The default, w = 0, is
      where training starts (the reference of symmetry-point shifting); ``start=devices.w_min`` is where the
      experimenter's protocol starts its alternating train, after its ``n`` down pulses;
    * power step: bisection (``dw_up - dw_down`` is monotone, so ``start`` does not matter).

    Devices without such a root are clamped to the bound their state drifts to under alternating pulses:
    ``w_max`` where the up step is the larger one, ``w_min`` where the down step is. The result always lies in
    ``[w_min, w_max]``.
    """
    if devices.kind == "softbounds":
        a_up, a_down = devices.scale_up, devices.scale_down
        root = (a_up - a_down) / (a_up / devices.w_max - a_down / devices.w_min)
        return devices.clip(root)
    if devices.kind == "piecewise":
        start = torch.as_tensor(start, dtype=devices.w_min.dtype).expand(devices.shape)
        return _piecewise_symmetry_point(devices, devices.clip(start))
    return _bisect_symmetry_point(devices)


def symmetry_point_protocol(
    devices: DeviceArray,
    n: int = 200,
    n_alternating: int = 4000,
    tail: int = 200,
    start: Tensor | float = 0.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The experimenter's symmetry point: from ``start``, ``n`` up pulses, ``n`` down pulses, then an alternating
    train (up, down, ...) of ``n_alternating`` pulses; returns the mean state over the last ``tail`` pulses."""
    if n < 0 or not 0 < tail <= n_alternating:
        raise ValueError(f"need n >= 0 and tail in 1..n_alternating ({n_alternating}); got n={n}, tail={tail}")
    state = devices.clip(torch.as_tensor(start, dtype=devices.w_min.dtype).expand(devices.shape).clone())
    ones = torch.ones(devices.shape, dtype=torch.long)
    state = apply_pulses(devices, state, n * ones, 0 * ones, generator)
    state = apply_pulses(devices, state, 0 * ones, n * ones, generator)
    total = torch.zeros_like(state)
    for k in range(n_alternating):
        noise = torch.randn(devices.shape, generator=generator, dtype=state.dtype) if devices.c2c > 0.0 else None
        direction = torch.full(devices.shape, 1.0 if k % 2 == 0 else -1.0, dtype=state.dtype)
        state = devices.pulse(state, direction, noise)
        if k >= n_alternating - tail:
            total += state
    return total / tail


SYMMETRY_POINT_METHODS: tuple[str, ...] = ("analytic", "protocol_from_zero", "analytic_from_bottom", "protocol",
                                           "paper_alternating")
"""How a symmetry point is found (``reference_point``): the analytic root reached from w = 0, the alternating
train started at w = 0, the analytic root reached from w_min, the experimenter's full protocol, and the short
alternating train of the paper's simulation code (``PAPER_ALTERNATING_PULSES``, ``PAPER_ALTERNATING_TAIL``)."""

PAPER_ALTERNATING_PULSES = 48
"""Pulses of the paper's SP-shifting train from w = 0 (up first). Its code (msc_project ``plot_symmetry_point(
n_steps=0, pre_alternating_pulses=0, alternating_pulses=50, w_init=0)``) requests 50 alternating updates
(+1, -1, ...) on aihwkit's default mixed-precision tile of one device (``build_config('mp')``, single-pulse
updates, noise-free, exact reads) and reads the weight after each. That tile pulses nothing on the first two
updates (update 0 only fills chi: no transfer at update index 0; update 1 returns chi to exactly 0) and one pulse
of the requested sign on every later update (``|chi| > 1 - granularity`` truncates to a non-zero count, sent as
a one-slot train with p = q = 1): 48 pulses, up first."""

PAPER_ALTERNATING_TAIL = 5
"""States averaged by the paper's reference: its last 5 read-outs (``np.mean(w_trace[-5:])``), the states after
pulses 44 to 48 of ``PAPER_ALTERNATING_PULSES`` (after a down, up, down, up and down pulse)."""


def reference_point(devices: DeviceArray, method: str = "analytic", n_alternating: int = 4000) -> Tensor:
    """Every device's symmetry point by ``method`` (one of ``SYMMETRY_POINT_METHODS``), from the noise-free model
    (the protocols run without cycle-to-cycle noise, so a reference is reproducible):

    * ``analytic``: ``symmetry_point(devices)``, the stable root reached from w = 0 (today's SP-shifting reference);
    * ``protocol_from_zero``: ``symmetry_point_protocol(n=0)``, an alternating train started at w = 0;
    * ``analytic_from_bottom``: ``symmetry_point(start=w_min)``, the stable root reached from w_min;
    * ``protocol``: ``symmetry_point_protocol()``, n up, n down, alternating (as the experimenter measures it);
    * ``paper_alternating``: the paper's SP-shifting reference, ``symmetry_point_protocol(n=0,
      n_alternating=PAPER_ALTERNATING_PULSES, tail=PAPER_ALTERNATING_TAIL)`` (``n_alternating`` does not apply):
      the mean of the states after the last 5 of 48 alternating pulses (up first) started at w = 0.

    Devices with identical parameters (no device-to-device spread) are computed once and broadcast.
    """
    if method not in SYMMETRY_POINT_METHODS:
        raise ValueError(f"unknown symmetry-point method {method!r}; expected one of {SYMMETRY_POINT_METHODS}")
    devices = replace(devices, c2c=0.0)
    per_device = [t for t in (devices.w_min, devices.w_max, devices.scale_up, devices.scale_down,
                              devices.gamma_up, devices.gamma_down) if t is not None]
    if devices.shape != () and all(bool((t == t.reshape(-1)[0]).all()) for t in per_device):
        first = devices.map(lambda t: t.reshape(-1)[0])
        return reference_point(first, method, n_alternating).expand(devices.shape).clone()
    if method == "analytic":
        return symmetry_point(devices)
    if method == "analytic_from_bottom":
        return symmetry_point(devices, start=devices.w_min)
    if method == "protocol_from_zero":
        return symmetry_point_protocol(devices, n=0, n_alternating=n_alternating)
    if method == "paper_alternating":
        return symmetry_point_protocol(devices, n=0, n_alternating=PAPER_ALTERNATING_PULSES,
                                       tail=PAPER_ALTERNATING_TAIL)
    return symmetry_point_protocol(devices, n_alternating=n_alternating)


def step_difference_roots(devices: DeviceArray, grid: int = 2001,
                          tolerance: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
    """Roots of ``f = dw_up - dw_down`` of one device (shape ``()``) inside its bounds: the stable ones (f goes from
    > 0 to <= 0 with rising w, where alternating pulses converge) and the unstable ones (<= 0 to > 0, where they
    diverge). Piecewise: exact, per segment between nodes x_i, ``w = x_i + q (x_{i+1} - x_i)`` with
    ``q = f_i / (f_i - f_{i+1})`` (both steps are linear there; a zero plateau counts once, at its start); other
    kinds: the same on ``grid`` evenly spread states. ``|f|`` up to ``tolerance dw_min`` counts as 0: a drift below
    one step in 1/tolerance pulses traps a device as a root does (e.g. both steps held at the node floor)."""
    if devices.shape != ():
        raise ValueError(f"step_difference_roots needs one device (shape ()), got shape {tuple(devices.shape)}")
    if devices.kind == "piecewise":
        f = (float(devices.scale_up) * devices.nodes_up
             - float(devices.scale_down) * devices.nodes_down).double().numpy()
        x = np.linspace(float(devices.w_min), float(devices.w_max), f.size)
    else:
        x = np.linspace(float(devices.w_min), float(devices.w_max), grid)
        states = torch.as_tensor(x, dtype=torch.float64)
        f = (devices.dw_up(states) - devices.dw_down(states)).numpy()
    f = np.where(np.abs(f) <= tolerance * devices.dw_min, 0.0, f)
    stable, unstable = [], []
    for i in range(f.size - 1):
        falls, rises = f[i] > 0 >= f[i + 1], f[i] <= 0 < f[i + 1]
        if falls or rises:
            root = x[i] + f[i] / (f[i] - f[i + 1]) * (x[i + 1] - x[i])
            (stable if falls else unstable).append(root)
    return np.array(stable), np.array(unstable)


def node_support(values: Sequence[float], floor: float, saturating: str) -> tuple[int, int]:
    """First and last index of the nodes of one direction that a fit took from its polynomial inside the measured
    states: it skips the saturating zero node (``saturating`` "last" for up, "first" for down), nodes held at the
    ``floor`` and the runs of equal values at either end (the polynomial held constant beyond the measured
    states), so the span is exact to one node spacing. (-1, -1) when no node is left."""
    values = np.asarray(values, dtype=float)
    indices = np.arange(values.size)
    keep = np.ones(values.size, dtype=bool)
    keep[-1 if saturating == "last" else 0] = False
    keep &= values != floor
    inner = indices[keep]
    if inner.size == 0:
        return -1, -1
    low, high = int(inner[0]), int(inner[-1])
    while low < high and values[low] == values[low + 1]:
        low += 1
    while high > low and values[high] == values[high - 1]:
        high -= 1
    return low, high


def mean_step(devices: DeviceArray, at: float) -> float:
    """``m(w) = (dw_up(w) + dw_down(w)) / 2`` of one device (shape ``()``) at ``at``."""
    point = torch.tensor(float(at), dtype=torch.float64)
    return 0.5 * float(devices.dw_up(point) + devices.dw_down(point))


def restoring_slope(devices: DeviceArray, at: float, h: float = 1e-4) -> float:
    """``d(dw_up - dw_down)/dw`` at ``at`` by a central difference of width ``2 h`` (one device, shape ``()``).

    Near a stable root w*, zero-mean random pulses drift the state by ``E[dw] = f(w)/2 ~ f'(w*) (w - w*)/2`` per
    pulse: ``-f'(w*)/2`` is the fraction of its offset from w* a device loses per pulse (SP shifting's implicit
    decay toward w_eff = 0)."""
    point = torch.tensor([at - h, at + h], dtype=torch.float64)
    f = devices.dw_up(point) - devices.dw_down(point)
    return float((f[1] - f[0]) / (2 * h))


def random_pulse_walk(devices: DeviceArray, start: float, bias: float, n_pulses: int, n_copies: int,
                      generator: torch.Generator | None = None) -> Tensor:
    """States of ``n_copies`` independent copies of one device (shape ``()``) under random pulses, each up with
    probability ``1/2 + bias`` and down otherwise (c2c noise as the device has it), from ``start``; shape
    ``(n_pulses + 1, n_copies)``. The mean drift per pulse is ``E[dw] = f(w)/2 + 2 bias m(w)``, ``f = dw_up - dw_down``,
    ``m = (dw_up + dw_down)/2``: zero-mean pulses (bias 0) pull a device to its symmetry point, and a bias holds it
    where ``f(w) = -4 bias m(w)``."""
    if devices.shape != ():
        raise ValueError(f"random_pulse_walk needs one device (shape ()), got shape {tuple(devices.shape)}")
    if not -0.5 <= bias <= 0.5 or n_pulses < 0 or n_copies < 1:
        raise ValueError(f"need bias in [-0.5, 0.5], n_pulses >= 0, n_copies >= 1; got {bias}, {n_pulses}, {n_copies}")
    copies = devices.map(lambda t: t.expand(n_copies))
    state = copies.clip(torch.full((n_copies,), float(start), dtype=devices.w_min.dtype))
    states = [state]
    for _ in range(n_pulses):
        up = torch.rand(n_copies, generator=generator, dtype=state.dtype) < 0.5 + bias
        noise = torch.randn(n_copies, generator=generator, dtype=state.dtype) if devices.c2c > 0.0 else None
        state = copies.pulse(state, torch.where(up, 1.0, -1.0).to(state.dtype), noise)
        states.append(state)
    return torch.stack(states)


# --------------------------------------------------------------------------------------------------------------
# Fitted devices: a model configuration with the provenance of the measurement it came from


MEASURED_TRACE_VARIABLES: tuple[str, ...] = ("G", "w_measured", "outlier")
"""Trace variables that hold measured values; not written to fitted-device files."""


@dataclass
class FittedDevice:
    """A device model fitted to one measured (or synthetic) pulse-response ramp, with its provenance."""

    config: DeviceConfig
    """The fitted model configuration (weights normalised as ``w = 2 (G - g_mean)/(g_max - g_min)``)."""
    device_id: str
    """Measured device, e.g. ``ID170ZR5000``."""
    pulse_width_s: float
    """Programming pulse width (s)."""
    data_kind: str = "measured"
    """``measured`` (fitted to a measurement) or ``synthetic`` (fitted to a physics-model ramp)."""
    source_file: str = ""
    """Measurement file the fit used, relative to its measurement root ``source_root`` (never an absolute path),
    or the synthetic model's description."""
    source_sha256: str = ""
    """SHA-256 of the measurement file (empty for synthetic)."""
    source_root: str = ""
    """Label of the measurement root that ``source_file`` is relative to (e.g. ``LBE247``; empty for synthetic)."""
    fit_method: str = ""
    """How the parameters were found (recipe and optimiser)."""
    r2_up: float = float("nan")
    """R^2 of the simulated against the measured state over the up (potentiation) ramp."""
    r2_down: float = float("nan")
    """R^2 of the simulated against the measured state over the down (depression) ramp."""
    residual_std_up: float = float("nan")
    """Scatter of measured up steps around the model step at the measured state, in units of dw_min."""
    residual_std_down: float = float("nan")
    """Scatter of measured down steps around the model step, in units of dw_min."""
    c2c: float = float("nan")
    """Cycle-to-cycle estimate: rms step residual / rms model step, both directions pooled (an upper bound:
    it also holds the systematic misfit)."""
    amplitude_range_up: tuple[float, float] = (float("nan"), float("nan"))
    """First and last amplitude (V) of the potentiation ramp (negative pulses)."""
    amplitude_range_down: tuple[float, float] = (float("nan"), float("nan"))
    """First and last amplitude (V) of the depression ramp (positive pulses)."""
    area_m2: float = float("nan")
    """Device area (m^2)."""
    g_min: float = float("nan")
    """Smallest conductance (S) of the inlier reads, used for normalisation."""
    g_max: float = float("nan")
    """Largest conductance (S) of the inlier reads."""
    g_mean: float = float("nan")
    """Mean conductance (S) of the inlier reads (maps to w = 0)."""
    n_up: int = 0
    """Inlier reads on the up ramp."""
    n_down: int = 0
    """Inlier reads on the down ramp."""
    n_outliers: int = 0
    """Reads flagged as outliers and excluded from the fit."""
    trace: xr.Dataset | None = field(default=None, repr=False)
    """Per pulse: amplitude, polarity, measured ``G``, ``outlier``, ``w_measured`` and the simulated ``w_model``
    (for overlays; files keep only the non-measured ones)."""

    __repr__ = provenance.compact_repr

    @property
    def model(self) -> str:
        return self.config.kind

    def devices(self, shape: Sequence[int] = (), noise: DeviceNoise | None = None,
                generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32) -> DeviceArray:
        """Sample an array of these devices (see ``PiecewiseStep.sample``), provenance in ``meta``."""
        array = self.config.sample(shape, noise, generator, dtype)
        array.meta.update(device_id=self.device_id, pulse_width_s=self.pulse_width_s, data_kind=self.data_kind,
                          source_file=self.source_file, fit_method=self.fit_method)
        return array

    @property
    def steps_at_zero(self) -> tuple[float, float]:
        """Mean up and down step at w = 0 (weight units)."""
        nominal = self.config.devices()
        zero = torch.zeros((), dtype=torch.float64)
        return float(nominal.dw_up(zero)), float(nominal.dw_down(zero))

    @property
    def n_states(self) -> float:
        """Number of states ``(w_max - w_min) / min(step_up(0), step_down(0))``."""
        return (self.config.w_max - self.config.w_min) / min(self.steps_at_zero)

    @property
    def symmetry_point(self) -> float:
        """Analytic symmetry point of the nominal device, reached from w = 0 (what SP shifting programs)."""
        return float(symmetry_point(self.config.devices()))

    def symmetry_points(self, n_alternating: int = 4000) -> dict[str, float]:
        """The nominal device's symmetry point from two starts, each analytic and by the simulated protocol.

        ``analytic`` / ``protocol_from_zero``: the root reached from w = 0 and an alternating train started at
        w = 0 (where training starts; what SP shifting programs). ``analytic_from_bottom`` / ``protocol``: the root
        reached from w_min and the experimenter's full protocol (n up, n down, alternating train). Each pair agrees
        within about one step, except where the discrete steps trap the protocol next to a bound (the down step
        rising from zero at w_min by more than the up step within one step) or carry it across a narrow root.
        ``paper_alternating``: the paper's SP-shifting reference (48 alternating pulses from w = 0, mean of the
        last 5 states), still carrying the start's transient where the steps are small.
        """
        devices = self.config.devices()
        return {method: float(reference_point(devices, method, n_alternating)) for method in SYMMETRY_POINT_METHODS}

    def stable_roots(self) -> np.ndarray:
        """The stable roots of ``dw_up - dw_down`` of the nominal device (``step_difference_roots``); more than one
        means the symmetry point depends on where a device starts (a spurious root)."""
        return step_difference_roots(self.config.devices())[0]

    def measured_states(self, floor: float = 0.05) -> tuple[float, float]:
        """The state interval where both directions' steps come from the fitted polynomial inside the measured
        states (``node_support``); beyond it the model runs on the node ``floor`` (``fitting.NODE_FLOOR``) or on
        the polynomial held constant. Piecewise only; NaN where no node of a direction is measured."""
        if not isinstance(self.config, PiecewiseStep):
            raise ValueError(f"measured_states needs a piecewise model, got {self.model!r}")
        config = self.config
        positions = np.linspace(config.w_min, config.w_max, len(config.piecewise_up))
        up = node_support(config.piecewise_up, floor, "last")
        down = node_support(config.piecewise_down, floor, "first")
        if min(up + down) < 0:
            return float("nan"), float("nan")
        return float(positions[max(up[0], down[0])]), float(positions[min(up[1], down[1])])

    def summary(self, n_alternating: int = 4000) -> dict[str, Any]:
        """The reported facts of one fit (``ferrolib device fit`` and notebook 02): model, steps at w = 0, bounds,
        symmetry points (``symmetry_points``), R^2, number of states, c2c, outliers and the source."""
        step_up, step_down = self.steps_at_zero
        return {
            "device_id": self.device_id,
            "pulse_width_s": self.pulse_width_s,
            "model": self.model,
            "data_kind": self.data_kind,
            "dw_min": self.config.dw_min,
            "step_up_at_0": step_up,
            "step_down_at_0": step_down,
            "w_min": self.config.w_min,
            "w_max": self.config.w_max,
            **{f"sp_{name}": value for name, value in self.symmetry_points(n_alternating).items()},
            **self._model_checks(),
            "r2_up": self.r2_up,
            "r2_down": self.r2_down,
            "n_states": self.n_states,
            "c2c": self.c2c,
            "n_outliers": self.n_outliers,
            "source_root": self.source_root,
            "source_file": self.source_file,
        }

    def _model_checks(self) -> dict[str, Any]:
        """``n_stable_roots`` (flag: > 1) and the measured-state interval of a piecewise fit (NaN for the others)."""
        low, high = self.measured_states() if isinstance(self.config, PiecewiseStep) else (float("nan"),) * 2
        return {"n_stable_roots": int(self.stable_roots().size), "measured_low": low, "measured_high": high}

    def label(self) -> str:
        """Legend text: device, pulse width, model, and 'synthetic' where it is."""
        text = f"{self.device_id} {format_pulse_width(self.pulse_width_s)} {self.model}"
        return text + (" (synthetic)" if self.data_kind != "measured" else "")

    def to_dataset(self, include_measured: bool = False) -> xr.Dataset:
        """A self-describing Dataset: node vectors and trace as variables, everything else in attributes.

        Measured values (``MEASURED_TRACE_VARIABLES``) are left out unless ``include_measured``: the measurements
        stay in their own folder, identified by ``source_file`` and ``source_sha256``.
        """
        data: dict[str, Any] = {}
        if isinstance(self.config, PiecewiseStep):
            data["piecewise_up"] = (("node",), np.asarray(self.config.piecewise_up))
            data["piecewise_down"] = (("node",), np.asarray(self.config.piecewise_down))
        dataset = xr.Dataset(data)
        if self.trace is not None:
            drop = () if include_measured else MEASURED_TRACE_VARIABLES
            dataset = dataset.merge(self.trace.drop_vars([v for v in drop if v in self.trace]))
        scalars = {f.name: getattr(self, f.name) for f in _fitted_fields() if f.name not in ("config", "trace")}
        config = {k: v for k, v in provenance.config_dict(self.config).items() if not k.startswith("piecewise")}
        dataset.attrs = provenance.provenance_attrs(
            self.config, model=self.model, model_parameters=config, n_states=self.n_states,
            steps_at_zero=list(self.steps_at_zero), symmetry_point=self.symmetry_point,
            **scalars,
        )
        return dataset

    def save(self, path: Path | str) -> Path:
        """Write atomically to netCDF (``provenance.write_netcdf``), without the measured values."""
        return provenance.write_netcdf(self.to_dataset(), path)

    @classmethod
    def from_dataset(cls, dataset: xr.Dataset, origin: str = "dataset") -> "FittedDevice":
        """Inverse of ``to_dataset``; raises ValueError naming ``origin`` if it is not such a Dataset."""
        attrs = dataset.attrs
        try:
            kind = attrs["model"]
            parameters = json.loads(attrs["model_parameters"])
            if kind == "piecewise":
                parameters["piecewise_up"] = tuple(dataset["piecewise_up"].values.tolist())
                parameters["piecewise_down"] = tuple(dataset["piecewise_down"].values.tolist())
            config = CONFIG_CLASSES[kind](**parameters)
            values: dict[str, Any] = {}
            for f in _fitted_fields():
                if f.name in ("config", "trace") or f.name not in attrs:
                    continue
                raw = attrs[f.name]
                value = raw if f.type == "str" or not isinstance(raw, str) else json.loads(raw)
                values[f.name] = tuple(value) if isinstance(value, list) else value
        except (KeyError, ValueError, TypeError) as error:
            raise ValueError(f"{origin}: not a ferrolib fitted-device file ({error!r})") from error
        trace_vars = [name for name in dataset.data_vars if "pulse" in dataset[name].dims]
        trace = dataset[trace_vars] if trace_vars else None
        if trace is not None:
            trace.attrs = {}
        return cls(config=config, trace=trace, **values)

    @classmethod
    def load(cls, path: Path | str) -> "FittedDevice":
        """Read a file written by ``save``."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such fitted-device file")
        return cls.from_dataset(provenance.read_netcdf(path), origin=str(path))


def _fitted_fields() -> tuple[dataclasses.Field, ...]:
    return dataclasses.fields(FittedDevice)


def scale_asymmetry(device: FittedDevice, factor: float) -> FittedDevice:
    """``device`` with the difference of its up and down steps scaled by ``factor`` around their mean, at every node:
    ``up' = m + factor h``, ``down' = m - factor h`` with ``m = (up + down)/2``, ``h = (up - down)/2`` (absolute
    steps). The mean step, the bounds and the roots of ``dw_up - dw_down`` (so the symmetry points) are unchanged;
    the restoring slope ``f'(w*)`` scales by ``factor``. ``factor = 1`` returns ``device`` itself."""
    if not (math.isfinite(factor) and factor >= 0.0):
        raise ValueError(f"asymmetry scale must be a finite number >= 0, got {factor!r}")
    if factor == 1.0:
        return device
    config = device.config
    if not isinstance(config, PiecewiseStep):
        raise ValueError(f"asymmetry scaling needs a piecewise device model, got {config.kind!r}")
    scale_up, scale_down = (float(v) for v in _scales(config.dw_min, config.up_down))
    up, down = scale_up * np.asarray(config.piecewise_up), scale_down * np.asarray(config.piecewise_down)
    mean, half = 0.5 * (up + down), 0.5 * (up - down)
    scaled = replace(config, piecewise_up=tuple((mean + factor * half) / scale_up),
                     piecewise_down=tuple((mean - factor * half) / scale_down))
    return replace(device, config=scaled, fit_method=f"{device.fit_method}; step asymmetry scaled by {factor:g}")


# --------------------------------------------------------------------------------------------------------------
# aihwkit interchange


def to_aihwkit(device: FittedDevice | PiecewiseStep) -> dict[str, Any]:
    """aihwkit ``PiecewiseStepDevice`` parameters (aihwkit's ``up_down``: the larger step is ``dw_min``).

    ``dw_min_aihwkit = dw_min (1 + |u|)``, ``up_down_aihwkit = u / (1 + |u|)`` with ferrolib's ``u``.
    aihwkit's pulsed updates divide by the device's weight granularity ``dw_min_aihwkit piecewise_up[N // 2]``
    (``calcWeightGranularity``, src/rpucuda/rpu_piecewisestep_device.h), not by ``dw_min_aihwkit``: a probe that
    wants one pulse per update must use that as its learning rate (``training.pulsed.aihwkit_granularity``).
    A zero middle up node would make that granularity zero, which aihwkit cannot pulse: refused here.
    """
    config = device.config if isinstance(device, FittedDevice) else device
    if not isinstance(config, PiecewiseStep):
        raise ValueError(f"only piecewise devices export to aihwkit's PiecewiseStepDevice, got {config.kind!r}")
    middle = len(config.piecewise_up) // 2
    if not config.piecewise_up[middle] > 0:
        raise ValueError(f"piecewise_up[{middle}] is {config.piecewise_up[middle]}: aihwkit's weight granularity "
                         "(dw_min times the middle up node) would be zero and its pulsed updates undefined")
    magnitude = abs(config.up_down)
    return {
        "dw_min": config.dw_min * (1.0 + magnitude),
        "up_down": config.up_down / (1.0 + magnitude),
        "w_min": config.w_min,
        "w_max": config.w_max,
        "piecewise_up": list(config.piecewise_up),
        "piecewise_down": list(config.piecewise_down),
    }


def from_aihwkit(parameters: dict[str, Any]) -> PiecewiseStep:
    """Inverse of ``to_aihwkit``: aihwkit scales ``up = dw_min (1 + min(u_a, 0))``, ``down = dw_min (1 - max(u_a, 0))``."""
    up_down = float(parameters.get("up_down", 0.0))
    if not -1.0 < up_down < 1.0:
        raise ValueError(f"aihwkit up_down must lie in (-1, 1), got {up_down}")
    magnitude = abs(up_down)
    return PiecewiseStep(
        dw_min=float(parameters["dw_min"]) * (1.0 - magnitude),
        up_down=up_down / (1.0 - magnitude),
        w_min=float(parameters.get("w_min", -1.0)),
        w_max=float(parameters.get("w_max", 1.0)),
        piecewise_up=tuple(parameters["piecewise_up"]),
        piecewise_down=tuple(parameters["piecewise_down"]),
    )

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
  ``aihwkit_export.to_aihwkit`` / ``from_aihwkit`` convert explicitly (``dw_min_aihwkit = dw_min (1 + |u|)``,
  ``up_down_aihwkit = u / (1 + |u|)``).
* Piecewise node vectors are relative to ``dw_min`` and spread evenly over each device's own
  ``[w_min, w_max]``; fitted ones are zero at the bound each direction saturates at.

This module holds the models, their configurations and pulsing. Symmetry points are in ``ferrolib.symmetry``,
fitted devices and their files in ``ferrolib.fitted``, the aihwkit conversion in ``ferrolib.aihwkit_export``; their
public names stay importable from here (``MOVED_NAMES``).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal, Sequence

import torch
import xarray as xr
from torch import Tensor

from . import moved, provenance
from .kernels import MODEL_KINDS as KERNEL_KINDS

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
# Names that live in the modules built on this one, importable from here as before


MOVED_NAMES: dict[str, str] = {
    **dict.fromkeys(("symmetry_point", "symmetry_point_protocol", "SYMMETRY_POINT_METHODS", "PAPER_ALTERNATING_PULSES",
                     "PAPER_ALTERNATING_TAIL", "reference_point", "step_difference_roots", "node_support",
                     "mean_step", "restoring_slope", "random_pulse_walk"), "symmetry"),
    **dict.fromkeys(("FittedDevice", "MEASURED_TRACE_VARIABLES", "scale_asymmetry"), "fitted"),
    **dict.fromkeys(("to_aihwkit", "from_aihwkit"), "aihwkit_export"),
}
"""Public name -> the ``ferrolib`` module that defines it (``from ferrolib.devices import FittedDevice`` still works)."""


__getattr__ = moved.forwarder(__name__, MOVED_NAMES)

"""Device models: the mean step up and down as functions of the state, with per-device parameters.

Conventions (SCIENCE.md section 3, aihwkit semantics):

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
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

import torch
from torch import Tensor

ModelKind = Literal["piecewise", "softbounds", "powstep"]
MODEL_KINDS: tuple[str, ...] = ("piecewise", "softbounds", "powstep")


@dataclass
class DeviceArray:
    """An array of devices (any shape) with their sampled per-device parameters as named tensors.

    All per-device tensors have the array's shape; node vectors are shared by all devices.
    """

    kind: str
    """Model kind: one of ``MODEL_KINDS``."""
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
    meta: dict = field(default_factory=dict, repr=False)
    """Provenance (source device id, pulse width, measurement file, fit method, ...)."""

    def __post_init__(self) -> None:
        if self.kind not in MODEL_KINDS:
            raise ValueError(f"unknown device model kind {self.kind!r}; expected one of {MODEL_KINDS}")
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

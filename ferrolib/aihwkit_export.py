"""aihwkit interchange: ferrolib's piecewise device as aihwkit ``PiecewiseStepDevice`` parameters and back, and the
weight granularity aihwkit's pulsed updates divide by.

The two differ in their ``up_down`` convention (``ferrolib.devices``'s module docstring): ferrolib keeps the smaller
step at ``dw_min``, aihwkit the larger one.
"""
from __future__ import annotations

from typing import Any

import torch

from .devices import DeviceArray, PiecewiseStep
from .fitted import FittedDevice


def to_aihwkit(device: FittedDevice | PiecewiseStep) -> dict[str, Any]:
    """aihwkit ``PiecewiseStepDevice`` parameters (aihwkit's ``up_down``: the larger step is ``dw_min``).

    ``dw_min_aihwkit = dw_min (1 + |u|)``, ``up_down_aihwkit = u / (1 + |u|)`` with ferrolib's ``u``.
    aihwkit's pulsed updates divide by the device's weight granularity ``dw_min_aihwkit piecewise_up[N // 2]``
    (``calcWeightGranularity``, src/rpucuda/rpu_piecewisestep_device.h), not by ``dw_min_aihwkit``: a probe that
    wants one pulse per update must use that as its learning rate (``aihwkit_granularity``).
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


def aihwkit_granularity(devices: DeviceArray) -> float:
    """The weight granularity aihwkit's pulsed updater divides by (its ``dw_min`` in ``k = lr |x| |d| / dw_min``).

    aihwkit keeps the larger step scale as its ``dw_min``; a piecewise device multiplies it by the up node at
    index ``N // 2`` (``calcWeightGranularity`` of ``PiecewiseStepRPUDeviceMetaParameter``,
    src/rpucuda/rpu_piecewisestep_device.h): ``g = max(scale_up, scale_down) nodes_up[N // 2]``, averaged over
    the devices (exact without device-to-device spread, where aihwkit takes the nominal value).
    """
    larger = torch.maximum(devices.scale_up, devices.scale_down).to(torch.float64).mean()
    if devices.kind == "piecewise":
        larger = larger * devices.nodes_up[devices.nodes_up.numel() // 2].to(torch.float64)
    granularity = float(larger)
    if not granularity > 0:
        raise ValueError(f"aihwkit granularity of this {devices.kind} device is {granularity}: it cannot be pulsed")
    return granularity

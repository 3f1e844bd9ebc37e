"""Symmetry points of device models: where the mean up and down steps are equal (``dw_up(w*) = dw_down(w*)``).

Analytic roots (closed forms per model kind), the experimenter's alternating-pulse protocol and the paper's short
alternating train (``reference_point``, ``SYMMETRY_POINT_METHODS``), every root of ``f = dw_up - dw_down`` with its
stability, and the local facts of the drift toward a root: the mean step, the restoring slope ``f'(w*)`` and random
pulse walks. docs/science.md, "Device models", defines the models.
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from .devices import DeviceArray, apply_pulses


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

"""Sweeps: a grid of training runs (devices x pulse widths x algorithms x seeds [x learning rates]) from one
base configuration, run in parallel (local processes or a dask.distributed cluster), cached per run, combined
into one xarray Dataset with the energy ledger of every run (its claims and metrics: ``ferrolib.analysis``).

Every run is stored as ``provenance.run_path`` (``<results_dir>/runs/<config_hash>.nc``), the key training uses too, so a
sweep reuses runs from notebooks and other sweeps, and an interrupted sweep runs only what is missing. A cached run
is reused only when its full run key (device model, data, numerics; ``ferrolib.training.keys``) still matches.
Every key of a sweep file and every grid point is validated before the first run starts.
"""
from __future__ import annotations

import contextlib
import dataclasses
import difflib
import itertools
import math
import multiprocessing
import os
import signal
import sys
import threading
import time
import tomllib
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import xarray as xr
import yaml
from tqdm.auto import tqdm

from . import energy, measurements, paths, provenance, validation
from .threads import available_cores, default_threads, set_threads

RunFunction = Callable[..., xr.Dataset]
"""``run(config, results_dir=..., progress=False) -> xr.Dataset``, e.g. ``ferrolib.training.train``."""

GRID_FIELDS: dict[str, str] = {
    "device": "device_id",
    "pulse_width": "pulse_width",
    "algorithm": "algorithm",
    "seed": "seed",
    "learning_rate": "lr",
}
"""Sweep dimension -> TrainConfig field it sets."""

LEDGER_VARIABLES: tuple[str, ...] = (
    "energy_per_pulse", "energy_per_pulse_estimates", "energy_read_per_device", "energy_per_digital_op",
    "energy_program", "energy_term", "energy_epoch", "energy_cumulative", "energy_cumulative_term",
    "programming_energy_cumulative",
)
"""Ledger variables merged into every run of a combined sweep."""


@dataclass
class Sweep:
    """A grid of training runs around one base configuration; empty axes keep the base's value."""

    base: Any
    """Base TrainConfig (any dataclass with the fields of ``GRID_FIELDS``)."""
    devices: list[str] = field(default_factory=list)
    """Device ids (dimension ``device``); empty: the base's ``device_id``."""
    pulse_widths: list[float] = field(default_factory=list)
    """Pulse widths in seconds (dimension ``pulse_width``); empty: the base's."""
    algorithms: list[str] = field(default_factory=list)
    """Training algorithms (dimension ``algorithm``); empty: the base's."""
    seeds: list[int] = field(default_factory=list)
    """Seeds (dimension ``seed``); empty: the base's."""
    learning_rates: list[float] = field(default_factory=list)
    """Learning rates swept as dimension ``learning_rate``; empty: no such dimension (see ``lr_by_algorithm``)."""
    lr_by_algorithm: dict[str, float] = field(default_factory=dict)
    """Learning rate per algorithm when ``learning_rates`` is empty; other algorithms take the config's own
    default for their algorithm (TrainConfig resolves ``lr=None``: 0.5 mp/fp, 0.1 sgd/sps) or the base's lr."""
    name: str = "sweep"
    """Name of the sweep (file names, titles)."""

    __repr__ = provenance.compact_repr

    def __post_init__(self) -> None:
        if not dataclasses.is_dataclass(self.base):
            raise ValueError(f"Sweep.base must be a TrainConfig-like dataclass, got {type(self.base).__name__}")
        names = {f.name for f in dataclasses.fields(self.base)}
        missing = [f for f in GRID_FIELDS.values() if f not in names]
        if missing:
            raise ValueError(f"Sweep.base ({type(self.base).__name__}) lacks the field(s) {missing}")
        if self.learning_rates and self.lr_by_algorithm:
            raise ValueError("give either learning_rates (a dimension) or lr_by_algorithm, not both")
        validation.check_name(self.name, "sweep name")
        for device in self.devices:
            validation.check_name(device, "sweep device")
        for dim, values in self.axes().items():
            if len(set(values)) != len(values):
                raise ValueError(f"sweep axis {dim!r} has repeated values: {values}")
        validation.check_distinct_widths(self.axes()["pulse_width"])

    def axes(self) -> dict[str, list]:
        """Dimension -> values, in grid order (``learning_rate`` only when swept)."""
        axes = {
            "device": list(self.devices) or [self.base.device_id],
            "pulse_width": [float(w) for w in self.pulse_widths] or [float(self.base.pulse_width)],
            "algorithm": list(self.algorithms) or [self.base.algorithm],
            "seed": [int(s) for s in self.seeds] or [int(self.base.seed)],
        }
        if self.learning_rates:
            axes["learning_rate"] = [float(lr) for lr in self.learning_rates]
        return axes

    def points(self) -> Iterator[tuple[tuple, Any]]:
        """``(grid key, TrainConfig)`` for every run of the grid."""
        axes = self.axes()
        for key in itertools.product(*axes.values()):
            changes = {GRID_FIELDS[dim]: value for dim, value in zip(axes, key)}
            if "learning_rate" not in axes:
                changes["lr"] = self.lr_by_algorithm.get(changes["algorithm"], self._default_lr())
            yield key, dataclasses.replace(self.base, **changes)

    def _default_lr(self) -> float | None:
        """None where the config resolves ``lr=None`` per algorithm (TrainConfig), else the base's lr."""
        lr_field = next(f for f in dataclasses.fields(self.base) if f.name == "lr")
        return None if lr_field.default is None else self.base.lr

    def __len__(self) -> int:
        return math.prod(len(v) for v in self.axes().values())


# ----------------------------------------------------------------------------------------------- caching
KeyFunction = Callable[[Any], dict]
"""``key_of(config) -> run key`` (e.g. ``ferrolib.training.keys.expected_key``): validates a configuration
(ValueError if invalid) and returns everything that determines its numbers, checked against cached runs."""


def load_cached(config: Any, results_dir: Path, key: dict | None = None) -> xr.Dataset | None:
    """The finished run of ``config`` if it is on disk, complete (all epochs), of its config hash and (when
    ``key`` is given) of that run key; a stale, incomplete or unreadable file is moved aside and None returned."""
    return provenance.load_checked_netcdf(provenance.run_path(config, results_dir), key,
                                          provenance.config_hash(config), getattr(config, "epochs", None))


def default_key_function(run: RunFunction | None) -> KeyFunction | None:
    """The run key function of the default run function (``ferrolib.training.train``); None for others."""
    if run is not None:
        return None
    from .training.keys import expected_key

    return expected_key


def plan(sweep: Sweep, results_dir: Path, key_of: KeyFunction | None) -> list[tuple[tuple, Any, dict | None, str]]:
    """``(grid key, config, run key, status)`` of every point, changing nothing: status ``cached``, ``to run``,
    ``stale: why`` (recomputed) or ``invalid: why`` (the configuration is rejected before any run)."""
    rows = []
    for point, config in sweep.points():
        try:
            key = key_of(config) if key_of else None
        except ValueError as error:
            rows.append((point, config, None, f"invalid: {error}"))
            continue
        cached, reason = provenance.check_cached_netcdf(provenance.run_path(config, results_dir), key,
                                                        provenance.config_hash(config),
                                                        getattr(config, "epochs", None))
        status = "cached" if cached is not None else f"stale: {reason}" if reason else "to run"
        rows.append((point, config, key, status))
    return rows


def point_label(sweep: Sweep, point: tuple) -> str:
    """``device=..., pulse_width=..., ...`` of a grid point."""
    return ", ".join(f"{dim}={value}" for dim, value in zip(sweep.axes(), point))


def _execute(run: RunFunction | None, config: Any, results_dir: str, torch_threads: int | None) -> xr.Dataset:
    """Run one configuration (in a worker process or dask worker) and return its result in memory;
    ``torch_threads`` (torch and numba) None leaves the calling process's thread setting alone."""
    if torch_threads is not None:
        set_threads(torch_threads)
    if run is None:
        from .training import train as run
    return run(config, results_dir=results_dir, progress=False).load()


def _store(result: xr.Dataset, config: Any, results_dir: Path) -> xr.Dataset:
    """Check a fresh result against its configuration and cache it if the run function did not."""
    expected = provenance.config_hash(config)
    if result.attrs.get("config_hash") != expected:
        raise RuntimeError(f"run function returned config_hash {result.attrs.get('config_hash')!r} "
                           f"for a configuration hashing to {expected!r}")
    path = provenance.run_path(config, results_dir)
    if not path.exists():
        provenance.write_netcdf(result, path)
    return result


# ------------------------------------------------------------------------------------------------ running
def run_sweep(
    sweep: Sweep,
    results_dir: str | Path | None = None,
    run: RunFunction | None = None,
    n_workers: int | None = None,
    scheduler: str | Any | None = None,
    energy_model: energy.EnergyModel | None = None,
    progress: bool = True,
    key_of: KeyFunction | None = None,
) -> xr.Dataset:
    """Run every missing point of ``sweep`` and return the combined Dataset (with ledgers).

    Every grid point is validated first (``key_of``; default: ``training.keys.expected_key`` when ``run`` is the
    default): one invalid point fails the sweep with one line listing them before any run starts. Cached runs
    are reused only when their run key matches (stale ones are moved aside and recomputed).
    ``run`` defaults to ``ferrolib.training.train``; it must be a module-level function for process pools.
    ``n_workers`` local processes (spawn; default: the cores available; 1 runs in this process); threads per
    worker = ``FERROLIB_THREADS // workers`` if that is set, else 1. ``scheduler``: a dask.distributed scheduler
    address or ``Client`` instead (an address unreachable within ``SCHEDULER_TIMEOUT_S``: one ValueError line).
    ``energy_model`` None uses ``EnergyModel()``; a device without a known area is rejected before any run
    (``check_device_areas``). Local workers end with this process (killed or interrupted: ``_worker_init``,
    ``_stop_workers``); what killed runs left (locks of dead owners, temporary files) is removed on start.
    """
    results_dir = provenance.check_writable_dir(Path(results_dir) if results_dir else paths.RESULTS,
                                                "results directory")
    for folder in ("runs", "sweeps"):  # what killed sweeps left: locks of dead owners, half-written files
        provenance.clean_folder(results_dir / folder)
    client = connect(scheduler) if isinstance(scheduler, str) else None  # unreachable: one line before any work
    try:
        rows = plan(sweep, results_dir, key_of or default_key_function(run))
        invalid = [f"{point_label(sweep, point)}: {status.removeprefix('invalid: ')}"
                   for point, _, _, status in rows if status.startswith("invalid")]
        if invalid:
            raise ValueError(f"sweep {sweep.name!r}: {len(invalid)} of {len(rows)} grid points are invalid, nothing "
                             f"was run: {'; '.join(invalid)}")
        check_device_areas(sweep)
        results: dict[tuple, xr.Dataset] = {}
        pending = []
        for key, config, run_key, _ in rows:
            cached = load_cached(config, results_dir, run_key)
            if cached is None:
                pending.append((key, config))
            else:
                results[key] = cached
        bar = tqdm(total=len(rows), initial=len(results), desc=f"sweep {sweep.name}", unit="run", disable=not progress)
        try:
            for key, config, result in _dispatch(pending, run, results_dir, n_workers, client or scheduler):
                results[key] = _store(result, config, results_dir)
                bar.update()
        finally:
            bar.close()
        return combine(sweep, results, energy_model or energy.EnergyModel())
    finally:
        if client is not None:
            client.close()


SCHEDULER_TIMEOUT_S = 10.0
"""How long (s) ``connect`` tries to reach a dask scheduler before it gives up with one line."""


def connect(address: str, timeout_s: float = SCHEDULER_TIMEOUT_S) -> Any:
    """A ``distributed.Client`` of the scheduler at ``address``; ValueError naming it if it cannot be reached within
    ``timeout_s`` seconds."""
    import logging

    from distributed import Client

    quiet = [logging.getLogger(name) for name in ("distributed", "distributed.client", "distributed.comm")]
    levels = [logger.level for logger in quiet]
    for logger in quiet:
        logger.setLevel(logging.CRITICAL)
    try:
        return Client(address, timeout=f"{timeout_s}s")
    except (OSError, TimeoutError, ValueError) as error:
        raise ValueError(f"scheduler {address}: unreachable within {timeout_s:g} s "
                         f"({type(error).__name__}: {' '.join(str(error).split())[:160]})") from None
    finally:
        for logger, level in zip(quiet, levels):
            logger.setLevel(level)


def check_device_areas(sweep: Sweep) -> None:
    """ValueError naming the first device of ``sweep`` whose area is unknown (``measurements.device_area`` is NaN,
    or a synthetic model device) when it trains on devices: the energy ledger of every run needs the area, so
    such a sweep would fail after all its training."""
    from .training.config import SYNTHETIC_DEVICES

    if set(sweep.axes()["algorithm"]) <= {"fp"}:
        return
    for device in sweep.axes()["device"]:
        if device in SYNTHETIC_DEVICES:
            note = "area unknown: a synthetic model device has no area"
        elif math.isnan(measurements.device_area(device)):
            note = measurements.area_note(device)
        else:
            continue
        raise ValueError(f"sweep {sweep.name!r}: device {device}: {note}; the energy ledger needs the area, "
                         "nothing was run")


PARENT_POLL_S = 0.5
"""Interval (s) at which a sweep worker checks that the process that started it is still alive."""


def _worker_init(parent: int) -> None:
    """Set up a local sweep worker: Ctrl-C goes to the parent only (which stops the workers), and the worker ends
    itself when its parent is gone (killed, crashed), so no worker outlives a sweep."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C pending since the start is discarded with it
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    tqdm.set_lock(threading.RLock())  # not tqdm's default multiprocessing lock: a stopped worker leaks no semaphore
    if sys.platform.startswith("linux"):  # the kernel kills the worker with its parent (PR_SET_PDEATHSIG)
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)

    def watch() -> None:  # any platform, and a parent that died before the line above
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_S)
        os._exit(1)

    threading.Thread(target=watch, name="ferrolib-parent-watch", daemon=True).start()


@contextlib.contextmanager
def _workers_ignore_ctrl_c() -> Iterator[None]:
    """Block SIGINT while worker processes start: they inherit the blocked signal from their first instruction
    until ``_worker_init`` ignores it (a terminal's Ctrl-C reaches the whole process group; the parent alone stops
    the sweep, ``_stop_workers``). In this process a Ctrl-C of that moment stays pending and interrupts it as soon
    as the workers have started, instead of being lost."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Terminate every worker process of ``pool`` (an interrupted run keeps its last checkpoint), wait for them and
    shut the pool down (its queues released: nothing leaks)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(10)
        if process.is_alive():
            process.kill()
            process.join(5)
    pool.shutdown(wait=True, cancel_futures=True)


def _dispatch(pending: list, run: RunFunction | None, results_dir: Path, n_workers: int | None,
              scheduler: Any) -> Iterator[tuple[tuple, Any, xr.Dataset]]:
    """Yield ``(key, config, result)`` as runs finish, on dask, a local process pool, or in this process."""
    if not pending:
        return
    cpus = available_cores()
    if scheduler is not None:
        from distributed import Client, as_completed

        client = scheduler if isinstance(scheduler, Client) else connect(scheduler)
        try:
            futures = {client.submit(_execute, run, cfg, str(results_dir), 1, pure=False): (key, cfg)
                       for key, cfg in pending}
            for future in as_completed(futures):
                key, cfg = futures[future]
                yield key, cfg, future.result()
        finally:
            if client is not scheduler:
                client.close()
        return
    workers = max(1, min(n_workers or cpus, len(pending)))
    threads = max(1, default_threads() // workers)
    if workers == 1:
        for key, cfg in pending:
            yield key, cfg, _execute(run, cfg, str(results_dir), None)
        return
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_init,
                               initargs=(os.getpid(),))
    try:
        with _workers_ignore_ctrl_c():
            futures = {pool.submit(_execute, run, cfg, str(results_dir), threads): (key, cfg) for key, cfg in pending}
        remaining = set(futures)
        while remaining:
            done, remaining = wait(remaining, return_when=FIRST_COMPLETED)
            for future in done:
                key, cfg = futures[future]
                yield key, cfg, future.result()
    finally:
        _stop_workers(pool)
        provenance.clean_folder(results_dir / "runs")


def combine(sweep: Sweep, results: dict[tuple, xr.Dataset], energy_model: energy.EnergyModel) -> xr.Dataset:
    """One Dataset over the sweep's dimensions (plus epoch, layer, polarity, ...) with each run's ledger.

    Per-device maps (variables over ``row_*``/``col_*``, e.g. pulses per device) stay in the run files.
    """
    axes = sweep.axes()
    pieces = []
    for key, config in sweep.points():
        result = results[key]
        ledger = energy.ledger(result, energy_model)
        per_device_maps = [name for name, variable in result.data_vars.items()
                           if any(dim.startswith(("row_", "col_")) for dim in variable.dims)]
        run = result.drop_vars(per_device_maps).merge(ledger[list(LEDGER_VARIABLES)], combine_attrs="drop")
        run["config_hash"] = xr.DataArray(str(result.attrs.get("config_hash", "")))
        run["run_key"] = xr.DataArray(str(result.attrs.get("run_key", "")))
        run["data_kind"] = xr.DataArray(_data_kind(result))
        run.attrs = {}
        pieces.append(run.expand_dims({dim: [value] for dim, value in zip(axes, key)}))
    combined = xr.combine_by_coords(pieces, combine_attrs="drop", data_vars="all", coords="different",
                                    join="outer", compat="no_conflicts")
    combined = combined.reindex({dim: values for dim, values in axes.items()})
    combined = combined.transpose(*axes, ...)
    if "learning_rate" not in axes:
        lr_of = {config.algorithm: config.lr for _, config in sweep.points()}
        combined = combined.assign_coords(learning_rate=("algorithm", [lr_of[a] for a in axes["algorithm"]]))
    first = next(iter(results.values()))
    combined.attrs = provenance.provenance_attrs(
        sweep,
        sweep_name=sweep.name,
        energy_model=repr(energy_model),
        energy_model_config=provenance.config_dict(energy_model),
        data_kinds=sorted({_data_kind(r) for r in results.values()}),
        data_source=str(first.attrs.get("data_source", "")),
        data_label=str(first.attrs.get("data_label", "")),
        n_runs=len(results),
    )
    return combined


def _data_kind(result: xr.Dataset) -> str:
    """measured / synthetic device data of a run; "none" for runs without a device (fp)."""
    return str(energy.device_facts(result.attrs).get("data_kind", "none"))


def sweep_path(sweep: Sweep, results_dir: str | Path | None = None) -> Path:
    """Where the combined Dataset of ``sweep`` is written."""
    folder = Path(results_dir or paths.RESULTS) / "sweeps"
    return validation.inside(folder / f"{validation.check_name(sweep.name, 'sweep name')}_"
                                      f"{provenance.config_hash(sweep)}.nc", folder, "sweep file")


# ---------------------------------------------------------------------------------------------- config files
def resolve_sweep_config(name_or_path: str | Path) -> Path:
    """A sweep file: a path (``.toml``/``.yaml``/``.yml``) or the name of one in the repository's ``sweeps/``."""
    text = str(name_or_path)
    if text.endswith((".toml", ".yaml", ".yml")):
        return Path(text)
    return paths.ROOT / "sweeps" / f"{validation.check_name(text, 'sweep')}.toml"


def load_sweep_config(path: str | Path, base_factory: Callable[..., Any] | None = None) -> tuple[Sweep, dict]:
    """Read a sweep from TOML or YAML: tables ``[sweep]`` (grid), ``[base]`` (TrainConfig fields, optionally on top
    of a registered ``profile``, ``training.profiles``, whose learning rates fill ``lr_by_algorithm``) and
    optional ``[run]`` (n_workers, scheduler, results_dir), ``[energy]`` (EnergyModel flat options) and
    ``[variants]`` (name -> TrainConfig overrides, returned as ``run_options["variants"]``).

    Returns ``(Sweep, run_options)``. ``base_factory`` builds the base config (default ``TrainConfig``).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: sweep configuration not found")
    if not path.is_file():
        raise ValueError(f"{path}: is a directory, not a sweep file (.toml or .yaml)")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: cannot read the sweep file ({type(error).__name__}: {error})") from None
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as error:
        raise ValueError(f"{path}: not valid {'TOML' if path.suffix == '.toml' else 'YAML'}: {error}") from error
    if not isinstance(data, dict) or "sweep" not in data:
        raise ValueError(f"{path}: expected a [sweep] table (and [base] with TrainConfig fields)")
    _check_keys(data, SECTIONS, "table", path)
    if base_factory is None:
        from .training import TrainConfig as base_factory
    base_values = dict(_table(data, "base", path))
    profile_name = base_values.pop("profile", None)
    _check_keys(base_values, [f.name for f in dataclasses.fields(base_factory)], "[base] key", path)
    grid = dict(_table(data, "sweep", path))
    profile_lrs: dict[str, float] = {}
    if profile_name is not None:
        from .training.profiles import get_profile

        try:
            profile = get_profile(str(profile_name))
        except ValueError as error:
            raise ValueError(f"{path}: [base] profile: {error}") from error
        algorithm = base_values.get("algorithm", "mp")
        base_values = {**profile.values(algorithm), **base_values}
        profile_lrs = {name: profile.lr(name) for name in grid.get("algorithms") or [algorithm]
                       if profile.lr(name) is not None}
    _check_values(lambda: validation.check_fields(base_values, base_factory, "[base]"), path)
    try:
        base = base_factory(**base_values)
    except TypeError as error:
        raise ValueError(f"{path}: [base] does not fit {getattr(base_factory, '__name__', 'the config')}: "
                         f"{error}") from error
    if profile_lrs and not grid.get("learning_rates"):
        grid["lr_by_algorithm"] = {**profile_lrs, **grid.get("lr_by_algorithm", {})}
    _check_keys(grid, [f.name for f in dataclasses.fields(Sweep) if f.name != "base"], "[sweep] key", path)
    _check_values(lambda: _check_grid(grid), path)
    sweep = _check_values(lambda: canonical_widths(Sweep(base=base, **grid)), path)
    _check_keys(sweep.lr_by_algorithm, sweep.axes()["algorithm"], "[sweep.lr_by_algorithm] algorithm", path)
    options = _table(data, "run", path)
    _check_keys(options, RUN_OPTIONS, "[run] key", path)
    _check_values(lambda: _check_run_options(options), path)
    options["energy_model"] = energy_model_from_options(_table(data, "energy", path), origin=str(path))
    variants = _table(data, "variants", path)
    for name in variants:
        overrides = _table(variants, name, path)
        _check_keys(overrides, [f.name for f in dataclasses.fields(base_factory)] + list(VARIANT_GRID_KEYS),
                    f"[variants.{name}] key", path)
        _check_values(lambda: validation.check_fields(overrides, base_factory, f"[variants.{name}]"), path)
        _check_values(lambda: _check_grid({k: v for k, v in overrides.items() if k in VARIANT_GRID_KEYS}), path)
        try:
            variant_sweeps(sweep, {name: overrides})
        except (TypeError, ValueError) as error:
            raise ValueError(f"{path}: [variants.{name}] does not fit the sweep: {error}") from error
    options["variants"] = {name: dict(values) for name, values in variants.items()}
    return sweep, options


VARIANT_GRID_KEYS: tuple[str, ...] = ("pulse_widths", "seeds")
"""Keys of a ``[variants]`` entry that narrow the grid instead of changing the base configuration."""


def variant_sweeps(spec: Sweep, variants: dict[str, dict]) -> dict[str, Sweep]:
    """One sweep per variant of a sweep file's ``[variants]`` table (name -> base overrides, and optionally
    ``pulse_widths`` / ``seeds`` that narrow the grid), named ``<sweep>-<variant>``; an empty table is the base
    itself (its runs are the base's cached runs)."""
    sweeps = {}
    for name, overrides in variants.items():
        grid = {k: list(v) for k, v in overrides.items() if k in VARIANT_GRID_KEYS}
        base = dataclasses.replace(spec.base, **{k: v for k, v in overrides.items() if k not in VARIANT_GRID_KEYS})
        sweeps[name] = dataclasses.replace(spec, base=base, name=f"{spec.name}-{name}", **grid)
    return sweeps


SECTIONS: tuple[str, ...] = ("sweep", "base", "run", "energy", "variants")
"""Tables of a sweep file (``[variants]``: optional, named sets of base overrides, ``variant_sweeps``)."""

RUN_OPTIONS: tuple[str, ...] = ("n_workers", "scheduler", "results_dir")
"""Keys of a sweep file's ``[run]`` table."""


def _check_values(check: Callable[[], Any], path: Path) -> Any:
    """``check()``'s value; its ValueError or TypeError becomes one ValueError line naming the sweep file."""
    try:
        return check()
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path}: {error}") from None


_GRID_TYPES: dict[str, Any] = {"devices": str, "pulse_widths": float, "algorithms": str, "seeds": int,
                               "learning_rates": float}
"""Element type of every list of a sweep file's ``[sweep]`` table."""


def _check_grid(grid: dict) -> None:
    """Types of a ``[sweep]`` table: lists of names, numbers and seeds (``validation``), a dict of learning rates
    and a name; ValueError naming the first wrong value (``seeds = 1``, ``seeds = [0, 1.5]``)."""
    for key, kind in _GRID_TYPES.items():
        if key not in grid:
            continue
        for index, value in enumerate(validation.check_list(grid[key], f"[sweep] {key}")):
            what = f"[sweep] {key}[{index}]"
            if key == "seeds":
                validation.check_seed(value, what)
            else:
                validation.check_type(value, kind, what)
            if key == "devices":
                validation.check_name(value, what)
    if "lr_by_algorithm" in grid:
        validation.check_type(grid["lr_by_algorithm"], dict[str, float], "[sweep] lr_by_algorithm")
        for algorithm, lr in grid["lr_by_algorithm"].items():
            validation.check_type(lr, float, f"[sweep.lr_by_algorithm] {algorithm}")
    if "name" in grid:
        validation.check_name(grid["name"], "[sweep] name")


def _check_run_options(options: dict) -> None:
    """Types of a ``[run]`` table: ``n_workers`` an integer >= 1, ``scheduler`` and ``results_dir`` text."""
    if "n_workers" in options:
        validation.check_positive_int(options["n_workers"], "[run] n_workers")
    for key in ("scheduler", "results_dir"):
        if key in options:
            validation.check_type(options[key], str, f"[run] {key}")


def canonical_widths(sweep: Sweep) -> Sweep:
    """``sweep`` with every pulse width within ``measurements.PULSE_WIDTH_RTOL`` of a width measured for one of its
    devices replaced by that width (``validation.canonical_pulse_width``): one run, one key."""
    from .training.config import SYNTHETIC_DEVICES

    measured = [d for d in sweep.axes()["device"] if d not in SYNTHETIC_DEVICES]
    if not (sweep.pulse_widths and measured):
        return sweep
    widths = []
    for width in sweep.pulse_widths:
        snapped = {validation.canonical_pulse_width(d, float(width)) for d in measured}
        snapped.discard(float(width))
        widths.append(min(snapped) if snapped else float(width))
    return dataclasses.replace(sweep, pulse_widths=widths) if widths != list(sweep.pulse_widths) else sweep


def _table(data: dict, name: str, path: Path) -> dict:
    """Table ``name`` of a sweep file as a dict (empty if absent); ValueError if it is not a table."""
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise ValueError(f"{path}: [{name}] must be a table, got {type(value).__name__}")
    return dict(value)


def _check_keys(given: Any, allowed: Any, what: str, path: Path | str) -> None:
    """ValueError naming every unknown key of ``given``, with the nearest allowed name (difflib) suggested."""
    allowed = [str(a) for a in allowed]
    unknown = [str(k) for k in given if str(k) not in allowed]
    if not unknown:
        return
    hints = []
    for name in unknown:
        close = difflib.get_close_matches(name, allowed, n=1)
        hints.append(f"{name!r} (did you mean {close[0]!r}?)" if close else repr(name))
    raise ValueError(f"{path}: unknown {what}(s) {', '.join(hints)}; allowed: {', '.join(sorted(allowed))}")


def notebook_sweep(sweep_config: str, smoke: bool, n_seeds: int | None = None) -> tuple[Sweep, dict, Path]:
    """The sweep a notebook runs: ``smoke`` (the smoke profile) or ``sweep_config`` (a name in ``sweeps/`` or a
    path), with the file's seeds or, given ``n_seeds``, seeds ``0..n_seeds-1``. Returns
    ``(Sweep, run_options, config_path)``."""
    config_path = resolve_sweep_config("smoke" if smoke else sweep_config)
    spec, options = load_sweep_config(config_path)
    if n_seeds is not None:
        spec = dataclasses.replace(spec, seeds=list(range(n_seeds)))
    return spec, options, config_path


def energy_model_from_options(options: dict, origin: str = "energy options") -> energy.EnergyModel:
    """EnergyModel from flat options (``amplitude_rule``, ``leakage``, ``read_duration_s``, ...)."""
    nested = {"read_voltage_V": ("read", "voltage_V"), "read_duration_s": ("read", "duration_s"),
              "capacitive_eps_r": ("capacitive", "eps_r"),
              "switched_fraction": ("switching", "switched_fraction"),
              "remanent_polarization_C_per_m2": ("switching", "remanent_polarization_C_per_m2")}
    top = {k: v for k, v in options.items() if k in ("amplitude_rule", "leakage")}
    _check_keys(options, ["amplitude_rule", "leakage", *nested], "[energy] option", origin)
    model = energy.EnergyModel(**top)
    for key, (part, attr) in nested.items():
        if key in options:
            setattr(getattr(model, part), attr, float(options[key]))
    return model

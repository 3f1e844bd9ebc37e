"""Provenance and safe persistence shared by every module: configuration and content hashes, atomic writes,
moving stale files aside, per-key locks, package versions and compact dataclass reprs."""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import xarray as xr

from . import __version__, paths


OMIT_DEFAULT = "omit_default"
"""Dataclass field metadata key: a field marked ``field(..., metadata={OMIT_DEFAULT: True})`` enters
``config_dict`` (and so every configuration hash) only when its value differs from its default. Options added
after results were keyed get it, so that adding an option keeps every existing key (and cached run) valid. Never
change such a field's default: configurations holding the new default would hash like the old runs (bump
``training.run.NUMERICS_VERSION`` in the same commit if it must change)."""


def _plain(value: Any) -> Any:
    """``dataclasses.asdict`` semantics, leaving out the ``OMIT_DEFAULT`` fields that hold their default."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)
                if not (f.metadata.get(OMIT_DEFAULT) and getattr(value, f.name) == f.default)}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def config_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a (possibly nested) dataclass configuration (``OMIT_DEFAULT`` fields only when set)."""
    return json.loads(json.dumps(_plain(config), sort_keys=True, default=str))


def config_hash(config: Any, length: int = 12) -> str:
    """Stable short SHA-256 of a configuration; the key under which its results are stored."""
    text = json.dumps(config_dict(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def content_hash(value: Any, length: int = 16) -> str:
    """SHA-256 of a JSON-able value (dataclasses, dicts, numbers; floats by ``repr``, so bit-exact), shortened."""
    text = json.dumps(config_dict(value), sort_keys=True, separators=(",", ":"), default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def array_hash(arrays: Mapping[str, Any], length: int = 16) -> str:
    """SHA-256 over named arrays (name, dtype, shape and bytes of each, in name order), shortened."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = arrays[name]
        array = np.ascontiguousarray(array.detach().cpu().numpy() if hasattr(array, "detach") else array)
        digest.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:length]


def key_mismatch(stored: Mapping[str, Any] | None, expected: Mapping[str, Any]) -> str | None:
    """Why a stored run key (dict of parts) differs from the expected one, e.g. ``device changed (a -> b)``;
    None when they agree."""
    if not isinstance(stored, Mapping):
        return "no run key stored (written by an older ferrolib)"
    changed = [f"{name} changed ({stored.get(name)!r} -> {value!r})"
               for name, value in expected.items() if stored.get(name) != value]
    return "; ".join(changed) or None


def move_aside(path: Path | str, reason: str) -> Path:
    """Rename ``path`` to ``<stem>.stale-<UTC time><suffix>`` beside it (never delete a result) and print one
    line saying why; returns the new path."""
    path = Path(path)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = path.with_name(f"{path.stem}.stale-{stamp}{path.suffix}")
    counter = 1
    while target.exists():
        target = path.with_name(f"{path.stem}.stale-{stamp}-{counter}{path.suffix}")
        counter += 1
    os.replace(path, target)
    print(f"ferrolib: {path.name}: {reason}; moved aside to {target.name}, recomputing", file=sys.stderr)
    return target


@contextlib.contextmanager
def key_lock(path: Path | str) -> Iterator[None]:
    """Hold an exclusive ``fcntl.flock`` on ``<path>.lock`` (blocking): one process computes a key at a time,
    the next one waits and then finds its result. Also removes orphan ``.<name>.*.tmp`` files of interrupted
    atomic writes of ``path`` and of files named ``<stem>.*`` beside it (safe: nobody else writes them while
    the lock is held). The lock file itself stays (removing it would race with a waiting process)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            stem = path.name.split(".")[0]
            for orphan in path.parent.glob(f".{stem}.*.tmp"):
                orphan.unlink(missing_ok=True)
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def check_writable_dir(directory: Path | str, what: str) -> Path:
    """Create ``directory`` if needed and prove it writable (a probe file); ValueError naming ``what``."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"{what} {directory}: exists and is not a directory")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as error:
        raise ValueError(f"{what} {directory}: not writable ({error.strerror or error})") from error
    return directory


def portable_name(path: str, roots: list[Path]) -> str:
    """``path`` relative to the first of ``roots`` that holds it; else, for an absolute path, its last two
    components (``<device folder>/<file>``); a relative path or a description is kept. Never an absolute path."""
    if not path or not os.path.isabs(path):
        return path
    resolved = Path(path)
    for root in roots:
        with contextlib.suppress(ValueError):
            return resolved.relative_to(root).as_posix()
    return Path(*resolved.parts[-2:]).as_posix()


def run_path(config: Any, results_dir: Path | str | None = None) -> Path:
    """Where the finished run of ``config`` is stored: ``<results_dir>/runs/<config_hash>.nc`` (default
    ``paths.RESULTS``). Training and sweeps both use this key, so they share runs."""
    return Path(results_dir or paths.RESULTS) / "runs" / f"{config_hash(config)}.nc"


def versions() -> dict[str, str]:
    """Versions of ferrolib, Python and the numerical packages a result depends on."""
    import numpy
    import torch

    found = {
        "ferrolib": __version__,
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "torch": torch.__version__,
        "xarray": xr.__version__,
    }
    return {name: str(version) for name, version in found.items()}  # TorchVersion is a str subclass h5py rejects


def provenance_attrs(config: Any = None, **extra: Any) -> dict[str, str]:
    """netCDF-safe attributes: configuration (JSON), its hash, versions and any extra facts."""
    attrs: dict[str, str] = {f"version_{k}": v for k, v in versions().items()}
    if config is not None:
        attrs["config"] = json.dumps(config_dict(config), sort_keys=True)
        attrs["config_hash"] = config_hash(config)
    for key, value in extra.items():
        attrs[key] = str(value) if isinstance(value, str) else json.dumps(value, default=str)
    return attrs


def atomic_write(path: Path | str, write: Callable[[Path], None]) -> Path:
    """Write a file through ``write(tmp_path)`` then rename it into place.

    A crash leaves either the old file or none, never a truncated one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp creates 0600; give results the usual permissions
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
    return path


def write_netcdf(dataset: xr.Dataset, path: Path | str) -> Path:
    """Atomically write a Dataset to netCDF with the h5netcdf engine."""
    return atomic_write(path, lambda tmp: dataset.to_netcdf(tmp, engine="h5netcdf"))


def read_netcdf(path: Path | str) -> xr.Dataset:
    """Read a netCDF file fully into memory (h5netcdf engine) and close it."""
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        return ds.load()


def check_cached_netcdf(path: Path | str, key: Mapping[str, Any] | None, config_hash: str,
                        epochs: int | None = None) -> tuple[xr.Dataset | None, str | None]:
    """``(result, None)`` if the cached run result at ``path`` is readable, of ``config_hash``, complete
    (``epochs`` entries, when given) and of run ``key`` (its ``run_key`` attribute, when ``key`` is given);
    ``(None, why not)`` otherwise; ``(None, None)`` if there is no file. Changes nothing on disk."""
    path = Path(path)
    if not path.exists():
        return None, None
    try:
        result = read_netcdf(path)
    except Exception as error:  # noqa: BLE001 - h5py/xarray raise many types for truncated or garbage files
        return None, f"unreadable result ({type(error).__name__})"
    if result.attrs.get("config_hash") != config_hash:
        return None, f"stored config_hash {result.attrs.get('config_hash')!r} does not match its name {config_hash!r}"
    if epochs is not None and result.sizes.get("epoch", 0) != epochs:
        return None, f"incomplete ({result.sizes.get('epoch', 0)} of {epochs} epochs)"
    if key is not None:
        try:
            stored = json.loads(result.attrs.get("run_key", "null"))
        except json.JSONDecodeError:
            stored = None
        reason = key_mismatch(stored, key)
        if reason:
            return None, reason
    return result, None


def load_checked_netcdf(path: Path | str, key: Mapping[str, Any] | None, config_hash: str,
                        epochs: int | None = None) -> xr.Dataset | None:
    """The cached run result at ``path`` if ``check_cached_netcdf`` accepts it; any other file is moved aside
    (``move_aside``, one line saying why) and None returned, so the run is recomputed."""
    result, reason = check_cached_netcdf(path, key, config_hash, epochs)
    if reason:
        move_aside(path, reason)
    return result


def write_json(obj: Any, path: Path | str) -> Path:
    """Atomically write JSON (sorted keys, indented)."""
    text = json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n"
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def compact_repr(obj: Any) -> str:
    """``Name(field=value, ...)`` listing only fields that differ from their defaults (aihwkit style)."""
    parts = []
    for field in dataclasses.fields(obj):
        if not field.repr:
            continue
        value = getattr(obj, field.name)
        if field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = field.default_factory()  # type: ignore[misc]
        else:
            default = dataclasses.MISSING
        if default is dataclasses.MISSING or value != default:
            parts.append(f"{field.name}={value!r}")
    return f"{type(obj).__name__}({', '.join(parts)})"

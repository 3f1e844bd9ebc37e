"""Provenance and safe persistence shared by every module: configuration hashes, atomic writes,
package versions and compact dataclass reprs."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Any, Callable

import xarray as xr

from . import __version__, paths


def config_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a (possibly nested) dataclass configuration."""
    if dataclasses.is_dataclass(config):
        config = dataclasses.asdict(config)
    return json.loads(json.dumps(config, sort_keys=True, default=str))


def config_hash(config: Any, length: int = 12) -> str:
    """Stable short SHA-256 of a configuration; the key under which its results are stored."""
    text = json.dumps(config_dict(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


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

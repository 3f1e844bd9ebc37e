"""Provenance and safe persistence shared by every module: configuration and content hashes, atomic writes,
moving stale files aside, per-key locks, package versions and compact dataclass reprs."""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import filecmp
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
``training.keys.NUMERICS_VERSION`` in the same commit if it must change)."""


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


LOCK_STOPPED_TIMEOUT_S = 60.0
"""How long (s) a process waits for a key lock whose owner is stopped (SIGSTOP) or dead before it gives up
(``LockTimeout``); a running owner is waited for as long as it computes. ``$FERROLIB_LOCK_TIMEOUT`` overrides it."""

LOCK_POLL_S = 0.2
"""Interval (s) between two attempts to take a held key lock."""


class WriteError(RuntimeError):
    """A file could not be written (full disk, read-only folder, a file where a folder should be); the message is
    one line naming the file and the problem, and nothing half-written is left."""


class LockTimeout(RuntimeError):
    """A key lock stayed held by a stopped or dead process for longer than the time-out."""


def process_state(pid: int) -> str:
    """``running``, ``stopped`` (SIGSTOP / traced), ``dead`` (no such process, or a zombie) of process ``pid``."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return "dead"
    except PermissionError:
        return "running"
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "running"
    return {"T": "stopped", "t": "stopped", "Z": "dead", "X": "dead"}.get(state, "running")


def _lock_owner(handle: Any) -> tuple[int, float] | None:
    """``(pid, start time)`` recorded in an open lock file, None when it records none."""
    handle.seek(0)
    try:
        pid, started = handle.read().split()[:2]
        return int(pid), float(started)
    except ValueError:
        return None


def _lock_timeout() -> float:
    value = os.environ.get("FERROLIB_LOCK_TIMEOUT")
    if value is None:
        return LOCK_STOPPED_TIMEOUT_S
    try:
        timeout = float(value)
    except ValueError:
        raise ValueError(f"$FERROLIB_LOCK_TIMEOUT must be a number of seconds, got {value!r}") from None
    if not (timeout > 0 and timeout == timeout):
        raise ValueError(f"$FERROLIB_LOCK_TIMEOUT must be a positive number of seconds, got {value!r}")
    return timeout


def _acquire(lock: Path, stopped_timeout_s: float) -> Any:
    """The open lock file ``lock``, flocked by this process, with this process's pid and start time in it.

    A held lock is polled every ``LOCK_POLL_S``; while its recorded owner is stopped or dead, one line says so
    (owner pid, age of the lock) and after ``stopped_timeout_s`` of that ``LockTimeout`` is raised. A lock file
    that was removed (released by a finished owner) while waiting is opened again."""
    said, blocked_since = None, None
    while True:
        handle = open(lock, "a+")
        try:
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    owner = _lock_owner(handle)
                    state = process_state(owner[0]) if owner else "running"
                    if state == "running":
                        blocked_since = None
                    else:
                        blocked_since = blocked_since or time.monotonic()
                        age = time.time() - owner[1]
                        if said != owner:
                            print(f"ferrolib: {lock.name}: held by {state} process {owner[0]} (lock taken "
                                  f"{age:.0f} s ago); waiting up to {stopped_timeout_s:g} s", file=sys.stderr)
                            said = owner
                        if time.monotonic() - blocked_since > stopped_timeout_s:
                            raise LockTimeout(f"{lock}: held by {state} process {owner[0]} for {age:.0f} s; gave up "
                                              f"after {stopped_timeout_s:g} s (resume or end process {owner[0]}, "
                                              "then run again)")
                    time.sleep(LOCK_POLL_S)
            try:
                same = os.fstat(handle.fileno()).st_ino == os.stat(lock).st_ino
            except FileNotFoundError:
                same = False
            if same:
                handle.seek(0)
                handle.truncate()
                handle.write(f"{os.getpid()} {time.time():.3f}\n")
                handle.flush()
                return handle
        except BaseException:
            handle.close()
            raise
        handle.close()  # the file was removed by its previous owner: lock the new one


@contextlib.contextmanager
def key_lock(path: Path | str, stopped_timeout_s: float | None = None) -> Iterator[None]:
    """Hold an exclusive ``fcntl.flock`` on ``<path>.lock``: one process computes a key at a time, the next one
    waits and then finds its result. The lock file records the owner's pid and start time; a process waiting on
    an owner that is stopped (SIGSTOP) or dead says so in one line and raises ``LockTimeout`` after
    ``stopped_timeout_s`` (default ``LOCK_STOPPED_TIMEOUT_S`` or ``$FERROLIB_LOCK_TIMEOUT``). Also removes orphan
    ``.<name>.*.tmp`` files of interrupted atomic writes of ``path`` and of files named ``<stem>.*`` beside it
    (safe: nobody else writes them while the lock is held). The lock file is removed on release (a waiting
    process notices and locks the new file instead)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.with_name(path.name + ".lock")
    handle = _acquire(lock, _lock_timeout() if stopped_timeout_s is None else stopped_timeout_s)
    try:
        stem = path.name.split(".")[0]
        for orphan in path.parent.glob(f".{stem}.*.tmp"):
            orphan.unlink(missing_ok=True)
        yield
    finally:
        with contextlib.suppress(OSError):
            lock.unlink()
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def check_writable_dir(directory: Path | str, what: str, probe_bytes: int = 0) -> Path:
    """Create ``directory`` if needed and prove it writable (a probe file of ``probe_bytes`` bytes, flushed to the
    file system, so a disk too full for that much fails here); ValueError naming ``what``."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"{what} {directory}: exists and is not a directory")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory) as probe:
            if probe_bytes:
                probe.write(b"\0" * probe_bytes)
                probe.flush()
                os.fsync(probe.fileno())
    except OSError as error:
        room = f" for {probe_bytes} bytes" if probe_bytes else ""
        raise ValueError(f"{what} {directory}: not writable{room} ({describe_os_error(error)})") from error
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


def describe_os_error(error: OSError) -> str:
    """A short text of an OS error for one line: ``disk full (ENOSPC)``, ``read-only file system (EROFS)``..."""
    names = {errno.ENOSPC: "disk full", errno.EDQUOT: "disk quota exceeded", errno.EROFS: "read-only file system",
             errno.EACCES: "permission denied", errno.EPERM: "operation not permitted",
             errno.ENOTDIR: "a path component is a file, not a directory", errno.EISDIR: "is a directory"}
    code = errno.errorcode.get(error.errno or 0, "")
    text = names.get(error.errno, error.strerror or str(error) or type(error).__name__)
    return f"{text} ({code})" if code else text


def clean_orphans(path: Path | str) -> list[Path]:
    """Remove the temporary files ``.<name>.<pid>.*.tmp`` that atomic writes of ``path`` left when their process
    died (its pid no longer runs); returns what was removed. Writes of live processes are left alone."""
    path = Path(path)
    removed = []
    for orphan in path.parent.glob(f".{path.name}.*.tmp"):
        pid = orphan.name[len(path.name) + 2:].split(".")[0]
        if pid.isdigit() and process_state(int(pid)) != "dead":
            continue
        if not pid.isdigit() and time.time() - orphan.stat().st_mtime < 3600:
            continue  # an older-style name without a pid: only when it is clearly abandoned
        orphan.unlink(missing_ok=True)
        removed.append(orphan)
    return removed


def clean_folder(folder: Path | str) -> list[Path]:
    """Remove what killed processes left in ``folder``: lock files whose recorded owner is dead (and which nobody
    holds) and temporary files of atomic writes whose process is dead (``clean_orphans``); returns what was
    removed. Used when a sweep starts and after it stopped its workers."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for lock in folder.glob("*.lock"):
        with contextlib.suppress(OSError), open(lock, "a+") as handle:
            owner = _lock_owner(handle)
            if owner is None or process_state(owner[0]) != "dead":
                continue
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            lock.unlink()
            removed.append(lock)
    for target in {tmp.name[1:].rsplit(".", 3)[0] for tmp in folder.glob(".*.tmp")}:
        removed += clean_orphans(folder / target)
    return removed


def atomic_write(path: Path | str, write: Callable[[Path], None], keep_same: bool = False) -> Path:
    """Write a file through ``write(tmp_path)`` then rename it into place.

    A crash leaves either the old file or none, never a truncated one; the temporary file
    (``.<name>.<pid>.<random>.tmp``) of a process that died is removed by the next write of ``path``
    (``clean_orphans``). An OS error (full disk, read-only folder, a file where a folder should be) becomes one
    ``WriteError`` line naming the file, with the temporary file removed. ``keep_same``: where ``path`` already
    holds exactly the bytes written, leave it as it is, modification time included.
    """
    path = Path(path)
    tmp_path = None
    try:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except FileExistsError:  # a file where a folder should be
            raise NotADirectoryError(errno.ENOTDIR, "Not a directory", str(path.parent)) from None
        if path.is_dir():
            raise IsADirectoryError(errno.EISDIR, "Is a directory", str(path))
        with contextlib.suppress(OSError):
            clean_orphans(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        write(tmp_path)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp creates 0600; give results the usual permissions
        if keep_same and path.is_file() and filecmp.cmp(tmp_path, path, shallow=False):
            return path  # the temporary file is removed below
        os.replace(tmp_path, path)
    except OSError as error:
        raise WriteError(f"{path}: cannot write: {describe_os_error(error)}; nothing half-written was left") from error
    finally:
        if tmp_path is not None and tmp_path.exists():
            tmp_path.unlink()
    return path


def write_netcdf(dataset: xr.Dataset, path: Path | str) -> Path:
    """Atomically write a Dataset to netCDF with the h5netcdf engine. The file is built in memory and then written
    as bytes, so a full disk is a plain OS error (``WriteError``), never an HDF5 library failure mid-file."""
    data = dataset.to_netcdf(engine="h5netcdf")
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


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

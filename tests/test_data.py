"""Tests of robustrain.data: registry metadata, file readers on tiny files written here,
md5 errors, downloads without network, and the device-resident loader."""

from __future__ import annotations

import gzip
import io
import json
import os
import pickle
import re
import struct
import sys
import tarfile
import time
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

import robustrain.data.checksums as checksums
import robustrain.data.download as download_mod
from robustrain.data import (
    DATASETS,
    Batch,
    DeviceLoader,
    download_dataset,
    get_dataset_info,
    load_split,
    make_loaders,
)
from robustrain.data.augment import CropFlipParams, apply_crop_flip, random_crop_flip, sample_crop_flip
from robustrain.data.checksums import CHECKSUMS, CONTENT_CHECKSUMS
from robustrain.data.loader import subset_indices
from robustrain.data.registry import search_dirs
from robustrain.utils.errors import DatasetFileError, DownloadError
from robustrain.data.download import download_file
from robustrain.data.formats import load_cifar_pickle, parse_idx
from robustrain.data.readers import PACKAGED_DIR

MD5_RE = re.compile(r"^[0-9a-f]{32}$")


def md5_of(path: Path) -> str:
    return checksums.md5_bytes(path.read_bytes())


@pytest.fixture(autouse=True)
def _fresh_md5_cache():
    # Files written by different tests can share (path, size, mtime); start each test clean.
    checksums.clear_process_cache()
    yield
    checksums.clear_process_cache()


# ---------------------------------------------------------------- registry metadata


@pytest.mark.parametrize("name", DATASETS.names())
def test_registry_metadata_is_consistent(name):
    entry = DATASETS.entry(name)
    spec, info = entry.obj, entry.obj.info
    assert entry.help
    assert info.name == name
    assert get_dataset_info(name) is info
    c, h, w = info.image_shape
    assert c in (1, 3) and h >= 8 and w >= 8
    assert len(info.mean) == len(info.std) == c
    assert all(0 < m < 1 for m in info.mean) and all(0 < s < 1 for s in info.std)
    assert info.num_classes >= 2
    assert info.class_names is None or len(set(info.class_names)) == info.num_classes
    assert info.train_size > 0 and info.test_size > 0
    assert info.source
    assert info.aug_pad >= 0
    for relpath, md5 in info.files:
        assert MD5_RE.match(md5), (relpath, md5)
    assert dict(info.files) == CHECKSUMS.get(name, {})
    for item in spec.downloads:
        assert item.relpath in CHECKSUMS[name], "every download must be md5-checked"
        assert item.url.startswith(("http://", "https://"))
    if spec.uses_root:
        assert info.files, "a dataset read from root must list its files"


def test_registry_lists_the_expected_datasets():
    assert {
        "cifar10",
        "cifar100",
        "svhn",
        "mnist",
        "fashion-mnist",
        "cifar10-mini",
        "synthetic",
    } <= set(DATASETS.names())


def test_unknown_dataset_and_split():
    with pytest.raises(KeyError, match="Did you mean 'cifar10'"):
        get_dataset_info("cifar1O")
    with pytest.raises(ValueError, match="unknown split"):
        load_split("synthetic", "val")


def test_class_names_match_official_meta():
    meta = load_cifar_pickle((PACKAGED_DIR / "cifar10_batches.meta").read_bytes())
    assert tuple(meta["label_names"]) == get_dataset_info("cifar10").class_names
    assert get_dataset_info("cifar10-mini").class_names == get_dataset_info("cifar10").class_names
    shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar100" / "meta"
    if shared.is_file():  # only beside the project's shared folder
        meta100 = load_cifar_pickle(shared.read_bytes())
        assert tuple(meta100["fine_label_names"]) == get_dataset_info("cifar100").class_names


def test_search_dirs(tmp_path):
    assert search_dirs("mnist", tmp_path) == (
        tmp_path,
        tmp_path / "mnist",
        tmp_path / "MNIST" / "raw",
    )
    assert search_dirs("synthetic", tmp_path) == ()


def test_default_root_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("ROBUSTRAIN_DATA", str(tmp_path))
    assert search_dirs("cifar10")[0] == tmp_path


# ---------------------------------------------------------------- packaged and generated data


def test_cifar10_mini_sizes_md5_and_labels():
    info = get_dataset_info("cifar10-mini")
    assert md5_of(PACKAGED_DIR / "cifar10_mini.npz") == "18d087cf9488812306c46a5f1ac43ed7"
    assert CHECKSUMS["cifar10-mini"]["cifar10_mini.npz"] == "18d087cf9488812306c46a5f1ac43ed7"
    train = load_split("cifar10-mini", "train", root="/nonexistent/root/is/ignored")
    test = load_split("cifar10-mini", "test")
    assert (info.train_size, info.test_size) == (5085, 1017)
    assert train.images.shape == (5085, 3, 32, 32) and test.images.shape == (1017, 3, 32, 32)
    assert train.images.dtype == torch.uint8 and train.labels.dtype == torch.int64
    assert train.images.is_contiguous()
    with np.load(PACKAGED_DIR / "cifar10_mini.npz") as z:
        # NHWC on disk -> NCHW here, same pixels.
        assert torch.equal(test.images, torch.from_numpy(z["x_test"]).permute(0, 3, 1, 2))
        assert np.array_equal(z["y_test"], z["y_test_all"][:1017])
    assert torch.bincount(train.labels, minlength=10).min() > 400
    pixels = train.images.float().div(255)
    assert torch.allclose(pixels.mean((0, 2, 3)), torch.tensor(info.mean), atol=0.01)
    assert torch.allclose(pixels.std((0, 2, 3)), torch.tensor(info.std), atol=0.01)


def test_cifar10_mini_md5_mismatch_is_reported(monkeypatch):
    monkeypatch.setitem(CHECKSUMS["cifar10-mini"], "cifar10_mini.npz", "0" * 32)
    with pytest.raises(DatasetFileError, match="cifar10-mini") as info:
        load_split("cifar10-mini", "test")
    assert "0" * 32 in str(info.value)
    # verify=False skips the check.
    assert load_split("cifar10-mini", "test", verify=False).images.shape[0] == 1017


def test_synthetic_is_deterministic_balanced_and_learnable():
    info = get_dataset_info("synthetic")
    a = load_split("synthetic", "train")
    b = load_split("synthetic", "train")
    test = load_split("synthetic", "test")
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert a.images.shape == (info.train_size, *info.image_shape)
    assert test.images.shape == (info.test_size, *info.image_shape)
    assert torch.bincount(a.labels).tolist() == [
        info.train_size // 10 + (i < info.train_size % 10) for i in range(10)
    ]
    assert not torch.equal(a.images[: info.test_size], test.images)
    pixels = a.images.float().div(255)
    assert torch.allclose(pixels.mean((0, 2, 3)), torch.tensor(info.mean), atol=0.005)
    assert torch.allclose(pixels.std((0, 2, 3)), torch.tensor(info.std), atol=0.005)
    # Learnable: even a nearest-class-mean classifier separates the classes...
    x_train, x_test = a.images.float().flatten(1), test.images.float().flatten(1)
    means = torch.stack([x_train[a.labels == c].mean(0) for c in range(10)])
    predictions = torch.cdist(x_test, means).argmin(1)
    assert (predictions == test.labels).float().mean() > 0.9
    # ...but not by a wide margin: prototypes are close enough for eps = 8/255 to matter.
    assert (means[:, None] - means[None]).abs().mean() / 255 < 0.25


# ---------------------------------------------------------------- CIFAR python batches


def _cifar_batch(
    n: int, start: int, label_key: str, num_classes: int
) -> tuple[bytes, np.ndarray, list[int]]:
    data = ((np.arange(n * 3072, dtype=np.int64).reshape(n, 3072) + start * 7) % 251).astype(
        np.uint8
    )
    labels = [(start + i) % num_classes for i in range(n)]
    # Same structure as the official files: bytes keys, numpy data, list labels, protocol 2.
    blob = pickle.dumps(
        {b"batch_label": b"fake", b"data": data, label_key.encode(): labels}, protocol=2
    )
    return blob, data, labels


def write_fake_cifar10(
    folder: Path, n: int = 3
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Writes cifar-10-batches-py/ with tiny batches; returns train/test data rows and labels."""
    base = folder / "cifar-10-batches-py"
    base.mkdir(parents=True, exist_ok=True)
    rows, labels = [], []
    for k in range(1, 6):
        blob, data, y = _cifar_batch(n, k * n, "labels", 10)
        (base / f"data_batch_{k}").write_bytes(blob)
        rows.append(data)
        labels += y
    blob, test_rows, test_labels = _cifar_batch(n + 1, 100, "labels", 10)
    (base / "test_batch").write_bytes(blob)
    return np.concatenate(rows), np.array(labels), test_rows, np.array(test_labels)


def make_tar(source_dir: Path, member_dir: str, tar_path: Path) -> None:
    with tarfile.open(tar_path, "w:gz") as tar:
        tar.add(source_dir / member_dir, arcname=member_dir)


def patch_cifar10_md5s(
    monkeypatch, folder: Path | None = None, tar_path: Path | None = None
) -> None:
    if folder is not None:
        for path in (folder / "cifar-10-batches-py").iterdir():
            if not path.name.startswith("."):
                monkeypatch.setitem(
                    CHECKSUMS["cifar10"], f"cifar-10-batches-py/{path.name}", md5_of(path)
                )
    if tar_path is not None:
        monkeypatch.setitem(CHECKSUMS["cifar10"], "cifar-10-python.tar.gz", md5_of(tar_path))


def test_cifar10_reads_extracted_folder(tmp_path, monkeypatch):
    rows, labels, test_rows, test_labels = write_fake_cifar10(tmp_path)
    patch_cifar10_md5s(monkeypatch, folder=tmp_path)
    train = load_split("cifar10", "train", tmp_path)
    assert train.images.shape == (15, 3, 32, 32) and train.images.dtype == torch.uint8
    assert train.labels.tolist() == labels.tolist()
    # Official rows are R plane, G plane, B plane: already CHW.
    assert torch.equal(train.images[4], torch.from_numpy(rows[4].reshape(3, 32, 32)))
    test = load_split("cifar10", "test", tmp_path)
    assert test.images.shape == (4, 3, 32, 32) and test.labels.tolist() == test_labels.tolist()
    assert torch.equal(test.images.flatten(1), torch.from_numpy(test_rows))
    # The md5 results are cached in a stamp next to the files.
    assert (tmp_path / "cifar-10-batches-py" / checksums.STAMP_NAME).is_file()


@pytest.mark.parametrize("subdir", ["", "cifar10"])
def test_cifar10_reads_straight_from_tarball(tmp_path, monkeypatch, subdir):
    staging = tmp_path / "staging"
    rows, labels, test_rows, _ = write_fake_cifar10(staging)
    root = tmp_path / "root"
    (root / subdir).mkdir(parents=True, exist_ok=True)
    tar_path = root / subdir / "cifar-10-python.tar.gz"
    make_tar(staging, "cifar-10-batches-py", tar_path)
    patch_cifar10_md5s(monkeypatch, tar_path=tar_path)
    train = load_split("cifar10", "train", root)
    assert train.labels.tolist() == labels.tolist()
    assert torch.equal(train.images.flatten(1), torch.from_numpy(rows))
    test = load_split("cifar10", "test", root)
    assert torch.equal(test.images.flatten(1), torch.from_numpy(test_rows))
    assert not (root / subdir / "cifar-10-batches-py").exists(), "nothing is extracted to disk"


def test_cifar100_reads_fine_labels(tmp_path, monkeypatch):
    base = tmp_path / "cifar-100-python"
    base.mkdir()
    for split, n in (("train", 5), ("test", 2)):
        blob, _, _ = _cifar_batch(n, 90, "fine_labels", 100)
        (base / split).write_bytes(blob)
        monkeypatch.setitem(
            CHECKSUMS["cifar100"], f"cifar-100-python/{split}", md5_of(base / split)
        )
    train = load_split("cifar100", "train", tmp_path)
    assert train.labels.tolist() == [90, 91, 92, 93, 94]
    tar_root = tmp_path / "tar"
    tar_root.mkdir()
    make_tar(tmp_path, "cifar-100-python", tar_root / "cifar-100-python.tar.gz")
    monkeypatch.setitem(
        CHECKSUMS["cifar100"],
        "cifar-100-python.tar.gz",
        md5_of(tar_root / "cifar-100-python.tar.gz"),
    )
    assert torch.equal(load_split("cifar100", "test", tar_root).labels, torch.tensor([90, 91]))


def test_cifar10_wrong_md5_gives_clear_error(tmp_path):
    write_fake_cifar10(tmp_path)  # real md5 table: the fake files cannot match it
    with pytest.raises(DatasetFileError) as info:
        load_split("cifar10", "train", tmp_path)
    message = str(info.value)
    assert "\n" not in message
    assert "'cifar10'" in message and "corrupt" in message
    assert str(tmp_path / "cifar-10-batches-py" / "data_batch_1") in message
    assert "c99cafc152244af753f735de768cd75f" in message  # the expected md5
    assert "--download" in message and "data.download=true" in message
    # Both ways of catching it work.
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, ValueError)
    # verify=False parses the same files.
    assert load_split("cifar10", "train", tmp_path, verify=False).images.shape[0] == 15


def test_cifar10_wrong_archive_md5(tmp_path):
    staging = tmp_path / "staging"
    write_fake_cifar10(staging)
    make_tar(staging, "cifar-10-batches-py", tmp_path / "cifar-10-python.tar.gz")
    with pytest.raises(DatasetFileError, match="c58f30108f718f92721af3b95e74349a"):
        load_split("cifar10", "test", tmp_path)


def test_missing_files_message(tmp_path):
    with pytest.raises(DatasetFileError) as info:
        load_split("cifar10", "train", tmp_path)
    message = str(info.value)
    assert "\n" not in message
    assert "dataset 'cifar10'" in message and "missing" in message
    assert str(tmp_path) in message and str(tmp_path / "cifar10") in message
    assert "cifar-10-python.tar.gz (md5 c58f30108f718f92721af3b95e74349a)" in message
    assert "data_batch_1 (md5 c99cafc152244af753f735de768cd75f)" in message
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in message
    assert "--download" in message and "data.download=true" in message
    with pytest.raises(DatasetFileError, match="train_32x32.mat"):
        load_split("svhn", "train", tmp_path)
    with pytest.raises(DatasetFileError, match="t10k-images-idx3-ubyte.gz"):
        load_split("fashion-mnist", "test", tmp_path)


def test_unparsable_and_malicious_pickles_are_file_errors(tmp_path, monkeypatch):
    write_fake_cifar10(tmp_path)
    batch = tmp_path / "cifar-10-batches-py" / "test_batch"
    batch.write_bytes(b"not a pickle")
    patch_cifar10_md5s(monkeypatch, folder=tmp_path)
    with pytest.raises(DatasetFileError, match="cannot parse"):
        load_split("cifar10", "test", tmp_path)

    class Evil:
        def __reduce__(self):
            return (print, ("this must never run",))

    batch.write_bytes(pickle.dumps(Evil(), protocol=2))
    patch_cifar10_md5s(monkeypatch, folder=tmp_path)
    with pytest.raises(DatasetFileError, match="refusing to load"):
        load_split("cifar10", "test", tmp_path)


def test_truncated_tarball_is_a_file_error(tmp_path, monkeypatch):
    staging = tmp_path / "staging"
    write_fake_cifar10(staging)
    tar_path = tmp_path / "cifar-10-python.tar.gz"
    make_tar(staging, "cifar-10-batches-py", tar_path)
    tar_path.write_bytes(tar_path.read_bytes()[:200])
    patch_cifar10_md5s(monkeypatch, tar_path=tar_path)
    with pytest.raises(DatasetFileError, match="cannot read|lacks"):
        load_split("cifar10", "test", tmp_path)


# ---------------------------------------------------------------- IDX (MNIST family)


def idx_bytes(array: np.ndarray) -> bytes:
    codes = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C}
    header = struct.pack(">BBBB", 0, 0, codes[array.dtype], array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def write_fake_idx(
    folder: Path, *, compress: bool = True, n_train: int = 6, n_test: int = 3
) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test)[::-1] % 10).astype(np.uint8),
    }
    for stem, array in arrays.items():
        raw = idx_bytes(array)
        if compress:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(raw, mtime=0))
        else:
            (folder / stem).write_bytes(raw)
    return arrays


def test_parse_idx():
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(parse_idx(idx_bytes(array)), array)
    big = np.array([1, -2, 70000], dtype=">i4")
    parsed = parse_idx(idx_bytes(big))
    assert parsed.tolist() == [1, -2, 70000] and parsed.dtype.isnative
    with pytest.raises(ValueError, match="magic"):
        parse_idx(b"\x01\x00\x08\x01" + b"\x00" * 8)
    with pytest.raises(ValueError, match="type code"):
        parse_idx(b"\x00\x00\x07\x01" + b"\x00" * 8)
    with pytest.raises(ValueError, match="size mismatch"):
        parse_idx(idx_bytes(array)[:-1])


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_idx_reader_with_matching_gz_md5(tmp_path, monkeypatch, name):
    folder = tmp_path / name
    arrays = write_fake_idx(folder)
    for path in folder.glob("*.gz"):
        monkeypatch.setitem(CHECKSUMS[name], path.name, md5_of(path))
    train = load_split(name, "train", tmp_path)
    assert train.images.shape == (6, 1, 28, 28) and train.images.dtype == torch.uint8
    assert torch.equal(train.images[:, 0], torch.from_numpy(arrays["train-images-idx3-ubyte"]))
    assert train.labels.dtype == torch.int64
    assert train.labels.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
    test = load_split(name, "test", tmp_path)
    assert test.labels.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()


def test_idx_reader_accepts_recompressed_or_plain_copies_by_content_md5(tmp_path, monkeypatch):
    arrays = write_fake_idx(tmp_path / "gz")
    write_fake_idx(tmp_path / "plain", compress=False)
    for stem, array in arrays.items():
        monkeypatch.setitem(CONTENT_CHECKSUMS["mnist"], stem, checksums.md5_bytes(idx_bytes(array)))
    # The .gz md5s are the official ones (no match): the content md5 decides.
    assert load_split("mnist", "test", tmp_path / "gz").images.shape == (3, 1, 28, 28)
    assert load_split("mnist", "test", tmp_path / "plain").images.shape == (3, 1, 28, 28)
    monkeypatch.setitem(CONTENT_CHECKSUMS["mnist"], "t10k-images-idx3-ubyte", "f" * 32)
    with pytest.raises(DatasetFileError, match="corrupt") as info:
        load_split("mnist", "test", tmp_path / "gz")
    assert "9fb629c4189551a2d022fa330f9573f3" in str(info.value)


def test_idx_reader_torchvision_layout_and_bad_magic(tmp_path):
    write_fake_idx(tmp_path / "MNIST" / "raw")
    assert load_split("mnist", "train", tmp_path, verify=False).images.shape == (6, 1, 28, 28)
    (tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").write_bytes(
        gzip.compress(b"\x01\x02\x03\x04rest")
    )
    with pytest.raises(DatasetFileError, match="cannot parse .*magic"):
        load_split("mnist", "train", tmp_path, verify=False)
    (tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DatasetFileError, match="cannot read"):
        load_split("mnist", "train", tmp_path, verify=False)


def test_idx_image_label_count_mismatch(tmp_path):
    arrays = write_fake_idx(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(idx_bytes(arrays["t10k-labels-idx1-ubyte"][:2]))
    )
    with pytest.raises(DatasetFileError, match="disagree"):
        load_split("mnist", "test", tmp_path, verify=False)


FASHION_DEBIAN = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(
    not FASHION_DEBIAN.is_dir(), reason="Debian package dataset-fashion-mnist not installed"
)
def test_real_fashion_mnist_from_debian_package(monkeypatch):
    monkeypatch.setattr(checksums, "_write_stamp", lambda *a: None)  # leave /usr/share alone
    # Debian re-compressed the official files: accepted through the content md5.
    test = load_split("fashion-mnist", "test", FASHION_DEBIAN)
    assert test.images.shape == (10_000, 1, 28, 28)
    assert torch.bincount(test.labels).tolist() == [1000] * 10


# ---------------------------------------------------------------- SVHN


def write_fake_svhn(folder: Path, split: str = "train") -> np.ndarray:
    scipy_io = pytest.importorskip("scipy.io")
    x = np.random.default_rng(1).integers(0, 256, (32, 32, 3, 4), dtype=np.uint8)
    scipy_io.savemat(
        folder / f"{split}_32x32.mat",
        {"X": x, "y": np.array([[10], [1], [9], [10]], dtype=np.uint8)},
    )
    return x


def test_svhn_reader_maps_label_10_to_0(tmp_path, monkeypatch):
    x = write_fake_svhn(tmp_path)
    monkeypatch.setitem(CHECKSUMS["svhn"], "train_32x32.mat", md5_of(tmp_path / "train_32x32.mat"))
    split = load_split("svhn", "train", tmp_path)
    assert split.labels.tolist() == [0, 1, 9, 0]
    assert split.images.shape == (4, 3, 32, 32) and split.images.dtype == torch.uint8
    # .mat is (H, W, C, N): image i channel c is X[:, :, c, i].
    assert torch.equal(split.images[2, 1], torch.from_numpy(x[:, :, 1, 2]))
    with pytest.raises(DatasetFileError, match="e26dedcc434d2e4c54c9b2d4a06d8373"):
        monkeypatch.setitem(
            CHECKSUMS["svhn"], "train_32x32.mat", "e26dedcc434d2e4c54c9b2d4a06d8373"
        )
        load_split("svhn", "train", tmp_path)


def test_svhn_without_scipy_says_how_to_install(tmp_path, monkeypatch):
    write_fake_svhn(tmp_path, "test")
    monkeypatch.setitem(sys.modules, "scipy.io", None)  # makes "from scipy.io import ..." fail
    with pytest.raises(ModuleNotFoundError, match="pip install scipy"):
        load_split("svhn", "test", tmp_path, verify=False)


# ---------------------------------------------------------------- md5 cache


def test_md5_stamp_cache_avoids_rehashing(tmp_path, monkeypatch):
    path = tmp_path / "big.bin"
    path.write_bytes(b"x" * 1000)
    expected = checksums.md5_bytes(b"x" * 1000)
    assert checksums.file_md5(path) == expected
    assert (tmp_path / checksums.STAMP_NAME).is_file()

    def no_hashing(*args, **kwargs):
        raise AssertionError("md5 recomputed despite the stamp")

    monkeypatch.setattr(checksums, "_hash_file", no_hashing)
    checksums.clear_process_cache()  # a new process: only the stamp remains
    assert checksums.file_md5(path) == expected
    # A changed file (size/mtime) is hashed again.
    monkeypatch.undo()
    path.write_bytes(b"y" * 1001)
    assert checksums.file_md5(path) == checksums.md5_bytes(b"y" * 1001)


def test_md5_cache_survives_read_only_folder(tmp_path, monkeypatch):
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc")
    monkeypatch.setattr(checksums, "_write_stamp", lambda *a: None)
    assert checksums.file_md5(path) == checksums.md5_bytes(b"abc")


def _same_size_same_mtime_edit(path: Path, offset: int) -> bytes:
    """Flip one byte at ``offset`` and put the modification time back, as ``touch -r`` would."""
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    time.sleep(0.05)  # file timestamps tick per jiffy: let the change time move past the first write
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns
    return bytes(data)


@pytest.mark.parametrize("where", ["first block", "middle", "last block"])
def test_md5_cache_detects_a_same_size_same_mtime_edit(tmp_path, where):
    path = tmp_path / "data.bin"
    size = 3 * checksums.EDGE_BYTES + 17
    path.write_bytes(bytes(range(256)) * (size // 256) + bytes(size % 256))
    assert checksums.file_md5(path) == md5_of(path)
    offset = {"first block": 5, "middle": size // 2, "last block": size - 3}[where]
    edited = _same_size_same_mtime_edit(path, offset)
    # in this process and in a new one (only the stamp left): both see the edit
    assert checksums.file_md5(path) == checksums.md5_bytes(edited)
    checksums.clear_process_cache()
    assert checksums.file_md5(path) == checksums.md5_bytes(edited)


def test_md5_stamp_checks_the_file_edges_even_when_ctime_and_inode_match(tmp_path):
    """A filesystem whose change time cannot be trusted (a copy that kept the stamp and every
    timestamp): the md5 of the first and last blocks still catches a rewritten header."""
    path = tmp_path / "data.bin"
    path.write_bytes(b"a" * (2 * checksums.EDGE_BYTES))
    old = checksums.file_md5(path)
    edited = _same_size_same_mtime_edit(path, 0)
    stamp = json.loads((tmp_path / checksums.STAMP_NAME).read_text())
    stamp[path.name]["ctime_ns"] = path.stat().st_ctime_ns  # pretend nothing but the bytes changed
    (tmp_path / checksums.STAMP_NAME).write_text(json.dumps(stamp))
    checksums.clear_process_cache()
    assert checksums.file_md5(path) == checksums.md5_bytes(edited) != old


def test_md5_stamp_records_the_file_identity(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc")
    checksums.file_md5(path)
    record = json.loads((tmp_path / checksums.STAMP_NAME).read_text())["f.bin"]
    st = path.stat()
    assert record == {"size": 3, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "inode": st.st_ino,
                      "edges_md5": checksums.md5_bytes(b"abc"), "md5": checksums.md5_bytes(b"abc")}


# ---------------------------------------------------------------- downloads (no network used)


def _no_network(*args, **kwargs):
    raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")


def test_download_failure_without_network_is_clean(tmp_path, monkeypatch):
    monkeypatch.setattr(download_mod.urllib.request, "urlopen", _no_network)
    with pytest.raises(DatasetFileError) as info:
        load_split("cifar10", "train", tmp_path, download=True)
    message = str(info.value)
    assert "\n" not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert "download failed" in message and "name resolution" in message
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in message
    assert str(tmp_path) in message
    assert list(tmp_path.iterdir()) == [], "nothing written, not even a folder"


def test_download_file_unreachable_url(tmp_path):
    # Port 9 (discard) on localhost: refused at once, no network needed.
    with pytest.raises(DownloadError) as info:
        download_file("http://127.0.0.1:9/file.bin", tmp_path / "file.bin", timeout=5)
    assert "\n" not in str(info.value) and "127.0.0.1:9" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_download_leaves_nothing(tmp_path, monkeypatch):
    class Broken(io.BytesIO):
        def read(self, size=-1):
            if self.tell() > 0:
                raise ConnectionResetError("connection reset by peer")
            return super().read(4)

    monkeypatch.setattr(
        download_mod.urllib.request, "urlopen", lambda *a, **k: Broken(b"0123456789")
    )
    with pytest.raises(DownloadError, match="connection reset"):
        download_file("https://example.invalid/f.bin", tmp_path / "f.bin")
    assert list(tmp_path.iterdir()) == []


def test_download_file_md5_mismatch_leaves_nothing(tmp_path):
    source = tmp_path / "src.bin"
    source.write_bytes(b"payload")
    out = tmp_path / "out"
    with pytest.raises(DownloadError, match="md5"):
        download_file(source.as_uri(), out / "dest.bin", "0" * 32)
    assert list(out.iterdir()) == []
    assert (
        download_file(source.as_uri(), out / "dest.bin", md5_of(source)).read_bytes() == b"payload"
    )


def test_download_dataset_fetches_archive_then_reads_it(tmp_path, monkeypatch):
    staging = tmp_path / "staging"
    _, labels, _, _ = write_fake_cifar10(staging)
    tar_path = tmp_path / "served.tar.gz"
    make_tar(staging, "cifar-10-batches-py", tar_path)
    patch_cifar10_md5s(monkeypatch, tar_path=tar_path)
    served = tar_path.read_bytes()
    urls = []

    def fake_urlopen(url, timeout=None):
        urls.append(url)
        return io.BytesIO(served)

    monkeypatch.setattr(download_mod.urllib.request, "urlopen", fake_urlopen)
    root = tmp_path / "root"
    train = load_split("cifar10", "train", root, download=True)
    assert train.labels.tolist() == labels.tolist()
    assert urls == ["https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"]
    assert (root / "cifar10" / "cifar-10-python.tar.gz").read_bytes() == served
    assert download_dataset("cifar10", root) == []  # already there: nothing fetched
    assert len(urls) == 1


def test_no_download_for_packaged_data():
    with pytest.raises(DatasetFileError, match="no automatic download"):
        download_dataset("synthetic")


# ---------------------------------------------------------------- augmentation


def test_flip_only_mode_equals_torch_flip():
    x = torch.randint(0, 256, (400, 3, 8, 8), dtype=torch.uint8)
    generator = torch.Generator().manual_seed(0)
    params = sample_crop_flip(400, generator, pad=0, flip=True)
    out = apply_crop_flip(x, params, pad=0)
    assert torch.equal(out[params.flip], x[params.flip].flip(-1))
    assert torch.equal(out[~params.flip], x[~params.flip])
    assert 150 < int(params.flip.sum()) < 250  # p = 0.5, per sample
    again = random_crop_flip(x, torch.Generator().manual_seed(0), pad=0)
    assert torch.equal(again, out), "the pure function draws the same parameters"


def test_crop_windows_are_per_sample_and_match_padded_image():
    x = torch.randint(1, 256, (300, 3, 32, 32), dtype=torch.uint8)  # no zeros: padding is visible
    params = sample_crop_flip(300, torch.Generator().manual_seed(1), pad=4, flip=False)
    out = apply_crop_flip(x, params, pad=4)
    assert out.shape == x.shape and out.dtype == torch.uint8
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for i in range(0, 300, 37):
        dy, dx = int(params.dy[i]), int(params.dx[i])
        assert torch.equal(out[i], padded[i, :, dy : dy + 32, dx : dx + 32])
    offsets = set(zip(params.dy.tolist(), params.dx.tolist()))
    assert len(offsets) > 40, "offsets are drawn per sample, not per batch"
    assert params.dy.min() == 0 and params.dy.max() == 8
    # Content is only shifted: zeros appear exactly where the window leaves the image.
    zeros_per_image = (out == 0).flatten(1).sum(1)
    visible = (32 - (params.dy - 4).abs()) * (32 - (params.dx - 4).abs())
    assert torch.equal(zeros_per_image, 3 * (32 * 32 - visible))


def test_crop_then_flip_and_identity():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.uint8).view(2, 1, 4, 4)
    params = CropFlipParams(torch.tensor([1, 0]), torch.tensor([1, 2]), torch.tensor([True, True]))
    out = apply_crop_flip(x, params, pad=1)
    assert torch.equal(out[0], x[0].flip(-1))  # centred crop, flipped
    expected = torch.nn.functional.pad(x[1], (1, 1, 1, 1))[:, 0:4, 2:6].flip(-1)
    assert torch.equal(out[1], expected)
    none = sample_crop_flip(2, torch.Generator().manual_seed(0), pad=0, flip=False)
    assert torch.equal(apply_crop_flip(x, none, pad=0), x)
    with pytest.raises(ValueError):
        apply_crop_flip(x[0], none, pad=0)
    with pytest.raises(ValueError):
        sample_crop_flip(3, pad=-1)


def test_augmentation_preserves_image_statistics():
    images = load_split("cifar10-mini", "test").images
    out = random_crop_flip(images, torch.Generator().manual_seed(0), pad=4)
    # Flips keep every pixel; crops keep the central 24x24 of each image at least.
    centre = images[:, :, 4:28, 4:28].float().mean()
    assert abs(out[:, :, 4:28, 4:28].float().mean() - centre) < 3
    ratio = out.float().mean() / images.float().mean()
    assert 0.85 < ratio < 1.0  # some zero padding enters, ~12% at most on average


# ---------------------------------------------------------------- loader


@pytest.fixture(scope="module")
def synthetic_train():
    return load_split("synthetic", "train")


def collect(loader: DeviceLoader) -> list[Batch]:
    return list(loader)


def test_loader_batches_without_augmentation(synthetic_train):
    images, labels = synthetic_train
    loader = DeviceLoader(images, labels, 100, shuffle=True, seed=3)
    batches = collect(loader)
    assert len(batches) == len(loader) == 6
    assert [b.x.shape[0] for b in batches] == [100] * 5 + [12]
    for x, y, idx in batches:
        assert x.dtype == torch.float32 and y.dtype == torch.int64 and idx.dtype == torch.int64
        assert x.shape[1:] == (3, 16, 16)
        assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
        assert torch.equal(x, images[idx].float() / 255)
        assert torch.equal(y, labels[idx])
    ids = torch.cat([b.idx for b in batches])
    assert torch.equal(ids.sort().values, torch.arange(512)), "each sample exactly once"
    assert not torch.equal(ids, torch.arange(512)), "shuffled"
    ordered = torch.cat([b.idx for b in DeviceLoader(images, labels, 100, shuffle=False)])
    assert torch.equal(ordered, torch.arange(512))


def test_loader_determinism_and_epochs(synthetic_train):
    images, labels = synthetic_train
    rng_before = torch.get_rng_state()

    def run(seed: int, epoch: int) -> list[Batch]:
        loader = DeviceLoader(images, labels, 64, augment=True, pad=2, seed=seed)
        loader.set_epoch(epoch)
        return collect(loader)

    first, same = run(0, 0), run(0, 0)
    assert all(torch.equal(a.x, b.x) and torch.equal(a.idx, b.idx) for a, b in zip(first, same))
    loader = DeviceLoader(images, labels, 64, augment=True, pad=2, seed=0)
    loader.set_epoch(1)
    one, one_again = collect(loader), collect(loader)
    assert all(torch.equal(a.x, b.x) for a, b in zip(one, one_again)), (
        "iterating twice repeats the epoch"
    )
    assert not torch.equal(first[0].idx, one[0].idx), "a new epoch has a new order"
    other_seed = run(1, 0)
    assert not torch.equal(first[0].idx, other_seed[0].idx)
    # Same sample, different epochs: different crops (for most samples).
    x0 = torch.cat([b.x for b in first])[torch.cat([b.idx for b in first]).argsort()]
    x1 = torch.cat([b.x for b in one])[torch.cat([b.idx for b in one]).argsort()]
    assert (x0 != x1).flatten(1).any(1).float().mean() > 0.5
    assert torch.equal(torch.get_rng_state(), rng_before), "the global RNG is never touched"
    with pytest.raises(ValueError):
        loader.set_epoch(-1)


def test_loader_augmentation_matches_epoch_plan(synthetic_train):
    images, labels = synthetic_train
    loader = DeviceLoader(images, labels, 50, augment=True, pad=4, flip=True, seed=5)
    loader.set_epoch(2)
    order, params = loader.epoch_plan()
    assert params is not None
    batches = collect(loader)
    x = torch.cat([b.x for b in batches])
    expected = apply_crop_flip(images[order], params, pad=4).float() / 255
    assert torch.equal(x, expected)
    changed = (x != images[order].float() / 255).flatten(1).any(1)
    assert changed.float().mean() > 0.5


def test_loader_drop_last(synthetic_train):
    images, labels = synthetic_train
    keep = DeviceLoader(images[:10], labels[:10], 4, drop_last=False)
    drop = DeviceLoader(images[:10], labels[:10], 4, drop_last=True)
    assert len(keep) == 3 and [b.x.shape[0] for b in keep] == [4, 4, 2]
    assert len(drop) == 2 and [b.x.shape[0] for b in drop] == [4, 4]
    with pytest.raises(ValueError, match="no batch"):
        DeviceLoader(images[:3], labels[:3], 4, drop_last=True)


def test_loader_indices_subset_reports_global_ids(synthetic_train):
    images, labels = synthetic_train
    subset = torch.tensor([5, 17, 200, 511, 42])
    loader = DeviceLoader(images, labels, 2, indices=subset, seed=1)
    assert loader.num_ids == 512 and loader.num_subset == 5 and loader.images.shape[0] == 5
    batches = collect(loader)
    ids = torch.cat([b.idx for b in batches])
    assert sorted(ids.tolist()) == sorted(subset.tolist())
    for x, y, idx in batches:
        assert torch.equal(x, images[idx].float() / 255) and torch.equal(y, labels[idx])
    with pytest.raises(ValueError, match="indices"):
        DeviceLoader(images, labels, 2, indices=[0, 512])


@pytest.mark.parametrize("n, world_size", [(512, 4), (512, 3), (10, 4), (11, 4)])
@pytest.mark.parametrize("drop_last", [False, True])
def test_loader_shards(synthetic_train, n, world_size, drop_last):
    images, labels = synthetic_train[0][:n], synthetic_train[1][:n]
    shards = []
    for rank in range(world_size):
        loader = DeviceLoader(
            images, labels, 2, seed=7, rank=rank, world_size=world_size, drop_last=drop_last
        )
        loader.set_epoch(4)
        order, _ = loader.epoch_plan()
        shard = loader.ids[order]
        shards.append(shard)
        yielded = torch.cat([b.idx for b in loader])
        # Batches are consecutive slices of the shard; drop_last only drops the last partial batch.
        assert torch.equal(yielded, shard[: len(yielded)])
        assert len(loader) == (len(shard) // 2 if drop_last else -(-len(shard) // 2))
    assert len({len(s) for s in shards}) == 1, "every rank gets as many samples (DDP must not hang)"
    full = DeviceLoader(images, labels, n, seed=7)
    full.set_epoch(4)
    permutation = next(iter(full)).idx
    everything = torch.cat(shards)
    if n % world_size == 0:
        assert torch.equal(everything.sort().values, torch.arange(n)), "disjoint and covering"
    elif drop_last:  # the tail of the permutation (< world_size samples) is dropped
        assert len(set(everything.tolist())) == len(everything) == (n // world_size) * world_size
    else:  # padded by wrapping around: covers everything, a few samples twice
        assert set(everything.tolist()) == set(range(n)) and len(everything) < n + world_size
    # Rank r holds global positions r, r + W, ...: interleaving the shards gives the permutation.
    interleaved = torch.stack(shards, 1).flatten()
    common = min(n, len(interleaved))
    assert torch.equal(interleaved[:common], permutation[:common])


def test_loader_augmentation_independent_of_world_size(synthetic_train):
    images, labels = synthetic_train
    single = DeviceLoader(images, labels, 128, augment=True, pad=2, seed=9)
    by_id = {}
    for b in single:
        for i, x in zip(b.idx.tolist(), b.x):
            by_id[i] = x
    for rank in range(2):
        shard = DeviceLoader(
            images, labels, 64, augment=True, pad=2, seed=9, rank=rank, world_size=2
        )
        for b in shard:
            for i, x in zip(b.idx.tolist(), b.x):
                assert torch.equal(by_id[i], x)


def test_loader_rejects_bad_arguments(synthetic_train):
    images, labels = synthetic_train
    with pytest.raises(ValueError, match="uint8"):
        DeviceLoader(images.float(), labels, 8)
    with pytest.raises(ValueError, match="labels"):
        DeviceLoader(images, labels[:-1], 8)
    with pytest.raises(ValueError, match="batch_size"):
        DeviceLoader(images, labels, 0)
    with pytest.raises(ValueError, match="rank"):
        DeviceLoader(images, labels, 8, rank=2, world_size=2)
    with pytest.raises(ValueError, match="seed"):
        DeviceLoader(images, labels, 8, seed=-1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_loader_on_cuda_matches_cpu(synthetic_train):
    images, labels = synthetic_train
    cpu = DeviceLoader(images, labels, 100, augment=True, pad=2, seed=1)
    gpu = DeviceLoader(images, labels, 100, augment=True, pad=2, seed=1, device="cuda")
    for a, b in zip(cpu, gpu):
        assert b.x.is_cuda and b.idx.is_cuda
        assert torch.equal(a.x, b.x.cpu()) and torch.equal(a.idx, b.idx.cpu())


# ---------------------------------------------------------------- subsets and make_loaders


def test_subset_indices():
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 5)
    assert torch.equal(subset_indices(labels, 10), torch.arange(10))
    assert torch.equal(subset_indices(labels, None), torch.arange(85))
    chosen = subset_indices(labels, 30, mode="stratified", seed=0)
    assert len(chosen) == 30 and torch.equal(chosen, chosen.sort().values)
    counts = torch.bincount(labels[chosen], minlength=3).tolist()
    assert counts[2] == 5 and abs(counts[0] - counts[1]) <= 1  # class 2 runs out
    assert torch.equal(chosen, subset_indices(labels, 30, mode="stratified", seed=0))
    assert not torch.equal(chosen, subset_indices(labels, 30, mode="stratified", seed=1))
    with pytest.raises(ValueError):
        subset_indices(labels, 86)
    with pytest.raises(ValueError):
        subset_indices(labels, 5, mode="random")


def test_make_loaders():
    loaders = make_loaders(
        "cifar10-mini", batch_size=256, eval_batch_size=500, eval_n=1000, train_n=600
    )
    assert loaders.info.name == "cifar10-mini"
    assert loaders.train.augment and loaders.train.pad == 4 and loaders.train.flip
    assert loaders.train.num_ids == 5085 and loaders.train.num_subset == 600
    assert len(loaders.train) == 3 and len(loaders.test) == 2
    test_ids = torch.cat([b.idx for b in loaders.test])
    assert torch.equal(test_ids, torch.arange(1000)), (
        "eval subset: the first n test images, in order"
    )
    plain = make_loaders("synthetic", augment=True)
    assert not plain.train.augment, "synthetic has no standard augmentation"
    assert plain.train.num_subset == 512 and plain.test.num_subset == 256

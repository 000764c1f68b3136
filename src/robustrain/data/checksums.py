"""Official md5 tables and md5 verification with a cache.

The tables are plain module-level dicts read at call time, so tests (or a user with a
re-packed copy of a dataset) can override an entry with ``monkeypatch.setitem``.

Hashing a multi-hundred-MB file takes seconds, so :func:`file_md5` remembers its result twice:
per process, and across runs in a small stamp file (``.robustrain_verified.json``) next to the
data. The cache key is the file's identity (size, modification time, change time, inode) plus
the md5 of its first and last 64 KiB: size + mtime alone miss an edit that keeps both (``touch
-r``, a restored mtime), while the change time cannot be set back by a user and the edge hash
catches a rewritten header or tail whatever the timestamps say. Copying the files (new inode
and ctime) costs one re-hash. A folder that cannot be written (a read-only dataset mount) only
loses the cross-run cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path

__all__ = ["CHECKSUMS", "CONTENT_CHECKSUMS", "STAMP_NAME", "md5_bytes", "file_md5"]

#: md5 of each official file, by dataset then path relative to the data folder.
CHECKSUMS: dict[str, dict[str, str]] = {
    "cifar10": {
        "cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a",
        "cifar-10-batches-py/data_batch_1": "c99cafc152244af753f735de768cd75f",
        "cifar-10-batches-py/data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
        "cifar-10-batches-py/data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
        "cifar-10-batches-py/data_batch_4": "634d18415352ddfa80567beed471001a",
        "cifar-10-batches-py/data_batch_5": "482c414d41f54cd18b22e5b47d7c3f1c",
        "cifar-10-batches-py/test_batch": "40351d587109b95175f43aff81a1287e",
    },
    "cifar100": {
        "cifar-100-python.tar.gz": "eb9058c3a382ffc7106e4002c42a8d85",
        "cifar-100-python/train": "16019d7e3df5f24257cddd939b257f8d",
        "cifar-100-python/test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
    },
    "svhn": {
        "train_32x32.mat": "e26dedcc434d2e4c54c9b2d4a06d8373",
        "test_32x32.mat": "eb5a983be6a315427106f1b6a0df30ba",
    },
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
    "cifar10-mini": {
        "cifar10_mini.npz": "18d087cf9488812306c46a5f1ac43ed7",
    },
}

#: md5 of the *decompressed* IDX files. A copy that was re-compressed (Debian's
#: dataset-fashion-mnist package, for one) has a different .gz md5 but the same content,
#: so IDX files are accepted when either their .gz md5 or their content md5 matches.
CONTENT_CHECKSUMS: dict[str, dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    },
}

#: Name of the cross-run md5 cache written next to verified files.
STAMP_NAME = ".robustrain_verified.json"

#: bytes hashed at each end of a file for the cache key
EDGE_BYTES = 1 << 16

# (resolved path, size, mtime_ns, ctime_ns, inode, edges md5) -> md5; lives for the process.
_PROCESS_CACHE: dict[tuple[str, int, int, int, int, str], str] = {}


def md5_bytes(data: bytes | bytearray | memoryview) -> str:
    """md5 hex digest of an in-memory buffer.

    Example:
        >>> md5_bytes(b"")
        'd41d8cd98f00b204e9800998ecf8427e'
    """
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _hash_file(path: Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def _read_stamp(folder: Path) -> dict:
    try:
        with open(folder / STAMP_NAME, encoding="utf-8") as handle:
            data = json.load(handle)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        # No stamp yet, or a damaged one: it is only a cache, so start afresh.
        return {}


def _write_stamp(folder: Path, name: str, record: dict) -> None:
    stamp = _read_stamp(folder)
    stamp[name] = record
    # A unique name opened with "x" (not mkstemp, which would make the file private to us).
    tmp = folder / f"{STAMP_NAME}.{os.getpid()}.{uuid.uuid4().hex}.tmp"
    try:
        handle = open(tmp, "x", encoding="utf-8")
    except OSError:
        return  # read-only folder: keep the per-process cache only
    try:
        with handle:
            json.dump(stamp, handle, indent=1, sort_keys=True)
        # Atomic: concurrent processes (DDP ranks) never see a half-written stamp.
        os.replace(tmp, folder / STAMP_NAME)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def _edges_md5(path: Path, size: int) -> str:
    """md5 of the first and last :data:`EDGE_BYTES` of a file (all of it when smaller)."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        digest.update(handle.read(EDGE_BYTES))
        if size > EDGE_BYTES:
            handle.seek(max(EDGE_BYTES, size - EDGE_BYTES))
            digest.update(handle.read(EDGE_BYTES))
    return digest.hexdigest()


def _identity(path: Path) -> dict:
    """What the cache compares: size, mtime, ctime, inode and the md5 of the file's two ends."""
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "inode": st.st_ino,
            "edges_md5": _edges_md5(path, st.st_size)}


def file_md5(path: str | os.PathLike, *, stamp: bool = True) -> str:
    """md5 of a file, cached per process and (with ``stamp=True``) across runs.

    The cache key is (path, size, mtime, ctime, inode, md5 of the first and last 64 KiB):
    replacing or editing the file invalidates it, even when size and mtime are kept.

    Args:
        path: the file.
        stamp: also read/write the ``.robustrain_verified.json`` stamp in the file's folder.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "empty.bin"; _ = p.write_bytes(b"")
        >>> file_md5(p)
        'd41d8cd98f00b204e9800998ecf8427e'
    """
    path = Path(path).resolve()
    ident = _identity(path)
    key = (str(path), ident["size"], ident["mtime_ns"], ident["ctime_ns"], ident["inode"], ident["edges_md5"])
    if key in _PROCESS_CACHE:
        return _PROCESS_CACHE[key]
    md5 = None
    if stamp:
        record = _read_stamp(path.parent).get(path.name)
        if (
            isinstance(record, dict)
            and all(record.get(k) == v for k, v in ident.items())
            and isinstance(record.get("md5"), str)
        ):
            md5 = record["md5"]
    if md5 is None:
        md5 = _hash_file(path)
        if stamp:
            _write_stamp(path.parent, path.name, {**ident, "md5": md5})
    _PROCESS_CACHE[key] = md5
    return md5


def clear_process_cache() -> None:
    """Forgets the per-process md5 cache (tests use it; the stamp files are left alone)."""
    _PROCESS_CACHE.clear()

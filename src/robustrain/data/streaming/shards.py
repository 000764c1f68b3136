"""WebDataset tar shards, read with the standard library's ``tarfile`` (the ``webdataset``
package is not needed), and :func:`write_shards`, which writes them from an image folder.

A shard is a plain tar whose members are grouped by key (the name up to the first dot):
``<key>.jpg`` or ``<key>.png`` (the encoded image, bytes exactly as in the source folder),
``<key>.cls`` (the label, ASCII digits) and ``<key>.idx`` (the global id, ASCII digits). This is
WebDataset's convention, so these shards also stream with the ``webdataset`` package, and shards
written by other tools (without ``.idx``) are read too: their ids are then the order of the
samples across the shards.

Reading is random access (:class:`ShardSource`): opening scans the tar headers once (no image is
read), and a worker then reads sample ``i`` with one ``seek`` + ``read`` in its own file handle.
That is what lets shards give exactly the batches of the folder they were written from (one
shuffled order over global ids, the same per-sample augmentation), at the price of needing the
shards on a file system (local disk, NFS, a FUSE mount of object storage), not a pipe.

Layout written by :func:`write_shards` (``robustrain data shard SRC OUT``)::

    OUT/manifest.json                   classes, and per split: count, pattern, shards + sha256
    OUT/train/shard-000000.tar ...      data.root='OUT/train/shard-{000000..000127}.tar'
    OUT/val/shard-000000.tar ...        the test split (found through the manifest)

Example:
    >>> expand_pattern("d/shard-{000..002}.tar")
    ['d/shard-000.tar', 'd/shard-001.tar', 'd/shard-002.tar']
"""

from __future__ import annotations

import glob
import hashlib
import io
import itertools
import json
import os
import re
import tarfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from robustrain.utils.errors import DatasetFileError
from robustrain.utils.fileio import atomic_open, write_json

from .sources import ImageSource, open_imagefolder, val_dir

__all__ = ["MANIFEST", "MANIFEST_FORMAT", "ShardSource", "expand_pattern", "open_shards", "write_shards"]

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "robustrain-shards-v1"
#: member suffixes read as the image of a sample
IMAGE_SUFFIXES = ("jpg", "jpeg", "png")
_SHARD_HINT = ("write shards with `robustrain data shard SRC OUT` and set "
               "data.root='OUT/train/shard-{000000..NNNNNN}.tar'")
_BRACE = re.compile(r"\{([^{}]*)\}")


def expand_pattern(pattern: str) -> list[str]:
    """Brace expansion as WebDataset spells shard lists: ``{000000..000127}`` (zero-padded
    numeric range), ``{a,b}`` (alternatives), several groups allowed; a part with ``*`` or ``?``
    is then globbed (sorted).

    Example:
        >>> expand_pattern("s-{a,b}-{1..2}.tar")
        ['s-a-1.tar', 's-a-2.tar', 's-b-1.tar', 's-b-2.tar']
    """
    m = _BRACE.search(pattern)
    if m is None:
        return sorted(glob.glob(pattern)) if any(ch in pattern for ch in "*?[") else [pattern]
    body = m.group(1)
    rng = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    if rng:
        lo, hi = rng.group(1), rng.group(2)
        width = len(lo) if lo.startswith("0") else 0
        choices = [str(k).zfill(width) for k in range(int(lo), int(hi) + 1)]
    else:
        choices = body.split(",")
    head, tail = pattern[: m.start()], pattern[m.end():]
    return list(itertools.chain.from_iterable(expand_pattern(head + c + tail) for c in choices))


def _manifest_near(first: Path) -> tuple[dict[str, Any] | None, Path | None]:
    """The manifest of :func:`write_shards` beside the shards' folder or in it."""
    for folder in (first.parent.parent, first.parent):
        path = folder / MANIFEST
        if path.is_file():
            try:
                manifest = json.loads(path.read_text())
            except (OSError, ValueError) as e:
                raise DatasetFileError(f"shard manifest {path} is not readable JSON ({str(e)[:80]}); "
                                       "write the shards again with `robustrain data shard`") from None
            if isinstance(manifest, dict) and manifest.get("format") == MANIFEST_FORMAT:
                return manifest, folder
    return None, None


class _Index:
    """One shard's members, gathered while scanning its headers."""

    def __init__(self) -> None:
        self.image: dict[str, tuple[int, int, str]] = {}  # key -> (offset, size, suffix)
        self.cls: dict[str, int] = {}
        self.idx: dict[str, int] = {}
        self.order: list[str] = []


def _read_int(tf: tarfile.TarFile, member: tarfile.TarInfo, shard: str) -> int:
    raw = tf.extractfile(member).read(64)  # type: ignore[union-attr]
    try:
        return int(raw.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        raise DatasetFileError(f"shard {shard}: {member.name} holds {raw[:20]!r}, not an integer; "
                               f"{_SHARD_HINT}") from None


def _scan(path: str) -> _Index:
    index = _Index()
    try:
        with tarfile.open(path, "r:") as tf:
            for member in tf:
                if not member.isfile():
                    continue
                stem, base = member.name.rsplit("/", 1) if "/" in member.name else ("", member.name)
                key, _, suffix = base.partition(".")
                key = f"{stem}/{key}" if stem else key
                suffix = suffix.lower()
                if key not in index.image and key not in index.cls and key not in index.idx:
                    index.order.append(key)
                if suffix in IMAGE_SUFFIXES:
                    index.image[key] = (member.offset_data, member.size, "jpg" if suffix == "jpeg" else suffix)
                elif suffix == "cls":
                    index.cls[key] = _read_int(tf, member, path)
                elif suffix == "idx":
                    index.idx[key] = _read_int(tf, member, path)
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DatasetFileError(f"shard {path} is not a readable tar file ({type(e).__name__}: {str(e)[:80]}); "
                               f"{_SHARD_HINT}") from None
    return index


class ShardSource(ImageSource):
    """Random access to the samples of a list of tar shards (see the module docstring).

    Args:
        shards: shard file paths, in order.
        classes: class names (from the manifest; else ``"0" .. str(max label)``).
        where: the pattern, for messages.

    Raises:
        DatasetFileError: an unreadable shard, a sample without image or ``.cls``, ids that are not
            ``0 .. N-1`` exactly once, an empty shard list.
    """

    def __init__(self, shards: list[str], classes: tuple[str, ...] | None = None, *, where: str = "") -> None:
        self.shards = list(shards)
        self.where = where or ",".join(shards[:2])
        keys: list[str] = []
        shard_of: list[int] = []
        offset: list[int] = []
        size: list[int] = []
        suffix: list[str] = []
        labels: list[int] = []
        ids: list[int] = []
        with_idx = 0
        for s, path in enumerate(self.shards):
            index = _scan(path)
            for key in index.order:
                if key not in index.image or key not in index.cls:
                    lacks = "an image (.jpg/.png)" if key not in index.image else "a label (.cls)"
                    raise DatasetFileError(f"shard {path}: sample {key!r} has no {lacks}; {_SHARD_HINT}")
                off, n, suf = index.image[key]
                keys.append(key)
                shard_of.append(s)
                offset.append(off)
                size.append(n)
                suffix.append(suf)
                labels.append(index.cls[key])
                if key in index.idx:
                    with_idx += 1
                    ids.append(index.idx[key])
        total = len(keys)
        if total == 0:
            raise DatasetFileError(f"the shards {self.where} hold no sample; {_SHARD_HINT}")
        if with_idx == 0:
            ids = list(range(total))  # shards of other tools: ids follow the order of the samples
        elif with_idx != total:
            raise DatasetFileError(f"the shards {self.where}: {total - with_idx} of {total} samples have no .idx "
                                   f"(global id); {_SHARD_HINT}")
        order = np.asarray(ids, dtype=np.int64)
        if not np.array_equal(np.sort(order), np.arange(total)):
            dup = np.bincount(order[(order >= 0) & (order < total)], minlength=total)
            bad = int(np.flatnonzero(dup != 1)[0]) if (dup != 1).any() else int(order.max())
            raise DatasetFileError(f"the shards {self.where}: the .idx ids are not 0..{total - 1} exactly once "
                                   f"(id {bad} is missing, repeated or out of range); {_SHARD_HINT}")
        pos = np.empty(total, dtype=np.int64)
        pos[order] = np.arange(total)  # pos[id] = scan position of that id
        self.keys = [keys[p] for p in pos]
        self.shard_of = np.asarray(shard_of, dtype=np.int32)[pos]
        self.offset = np.asarray(offset, dtype=np.int64)[pos]
        self.size = np.asarray(size, dtype=np.int64)[pos]
        self.suffixes = [suffix[p] for p in pos]
        self.labels = torch.as_tensor(np.asarray(labels, dtype=np.int64)[pos])
        if int(self.labels.min()) < 0:
            raise DatasetFileError(f"the shards {self.where} have a negative label; {_SHARD_HINT}")
        n_classes = int(self.labels.max()) + 1
        if classes is not None and len(classes) < n_classes:
            raise DatasetFileError(f"the shards {self.where} have label {n_classes - 1} but the manifest names "
                                   f"{len(classes)} classes; {_SHARD_HINT}")
        self.classes = tuple(classes) if classes is not None else tuple(str(k) for k in range(n_classes))
        self._files: dict[int, Any] = {}
        self._pid = -1

    def _handle(self, s: int) -> Any:
        # one handle per shard per process: a handle inherited over fork shares its file offset
        if self._pid != os.getpid():
            self._files, self._pid = {}, os.getpid()
        f = self._files.get(s)
        if f is None:
            f = self._files[s] = open(self.shards[s], "rb")
        return f

    def read(self, i: int) -> bytes:
        f = self._handle(int(self.shard_of[i]))
        f.seek(int(self.offset[i]))
        return f.read(int(self.size[i]))

    def describe(self, i: int) -> str:
        return f"{self.shards[int(self.shard_of[i])]}:{self.keys[i]}.{self.suffixes[i]}"

    def suffix(self, i: int) -> str:
        return self.suffixes[i]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_files"], state["_pid"] = {}, -1  # open files do not travel to a worker
        return state


def _shard_list(pattern: str) -> list[str]:
    paths = expand_pattern(pattern)
    missing = [p for p in paths if not Path(p).is_file()]
    if not paths or len(missing) == len(paths):
        raise DatasetFileError(f"data.root={pattern!r} matches no shard file"
                               + (f" (first: {paths[0]})" if paths else "") + f"; {_SHARD_HINT}")
    if missing:
        raise DatasetFileError(f"data.root={pattern!r}: {len(missing)} of {len(paths)} shards are missing "
                               f"(first: {missing[0]}); fix the range in the pattern or copy the shards")
    return paths


def open_shards(root: str, split: str, *, test_root: str | None = None) -> ShardSource:
    """The ``split`` of a shard dataset: ``train`` = the shards of pattern ``root``; ``test`` =
    ``test_root`` (a pattern), else the ``val`` split of the manifest beside the training shards.

    Raises:
        DatasetFileError: a pattern matching nothing, missing shards, no test split found.
    """
    train = _shard_list(root)
    manifest, base = _manifest_near(Path(train[0]))
    classes = tuple(manifest["classes"]) if manifest else None
    if split == "train":
        pattern, paths = root, train
    elif split == "test":
        if test_root:
            pattern = test_root
        elif manifest and "val" in manifest.get("splits", {}):
            pattern = str(base / manifest["splits"]["val"]["pattern"])
        else:
            raise DatasetFileError(f"no test split for the shards {root!r}: no manifest with a val split beside them; "
                                   "set data.test_root='DIR/val/shard-{000000..NNNNNN}.tar'")
        paths = _shard_list(pattern)
    else:
        raise ValueError(f"unknown split {split!r}; expected 'train' or 'test'")
    source = ShardSource(paths, classes, where=pattern)
    if manifest:
        # the whole split of the manifest (not a chosen subset of its shards): the counts must agree
        entry = manifest.get("splits", {}).get("train" if split == "train" else "val") or {}
        if len(paths) == len(entry.get("shards", ())) and entry.get("count") not in (None, len(source)):
            raise DatasetFileError(f"the shards {pattern!r} hold {len(source)} samples but their manifest says "
                                   f"{entry['count']}; write the shards again with `robustrain data shard`")
    return source


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _add(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644  # fixed metadata: the same images give the same bytes
    tf.addfile(info, io.BytesIO(data))


def _write_split(source: ImageSource, out: Path, split: str, shard_size: int,
                 progress: Callable[[str], None] | None) -> dict[str, Any]:
    folder = out / split
    folder.mkdir(parents=True, exist_ok=True)
    shards = []
    n = len(source)
    count = (n + shard_size - 1) // shard_size
    for k in range(count):
        path = folder / f"shard-{k:06d}.tar"
        lo, hi = k * shard_size, min(n, (k + 1) * shard_size)
        with atomic_open(path, "wb") as f, tarfile.open(fileobj=f, mode="w", format=tarfile.USTAR_FORMAT) as tf:
            for i in range(lo, hi):
                key = f"{i:08d}"
                _add(tf, f"{key}.{source.suffix(i)}", source.read(i))
                _add(tf, f"{key}.cls", str(int(source.labels[i])).encode())
                _add(tf, f"{key}.idx", str(i).encode())
        shards.append({"file": f"{split}/{path.name}", "count": hi - lo, "sha256": _sha256(path)})
        if progress is not None:
            progress(f"{split}: shard {k + 1}/{count} ({hi} of {n} images)")
    return {"count": n, "pattern": f"{split}/shard-{{000000..{count - 1:06d}}}.tar", "shards": shards}


def write_shards(src: str | os.PathLike, out: str | os.PathLike, *, shard_size: int = 1000,
                 progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Write the image folder ``src`` (ImageNet or TinyImageNet layout) as tar shards in ``out``:
    ``out/train/shard-NNNNNN.tar``, ``out/val/...`` when ``src`` has a ``val/`` folder, and
    ``out/manifest.json`` (classes; per split the count, the pattern for ``data.root`` and each
    shard's sample count and sha256). Samples go in global-id order, ``shard_size`` per shard,
    with the image bytes unchanged, so the shards decode to exactly the folder's pixels.

    Returns:
        The manifest.

    Raises:
        DatasetFileError: a bad source folder (as :func:`open_imagefolder`), or ``out`` already
            holds shards.
        ValueError: ``shard_size < 1``.

    Example:
        >>> import tempfile, pathlib
        >>> src = pathlib.Path(tempfile.mkdtemp())
        >>> for c in ("a", "b"):
        ...     (src / "train" / c).mkdir(parents=True)
        ...     _ = (src / "train" / c / "0.png").write_bytes(b"png bytes")
        >>> m = write_shards(src, src / "shards", shard_size=1)
        >>> m["splits"]["train"]["count"], m["splits"]["train"]["pattern"]
        (2, 'train/shard-{000000..000001}.tar')
        >>> ShardSource(expand_pattern(str(src / "shards" / m["splits"]["train"]["pattern"]))).labels.tolist()
        [0, 1]
    """
    if shard_size < 1:
        raise ValueError(f"--shard-size must be >= 1, got {shard_size}")
    out = Path(out)
    if (out / MANIFEST).exists():
        raise DatasetFileError(f"{out} already holds shards ({out / MANIFEST}); choose another OUT folder or remove it")
    train = open_imagefolder(str(src), "train")
    splits = {"train": _write_split(train, out, "train", shard_size, progress)}
    if val_dir(str(src)).is_dir():
        splits["val"] = _write_split(open_imagefolder(str(src), "test"), out, "val", shard_size, progress)
    manifest = {"format": MANIFEST_FORMAT, "source": str(Path(src).resolve()), "classes": list(train.classes),
                "shard_size": shard_size, "splits": splits}
    write_json(manifest, out / MANIFEST)
    return manifest

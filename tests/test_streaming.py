"""Streaming datasets (issue 20, part 1): image folders and WebDataset shards decoded in workers.

The data is made here: 10 classes x 8 images of the shipped cifar10-mini subset, written as PNG
and JPEG at 32x32 in ImageNet layout (train/ + val/), a TinyImageNet-style val folder, and the
shards ``robustrain data shard`` writes from the folder.
"""

from __future__ import annotations

import json
import logging
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from robustrain.build import build_run
from robustrain.cli import main
from robustrain.config import load_config
from robustrain.data import load_split
from robustrain.data.streaming import (
    BatchPlanSampler, PillowMissingError, ShardSource, StreamingLoader, decode_images, expand_pattern,
    open_imagefolder, open_shards, write_shards,
)
from robustrain.data.streaming.decode import eval_view, random_resized_crop_box, require_pillow
from robustrain.train import fit
from robustrain.utils.errors import ConfigError, DatasetFileError

CLASSES = [f"n{k:08d}" for k in range(10)]
PER_CLASS, VAL_PER_CLASS = 8, 3


def _save(arr: np.ndarray, path: Path, k: int) -> None:
    """Even k as PNG, odd k as JPEG (ImageNet's .JPEG suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(arr.transpose(1, 2, 0))
    if k % 2 == 0:
        img.save(path.with_suffix(".png"))
    else:
        img.save(path.with_suffix(".JPEG"), quality=95)


def _make_folder(root: Path, *, tiny_val: bool = False) -> Path:
    train_x, train_y = load_split("cifar10-mini", "train")
    test_x, test_y = load_split("cifar10-mini", "test")
    for c, wnid in enumerate(CLASSES):
        rows = torch.nonzero(train_y == c).reshape(-1)[:PER_CLASS]
        for k, r in enumerate(rows.tolist()):
            sub = root / "train" / wnid / ("images" if tiny_val else "") / f"{wnid}_{k}"
            _save(train_x[r].numpy(), sub, k)
    lines = []
    for c, wnid in enumerate(CLASSES):
        rows = torch.nonzero(test_y == c).reshape(-1)[:VAL_PER_CLASS]
        for k, r in enumerate(rows.tolist()):
            if tiny_val:
                name = f"val_{c * VAL_PER_CLASS + k}"
                _save(test_x[r].numpy(), root / "val" / "images" / name, k)
                suffix = ".png" if k % 2 == 0 else ".JPEG"
                lines.append(f"{name}{suffix}\t{wnid}\t0\t0\t31\t31")
            else:
                _save(test_x[r].numpy(), root / "val" / wnid / f"val_{k}", k)
    if tiny_val:
        (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return _make_folder(tmp_path_factory.mktemp("imagenet"))


@pytest.fixture(scope="module")
def shards(folder, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shards") / "out"
    assert main(["data", "shard", str(folder), str(out), "--shard-size", "16", "--quiet"]) == 0
    return out


def _pattern(shards: Path) -> str:
    return str(shards / "train" / "shard-{000000..000004}.tar")


def _batches(loader, epoch, start_step=0):
    loader.set_epoch(epoch, start_step)
    return [tuple(t.clone() for t in b) for b in loader]


def _loader(source, batch_size=12, **kw):
    kw = {"image_size": 32, "resize": 32, "workers": 0, "seed": 3, **kw}
    return StreamingLoader(source, batch_size, **kw)


# ------------------------------------------------------------------ folders, views, ids
def test_folder_layout_ids_and_labels(folder):
    src = open_imagefolder(str(folder), "train")
    assert src.classes == tuple(CLASSES) and len(src) == 10 * PER_CLASS
    assert src.labels.tolist() == [c for c in range(10) for _ in range(PER_CLASS)]
    # global ids: classes sorted by name, then files sorted inside the class
    assert src.describe(0).endswith(f"{CLASSES[0]}/{CLASSES[0]}_0.png")
    assert src.describe(1).endswith(f"{CLASSES[0]}/{CLASSES[0]}_1.JPEG")
    test = open_imagefolder(str(folder), "test")
    assert len(test) == 10 * VAL_PER_CLASS and test.labels.tolist() == [c for c in range(10) for _ in range(3)]


def test_batches_shapes_dtypes_ranges_ids(folder):
    src = open_imagefolder(str(folder), "train")
    loader = _loader(src, train=True)
    batches = _batches(loader, 0)
    assert len(batches) == len(loader) == 7  # ceil(80 / 12)
    for x, y, idx in batches:
        assert x.dtype == torch.float32 and x.shape[1:] == (3, 32, 32)
        assert y.dtype == torch.int64 and idx.dtype == torch.int64
        assert 0 <= float(x.min()) and float(x.max()) <= 1
        assert torch.equal(y, src.labels[idx])
    ids = torch.cat([b[2] for b in batches])
    assert sorted(ids.tolist()) == list(range(80))  # one epoch = every image once
    # a pure function of (seed, epoch): again the same, another epoch another order
    again = _batches(loader, 0)
    assert all(torch.equal(a, b) for p, q in zip(batches, again) for a, b in zip(p, q))
    assert not torch.equal(ids, torch.cat([b[2] for b in _batches(loader, 1)]))


def test_eval_view_is_the_pixels_at_native_size(folder):
    """32x32 PNGs with resize = image_size = 32: the evaluation view is the image itself."""
    src = open_imagefolder(str(folder), "train")
    x, y, ids = decode_images(src, [0, 2, 8], image_size=32, resize=32)
    train_x, train_y = load_split("cifar10-mini", "train")
    first = torch.nonzero(train_y == 0).reshape(-1)
    assert torch.equal(x[0], train_x[first[0]]) and torch.equal(x[1], train_x[first[2]])
    assert ids.tolist() == [0, 2, 8] and y.tolist() == [0, 0, 1]


def test_view_hand_checks():
    img = Image.fromarray(np.arange(40 * 60 * 3, dtype=np.uint8).reshape(40, 60, 3))
    # shorter side 40 -> 40 (no resize), centre 32 crop: rows 4..35, columns 14..45
    out = eval_view(img, 32, 40)
    assert torch.equal(out, torch.from_numpy(np.asarray(img)[4:36, 14:46].copy()).permute(2, 0, 1))
    # a window never leaves the image, and the fallback is the centre crop with clamped ratio
    for seed in range(50):
        left, top, w, h = random_resized_crop_box(60, 40, np.random.default_rng(seed))
        assert 0 <= left and left + w <= 60 and 0 <= top and top + h <= 40
    never = np.random.default_rng(0)
    assert random_resized_crop_box(100, 10, never, scale=(2.0, 2.0)) == ((100 - 13) // 2, 0, 13, 10)


def test_tiny_imagenet_val_layout(tmp_path):
    root = _make_folder(tmp_path / "tiny", tiny_val=True)
    train = open_imagefolder(str(root), "train")
    assert len(train) == 80 and train.describe(0).endswith("images/n00000000_0.png")
    test = open_imagefolder(str(root), "test")
    assert len(test) == 30
    names = [Path(test.describe(i)).name for i in range(len(test))]
    assert names == sorted(names)  # sorted by file name
    ann = {ln.split("\t")[0]: CLASSES.index(ln.split("\t")[1])
           for ln in (root / "val" / "val_annotations.txt").read_text().splitlines()}
    assert test.labels.tolist() == [ann[n] for n in names]
    x, _, _ = decode_images(test, range(5), image_size=32, resize=32)
    assert x.shape == (5, 3, 32, 32) and x.dtype == torch.uint8


# ------------------------------------------------------------------ shards
def test_shard_command_writes_manifest_and_shards(folder, shards):
    manifest = json.loads((shards / "manifest.json").read_text())
    assert manifest["classes"] == CLASSES
    train = manifest["splits"]["train"]
    assert train["count"] == 80 and len(train["shards"]) == 5 and train["pattern"] == "train/shard-{000000..000004}.tar"
    assert manifest["splits"]["val"]["count"] == 30
    import hashlib
    for entry in train["shards"]:
        assert hashlib.sha256((shards / entry["file"]).read_bytes()).hexdigest() == entry["sha256"]
    with tarfile.open(shards / "train" / "shard-000000.tar") as tf:
        names = tf.getnames()[:6]
    assert names == ["00000000.png", "00000000.cls", "00000000.idx", "00000001.jpg", "00000001.cls", "00000001.idx"]
    # the image bytes are the file's bytes, unchanged
    src = open_imagefolder(str(folder), "train")
    source = open_shards(_pattern(shards), "train")
    assert source.read(1) == src.read(1) and source.read(79) == src.read(79)
    assert source.classes == tuple(CLASSES) and torch.equal(source.labels, src.labels)


def test_folder_and_shards_give_the_same_batches(folder, shards):
    a = _loader(open_imagefolder(str(folder), "train"), train=True, indices=torch.arange(3, 77))
    b = _loader(open_shards(_pattern(shards), "train"), train=True, indices=torch.arange(3, 77))
    for epoch in (0, 1):
        for p, q in zip(_batches(a, epoch), _batches(b, epoch), strict=True):
            assert all(torch.equal(s, t) for s, t in zip(p, q))
    test = open_shards(_pattern(shards), "test")  # the val split, found through the manifest
    ref = open_imagefolder(str(folder), "test")
    assert torch.equal(test.labels, ref.labels)
    assert torch.equal(decode_images(test, range(30), image_size=32, resize=32)[0],
                       decode_images(ref, range(30), image_size=32, resize=32)[0])


def test_brace_patterns():
    assert expand_pattern("a/s-{08..10}.tar") == ["a/s-08.tar", "a/s-09.tar", "a/s-10.tar"]
    assert expand_pattern("x{1,2}") == ["x1", "x2"]


# ------------------------------------------------------------------ distributed order, start step
@pytest.mark.parametrize("n, drop_last", [(23, False), (23, True), (24, False)])
def test_two_ranks_interleaved_equal_one_global_batch(n, drop_last):
    world, per_rank = 2, 3
    one = BatchPlanSampler(n, world * per_rank, seed=5, drop_last=drop_last)
    ranks = [BatchPlanSampler(n, per_rank, seed=5, rank=r, world_size=world, drop_last=drop_last)
             for r in range(world)]
    for s in (one, *ranks):
        s.set_epoch(2)
    got = [list(b) for b in zip(*(list(r) for r in ranks))]
    want = list(one)
    assert len(got) == len(want) == len(ranks[0])
    for parts, batch in zip(got, want):
        assert len(parts[0]) == len(parts[1])  # every rank the same number of samples
        inter = [item for group in zip(*parts) for item in group]
        # without drop_last the ranks pad n to a multiple of W by wrapping around, as
        # DistributedSampler does: the extra sample is global position 0 again
        assert inter[: len(batch)] == batch and len(inter) - len(batch) in (0, world - 1)
        if len(inter) > len(batch):
            assert inter[len(batch):] == want[0][: len(inter) - len(batch)]
    if not drop_last and n % world == 0:  # every sample once, with its one augmentation seed
        assert sorted(p for b in want for p, _ in b) == list(range(n))


def test_rank_loaders_decode_the_global_batch(folder):
    src = open_imagefolder(str(folder), "train")
    one = _batches(_loader(src, batch_size=8, train=True), 0)
    ranks = [_batches(_loader(src, batch_size=4, train=True, rank=r, world_size=2), 0) for r in (0, 1)]
    for (x, y, idx), r0, r1 in zip(one, *ranks, strict=True):
        # position i of rank r is position 2 i + r of the global batch
        assert torch.equal(torch.stack([r0[0], r1[0]], 1).flatten(0, 1), x)
        assert torch.equal(torch.stack([r0[2], r1[2]], 1).flatten(0, 1), idx)


class _CountingSource:
    """Counts the images read (decoded) through a real source."""

    def __init__(self, source):
        self.source, self.reads = source, 0

    def __getattr__(self, name):
        return getattr(self.source, name)

    def __len__(self):
        return len(self.source)

    def read(self, i):
        self.reads += 1
        return self.source.read(i)


def test_start_step_skips_without_decoding(folder):
    counting = _CountingSource(open_imagefolder(str(folder), "train"))
    loader = _loader(counting, batch_size=10, train=True)
    full = _batches(loader, 1)
    counting.reads = 0
    rest = _batches(loader, 1, start_step=3)
    assert counting.reads == 50  # batches 3..7 only
    assert len(rest) == 5 and all(torch.equal(a, b) for p, q in zip(full[3:], rest) for a, b in zip(p, q))
    assert len(loader) == 8 and loader.start_step == 3
    with pytest.raises(ValueError, match="start_step"):
        loader.set_epoch(0, 8)


def test_worker_processes_decode_the_same_batches(folder):
    src = open_imagefolder(str(folder), "train")
    in_process = _batches(_loader(src, batch_size=16, train=True), 0)
    workers = _loader(src, batch_size=16, train=True, workers=2)
    for epoch in (0, 1):  # the persistent workers serve a second epoch too
        got = _batches(workers, epoch)
        if epoch == 0:
            assert all(torch.equal(a, b) for p, q in zip(in_process, got, strict=True) for a, b in zip(p, q))
        assert sorted(torch.cat([b[2] for b in got]).tolist()) == list(range(80))


# ------------------------------------------------------------------ runs
SMALL_RUN = ["data.name=imagefolder", "data.image_size=32", "data.resize=32", "data.workers=0",
             "data.batch_size=35", "data.val_n=10", "model=small_cnn", "model.width=4", "method=pgd_at",
             "method.steps=1", "method.alpha=8/255", "train.epochs=1", "eval.n=10", "eval.final_n=10",
             "eval.attack=fgsm", "eval.final_attacks=[natural,fgsm]", "guard.n=8", "guard.attack=fgsm"]


def test_build_run_holds_out_validation_of_the_training_images(folder):
    run = build_run(load_config(None, SMALL_RUN + [f"data.root={folder}"]))
    assert isinstance(run.loader, StreamingLoader) and run.loader.num_ids == 80
    assert run.spec.num_classes == 10 and run.spec.image_shape == (3, 32, 32) and run.spec.dataset == "imagefolder"
    assert set(run.train_ids.tolist()).isdisjoint(run.val_ids.tolist()) and len(run.val_ids) == 10
    assert sorted(run.val_ids.tolist() + run.train_ids.tolist()) == list(range(80))
    assert run.eval_x.shape == (10, 3, 32, 32) and run.eval_x.dtype == torch.uint8
    assert run.test_x.shape[0] == 10 and run.guard_x.shape[0] == 8  # test = val/ folder, first final_n
    run.loader.set_epoch(0)
    seen = torch.cat([b.idx for b in run.loader])
    assert sorted(seen.tolist()) == sorted(run.train_ids.tolist())  # never a validation image


def test_fit_pgd_at_one_epoch_on_the_folder(folder, tmp_path):
    cfg = load_config(None, SMALL_RUN + [f"data.root={folder}", f"out_dir={tmp_path}"])
    summary = fit(cfg, progress=False, verbose=False)
    assert set(summary["final"]) == {"natural", "fgsm"} and summary["n_test"] == 10
    assert all(0 <= v <= 1 for v in summary["final"].values())
    assert summary["selection_split"]["split"] == "validation"


def test_fit_uiat_one_epoch_on_folder_and_shards_is_the_same_run(folder, shards, tmp_path):
    """UIAT keeps per-sample targets by ``Batch.idx`` (momentum from the first epoch here): the
    folder and its shards give the same ids in the same order, so the two runs are the same run."""
    uiat = ["method=uiat", "method.steps=1", "method.alpha=8/255", "method.momentum_start=0.0"]
    over = [o for o in SMALL_RUN if not o.startswith("method")] + uiat
    from_folder = fit(load_config(None, over + [f"data.root={folder}", f"out_dir={tmp_path}", "name=f"]),
                      progress=False, verbose=False)
    from_shards = fit(load_config(None, over + ["data.name=webdataset", f"data.root={_pattern(shards)}",
                                                f"out_dir={tmp_path}", "name=s"]), progress=False, verbose=False)
    a = torch.load(tmp_path / "f" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "s" / "last.pt", weights_only=True)
    assert set(a["method"]) == set(b["method"]) and any("z" in k for k in a["method"])
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for key in a["method"]:
        assert torch.equal(a["method"][key], b["method"][key]), key
    assert from_folder["final"] == from_shards["final"]


# ------------------------------------------------------------------ bad input: one line each
def _one_line(err: BaseException) -> str:
    msg = str(err)
    assert "\n" not in msg and "Traceback" not in msg, msg
    return msg


def test_missing_root_and_empty_class_folder(tmp_path, folder):
    with pytest.raises(DatasetFileError) as e:
        open_imagefolder(str(tmp_path / "nope"), "train")
    assert "does not exist" in _one_line(e.value)
    root = tmp_path / "bad"
    (root / "train" / "a").mkdir(parents=True)
    (root / "train" / "b").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(root / "train" / "a" / "x.png")
    with pytest.raises(DatasetFileError) as e:
        open_imagefolder(str(root), "train")
    assert "train/b has no images" in _one_line(e.value) and "remove the folder" in str(e.value)


def test_shard_pattern_matching_nothing(tmp_path, shards):
    with pytest.raises(DatasetFileError) as e:
        open_shards(str(tmp_path / "shard-{000000..000003}.tar"), "train")
    assert "matches no shard file" in _one_line(e.value) and "robustrain data shard" in str(e.value)
    with pytest.raises(DatasetFileError) as e:  # the range runs past the shards written
        open_shards(str(shards / "train" / "shard-{000000..000009}.tar"), "train")
    assert "5 of 10 shards are missing" in _one_line(e.value)


def _corrupt_copy(folder: Path, tmp_path: Path) -> tuple[Path, str]:
    import shutil
    root = tmp_path / "corrupt"
    shutil.copytree(folder, root)
    victim = sorted((root / "train" / CLASSES[1]).glob("*.JPEG"))[0]
    victim.write_bytes(victim.read_bytes()[:200])  # a truncated JPEG
    return root, victim.name


def test_corrupt_jpeg_refused_with_one_line(folder, tmp_path):
    root, name = _corrupt_copy(folder, tmp_path)
    loader = _loader(open_imagefolder(str(root), "train"), batch_size=80, train=True, workers=2)
    loader.set_epoch(0)
    with pytest.raises(DatasetFileError) as e:
        list(loader)
    msg = _one_line(e.value)
    assert name in msg and "data.on_corrupt=skip" in msg


def test_corrupt_jpeg_skipped_and_counted_once(folder, tmp_path, caplog):
    root, name = _corrupt_copy(folder, tmp_path)
    loader = _loader(open_imagefolder(str(root), "train"), batch_size=16, train=True, on_corrupt="skip")
    loader.set_epoch(0)
    with caplog.at_level(logging.WARNING, logger="robustrain.data.streaming.loader"):
        batches = list(loader)
    assert sum(b.x.shape[0] for b in batches) == 79 and len(loader.skipped) == 1
    warnings = [r.getMessage() for r in caplog.records if "corrupt" in r.getMessage()]
    assert len(warnings) == 1 and "skipped 1 corrupt image(s) in epoch 1" in warnings[0] and name in warnings[0]


def test_corrupt_jpeg_skipped_under_ddp_keeps_the_batch_size(folder, tmp_path):
    """Ranks keep equal batch sizes (the methods' collectives gather equal shapes)."""
    root, _ = _corrupt_copy(folder, tmp_path)
    src = open_imagefolder(str(root), "train")
    skipped = 0
    for r in (0, 1):
        loader = _loader(src, batch_size=8, train=True, on_corrupt="skip", rank=r, world_size=2)
        loader.set_epoch(0)
        batches = list(loader)
        assert [b.x.shape[0] for b in batches] == [8] * 5  # 40 samples per rank, none dropped
        assert all(torch.equal(b.y, src.labels[b.idx]) for b in batches)
        skipped += len(loader.skipped)
    assert skipped == 1  # the one corrupt image, on whichever rank drew it


def test_cli_bad_inputs_print_one_line(tmp_path, capsys):
    assert main(["train", "data.name=imagefolder", f"data.root={tmp_path / 'missing'}", "data.workers=0",
                 f"out_dir={tmp_path / 'runs'}"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "does not exist" in err, err
    assert main(["train", "data.name=webdataset", f"data.root={tmp_path}/s-{{0..3}}.tar",
                 f"out_dir={tmp_path / 'runs'}"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "matches no shard file" in err, err
    with pytest.raises(ConfigError, match="needs data.root"):
        load_config(None, ["data.name=imagefolder"])
    with pytest.raises(ConfigError, match="data.on_corrupt"):
        load_config(None, ["data.name=imagefolder", "data.root=x", "data.on_corrupt=maybe"])


def test_pillow_missing_is_one_line_with_the_install_command(monkeypatch, folder):
    monkeypatch.setitem(sys.modules, "PIL", None)  # `import PIL` now fails as if not installed
    with pytest.raises(PillowMissingError) as e:
        require_pillow()
    assert "pip install -e .[imagenet]" in _one_line(e.value)
    with pytest.raises(PillowMissingError):  # before any work
        StreamingLoader(open_imagefolder(str(folder), "train"), 8, workers=0)


def test_list_datasets_shows_streaming_entries(capsys):
    assert main(["list", "datasets"]) == 0
    out = capsys.readouterr().out
    assert "imagefolder" in out and "webdataset" in out


def test_shard_source_ids_without_idx(tmp_path):
    """Shards of other tools (no .idx): ids follow the order of the samples."""
    import io
    path = tmp_path / "other-0.tar"
    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (9, 9, 9)).save(buf, format="PNG")
    with tarfile.open(path, "w") as tf:
        for key, label in (("b", 1), ("a", 0)):
            for suffix, data in (("png", buf.getvalue()), ("cls", str(label).encode())):
                info = tarfile.TarInfo(f"{key}.{suffix}")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    src = ShardSource([str(path)])
    assert src.labels.tolist() == [1, 0] and src.classes == ("0", "1")
    with pytest.raises(DatasetFileError, match="already holds shards"):
        out = tmp_path / "o"
        out.mkdir()
        (out / "manifest.json").write_text("{}")
        write_shards(tmp_path, out)


# ------------------------------------------------------------------ 2 gloo processes (slow)
def _ddp_worker(root: str, out: str) -> None:
    """One rank: build the run under a gloo process group, save its loader's first epoch."""
    import torch.distributed as dist

    dist.init_process_group("gloo")
    run = build_run(load_config(None, SMALL_RUN + [f"data.root={root}", "data.batch_size=4", "data.workers=1"]))
    run.loader.set_epoch(1)
    torch.save([tuple(b) for b in run.loader], Path(out) / f"rank{dist.get_rank()}.pt")
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_processes_see_the_global_batch(folder, tmp_path):
    import os
    import socket
    import subprocess

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    code = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import test_streaming as t; " \
           f"t._ddp_worker({str(folder)!r}, {str(tmp_path)!r})"
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              env=dict(os.environ, RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE="2",
                                       MASTER_ADDR="127.0.0.1", MASTER_PORT=port, OMP_NUM_THREADS="1"))
             for r in range(2)]
    outs = [p.communicate(timeout=300)[0].decode()[-2000:] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    one = build_run(load_config(None, SMALL_RUN + [f"data.root={folder}", "data.batch_size=8"]))
    one.loader.set_epoch(1)
    for (x, y, idx), r0, r1 in zip(one.loader, *ranks, strict=True):
        assert torch.equal(torch.stack([r0[2], r1[2]], 1).flatten(0, 1), idx)
        assert torch.equal(torch.stack([r0[0], r1[0]], 1).flatten(0, 1), x)

"""Extra (generated) data: the memory-mapped reader, the mixing loader, config and trainer."""

import json
import math
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from robustrain.cli import main
from robustrain.config import config_from_dict, config_to_dict, load_config
from robustrain.data import (
    DeviceLoader,
    MixedLoader,
    load_extra_data,
    load_split,
    make_synthetic,
    save_extra_data,
)
from robustrain.data.mixed_loader import mix_counts, mixed_epoch_length
from robustrain.data.npz import open_npz_member
from robustrain.artifacts import load_checkpoint
from robustrain.train import fit
from robustrain.utils.errors import ConfigError, DatasetFileError

N_TRAIN = 512  # synthetic train split
N_GEN = 200
SHAPE = (3, 16, 16)


def _generated():
    x, y = make_synthetic("test", n=N_GEN)
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)), y  # NHWC, as generators save them


@pytest.fixture
def gen_file(tmp_path):
    x, y = _generated()
    path = tmp_path / "gen.npz"
    np.savez(path, image=x, label=y)  # plain np.savez: the format of the DM / Rebuffi files
    return path


@pytest.fixture(scope="module")
def train_split():
    return load_split("synthetic", "train")


def _loader(train_split, gen_file, batch_size=64, ratio=0.3, seed=0, **kw):
    extra = load_extra_data(gen_file, image_shape=SHAPE, num_classes=10)
    base = DeviceLoader(train_split.images, train_split.labels, batch_size, augment=kw.pop("augment", True),
                        pad=2, seed=seed, **kw)
    return MixedLoader(base, extra.images, extra.labels, ratio=ratio)


# ---------------------------------------------------------------------------------- reader
def test_members_are_memory_mapped_not_loaded(gen_file):
    x, y = _generated()
    extra = load_extra_data(gen_file, image_shape=SHAPE, num_classes=10)
    for arr in (extra.images, extra.labels):
        assert isinstance(arr, np.memmap)
        assert Path(arr.filename) == gen_file.resolve()
        assert not arr.flags.writeable
    assert np.array_equal(extra.images, x) and np.array_equal(extra.labels, y)
    # the mapping starts inside the archive, at the member's data (not at byte 0)
    assert extra.images.offset > 0 and extra.labels.offset > extra.images.offset


def test_open_npz_member_dtypes_order_and_names(tmp_path):
    a = np.asfortranarray(np.arange(24, dtype=np.float32).reshape(4, 6))
    b = np.arange(5, dtype=np.uint16)
    path = tmp_path / "m.npz"
    np.savez(path, a_long_array_name=a, b=b)
    ma, mb = open_npz_member(path, "a_long_array_name"), open_npz_member(path, "b")
    assert ma.dtype == np.float32 and np.array_equal(ma, a) and ma.flags.f_contiguous
    assert np.array_equal(mb, b)


def test_folder_of_npy_files(tmp_path):
    x, y = _generated()
    np.save(tmp_path / "image.npy", x)
    np.save(tmp_path / "label.npy", y)
    extra = load_extra_data(tmp_path, image_shape=SHAPE, num_classes=10)
    assert isinstance(extra.images, np.memmap) and len(extra) == N_GEN


def test_save_extra_data_round_trip(tmp_path):
    x, y = _generated()
    path = save_extra_data(tmp_path / "sub" / "g.npz", x, y.astype(np.int32))
    assert sorted(p.name for p in path.parent.iterdir()) == ["g.npz"]  # no temp file left
    extra = load_extra_data(path, image_shape=SHAPE, num_classes=10)
    assert np.array_equal(extra.images, x) and extra.labels.dtype == np.int64


def _error(path, **kw):
    with pytest.raises(DatasetFileError) as info:
        load_extra_data(path, image_shape=SHAPE, num_classes=10, **kw)
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg and "fix:" in msg
    return msg


def test_compressed_file_is_rejected_with_the_conversion(tmp_path):
    x, y = _generated()
    path = tmp_path / "c.npz"
    np.savez_compressed(path, image=x, label=y)
    msg = _error(path)
    assert "compressed" in msg and "np.savez(" in msg
    # the one-liner in the message does convert it
    command = msg.split("fix: re-save it uncompressed once: ")[1]
    code = command.split('-c "', 1)[1].rsplit('"', 1)[0]
    exec(code, {})
    assert len(load_extra_data(tmp_path / "c.raw.npz", image_shape=SHAPE, num_classes=10)) == N_GEN


@pytest.mark.parametrize(
    "arrays,fragment",
    [
        (lambda x, y: {"image": x.transpose(0, 3, 1, 2), "label": y}, "np.transpose(image, (0, 2, 3, 1))"),
        (lambda x, y: {"image": x[:, :8, :8], "label": y}, "(N, 16, 16, 3)"),
        (lambda x, y: {"image": x.astype(np.float32) / 255, "label": y}, "image must be uint8"),
        (lambda x, y: {"image": x, "label": y + 1}, "labels must lie in 0..9, got 1..10"),
        (lambda x, y: {"image": x, "label": y - 1}, "labels must lie in 0..9"),
        (lambda x, y: {"image": x, "label": y.astype(np.float32)}, "integer array"),
        (lambda x, y: {"image": x, "label": y[:-1]}, "199 labels for 200 images"),
        (lambda x, y: {"image": x}, "no array 'label'"),
        (lambda x, y: {"images": x, "label": y}, "no array 'image' (arrays: images, label)"),
    ],
)
def test_bad_files_give_one_line_errors(tmp_path, arrays, fragment):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays(*_generated()))
    assert fragment in _error(path)


def test_missing_and_corrupt_files(tmp_path):
    assert "file not found" in _error(tmp_path / "nope.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    assert "not a readable .npz" in _error(tmp_path / "junk.npz")
    assert "no label.npy" in _error(_folder_with_images_only(tmp_path))


def _folder_with_images_only(tmp_path):
    folder = tmp_path / "only_images"
    folder.mkdir()
    np.save(folder / "image.npy", _generated()[0])
    return folder


def test_truncated_member_detected(gen_file, tmp_path):
    # a member whose .npy header promises more data than the archive stores
    with zipfile.ZipFile(gen_file) as z:
        raw = z.read("image.npy")
    bad = tmp_path / "t.npz"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("image.npy", raw[:-100])
        z.writestr("label.npy", zipfile.ZipFile(gen_file).read("label.npy"))
    assert "truncated" in _error(bad)


# ---------------------------------------------------------------------------------- mixing
@pytest.mark.parametrize("ratio", [0.1, 0.3, 0.5, 0.7, 1.0])
def test_every_batch_has_the_ratio(train_split, gen_file, ratio):
    batch_size = 64
    loader = _loader(train_split, gen_file, batch_size, ratio)
    n_orig = round(ratio * batch_size)
    assert (loader.n_original, loader.n_generated) == (n_orig, batch_size - n_orig)
    assert len(loader) == math.ceil(N_TRAIN / batch_size) == 8  # one original-dataset equivalent
    loader.set_epoch(1)
    batches = list(loader)
    assert len(batches) == len(loader)
    for b in batches:
        assert b.x.shape == (batch_size, *SHAPE) and b.x.dtype == torch.float32
        assert 0 <= float(b.x.min()) and float(b.x.max()) <= 1
        assert int((b.idx < N_TRAIN).sum()) == n_orig
        assert int(((b.idx >= N_TRAIN) & (b.idx < N_TRAIN + N_GEN)).sum()) == batch_size - n_orig
    assert loader.num_ids == N_TRAIN + N_GEN


def test_epoch_length_is_original_equivalent(train_split, gen_file):
    assert mixed_epoch_length(50_000, 512) == 98  # DM-Improves-AT: ceil(50000 / 512)
    assert len(_loader(train_split, gen_file, 100)) == 6  # ceil(512 / 100): 600 images shown
    sub = _loader(train_split, gen_file, 100, indices=torch.arange(300))
    assert len(sub) == 3
    sharded = _loader(train_split, gen_file, 64, rank=1, world_size=2)
    assert len(sharded) == 4  # ceil(512 / (2 * 64))


def test_labels_pixels_and_ids_are_consistent(train_split, gen_file):
    x_gen, y_gen = _generated()
    loader = _loader(train_split, gen_file, 64, 0.5, augment=False)
    loader.set_epoch(0)
    for b in loader:
        orig, gen = b.idx < N_TRAIN, b.idx >= N_TRAIN
        assert torch.equal(b.y[orig], train_split.labels[b.idx[orig]])
        assert torch.equal(b.x[orig], train_split.images[b.idx[orig]].float() / 255)
        rows = (b.idx[gen] - N_TRAIN).numpy()
        assert torch.equal(b.y[gen], torch.from_numpy(y_gen[rows]))
        expected = torch.from_numpy(x_gen[rows]).permute(0, 3, 1, 2).float() / 255
        assert torch.equal(b.x[gen], expected)
        # the two kinds are shuffled together, not stacked
        assert not (orig[:32].all() and gen[32:].all())


def test_no_repeats_within_an_epoch(train_split, gen_file):
    loader = _loader(train_split, gen_file, 64, 0.7)  # 45 + 19 per batch: 360 originals, 152 generated
    loader.set_epoch(2)
    idx = torch.cat([b.idx for b in loader])
    assert idx.unique().numel() == idx.numel() == 8 * 64
    # more generated draws than generated images: each pass over them is a permutation
    loader = _loader(train_split, gen_file, 64, 0.3)  # 19 + 45: 360 generated draws of 200 images
    loader.set_epoch(0)
    rows = torch.cat([b.idx[b.idx >= N_TRAIN] - N_TRAIN for b in loader])
    counts = torch.bincount(rows, minlength=N_GEN)
    assert rows.numel() == 360 and int(counts.min()) == 1 and int(counts.max()) == 2


def test_deterministic_per_seed_and_epoch(train_split, gen_file):
    def epoch(seed, e):
        loader = _loader(train_split, gen_file, 64, 0.3, seed=seed)
        loader.set_epoch(e)
        return list(loader)

    a, b = epoch(0, 3), epoch(0, 3)
    torch.manual_seed(123)  # the global RNG plays no part
    assert all(torch.equal(u, v) for ba, bb in zip(a, b) for u, v in zip(ba, bb))
    for other in (epoch(0, 4), epoch(1, 3)):
        assert not torch.equal(a[0].idx, other[0].idx)


def test_shards_are_disjoint_and_mixed(train_split, gen_file):
    shards = []
    for rank in range(2):
        loader = _loader(train_split, gen_file, 32, 0.5, rank=rank, world_size=2)
        loader.set_epoch(0)
        shards.append(list(loader))
    assert len(shards[0]) == len(shards[1]) == 8  # ceil(512 / (2 * 32))
    for step, (b0, b1) in enumerate(zip(*shards)):
        assert int((b0.idx < N_TRAIN).sum()) == int((b1.idx < N_TRAIN).sum()) == 16
        if step < 6:  # 6 steps x 2 ranks x 16 = 192 generated draws: still the first pass over 200
            assert not set(b0.idx.tolist()) & set(b1.idx.tolist())


def test_loader_keeps_the_memmap(train_split, gen_file):
    loader = _loader(train_split, gen_file)
    assert isinstance(loader.extra_images, np.memmap)


def test_mix_counts_rejects():
    assert mix_counts(512, 0.3) == (154, 358) and mix_counts(512, 0.4) == (205, 307)  # the paper's
    for ratio in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match=r"\(0, 1\]"):
            mix_counts(64, ratio)
    with pytest.raises(ValueError, match="no original image"):
        mix_counts(4, 0.1)


def test_loader_rejects_mismatched_images(train_split):
    base = DeviceLoader(train_split.images, train_split.labels, 64)
    with pytest.raises(ValueError, match="uint8"):
        MixedLoader(base, np.zeros((4, *SHAPE), np.uint8), np.zeros(4, np.int64))  # NCHW


# ----------------------------------------------------------------------------- config + fit
def test_config_overrides_and_round_trip(capsys):
    cfg = load_config(None, ["data.extra.path=gen.npz", "data.extra.ratio=0.4"])
    assert cfg.data.extra.path == "gen.npz" and cfg.data.extra.ratio == 0.4
    assert load_config().data.extra.path is None and load_config().data.extra.ratio == 0.3
    assert config_from_dict(config_to_dict(cfg)) == cfg
    assert config_to_dict(cfg)["data"]["extra"] == {"path": "gen.npz", "ratio": 0.4}
    old = config_to_dict(cfg)
    del old["data"]["extra"]  # configs saved before data.extra existed still load
    assert config_from_dict(old).data.extra.path is None
    assert main(["train", "--print-config", "data.extra.path=gen.npz"]) == 0
    assert "extra:\n    path: gen.npz\n    ratio: 0.3" in capsys.readouterr().out


@pytest.mark.parametrize(
    "override,fragment",
    [
        ("data.extra.ratio=0", "(0, 1]"),
        ("data.extra.ratio=1.2", "(0, 1]"),
        ("data.extra.size=3", "unknown key data.extra.size; valid keys under data.extra: path, ratio"),
        ("data.extra=3", "data.extra: expected a mapping"),
    ],
)
def test_config_rejects(override, fragment):
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    assert fragment in str(info.value)


def test_config_rejects_ratio_leaving_no_original():
    with pytest.raises(ConfigError, match="no original image"):
        load_config(None, ["data.extra.path=g.npz", "data.extra.ratio=0.001"])


def test_fit_with_extra_data(tiny_overrides, gen_file):
    cfg = load_config(None, tiny_overrides + [
        "train.epochs=1", "data.batch_size=128", "method=uiat", "method.steps=1", "method.momentum_start=0",
        f"data.extra.path={gen_file}", "data.extra.ratio=0.3", "guard.enabled=false",
        "eval.attack=fgsm", "eval.n=32", "eval.final_n=32", "eval.final_attacks=natural",
    ])
    summary = fit(cfg, progress=False, verbose=False)
    run = Path(cfg.out_dir) / cfg.run_name
    record = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert record["step"] == math.ceil(N_TRAIN / 128)  # one original-dataset equivalent
    assert set(summary["final"]) == {"natural"}
    method_state = load_checkpoint(run / "last.pt")["method"]
    # per-sample buffers cover originals and generated ids; generated samples were seen
    assert method_state["targets.momentum_seen"].shape == (N_TRAIN + N_GEN,)
    assert bool(method_state["targets.momentum_seen"][N_TRAIN:].any())


def test_fit_missing_extra_file_fails_before_writing(tiny_overrides, tmp_path):
    cfg = load_config(None, tiny_overrides + [f"data.extra.path={tmp_path / 'missing.npz'}"])
    with pytest.raises(DatasetFileError, match="missing.npz.*file not found"):
        fit(cfg, progress=False, verbose=False)
    assert not (Path(cfg.out_dir) / cfg.run_name).exists()

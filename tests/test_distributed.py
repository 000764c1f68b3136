"""Data-parallel training (robustrain.utils.distributed): 2 CPU processes with gloo vs 1 process.

One 2-rank job is launched the way torchrun launches one (a process per rank with RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT set; this file run as a script) and runs
several short ``fit`` calls; the tests compare what it wrote with one-process runs.

The equality runs use a tiny model WITHOUT BatchNorm: with BatchNorm each rank normalises
with its own half-batch statistics, which differ from the global batch's, and torch's
SyncBatchNorm (``train.sync_bn``) only runs on CUDA. They use deterministic attack starts
(``method.start=zero``): per-rank random starts cannot match one process's draws. And the
tiny model computes in float64: PGD and UIAT's z step take signs of gradients, and in float32
a summation-order difference (batch 64 vs 2 x 32 + all-reduce) flips the sign of a few
near-zero components, after which the two runs drift apart chaotically (~1e-4 after 16
steps). With all three, 2 ranks x batch 32 and 1 process x batch 64 agree to ~1e-15.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import robustrain.build as build_mod
from robustrain.artifacts.model_card import ModelSpec
from robustrain.data import DeviceLoader, get_dataset_info, load_split
from robustrain.models.base import Classifier, Normalize, NormalizedClassifier
from robustrain.utils import distributed as ddp

WORLD = 2
COMMON = [
    "data.name=synthetic", "model=small_cnn", "method.steps=2", "method.alpha=4/255",
    "method.start=zero", "train.epochs=2", "train.log_every=3", "train.device=cpu",
    "eval.n=64", "eval.final_n=64", "eval.attack=pgd20", "eval.final_attacks=natural", "guard.n=32",
    # 512 - 64 = 7 full global batches of 64: with a short last batch, 2 ranks average two unequal
    # half-batch means while one process averages one mean, and the runs differ
    "data.val_n=64",
]
RUNS = {  # name -> overrides of the equality runs (per-rank batch 32; one process: 64)
    "pgd_at": ["method=pgd_at"],
    "uiat": ["method=uiat", "method.momentum_start=0.5"],  # momentum (per-sample buffer) in epoch 2
    # instance weights normalised to mean 1 over the GLOBAL batch (weight sum all-reduced)
    "gairat": ["method=gairat", "method.burn_in=0"],
    # AWP's ascent gradient goes through the DDP reducer: every rank adds the global-batch v
    "pgd_at+awp": ["method=pgd_at+awp"],
}
# batch statistics that are not sums: with 2 ranks, the mean of the two ranks' values (a batch
# maximum; the share of the most frequent class in each rank's half of the batch, issue 19)
PER_RANK_METRICS = {"w_max", "majority", "target_majority"}


# ------------------------------------------------------------------ a BatchNorm-free model
class _TinyNet(Classifier):
    """conv - relu - pool - linear in float64 (inputs in float32 are promoted)."""

    def __init__(self, num_classes: int, in_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 8, 3, padding=1)
        self.head = nn.Linear(8 * 4 * 4, num_classes)
        self.double()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(F.relu(self.conv(x.double())), 4).flatten(1)


def _tiny_build_model(spec, device="cpu"):
    model = NormalizedClassifier(Normalize(spec.mean, spec.std), _TinyNet(spec.num_classes, spec.image_shape[0]))
    return model.to(device)


_REAL = {"build": ModelSpec.build, "create_method": build_mod.create_method}


def _capture(monkeypatch_setattr):
    """Build the tiny model wherever a model is built (training and the final table's load) and
    keep the live model and method."""
    seen: dict[str, list] = {"model": [], "method": []}

    def build(spec, device="cpu", **kwargs):  # kwargs: ModelSpec.build's (initial_weights)
        seen["model"].append(_tiny_build_model(spec, device))
        return seen["model"][-1]

    def method(*args, **kwargs):
        seen["method"].append(_REAL["create_method"](*args, **kwargs))
        return seen["method"][-1]

    monkeypatch_setattr(ModelSpec, "build", build)
    monkeypatch_setattr(build_mod, "create_method", method)
    return seen


def _state(seen) -> dict:
    # the first model built is the trained one (the final evaluation builds another)
    return {"model": seen["model"][0].state_dict(), "method": seen["method"][-1].state_dict()}


def _fit_run(name, overrides, out_dir, setattr_, batch_size, **kwargs):
    from robustrain.config import load_config
    from robustrain.train import fit

    seen = _capture(setattr_)
    # method=NAME first: it resets the method's parameters given before it
    cfg = load_config(None, overrides + COMMON + [f"data.batch_size={batch_size}", f"out_dir={out_dir}",
                                                  f"name={name}"])
    summary = fit(cfg, overwrite=True, progress=False, verbose=False, **kwargs)
    return _state(seen), summary


# ------------------------------------------------------------------ the 2-rank job (worker side)
class _Stop(Exception):
    pass


def _worker(out: Path) -> None:
    """One rank: the equality runs, an interrupted+resumed run, a CLI run, sync_bn on CPU."""
    from robustrain.cli import main
    from robustrain.config import load_config
    from robustrain.utils.errors import ConfigError
    from robustrain.train import fit

    torch.set_num_threads(1)
    ddp.init_distributed("cpu")
    rank = ddp.get_rank()
    dump: dict = {}

    def setattr_(obj, key, value):
        setattr(obj, key, value)

    for name, overrides in RUNS.items():
        dump[name] = _fit_run(name, overrides, out / "runs", setattr_, 32)[0]

    # interrupted after epoch 1 (every rank raises in the callback), then resumed
    def stop(epoch, record):
        if epoch == 1:
            raise _Stop

    try:
        _fit_run("resume", RUNS["uiat"], out / "runs", setattr_, 32, on_epoch_end=stop)
    except _Stop:
        pass
    seen = _capture(setattr_)
    fit(load_config(None, COMMON), run_dir=out / "runs" / "resume", resume=True, progress=False,
        verbose=False)
    dump["resume"] = _state(seen)

    # interrupted inside epoch 2 (7 steps an epoch; train.checkpoint_every=3 saved after run step 9,
    # a log interval half done), every rank in the same step, then resumed (issue 20)
    real_create = _REAL["create_method"]

    def dies_at_step_11(*args, **kwargs):
        method = real_create(*args, **kwargs)
        forward, calls = method.forward, [0]

        def forward_or_die(model, batch):
            if calls[0] == 11:
                raise _Stop
            calls[0] += 1
            return forward(model, batch)

        method.forward = forward_or_die
        return method

    _REAL["create_method"] = dies_at_step_11
    try:
        _fit_run("resume_mid", RUNS["uiat"] + ["train.checkpoint_every=3"], out / "runs", setattr_, 32)
    except _Stop:
        pass
    finally:
        _REAL["create_method"] = real_create
    seen = _capture(setattr_)
    fit(load_config(None, COMMON), run_dir=out / "runs" / "resume_mid", resume=True, progress=False,
        verbose=False)
    dump["resume_mid"] = _state(seen)

    # collectives: rows of id 5 from both ranks (the last rank's wins everywhere)
    rows = torch.tensor([[rank + 1.0], [10.0 * (rank + 1)]])
    dump["gathered"] = ddp.all_gather_indexed(torch.tensor([5, rank]), rows)
    dump["reduced"] = ddp.all_reduce_sum(torch.tensor([rank + 1.0]))

    # a real model (BatchNorm) through the CLI, as `torchrun -m robustrain train` runs it
    ModelSpec.build = _REAL["build"]
    build_mod.create_method = _REAL["create_method"]
    dump["cli_rc"] = main(["train", "data.name=synthetic", "data.batch_size=32", "model=small_cnn",
                           "model.width=4", "method=pgd_at", "method.steps=1", "train.epochs=1",
                           "eval.n=32", "eval.final_n=32", "guard.n=32", "train.device=cpu",
                           f"out_dir={out / 'runs'}", "name=cli", "--overwrite"])
    try:
        fit(load_config(None, COMMON + ["train.sync_bn=true", f"out_dir={out / 'runs'}", "name=syncbn"]),
            progress=False, verbose=False)
        dump["sync_bn_error"] = None
    except ConfigError as e:
        dump["sync_bn_error"] = str(e)
    torch.save(dump, out / f"rank{rank}.pt")
    ddp.destroy_distributed()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    port = str(_free_port())
    procs = []
    for rank in range(WORLD):
        env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD),
                   LOCAL_WORLD_SIZE=str(WORLD), MASTER_ADDR="127.0.0.1", MASTER_PORT=port, OMP_NUM_THREADS="1")
        log = open(out / f"rank{rank}.log", "w")
        procs.append((subprocess.Popen([sys.executable, __file__, str(out)], env=env, stdout=log,
                                       stderr=subprocess.STDOUT), log))
    try:
        codes = [p.wait(timeout=300) for p, _ in procs]
    finally:
        for p, log in procs:
            if p.poll() is None:
                p.kill()
            log.close()
    if any(codes):
        tails = "\n".join(f"--- rank {r} (exit {c}):\n" + (out / f"rank{r}.log").read_text()[-3000:]
                          for r, c in enumerate(codes))
        pytest.fail(f"2-rank job failed:\n{tails}")
    return out, [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """The equality runs in one process with the global batch (2 x 32)."""
    out = tmp_path_factory.mktemp("single")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each rank: two threads on a loaded 2-core machine crawl
    try:
        with pytest.MonkeyPatch.context() as mp:
            return {name: _fit_run(name, overrides, out / "runs", mp.setattr, 64)[0] | {"out": out / "runs" / name}
                    for name, overrides in RUNS.items()}
    finally:
        torch.set_num_threads(threads)


def _assert_states_close(a: dict, b: dict, atol: float) -> None:
    for part in ("model", "method"):
        assert a[part].keys() == b[part].keys()
        for key in a[part]:
            x, y = a[part][key], b[part][key]
            if x.dtype.is_floating_point:
                torch.testing.assert_close(x, y, atol=atol, rtol=1e-4, msg=f"{part}.{key}")
            else:
                assert torch.equal(x, y), f"{part}.{key}"


# ------------------------------------------------------------------ tests without processes
def test_helpers_are_the_identity_in_one_process():
    t = torch.arange(4.0)
    idx = torch.tensor([3, 1])
    assert not ddp.is_distributed() and ddp.get_rank() == 0 and ddp.get_world_size() == 1
    assert ddp.all_reduce_sum(t) is t and ddp.all_gather_cat(t) is t and ddp.shard(t) is t
    gathered = ddp.all_gather_indexed(idx, t[:2])
    assert gathered[0] is idx and gathered[1].data_ptr() == t.data_ptr()
    net = nn.Linear(2, 2)
    assert ddp.wrap_model(net, sync_bn=True) is net and ddp.unwrap_model(net) is net
    state = torch.get_rng_state()
    ddp.seed_for_rank(0, 3)  # no reseeding in one process
    assert torch.equal(torch.get_rng_state(), state)


def test_resolve_duplicates_last_row_wins_everywhere():
    idx, vals = ddp.resolve_duplicates(torch.tensor([4, 2, 4, 4, 0]), torch.tensor([1.0, 2.0, 3.0, 5.0, 7.0]))
    assert idx.tolist() == [0, 2, 4, 4, 4] and vals.tolist() == [7.0, 2.0, 5.0, 5.0, 5.0]
    buf = torch.zeros(5)
    buf[idx] = vals
    assert buf.tolist() == [7.0, 0.0, 2.0, 0.0, 5.0]


def test_init_distributed_needs_the_torchrun_environment(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert ddp.init_distributed("cpu") is False
    monkeypatch.setenv("WORLD_SIZE", "2")
    for key in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(ValueError, match="torchrun"):
        ddp.init_distributed("cpu")


def test_loader_shards_one_global_permutation():
    # W ranks x batch B cover exactly the samples (and augmentations) of one process x W*B
    images, labels = load_split("cifar10-mini", "train")
    images, labels = images[:100], labels[:100]
    kw = dict(shuffle=True, augment=True, pad=4, flip=True, seed=3)
    one = DeviceLoader(images, labels, 2 * 8, **kw)
    ranks = [DeviceLoader(images, labels, 8, rank=r, world_size=2, **kw) for r in range(2)]
    for loader in (one, *ranks):
        loader.set_epoch(1)
    assert len(ranks[0]) == len(ranks[1]) == len(one)
    for big, *parts in zip(one, *ranks):
        got = {int(i): x for p in parts for i, x in zip(p.idx, p.x)}
        if big.idx.shape[0] == 16:  # full steps: the same samples with the same crops/flips
            assert sorted(got) == sorted(big.idx.tolist())
            for i, x in zip(big.idx.tolist(), big.x):
                assert torch.equal(got[i], x)
    # all ranks together see every sample each epoch
    seen = torch.cat([b.idx for r in ranks for b in r])
    assert set(seen.tolist()) == set(range(100))


# ------------------------------------------------------------------ tests on the 2-rank job
@pytest.mark.parametrize("name", list(RUNS))
def test_two_ranks_match_one_process(job, single, name):
    out, dumps = job
    # same global batch and seed: same weights, same z and per-sample buffers
    _assert_states_close(dumps[0][name], single[name], atol=1e-6)
    # metrics are reduced over ranks before logging (rank 0 alone would see half the batch)
    multi = [json.loads(line) for line in (out / "runs" / name / "metrics.jsonl").read_text().splitlines()]
    one = [json.loads(line) for line in (single[name]["out"] / "metrics.jsonl").read_text().splitlines()]
    assert len(multi) == len(one) == 2
    for a, b in zip(multi, one):
        assert a["train"].keys() == b["train"].keys()
        for key in a["train"].keys() - PER_RANK_METRICS:
            # an accuracy moves by 1/512 when one near-tie argmax flips
            tol = 1 / 512 + 1e-6 if key.startswith("acc") else 1e-5
            assert a["train"][key] == pytest.approx(b["train"][key], rel=1e-4, abs=tol), key
        # sharded evaluation, counts all-reduced: natural accuracy is deterministic
        assert a["eval"]["natural"] == pytest.approx(b["eval"]["natural"], abs=1.5 / 64)


def test_every_rank_holds_the_same_state(job):
    _, dumps = job
    for name in (*RUNS, "resume"):
        for part in ("model", "method"):
            for key, value in dumps[0][name][part].items():
                assert torch.equal(value, dumps[1][name][part][key]), f"{name} {part}.{key}"
    method = dumps[0]["uiat"]["method"]
    assert {"targets.z", "targets.momentum_p", "targets.momentum_seen"} <= method.keys()
    # both ranks' samples, on both ranks: every training id, none of the 64 held-out validation ids
    assert int(method["targets.momentum_seen"].sum()) == method["targets.momentum_seen"].numel() - 64


def test_collectives(job):
    _, dumps = job
    for dump in dumps:
        idx, vals = dump["gathered"]
        assert idx.tolist() == [0, 1, 5, 5] and vals.flatten().tolist() == [10.0, 20.0, 2.0, 2.0]
        assert dump["reduced"].tolist() == [3.0]


def test_resume_under_ddp_continues_the_run(job):
    out, dumps = job
    _assert_states_close(dumps[0]["resume"], dumps[0]["uiat"], atol=1e-6)
    records = (out / "runs" / "resume" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in records] == [1, 2]


def test_resume_inside_an_epoch_under_ddp_continues_the_run(job):
    # the epoch's metric sums are totalled over ranks in the checkpoint and every rank's RNG
    # states kept; the resumed run ends as the uninterrupted one
    out, dumps = job
    _assert_states_close(dumps[0]["resume_mid"], dumps[0]["uiat"], atol=1e-6)
    for part in ("model", "method"):
        for key, value in dumps[0]["resume_mid"][part].items():
            assert torch.equal(value, dumps[1]["resume_mid"][part][key]), f"{part}.{key}"
    mid = [json.loads(r) for r in (out / "runs" / "resume_mid" / "metrics.jsonl").read_text().splitlines()]
    one = [json.loads(r) for r in (out / "runs" / "uiat" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in mid] == [1, 2]
    for a, b in zip(mid, one):
        assert a["train"].keys() == b["train"].keys()
        for key in a["train"]:
            assert a["train"][key] == pytest.approx(b["train"][key], rel=1e-4, abs=1e-5), key


def test_rank0_writes_files_one_process_reads_them(job):
    from robustrain.artifacts import load_checkpoint
    from robustrain.build import build_model

    out, dumps = job
    assert [d["cli_rc"] for d in dumps] == [0, 0]
    run = out / "runs" / "cli"
    expected = [".lock", "best.pt", "config.yaml", "last.pt", "metrics.jsonl", "summary.json"]  # rank 0's lock
    assert sorted(p.name for p in run.iterdir()) == expected  # no stray temporary or per-rank files
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1  # one writer
    ckpt = load_checkpoint(run / "last.pt")
    assert not any(k.startswith("module.") for k in ckpt["model"])
    from robustrain.config import config_from_dict

    model = build_model(config_from_dict(ckpt["config"]))
    model.load_state_dict(ckpt["model"])  # strict: an unwrapped module's state_dict
    summary = json.loads((run / "summary.json").read_text())
    assert summary["n_test"] == 32 and 0 <= summary["final"]["natural"] <= 1


def test_sync_bn_on_cpu_is_a_config_error(job):
    out, dumps = job
    for dump in dumps:
        assert "train.sync_bn=false" in dump["sync_bn_error"]
    assert not (out / "runs" / "syncbn").exists()  # raised before anything was written


if __name__ == "__main__":  # one rank of the job (see the `job` fixture)
    _worker(Path(sys.argv[1]))

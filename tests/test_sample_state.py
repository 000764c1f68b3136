"""Per-sample method state at scale (issue 20): ``train.sample_state`` chooses how the N x C tables
(UIAT momentum, one-off targets) are stored. The chooser is checked at faked sizes (nothing large
is allocated), bf16 rounding against hand-computed values, and the host placement against moves."""

from __future__ import annotations

import pytest
import torch

import robustrain.build as build_mod
from robustrain.config import load_config
from robustrain.methods import MethodContext, create_method
from robustrain.methods.inverse import InverseTargets
from robustrain.methods.sample_state import (
    AUTO_FP32_MAX_BYTES, SampleStatePolicy, choose_storage, describe_sample_state,
)
from robustrain.utils.errors import ConfigError

GiB = 2**30
IMAGENET = (1_281_167, 1000)  # N x C: 5.12 GB in fp32, 2.56 GB in bf16


def _choose(request, rows, cols, device="cuda:0", device_free=None, host_free=None):
    return choose_storage(request, rows, cols, device=device, device_free=device_free, host_free=host_free,
                          what="momentum targets")


# ------------------------------------------------------------------ the chooser
def test_auto_keeps_small_tables_in_fp32_up_to_the_threshold():
    assert _choose("auto", 50_000, 10, device="cpu").dtype == torch.float32  # CIFAR-10: 2 MB
    assert _choose("auto", 1_050_000, 10, device_free=1).dtype == torch.float32  # + 1M generated: 42 MB
    rows = AUTO_FP32_MAX_BYTES // (4 * 1000)  # 67,108 x 1000 fp32 = 268,432,000 bytes <= 256 MiB
    assert _choose("auto", rows, 1000).name == "fp32"
    assert _choose("auto", rows + 1, 1000).name == "bf16"


def test_auto_at_imagenet_scale_goes_bf16_then_host_then_refuses():
    on_gpu = _choose("auto", *IMAGENET, device_free=70 * GiB, host_free=64 * GiB)
    assert (on_gpu.name, on_gpu.dtype, on_gpu.host, on_gpu.nbytes) == ("bf16", torch.bfloat16, False, 2_562_334_000)
    # 2.56 GB is more than a quarter of 8 GiB free: host memory (pinned), still bf16
    host = _choose("auto", *IMAGENET, device_free=8 * GiB, host_free=64 * GiB)
    assert (host.name, host.dtype, host.host, host.place) == ("host", torch.bfloat16, True, "host memory (pinned)")
    with pytest.raises(ConfigError) as info:
        _choose("auto", *IMAGENET, device_free=8 * GiB, host_free=4 * GiB)
    msg = str(info.value)
    assert "\n" not in msg and "2.56 GB even in bf16" in msg and "train.sample_state=bf16 or host" in msg
    assert "1,281,167 x 1,000" in msg and "momentum targets" in msg


def test_auto_on_the_cpu_uses_bf16_in_its_memory():
    cpu = _choose("auto", *IMAGENET, device="cpu", device_free=16 * GiB)
    assert (cpu.name, cpu.place) == ("bf16", "cpu")
    with pytest.raises(ConfigError, match="2.56 GB even in bf16, more than 50% of the 4.29 GB free on cpu;"):
        _choose("auto", *IMAGENET, device="cpu", device_free=4 * GiB)


def test_a_forced_storage_is_refused_only_when_it_cannot_fit():
    assert _choose("fp32", *IMAGENET, device_free=70 * GiB).nbytes == 5_124_668_000
    with pytest.raises(ConfigError) as info:
        _choose("fp32", *IMAGENET, device_free=4 * GiB)
    assert str(info.value) == (
        "train.sample_state=fp32: the momentum targets (1,281,167 x 1,000) need 5.12 GB and cuda:0 has 4.29 GB "
        "free; use train.sample_state=host, free memory, or train on fewer samples")
    assert _choose("fp16", *IMAGENET, device_free=4 * GiB).dtype == torch.float16
    with pytest.raises(ConfigError, match="need 2.56 GB and host memory has 2.15 GB free; use train.sample_state=auto"):
        _choose("host", *IMAGENET, host_free=2 * GiB)
    with pytest.raises(ConfigError, match="must be one of auto, fp32, bf16, fp16, host"):
        _choose("int8", 10, 10)


def test_the_config_key_is_checked():
    assert load_config(None, []).train.sample_state == "auto"
    with pytest.raises(ValueError, match="train.sample_state must be one of"):
        load_config(None, ["train.sample_state=fp64"])


def test_a_table_that_cannot_fit_is_refused_before_the_run_is_built(monkeypatch, tmp_path):
    monkeypatch.setattr(build_mod, "free_memory", lambda device: 1000)  # a 1 kB device
    cfg = load_config(None, ["data.name=synthetic", "model=small_cnn", "model.width=4", "method=uiat",
                             "train.sample_state=fp32", f"out_dir={tmp_path}"])
    with pytest.raises(ConfigError, match=r"momentum targets \(512 x 10\) need 20 kB and cpu has 1 kB free"):
        build_mod.build_run(cfg)
    auto = load_config(None, ["data.name=synthetic", "model=small_cnn", "model.width=4", "method=uiat"])
    assert build_mod.build_run(auto).method.targets.momentum_p.dtype == torch.float32  # 20 kB: fp32, unchecked


# ------------------------------------------------------------------ the tables
def _targets(request: str, **switches) -> InverseTargets:
    ctx = MethodContext(num_classes=3, image_shape=(1, 2, 2), num_train=4, epochs=10,
                        sample_state=SampleStatePolicy(request))
    return InverseTargets(ctx, eps_inv=0.1, init_std_inv=0.001, bn_mode="eval", target_bn_mode="train_frozen_stats",
                          detach_target=True, alpha_universal=0.1, gamma=0.5, momentum_start=0.5, universal=True,
                          **switches)


def test_bf16_tables_round_to_8_significant_bits():
    t = _targets("bf16", momentum=True)
    assert t.momentum_p.dtype == torch.bfloat16
    p = torch.tensor([[1 / 3, 0.1, 1 - 1 / 3 - 0.1], [1.0, 0.0, 0.0]])
    out = t.momentum_target(torch.tensor([2, 0]), p, epoch=0)  # before T: p itself, stored
    assert torch.equal(out, p)  # the target of this step is exact; the stored copy is rounded
    stored = t.momentum_p[[2, 0]].float()
    # by hand: 1/3 = 1.0101010|10...b x 2^-2 -> 1.0101011b x 2^-2 = 171/512; 0.1 = 1.1001100|11...b x 2^-4
    # -> 1.1001101b x 2^-4 = 205/2048; 0.5666... = 1.0010001|0001...b x 2^-1 -> 1.0010001b x 2^-1 = 145/256
    assert stored[0].tolist() == [171 / 512, 205 / 2048, 145 / 256]
    assert stored[1].tolist() == [1.0, 0.0, 0.0]
    # reads come back in fp32: from T on, Eq. 8 (gamma 0.5) on the stored (rounded) row
    later = t.momentum_target(torch.tensor([2]), torch.tensor([[0.0, 0.0, 1.0]]), epoch=5)
    assert later.dtype == torch.float32 and later.tolist() == [[171 / 1024, 205 / 4096, 145 / 512 + 0.5]]
    # the bound: |stored - p| <= 2^-8 |p| (round to nearest, 8 significant bits)
    probs = torch.softmax(torch.randn(4, 3, generator=torch.Generator().manual_seed(0)) * 3, dim=1)
    t.momentum_target(torch.arange(4), probs, epoch=0)
    assert bool(((t.momentum_p.float() - probs).abs() <= 2**-8 * probs.abs()).all())


def test_host_tables_stay_in_host_memory_when_the_method_moves():
    t = _targets("host", oneoff=True, oneoff_epoch=0.0)
    table = t.oneoff_p
    t.to(torch.float64)  # every other buffer follows a move; the host table stays as it is
    assert t.z.dtype == torch.float64 and t.oneoff_p is table and table.dtype == torch.bfloat16
    assert list(t.state_dict()) == ["z", "oneoff_p", "oneoff_seen"]  # the keys (and their order) of fp32 storage
    assert describe_sample_state(t) == ["one-off targets 4 x 3 in bf16 on host memory (0 kB, train.sample_state=host)"]


def test_the_default_storage_is_the_fp32_table_of_before():
    ctx = MethodContext(num_classes=3, image_shape=(1, 2, 2), num_train=4, epochs=10)
    method = create_method("uiat", ctx, steps=1)
    assert method.targets.momentum_p.dtype == torch.float32
    assert sorted(method.state_dict()) == ["targets.momentum_p", "targets.momentum_seen", "targets.z"]
    # an fp32 checkpoint loads into a bf16 table (rounded) and back: resuming with another storage works
    compact = create_method("uiat", MethodContext(3, (1, 2, 2), 4, 10, SampleStatePolicy("bf16")), steps=1)
    compact.load_state_dict(method.state_dict())
    assert compact.targets.momentum_p.dtype == torch.bfloat16

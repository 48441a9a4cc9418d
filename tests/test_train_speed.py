"""The training-speed levers (issue 12): fused attention in the step, fused AdamW, torch.compile, and the
bench-train DINO reference step."""

import argparse

import torch

from edge_vsd.bench_train import BenchOptions, config_from_args, dino_config, run_benchmark
from edge_vsd.config import TrainConfig
from edge_vsd.train import adamw, build_nets, param_groups

SMALL = dict(img_size=32, batch_size=4, out_dim=256, head_hidden_dim=128, head_bottleneck_dim=64, delta=5)
CPU = torch.device("cpu")


def _attention_flags(net) -> set[bool]:
    return {m.fused for m in net.modules() if hasattr(m, "fused")}


def test_build_nets_attention_default_and_override():
    student, teacher, _, opt = build_nets(TrainConfig(**SMALL), CPU)
    assert _attention_flags(student) == _attention_flags(teacher) == {False}  # CPU: explicit by default
    student, teacher, _, _ = build_nets(TrainConfig(**SMALL), CPU, fused_attention=True)
    assert _attention_flags(student) == _attention_flags(teacher) == {True}
    assert opt.defaults["fused"] is True  # fused AdamW on CPU


def test_fused_adamw_matches_loop():
    torch.manual_seed(0)
    a = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.LayerNorm(16), torch.nn.Linear(16, 4))
    b = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.LayerNorm(16), torch.nn.Linear(16, 4))
    b.load_state_dict(a.state_dict())
    fused, loop = adamw(param_groups(a), CPU), torch.optim.AdamW(param_groups(b), foreach=False)
    x = torch.randn(32, 8)
    for _ in range(5):
        for net, opt in ((a, fused), (b, loop)):
            opt.zero_grad()
            net(x).square().mean().backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_dino_reference_is_dino_structure():
    cfg = dino_config(TrainConfig(**SMALL))
    student, teacher, loss_fn, _ = build_nets(cfg, CPU)
    assert student.predictor is None and student.patch_head is None and not student.dense
    assert cfg.delta == 0 and cfg.independent_crops and loss_fn.dense_weight == 0
    ours, *_ = build_nets(TrainConfig(**SMALL), CPU)
    # same backbone and CLS head
    assert student.backbone.state_dict().keys() == ours.backbone.state_dict().keys()
    assert student.head.state_dict().keys() == ours.head.state_dict().keys()


def test_bench_train_reports_both_fractions(synthetic_video):
    cfg = TrainConfig(arch="vit_tiny", **SMALL)
    r = run_benchmark(cfg, BenchOptions(steps=1, rounds=1, attention="fused"), str(synthetic_video))
    assert r["attention"] == "fused" and r["step_gflop"] > r["dino_step_gflop"] > 0
    ours, dino = r["flops_fraction_of_matmul"], r["dino_flops_fraction_of_matmul"]
    assert 0 < ours and 0 < dino
    assert abs(r["fraction_ratio_vs_dino"] - ours / dino) < 1e-9
    assert 0 < r["cache_fraction_of_preloaded"]


def test_bench_train_presets():
    ns = dict(workers=0, device="cpu", bf16=False, arch=None, img_size=None, batch_size=None)
    cfg = config_from_args(argparse.Namespace(preset="vit_s16_224", **ns))
    assert (cfg.arch, cfg.img_size, cfg.batch_size, cfg.patch_size) == ("vit_small", 224, 64, 16)
    cfg = config_from_args(argparse.Namespace(preset=None, **ns))
    assert (cfg.arch, cfg.img_size, cfg.batch_size) == ("vit_tiny", 112, 32)
    cfg = config_from_args(argparse.Namespace(preset="vit_s16_224", **{**ns, "batch_size": 8}))
    assert cfg.batch_size == 8

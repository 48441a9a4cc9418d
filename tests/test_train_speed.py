"""The training-speed levers (issue 12): fused attention in the step, fused AdamW, torch.compile, and the
bench-train DINO reference step."""

import argparse

import pytest
import torch

from edge_vsd.bench_train import BenchOptions, config_from_args, dino_config, run_benchmark
from edge_vsd.config import COMPILE_PAYS_AFTER, TrainConfig
from edge_vsd.nets import adamw, build_nets, param_groups

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
    assert r["pairs_per_s_loader_alone"] > 0 and r["pairs_per_s_loader_and_copy"] > 0


def test_bench_train_presets():
    ns = dict(
        workers=0, device="cpu", bf16=False, arch=None, img_size=None, batch_size=None, photometric_on="auto"
    )
    ns.update(compile=False, compile_mode=None)
    cfg = config_from_args(argparse.Namespace(preset="vit_s16_224", **ns))
    assert (cfg.arch, cfg.img_size, cfg.batch_size, cfg.patch_size) == ("vit_small", 224, 64, 16)
    assert not cfg.compile and cfg.compile_mode == "default"
    cfg = config_from_args(argparse.Namespace(preset=None, **ns))
    assert (cfg.arch, cfg.img_size, cfg.batch_size) == ("vit_tiny", 112, 32)
    cfg = config_from_args(argparse.Namespace(preset="vit_s16_224", **{**ns, "batch_size": 8}))
    assert cfg.batch_size == 8
    cfg = config_from_args(argparse.Namespace(preset=None, **{**ns, "compile_mode": "reduce-overhead"}))
    assert cfg.compile and cfg.compile_mode == "reduce-overhead"  # a mode implies compiling


def test_train_compile_mode_flag_and_its_check():
    from edge_vsd.errors import InputError
    from edge_vsd.train_cli import add_arguments
    from edge_vsd.train_cli import config_from_args as train_config

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    plain = train_config(parser.parse_args(["--video", "v.avi"]))
    assert plain.compile is None and plain.compile_mode == "default"  # None: settled by resolve_compile
    assert train_config(parser.parse_args(["--video", "v.avi", "--no-compile"])).compile is False
    cfg = train_config(parser.parse_args(["--video", "v.avi", "--compile-mode", "reduce-overhead"]))
    assert cfg.compile and cfg.compile_mode == "reduce-overhead"
    with pytest.raises(InputError, match="--compile-mode"):
        TrainConfig(compile_mode="fastest").validate()


def _frames(seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (2, 6, 8, 3), dtype=np.uint8).repeat(8, 1).repeat(8, 2)  # blocky: blur shows
    return base


def test_deferred_photometric_same_draws_as_loader_path():
    from edge_vsd.data.augment import AugmentConfig, augment_pair, finish_views

    cfg = AugmentConfig(blur_prob=(0.5, 0.5), solarize_prob=0.5)
    seen = set()
    for seed in range(12):
        direct = augment_pair(_frames(seed), torch.Generator().manual_seed(seed), 32, 1, 16, cfg)
        deferred = augment_pair(_frames(seed), torch.Generator().manual_seed(seed), 32, 1, 16, cfg, True)
        assert deferred["globals"].dtype == torch.uint8 and deferred["locals"].dtype == torch.uint8
        finished = finish_views(deferred)
        # same draws in the same order: only the uint8 resize differs (within a level, which brightness x
        # contrast x saturation can amplify 2.4x, over std ~0.22); other draws would differ by O(1)
        for k in ("globals", "locals"):
            assert (finished[k] - direct[k]).abs().max().item() < 3 / 255 / 0.2
        rows = torch.cat([deferred["globals_photo"], deferred["locals_photo"]])
        seen |= {
            f for f, col in zip(("jitter", "gray", "blur", "solarize"), (0, 5, 6, 8)) if rows[:, col].any()
        }
    assert seen == {"jitter", "gray", "blur", "solarize"}  # every step was exercised


def test_batched_photometric_matches_one_image_at_a_time():
    from edge_vsd.data.augment import AugmentConfig, apply_photometric, draw_photometric

    cfg = AugmentConfig()
    g = torch.Generator().manual_seed(3)
    x = torch.rand(10, 3, 24, 24, generator=g)
    rows = torch.stack([draw_photometric(g, 1.0, cfg, 24 * (1 + i), 0.5) for i in range(10)])  # mixed sigmas
    assert len({int(2 * s) for s in rows[:, 7].tolist()}) > 1  # kernels of several widths in one batch
    batched = apply_photometric(x, rows)
    single = torch.cat([apply_photometric(x[i : i + 1], rows[i : i + 1]) for i in range(10)])
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(batched, x)


def test_photometric_on_auto_is_device_on_cuda_or_in_bf16():
    assert TrainConfig(device="cuda").defer_photometric
    assert not TrainConfig(device="cpu").defer_photometric
    assert TrainConfig(device="cpu", bf16=True).defer_photometric
    assert not TrainConfig(device="cpu", bf16=True, photometric_on="loader").defer_photometric
    assert TrainConfig(device="cpu", photometric_on="device").defer_photometric
    assert not TrainConfig(device="cuda", photometric_on="loader").defer_photometric


def test_quickstart_trains_with_the_faster_measured_step(capsys, monkeypatch):
    import edge_vsd.device
    from edge_vsd.quickstart import choose_precision

    asked = argparse.Namespace(precision="bf16", batch_size=2, img_size=32)
    assert choose_precision(asked, 64) is True and capsys.readouterr().out == ""  # no probe when asked
    auto = argparse.Namespace(precision="auto", batch_size=2, img_size=32)
    monkeypatch.setattr(edge_vsd.device, "native_bf16", lambda: False)
    assert choose_precision(auto, 64) is False  # emulated bf16 is not timed
    assert (
        capsys.readouterr().out.strip()
        == "training in fp32: this CPU has no bf16 instructions (--precision overrides)"
    )
    monkeypatch.setattr(edge_vsd.device, "native_bf16", lambda: True)  # timed here, whatever this CPU has
    use_bf16 = choose_precision(auto, 64)
    line = capsys.readouterr().out
    fp32, bf16 = (float(line.split(name)[1].split()[0]) for name in ("fp32 ", "bf16 autocast "))
    assert fp32 > 0 and bf16 > 0
    assert use_bf16 == (bf16 < 0.9 * fp32) and f"training in {'bf16' if use_bf16 else 'fp32'}" in line


@pytest.mark.parametrize(
    "device, steps, world, given, expected",
    [
        ("cuda", COMPILE_PAYS_AFTER, 1, None, (True, "reduce-overhead")),  # long run on one GPU: CUDA graphs
        ("cuda", COMPILE_PAYS_AFTER - 1, 1, None, (False, "default")),  # too short to earn the compile back
        ("cuda", 10**5, 2, None, (False, "default")),  # under torchrun: not measured, eager
        ("cpu", 10**5, 1, None, (False, "default")),
        ("cuda", 10**5, 1, False, (False, "default")),  # --no-compile wins
        ("cpu", 10, 1, True, (True, "default")),  # --compile keeps its mode
    ],
)
def test_compile_auto_turns_cuda_graphs_on_where_they_pay(device, steps, world, given, expected):
    cfg = TrainConfig(device=device, compile=given)
    cfg.resolve_compile(steps, world)
    assert (cfg.compile, cfg.compile_mode) == expected


def test_native_bf16_reads_the_cpu_flags(tmp_path):
    from edge_vsd.device import native_bf16

    epyc, spr = tmp_path / "epyc", tmp_path / "spr"
    epyc.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\n")
    spr.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_bf16\n")
    assert native_bf16(str(epyc)) is False and native_bf16(str(spr)) is True
    assert native_bf16(str(tmp_path / "absent")) is None

"""`edge-vsd bench-train`: training throughput of the real VSD step (not a test).

Reports pairs/s, the step's achieved FLOP/s (counted with torch.utils.flop_counter) as a fraction of a
large fp32 matmul's FLOP/s measured in the same run, and end-to-end pairs/s fed from a frame cache as a
fraction of pairs/s on pre-loaded tensors."""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode

from edge_vsd.config import TrainConfig
from edge_vsd.data.cache import build_cache, open_cache
from edge_vsd.data.pairs import FramePairs, StepBatches
from edge_vsd.data.prepare import cache_short_side
from edge_vsd.data.synthetic import write_video
from edge_vsd.train import Nets, build_nets, fast_cpu_math, schedules, train_step


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_flops(device: torch.device, n: int = 2048, seconds: float = 2.0) -> float:
    """fp32 FLOP/s of an n x n x n matmul, the machine's practical dense peak."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b
    _sync(device)
    reps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        reps += 1
        _sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - start)


def time_steps(nets: Nets, batches, cfg: TrainConfig, device: torch.device, steps: int) -> float:
    """Seconds per optimizer step, after two warm-up steps."""
    sched = schedules(cfg, steps + 2)
    for s in range(2):
        train_step(nets, batches, cfg, sched, s, 0, device)
    _sync(device)
    start = time.perf_counter()
    for s in range(2, steps + 2):
        train_step(nets, batches, cfg, sched, s, 0, device)
    _sync(device)
    return (time.perf_counter() - start) / steps


def run_benchmark(cfg: TrainConfig, steps: int, video: str | None = None) -> dict[str, float]:
    fast_cpu_math()
    device = torch.device(cfg.device)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        video = video or str(write_video(Path(tmp) / "bench.avi", n_frames=120, height=180, width=240))
        data = FramePairs(
            open_cache(
                build_cache([video], Path(tmp) / "cache", cache_short_side(cfg.img_size), show_progress=False)
            ),
            cfg.img_size,
            cfg.delta,
        )
        student, teacher, loss_fn, opt = build_nets(cfg, device)
        nets = Nets(student, student, teacher, loss_fn, opt)
        sampler = StepBatches(len(data), cfg.batch_size, 0, 0, 10**6)
        fixed = next(iter(DataLoader(data, batch_sampler=sampler)))
        fixed = {k: v.to(device) for k, v in fixed.items()}
        with FlopCounterMode(display=False) as counter:
            train_step(nets, itertools.repeat(fixed), cfg, schedules(cfg, 1), 0, 0, device)
        step_flops = counter.get_total_flops()
        t_preloaded = time_steps(nets, itertools.repeat(fixed), cfg, device, steps)
        loader = DataLoader(
            data,
            batch_sampler=sampler,
            num_workers=cfg.workers,
            persistent_workers=cfg.workers > 0,
            pin_memory=device.type == "cuda",
        )
        t_cache = time_steps(nets, iter(loader), cfg, device, steps)
    peak = matmul_flops(device)
    return {
        "arch": cfg.arch,
        "img_size": cfg.img_size,
        "batch_size": cfg.batch_size,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "workers": cfg.workers,
        "pairs_per_s_preloaded": cfg.batch_size / t_preloaded,
        "step_gflop": step_flops / 1e9,
        "step_tflops": step_flops / t_preloaded / 1e12,
        "matmul_tflops": peak / 1e12,
        "flops_fraction_of_matmul": step_flops / t_preloaded / peak,
        "pairs_per_s_from_cache": cfg.batch_size / t_cache,
        "cache_fraction_of_preloaded": t_preloaded / t_cache,
    }


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--arch", default="vit_tiny", choices=["vit_tiny", "vit_small", "vit_base"])
    p.add_argument("--img-size", type=int, default=112)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=5, help="timed steps per measurement (default 5)")
    p.add_argument(
        "--workers",
        type=int,
        default=0,
        help="data-loading processes for the cache run (default 0; on 2 cores workers fight the step)",
    )
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast")
    p.add_argument("--video", help="video for the cache run (default: a synthetic one)")
    p.add_argument("--json", metavar="FILE", help="also write the numbers as JSON")


def run(args: argparse.Namespace) -> int:
    cfg = TrainConfig(
        arch=args.arch,
        img_size=args.img_size,
        batch_size=args.batch_size,
        workers=args.workers,
        device=args.device,
        bf16=args.bf16,
        delta=10,
    )
    r = run_benchmark(cfg, args.steps, args.video)
    print(f"{r['arch']} @ {r['img_size']} px, batch {r['batch_size']}, {r['device']}, {r['threads']} threads")
    print(f"  training step            {r['step_gflop']:.1f} GFLOP")
    print(f"  pairs/s (pre-loaded)     {r['pairs_per_s_preloaded']:.1f}")
    print(
        f"  step FLOP/s              {r['step_tflops'] * 1e3:.1f} GFLOP/s = "
        f"{r['flops_fraction_of_matmul']:.2f} x fp32 matmul ({r['matmul_tflops'] * 1e3:.1f} GFLOP/s)"
    )
    print(
        f"  pairs/s (frame cache)    {r['pairs_per_s_from_cache']:.1f} = "
        f"{r['cache_fraction_of_preloaded']:.2f} x pre-loaded ({r['workers']} workers)"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=2) + "\n")
    return 0

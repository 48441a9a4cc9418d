"""`edge-vsd bench-train`: training throughput of the real VSD step (not a test).

Reports pairs/s, the step's achieved FLOP/s (counted with torch.utils.flop_counter) as a fraction of a
large matmul's FLOP/s measured in the same rounds, the same fraction for a DINO reference step (same backbone,
heads and views, computed as DINO's own code does: see `edge_vsd.dino_reference`), and end-to-end pairs/s fed
from a frame cache (after the loader's warm-up) as a fraction of pairs/s on pre-loaded tensors."""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode

from edge_vsd.checks import at_least
from edge_vsd.config import COMPILE_MODES, TrainConfig
from edge_vsd.data.cache import build_cache, open_cache
from edge_vsd.data.pairs import FramePairs, StepBatches
from edge_vsd.data.prepare import cache_short_side
from edge_vsd.data.synthetic import write_video
from edge_vsd.device import DeviceBatches, compile_nets, fast_math, to_device
from edge_vsd.dino_reference import as_dino_code, dino_optimizer, dino_step
from edge_vsd.errors import InputError
from edge_vsd.model import use_fused_attention
from edge_vsd.nets import Nets, build_nets
from edge_vsd.step import schedules, train_step

# named configurations: the CPU point and the real GPU one (ViT-S/16 at 224, batch 64)
PRESETS: dict[str, dict[str, Any]] = {
    "cpu": dict(arch="vit_tiny", img_size=112, batch_size=32),
    "vit_s16_224": dict(arch="vit_small", img_size=224, batch_size=64),
}
CACHE_WARMUP = 3  # steps fed from the cache before its timing starts
PREFETCH = 4  # batches each loader worker keeps ready
SCHEDULE_STEPS = 10_000  # long enough that every timed step index has a schedule entry


@dataclasses.dataclass(frozen=True)
class BenchOptions:
    """What to time besides the configuration itself."""

    steps: int = 5  # timed steps per block
    rounds: int = 3  # blocks per step kind, order rotating; the median is reported
    attention: str = "auto"  # auto (fused on CUDA only), fused or explicit
    compile: bool = False
    dino: bool = True  # also time the DINO reference step
    reference: str = "dino-code"  # the reference's layers: DINO's own arithmetic, or ours ("our-blocks")
    cache: bool = True  # also time the step fed from the frame cache
    profile: str | None = None  # write torch.profiler tables of pre-loaded and cache-fed steps here


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_size(device: torch.device) -> int:
    """Matmul side for the peak reference: 2048 fills a CPU; a Hopper GPU needs 8192 to reach its peak."""
    return 8192 if device.type == "cuda" else 2048


def matmul_flops(
    device: torch.device, dtype: torch.dtype = torch.float32, n: int | None = None, seconds: float = 2.0
) -> float:
    """FLOP/s of an n x n x n matmul in `dtype`, the machine's practical dense peak."""
    n = n or matmul_size(device)
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    _sync(device)
    reps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        reps += 1
        _sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - start)


def dino_config(cfg: TrainConfig) -> TrainConfig:
    """DINO's structure on the same backbone and heads: two views, CLS loss only, no predictor."""
    return dataclasses.replace(
        cfg, method="dino", delta=0, delta_seconds=None, dense_weight=0.0, independent_crops=True
    )


class Stepper:
    """One kind of training step (nets, config, schedule) that keeps its step counter across blocks.
    `dino_code`: the step, layers and optimizer as DINO's own code computes them."""

    def __init__(
        self, cfg: TrainConfig, device: torch.device, fused: bool, compiled: bool, dino_code: bool = False
    ):
        cfg = copy.copy(cfg).resolve_schedule(SCHEDULE_STEPS)  # the settings `train` would resolve
        self.cfg, self.device, self.step, self.dino_code = cfg, device, 0, dino_code
        student, teacher, loss_fn, opt = build_nets(cfg, device, fused_attention=fused)
        if dino_code:
            as_dino_code(student)
            as_dino_code(teacher)
            opt = dino_optimizer(student)
        self.nets = Nets(student, student, teacher, loss_fn, opt)
        self.sched = schedules(cfg, SCHEDULE_STEPS)
        self.compiled = compiled

    def compile(self) -> None:
        """torch.compile the nets now (after `flops`, whose attention switch would recompile them)."""
        if self.compiled:
            compile_nets(self.nets.student, self.nets.teacher, self.cfg.compile_mode)

    def run(self, batches, n: int) -> float:
        """Seconds per step over `n` steps."""
        _sync(self.device)
        start = time.perf_counter()
        for _ in range(n):
            i = self.step % SCHEDULE_STEPS
            if self.dino_code:
                dino_step(self.nets, next(batches), self.cfg, self.sched, i, self.device)
            else:
                train_step(self.nets, batches, self.cfg, self.sched, i, 0, self.device)
            self.step += 1
        _sync(self.device)
        return (time.perf_counter() - start) / n

    def flops(self, batch: dict[str, torch.Tensor]) -> float:
        """FLOPs of one step, counted with explicit attention (the counter does not see the CPU fused
        kernel; the arithmetic is the same)."""
        fused = [m.fused for m in self.nets.student.modules() if hasattr(m, "fused")]
        use_fused_attention(self.nets.student, False)
        use_fused_attention(self.nets.teacher, False)
        with FlopCounterMode(display=False) as counter:
            self.run(preloaded(batch, self.device), 1)
        use_fused_attention(self.nets.student, any(fused))
        use_fused_attention(self.nets.teacher, any(fused))
        return counter.get_total_flops()


def preloaded(batch: dict[str, torch.Tensor], device: torch.device):
    """`batch` (already on `device`, rows on the CPU) every step, finished there each time as `DeviceBatches`
    finishes a loader batch: deferred photometric steps stay part of the step's work."""
    while True:
        yield to_device(batch, device)


def seconds_per_batch(batches, n: int, use, device: torch.device | None = None, skip: int = 0) -> float:
    """Seconds per batch drawn from `batches` and passed to `use`, over `n` batches after `skip` untimed."""
    for _ in range(skip):
        next(batches)
    start = time.perf_counter()
    for _ in range(n):
        use(next(batches))
    if device is not None:
        _sync(device)
    return (time.perf_counter() - start) / n


def profile_steps(stepper: Stepper, batches, n: int) -> tuple[dict[str, float], str]:
    """Run `n` steps under torch.profiler: per-step wall ms, CPU ms inside each of train_step's named ranges
    (vsd.data/forward/backward/optimizer) and, on CUDA, GPU kernel ms; plus the profiler's op tables."""
    cuda = stepper.device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        wall = stepper.run(batches, n)
    summary = {"wall_ms": wall * 1e3}
    gpu_us = 0.0
    for e in prof.events():
        if e.device_type == DeviceType.CPU and e.name.startswith("vsd."):
            key = f"{e.name}_cpu_ms"
            summary[key] = summary.get(key, 0.0) + e.cpu_time_total / n / 1e3
        elif e.device_type == DeviceType.CUDA and not e.name.startswith("vsd."):
            gpu_us += e.device_time_total  # kernels, copies, memsets (overlap across streams counts twice)
    events = prof.key_averages()
    tables = events.table(sort_by="self_cpu_time_total", row_limit=25)
    if cuda:
        summary["gpu_busy_ms"] = gpu_us / n / 1e3
        tables += "\n" + events.table(sort_by="self_device_time_total", row_limit=25)
    return summary, tables


def timed_rounds(blocks: dict[str, Callable[[], float]], rounds: int) -> dict[str, float]:
    """Median seconds of each block over `rounds`, the order rotating each round."""
    names, times = list(blocks), {k: list[float]() for k in blocks}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            times[name].append(blocks[name]())
    return {k: statistics.median(v) for k, v in times.items()}


def run_benchmark(cfg: TrainConfig, opts: BenchOptions, video: str | None = None) -> dict:
    """Measure the VSD step (and the DINO reference and frame-cache runs) for `cfg`."""
    device = torch.device(cfg.device)
    fast_math(device)
    fused = {"auto": device.type == "cuda", "fused": True, "explicit": False}[opts.attention]
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        video = video or str(write_video(Path(tmp) / "bench.avi", n_frames=120, height=180, width=240))
        cache = build_cache([video], Path(tmp) / "cache", cache_short_side(cfg.img_size), show_progress=False)
        data = FramePairs(open_cache(cache), cfg.img_size, cfg.delta, defer_photometric=cfg.defer_photometric)
        sampler = StepBatches(len(data), cfg.batch_size, 0, 0, 10**6)
        fixed = next(iter(DataLoader(data, batch_sampler=sampler)))
        # as `DeviceBatches` hands them over: photometric rows stay on the CPU, where the decisions read them
        fixed = {k: v if k.endswith("_photo") else v.to(device) for k, v in fixed.items()}
        ours = Stepper(cfg, device, fused, opts.compile)
        # DINO's reference code computes attention with explicit matmuls, uncompiled
        dino_code = opts.reference == "dino-code"
        dino = Stepper(dino_config(cfg), device, False, False, dino_code) if opts.dino else None
        step_flops = ours.flops(fixed)  # one eager step, counted
        ours.compile()
        first_step_s = ours.run(preloaded(fixed, device), 1)  # includes compilation under --compile
        dino_flops = dino.flops(fixed) if dino else 0.0
        ours.run(preloaded(fixed, device), 1)
        if dino:
            dino.run(preloaded(fixed, device), 2)
        blocks = {"ours": lambda: ours.run(preloaded(fixed, device), opts.steps)}
        if dino:
            blocks["dino"] = lambda: dino.run(preloaded(fixed, device), opts.steps)
        # the fp32 matmul reference is a block of the same rounds, so it sees the same machine load
        blocks["matmul"] = lambda: 1 / matmul_flops(device, seconds=1.0)
        t = timed_rounds(blocks, opts.rounds)
        t_cache = None
        if opts.cache:
            loader = DataLoader(
                data,
                batch_sampler=sampler,
                num_workers=cfg.loader_workers,
                persistent_workers=cfg.loader_workers > 0,
                pin_memory=device.type == "cuda",
                prefetch_factor=PREFETCH if cfg.loader_workers > 0 else None,
            )
            batches = DeviceBatches(iter(loader), device)
            ours.run(batches, CACHE_WARMUP)  # worker start-up and the first batches in flight
            t_cache = ours.run(batches, opts.steps * opts.rounds)
            # where a shortfall comes from: the loader alone, then the loader with the copy (and the device
            # photometric steps) but no training step
            # each after taking the batches the workers hold ready (prefetch 4 each), which would flatter it
            workers = cfg.loader_workers
            ready, n = workers * PREFETCH, max(opts.steps * opts.rounds, 2 * workers * PREFETCH)
            t_loader = seconds_per_batch(batches.batches, n, lambda b: b, skip=ready)
            t_copy = seconds_per_batch(batches, n, lambda b: b["globals"], device, ready)
            if opts.profile:
                profiles = {
                    "pre-loaded": profile_steps(ours, preloaded(fixed, device), opts.steps),
                    "frame cache": profile_steps(ours, batches, opts.steps),
                }
                Path(opts.profile).write_text(
                    "".join(f"## {k}\n{json.dumps(v[0], indent=1)}\n{v[1]}\n" for k, v in profiles.items())
                )
    peak = 1 / t["matmul"]
    peak_bf16 = matmul_flops(device, torch.bfloat16) if cfg.bf16 else None
    r = {
        "arch": cfg.arch,
        "img_size": cfg.img_size,
        "batch_size": cfg.batch_size,
        "device": str(device),
        "bf16": cfg.bf16,
        "attention": "fused" if fused else "explicit",
        "reference": opts.reference,
        "compile": opts.compile,
        "compile_mode": cfg.compile_mode,
        "threads": torch.get_num_threads(),
        "matmul_n": matmul_size(device),
        "photometric_on": "device" if cfg.defer_photometric else "loader",
        "workers": cfg.loader_workers,
        "first_step_s": first_step_s,
        "step_s": t["ours"],
        "pairs_per_s_preloaded": cfg.batch_size / t["ours"],
        "step_gflop": step_flops / 1e9,
        "step_tflops": step_flops / t["ours"] / 1e12,
        "matmul_tflops": peak / 1e12,
        "flops_fraction_of_matmul": step_flops / t["ours"] / peak,
    }
    if peak_bf16:
        r["matmul_bf16_tflops"] = peak_bf16 / 1e12
        r["flops_fraction_of_bf16_matmul"] = step_flops / t["ours"] / peak_bf16
    if dino:
        r.update(
            dino_step_s=t["dino"],
            dino_step_gflop=dino_flops / 1e9,
            dino_flops_fraction_of_matmul=dino_flops / t["dino"] / peak,
            fraction_ratio_vs_dino=(step_flops / t["ours"]) / (dino_flops / t["dino"]),
        )
    if t_cache:
        r["pairs_per_s_from_cache"] = cfg.batch_size / t_cache
        r["cache_fraction_of_preloaded"] = t["ours"] / t_cache
        r["pairs_per_s_loader_alone"] = cfg.batch_size / t_loader
        r["pairs_per_s_loader_and_copy"] = cfg.batch_size / t_copy
    return r


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--preset",
        choices=list(PRESETS),
        help="cpu: vit_tiny at 112 px, batch 32; vit_s16_224: ViT-S/16 at 224 px, batch 64 "
        "(--arch/--img-size/--batch-size override it)",
    )
    p.add_argument("--arch", choices=["vit_tiny", "vit_small", "vit_base"], help="default vit_tiny")
    p.add_argument("--img-size", type=int, help="default 112")
    p.add_argument("--batch-size", type=int, help="default 32")
    p.add_argument("--steps", type=int, default=5, help="timed steps per block (default 5)")
    p.add_argument("--rounds", type=int, default=3, help="timed blocks per step kind, median (default 3)")
    p.add_argument(
        "--workers",
        type=int,
        help="data-loading processes for the cache run (default as `train`: 0 on the CPU, up to 4 on CUDA)",
    )
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast (adds a bf16 matmul reference)")
    p.add_argument(
        "--attention",
        choices=["auto", "fused", "explicit"],
        default="auto",
        help="our step's attention: scaled_dot_product_attention (fused), explicit matmuls, or auto "
        "(fused on CUDA only, as `train` does)",
    )
    p.add_argument(
        "--compile", action="store_true", help="torch.compile our step's nets (first step includes it)"
    )
    p.add_argument(
        "--compile-mode",
        choices=list(COMPILE_MODES),
        help="torch.compile mode, implies --compile; reduce-overhead adds CUDA graphs (for launch-bound "
        "GPU steps)",
    )
    p.add_argument(
        "--photometric-on",
        choices=["auto", "loader", "device"],
        default="auto",
        help="colour jitter/blur/solarisation in the loader or batched on the device (auto: as `train`)",
    )
    p.add_argument("--no-dino", action="store_true", help="skip the DINO reference step")
    p.add_argument(
        "--reference",
        choices=["dino-code", "our-blocks"],
        default="dino-code",
        help="the DINO step's layers and optimizer: as DINO's own code computes them (default), or ours "
        "(same attention, drop path, fused AdamW and foreach EMA; only the structure differs)",
    )
    p.add_argument("--no-cache", action="store_true", help="skip the frame-cache run")
    p.add_argument("--video", help="video for the cache run (default: a synthetic one)")
    p.add_argument(
        "--profile",
        metavar="FILE",
        help="after the cache run, write torch.profiler summaries of pre-loaded and cache-fed steps: CPU "
        "ms in each part of the step, GPU kernel ms, top ops",
    )
    p.add_argument("--json", metavar="FILE", help="also write the numbers as JSON")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Defaults < --preset < explicit --arch/--img-size/--batch-size."""
    size = {**PRESETS["cpu"], **PRESETS.get(args.preset or "cpu", {})}
    for k in ("arch", "img_size", "batch_size"):
        if getattr(args, k) is not None:
            size[k] = getattr(args, k)
    return TrainConfig(
        **size,
        workers=args.workers,
        device=args.device,
        bf16=args.bf16,
        delta=10,
        photometric_on=args.photometric_on,
        compile=bool(args.compile or args.compile_mode),
        compile_mode=args.compile_mode or "default",
    )


def report(r: dict) -> str:
    """The human-readable summary of `run_benchmark`'s result."""
    lines = [
        f"{r['arch']} @ {r['img_size']} px, batch {r['batch_size']}, {r['device']}, {r['threads']} threads, "
        f"{'bf16' if r['bf16'] else 'fp32'}, {r['attention']} attention, "
        f"photometric on the {r['photometric_on']}"
        + (f", compiled ({r.get('compile_mode', 'default')})" if r["compile"] else ""),
        f"  training step            {r['step_gflop']:.1f} GFLOP, first step {r['first_step_s']:.1f} s",
        f"  pairs/s (pre-loaded)     {r['pairs_per_s_preloaded']:.1f}",
        f"  step FLOP/s              {r['step_tflops'] * 1e3:.1f} GFLOP/s = "
        f"{r['flops_fraction_of_matmul']:.2f} x fp32 matmul ({r['matmul_tflops'] * 1e3:.1f} GFLOP/s, "
        f"n={r['matmul_n']})",
    ]
    if "flops_fraction_of_bf16_matmul" in r:
        lines.append(
            f"                           = {r['flops_fraction_of_bf16_matmul']:.2f} x bf16 matmul "
            f"({r['matmul_bf16_tflops'] * 1e3:.1f} GFLOP/s)"
        )
    if "dino_step_s" in r:
        lines.append(
            f"  DINO step ({r['reference']})  {r['dino_step_gflop']:.1f} GFLOP, "
            f"{r['dino_flops_fraction_of_matmul']:.2f} x fp32 matmul; ours / DINO = "
            f"{r['fraction_ratio_vs_dino']:.2f}"
        )
    if "pairs_per_s_from_cache" in r:
        lines.append(
            f"  pairs/s (frame cache)    {r['pairs_per_s_from_cache']:.1f} = "
            f"{r['cache_fraction_of_preloaded']:.2f} x pre-loaded ({r['workers']} workers)"
        )
        lines.append(
            f"    no training step: loader alone {r['pairs_per_s_loader_alone']:.1f}, loader + copy to "
            f"{r['device']} (+ photometric there) {r['pairs_per_s_loader_and_copy']:.1f} pairs/s"
        )
    return "\n".join(lines)


def check_args(args: argparse.Namespace, cfg: TrainConfig) -> None:
    """Every flag and path, before any timing: one-line InputError for the first bad one."""
    cfg.validate_settings()
    at_least("--steps", args.steps, 1)
    at_least("--rounds", args.rounds, 1)
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA GPU is visible to PyTorch")
    if args.video is not None and not Path(args.video).is_file():
        raise InputError(f"{args.video}: no such video file (--video)")
    for flag, path in (("--json", args.json), ("--profile", args.profile)):
        if path is not None and not Path(path).parent.is_dir():
            raise InputError(f"{path}: its folder does not exist ({flag})")


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    check_args(args, cfg)
    opts = BenchOptions(
        steps=args.steps,
        rounds=args.rounds,
        attention=args.attention,
        compile=bool(cfg.compile),
        dino=not args.no_dino,
        reference=args.reference,
        cache=not args.no_cache,
        profile=args.profile,
    )
    r = run_benchmark(cfg, opts, args.video)
    print(report(r))
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=2) + "\n")
    return 0

"""`edge-vsd train`: video self-distillation with an EMA teacher, in one readable loop (after DINO)."""

from __future__ import annotations

import argparse
import contextlib
import copy
import ctypes
import json
import logging
import math
import shutil
import signal
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.profiler import record_function
from torch.utils.data import DataLoader
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from edge_vsd import __version__
from edge_vsd.checkpoint import (
    FORMAT,
    backbone_state_dict,
    infer_config,
    load_checkpoint,
    load_encoder,
    save_atomic,
)
from edge_vsd.config import COMPILE_MODES, COMPILE_PAYS_AFTER, TrainConfig, resolve_config, show_value
from edge_vsd.data.augment import finish_views
from edge_vsd.data.cache import build_cache, cache_matches, is_cache, open_cache
from edge_vsd.data.pairs import FramePairs, StepBatches
from edge_vsd.data.prepare import cache_short_side
from edge_vsd.distributed import any_process, barrier, cleanup, init_distributed
from edge_vsd.errors import InputError
from edge_vsd.health import DRIFT_EVERY, Health
from edge_vsd.losses import VSDLoss, read_stats
from edge_vsd.model import (
    DropPath,
    VisionTransformer,
    build_vit,
    use_fused_attention,
)
from edge_vsd.preflight import check_inputs
from edge_vsd.schedules import cosine, linear_then_constant, remaining_init_weight
from edge_vsd.vsd import VSDNet, build_vsd

log = logging.getLogger("edge_vsd")
CHECKPOINT = "checkpoint.pt"
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters


def open_videos(cfg: TrainConfig, rank: int):
    """A frame cache given directly, or one built (or reused) from raw videos under OUT/frame_cache."""
    if not cfg.video:
        raise InputError("no training video: pass --video PATH (file, folder, glob or frame cache)")
    if len(cfg.video) == 1 and is_cache(cfg.video[0]):
        return open_cache(cfg.video[0])
    cache = Path(cfg.cache or Path(cfg.out) / "frame_cache")
    short = cache_short_side(cfg.img_size)
    if rank == 0 and not cache_matches(cache, cfg.video, short, cfg.topic):
        build_cache(cfg.video, cache, short, topic=cfg.topic)
    barrier()
    return open_cache(cache)


def init_backbone(cfg: TrainConfig):
    """A fresh preset ViT, or the `--init` backbone with its position grid resampled to the training size."""
    if not cfg.init:
        return build_vit(cfg.arch, cfg.img_size, cfg.patch_size, cfg.drop_path)
    src = load_encoder(cfg.init).at_size((cfg.img_size, cfg.img_size))  # the grid resampled in its own mode
    model = VisionTransformer(src.cfg, cfg.drop_path)
    model.load_state_dict(src.state_dict())
    return model


def param_groups(model: nn.Module) -> list[dict[str, Any]]:
    """Weight decay on weights only: none on biases and norm parameters (1-D tensors)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if name.endswith(".bias") or p.ndim == 1 else decay).append(p)
    return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]


def schedules(cfg: TrainConfig, total: int) -> dict[str, np.ndarray]:
    """Per-step lr (warm-up + cosine, scaled by batch/256), weight decay, EMA momentum, teacher temp, and
    the teacher's remaining share of its initialisation. Unset settings resolve as `resolve_schedule`."""
    c = copy.copy(cfg).resolve_schedule(total)
    assert c.lr is not None and c.warmup_steps is not None and c.momentum_teacher is not None
    assert c.teacher_temp is not None and c.warmup_teacher_temp_steps is not None
    momentum = cosine(c.momentum_teacher, 1.0, total)
    temp = linear_then_constant(c.warmup_teacher_temp, c.teacher_temp, c.warmup_teacher_temp_steps, total)
    return {
        "lr": cosine(c.lr * c.batch_size / 256, c.min_lr, total, c.warmup_steps),
        "wd": cosine(c.weight_decay, c.weight_decay_end, total),
        "momentum": momentum,
        "teacher_temp": temp,
        "teacher_init_weight": remaining_init_weight(momentum),
    }


@torch.no_grad()
def ema_update(student: VSDNet, teacher: VSDNet, m: float) -> None:
    """teacher = m * teacher + (1 - m) * student, over everything but the predictor."""
    s = dict(student.named_parameters())
    pairs = [(p, s[n]) for n, p in teacher.named_parameters()]
    t_params, s_params = [p for p, _ in pairs], [q.detach() for _, q in pairs]
    torch._foreach_mul_(t_params, m)
    torch._foreach_add_(t_params, s_params, alpha=1 - m)


def rng_state() -> dict[str, Any]:
    """Global torch RNG (drop path); data randomness comes from per-step generators and needs no state."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def make_checkpoint(
    cfg: TrainConfig, step: int, student: VSDNet, teacher: VSDNet, opt, loss_fn: VSDLoss
) -> dict[str, Any]:
    sd = student.state_dict()
    return {
        "format": FORMAT,
        "edge_vsd": {
            "version": __version__,
            "arch": student.backbone.arch,
            "patch_size": student.backbone.patch_size,
            "img_size": [cfg.img_size, cfg.img_size],
            "method": cfg.method,
            "pos_resize": student.backbone.cfg.pos_resize,
        },
        "config": cfg.to_dict(),
        "step": step,
        "student": {k: v for k, v in sd.items() if not k.startswith("predictor.")},
        "predictor": {k[len("predictor.") :]: v for k, v in sd.items() if k.startswith("predictor.")},
        "teacher": teacher.state_dict(),
        "optimizer": opt.state_dict(),
        "loss": loss_fn.state_dict(),
        "rng": rng_state(),
    }


def keep_freed_memory() -> None:
    """Have glibc serve large blocks from the heap and keep freed ones, instead of mapping fresh zeroed
    pages for each: every op over the dense term's (B, N, K) tensors paid for them (on the dev CPU a
    (32, 49, 4096) division took 2.4 ms with fresh pages, 0.9 ms with kept ones). No-op off glibc."""
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return
    if not mallopt(M_MMAP_THRESHOLD, 1 << 30):  # older glibc caps the threshold at 32 MiB
        mallopt(M_MMAP_THRESHOLD, 32 << 20)
    mallopt(M_TRIM_THRESHOLD, 1 << 31)


def fast_math(device: torch.device | None = None) -> None:
    """Flush denormals to zero: the sharp teacher softmax (temperature 0.04) and Adam's second moments make
    denormal floats early in training, and x86 CPUs process those ~20x slower. Call it before the first
    parallel op: the intra-op threads inherit the setting when they are created. Keep freed memory (see
    `keep_freed_memory`). On CUDA, let cuDNN time its algorithms for the step's fixed shapes (as DINO
    does): the patch embedding's default took 0.8 ms."""
    torch.set_flush_denormal(True)
    keep_freed_memory()
    if device is not None and device.type == "cuda":
        torch.backends.cudnn.benchmark = True


@dataclass
class Nets:
    student: VSDNet
    model: nn.Module  # the student, DDP-wrapped under torchrun
    teacher: VSDNet
    loss_fn: VSDLoss
    opt: torch.optim.Optimizer


def adamw(params: list[dict[str, Any]], device: torch.device) -> torch.optim.AdamW:
    """AdamW as one fused kernel over all parameters on CPU and CUDA (on the 2-core dev CPU 76 ms a step
    for the default student against 292 ms for the per-parameter loop), else the foreach form."""
    fused = device.type in ("cpu", "cuda")
    return torch.optim.AdamW(params, fused=fused or None, foreach=None if fused else True)


def compile_nets(student: VSDNet, teacher: VSDNet, mode: str = "default") -> None:
    """torch.compile the student and teacher forwards in place with `mode` (state-dict keys unchanged)."""
    student.compile(mode=mode)
    teacher.compile(mode=mode)


def build_nets(
    cfg: TrainConfig,
    device: torch.device,
    backbone: VisionTransformer | None = None,
    fused_attention: bool | None = None,
) -> tuple[VSDNet, VSDNet, VSDLoss, torch.optim.Optimizer]:
    """Student (with predictor), its EMA teacher (same init, no predictor, no drop-path, no gradients),
    loss, AdamW. `fused_attention` (default: on CUDA only, where it pays) runs attention through
    scaled_dot_product_attention in both nets; exported encoders keep explicit matmuls."""
    heads = (cfg.out_dim, cfg.head_hidden_dim, cfg.head_bottleneck_dim, cfg.separate_patch_head)
    student = build_vsd(
        backbone or init_backbone(cfg), *heads, cfg.predictor_depth, cfg.dense, cfg.norm_last_layer
    ).to(device)
    use_fused_attention(student, device.type == "cuda" if fused_attention is None else fused_attention)
    teacher = copy.deepcopy(student)
    teacher.predictor = None
    teacher.requires_grad_(False)
    # The teacher is deterministic, as in DINO: stochastic depth only regularises the student.
    for m in teacher.modules():
        if isinstance(m, DropPath):
            m.p = 0.0
    teacher.eval()
    loss_fn = VSDLoss(cfg.out_dim, cfg.student_temp, cfg.center_momentum, cfg.dense_weight, cfg.centering)
    loss_fn = loss_fn.to(device)
    return student, teacher, loss_fn, adamw(param_groups(student), device)


@torch.no_grad()
def clip_gradients(model: nn.Module, clip: float, mode: str) -> None:
    """DINO's per-parameter clipping (each gradient's norm at most `clip`), or one global-norm clip."""
    params = [p for p in model.parameters() if p.grad is not None]
    if mode == "global":
        nn.utils.clip_grad_norm_(params, clip)
        return
    grads = [p.grad for p in params]
    # DINO's per-parameter rule, as foreach kernels: each gradient scaled by min(1, clip / (its norm + 1e-6))
    scales = torch._foreach_add(torch._foreach_norm(grads), 1e-6)
    torch._foreach_reciprocal_(scales)
    torch._foreach_mul_(scales, clip)
    torch._foreach_clamp_max_(scales, 1.0)
    torch._foreach_mul_(grads, scales)


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """Copy a loader batch to `device` (non-blocking from pinned memory) and, when the loader deferred the
    photometric augmentation (uint8 crops + drawn rows), apply it there (the rows stay on the CPU)."""
    batch = {k: v if k.endswith("_photo") else v.to(device, non_blocking=True) for k, v in batch.items()}
    return finish_views(batch) if batch["globals"].dtype == torch.uint8 else batch


class DeviceBatches:
    """Loader batches copied to `device` and finished there (`to_device`). On CUDA the next batch is
    prepared on a side stream as soon as one is handed out, so its copy and photometric kernels run beside
    the step that uses the current one instead of in front of the next."""

    def __init__(self, batches: Iterator[dict[str, torch.Tensor]], device: torch.device):
        self.batches, self.device = batches, device
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        self.ready: dict[str, torch.Tensor] | None = None

    def __iter__(self) -> DeviceBatches:
        return self

    def _prepare(self) -> None:
        with torch.cuda.stream(self.stream):
            self.ready = to_device(next(self.batches), self.device)

    def __next__(self) -> dict[str, torch.Tensor]:
        if self.stream is None:
            return to_device(next(self.batches), self.device)
        if self.ready is None:
            self._prepare()
        current = torch.cuda.current_stream(self.device)
        current.wait_stream(self.stream)
        batch, self.ready = self.ready, None
        for t in batch.values():
            t.record_stream(current)  # made on the side stream: keep its memory until the step is done
        with contextlib.suppress(StopIteration):
            self._prepare()
        return batch


def train_step(
    nets: Nets,
    batches,
    cfg: TrainConfig,
    sched: dict[str, np.ndarray],
    step: int,
    freeze_steps: int,
    device: torch.device,
) -> dict[str, float]:
    """One optimizer step over `cfg.accum` micro-batches; EMA and centers move once, at the end."""
    for i, g in enumerate(nets.opt.param_groups):
        g["lr"] = float(sched["lr"][step])
        if i == 0:
            g["weight_decay"] = float(sched["wd"][step])
    totals: dict[str, float] = {}
    for micro in range(cfg.accum):
        if cfg.compile and cfg.compile_mode == "reduce-overhead":
            # CUDA graphs reuse their output memory from one iteration to the next; torch's docs ask
            # training loops to mark where each iteration starts
            torch.compiler.cudagraph_mark_step_begin()
        with record_function("vsd.data"):  # named ranges for `bench-train --profile`
            batch = next(batches)  # on the device and finished (`DeviceBatches`)
        globals_, locals_ = batch["globals"], batch.get("locals")
        last = micro == cfg.accum - 1
        sync = contextlib.nullcontext() if last or nets.model is nets.student else nets.model.no_sync()
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16)
        with sync:
            with autocast, record_function("vsd.forward"):
                with torch.no_grad():
                    t_cls, t_patches = nets.teacher(globals_)
                s_cls, s_patches = nets.model(globals_, locals_)
                temp = float(sched["teacher_temp"][step])
                loss, stats = nets.loss_fn(s_cls, t_cls, s_patches, t_patches, temp)
                values = read_stats(loss, stats)  # the step's one device-to-host synchronisation
                if not math.isfinite(values["loss"]):
                    raise FloatingPointError(f"loss is {values['loss']} at step {step}; lower --lr")
            with record_function("vsd.backward"):
                (loss / cfg.accum).backward()
        for k, v in values.items():
            totals[k] = totals.get(k, 0.0) + v / cfg.accum
    with record_function("vsd.optimizer"):
        if cfg.clip_grad:
            clip_gradients(nets.student, cfg.clip_grad, cfg.clip_mode)
        if step < freeze_steps:
            for n, p in nets.student.named_parameters():
                if "last_layer" in n:
                    p.grad = None
        nets.opt.step()
        nets.opt.zero_grad(set_to_none=True)
        ema_update(nets.student, nets.teacher, float(sched["momentum"][step]))
        nets.loss_fn.update_centers()
    return totals


STOP_CHECK_EVERY = 16  # steps between the torchrun processes' agreement on a stop signal


class Stopped(KeyboardInterrupt):
    """Training ended by SIGINT or SIGTERM; `exit_code` is 128 + the signal number, as a shell reports."""

    def __init__(self, signum: int, message: str = "") -> None:
        super().__init__(message)
        self.signum, self.exit_code = signum, 128 + signum


class StopSignals:
    """SIGINT (Ctrl-C) and SIGTERM (Slurm, Kubernetes) alike: in the step loop the first is recorded and the
    loop stops at the next step boundary; a second one, or one before the loop, raises `Stopped` at once."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.deferring = False
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                if signal.getsignal(sig) != signal.SIG_IGN:  # ignored (nohup, say): the caller's choice
                    self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: object) -> None:
        if self.deferring and self.signum is None:
            self.signum = signum
            print(
                f"\n{signal.Signals(signum).name}: stopping after this step with a checkpoint "
                "(send it again to stop at once)",
                file=sys.stderr,
                flush=True,
            )
            return
        raise Stopped(signum, f"{signal.Signals(signum).name}: stopped at once")

    def defer(self) -> None:
        self.deferring = True

    def requested(self, world: int, device: torch.device, step: int) -> bool:
        """Whether any process got a stop signal. Under torchrun the processes agree every
        STOP_CHECK_EVERY steps (an all-reduce waits for the GPU, so not every step) and stop together."""
        if world == 1:
            return self.signum is not None
        if step % STOP_CHECK_EVERY:
            return False
        signum = any_process(self.signum or 0, device)
        self.signum = self.signum or signum or None
        return self.signum is not None


def ignore_stop_signals(worker_id: int) -> None:
    """Loader workers leave SIGINT/SIGTERM to the training process, which finishes its step (a dead worker
    would break that step's batch) and then shuts them down."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def check_resume(cfg: TrainConfig, out: Path, state: dict[str, Any]) -> None:
    """A --resume keeps the run's model and method: a setting outside RESUME_MAY_CHANGE that differs from
    the run's config.json (else the checkpoint's config) is a one-line InputError."""
    source, saved = out / "config.json", None
    try:
        saved = json.loads(source.read_text())
    except (OSError, ValueError):
        pass
    if not isinstance(saved, dict):
        source, saved = out / CHECKPOINT, state.get("config")
    if not isinstance(saved, dict):
        return
    diffs = cfg.resume_mismatches(saved)
    if diffs:
        shown = ", ".join(
            f"{_setting(name)} {show_value(mine)} (run: {show_value(theirs)})" for name, mine, theirs in diffs
        )
        raise InputError(
            f"{source}: --resume cannot change {shown}; keep the run's settings, or start a new run with "
            f"another --out (--init {out / CHECKPOINT} starts it from these weights)"
        )


def _setting(name: str) -> str:
    """A TrainConfig field as the user sets it: its flag, or its config-file key when it has no flag."""
    return "--" + name.replace("_", "-") if name in OPTION_FIELDS else name


def train(
    cfg: TrainConfig,
    resume: bool = False,
    show_progress: bool = True,
    stop_after: int | None = None,
    evaluator: Any = None,
) -> Path:
    """Run VSD training; returns the checkpoint path. Resumes from OUT/checkpoint.pt when `resume`;
    `stop_after` ends this session after that many steps (checkpoint saved, schedule of the full run kept).
    `evaluator(step, {"student": vit, "teacher": vit}, device)` -> metrics row, every `cfg.eval_every` steps
    (and at step 0 and the last step), with `.plot(metrics_file)`; see edge_vsd.benchmarks.train_eval."""
    with StopSignals() as signals:
        try:
            return _train(cfg, resume, show_progress, stop_after, signals, evaluator)
        except Stopped as exc:
            if signals.deferring:  # the step loop said what it saved
                raise
            kept = "the checkpoint is unchanged" if resume else "no checkpoint was saved"
            raise Stopped(exc.signum, f"{exc} before the first step; {kept}") from None


def _train(
    cfg: TrainConfig,
    resume: bool,
    show_progress: bool,
    stop_after: int | None,
    signals: StopSignals,
    evaluator: Any = None,
) -> Path:
    """`train` with its stop signals: SIGINT or SIGTERM ends the loop at a step boundary with a checkpoint."""
    cfg.validate()
    rank, world, device = init_distributed(cfg.device)
    fast_math(device)
    out = Path(cfg.out)
    ckpt_path = out / CHECKPOINT
    if resume and not ckpt_path.exists():
        raise InputError(f"{ckpt_path}: nothing to resume (no checkpoint there)")
    if not resume and ckpt_path.exists():
        raise InputError(f"{ckpt_path} exists; pass --resume to continue it or choose another --out")
    state = load_checkpoint(ckpt_path) if resume else None
    if state is not None:
        if state.get("format") != FORMAT:
            raise InputError(f"{ckpt_path}: not an edge-vsd training checkpoint")
        check_resume(cfg, out, state)  # before anything is written
        if cfg.init:
            log.info("--resume: ignoring --init, the checkpoint already holds the weights")
    check_inputs(cfg)  # before decoding: --init file, missing videos, delta longer than every video
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    videos = open_videos(cfg, rank)
    data = FramePairs(
        videos,
        cfg.img_size,
        cfg.delta,
        cfg.delta_seconds,
        cfg.local_crops,
        cfg.local_size,
        cfg.augment(),
        cfg.skip_cuts,
        cfg.defer_photometric,
    )
    if cfg.skip_cuts and rank == 0:
        print(f"scene cuts: {data.cuts} found; pairs never span one", file=sys.stderr)
    steps_per_epoch = max(1, len(data) // cfg.batch_size)
    total = cfg.steps if cfg.steps is not None else cfg.epochs * steps_per_epoch
    cfg.resolve_schedule(total, steps_per_epoch)  # config.json records the values the run used
    freeze_steps = cfg.freeze_last_layer_steps or 0
    sched = schedules(cfg, total)
    if cfg.resolve_compile(total, world) and rank == 0:
        print(
            f"compile: CUDA graphs (torch.compile reduce-overhead) for {total} steps; about a minute of "
            "compilation before step 1 (--no-compile: eager)",
            file=sys.stderr,
        )

    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    # on resume the architecture comes from the checkpoint (an --init backbone may differ from --arch)
    backbone = None
    if state is not None:
        meta = state.get("edge_vsd") if isinstance(state.get("edge_vsd"), dict) else {}
        size = (cfg.img_size, cfg.img_size)
        vit_cfg = infer_config(backbone_state_dict(state, "student"), size, meta.get("pos_resize"))
        backbone = VisionTransformer(vit_cfg, cfg.drop_path)
    student, teacher, loss_fn, opt = build_nets(cfg, device, backbone)
    if cfg.compile:
        # state-dict keys stay plain, so checkpoints load either way
        compile_nets(student, teacher, cfg.compile_mode)
    step = 0
    if state is not None:
        try:
            student.load_state_dict(
                {**state["student"], **{f"predictor.{k}": v for k, v in state["predictor"].items()}}
            )
            teacher.load_state_dict(state["teacher"])
            opt.load_state_dict(state["optimizer"])
            loss_fn.load_state_dict(state["loss"])
        except (RuntimeError, ValueError, KeyError) as exc:  # a config.json edited by hand, say
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(f"{ckpt_path}: does not fit the run's settings ({first})") from None
        set_rng_state(state["rng"])
        step = int(state["step"])
    if rank == 0:
        cfg.save(out / "config.json")
        _trim_metrics(out / "metrics.jsonl", step)
    model = DistributedDataParallel(student) if world > 1 else student
    nets = Nets(student, model, teacher, loss_fn, opt)

    loader = DataLoader(
        data,
        batch_sampler=StepBatches(len(data), cfg.batch_size, cfg.seed, step, total, cfg.accum, rank, world),
        num_workers=cfg.loader_workers,
        generator=torch.Generator(),
        pin_memory=device.type == "cuda",
        worker_init_fn=ignore_stop_signals,
    )
    batches = DeviceBatches(iter(loader), device)
    stop = min(total, step + stop_after) if stop_after else total
    bar = tqdm(
        total=total,
        initial=step,
        desc="train",
        unit="step",
        disable=not show_progress or rank != 0,
        dynamic_ncols=True,
    )
    metrics = open(out / "metrics.jsonl", "a") if rank == 0 else None
    warmup_end = max(int(np.argmax(sched["lr"])), int(np.argmax(sched["teacher_temp"])))
    health = Health(loss_fn.max_entropy, warmup_end, teacher)
    saved = step if state is not None else -1

    def evaluate(at: int) -> None:
        if evaluator is None or metrics is None:
            return
        nets_now = {"student": student.backbone, "teacher": teacher.backbone}
        metrics.write(json.dumps(evaluator(at, nets_now, str(device))) + "\n")
        metrics.flush()
        evaluator.plot(out / "metrics.jsonl")

    if step == 0:
        evaluate(0)  # the random start, the row every later one is read against
    signals.defer()
    quiet_bar = contextlib.ExitStack()
    if show_progress and rank == 0:  # log lines print above the progress bar, not into it
        quiet_bar.enter_context(logging_redirect_tqdm())
    try:
        while step < stop and not signals.requested(world, device, step):
            stats = train_step(nets, batches, cfg, sched, step, freeze_steps, device)
            stats.update(health.fractions(stats))
            init_weight = float(sched["teacher_init_weight"][step])
            warning = health.check(step, stats, init_weight)
            if warning and rank == 0:
                log.warning(warning)
            if (step + 1) % DRIFT_EVERY == 0 or step + 1 == stop:
                stats["teacher_drift"] = health.drift(teacher)
            if metrics is not None:
                row = {"step": step + 1, **stats, **{k: float(v[step]) for k, v in sched.items()}}
                metrics.write(json.dumps(row) + "\n")
                metrics.flush()
            step += 1
            bar.update(1)
            shown = {k: f"{stats[k]:.3f}" for k in ("loss", "loss_dense") if k in stats}
            shown["H/lnK"] = f"{stats['teacher_entropy_frac']:.2f}"
            shown["init"] = f"{init_weight:.2f}"  # the teacher's remaining share of its random start
            bar.set_postfix(shown)
            if cfg.eval_every and (step % cfg.eval_every == 0 or step == total):
                evaluate(step)
            if rank == 0 and (step % cfg.save_every == 0 or step == stop):
                save_atomic(make_checkpoint(cfg, step, student, teacher, opt, loss_fn), ckpt_path)
                saved = step
        if step < stop and rank == 0 and saved != step:  # stopped by a signal: keep what was done
            save_atomic(make_checkpoint(cfg, step, student, teacher, opt, loss_fn), ckpt_path)
    except Stopped as exc:  # a second signal: the step it broke off may be half applied, so nothing saved
        done = f"the last checkpoint (step {saved}) stays" if saved >= 0 else "no checkpoint was saved"
        raise Stopped(exc.signum, f"{exc} at step {step}; {done} in {ckpt_path}") from None
    finally:
        bar.close()
        quiet_bar.close()
        if metrics is not None:
            metrics.close()
        cleanup()
    if step < stop:
        name = "interrupted" if signals.signum == signal.SIGINT else signal.Signals(signals.signum).name
        raise Stopped(
            signals.signum, f"{name} at step {step}; checkpoint saved to {ckpt_path} (--resume continues)"
        )
    return ckpt_path


def _trim_metrics(path: Path, step: int) -> None:
    """Drop rows logged after the checkpoint we resume from (they will be logged again)."""
    if not path.exists():
        return
    rows = [r for r in path.read_text().splitlines() if _row_step(r) <= step]
    path.write_text("".join(r + "\n" for r in rows))


def _row_step(row: str) -> float:
    """A metrics row's step; inf for a row cut short by a kill (dropped, it is logged again)."""
    try:
        return json.loads(row)["step"]
    except (ValueError, KeyError, TypeError):
        return math.inf


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--video",
        action="append",
        metavar="PATH",
        help="video file, folder or glob (repeatable), or one frame cache from `edge-vsd prepare` (alone); "
        "ROS 2 bags (.mcap, .db3, bag folder) too",
    )
    p.add_argument("--topic", help="ROS 2 bags: the image topic (default: the bag's only image topic)")
    p.add_argument("--out", help="run folder: config.json, metrics.jsonl, checkpoint.pt (default runs/vsd)")
    p.add_argument(
        "--arch", choices=["vit_tiny", "vit_small", "vit_base"], help="ViT preset (default vit_tiny)"
    )
    p.add_argument("--patch-size", type=int, choices=[8, 16], help="patch size (default 16)")
    p.add_argument("--img-size", type=int, help="training crop size in pixels (default 112)")
    p.add_argument("--batch-size", type=int, help="global batch of frame pairs (default 32)")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, help="optimizer steps in total")
    length.add_argument("--epochs", type=int, help="passes over all (t, t+delta) pairs (default 10)")
    delta = p.add_mutually_exclusive_group()
    delta.add_argument("--delta", type=int, help="frames between t and t+delta (default 30)")
    delta.add_argument(
        "--delta-seconds", type=float, help="delta in seconds, converted with each video's fps"
    )
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--save-every", type=int, help="checkpoint every N steps (default 100)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument(
        "--stop-after",
        type=int,
        metavar="N",
        help="end this session after N steps with a checkpoint (for time-sliced jobs; --resume goes on)",
    )
    p.add_argument("--init", metavar="CKPT", help="start from an edge-vsd, DINO or DoRA checkpoint")
    p.add_argument("--accum", type=int, help="gradient accumulation micro-batches per step (default 1)")
    p.add_argument(
        "--workers",
        type=int,
        help="data-loading processes (default: 0 on the CPU, in the training process; up to 4 on CUDA: more "
        "took CPU from the launch-bound training process and slowed it)",
    )
    p.add_argument("--device", choices=["cpu", "cuda"], help="default cpu")
    p.add_argument("--config", metavar="FILE", help="JSON/TOML file of TrainConfig fields; flags override it")
    p.add_argument(
        "--schedule",
        choices=["fit", "dino"],
        help="how the unset schedule settings follow from the run's length: fit (default) ends any run with "
        "a teacher that has left its random start (momentum from the step count, teacher temperature 0.04, "
        "lr 2e-3); dino keeps DINO's 100-epoch values (momentum 0.996, temperature 0.04->0.07, lr 5e-4)",
    )
    p.add_argument("--lr", type=float, help="base learning rate per 256 pairs (default: by --schedule)")
    p.add_argument(
        "--momentum-teacher",
        type=float,
        metavar="M",
        help="base EMA momentum, cosine to 1 (fit: the largest <= 0.996 leaving 0.5%% of the init)",
    )
    p.add_argument("--teacher-temp", type=float, help="teacher temperature after warm-up (fit: 0.04)")
    p.add_argument(
        "--freeze-last-layer-steps",
        type=int,
        metavar="N",
        help="steps with the heads' last layer frozen (fit: 10%% of training, at most 1250)",
    )
    p.add_argument("--out-dim", type=int, help="prototypes of the projection head (default 4096)")
    p.add_argument(
        "--local-crops", type=int, help="DINO local crops per frame for the global term (default 0)"
    )
    p.add_argument(
        "--separate-patch-head",
        action="store_true",
        default=None,
        help="own projection head for patches (default: shared with CLS)",
    )
    p.add_argument("--bf16", action="store_true", default=None, help="bfloat16 autocast")
    p.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="torch.compile the student and teacher (about a minute of compilation first). Default: CUDA "
        f"graphs (--compile-mode reduce-overhead) on one CUDA GPU for runs of {COMPILE_PAYS_AFTER}+ steps, "
        "else eager; see the README's training table",
    )
    p.add_argument(
        "--compile-mode",
        choices=list(COMPILE_MODES),
        default=None,
        help="torch.compile mode, implies --compile (default: default); reduce-overhead adds CUDA graphs",
    )
    m = p.add_argument_group("method and baselines (each is recorded in config.json and the checkpoint)")
    m.add_argument(
        "--method",
        choices=["vsd", "dino"],
        help="vsd (default) or the dino preset: two independently cropped views of one frame, "
        "CLS loss only, no predictor (sets --delta 0 --dense-weight 0 --independent-crops)",
    )
    m.add_argument(
        "--dense-weight",
        type=float,
        metavar="W",
        help="loss = (global + W * dense) / (1 + W) (default 1: their mean; 0: no dense term)",
    )
    m.add_argument(
        "--independent-crops",
        action="store_true",
        default=None,
        help="a crop per global view, as DINO (needs --dense-weight 0)",
    )
    m.add_argument(
        "--skip-cuts",
        action="store_true",
        default=None,
        help="detect scene cuts (colour-histogram jumps), report them, and drop pairs that span one",
    )
    m.add_argument(
        "--centering",
        choices=["ema", "sinkhorn"],
        help="teacher centering: ema (DINO's running center, default) or sinkhorn (DINOv2's Sinkhorn-Knopp "
        "equipartition per batch)",
    )
    m.add_argument(
        "--clip-mode",
        choices=["per-param", "global"],
        help="gradient clipping at 3.0: per parameter as DINO (default) or of the global norm",
    )
    m.add_argument(
        "--norm-last-layer",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="fix the weight-norm gain of the heads' last layer at 1 (DINO's default: on)",
    )
    a = p.add_argument_group("augmentation (defaults: DINO's recipe)")
    a.add_argument("--crop-scale", type=float, nargs=2, metavar=("LO", "HI"), help="default 0.4 1.0")
    a.add_argument(
        "--blur-prob", type=float, nargs=2, metavar=("P1", "P2"), help="per global view (default 1.0 0.1)"
    )
    a.add_argument("--solarize-prob", type=float, metavar="P", help="second global view (default 0.2)")
    a.add_argument("--hue", type=float, help="hue jitter, a share of the colour circle (default 0.1)")
    a.add_argument(
        "--blur-sigma",
        choices=["relative", "pixels"],
        help="blur sigma 0.1-2.0 px at 224 scaled to the crop size (relative, default) or in pixels",
    )
    a.add_argument(
        "--photometric-on",
        choices=["auto", "loader", "device"],
        help="where colour jitter, blur and solarisation run: in the data loader, or batched on the training "
        "device after the copy (loader then ships uint8 crops); auto (default): device on CUDA or with "
        "--bf16",
    )
    p.add_argument("--cache", help="frame-cache folder for raw videos (default OUT/frame_cache)")
    e = p.add_argument_group("evaluation while training")
    e.add_argument(
        "--eval-every",
        type=int,
        metavar="N",
        help="score the student and teacher every N steps (and at steps 0 and last) into metrics.jsonl and "
        "learning_curve.png: J&F, probe mIoU and/or warp + lighting correspondence (default 0: never)",
    )
    e.add_argument(
        "--eval-data",
        metavar="PATH",
        help="held-out set: a make-data folder (try --hard), a DAVIS or ADE20K-layout folder, or a video",
    )


OPTION_FIELDS = [
    "topic",
    "out",
    "arch",
    "patch_size",
    "img_size",
    "batch_size",
    "steps",
    "epochs",
    "delta",
    "delta_seconds",
    "seed",
    "save_every",
    "init",
    "accum",
    "workers",
    "device",
    "schedule",
    "lr",
    "momentum_teacher",
    "teacher_temp",
    "freeze_last_layer_steps",
    "out_dim",
    "local_crops",
    "separate_patch_head",
    "bf16",
    "compile",
    "compile_mode",
    "cache",
    "method",
    "dense_weight",
    "independent_crops",
    "skip_cuts",
    "clip_mode",
    "centering",
    "norm_last_layer",
    "crop_scale",
    "blur_prob",
    "solarize_prob",
    "hue",
    "blur_sigma",
    "photometric_on",
    "eval_every",
    "eval_data",
]


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Defaults < config file (--config, or the run's own config.json on --resume) < flags given."""
    overrides = {k: getattr(args, k) for k in OPTION_FIELDS}
    overrides["video"] = args.video
    base = args.config
    if base is None and args.resume:
        saved = Path(args.out or TrainConfig.out) / "config.json"
        base = str(saved) if saved.exists() else None
    cfg = resolve_config(base, overrides)
    # a length or delta flag replaces the file's choice of the other form
    if args.epochs is not None:
        cfg.steps = None
    if args.delta is not None:
        cfg.delta_seconds = None
    if args.compile_mode is not None:  # a mode asks for compilation
        cfg.compile = True
    return cfg


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    fresh = not Path(cfg.out).exists()
    evaluator = None
    if cfg.eval_every:
        cfg.validate_settings()
        from edge_vsd.benchmarks.train_eval import TrainingEval

        evaluator = TrainingEval(cfg.eval_data or "", cfg.img_size, cfg.out)
    try:
        path = train(cfg, resume=args.resume, stop_after=args.stop_after, evaluator=evaluator)
    except KeyboardInterrupt as exc:
        print(str(exc) or "interrupted", file=sys.stderr)
        return getattr(exc, "exit_code", 130)
    except InputError:
        if fresh and not (Path(cfg.out) / CHECKPOINT).exists():  # a failed new run leaves no run folder
            shutil.rmtree(cfg.out, ignore_errors=True)
        raise
    print(f"checkpoint: {path}")
    return 0

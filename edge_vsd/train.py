"""`edge-vsd train`'s loop: video self-distillation with an EMA teacher, in one readable loop (after DINO)."""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm.contrib.logging import logging_redirect_tqdm

from edge_vsd.checkpoint import save_atomic
from edge_vsd.config import TrainConfig
from edge_vsd.data.cache import build_cache, cache_matches, is_cache, open_cache
from edge_vsd.data.pairs import FramePairs, StepBatches
from edge_vsd.data.prepare import cache_short_side
from edge_vsd.device import DeviceBatches, compile_nets, fast_math
from edge_vsd.distributed import barrier, cleanup, init_distributed
from edge_vsd.errors import InputError
from edge_vsd.health import DRIFT_EVERY, Health
from edge_vsd.nets import Nets, build_nets
from edge_vsd.preflight import check_inputs
from edge_vsd.progress import progress
from edge_vsd.run_state import (
    CHECKPOINT,
    load_state,
    make_checkpoint,
    restore,
    resumed_backbone,
    trim_metrics,
)
from edge_vsd.step import schedules, train_step
from edge_vsd.stop import Stopped, StopSignals, ignore_stop_signals

log = logging.getLogger("edge_vsd")


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
    state = load_state(cfg, resume)
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
    backbone = resumed_backbone(cfg, state) if state is not None else None
    student, teacher, loss_fn, opt = build_nets(cfg, device, backbone)
    if cfg.compile:
        # state-dict keys stay plain, so checkpoints load either way
        compile_nets(student, teacher, cfg.compile_mode)
    step = restore(state, student, teacher, opt, loss_fn, ckpt_path) if state is not None else 0
    if rank == 0:
        cfg.save(out / "config.json")
        trim_metrics(out / "metrics.jsonl", step)
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
    shows_bar = show_progress and rank == 0
    bar = progress(total=total, initial=step, desc="train", unit="step", disable=not shows_bar)
    metrics = open(out / "metrics.jsonl", "a") if rank == 0 else None
    warmup_end = max(int(np.argmax(sched["lr"])), int(np.argmax(sched["teacher_temp"])))
    end_weight, end_temp = (float(sched[k][-1]) for k in ("teacher_init_weight", "teacher_temp"))
    health = Health(loss_fn.max_entropy, warmup_end, teacher, end_weight, end_temp, cfg.koleo or 0.0)
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
    if shows_bar:  # log lines print above the progress bar, not into it
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
            shown: dict[str, str] = {k: f"{stats[k]:.3f}" for k in ("loss", "loss_dense") if k in stats}
            shown["H/lnK"] = f"{stats['teacher_entropy_frac']:.2f}"
            shown["init"] = f"{init_weight:.2f}"  # the teacher's remaining share of its random start
            bar.set_postfix(shown, refresh=False)  # drawn with the bar's next line, not one per step
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
        assert signals.signum is not None  # the loop ended on a stop signal
        name = "interrupted" if signals.signum == signal.SIGINT else signal.Signals(signals.signum).name
        raise Stopped(
            signals.signum, f"{name} at step {step}; checkpoint saved to {ckpt_path} (--resume continues)"
        )
    return ckpt_path

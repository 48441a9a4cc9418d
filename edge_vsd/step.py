"""One optimizer step of VSD (after DINO's train_one_epoch) and the per-step schedules it reads."""

from __future__ import annotations

import contextlib
import copy
import math

import numpy as np
import torch
from torch import nn
from torch.profiler import record_function

from edge_vsd.config import TrainConfig
from edge_vsd.losses import koleo, koleo_sets, read_stats
from edge_vsd.nets import Nets
from edge_vsd.schedules import cosine, linear_then_constant, remaining_init_weight
from edge_vsd.vsd import VSDNet


def schedules(cfg: TrainConfig, total: int) -> dict[str, np.ndarray]:
    """Per-step lr (warm-up + cosine, scaled by batch/256), weight decay, EMA momentum, teacher temp, and
    the teacher's remaining share of its initialisation. Unset settings resolve as `resolve_schedule`."""
    c = copy.copy(cfg).resolve_schedule(total)
    assert c.lr is not None and c.warmup_steps is not None and c.momentum_teacher is not None
    assert c.momentum_teacher_end is not None
    assert c.teacher_temp is not None and c.warmup_teacher_temp_steps is not None
    momentum = cosine(c.momentum_teacher, c.momentum_teacher_end, total)
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


def random_patch_mask(batch: int, patches: int, ratio: float, device: torch.device) -> torch.Tensor:
    """(batch, patches) bool: round(ratio * patches) patches of each image (at least one), drawn at random,
    are True."""
    k = max(1, round(ratio * patches))
    mask = torch.zeros(batch, patches, dtype=torch.bool, device=device)
    return mask.scatter_(1, torch.rand(batch, patches, device=device).topk(k, dim=1).indices, True)


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
        g["lr"] = float(sched["lr"][step]) * g.get("lr_scale", 1.0)
        if g.get("apply_wd", i == 0):
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
                w_koleo = cfg.koleo or 0.0  # resolved by now (None only before resolve_schedule)
                mask = None
                if cfg.mask_ratio > 0:
                    p = nets.student.backbone.patch_size  # the --init encoder's, where one is given
                    n = (globals_.shape[-2] // p) * (globals_.shape[-1] // p)
                    mask = random_patch_mask(globals_.shape[0], n, cfg.mask_ratio, globals_.device)
                embed = w_koleo > 0 or cfg.koleo_patches > 0
                s_out = nets.model(globals_, locals_, embed=embed, mask=mask)
                s_cls, s_patches = s_out[0], s_out[1]
                temp = float(sched["teacher_temp"][step])
                loss, stats = nets.loss_fn(s_cls, t_cls, s_patches, t_patches, temp, mask)
                total = loss
                # the KoLeo terms are reported apart from the loss, which the health checks read against ln K
                if w_koleo > 0:
                    stats["koleo"] = koleo(s_out[2][:, 0], 2)
                    total = total + w_koleo * stats["koleo"]
                if cfg.koleo_patches > 0:
                    stats["koleo_patches"] = koleo_sets(s_out[2][:, 1:])
                    total = total + cfg.koleo_patches * stats["koleo_patches"]
                values = read_stats(loss, stats)  # the step's one device-to-host synchronisation
                if not math.isfinite(values["loss"]):
                    raise FloatingPointError(f"loss is {values['loss']} at step {step}; lower --lr")
            with record_function("vsd.backward"):
                (total / cfg.accum).backward()
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

"""The DINO reference step that `bench-train` times beside ours: DINO's training step as its own code computes
it (main_dino.py's loop, vision_transformer.py's attention and drop path, torch's default AdamW, per-parameter
EMA and clipping loops), on our backbone, heads and views. Written from DINO's published code's arithmetic;
kept apart from the training core, which never imports it."""

from __future__ import annotations

import types

import numpy as np
import torch
from torch import nn

from edge_vsd.config import TrainConfig
from edge_vsd.model import Attention, DropPath
from edge_vsd.nets import Nets, param_groups


def _dino_attention(self: Attention, x: torch.Tensor, rope: object = None) -> torch.Tensor:
    assert rope is None, "DINO's attention has no RoPE"  # only DINOv3 backbones pass tables
    b, n, c = x.shape
    qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
    return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


def _dino_drop_path(self: DropPath, x: torch.Tensor) -> torch.Tensor:
    if self.p == 0.0 or not self.training:
        return x
    keep = 1 - self.p
    mask = (keep + torch.rand((x.shape[0],) + (1,) * (x.ndim - 1), dtype=x.dtype, device=x.device)).floor_()
    return x.div(keep) * mask


def as_dino_code(net: nn.Module) -> nn.Module:
    """Make every attention and drop-path layer of `net` compute as DINO's vision_transformer.py does."""
    for m in net.modules():
        if isinstance(m, Attention):
            m.forward = types.MethodType(_dino_attention, m)  # type: ignore[method-assign]  # on purpose
        elif isinstance(m, DropPath):
            m.forward = types.MethodType(_dino_drop_path, m)  # type: ignore[method-assign]  # on purpose
    return net


def dino_optimizer(student: nn.Module) -> torch.optim.Optimizer:
    """main_dino.py's `torch.optim.AdamW(params_groups)`: torch picks the implementation (no fused flag)."""
    return torch.optim.AdamW(param_groups(student))


def dino_step(
    nets: Nets,
    batch: dict[str, torch.Tensor],
    cfg: TrainConfig,
    sched: dict[str, np.ndarray],
    step: int,
    device: torch.device,
) -> float:
    """One step in main_dino.py's train_one_epoch order, with its per-parameter clipping and EMA loops."""
    for i, g in enumerate(nets.opt.param_groups):
        g["lr"] = float(sched["lr"][step])
        if i == 0:
            g["weight_decay"] = float(sched["wd"][step])
    images = batch["globals"]
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
        t_cls, _ = nets.teacher(images)
        s_cls, _ = nets.student(images)
        loss, _ = nets.loss_fn(s_cls, t_cls, None, None, float(sched["teacher_temp"][step]))
    nets.opt.zero_grad()
    loss.backward()
    for p in nets.student.parameters():
        if p.grad is not None:
            coef = cfg.clip_grad / (p.grad.data.norm(2) + 1e-6)
            if coef < 1:
                p.grad.data.mul_(coef)
    nets.opt.step()
    m = float(sched["momentum"][step])
    with torch.no_grad():
        s = dict(nets.student.named_parameters())
        for name, p in nets.teacher.named_parameters():
            p.data.mul_(m).add_((1 - m) * s[name].detach().data)
    nets.loss_fn.update_centers()
    return loss.item()

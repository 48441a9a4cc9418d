"""A run's state on disk: the training checkpoint (weights, optimizer, centers, RNG), resuming from it, and
the metrics log cut back to it."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import torch

from edge_vsd import __version__
from edge_vsd.checkpoint import FORMAT, backbone_state_dict, infer_config, load_checkpoint
from edge_vsd.config import TrainConfig, show_value
from edge_vsd.errors import InputError
from edge_vsd.losses import VSDLoss
from edge_vsd.model import VisionTransformer
from edge_vsd.vsd import VSDNet

log = logging.getLogger("edge_vsd")
CHECKPOINT = "checkpoint.pt"


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


def load_state(cfg: TrainConfig, resume: bool) -> dict[str, Any] | None:
    """The checkpoint to resume from (checked against the run's settings), or None for a new run; a new
    run refuses an OUT that already holds one."""
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
    return state


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
    from edge_vsd.train_cli import OPTION_FIELDS  # here: the train CLI imports the loop, which imports this

    return "--" + name.replace("_", "-") if name in OPTION_FIELDS else name


def resumed_backbone(cfg: TrainConfig, state: dict[str, Any]) -> VisionTransformer:
    """The checkpoint's ViT architecture (an --init backbone may differ from --arch), weights still random."""
    meta = state.get("edge_vsd")
    meta = meta if isinstance(meta, dict) else {}
    size = (cfg.img_size, cfg.img_size)
    vit_cfg = infer_config(backbone_state_dict(state, "student"), size, meta.get("pos_resize"))
    return VisionTransformer(vit_cfg, cfg.drop_path)


def restore(
    state: dict[str, Any], student: VSDNet, teacher: VSDNet, opt, loss_fn: VSDLoss, ckpt_path: Path
) -> int:
    """Load the checkpoint's weights, optimizer, centers and RNG into the run; returns its step."""
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
    return int(state["step"])


def trim_metrics(path: Path, step: int) -> None:
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

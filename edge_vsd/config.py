"""Training configuration: a typed dataclass with defaults; `--config FILE` and CLI flags override it."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from edge_vsd.errors import InputError


@dataclass
class TrainConfig:
    video: list[str] = field(default_factory=list)  # videos, folders, globs, or one frame-cache folder
    out: str = "runs/vsd"
    arch: str = "vit_tiny"
    patch_size: int = 16
    img_size: int = 112
    batch_size: int = 32  # global batch (split across processes and --accum micro-batches)
    steps: int | None = None  # total optimizer steps; overrides epochs
    epochs: int = 10
    delta: int = 30  # frames between t and t+delta
    delta_seconds: float | None = None  # overrides delta, converted with each video's fps
    seed: int = 0
    save_every: int = 100
    accum: int = 1
    workers: int = 0
    device: str = "cpu"
    init: str | None = None
    cache: str | None = None  # frame-cache folder for raw videos (default OUT/frame_cache)
    # optimisation (DINO defaults, lr scaled by batch/256)
    lr: float = 5e-4
    min_lr: float = 1e-6
    warmup_steps: int | None = None  # default: 10% of training
    weight_decay: float = 0.04
    weight_decay_end: float = 0.4
    momentum_teacher: float = 0.996
    clip_grad: float = 3.0
    freeze_last_layer_steps: int | None = None  # default: one epoch, at most 10% of training
    drop_path: float = 0.1
    bf16: bool = False
    # heads and loss
    out_dim: int = 4096
    head_hidden_dim: int = 1024
    head_bottleneck_dim: int = 256
    separate_patch_head: bool = False
    predictor_depth: int = 2
    student_temp: float = 0.1
    warmup_teacher_temp: float = 0.04
    teacher_temp: float = 0.07
    warmup_teacher_temp_steps: int | None = None  # default: 30% of training
    center_momentum: float = 0.9
    local_crops: int = 0  # DINO local crops per frame for the global term
    local_size: int = 48

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a JSON (or TOML) config file into a dict of TrainConfig fields."""
    path = Path(path)
    try:
        text = path.read_text()
        if path.suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        else:
            data = json.loads(text)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read config ({exc})") from None
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise InputError(f"{path}: unknown config keys {', '.join(unknown)}")
    return data


def resolve_config(file: str | None, overrides: dict[str, Any]) -> TrainConfig:
    """Defaults < config file < CLI flags (only flags actually given, i.e. not None)."""
    values: dict[str, Any] = load_config_file(file) if file else {}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig(**values)

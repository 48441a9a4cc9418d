"""Training configuration: a typed dataclass with defaults; `--config FILE` and CLI flags override it."""

from __future__ import annotations

import json
import os
import sys
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from edge_vsd.atomic import write_atomic
from edge_vsd.checks import at_least, check_img_size, check_writable_dir
from edge_vsd.data.augment import AugmentConfig
from edge_vsd.errors import InputError

# `--method` presets: fields they set unless a flag or config file sets them explicitly
METHOD_PRESETS: dict[str, dict[str, Any]] = {
    "vsd": {},
    # DINO on the same frames: two independently cropped views of one frame, CLS loss only, no predictor
    "dino": {"delta": 0, "delta_seconds": None, "dense_weight": 0.0, "independent_crops": True},
}


COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")  # torch.compile modes

# `--schedule`: how the unset schedule settings are derived from the run's length (`resolve_schedule`).
# "fit" ends every run with a teacher that has left its random start; "dino" keeps DINO's values, made for
# 100 ImageNet epochs (about 125k steps at batch 1024), where a 300-step teacher is still 60% random.
SCHEDULES = ("fit", "dino")
SCHEDULE_RESOLVED = (  # the settings `resolve_schedule` fills when unset
    "lr",
    "warmup_steps",
    "momentum_teacher",
    "momentum_teacher_end",
    "teacher_temp",
    "warmup_teacher_temp_steps",
    "freeze_last_layer_steps",
    "koleo",
)
INIT_WEIGHT_LEFT = 0.005  # "fit": the teacher's remaining share of its initialisation at the last step
# "fit" with --init (fine-tuning trained weights): a tenth of the from-scratch lr, so the first steps of
# randomly initialised heads do not wash out the backbone, and half the warm-up (the backbone needs none)
FINETUNE_LR, FINETUNE_WARMUP = 2e-4, 0.05
DINO_EPOCH_STEPS = 1250  # one ImageNet epoch at DINO's batch of 1024: caps warm-ups that scale with the run
COMPILE_PAYS_AFTER = 3000  # steps from which `--compile` auto turns CUDA graphs on (see resolve_compile)

# Settings a --resume may change: the data, where the run lives, how fast it goes and how long it is (the
# schedules stretch to the new length). Every other setting shapes the model or what a step computes, so a
# resumed run must keep the one its checkpoint was trained with.
RESUME_MAY_CHANGE = frozenset(
    {
        "video",
        "topic",
        "out",
        "cache",
        "init",
        "steps",
        "epochs",
        "save_every",
        "workers",
        "device",
        "bf16",
        "compile",
        "compile_mode",
        "photometric_on",
        "eval_every",
        "eval_data",
    }
)


@dataclass
class TrainConfig:
    video: list[str] = field(default_factory=list)  # videos, folders, globs, or one frame-cache folder
    topic: str | None = None  # ROS 2 bags: the image topic (None: the bag's only one)
    out: str = "runs/vsd"
    arch: str = "vit_tiny"
    patch_size: int = 16
    img_size: int = 112
    batch_size: int = 32  # global batch (split across processes and --accum micro-batches)
    steps: int | None = None  # total optimizer steps; overrides epochs
    epochs: int = 10
    delta: int = 30  # frames between t and t+delta
    delta_seconds: float | None = None  # overrides delta, converted with each video's fps
    method: str = "vsd"  # "vsd" or "dino" (the baseline preset: see METHOD_PRESETS)
    skip_cuts: bool = False  # detect scene cuts and drop pairs that span one
    seed: int = 0
    save_every: int = 100
    accum: int = 1
    workers: int | None = None  # loader processes; None: see `loader_workers`
    device: str = "cpu"
    init: str | None = None
    cache: str | None = None  # frame-cache folder for raw videos (default OUT/frame_cache)
    eval_every: int = 0  # score student and teacher on eval_data every N steps (0: never)
    eval_data: str | None = None  # make-data folder, DAVIS or ADE20K layout, or a video (correspondence)
    # optimisation (DINO defaults, lr scaled by batch/256)
    schedule: str = "fit"  # how unset (None) schedule settings follow from the run's length: fit, dino
    lr: float | None = None  # per 256 pairs; fit: 2e-3 (2e-4 with --init), dino: 5e-4
    min_lr: float = 1e-6
    warmup_steps: int | None = None  # default: 10% of training (5% with --init), at most 10 DINO epochs
    weight_decay: float = 0.04
    weight_decay_end: float = 0.4
    momentum_teacher: float | None = None  # fit: leaves INIT_WEIGHT_LEFT of the init at the end; dino: 0.996
    momentum_teacher_end: float | None = None  # fit: held at the base for runs too short for 0.996; else 1
    clip_grad: float = 3.0
    clip_mode: str = "per-param"  # DINO clips each parameter's gradient norm; "global" clips their total
    freeze_last_layer_steps: int | None = None  # fit: 10% of training (at most 1250); dino: 1 epoch <= 10%
    drop_path: float = 0.1
    bf16: bool = False
    # torch.compile the student and teacher forwards (compile time before step 1); None: `resolve_compile`
    compile: bool | None = None
    # torch.compile's mode; "reduce-overhead" adds CUDA graphs, for GPU steps bound by kernel launches
    compile_mode: str = "default"
    # heads and loss
    out_dim: int = 4096
    head_hidden_dim: int = 1024
    head_bottleneck_dim: int = 256
    separate_patch_head: bool = False
    norm_last_layer: bool = True  # DINO: the weight-norm gain of the head's last layer stays fixed at 1
    predictor_depth: int = 2
    dense_weight: float = 1.0  # loss = (global + w * dense) / (1 + w); 0 = CLS term only, no predictor
    student_temp: float = 0.1
    warmup_teacher_temp: float = 0.04
    teacher_temp: float | None = None  # fit: 0.04 (DINO's advice when the loss does not fall); dino: 0.07
    warmup_teacher_temp_steps: int | None = None  # fit: 0; dino: 30% of training
    center_momentum: float = 0.9
    centering: str = "ema"  # teacher centering: ema (DINO) or sinkhorn (DINOv2's Sinkhorn-Knopp per batch)
    koleo: float | None = None  # KoLeo on the student's CLS features; fit + vsd: 1, else 0 (DINOv2: 0.1)
    koleo_patches: float = 0.0  # weight of the KoLeo term among the patch tokens of each student frame
    mask_ratio: float = 0.0  # share of frame t's patches the student sees masked (iBOT); dense term on those
    layer_decay: float = 1.0  # backbone block i trains at lr x layer_decay^(depth - i) (1: off)
    local_crops: int = 0  # DINO local crops per frame for the global term
    local_size: int = 48
    # augmentation (DINO's recipe; see edge_vsd.data.augment.AugmentConfig)
    independent_crops: bool = False  # DINO's own crop per global view (only without the dense term)
    crop_scale: tuple[float, float] = (0.4, 1.0)
    blur_prob: tuple[float, float] = (1.0, 0.1)
    solarize_prob: float = 0.2
    hue: float = 0.1
    blur_sigma: str = "relative"
    photometric_on: str = "auto"  # loader, device (batched after the copy), auto: device on CUDA or in bf16

    def augment(self) -> AugmentConfig:
        return AugmentConfig(
            crop_scale=(self.crop_scale[0], self.crop_scale[1]),
            independent_crops=self.independent_crops,
            blur_prob=(self.blur_prob[0], self.blur_prob[1]),
            solarize_prob=self.solarize_prob,
            hue=self.hue,
            blur_sigma=self.blur_sigma,
        )

    @property
    def defer_photometric(self) -> bool:
        """Whether the loader ships uint8 crops and the photometric steps run on the training device."""
        # auto: on the 2-core AMX CPU in bf16 the device path fed 57-64 pairs/s from the cache against 56-60
        # for the loader path (3 runs each); in fp32 the two tied, so fp32 CPU runs keep the loader path
        auto = self.device == "cuda" or self.bf16
        return self.photometric_on == "device" or (self.photometric_on == "auto" and auto)

    @property
    def loader_workers(self) -> int:
        """--workers, else 0 on the CPU (on a small CPU workers slow the step) and on CUDA up to 4, leaving
        two cores: on a 16-core H200 host 4 workers fed ViT-S at 0.94x its pre-loaded rate, 14 at 0.62x
        (the launch-bound training process lost its core to them). With CUDA graphs 4 gave 0.82-0.87x, 2
        gave 0.79-0.94x and 6 or 8 less."""
        if self.workers is not None:
            return self.workers
        return min(4, max(0, (os.cpu_count() or 1) - 2)) if self.device == "cuda" else 0

    def resolve_compile(self, total_steps: int, world: int) -> bool:
        """Settle `compile=None` (auto): CUDA graphs on one CUDA GPU for runs of COMPILE_PAYS_AFTER steps or
        more, else eager; True when auto turned them on. On an H200 they took ViT-S/16 at batch 64 from 1177
        to 1836-1985 pairs/s after about 55 s of compilation, which a run earns back in about 2,600 steps."""
        if self.compile is not None:
            return False
        self.compile = self.device == "cuda" and world == 1 and total_steps >= COMPILE_PAYS_AFTER
        if self.compile:
            self.compile_mode = "reduce-overhead"
        return self.compile

    @property
    def dense(self) -> bool:
        """Whether the dense next-frame term (and so the predictor) is trained."""
        return self.dense_weight > 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def resolve_schedule(self, total: int, steps_per_epoch: int | None = None) -> TrainConfig:
        """Fill the unset schedule settings for a run of `total` steps (see SCHEDULES); set ones stay."""
        from edge_vsd.schedules import fit_momentum

        fit = self.schedule == "fit"
        finetune = fit and bool(self.init)
        epoch = steps_per_epoch or total
        if self.lr is None:
            self.lr = (FINETUNE_LR if finetune else 2e-3) if fit else 5e-4
        if self.warmup_steps is None:
            share = FINETUNE_WARMUP if finetune else 0.1
            self.warmup_steps = min(int(share * total), 10 * DINO_EPOCH_STEPS)
        fitted = fit_momentum(total, INIT_WEIGHT_LEFT, 0.996)
        if self.momentum_teacher is None:
            self.momentum_teacher = fitted if fit else 0.996
        if self.momentum_teacher_end is None:
            # a cosine to 1 freezes a short run's teacher while its student still improves (docs/learning.md);
            # runs long enough for DINO's 0.996 keep DINO's cosine, the recipe they were measured with
            self.momentum_teacher_end = self.momentum_teacher if fit and fitted < 0.996 else 1.0
        if self.teacher_temp is None:
            self.teacher_temp = self.warmup_teacher_temp if fit else 0.07
        if self.warmup_teacher_temp_steps is None:
            self.warmup_teacher_temp_steps = 0 if fit else int(0.3 * total)
        if self.koleo is None:  # measured to help on real footage and the hard set (docs/learning.md)
            self.koleo = 1.0 if fit and self.method == "vsd" else 0.0
        if self.freeze_last_layer_steps is None:
            tenth = total // 10
            self.freeze_last_layer_steps = min(tenth, DINO_EPOCH_STEPS) if fit else min(epoch, tenth)
        return self

    def validate(self) -> TrainConfig:
        """Check every setting and path before any long work; raise InputError naming the first bad one."""
        self.validate_settings()
        if self.init:
            init = Path(self.init)
            from edge_vsd.formats import is_hf_folder

            if init.is_dir() and not is_hf_folder(init):
                from edge_vsd.checkpoint import folder_not_checkpoint

                raise folder_not_checkpoint(init, "--init")
            if not init.exists():
                raise InputError(f"{init}: no such checkpoint file (--init)")
        if self.device == "cuda":
            import torch

            if not torch.cuda.is_available():
                raise InputError("--device cuda: no CUDA GPU is visible to PyTorch")
        check_writable_dir(Path(self.out), "--out")
        return self

    def validate_settings(self) -> TrainConfig:
        """Check the settings' types and values (no files); raise InputError naming the first bad one."""
        from edge_vsd.model import PRESETS

        check_types(self.to_dict(), "")
        _choice("--arch", self.arch, tuple(PRESETS))
        _choice("--patch-size", self.patch_size, (8, 16))
        _choice("--device", self.device, ("cpu", "cuda"))
        _choice("--compile-mode", self.compile_mode, COMPILE_MODES)
        _choice("--schedule", self.schedule, SCHEDULES)
        # with --init the patch size is the checkpoint's: `check_inputs` checks the size against it
        check_img_size(self.img_size, 1 if self.init else self.patch_size)
        for flag, value in (
            ("--batch-size", self.batch_size),
            ("--epochs", self.epochs),
            ("--save-every", self.save_every),
            ("--accum", self.accum),
            ("--out-dim", self.out_dim),
            ("head_hidden_dim", self.head_hidden_dim),
            ("head_bottleneck_dim", self.head_bottleneck_dim),
        ):
            at_least(flag, value, 1)
        at_least("--steps", self.steps, 1)
        at_least("--delta", self.delta, 0)  # 0 is valid: same-frame pairs (the DINO preset)
        at_least("predictor_depth", self.predictor_depth, 0)
        at_least("--workers", self.workers, 0)
        at_least("--eval-every", self.eval_every, 0)
        if self.eval_every and not self.eval_data:
            raise InputError(
                "--eval-every needs --eval-data (a make-data folder, DAVIS or ADE layout, a video)"
            )
        at_least("--local-crops", self.local_crops, 0)
        at_least("warmup_steps", self.warmup_steps, 0)
        at_least("freeze_last_layer_steps", self.freeze_last_layer_steps, 0)
        at_least("warmup_teacher_temp_steps", self.warmup_teacher_temp_steps, 0)
        if self.delta_seconds is not None and not self.delta_seconds > 0:
            raise InputError(f"--delta-seconds {self.delta_seconds}: must be > 0")
        if self.batch_size % self.accum:
            raise InputError(f"--batch-size {self.batch_size} must divide by --accum {self.accum}")
        if self.local_crops and self.init and self.local_size <= 0:
            # with --init the patch size comes from the checkpoint, checked once it is loaded
            raise InputError(f"--local-size {self.local_size}: must be > 0")
        if self.local_crops and not self.init and (self.local_size <= 0 or self.local_size % self.patch_size):
            raise InputError(
                f"--local-size {self.local_size}: must be a positive multiple of the patch size "
                f"{self.patch_size}"
            )
        for name in ("lr", "min_lr", "weight_decay", "weight_decay_end", "clip_grad"):
            value = getattr(self, name)
            if value is not None and not value >= 0:  # also catches NaN
                raise InputError(f"{_flag(name)} {value}: must be >= 0")
        for name in ("student_temp", "warmup_teacher_temp", "teacher_temp"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise InputError(f"{_flag(name)} {value}: must be > 0")
        for name in ("momentum_teacher", "momentum_teacher_end", "center_momentum"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 1:
                raise InputError(f"{_flag(name)} {value}: must be in [0, 1]")
        if not 0 <= self.drop_path < 1:
            raise InputError(f"drop_path {self.drop_path}: must be in [0, 1)")
        self._validate_method()
        return self

    def resume_mismatches(self, saved: dict[str, Any]) -> list[tuple[str, Any, Any]]:
        """(setting, this value, saved value) wherever this config differs from a run's saved one in what a
        --resume must keep (all but RESUME_MAY_CHANGE); settings the saved config lacks are skipped. Unset
        schedule settings take the run's resolved values first."""
        for name in SCHEDULE_RESOLVED:
            if getattr(self, name) is None and saved.get(name) is not None:
                setattr(self, name, saved[name])
        if (
            self.momentum_teacher_end is None
            and "momentum_teacher" in saved
            and "momentum_teacher_end" not in saved
        ):
            self.momentum_teacher_end = 1.0  # saved before the setting existed: its cosine ended at 1
        diffs = []
        for name, value in self.to_dict().items():
            if name in RESUME_MAY_CHANGE or name not in saved:
                continue
            mine, theirs = _plain(value), _plain(saved[name])
            if mine != theirs:
                diffs.append((name, mine, theirs))
        return diffs

    def _validate_method(self) -> None:
        """Method, loss and augmentation switches (issue: method fidelity)."""
        _choice("--method", self.method, tuple(METHOD_PRESETS))
        _choice("--clip-mode", self.clip_mode, ("per-param", "global"))
        _choice("--blur-sigma", self.blur_sigma, ("relative", "pixels"))
        _choice("--photometric-on", self.photometric_on, ("auto", "loader", "device"))
        _choice("--centering", self.centering, ("ema", "sinkhorn"))
        if not self.dense_weight >= 0:
            raise InputError(f"--dense-weight {self.dense_weight}: must be >= 0")
        if self.koleo is not None and not self.koleo >= 0:
            raise InputError(f"--koleo {self.koleo}: must be >= 0")
        if not 0 < self.layer_decay <= 1:
            raise InputError(f"--layer-decay {self.layer_decay}: must be in (0, 1]")
        if not self.koleo_patches >= 0:
            raise InputError(f"--koleo-patches {self.koleo_patches}: must be >= 0")
        if not 0 <= self.mask_ratio < 1:
            raise InputError(f"--mask-ratio {self.mask_ratio}: must be in [0, 1)")
        if self.mask_ratio > 0 and not self.dense:
            raise InputError("--mask-ratio needs the dense term (--dense-weight > 0), which it scores")
        if self.dense and self.independent_crops:
            raise InputError(
                "--independent-crops needs --dense-weight 0: the dense term matches patch i of both "
                "frames, which only holds when they share one crop"
            )
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            raise InputError(f"--crop-scale {lo} {hi}: need 0 < LO <= HI <= 1")
        for name, probs in (("--blur-prob", self.blur_prob), ("--solarize-prob", (self.solarize_prob,))):
            if not all(0 <= p <= 1 for p in probs):
                raise InputError(f"{name} {' '.join(map(str, probs))}: probabilities must be in [0, 1]")
        if not 0 <= self.hue <= 0.5:
            raise InputError(f"--hue {self.hue}: must be in [0, 0.5]")

    def save(self, path: str | Path) -> None:
        data = (json.dumps(self.to_dict(), indent=2) + "\n").encode()
        write_atomic(path, lambda f: f.write(data))


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a JSON (or TOML) config file into a dict of TrainConfig fields."""
    path = Path(path)
    try:
        text = path.read_text()
        if path.suffix == ".toml":
            if sys.version_info < (3, 11):
                raise ValueError("a TOML config needs Python 3.11+ (tomllib); use a JSON one")
            else:
                import tomllib

                data = tomllib.loads(text)
        else:
            data = json.loads(text)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read config ({exc})") from None
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise InputError(f"{path}: cannot read config (expected a mapping of settings, got a {kind})")
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise InputError(f"{path}: unknown config keys {', '.join(unknown)}")
    check_types(data, f"{path}: ")
    return data


def check_types(values: dict[str, Any], prefix: str) -> None:
    """Each value has its TrainConfig field's type; InputError `PREFIXname VALUE: expected ...` if not."""
    hints = typing.get_type_hints(TrainConfig)
    for name, value in values.items():
        if name in hints and not _fits(value, hints[name]):
            raise InputError(f"{prefix}{name} {value!r}: expected {_describe(hints[name])}")


def _fits(value: Any, hint: Any) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, (str, os.PathLike))
    if origin is list:
        return isinstance(value, (list, tuple)) and all(_fits(v, args[0]) for v in value)
    if origin is tuple:
        return (
            isinstance(value, (list, tuple))
            and len(value) == len(args)
            and all(_fits(v, a) for v, a in zip(value, args))
        )
    return True


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    names = {type(None): "null", bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    if hint in names:
        return names[hint]
    if origin is list:
        return f"a list of {_describe(args[0]).removeprefix('a ').removeprefix('an ')}s"
    if origin is tuple:
        return f"a list of {len(args)} {_describe(args[0]).removeprefix('a ')}s"
    return str(hint)


def _plain(value: Any) -> Any:
    """A setting as it reads back from config.json (tuples become lists)."""
    return json.loads(json.dumps(value))


def show_value(value: Any) -> str:
    """A setting's value as one would type it after its flag."""
    if isinstance(value, list):
        return " ".join(map(str, value))
    return "none" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def resolve_config(file: str | None, overrides: dict[str, Any]) -> TrainConfig:
    """Defaults < config file < CLI flags (only flags actually given, i.e. not None)."""
    values: dict[str, Any] = load_config_file(file) if file else {}
    values.update({k: v for k, v in overrides.items() if v is not None})
    method = values.get("method", TrainConfig.method)
    if method not in METHOD_PRESETS:
        raise InputError(f"--method {method!r}: choose from {', '.join(METHOD_PRESETS)}")
    values = {**METHOD_PRESETS[method], **values}
    return TrainConfig(**values)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _choice(flag: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise InputError(f"{flag} {value!r}: unknown (choose from {', '.join(map(str, choices))})")

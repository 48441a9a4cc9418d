"""`edge-vsd train`: its flags, the config they resolve to, and the command itself."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from edge_vsd.config import COMPILE_MODES, COMPILE_PAYS_AFTER, TrainConfig, resolve_config
from edge_vsd.errors import InputError
from edge_vsd.run_state import CHECKPOINT
from edge_vsd.train import train


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
        help="EMA momentum at the start (fit: the largest <= 0.996 whose cosine to 1 leaves 0.5%% of "
        "the init)",
    )
    p.add_argument(
        "--momentum-teacher-end",
        type=float,
        metavar="M",
        help="EMA momentum at the end, a cosine from the start (fit: the start's, held, in runs too short "
        "for 0.996, so the teacher keeps following the student; else 1, DINO's)",
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
        "--local-size",
        type=int,
        metavar="PX",
        help="side of the local crops, a multiple of the patch size (default 48)",
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
        "--koleo",
        type=float,
        metavar="W",
        help="weight of DINOv2's KoLeo term on the student's CLS features, which keeps different frames "
        "apart (default: 1 with --schedule fit and --method vsd, else 0)",
    )
    m.add_argument(
        "--layer-decay",
        type=float,
        metavar="D",
        help="layer-wise lr decay for fine-tuning: backbone block i of L trains at lr x D^(L - i), the "
        "embeddings at D^(L + 1) (default 1: off)",
    )
    m.add_argument(
        "--koleo-patches",
        type=float,
        metavar="W",
        help="weight of a KoLeo term among the patch tokens of each frame, which keeps the patches of one "
        "frame apart (default 0: off)",
    )
    m.add_argument(
        "--mask-ratio",
        type=float,
        metavar="R",
        help="share of frame t's patches replaced by a learned mask token in the student's input; the dense "
        "term is then scored on those patches only, as iBOT's (default 0: off)",
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
    "momentum_teacher_end",
    "teacher_temp",
    "freeze_last_layer_steps",
    "out_dim",
    "local_crops",
    "local_size",
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
    "koleo",
    "koleo_patches",
    "mask_ratio",
    "layer_decay",
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

"""`edge-vsd quickstart`: video -> train -> export (cpu fp32, cpu INT8, jetson INT8) -> bench -> PCA picture.

With no --video it generates synthetic parallax videos (no download). Every stage runs through the same
CLI a user would type, so what quickstart shows is what the commands do."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from edge_vsd.checks import check_writable_dir
from edge_vsd.data.synthetic import write_scenes, write_video
from edge_vsd.errors import InputError

# what quickstart's train stage passes (with --schedule fit): the CPU recipe. Without KoLeo the teacher on
# the embedded video goes uniform (ln K) after warm-up; with it, it does not, and a teacher at 0.025 on six
# scenes ended below 0.85 ln K with the probe ahead of random init on two seeds (docs/learning.md)
TRAIN_DEFAULTS: dict[str, Any] = {"delta": 15, "out_dim": 1024, "koleo": 1.0, "teacher_temp": 0.025}
# what quickstart writes in --out: --force replaces these and leaves anything else there alone
OUTPUTS = (
    "run",
    "artifacts",
    "report",
    "quality",
    "features.npz",
    "pca.png",
    "synthetic_train",
    "synthetic_train.avi",  # what quickstarts before the six scenes wrote
    "synthetic_calib.avi",
    "synthetic_heldout.avi",
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--video", action="append", metavar="PATH", help="your video(s) (default: synthetic)")
    p.add_argument("--out", default="quickstart", help="output folder (default ./quickstart)")
    p.add_argument("--steps", type=int, default=300, help="training steps (default 300, ~4 min on 2 cores)")
    p.add_argument("--batch-size", type=int, default=16, help="frame pairs per step (default 16)")
    p.add_argument("--img-size", type=int, default=112, help="training and export size (default 112)")
    p.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16"],
        default="auto",
        help="training arithmetic; auto (default) times a few real steps of each on this CPU and trains "
        "with the faster (bf16 autocast wins on CPUs with AMX or AVX-512 BF16)",
    )
    p.add_argument("--force", action="store_true", help="replace an earlier quickstart in --out")


def _stage(n: int, total: int, title: str, argv: list[str]) -> None:
    from edge_vsd.cli import main

    print(f"\n[{n}/{total}] {title}\n    $ edge-vsd {' '.join(argv)}", flush=True)
    start = time.perf_counter()
    code = main(argv)
    if code not in (0, None):
        raise InputError(f"stage '{title}' failed (exit {code}); see the messages above")
    print(f"    done in {time.perf_counter() - start:.0f} s", flush=True)


def step_seconds(batch_size: int, img_size: int, out_dim: int, bf16: bool, steps: int = 3) -> float:
    """Best time of `steps` real VSD training steps (after two warm-up steps) on this CPU."""
    import itertools

    import torch

    from edge_vsd.bench_train import Stepper
    from edge_vsd.config import TrainConfig
    from edge_vsd.device import fast_math

    fast_math()
    cfg = TrainConfig(img_size=img_size, batch_size=batch_size, out_dim=out_dim, delta=15, bf16=bf16)
    stepper = Stepper(cfg, torch.device("cpu"), fused=False, compiled=False)
    batch = itertools.repeat({"globals": torch.randn(batch_size, 2, 3, img_size, img_size)})
    stepper.run(batch, 2)
    return min(stepper.run(batch, 1) for _ in range(steps))


def choose_precision(args: argparse.Namespace, out_dim: int) -> bool:
    """True to train in bf16: as asked, or (auto) when it measured at least 10% faster than fp32 here."""
    if args.precision != "auto":
        return args.precision == "bf16"
    from edge_vsd.device import native_bf16

    if native_bf16() is False:  # emulated bf16 timed 2.6-7x slower than fp32 (Xeon w/o BF16, AVX2 EPYC)
        print("training in fp32: this CPU has no bf16 instructions (--precision overrides)")
        return False
    fp32 = step_seconds(args.batch_size, args.img_size, out_dim, False)
    bf16 = step_seconds(args.batch_size, args.img_size, out_dim, True)
    use = bf16 < 0.9 * fp32
    print(
        f"training step on this CPU: fp32 {fp32:.2f} s, bf16 autocast {bf16:.2f} s "
        f"-> training in {'bf16' if use else 'fp32'} (--precision overrides)"
    )
    return use


def check_args(args: argparse.Namespace) -> None:
    """Everything quickstart's stages will be given, checked before any work: --out, the train settings,
    and that the videos exist and are long enough for the pairs."""
    from edge_vsd.config import TrainConfig
    from edge_vsd.preflight import check_videos

    out = Path(args.out)
    check_writable_dir(out, "--out")
    if (out / "run" / "checkpoint.pt").exists() and not args.force:
        raise InputError(f"{out}: holds an earlier quickstart; pass --force to replace it or choose --out")
    cfg = TrainConfig(
        video=list(args.video or []),
        out=str(out / "run"),
        steps=args.steps,
        batch_size=args.batch_size,
        img_size=args.img_size,
        **TRAIN_DEFAULTS,
    )
    cfg.validate_settings()
    if args.video:
        check_videos(cfg)


def run(args: argparse.Namespace) -> int:
    check_args(args)
    out = Path(args.out)
    run_dir = out / "run"
    if args.force:
        import shutil

        for name in OUTPUTS:
            path = out / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    if args.video:
        train_videos, calib, heldout = args.video, args.video[-1], args.video[-1]
    else:
        print("no --video: writing synthetic parallax videos (6 scenes of textured layers, moving objects)")
        train_videos = [str(write_scenes(out / "synthetic_train", scenes=6, n_frames=50))]
        calib = str(write_video(out / "synthetic_calib.avi", n_frames=90, height=180, width=240, seed=1))
        heldout = str(write_video(out / "synthetic_heldout.avi", n_frames=90, height=180, width=240, seed=2))
    ckpt, art = run_dir / "checkpoint.pt", out / "artifacts"
    train_argv = [
        "train",
        "--out",
        str(run_dir),
        "--steps",
        str(args.steps),
        "--batch-size",
        str(args.batch_size),
        "--img-size",
        str(args.img_size),
        "--delta",
        str(TRAIN_DEFAULTS["delta"]),
        "--out-dim",
        str(TRAIN_DEFAULTS["out_dim"]),
        "--koleo",
        str(TRAIN_DEFAULTS["koleo"]),
        "--teacher-temp",
        str(TRAIN_DEFAULTS["teacher_temp"]),
    ]
    if choose_precision(args, TRAIN_DEFAULTS["out_dim"]):
        train_argv.append("--bf16")
    for v in train_videos:
        train_argv += ["--video", v]
    total = 7
    _stage(1, total, "train vit_tiny with video self-distillation", train_argv)
    _stage(
        2,
        total,
        "quality: the trained encoder beside its random start, raw pixels and chance",
        [
            "eval",
            str(ckpt),
            "--data",
            heldout,
            "--report",
            str(out / "quality"),
        ],
    )
    calib_flags = ["--calib", calib, "--calib-frames", "64", "--quiet"]
    _stage(
        3,
        total,
        "export cpu fp32",
        [
            "export",
            str(ckpt),
            "--target",
            "cpu",
            "--out",
            str(art / "cpu-fp32"),
            "--calib",
            calib,
            "--quiet",
        ],
    )
    _stage(
        4,
        total,
        "export cpu INT8",
        ["export", str(ckpt), "--target", "cpu", "--int8", "--out", str(art / "cpu-int8"), *calib_flags],
    )
    _stage(
        5,
        total,
        "export jetson INT8 (TensorRT Q/DQ)",
        [
            "export",
            str(ckpt),
            "--target",
            "jetson",
            "--int8",
            "--out",
            str(art / "jetson-int8"),
            *calib_flags,
        ],
    )
    report = out / "report"
    _stage(
        6,
        total,
        "benchmark every artifact against the PyTorch model",
        [
            "bench",
            str(art / "cpu-fp32"),
            str(art / "cpu-int8"),
            str(art / "jetson-int8"),
            "--reference",
            str(ckpt),
            "--data",
            heldout,
            "--report",
            str(report),
            "--iters",
            "30",
        ],
    )
    _stage(
        7,
        total,
        "PCA picture of the patch features",
        [
            "extract",
            heldout,
            "--artifact",
            str(art / "cpu-int8"),
            "--out",
            str(out / "features.npz"),
            "--pca-png",
            str(out / "pca.png"),
            "--max-frames",
            "60",
        ],
    )
    print(f"\nquickstart finished in {time.perf_counter() - start:.0f} s")
    print(f"  report:     {report / 'report.md'}  (and report.html, results.json, PNG plots)")
    print(f"  quality:    {out / 'quality' / 'report.md'}  (trained vs random init, raw pixels, chance)")
    print(f"  artifacts:  {art}/cpu-fp32, cpu-int8, jetson-int8 (BUILD_ON_DEVICE.txt for the board)")
    print(f"  PCA:        {out / 'pca.png'}")
    print(f"  checkpoint: {ckpt}")
    return 0

"""`edge-vsd export CKPT --target {cpu,jetson} [--int8 | --fp16] ...`: checkpoint -> artifact folder."""

from __future__ import annotations

import argparse

from edge_vsd.export.calibration import DEFAULT_CALIB_FRAMES, DEFAULT_HELDOUT_FRAMES
from edge_vsd.export.pipeline import TARGETS, ExportConfig, export_artifact


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = ExportConfig(checkpoint="")
    parser.add_argument("checkpoint", help="edge-vsd, DINO or DoRA checkpoint (.pt/.pth/.safetensors)")
    # No argparse `choices`: an unknown target is reported like every other input error (one line, exit 2).
    parser.add_argument("--target", default=d.target, help=f"{' | '.join(TARGETS)} (default {d.target})")
    prec = parser.add_mutually_exclusive_group()
    prec.add_argument(
        "--int8", action="store_true", help="NNCF post-training INT8 (needs --calib for real data)"
    )
    prec.add_argument("--fp16", action="store_true", help="fp16 ONNX (float32 input/outputs kept)")
    parser.add_argument(
        "--calib",
        nargs="+",
        default=[],
        metavar="PATH",
        help="videos, image folders, images or ROS 2 bags for calibration and the held-out gate "
        "(default: synthetic frames)",
    )
    parser.add_argument(
        "--topic", help="ROS 2 bags in --calib: the image topic (default: each bag's only image topic)"
    )
    parser.add_argument(
        "--calib-frames",
        metavar="N",
        type=int,
        default=DEFAULT_CALIB_FRAMES,
        help=f"calibration frames sampled evenly across --calib (default {DEFAULT_CALIB_FRAMES})",
    )
    parser.add_argument(
        "--heldout-frames",
        metavar="N",
        type=int,
        default=DEFAULT_HELDOUT_FRAMES,
        help=f"frames for parity and the fidelity gate (default {DEFAULT_HELDOUT_FRAMES})",
    )
    parser.add_argument(
        "--img-size",
        type=int,
        nargs="+",
        metavar="N",
        help="N (square) or H W; default: the checkpoint's training size",
    )
    batch = parser.add_mutually_exclusive_group()
    batch.add_argument("--batch", type=int, default=d.batch, help="static batch size (default 1)")
    batch.add_argument("--dynamic-batch", action="store_true", help="symbolic batch axis")
    parser.add_argument("--out", help="artifact folder (default artifacts/<target>-<precision>)")
    parser.add_argument("--force", action="store_true", help="replace an existing artifact folder")
    parser.add_argument(
        "--gate",
        type=float,
        default=d.gate,
        help=f"minimum CLS and patch cosine vs fp32 on held-out frames (default {d.gate})",
    )
    parser.add_argument(
        "--smooth-quant-alpha",
        type=float,
        default=None,
        help="SmoothQuant alpha for MatMuls (<0 disables; default: the target's)",
    )
    parser.add_argument(
        "--no-ladder",
        action="store_true",
        help="fail instead of retrying INT8 with sensitive layers in float",
    )
    parser.add_argument(
        "--no-engine", action="store_true", help="never build encoder.engine, even with TensorRT"
    )
    parser.add_argument("--quiet", action="store_true", help="no stage lines")


def config_from_args(args: argparse.Namespace) -> ExportConfig:
    """ExportConfig defaults, overridden by the flags given."""
    from edge_vsd.errors import InputError

    size = None
    if args.img_size:
        if len(args.img_size) not in (1, 2):
            raise InputError(f"--img-size takes N or H W, got {len(args.img_size)} numbers")
        size = (args.img_size[0], args.img_size[-1])
    return ExportConfig(
        checkpoint=args.checkpoint,
        target=args.target,
        int8=args.int8,
        fp16=args.fp16,
        calib=list(args.calib),
        calib_topic=args.topic,
        calib_frames=args.calib_frames,
        heldout_frames=args.heldout_frames,
        img_size=size,
        batch=args.batch,
        dynamic_batch=args.dynamic_batch,
        out=args.out,
        force=args.force,
        gate=args.gate,
        smooth_quant_alpha=args.smooth_quant_alpha,
        ladder=not args.no_ladder,
        build_engine=not args.no_engine,
        quiet=args.quiet,
    )


def run(args: argparse.Namespace) -> int:
    out = export_artifact(config_from_args(args))
    print(out)
    return 0

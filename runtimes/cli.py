"""`edge-vsd extract`: stream a video, image folder, camera or URL through an artifact and save the features.

Output: `--out FILE.npz` with `cls` (N, D) float32, `patches` (N, h, w, D) float32, `frame_index` (N,) int64
and `timestamp` (N,) float64 seconds, one row per processed frame. Inputs longer than `--shard-size` frames
are written as the folder FILE/ (the --out name without .npz) holding shard-00000.npz, shard-00001.npz, ...
with the same keys plus index.json; `edge_vsd.runtimes.writer.load_features` reads either form back.
Needs no torch: numpy, OpenCV and the artifact's inference engine only.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from edge_vsd.runtimes import BACKEND_CHOICES, load
from edge_vsd.runtimes.backend import auto_backend
from edge_vsd.runtimes.errors import RuntimeInputError
from edge_vsd.runtimes.manifest import read_manifest
from edge_vsd.runtimes.pca import EvenSample, PCAVideoWriter, save_png
from edge_vsd.runtimes.writer import FeatureWriter
from tqdm import tqdm

DEFAULT_SHARD_SIZE = 2000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `edge-vsd extract`."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (
        "output: FILE.npz with cls (N, D), patches (N, h, w, D), frame_index (N,), timestamp (N,) seconds.\n"
        "More than --shard-size processed frames: the folder FILE/ (the name without .npz) with\n"
        "shard-00000.npz, shard-00001.npz, ... (same keys, in order) and index.json instead."
    )
    parser.add_argument("source", help="video file, image folder (or one image), camera index, rtsp/http URL")
    parser.add_argument("--artifact", required=True, type=Path, help="artifact folder (with manifest.json)")
    parser.add_argument("--out", required=True, type=Path, help="output .npz (see below for long inputs)")
    parser.add_argument("--stride", type=int, default=1, help="process every N-th frame (default 1)")
    parser.add_argument("--pca-png", type=Path, help="PNG of a few frames beside their patch-feature PCA")
    parser.add_argument("--pca-video", type=Path, help="MP4 of every processed frame beside its PCA map")
    parser.add_argument("--pca-frames", type=int, default=4, help="frames in the --pca-png image (default 4)")
    parser.add_argument("--backend", choices=BACKEND_CHOICES, default="auto", help="inference engine")
    parser.add_argument("--threads", type=int, help="CPU threads for the engine (default: the engine's own)")
    parser.add_argument(
        "--shard-size",
        type=int,
        default=DEFAULT_SHARD_SIZE,
        help=f"frames per shard when the input is longer (default {DEFAULT_SHARD_SIZE})",
    )
    parser.add_argument("--max-frames", type=int, help="stop after this many processed frames")
    parser.add_argument("--fps", type=float, help="frame rate for image folders' timestamps (default 30)")


def _stream_options(args: argparse.Namespace) -> dict[str, object]:
    """ONNX Runtime worker threads that spin between calls steal the CPU the decode thread needs."""
    name = auto_backend(read_manifest(args.artifact)) if args.backend == "auto" else args.backend
    return {"spinning": False} if name.startswith("onnxruntime") else {}


def run(args: argparse.Namespace) -> int:
    """Extract features; one-line RuntimeInputError on bad input."""
    if args.stride < 1:
        raise RuntimeInputError(f"--stride must be >= 1, got {args.stride}")
    if args.max_frames is not None and args.max_frames < 1:
        raise RuntimeInputError(f"--max-frames must be >= 1, got {args.max_frames}")
    writer = FeatureWriter(
        args.out, args.shard_size, meta={"source": str(args.source), "stride": args.stride}
    )
    encoder = load(args.artifact, backend=args.backend, threads=args.threads, **_stream_options(args))
    visual = bool(args.pca_png or args.pca_video)
    stream = encoder.stream(
        args.source, stride=args.stride, keep_frames=visual, max_frames=args.max_frames, fps=args.fps
    )
    sample = EvenSample(args.pca_frames) if args.pca_png else None
    video = PCAVideoWriter(args.pca_video, (stream.fps or 30.0) / args.stride) if args.pca_video else None
    start = time.perf_counter()
    try:
        with tqdm(
            total=stream.expected_frames, unit="frame", desc="extract", disable=None, leave=False
        ) as bar:
            for index, timestamp, feats in stream:
                writer.add(index, timestamp, feats.cls, feats.patches)
                if sample is not None:
                    sample.add((feats.frame, feats.patches))
                if video is not None:
                    video.add(feats.frame, feats.patches)
                bar.update(1)
        elapsed = time.perf_counter() - start
        if stream.frames_processed == 0:
            raise RuntimeInputError(f"{args.source}: no frame could be processed ({stream.summary()})")
        written = writer.close()
        if video is not None:
            video.close()
    except BaseException:
        writer.abort()
        if video is not None:
            video.abort()
        raise
    finally:
        encoder.close()
    outputs = [str(written)]
    if sample is not None:
        picked = sample.result()
        outputs.append(str(save_png(args.pca_png, [f for f, _ in picked], [p for _, p in picked])))
    if video is not None:
        outputs.append(str(args.pca_video))
    fps = stream.frames_processed / max(elapsed, 1e-9)
    print(
        f"extract: {stream.summary()} in {elapsed:.1f} s ({fps:.1f} FPS, {encoder.backend_name}) -> "
        + ", ".join(outputs),
        file=sys.stderr,
    )
    return 0

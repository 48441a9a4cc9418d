"""`edge-vsd extract`: stream a video, image folder, camera, URL or GStreamer pipeline through an artifact and
save the features as they arrive (see `edge_vsd.runtimes.writer` for the output layout).

Exit status: 0 done; 1 a live source was lost before --max-frames/--duration (what was recorded is kept);
2 bad input; 130/143 stopped by SIGINT/SIGTERM (what was recorded is finalised first).
Needs no torch: numpy, OpenCV and the artifact's inference engine only.
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
import threading
import time
from array import array
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from edge_vsd.runtimes import BACKEND_CHOICES, load
from edge_vsd.runtimes.atomic import unwritable_at
from edge_vsd.runtimes.backend import auto_backend
from edge_vsd.runtimes.errors import RuntimeInputError
from edge_vsd.runtimes.feature_mcap import source_stamp
from edge_vsd.runtimes.geometry import PatchGrid
from edge_vsd.runtimes.manifest import read_manifest
from edge_vsd.runtimes.pca import EvenSample, PCAVideoWriter, save_png
from edge_vsd.runtimes.progress import progress
from edge_vsd.runtimes.stream import MODES, FeatureStream
from edge_vsd.runtimes.writer import DTYPES, INDEX_NAME, FeatureWriter

DEFAULT_SHARD_SIZE = 2000
DEFAULT_PORT = 8765  # Foxglove's (edge_vsd.runtimes.live_view, imported only with --foxglove)
LATENCY_COLUMNS = ("decode_ms", "preprocess_ms", "inference_ms", "total_ms")


def _reconnect(text: str) -> int | None:
    if text == "forever":
        return None
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a count or 'forever', got {text!r}")
    return int(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `edge-vsd extract`."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (
        "output: FILE.npz with cls (N, D), patches (N, h, w, D), frame_index, timestamp (source clock: the\n"
        "container's presentation time for files, epoch seconds at grab for live sources), wall_time and\n"
        "mono_time at grab, age (s from grab to output), and meta (JSON: source, stride, frame size, resize\n"
        "rule, patch-to-pixel mapping). More than --shard-size frames: the folder FILE/ (the name without\n"
        ".npz) with shard-00000.npz, shard-00001.npz, ... (same keys, in order) and index.json instead.\n"
        "While running (or after a kill -9) the shards written so far are in FILE.partial/.\n\n"
        "live sources (cameras, URLs, GStreamer): --mode latest keeps a --queue-size frame queue\n"
        "(default 1) and drops the oldest frame when the encoder falls behind (counted; frame_index keeps\n"
        "gaps); --mode all (default for files) loses nothing. A stall longer than --read-timeout is a drop;\n"
        "each drop is followed by up to --reconnect attempts with backoff. A live source that ends before\n"
        "--max-frames or --duration exits 1. Ctrl-C / SIGTERM finalise what was recorded, exit 130 / 143.\n\n"
        "ROS 2 bags (.mcap, .db3, bag folder): frames of --topic (or the only image topic); each row also\n"
        "gets stamp_ns, the header stamp. --out FILE.mcap writes ROS 2 messages instead\n"
        "(edge_vsd_msgs/msg/Features on /edge_vsd/features, a PCA picture on /edge_vsd/pca/compressed),\n"
        "stamped with the source stamps; see docs/ros2.md. --foxglove serves the PCA picture and latency\n"
        "to Foxglove while running."
    )
    parser.add_argument(
        "source",
        help="video file, image folder (or one image), camera index, rtsp/http URL, GStreamer pipeline, "
        "ROS 2 bag (.mcap, .db3, bag folder)",
    )
    parser.add_argument("--artifact", required=True, type=Path, help="artifact folder (with manifest.json)")
    parser.add_argument(
        "--out", required=True, type=Path, help="output .npz (see below for long inputs) or .mcap (ROS 2)"
    )
    parser.add_argument("--topic", help="ROS 2 bags: the image topic (default: the bag's only image topic)")
    parser.add_argument(
        "--foxglove",
        type=int,
        nargs="?",
        const=DEFAULT_PORT,
        metavar="PORT",
        help="serve the PCA picture and latency over Foxglove's WebSocket on 127.0.0.1 "
        f"(default port {DEFAULT_PORT}; 0 picks a free one)",
    )
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
    parser.add_argument("--dtype", choices=DTYPES, default="float32", help="feature dtype in the files")
    parser.add_argument("--max-frames", type=int, help="stop after this many processed frames")
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.add_argument("--fps", type=float, help="frame rate for image folders' timestamps (default 30)")
    parser.add_argument(
        "--mode", choices=MODES, help="queue policy: latest (default for live) or all (default for files)"
    )
    parser.add_argument("--queue-size", type=int, help="decoded frames queued (default: 1 latest, 8 all)")
    parser.add_argument(
        "--one-at-a-time",
        action="store_true",
        help="files: one inference at a time (by default the CPU engines keep two in flight on inputs of "
        "500+ frames: 1.2-1.6x the FPS on 2 cores, for one or two more copies of the model in memory)",
    )
    parser.add_argument(
        "--read-timeout", type=float, default=5.0, help="live: seconds without a frame = a drop (default 5)"
    )
    parser.add_argument(
        "--reconnect",
        type=_reconnect,
        default=5,
        metavar="N|forever",
        help="live: reconnect attempts after a drop, backoff 0.5 s doubling to 8 s (default 5)",
    )
    parser.add_argument(
        "--latency-log", type=Path, help="CSV of per-frame decode/preprocess/inference/total ms"
    )
    parser.add_argument("--force", action="store_true", help="replace existing outputs (--out, --pca-*)")


def _stream_options(args: argparse.Namespace) -> dict[str, Any]:
    """ONNX Runtime worker threads that spin between calls steal the CPU the decode thread needs."""
    name = auto_backend(read_manifest(args.artifact)) if args.backend == "auto" else args.backend
    return {"spinning": False} if name.startswith("onnxruntime") else {}


def _check(args: argparse.Namespace) -> None:
    for flag, value, low in [
        ("--stride", args.stride, 1),
        ("--max-frames", args.max_frames, 1),
        ("--queue-size", args.queue_size, 1),
    ]:
        if value is not None and value < low:
            raise RuntimeInputError(f"{flag} must be >= {low}, got {value}")
    for flag, value in [("--duration", args.duration), ("--read-timeout", args.read_timeout)]:
        if value is not None and not value > 0:
            raise RuntimeInputError(f"{flag} must be > 0 seconds, got {value}")
    if args.fps is not None and not (args.fps > 0 and math.isfinite(args.fps)):
        raise RuntimeInputError(f"--fps must be a positive frame rate, got {args.fps}")
    if args.foxglove is not None and not 0 <= args.foxglove <= 65535:
        raise RuntimeInputError(f"--foxglove {args.foxglove}: not a TCP port (0-65535; 0 picks a free one)")
    if args.out.suffix.lower() not in (".npz", ".mcap"):
        raise RuntimeInputError(f"{args.out}: --out must be a .npz or .mcap file name")
    _check_outputs(args)


def _check_outputs(args: argparse.Namespace) -> None:
    """Before any work: nothing that exists is replaced without --force, and every output can be written."""
    outs = [("--out", args.out), ("--pca-png", args.pca_png)]
    if args.out.suffix.lower() == ".npz":
        outs.append(("--out", args.out.with_suffix("")))
    outs += [("--pca-video", args.pca_video), ("--latency-log", args.latency_log)]
    for flag, path in outs:
        if path is None:
            continue
        if path == args.out.with_suffix("") and path.exists() and not (path / INDEX_NAME).is_file():
            raise RuntimeInputError(
                f"{path}: a folder that no extract wrote is where features longer than one shard would go; "
                "choose another --out"
            )
        if path.exists() and not args.force:
            raise RuntimeInputError(f"{path}: already exists; pass --force to replace it ({flag})")
        blocker = unwritable_at(path.parent)
        if blocker is not None:
            raise RuntimeInputError(
                f"{path}: cannot write here ({blocker} is not a writable folder) ({flag})"
            )


class GracefulStop:
    """First SIGINT/SIGTERM: end the stream after the current batch; a second one interrupts at once."""

    def __init__(self, stream: FeatureStream) -> None:
        self.stream = stream
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def _handle(self, signum: int, _frame: object) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        self.stream.stop()

    def __enter__(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                if signal.getsignal(sig) is not signal.SIG_IGN:
                    self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


class LatencyLog:
    """Per-frame CSV plus p50/p99 of each column for the summary line."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file: TextIO = open(path, "w", encoding="ascii")  # noqa: SIM115 (closed in close())
        self.file.write("frame_index,wall_time," + ",".join(LATENCY_COLUMNS) + "\n")
        self.values = {c: array("d") for c in LATENCY_COLUMNS}

    def add(self, index: int, timing: Any) -> None:
        row = (timing.decode_ms, timing.preprocess_ms, timing.inference_ms, timing.age_s * 1e3)
        for column, value in zip(LATENCY_COLUMNS, row, strict=True):
            self.values[column].append(value)
        self.file.write(f"{index},{timing.wall_time:.6f}," + ",".join(f"{v:.3f}" for v in row) + "\n")

    def summary(self) -> str:
        if not len(self.values["total_ms"]):
            return ""
        parts = []
        for column in LATENCY_COLUMNS:
            p50, p99 = np.percentile(np.frombuffer(self.values[column]), [50, 99])
            parts.append(f"{column.removesuffix('_ms')} {p50:.1f}/{p99:.1f}")
        return "latency p50/p99 ms: " + ", ".join(parts)

    def close(self) -> None:
        self.file.close()


def run(args: argparse.Namespace) -> int:
    """Extract features; one-line RuntimeInputError on bad input; see the module docstring for exit codes."""
    _check(args)
    meta = {"source": str(args.source), "stride": args.stride}
    if args.topic is not None:
        meta["topic"] = args.topic
    to_mcap = args.out.suffix.lower() == ".mcap"
    writer: Any
    if to_mcap:
        from edge_vsd.runtimes.feature_mcap import McapFeatureWriter

        writer = McapFeatureWriter(args.out, meta=meta)
    else:
        writer = FeatureWriter(args.out, args.shard_size, meta=meta, dtype=args.dtype)
    encoder = load(args.artifact, backend=args.backend, threads=args.threads, **_stream_options(args))
    visual = bool(args.pca_png or args.pca_video or to_mcap or args.foxglove is not None)
    live = None
    try:
        if args.foxglove is not None:  # before the stream: a live source starts reading when opened
            from edge_vsd.runtimes.live_view import LiveView

            live = LiveView(args.foxglove)
            print(f"extract: Foxglove live view on {live.url}", file=sys.stderr, flush=True)
        stream = encoder.stream(
            args.source,
            stride=args.stride,
            mode=args.mode,
            queue_size=args.queue_size,
            keep_frames=visual,
            max_frames=args.max_frames,
            duration=args.duration,
            fps=args.fps,
            read_timeout=args.read_timeout,
            reconnect=args.reconnect,
            pipelined=False if args.one_at_a_time else None,
            topic=args.topic,
        )
    except BaseException:
        encoder.close()
        writer.abort()
        if live is not None:
            live.close()
        raise
    writer.meta.update(
        source_kind=stream.source.kind, mode=stream.mode, queue_size=stream.queue_size, fps=stream.fps
    )
    sample = EvenSample(args.pca_frames) if args.pca_png else None
    video = PCAVideoWriter(args.pca_video, (stream.fps or 30.0) / args.stride) if args.pca_video else None
    latency = LatencyLog(args.latency_log) if args.latency_log else None
    start = time.perf_counter()
    written = None
    stopper = GracefulStop(stream)
    try:
        with (
            stopper,
            progress(total=stream.expected_frames, unit="frame", desc="extract", leave=False) as bar,
        ):
            for item in stream:
                index, timestamp, feats = item
                if writer.count == 0:
                    grid = PatchGrid.for_encoder(encoder, item.frame_hw)
                    writer.meta.update(frame_size_hw=list(item.frame_hw), patch_to_pixel=grid.to_dict())
                t = item.timing
                if to_mcap:
                    writer.add(index, timestamp, feats.cls, feats.patches, item.stamp_ns, feats.frame)
                else:
                    writer.add(
                        index,
                        timestamp,
                        feats.cls,
                        feats.patches,
                        t.wall_time,
                        t.mono_time,
                        t.age_s,
                        item.stamp_ns,
                    )
                if live is not None:
                    live.add(source_stamp(timestamp, item.stamp_ns), feats.frame, feats.patches, t, index)
                if latency is not None:
                    latency.add(index, t)
                if sample is not None:
                    sample.add((feats.frame, feats.patches))
                if video is not None:
                    video.add(feats.frame, feats.patches)
                bar.update(1)
    except BaseException:
        stream.close()
        # nothing recorded is lost: whatever was written is finalised before the error goes up
        if writer.count:
            try:
                writer.close(stop_reason="error")
            except Exception:  # noqa: S110 (the original error is the one to report)
                pass
        else:
            writer.abort()
        if video is not None:
            video.abort()
        raise
    finally:
        encoder.close()
        if latency is not None:
            latency.close()
        if live is not None:
            live.close()
    elapsed = time.perf_counter() - start
    if writer.count:
        written = writer.close(stop_reason=stream.stop_reason, frames_dropped=stream.frames_dropped)
    else:
        writer.abort()
    if video is not None:
        if written is not None:
            video.close()
        else:
            video.abort()
    outputs = [str(written)] if written is not None else []
    if sample is not None and written is not None:
        picked = sample.result()
        outputs.append(str(save_png(args.pca_png, [f for f, _ in picked], [p for _, p in picked])))
    if video is not None and written is not None:
        outputs.append(str(args.pca_video))
    fps = stream.frames_processed / max(elapsed, 1e-9)
    engine = encoder.backend_name + (f", {stream.in_flight} at once" if stream.in_flight > 1 else "")
    line = f"{stream.summary()} in {elapsed:.1f} s ({fps:.1f} FPS, {engine})"
    if outputs:
        line += " -> " + ", ".join(outputs)
    if latency is not None and latency.summary():
        line += "; " + latency.summary()
    if writer.moved_aside is not None:
        line += f"; an earlier run's partial output was kept as {writer.moved_aside}"
    if stopper.signum is not None:
        name = signal.Signals(stopper.signum).name
        print(f"extract: stopped by {name}: {line}", file=sys.stderr)
        return 128 + stopper.signum
    if stream.lost:
        reason = stream.error or "the live source ended"
        print(f"edge-vsd extract: error: {reason}; {line}", file=sys.stderr)
        return 1
    if isinstance(stream.error, RuntimeInputError):  # a bad bag found mid-way: what came before is kept
        kept = f"; the {stream.frames_processed} frames before it are in {written}" if written else ""
        raise RuntimeInputError(f"{stream.error}{kept}")
    if stream.frames_processed == 0:
        raise RuntimeInputError(f"{args.source}: no frame could be processed ({stream.summary()})")
    print(f"extract: {line}", file=sys.stderr)
    return 0

"""Extraction speed from a ROS 2 bag against the same frames in a video file (a benchmark, not a test).

    python -m edge_vsd.benchmarks.bag_speed --artifact ARTIFACT [--frames 300] [--size 480 640]

Writes the same synthetic frames three ways: an MJPG .avi (JPEG per frame), an MCAP bag of
sensor_msgs/msg/CompressedImage holding the .avi's own JPEG packets (the same bytes) and an MCAP bag of raw
bgr8 Images;
then runs the artifact over each with `Encoder.stream` (what `edge-vsd extract` runs), each source in its
own block after a warm-up pass, rounds rotating the order, and prints the median FPS of each and the bags'
ratio to the video. Needs the `robot` extra.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from edge_vsd.runtimes import load
from edge_vsd.runtimes.backend import auto_backend
from edge_vsd.runtimes.feature_mcap import COMPRESSED_TYPE, header, msgdef, typestore
from edge_vsd.runtimes.manifest import read_manifest

IMAGE_TYPE = "sensor_msgs/msg/Image"


def synthetic(n: int, size: tuple[int, int]) -> np.ndarray:
    from edge_vsd.data.synthetic import make_frames

    return make_frames(n, size[0], size[1], seed=0)


def write_video(path: Path, frames: np.ndarray, fps: float) -> Path:
    h, w = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (w, h))
    for f in frames:
        writer.write(f)
    writer.release()
    return path


def video_packets(path: Path) -> list[np.ndarray]:
    """The encoded frames (here JPEGs) of a video file as stored, read without decoding them."""
    cap = cv2.VideoCapture(str(path))
    if not cap.set(cv2.CAP_PROP_FORMAT, -1):
        raise RuntimeError(f"{path}: this OpenCV build cannot read raw packets")
    packets = []
    while True:
        ok, packet = cap.read()
        if not ok:
            break
        packets.append(packet.reshape(-1))
    cap.release()
    return packets


def write_bag(path: Path, frames: list[np.ndarray], fps: float, compressed: bool) -> Path:
    """One image topic as an MCAP file with uncompressed chunks: `frames` are JPEG bytes (compressed) or
    BGR images."""
    from mcap.writer import CompressionType, Writer

    store = typestore(path)
    typename = COMPRESSED_TYPE if compressed else IMAGE_TYPE
    topic = "/cam/image_raw/compressed" if compressed else "/cam/image_raw"
    with open(path, "wb") as f:
        w = Writer(f, compression=CompressionType.NONE)
        w.start(profile="ros2", library="edge-vsd bag_speed")
        channel = w.register_channel(
            topic, "cdr", w.register_schema(typename, "ros2msg", msgdef(store, typename))
        )
        for k, frame in enumerate(frames):
            stamp = 1_700_000_000_000_000_000 + round(k * 1e9 / fps)
            if compressed:
                msg = store.types[typename](header=header(store, stamp), format="jpeg", data=frame)
            else:
                h, wd = frame.shape[:2]
                msg = store.types[typename](
                    header=header(store, stamp),
                    height=h,
                    width=wd,
                    encoding="bgr8",
                    is_bigendian=0,
                    step=wd * 3,
                    data=frame.reshape(-1),
                )
            w.add_message(channel, stamp, bytes(store.serialize_cdr(msg, typename)), stamp, sequence=k)
        w.finish()
    return path


def run_once(encoder, source: Path) -> tuple[float, int]:
    """Seconds and frames of one pass of `Encoder.stream` over `source`."""
    start = time.perf_counter()
    stream = encoder.stream(str(source))
    n = sum(1 for _ in stream)
    return time.perf_counter() - start, n


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--artifact", required=True, type=Path)
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--size", type=int, nargs=2, default=[480, 640], metavar=("H", "W"))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int)
    p.add_argument("--json", type=Path, help="write the figures here too")
    args = p.parse_args(argv)
    frames = synthetic(args.frames, tuple(args.size))
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        sources = {
            "video (MJPG .avi)": write_video(d / "frames.avi", frames, 30.0),
        }
        packets = video_packets(sources["video (MJPG .avi)"])
        sources["bag (MCAP, CompressedImage jpeg)"] = write_bag(d / "jpeg.mcap", packets, 30.0, True)
        sources["bag (MCAP, Image bgr8)"] = write_bag(d / "raw.mcap", list(frames), 30.0, False)
        # as `edge-vsd extract` loads it: ONNX Runtime's workers do not spin between calls
        spin: dict[str, Any] = (
            {"spinning": False}
            if auto_backend(read_manifest(args.artifact)).startswith("onnxruntime")
            else {}
        )
        encoder = load(args.artifact, threads=args.threads, **spin)
        names = list(sources)
        times: dict[str, list[float]] = {name: [] for name in names}
        counts: dict[str, int] = {}
        for name in names:  # warm-up: files into the page cache, the engine's first calls
            run_once(encoder, sources[name])
        for r in range(args.rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                seconds, counts[name] = run_once(encoder, sources[name])
                times[name].append(seconds)
        encoder.close()
    video = names[0]
    fps = {name: counts[name] / statistics.median(times[name]) for name in names}
    result = {
        "cpu": _cpu_model(),
        "artifact": str(args.artifact),
        "frames": args.frames,
        "size_hw": args.size,
        "rounds": args.rounds,
        "fps": fps,
        "ratio_to_video": {name: fps[name] / fps[video] for name in names},
    }
    for name in names:
        print(
            f"{name:34s} {fps[name]:7.1f} FPS  ({fps[name] / fps[video]:.3f} x video, {counts[name]} frames)"
        )
    print(f"cpu: {result['cpu']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


if __name__ == "__main__":
    raise SystemExit(main())

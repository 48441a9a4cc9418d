"""Streaming benchmark: end-to-end extract FPS vs encoder-only FPS, and resident memory over a long stream.

    python -m edge_vsd.runtimes.bench_stream --artifact DIR [--source VIDEO] [--frames 5000] [--threads N]

End-to-end = `enc.stream(source)` (background decode + resize + normalise, overlapped with inference);
encoder-only = the backend on already preprocessed frames of the same video, at batch 1 and at the stream's
batch size. Memory: the source is streamed again and again (features discarded) for `--frames` frames; RSS is
sampled after a warm-up and at the end. Prints one JSON object. Torch-free.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from edge_vsd.runtimes import load
from edge_vsd.runtimes.encoder import Encoder
from edge_vsd.runtimes.stream import default_workers

DEFAULT_SOURCE = "/usr/share/doc/opencv-doc/examples/data/vtest.avi"


def rss_mb() -> float:
    """Current resident set size of this process in MiB (Linux /proc, else psutil)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        import psutil

        return psutil.Process().memory_info().rss / 2**20


def decode_frames(source: str | Path, limit: int) -> list[np.ndarray]:
    """Up to `limit` BGR frames of a video, decoded up front."""
    cap = cv2.VideoCapture(str(source))
    frames: list[np.ndarray] = []
    while len(frames) < limit:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    if not frames:
        raise SystemExit(f"{source}: no decodable frames")
    return frames


def encoder_only_fps(enc: Encoder, frames: list[np.ndarray], batch: int, warmup: int = 20) -> float:
    """Frames per second of the backend alone on preprocessed frames, `batch` frames per call."""
    x = enc.preprocess(frames)
    for i in range(min(warmup, len(x))):
        enc.run_tensor(x[i : i + batch])
    start = time.perf_counter()
    for i in range(0, len(x), batch):
        enc.run_tensor(x[i : i + batch])
    return len(x) / (time.perf_counter() - start)


def stream_fps(
    enc: Encoder, source: str | Path, max_frames: int | None = None, workers: int | None = None
) -> tuple[float, int]:
    """End-to-end frames per second of `enc.stream(source)` and the number of frames processed."""
    stream = enc.stream(source, max_frames=max_frames, workers=workers)
    start = time.perf_counter()
    for _ in stream:
        pass
    return stream.frames_processed / (time.perf_counter() - start), stream.frames_processed


def rss_growth(
    enc: Encoder, source: str | Path, total: int, warmup: int = 300, workers: int | None = None
) -> dict[str, float]:
    """RSS after `warmup` frames and after `total` frames of repeated streaming (features discarded)."""
    done, after_warmup, peak = 0, None, 0.0
    while done < total:
        stream = enc.stream(source, max_frames=total - done, workers=workers)
        for _ in stream:
            done += 1
            if done == warmup:
                after_warmup = rss_mb()
            if done % 100 == 0:
                peak = max(peak, rss_mb())
        if stream.frames_processed == 0:
            break
    end = rss_mb()
    after_warmup = end if after_warmup is None else after_warmup
    return {
        "frames": done,
        "rss_after_warmup_mb": after_warmup,
        "rss_end_mb": end,
        "rss_peak_mb": max(peak, end),
        "rss_growth_mb": end - after_warmup,
    }


def run_benchmark(
    artifact: str | Path,
    source: str | Path = DEFAULT_SOURCE,
    frames: int = 5000,
    threads: int | None = None,
    backend: str | None = None,
    probe_frames: int = 300,
    workers: int | None = None,
    spinning: bool | None = None,
) -> dict[str, Any]:
    """All numbers for one artifact and video."""
    options = {} if spinning is None else {"spinning": spinning}
    enc = load(artifact, backend=backend, threads=threads, **options)
    batch = enc.static_batch or 4  # the stream's default batch size
    sample = decode_frames(source, probe_frames)
    stream_rate, processed = stream_fps(enc, source, workers=workers)
    result: dict[str, Any] = {
        "artifact": str(artifact),
        "source": str(source),
        "backend": enc.backend_name,
        "threads": threads,
        "spinning": spinning,
        "workers": workers if workers is not None else default_workers(),
        "cpu_count": os.cpu_count(),
        "stream_batch": batch,
        "encoder_only_fps_batch1": encoder_only_fps(enc, sample, 1),
        f"encoder_only_fps_batch{batch}": encoder_only_fps(enc, sample, batch),
        "end_to_end_fps": stream_rate,
        "end_to_end_frames": processed,
    }
    result["end_to_end_over_encoder_only"] = stream_rate / result[f"encoder_only_fps_batch{batch}"]
    if frames > 0:
        result["memory"] = rss_growth(enc, source, frames, workers=workers)
    enc.close()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m edge_vsd.runtimes.bench_stream",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--artifact", required=True, type=Path)
    parser.add_argument("--source", default=DEFAULT_SOURCE)
    parser.add_argument("--frames", type=int, default=5000, help="frames for the memory test (0 = skip)")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--backend")
    parser.add_argument("--workers", type=int, help="preprocessing threads (default: by core count)")
    parser.add_argument("--no-spinning", action="store_true", help="ONNX Runtime: idle threads sleep")
    args = parser.parse_args(argv)
    result = run_benchmark(
        args.artifact,
        args.source,
        args.frames,
        args.threads,
        args.backend,
        workers=args.workers,
        spinning=False if args.no_spinning else None,
    )
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())

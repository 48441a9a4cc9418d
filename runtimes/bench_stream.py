"""Streaming benchmark: end-to-end extract FPS vs encoder-only FPS, and resident memory over a long stream.

    python -m edge_vsd.runtimes.bench_stream --artifact DIR [--source VIDEO] [--frames 5000] [--threads N]
    python -m edge_vsd.runtimes.bench_stream --artifact DIR --extract-checks [--max-frames 400]

End-to-end = `enc.stream(source)` (background decode + resize + normalise, overlapped with inference);
encoder-only = the backend on already preprocessed frames of the same video, at batch 1 and at the stream's
batch size, and (where the engine keeps several requests in flight, as the stream then does) in that mode
too; each the median of `--rounds` rounds that time the two in separate blocks, order alternating.
Memory: the source is streamed again and again (features discarded) for `--frames` frames; RSS is sampled
after a warm-up and at the end. `--extract-checks` instead runs `edge-vsd extract` in child processes: peak
resident memory at two shard sizes (rows go to disk as they arrive, so it should not depend on the shard
size), and the FPS cost of `--latency-log` (rounds alternating the order, median of rounds).
Prints one JSON object. Torch-free.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
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
    """Frames per second of the backend alone on prepared frames (`Encoder.prepare`), `batch` per call."""
    x = enc.prepare(frames)
    for i in range(min(warmup, len(x))):
        enc.run_tensor(x[i : i + batch])
    start = time.perf_counter()
    for i in range(0, len(x), batch):
        enc.run_tensor(x[i : i + batch])
    return len(x) / (time.perf_counter() - start)


def encoder_pipelined_fps(
    enc: Encoder, frames: list[np.ndarray], batch: int, warmup: int = 20
) -> float | None:
    """Frames per second of the engine alone with as many batches in flight as the stream keeps
    (`Encoder.pipeline`); None where the engine has no such mode."""
    pipe = enc.pipeline()
    if pipe is None:
        return None
    x = enc.prepare(frames)
    chunks = [x[i : i + batch] for i in range(0, len(x), batch)]

    def run(todo: list[np.ndarray]) -> None:
        waiting = 0
        for chunk in todo:
            if waiting == pipe.depth:
                pipe.result()
                waiting -= 1
            pipe.submit(chunk)
            waiting += 1
        for _ in range(waiting):
            pipe.result()

    try:
        run(chunks[:warmup])
        start = time.perf_counter()
        run(chunks)
        return len(x) / (time.perf_counter() - start)
    finally:
        pipe.close()


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
    rounds: int = 3,
    park_s: float = 0.3,
) -> dict[str, Any]:
    """All numbers for one artifact and video. The FPS figures are medians of `rounds` rounds, each timing
    the stream and the encoder alone in its own block (order alternating, a pause between blocks)."""
    options: dict[str, Any] = {} if spinning is None else {"spinning": spinning}
    enc = load(artifact, backend=backend, threads=threads, **options)
    batch = enc.static_batch or 4  # the stream's default batch size
    sample = decode_frames(source, probe_frames)
    streams, singles, batched, pipelined = [], [], [], []
    for r in range(rounds):
        blocks = ["stream", "encoder"] if r % 2 == 0 else ["encoder", "stream"]
        for block in blocks:
            time.sleep(park_s)
            if block == "stream":
                stream_rate, processed = stream_fps(enc, source, workers=workers)
                streams.append(stream_rate)
            else:
                singles.append(encoder_only_fps(enc, sample, 1))
                batched.append(singles[-1] if batch == 1 else encoder_only_fps(enc, sample, batch))
                pipelined.append(encoder_pipelined_fps(enc, sample, batch))
    result: dict[str, Any] = {
        "artifact": str(artifact),
        "source": str(source),
        "backend": enc.backend_name,
        "threads": threads,
        "spinning": spinning,
        "workers": workers if workers is not None else default_workers(),
        "cpu_count": os.cpu_count(),
        "stream_batch": batch,
        "rounds": rounds,
        "encoder_only_fps_batch1": statistics.median(singles),
        f"encoder_only_fps_batch{batch}": statistics.median(batched),
        "end_to_end_fps": statistics.median(streams),
        "end_to_end_frames": processed,
        "end_to_end_over_encoder_only_by_round": [
            round(a / b, 3) for a, b in zip(streams, batched, strict=True)
        ],
    }
    result["end_to_end_over_encoder_only"] = statistics.median(streams) / statistics.median(batched)
    timed = [p for p in pipelined if p is not None]
    if len(timed) == len(pipelined):
        # the stream keeps several inferences in flight here: the like-for-like reference is the engine
        # alone doing the same
        result["encoder_only_fps_pipelined"] = statistics.median(timed)
        result["end_to_end_over_encoder_only_pipelined"] = statistics.median(streams) / statistics.median(
            timed
        )
    if frames > 0:
        result["memory"] = rss_growth(enc, source, frames, workers=workers)
    enc.close()
    return result


def run_extract(artifact: str | Path, source: str | Path, *flags: str) -> tuple[float, float]:
    """`edge-vsd extract` in a child process -> (its FPS from the summary line, its peak RSS in MiB)."""
    with tempfile.TemporaryDirectory(prefix="edge-vsd-bench-") as tmp:
        cmd = [sys.executable, "-m", "edge_vsd.cli", "extract", str(source), "--artifact", str(artifact)]
        cmd += ["--out", str(Path(tmp) / "f.npz"), *[f.replace("{tmp}", tmp) for f in flags]]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        assert proc.stderr is not None  # stderr=PIPE
        err = proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    match = re.search(r"\(([0-9.]+) FPS", err)
    if proc.returncode != 0 or match is None:
        raise SystemExit(f"extract failed ({proc.returncode}): {err.strip()[-500:]}")
    return float(match.group(1)), usage.ru_maxrss / 1024  # Linux reports KiB


def extract_checks(
    artifact: str | Path, source: str | Path, max_frames: int = 400, rounds: int = 3
) -> dict[str, Any]:
    """Peak RSS of extract at shard sizes 2000 and 50, and the FPS ratio with / without --latency-log."""
    limit = ("--max-frames", str(max_frames))
    rss = {size: run_extract(artifact, source, *limit, "--shard-size", str(size))[1] for size in (2000, 50)}
    plain: list[float] = []
    logged: list[float] = []
    for r in range(rounds):
        order = [False, True] if r % 2 == 0 else [True, False]
        for with_log in order:
            flags = ("--latency-log", "{tmp}/lat.csv") if with_log else ()
            (logged if with_log else plain).append(run_extract(artifact, source, *limit, *flags)[0])
    return {
        "artifact": str(artifact),
        "source": str(source),
        "frames": max_frames,
        "peak_rss_mb_shard_2000": rss[2000],
        "peak_rss_mb_shard_50": rss[50],
        "fps_without_latency_log": statistics.median(plain),
        "fps_with_latency_log": statistics.median(logged),
        "latency_log_fps_ratio": statistics.median(logged) / statistics.median(plain),
        "rounds": rounds,
    }


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
    parser.add_argument("--extract-checks", action="store_true", help="extract memory + latency-log cost")
    parser.add_argument("--max-frames", type=int, default=400, help="frames per --extract-checks run")
    parser.add_argument("--rounds", type=int, default=3, help="timing rounds; FPS are medians of rounds")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    if args.extract_checks:
        json.dump(extract_checks(args.artifact, args.source, args.max_frames), sys.stdout, indent=2)
        print()
        return 0
    result = run_benchmark(
        args.artifact,
        args.source,
        args.frames,
        args.threads,
        args.backend,
        workers=args.workers,
        spinning=False if args.no_spinning else None,
        rounds=args.rounds,
    )
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())

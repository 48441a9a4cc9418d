"""Soak: `edge-vsd extract` over a 20,000-frame synthetic video through an exported ViT keeps its resident
memory flat (< 10 MB growth after warm-up) and its per-frame time steady. Minutes long, so it runs only with
EDGE_VSD_SOAK=1: CI's whole suite must stay under 20 minutes. `EDGE_VSD_SOAK_OUT=FILE.json` keeps the
figures."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_vsd.data.synthetic import make_frames

FRAMES = 20_000
WARMUP = 2_000
WINDOW = 1_000
MAX_GROWTH_MB = 10.0

pytestmark = [
    pytest.mark.slow,
    pytest.mark.soak,
    pytest.mark.skipif(
        os.environ.get("EDGE_VSD_SOAK") != "1",
        reason="soak takes minutes; CI stays under 20 minutes, so it runs only with EDGE_VSD_SOAK=1",
    ),
]


def write_long_video(path: Path, n: int, height: int = 120, width: int = 160) -> Path:
    """A synthetic clip (moving textured layers) looped with a drifting offset, so no two frames repeat."""
    clip = make_frames(n_frames=240, height=height, width=width, seed=0)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (width, height))
    assert writer.isOpened()
    for i in range(n):
        writer.write(np.roll(clip[i % len(clip)], i // len(clip), axis=1))
    writer.release()
    return path


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def test_extract_20000_frames_memory_flat_fps_steady(tmp_path):
    import torch
    from edge_vsd.export import ExportConfig, export_artifact

    from edge_vsd.model import build_vit

    video = write_long_video(tmp_path / "long.avi", FRAMES)
    torch.manual_seed(0)
    torch.save(build_vit("vit_tiny", 64).state_dict(), tmp_path / "vit.pt")
    art = export_artifact(ExportConfig(str(tmp_path / "vit.pt"), out=str(tmp_path / "art"), quiet=True))
    out, log = tmp_path / "f.npz", tmp_path / "latency.csv"
    cmd = [sys.executable, "-m", "edge_vsd.cli", "extract", str(video), "--artifact", str(art)]
    cmd += ["--out", str(out), "--latency-log", str(log)]
    env = dict(os.environ, TQDM_DISABLE="1")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    samples = []  # (wall time, RSS MB) of the extracting process
    while proc.poll() is None:
        rss = rss_mb(proc.pid)
        if rss is not None:
            samples.append((time.time(), rss))
        time.sleep(0.2)
    err = proc.stderr.read()
    assert proc.returncode == 0, err[-2000:]

    with open(log, newline="") as f:
        rows = list(csv.DictReader(f))
    wall = np.array([float(r["wall_time"]) for r in rows])
    # the frame's own work (preprocess + inference), per window: robust to a busy machine's pauses
    work = np.array([float(r["preprocess_ms"]) + float(r["inference_ms"]) for r in rows])
    assert len(wall) == FRAMES
    warm_end = wall[WARMUP]
    after = [rss for t, rss in samples if t >= warm_end]
    assert len(after) >= 10, "too few memory samples after warm-up"
    growth = max(after) - after[0]
    starts = range(WARMUP, FRAMES - WINDOW + 1, WINDOW)
    fps = [WINDOW / (wall[i + WINDOW - 1] - wall[i]) for i in starts]
    ms = [float(np.median(work[i : i + WINDOW])) for i in starts]
    first, last = np.median(ms[: len(ms) // 3]), np.median(ms[-(len(ms) // 3) :])
    figures = {
        "cpu": cpu_model(),
        "frames": FRAMES,
        "frame_size": [120, 160],
        "artifact": "vit_tiny/16 at 64x64, fp32 ONNX exported by edge-vsd, ONNX Runtime CPU",
        "rss_mb_at_warmup_end": round(after[0], 1),
        "rss_mb_max_after_warmup": round(max(after), 1),
        "rss_growth_mb": round(growth, 2),
        "fps_per_1000_frames": [round(v, 1) for v in fps],
        "fps_median": round(float(np.median(fps)), 1),
        "work_ms_per_1000_frames": [round(v, 3) for v in ms],
        "work_ms_first_third": round(float(first), 3),
        "work_ms_last_third": round(float(last), 3),
        "seconds": round(float(wall[-1] - wall[0]), 1),
    }
    print(json.dumps(figures, indent=2))
    if os.environ.get("EDGE_VSD_SOAK_OUT"):
        Path(os.environ["EDGE_VSD_SOAK_OUT"]).write_text(json.dumps(figures, indent=2) + "\n")
    assert growth < MAX_GROWTH_MB, figures
    assert last <= 1.25 * first, figures  # no slowdown as the run goes on (a ratio within this run)

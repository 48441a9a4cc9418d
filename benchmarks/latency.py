"""Wall-clock latency of an encoder call (preprocessing included) and the process's peak resident memory."""

from __future__ import annotations

import resource
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from edge_vsd.benchmarks.stats import summarize
from edge_vsd.runtimes.timing import time_block


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) for this process, so each artifact gets its own peak.
    Linux only ("5" > /proc/self/clear_refs); returns False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB (VmHWM, else getrusage's lifetime maximum)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def time_calls(fn: Callable[[np.ndarray], Any], x: np.ndarray, warmup: int, iters: int) -> list[float]:
    """Milliseconds per call of fn(x) after `warmup` untimed calls: one block of the timing protocol
    (`edge_vsd.runtimes.timing`, which compares several engines fairly)."""
    return time_block(lambda: fn(x), warmup, iters)


def measure(
    enc: Callable[[np.ndarray], Any], frames: np.ndarray, batch: int, warmup: int, iters: int
) -> dict[str, Any]:
    """Latency summary of enc on a batch of `batch` frames (repeated from `frames` when there are fewer)."""
    idx = np.arange(batch) % len(frames)
    x = np.ascontiguousarray(frames[idx])
    times = time_calls(enc, x, warmup, iters)
    return {**summarize(times, batch), "warmup": warmup, "times_ms": [round(t, 4) for t in times]}

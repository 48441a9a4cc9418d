"""Latency statistics: percentiles (numpy's "linear" rule, written out) and a per-run summary."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """q-th percentile (0..100) with linear interpolation between closest ranks, as numpy's default."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} outside [0, 100]")
    xs = sorted(float(v) for v in values)
    if not xs:
        raise ValueError("percentile of an empty sequence")
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    frac = pos - lo
    return xs[lo] + (xs[hi] - xs[lo]) * frac


def summarize(times_ms: Sequence[float], batch: int = 1) -> dict[str, float | None]:
    """mean, std (population), min, p10/p50/p90/p99, max in ms, and frames per second at this batch."""
    xs = [float(t) for t in times_ms]
    if not xs:
        raise ValueError("no timings to summarize")
    n = len(xs)
    mean = sum(xs) / n
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / n)
    p50 = percentile(xs, 50)
    out: dict[str, float | None] = {
        "iters": n,
        "batch": int(batch),
        "mean_ms": mean,
        "std_ms": std,
        "min_ms": min(xs),
        "p10_ms": percentile(xs, 10),
        "p50_ms": p50,
        "p90_ms": percentile(xs, 90),
        "p99_ms": percentile(xs, 99),
        "max_ms": max(xs),
    }
    # Throughput from the median: robust to the odd scheduler hiccup on a loaded board.
    out["fps"] = batch * 1000.0 / p50 if p50 > 0 else None
    return out

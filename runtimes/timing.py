"""The one timing protocol for comparing engines (export, tune, bench, peers).

Each candidate is timed in its own block after warm-up; between blocks every candidate is parked (its
`park()` hook, then a pause long enough for spinning worker threads to go to sleep); several rounds rotate
the order and the median of the round medians is kept. Interleaving calls of different engines on a few
cores measures the spinning threads of the engine that ran last, not the kernels of the one being timed."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Protocol:
    """Block sizes and the pause between blocks; `asdict` of it is recorded next to every number."""

    warmup: int = 3  # untimed calls at the start of every block (caches, lazy init, waking threads)
    iters: int = 10  # timed calls per block
    rounds: int = 3  # blocks per candidate; round r starts at candidate r (rotation)
    park_s: float = 0.2  # pause after each block: ONNX Runtime / OpenVINO spin a few ms after a call

    def record(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Timing:
    """What one candidate measured: median of the round medians, each round's median, every call."""

    median_ms: float
    round_ms: list[float]
    times_ms: list[float]

    @property
    def spread(self) -> float:
        """(slowest round - fastest round) / median: the run-to-run noise of this candidate."""
        return (max(self.round_ms) - min(self.round_ms)) / self.median_ms if self.median_ms else 0.0

    def record(self) -> dict[str, Any]:
        return {
            "median_ms": round(self.median_ms, 4),
            "round_ms": [round(t, 4) for t in self.round_ms],
            "spread": round(self.spread, 4),
        }


def clearly_faster(fast: list[float], slow: list[float]) -> bool:
    """True when every round of `fast` beat every round of `slow`: a gap the run's noise cannot explain."""
    return bool(fast) and bool(slow) and max(fast) < min(slow)


def _park(runner: Callable[[], object]) -> None:
    park = getattr(runner, "park", None)
    if callable(park):
        park()


def time_block(fn: Callable[[], object], warmup: int, iters: int) -> list[float]:
    """Milliseconds of `iters` calls of fn() after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter_ns()
        fn()
        times.append((time.perf_counter_ns() - t0) / 1e6)
    return times


def time_candidates(
    runners: Mapping[str, Callable[[], object]],
    protocol: Protocol | None = None,
    on_block: Callable[[str, int, float], None] | None = None,
) -> dict[str, Timing]:
    """Time every runner with `protocol`; a runner is a no-argument callable, optionally with `park()`.
    `on_block(name, round, median_ms)` is called after each block (progress lines)."""
    protocol = protocol or Protocol()
    if protocol.rounds < 1 or protocol.iters < 1 or protocol.warmup < 0:
        raise ValueError(f"invalid timing protocol {protocol}")
    names = list(runners)
    rounds: dict[str, list[float]] = {n: [] for n in names}
    calls: dict[str, list[float]] = {n: [] for n in names}
    for r in range(protocol.rounds):
        order = names[r % len(names) :] + names[: r % len(names)] if names else []
        for name in order:
            for other in runners.values():
                _park(other)
            time.sleep(protocol.park_s)
            times = time_block(runners[name], protocol.warmup, protocol.iters)
            calls[name].extend(times)
            rounds[name].append(statistics.median(times))
            if on_block is not None:
                on_block(name, r, rounds[name][-1])
    return {n: Timing(statistics.median(rounds[n]), rounds[n], calls[n]) for n in names}


def time_interleaved(runners: Mapping[str, Callable[[], object]], iters: int, warmup: int = 3) -> dict:
    """The unfair way (one call of each runner in turn), kept only so tests can show why it is wrong."""
    for fn in runners.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {n: [] for n in runners}
    for _ in range(iters):
        for name, fn in runners.items():
            t0 = time.perf_counter_ns()
            fn()
            times[name].append((time.perf_counter_ns() - t0) / 1e6)
    return {n: statistics.median(ts) for n, ts in times.items()}

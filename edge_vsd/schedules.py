"""Per-iteration schedules as plain numpy arrays (one value per optimizer step), as in DINO."""

from __future__ import annotations

import numpy as np


def cosine(
    start: float, end: float, steps: int, warmup_steps: int = 0, warmup_start: float = 0.0
) -> np.ndarray:
    """Linear warm-up from `warmup_start` to `start`, then a cosine from `start` to `end`."""
    warmup_steps = min(warmup_steps, steps)
    warm = np.linspace(warmup_start, start, warmup_steps, endpoint=False)
    t = np.arange(steps - warmup_steps)
    cos = end + 0.5 * (start - end) * (1 + np.cos(np.pi * t / max(1, len(t))))
    return np.concatenate([warm, cos])


def linear_then_constant(start: float, end: float, warmup_steps: int, steps: int) -> np.ndarray:
    warmup_steps = min(warmup_steps, steps)
    return np.concatenate([np.linspace(start, end, warmup_steps), np.full(steps - warmup_steps, end)])


def remaining_init_weight(momentum: np.ndarray) -> np.ndarray:
    """After each step, the share of the EMA teacher that is still its initialisation: the product of the
    momenta so far (teacher = m * teacher + (1 - m) * student)."""
    return np.cumprod(momentum)


def fit_momentum(steps: int, remaining: float, cap: float) -> float:
    """The largest base momentum, at most `cap`, whose cosine schedule to 1 over `steps` leaves at most
    `remaining` of the teacher's initialisation at the end (bisection on the log product)."""

    def left(m: float) -> float:
        return float(np.sum(np.log(np.maximum(cosine(m, 1.0, steps), 1e-12))))

    if left(cap) <= np.log(remaining):
        return cap
    lo, hi = 0.0, cap
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if left(mid) <= np.log(remaining) else (lo, mid)
    return lo

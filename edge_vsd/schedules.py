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

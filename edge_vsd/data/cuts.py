"""Scene-cut detection: a jump in the colour histogram between consecutive frames marks a new shot."""

from __future__ import annotations

import cv2
import numpy as np

CUT_THRESHOLD = 0.5  # total-variation distance of 8x8x8 RGB histograms; within a shot it stays far below


def histogram_distances(frames: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N-1,) total-variation distance between consecutive colour histograms."""
    hists = []
    for f in frames:
        small = cv2.resize(np.ascontiguousarray(f), (64, 48), interpolation=cv2.INTER_AREA)
        h = cv2.calcHist([small], [0, 1, 2], None, [8, 8, 8], [0, 256] * 3).ravel()
        hists.append(h / max(1.0, h.sum()))
    table = np.stack(hists) if hists else np.zeros((0, 512))
    return 0.5 * np.abs(np.diff(table, axis=0)).sum(axis=1)


def detect_cuts(frames: np.ndarray, threshold: float = CUT_THRESHOLD) -> list[int]:
    """Indices of the first frame of every shot after the first (empty for a single shot)."""
    return [int(i) + 1 for i in np.flatnonzero(histogram_distances(frames) > threshold)]

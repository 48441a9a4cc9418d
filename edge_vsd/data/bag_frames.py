"""Training frames from a ROS 2 bag's image topic, split into segments at gaps in the header stamps.

The stamps are the clock: each segment's frame rate is the topic's median stamp interval, so
`--delta-seconds` converts with what the camera did, and an interval longer than `GAP_FACTOR` median
intervals (at least one frame missing) ends a segment. Segments are cached as separate videos, so the pair
rule treats a gap like a scene cut: no pair spans one. The reader is `edge_vsd.runtimes.bags` (torch-free),
imported only when a bag is given.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge_vsd.data.video import DecodedVideo, short_side_size
from edge_vsd.errors import InputError

log = logging.getLogger("edge_vsd")


@dataclass
class BagSegment(DecodedVideo):
    """A stretch of a bag topic without a gap: RGB frames as `DecodedVideo`, plus their header stamps."""

    topic: str
    stamps_ns: np.ndarray  # (N,) int64


def decode_bag(
    path: str | Path, short_side: int, topic: str | None = None, progress=None
) -> list[BagSegment]:
    """Every frame of the bag's image topic, resized to `short_side` and split at stamp gaps; bad bags
    raise a one-line error (the reader's BagError)."""
    from edge_vsd.runtimes.bags import GAP_FACTOR, Bag, nominal_fps, stamp_segments

    bag = Bag(path, topic)
    frames, stamps = [], []
    for item in bag.frames():
        fh, fw = item.frame.shape[:2]
        h, w = short_side_size(fh, fw, short_side)
        small = cv2.resize(item.frame, (w, h), interpolation=cv2.INTER_AREA)
        frames.append(cv2.cvtColor(small, cv2.COLOR_BGR2RGB))
        stamps.append(item.stamp_ns)
        if progress is not None:
            progress.update(1)
    name = bag.topic.name
    stamp_arr = np.asarray(stamps, np.int64)
    fps = nominal_fps(stamp_arr)
    if fps is None:
        raise InputError(f"{path}: topic {name}: {len(frames)} frame(s) with distinct stamps, need 2")
    bounds = stamp_segments(stamp_arr)
    if len(bounds) > 1:
        gaps = np.diff(stamp_arr)[[a - 1 for a, _ in bounds[1:]]] / 1e9
        log.info(
            "%s %s: %d gap(s) in the header stamps (over %.1f frame intervals; longest %.3f s): "
            "%d segments, no pair spans a gap",
            path,
            name,
            len(gaps),
            GAP_FACTOR,
            float(gaps.max()),
            len(bounds),
        )
    stacked = np.stack(frames)
    return [BagSegment(Path(path), stacked[a:b], fps, name, stamp_arr[a:b]) for a, b in bounds if b - a >= 2]

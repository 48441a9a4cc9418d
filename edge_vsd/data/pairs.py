"""FramePairs: (frame t, frame t+delta) training samples over one or many cached videos.

The anchor rule (what keeps ablation arms comparable): a sample index picks an anchor frame `a` of a shot
(a whole video, or a part between scene cuts with `skip_cuts`). The pair is `(a, a + delta)` when that fits
in the shot, else `(a - delta, a)`, else (a shot shorter than 2 * delta) the shot's last pair. So the
sample -> anchor mapping and the run length do not depend on delta, and two runs that differ only in delta
see the same anchor frames at every step, always forward in time and always exactly delta apart. A shot of
`delta` frames or fewer gives no pairs and is left out (then the mapping does change: arms stay comparable
only while every shot is longer than the largest delta)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from edge_vsd.data.augment import AugmentConfig, augment_pair
from edge_vsd.data.cache import CachedVideo
from edge_vsd.data.cuts import detect_cuts
from edge_vsd.errors import InputError

log = logging.getLogger("edge_vsd")


def check_delta(delta: int | None, delta_seconds: float | None) -> None:
    """One-line errors for a delta that can never make pairs."""
    if delta is not None and delta < 0:
        raise InputError(f"--delta {delta}: must be 0 or more frames")
    if delta_seconds is not None and not delta_seconds > 0:
        raise InputError(
            f"--delta-seconds {delta_seconds}: must be more than 0 (--delta 0 pairs a frame with itself)"
        )


def resolve_delta(videos: list[CachedVideo], delta: int | None, delta_seconds: float | None) -> list[int]:
    """Per-video delta in frames: `delta_seconds` converts with each video's own fps (at least one frame)."""
    check_delta(delta, delta_seconds)
    if delta_seconds is not None:
        return [max(1, round(delta_seconds * v.fps)) for v in videos]
    return [int(delta if delta is not None else 30)] * len(videos)


@dataclass(frozen=True)
class Shot:
    video: int
    start: int
    end: int  # exclusive

    def __len__(self) -> int:
        return self.end - self.start


def find_shots(videos: list[CachedVideo], skip_cuts: bool) -> list[Shot]:
    """Every video as one shot, or split at its detected scene cuts (logged) with `skip_cuts`."""
    shots = []
    for v, video in enumerate(videos):
        n = video.frames.shape[0]
        cuts = detect_cuts(video.frames) if skip_cuts else []
        if cuts:
            log.info("%s: %d scene cut(s) at frames %s; no pair spans one", video.source, len(cuts), cuts)
        bounds = [0, *cuts, n]
        shots += [Shot(v, a, b) for a, b in zip(bounds, bounds[1:]) if b > a]
    return shots


class FramePairs(Dataset):
    """Index i -> an anchor frame and its pair (see the module docstring). Items are `(i, seed)` so
    augmentation is reproducible."""

    def __init__(
        self,
        videos: list[CachedVideo],
        img_size: int,
        delta: int | None = 30,
        delta_seconds: float | None = None,
        n_local: int = 0,
        local_size: int = 48,
        augment: AugmentConfig | None = None,
        skip_cuts: bool = False,
        defer_photometric: bool = False,
    ):
        self.videos, self.img_size, self.n_local, self.local_size = videos, img_size, n_local, local_size
        self.defer_photometric = defer_photometric  # uint8 crops + drawn rows; `finish_views` on the device
        self.augment = augment or AugmentConfig()
        self.deltas = resolve_delta(videos, delta, delta_seconds)
        all_shots = find_shots(videos, skip_cuts)
        self.shots = [s for s in all_shots if len(s) > self.deltas[s.video]]
        self.cuts = len(all_shots) - len(videos)
        if not self.shots:
            longest = max(len(s) for s in all_shots)
            raise InputError(
                f"delta ({max(self.deltas)} frames) is not shorter than every video or shot "
                f"(longest has {longest} frames); lower --delta/--delta-seconds"
            )
        self.offsets = np.cumsum([0] + [len(s) for s in self.shots])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def pair(self, i: int) -> tuple[int, int, int]:
        """Sample index -> (video, first frame, second frame), second = first + delta."""
        k = int(np.searchsorted(self.offsets, i, side="right") - 1)
        shot = self.shots[k]
        a, d = shot.start + i - int(self.offsets[k]), self.deltas[shot.video]
        if a + d < shot.end:
            return shot.video, a, a + d
        if a - d >= shot.start:
            return shot.video, a - d, a
        return shot.video, shot.end - 1 - d, shot.end - 1  # shot shorter than 2 * delta: its last pair

    def anchor(self, i: int) -> tuple[int, int]:
        """Sample index -> (video, anchor frame): the same for every delta."""
        k = int(np.searchsorted(self.offsets, i, side="right") - 1)
        return self.shots[k].video, self.shots[k].start + i - int(self.offsets[k])

    def __getitem__(self, item: tuple[int, int]) -> dict[str, torch.Tensor]:
        i, seed = item
        v, t0, t1 = self.pair(i)
        frames = self.videos[v].frames
        pair = np.stack([frames[t0], frames[t1]])
        g = torch.Generator().manual_seed(seed)
        return augment_pair(
            pair, g, self.img_size, self.n_local, self.local_size, self.augment, self.defer_photometric
        )


class StepBatches:
    """Batch sampler: step s -> this rank's share of a global batch drawn from a (seed, s) generator,
    so batches depend only on the step (resumable, identical for any worker count)."""

    def __init__(
        self,
        n: int,
        batch_size: int,
        seed: int,
        start_step: int,
        total_steps: int,
        accum: int = 1,
        rank: int = 0,
        world: int = 1,
    ):
        if batch_size % (world * accum):
            raise InputError(
                f"--batch-size {batch_size} must divide by processes x --accum ({world}x{accum})"
            )
        self.n, self.batch, self.seed, self.accum = n, batch_size, seed, accum
        self.start, self.total, self.rank, self.world = start_step, total_steps, rank, world

    def __len__(self) -> int:
        return (self.total - self.start) * self.accum

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        per_rank = self.batch // self.world
        micro = per_rank // self.accum
        for step in range(self.start, self.total):
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
            idx = torch.randint(0, self.n, (self.batch,), generator=g).tolist()
            seeds = torch.randint(0, 2**62, (self.batch,), generator=g).tolist()
            mine = list(zip(idx, seeds))[self.rank * per_rank : (self.rank + 1) * per_rank]
            for a in range(self.accum):
                yield mine[a * micro : (a + 1) * micro]

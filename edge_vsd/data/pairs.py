"""FramePairs: (frame t, frame t+delta) training samples over one or many cached videos."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset

from edge_vsd.data.augment import augment_pair
from edge_vsd.data.cache import CachedVideo
from edge_vsd.errors import InputError


def resolve_delta(videos: list[CachedVideo], delta: int | None, delta_seconds: float | None) -> list[int]:
    """Per-video delta in frames (`delta_seconds` converts with each video's fps)."""
    if delta_seconds is not None:
        return [max(1, round(delta_seconds * v.fps)) for v in videos]
    return [int(delta if delta is not None else 30)] * len(videos)


class FramePairs(Dataset):
    """Index i -> pair (t, t+delta) of one video. Items are `(i, seed)` so augmentation is reproducible."""

    def __init__(
        self,
        videos: list[CachedVideo],
        img_size: int,
        delta: int | None = 30,
        delta_seconds: float | None = None,
        n_local: int = 0,
        local_size: int = 48,
    ):
        self.videos, self.img_size, self.n_local, self.local_size = videos, img_size, n_local, local_size
        self.deltas = resolve_delta(videos, delta, delta_seconds)
        counts = [max(0, v.frames.shape[0] - d) for v, d in zip(videos, self.deltas)]
        if sum(counts) == 0:
            longest = max(v.frames.shape[0] for v in videos)
            raise InputError(
                f"delta ({max(self.deltas)} frames) is longer than every video "
                f"(longest has {longest} frames); lower --delta/--delta-seconds"
            )
        self.offsets = np.cumsum([0] + counts)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def locate(self, i: int) -> tuple[int, int]:
        v = int(np.searchsorted(self.offsets, i, side="right") - 1)
        return v, i - int(self.offsets[v])

    def __getitem__(self, item: tuple[int, int]) -> dict[str, torch.Tensor]:
        i, seed = item
        v, t = self.locate(i)
        frames = self.videos[v].frames
        pair = np.stack([frames[t], frames[t + self.deltas[v]]])
        g = torch.Generator().manual_seed(seed)
        globals_, locals_ = augment_pair(pair, g, self.img_size, self.n_local, self.local_size)
        out = {"globals": globals_}
        if locals_ is not None:
            out["locals"] = locals_
        return out


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

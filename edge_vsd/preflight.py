"""Checks of `train`'s inputs that need no decoding (the --init file, container frame counts): run before
any long work."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2

from edge_vsd.config import TrainConfig
from edge_vsd.data.cache import is_cache, stored_short_side
from edge_vsd.data.prepare import cache_short_side
from edge_vsd.data.video import expand_sources, is_bag
from edge_vsd.errors import InputError

log = logging.getLogger("edge_vsd")


def frame_count(path: Path) -> tuple[int, float]:
    """(frames the container claims, fps) without decoding; (0, 0.0) when it does not say."""
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            return 0, 0.0
        return int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0), float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    finally:
        cap.release()


def check_inputs(cfg: TrainConfig) -> None:
    """Everything `train` reads, checked before decoding: the `--init` checkpoint, then the videos."""
    if cfg.init:
        from edge_vsd.checkpoint import load_encoder

        patch = load_encoder(cfg.init).patch_size  # refuses pickled code, NaN weights, non-ViT files
        if cfg.img_size % patch or (cfg.local_crops and cfg.local_size % patch):
            sizes = f"--img-size {cfg.img_size}" + (
                f" / local_size {cfg.local_size}" if cfg.local_crops else ""
            )
            raise InputError(
                f"{cfg.init}: patch size {patch}; {sizes} must be a multiple of it "
                f"(e.g. --img-size {max(patch, cfg.img_size // patch * patch)})"
            )
    check_videos(cfg)


def check_videos(cfg: TrainConfig) -> None:
    """Missing videos, and a delta no video is long enough for, fail now instead of after decoding.
    Only decides when every container states its length; otherwise decoding finds out (and says so)."""
    if not cfg.video:
        raise InputError("no training video: pass --video PATH (file, folder, glob or frame cache)")
    if len(cfg.video) == 1 and is_cache(cfg.video[0]):
        check_cache_size(Path(cfg.video[0]), cfg.img_size)
        return  # opened in milliseconds; the pair sampler checks delta against it
    paths = expand_sources(cfg.video)
    if cfg.topic is not None and not any(map(is_bag, paths)):
        raise InputError(f"--topic {cfg.topic}: applies to ROS 2 bags (.mcap, .db3, bag folder); none given")
    for path in filter(is_bag, paths):  # topic choice and type, from the bag's summary: no decoding
        from edge_vsd.runtimes.bags import Bag

        Bag(path, cfg.topic)
    known = []
    for path in paths:
        if is_bag(path):
            return  # its frame count after the stamp gaps is known once decoded; decoding checks delta
        n, fps = frame_count(path)
        if n <= 0:
            return
        fps = fps if fps > 0 else 30.0
        delta = cfg.delta if cfg.delta_seconds is None else max(1, round(cfg.delta_seconds * fps))
        known.append((n, delta, path))
    if known and all(n <= delta for n, delta, _ in known):
        n, delta, path = max(known, key=lambda k: k[0])
        raise InputError(
            f"{path}: {n} frames, not more than delta ({delta} frames): no (t, t+delta) pairs "
            "in any video; lower --delta/--delta-seconds"
        )


def check_cache_size(cache: Path, img_size: int) -> None:
    """Warn when a frame cache stores frames smaller than training at `img_size` expects: its crops would
    be upscaled, blurrier than the size promises."""
    short = stored_short_side(cache)
    if short is not None and short < cache_short_side(img_size):
        log.warning(
            "%s: frames stored with short side %d px (prepared for --img-size %d); training at --img-size %d "
            "upscales them: run `edge-vsd prepare --img-size %d` for this size",
            cache,
            short,
            round(short / 1.15),
            img_size,
            img_size,
        )

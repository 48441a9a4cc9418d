"""Evaluation frames: a video, an image folder or a ROS 2 bag given with --data, or synthetic frames by
default."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
from edge_vsd.runtimes.errors import RuntimeInputError
from edge_vsd.runtimes.manifest import sha256_file

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def _same_size(frames: list[np.ndarray]) -> np.ndarray:
    # Frames of one folder may differ in size; bring them to the first one's so they stack into a batch.
    h, w = frames[0].shape[:2]
    out = [
        f if f.shape[:2] == (h, w) else cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in frames
    ]
    return np.stack(out)


def read_video(path: Path, n: int) -> np.ndarray:
    """Up to n frames spread evenly over the video (uint8 BGR, N x H x W x 3); a warning naming the file
    when fewer than n could be read."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise RuntimeInputError(f"{path}: OpenCV cannot open this video")
    stopped = False
    try:
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        step = max(1, total // n) if total > 0 else 1
        frames: list[np.ndarray] = []
        index = 0
        while len(frames) < n:
            ok = cap.grab()
            if not ok:
                stopped = True
                break
            if index % step == 0:
                ok, frame = cap.retrieve()
                if ok and frame is not None:
                    frames.append(frame)
            index += 1
    finally:
        cap.release()
    if not frames:
        raise RuntimeInputError(f"{path}: no decodable frames")
    if len(frames) < n:
        if stopped and index < total:
            log.warning(
                "%s: decoding stopped after %d of %d frames; using %d of the %d frames asked",
                path,
                index,
                total,
                len(frames),
                n,
            )
        else:
            log.warning("%s: %d frames read, %d asked; using those", path, len(frames), n)
    return np.stack(frames)


def read_image_dir(path: Path, n: int) -> np.ndarray:
    """Up to n images of a folder in name order (unreadable files are skipped, with a warning)."""
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise RuntimeInputError(f"{path}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in this folder")
    if len(files) > n:
        files = [files[i] for i in np.linspace(0, len(files) - 1, n).round().astype(int)]
    frames = [f for f in (cv2.imread(str(p), cv2.IMREAD_COLOR) for p in files) if f is not None]
    if not frames:
        raise RuntimeInputError(f"{path}: none of the {len(files)} images could be decoded")
    if len(frames) < n:
        skipped = len(files) - len(frames)
        log.warning(
            "%s: %d images read, %d asked%s; using those",
            path,
            len(frames),
            n,
            f" ({skipped} could not be decoded)" if skipped else "",
        )
    return _same_size(frames)


def read_bag(path: Path, n: int, topic: str | None = None) -> np.ndarray:
    """Up to n frames spread evenly over a ROS 2 bag's image topic (uint8 BGR, N x H x W x 3)."""
    from edge_vsd.runtimes.bags import Bag

    bag = Bag(path, topic)
    step = max(1, bag.frame_count // n)
    frames = [item.frame for _, item in zip(range(n), bag.frames(step))]
    if len(frames) < n:
        log.warning("%s %s: %d frames read, %d asked; using those", path, bag.topic.name, len(frames), n)
    return np.stack(frames)


def load_frames(
    data: str | Path | None, n: int = 32, seed: int = 0, topic: str | None = None
) -> tuple[np.ndarray, dict]:
    """(frames, description) for --data: a video file, an image folder, a ROS 2 bag (`topic`, or its only
    image topic), or synthetic frames when None."""
    if data is None:
        from edge_vsd.data.synthetic import make_frames

        return make_frames(n_frames=n, height=144, width=192, seed=seed), {
            "kind": "synthetic",
            "seed": seed,
            "frames": n,
        }
    path = Path(data)
    if not path.exists():
        raise RuntimeInputError(f"{path}: no such file or folder (--data)")
    from edge_vsd.runtimes.bags import is_bag

    if is_bag(path):
        frames, kind = read_bag(path, n, topic), "bag"
    elif path.is_dir():
        frames, kind = read_image_dir(path, n), "images"
    else:
        frames, kind = read_video(path, n), "video"
    # the file's name and digest, not its path: reports travel, and must not carry this machine's folders
    origin = {"source": path.name, **({} if path.is_dir() else {"sha256": sha256_file(path)})}
    if topic is not None:
        origin["topic"] = topic
    return frames, {
        "kind": kind,
        **origin,
        "frames": int(len(frames)),
        "size": [int(frames.shape[1]), int(frames.shape[2])],
    }

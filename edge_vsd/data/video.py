"""Finding and decoding videos with OpenCV; bad files are reported, not fatal, while good ones remain."""

from __future__ import annotations

import glob
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge_vsd.errors import InputError

log = logging.getLogger("edge_vsd")
VIDEO_EXTS = {".avi", ".mp4", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"}
BAG_EXTS = {".mcap", ".db3"}  # ROS 2 bags, read by edge_vsd.data.bag_frames
CACHE_INDEX = "index.json"  # what makes a folder a frame cache (edge_vsd.data.cache)


def is_bag(path: Path) -> bool:
    """A ROS 2 bag: an .mcap or .db3 file, or a folder with rosbag2's metadata.yaml."""
    return path.suffix.lower() in BAG_EXTS or (path.is_dir() and (path / "metadata.yaml").is_file())


def expand_sources(specs: Sequence[str | Path]) -> list[Path]:
    """Files, folders (their videos and bags, sorted), bag folders and glob patterns -> a list of paths."""
    out: list[Path] = []
    for spec in specs:
        spec = str(spec)
        p = Path(spec)
        if p.is_dir() and is_bag(p):
            out.append(p)
        elif p.is_dir():
            if (p / CACHE_INDEX).is_file():
                raise InputError(
                    f"{p}: a frame cache, which cannot be mixed with video files or other caches; pass it "
                    "alone (one --video), or prepare one cache from all the videos"
                )
            found = sorted(f for f in p.iterdir() if f.suffix.lower() in VIDEO_EXTS | BAG_EXTS)
            if not found:
                exts = ", ".join(sorted(VIDEO_EXTS | BAG_EXTS))
                raise InputError(f"{p}: folder holds no video files or bags ({exts})")
            out += found
        elif p.exists():
            out.append(p)
        elif any(c in spec for c in "*?["):
            matches = sorted(Path(m) for m in glob.glob(spec, recursive=True) if Path(m).is_file())
            if not matches:
                raise InputError(f"{spec}: pattern matches no files")
            out += matches
        else:
            raise InputError(f"{spec}: no such file or folder")
    return out


@dataclass
class DecodedVideo:
    path: Path
    frames: np.ndarray  # (N, H, W, 3) uint8 RGB
    fps: float


def short_side_size(h: int, w: int, short: int) -> tuple[int, int]:
    """(H, W) with the short side equal to `short`, aspect kept."""
    s = short / min(h, w)
    return max(short, round(h * s)), max(short, round(w * s))


def iter_frames(cap: cv2.VideoCapture) -> Iterator[np.ndarray]:
    """BGR frames of an open capture until it ends or fails to decode."""
    while True:
        ok, frame = cap.read()
        if not ok or frame is None:
            return
        yield frame


def decode(path: str | Path, short_side: int, progress=None) -> DecodedVideo | None:
    """Decode every frame to RGB with the short side resized to `short_side`; None (with a warning naming
    the file) when the file is empty, unreadable or holds fewer than two frames."""
    video = try_decode(path, short_side, progress)
    if isinstance(video, str):
        log.warning("skipping %s: %s", path, video)
        return None
    return video


def try_decode(path: str | Path, short_side: int, progress=None) -> DecodedVideo | str:
    """As `decode`, but a file that cannot be used gives the reason (a few words) instead of None."""
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return "empty file" if path.is_file() else "not a file"
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            return "OpenCV cannot open it as a video"
        fps, claimed = cap.get(cv2.CAP_PROP_FPS), int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        frames = []
        for frame in iter_frames(cap):
            h, w = short_side_size(frame.shape[0], frame.shape[1], short_side)
            frames.append(
                cv2.cvtColor(cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
            )
            if progress is not None:
                progress.update(1)
    finally:
        cap.release()
    if len(frames) < 2:
        return f"{len(frames)} decodable frame{'' if len(frames) == 1 else 's'}, need 2"
    if claimed > 0 and len(frames) < claimed:
        log.warning("%s: decoding stopped after %d of %d frames; using those", path, len(frames), claimed)
    if not fps or not np.isfinite(fps) or fps <= 0:
        log.warning("%s: no frame rate in the file; assuming 30 fps", path)
        fps = 30.0
    return DecodedVideo(path, np.stack(frames), float(fps))

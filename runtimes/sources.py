"""Frame sources for streaming: video files, image folders, camera indices and RTSP/HTTP URLs (OpenCV)."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
from edge_vsd.runtimes.errors import RuntimeInputError

log = logging.getLogger("edge_vsd.runtimes")

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}
URL_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")
FOLDER_FPS = 30.0  # image folders carry no clock; timestamps assume this rate unless told otherwise
LIVE_RETRIES = 5  # consecutive failed reads before a camera/URL stream counts as ended

Item = tuple[int, float, np.ndarray]  # (frame index in the source, timestamp in seconds, BGR uint8 frame)


class FrameSource:
    """Base: `frames(stride)` yields (index, timestamp, frame) for every stride-th frame (decode thread)."""

    kind = "source"
    live = False  # live sources drop the oldest queued frame instead of blocking the decoder
    fps: float | None = None
    frame_count: int | None = None

    def __init__(self, name: str) -> None:
        self.name = name
        self.unreadable = 0  # frames the source failed to decode and skipped

    def frames(self, stride: int = 1) -> Iterator[Item]:
        raise NotImplementedError

    def release(self) -> None:
        """Free the decoder."""


class CaptureSource(FrameSource):
    """Anything cv2.VideoCapture opens: a video file, a camera index, a network stream."""

    def __init__(self, name: str, target: str | int, kind: str) -> None:
        super().__init__(name)
        self.kind = kind
        self.live = kind in ("camera", "url")
        self.cap = cv2.VideoCapture(target)
        if not self.cap.isOpened():
            raise RuntimeInputError(f"{name}: OpenCV cannot open this {kind}")
        fps = self.cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and fps > 0 and np.isfinite(fps) else None
        count = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.frame_count = count if count > 0 and not self.live else None
        ok, first = self.cap.read()
        if not ok or first is None:
            self.cap.release()
            raise RuntimeInputError(f"{name}: no decodable frame (unreadable or empty {kind})")
        self._first: np.ndarray | None = first

    def _timestamp(self, index: int, t0: float) -> float:
        if self.live:
            return time.monotonic() - t0
        msec = self.cap.get(cv2.CAP_PROP_POS_MSEC)
        if msec > 0 or index == 0 or not self.fps:
            return float(msec) / 1000.0
        return index / self.fps

    def frames(self, stride: int = 1) -> Iterator[Item]:
        t0 = time.monotonic()
        index, failures = 0, 0
        frame = self._first
        self._first = None
        if frame is not None:
            yield 0, 0.0, frame
            index = 1
        while True:
            keep = index % stride == 0
            ok = self.cap.grab()
            if ok and keep:
                ok, frame = self.cap.retrieve()
                ok = ok and frame is not None
            if not ok:
                if self.live and failures < LIVE_RETRIES:
                    failures += 1
                    time.sleep(0.02 * failures)
                    continue
                return  # end of file, a truncated file or a stream that went away
            failures = 0
            if keep:
                yield index, self._timestamp(index, t0), frame
            index += 1

    def release(self) -> None:
        self.cap.release()


def _natural_key(path: Path) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


class FolderSource(FrameSource):
    """Images in a folder, in natural name order (frame_2 before frame_10), or one image file; unreadable
    images in a folder are skipped and counted."""

    kind = "folder"

    def __init__(self, folder: Path, fps: float | None = None) -> None:
        super().__init__(str(folder))
        if folder.is_dir():
            found = (p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            self.files = sorted(found, key=_natural_key)
        else:
            self.files = [folder]
        if not self.files:
            raise RuntimeInputError(
                f"{folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in this folder"
            )
        if cv2.imread(str(self.files[0]), cv2.IMREAD_UNCHANGED) is None and len(self.files) == 1:
            raise RuntimeInputError(f"{folder}: OpenCV cannot read this image")
        self.fps = float(fps) if fps else FOLDER_FPS
        self.frame_count = len(self.files)

    def frames(self, stride: int = 1) -> Iterator[Item]:
        for index in range(0, len(self.files), stride):
            frame = cv2.imread(str(self.files[index]), cv2.IMREAD_UNCHANGED)
            if frame is None or frame.dtype != np.uint8:
                self.unreadable += 1
                log.warning("%s: unreadable image, skipped", self.files[index])
                continue
            yield index, index / self.fps, frame


def open_source(source: str | int | Path, fps: float | None = None) -> FrameSource:
    """A video file, an image folder, a camera index (int or digit string) or an RTSP/HTTP URL."""
    if isinstance(source, int) or (isinstance(source, str) and source.isdigit()):
        return CaptureSource(f"camera {int(source)}", int(source), "camera")
    text = str(source)
    if text.lower().startswith(URL_SCHEMES):
        return CaptureSource(text, text, "url")
    path = Path(text)
    if path.is_dir():
        return FolderSource(path, fps)
    if not path.is_file():
        raise RuntimeInputError(f"{path}: no such file, folder, camera index or URL")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return FolderSource(path, fps)
    return CaptureSource(str(path), str(path), "video")

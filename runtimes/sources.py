"""Frame sources for streaming: video files, image folders, cameras, RTSP/HTTP URLs, GStreamer pipelines and
any Python iterable of frames.

Every source yields `Grab`s: the frame number in the source (frames that fail to decode keep their number,
so gaps show them), a timestamp on the source's clock, and the wall-clock (epoch) and monotonic times at grab.

- files: `timestamp` is the container's presentation time; image folders: index / fps; ROS 2 bags: the
  header stamp (also exact, in integer nanoseconds, as `stamp_ns`).
- live sources (cameras, URLs, GStreamer) and iterables: `timestamp` is the epoch time at grab (or the
  time an iterable gives with each frame), so it can be matched with the robot's other sensors.

Live sources read with a timeout (`read_timeout`): a stall becomes a drop. After a drop they reconnect
with exponential backoff (`reconnect` attempts, None = forever), logging each drop and reconnect; when the
attempts run out the source raises `SourceLost`. HTTP MJPEG (`multipart/x-mixed-replace`) is parsed here and
each JPEG decoded with cv2.imdecode: OpenCV's FFmpeg reader stops at the first corrupt JPEG and cannot
count it.
"""

from __future__ import annotations

import email.message
import http.client
import logging
import math
import os
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from edge_vsd.runtimes.errors import RuntimeInputError

log = logging.getLogger("edge_vsd.runtimes")

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}
URL_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")
FOLDER_FPS = 30.0  # image folders carry no clock; timestamps assume this rate unless told otherwise
GSTREAMER_HINT = (
    "this OpenCV build has no GStreamer (pip's opencv-python never has it); use the system OpenCV "
    "(JetPack's, or apt's python3-opencv) in a venv made with --system-site-packages"
)


@dataclass
class LivePolicy:
    """How live sources survive faults: read timeout (s), reconnect attempts (None = forever), backoff (s)."""

    read_timeout: float = 5.0
    reconnect: int | None = 5
    backoff: float = 0.5
    max_backoff: float = 8.0


@dataclass
class Grab:
    """One decoded frame and its clocks."""

    index: int
    timestamp: float
    wall_time: float
    mono_time: float
    decode_s: float
    frame: np.ndarray
    stamp_ns: int | None = None  # ROS 2 bags: the header stamp, exact


class SourceLost(RuntimeError):
    """A live source failed and could not be reconnected."""


def decode_threads() -> int | None:
    """Decoder threads for video files: one on 1-2 cores, where the encoder needs both; else the decoder's
    default. FFmpeg's threads cost more core time than they save there (vtest.avi: 0.58 against 0.82
    core-ms a frame, 2-core Xeon)."""
    return 1 if (os.cpu_count() or 1) <= 2 else None


def _grab_clock() -> tuple[float, float]:
    return time.time(), time.monotonic()


class FrameSource:
    """Base: `frames(stride)` yields a `Grab` for every stride-th frame (called on the decode thread)."""

    kind = "source"
    live = False
    fps: float | None = None
    frame_count: int | None = None

    def __init__(self, name: str, policy: LivePolicy | None = None) -> None:
        self.name = name
        self.policy = policy or LivePolicy()
        self.unreadable = 0  # frames the source failed to decode (counted, numbers kept)
        self.drops = 0  # live connections lost (stalls included)
        self.reconnects = 0
        self.events: list[tuple[float, str, str]] = []  # (epoch time, kind, detail)
        self.stop_event = threading.Event()
        self._attempts = 0  # reconnect attempts since the last good frame

    def frames(self, stride: int = 1) -> Iterator[Grab]:
        raise NotImplementedError

    def release(self) -> None:
        """Free the decoder."""

    def event(self, kind: str, detail: str) -> None:
        """Record and log a drop, reconnect, stall or corrupt frame."""
        self.events.append((time.time(), kind, detail))
        log.warning("%s: %s: %s", self.name, kind, detail)

    def _corrupt(self, index: int) -> None:
        self.unreadable += 1
        self.event("corrupt", f"frame {index} could not be decoded; counted and skipped")

    def reconnect(self, reason: str, attempt_open: Callable[[], bool]) -> None:
        """After a drop: retry `attempt_open` with exponential backoff; raise SourceLost when out of tries."""
        self.drops += 1
        self.event("drop", reason)
        limit = self.policy.reconnect
        while limit is None or self._attempts < limit:
            delay = min(self.policy.max_backoff, self.policy.backoff * 2**self._attempts)
            self._attempts += 1  # reset only by a frame: a server that accepts and hangs up counts too
            attempt = self._attempts
            if self.stop_event.wait(delay):
                raise SourceLost(f"{self.name}: stopped while reconnecting")
            try:
                ok = attempt_open()
            except Exception as exc:  # any failure to reopen is one failed attempt
                log.info("%s: reconnect attempt %d failed: %s", self.name, attempt, exc)
                ok = False
            if ok:
                self.reconnects += 1
                self.event("reconnect", f"stream back after {attempt} attempt(s)")
                return
        tries = "no reconnect allowed" if not limit else f"{limit} reconnect attempts failed"
        raise SourceLost(f"{self.name}: live stream lost ({reason}); {tries}")


class CaptureSource(FrameSource):
    """Anything cv2.VideoCapture opens: a video file, camera index, network stream or GStreamer pipeline."""

    def __init__(
        self,
        name: str,
        target: str | int,
        kind: str,
        policy: LivePolicy | None = None,
        api: int | None = None,
    ) -> None:
        super().__init__(name, policy)
        self.kind = kind
        self.live = kind in ("camera", "url", "gstreamer")
        self.target, self.api = target, api
        self.cap = self._open()
        if not self.cap.isOpened():
            raise RuntimeInputError(f"{name}: OpenCV cannot open this {kind}")
        fps = self.cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and fps > 0 and np.isfinite(fps) else None
        count = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.frame_count = count if count > 0 and not self.live else None
        wall, mono = _grab_clock()
        ok, first = self.cap.read()
        if not ok or first is None:
            self.cap.release()
            raise RuntimeInputError(f"{name}: no decodable frame (unreadable or empty {kind})")
        stamp = wall if self.live else self.cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
        self._first: Grab | None = Grab(0, stamp, wall, mono, time.monotonic() - mono, first)

    def _open(self) -> cv2.VideoCapture:
        if self.kind == "url":  # FFmpeg honours these; a stall then fails the read instead of blocking 30 s
            ms = int(self.policy.read_timeout * 1000)
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
            return cv2.VideoCapture(self.target, cv2.CAP_FFMPEG, params)
        if self.api is not None:
            return cv2.VideoCapture(self.target, self.api)
        threads = decode_threads()
        if self.kind == "video" and threads:
            cap = cv2.VideoCapture(self.target, cv2.CAP_ANY, [cv2.CAP_PROP_N_THREADS, threads])
            if cap.isOpened():
                return cap
            cap.release()  # a backend that rejects the setting: open it as it comes
        return cv2.VideoCapture(self.target)

    def _reopen(self) -> bool:
        self.cap.release()
        self.cap = self._open()
        return self.cap.isOpened()

    def _timestamp(self, index: int, wall: float) -> float:
        if self.live:
            return wall
        msec = self.cap.get(cv2.CAP_PROP_POS_MSEC)
        if msec > 0 or index == 0 or not self.fps:
            return float(msec) / 1000.0
        return index / self.fps

    def frames(self, stride: int = 1) -> Iterator[Grab]:
        index = 0
        if self._first is not None:
            yield self._first
            self._first, index = None, 1
        while not self.stop_event.is_set():
            keep = index % stride == 0
            wall, mono = _grab_clock()
            ok = self.cap.grab()
            frame = None
            if ok and keep:
                ok, frame = self.cap.retrieve()
                ok = ok and frame is not None
            if not ok:
                if not self.live:
                    return  # end of file or a truncated file: the stream reports a short count
                self.reconnect("read failed or timed out", self._reopen)
                continue
            self._attempts = 0
            if keep:
                assert frame is not None  # kept frames were retrieved, and a failed retrieve is not ok
                yield Grab(index, self._timestamp(index, wall), wall, mono, time.monotonic() - mono, frame)
            index += 1

    def release(self) -> None:
        self.cap.release()


class MJPEGSource(FrameSource):
    """An HTTP(S) multipart MJPEG stream, parsed here; each part is decoded with cv2.imdecode."""

    kind = "url"
    live = True

    def __init__(
        self, url: str, response: http.client.HTTPResponse, policy: LivePolicy | None = None
    ) -> None:
        super().__init__(url, policy)
        self.url = url
        self._response: http.client.HTTPResponse | None = response
        self._boundary = _boundary(response.headers)

    def _connect(self) -> bool:
        response = urllib.request.urlopen(self.url, timeout=self.policy.read_timeout)
        boundary = _boundary(response.headers)
        if boundary is None:
            response.close()
            raise OSError("the server no longer sends multipart MJPEG")
        self._response, self._boundary = response, boundary
        return True

    def _parts(self) -> Iterator[bytes]:
        """JPEG payloads of the current connection until it ends (timeouts raise)."""
        response, boundary = self._response, self._boundary
        assert response is not None and boundary is not None, "frames() connects before reading parts"
        marker = b"--" + boundary.encode()
        pending: bytes | None = None  # a boundary line read while looking for the end of a part
        while True:
            line, pending = (pending, None) if pending is not None else (response.readline(), None)
            if not line:
                return
            if not line.startswith(marker):
                continue
            if line.rstrip().endswith(b"--"):
                return  # closing boundary
            length = None
            while True:
                header = response.readline()
                if not header:
                    return
                if header in (b"\r\n", b"\n"):
                    break
                name, _, value = header.decode("latin-1").partition(":")
                if name.strip().lower() == "content-length" and value.strip().isdigit():
                    length = int(value.strip())
            if length is not None:
                data = response.read(length)
                if len(data) < length:
                    return
                yield data
                continue
            chunks: list[bytes] = []  # no length: the part runs to the next boundary line
            while True:
                line = response.readline()
                if not line:
                    return
                if line.startswith(marker):
                    yield b"".join(chunks).removesuffix(b"\r\n")
                    pending = line
                    break
                chunks.append(line)

    def frames(self, stride: int = 1) -> Iterator[Grab]:
        index = 0
        while not self.stop_event.is_set():
            reason = "the server closed the stream"
            try:
                for data in self._parts():
                    wall, mono = _grab_clock()
                    self._attempts = 0
                    if index % stride == 0:
                        frame = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
                        if frame is None:
                            self._corrupt(index)
                        else:
                            yield Grab(index, wall, wall, mono, time.monotonic() - mono, frame)
                    index += 1
                    if self.stop_event.is_set():
                        return
            except TimeoutError:
                reason = f"no data for {self.policy.read_timeout:g} s (stall)"
            except (OSError, http.client.HTTPException, ValueError) as exc:
                reason = f"connection failed: {exc}"
            self._close_response()
            if self.stop_event.is_set():
                return
            self.reconnect(reason, self._connect)

    def _close_response(self) -> None:
        if self._response is not None:
            try:
                self._response.close()
            except OSError:
                pass
            self._response = None

    def release(self) -> None:
        self._close_response()


def _boundary(headers: email.message.Message) -> str | None:
    ctype = headers.get("Content-Type", "")
    if not ctype.lower().startswith("multipart/x-mixed-replace"):
        return None
    match = re.search(r'boundary="?([^";]+)"?', ctype)
    return match.group(1).removeprefix("--") if match else None


def _open_url(url: str, policy: LivePolicy) -> FrameSource:
    """HTTP(S) MJPEG is parsed here; everything else (RTSP, HLS, files over HTTP) goes to FFmpeg."""
    if url.lower().startswith(("http://", "https://")):
        try:
            response = urllib.request.urlopen(url, timeout=policy.read_timeout)
        except urllib.error.HTTPError as exc:
            raise RuntimeInputError(f"{url}: HTTP {exc.code} {exc.reason}") from None
        except (OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", exc)
            raise RuntimeInputError(f"{url}: cannot connect ({reason})") from None
        if _boundary(response.headers) is not None:
            return MJPEGSource(url, response, policy)
        response.close()
    return CaptureSource(url, url, "url", policy)


def is_gstreamer_pipeline(text: str) -> bool:
    """A GStreamer pipeline string, e.g. 'nvarguscamerasrc ! ... ! appsink'."""
    return " ! " in text or text.startswith("gst:")


def has_gstreamer() -> bool:
    """Whether this OpenCV build was compiled with GStreamer."""
    info = cv2.getBuildInformation()
    return re.search(r"GStreamer:\s+YES", info) is not None


class IterableSource(FrameSource):
    """Frames from any Python iterable: numpy arrays (BGR or RGB with `color`), or (timestamp, frame)
    pairs whose timestamp (e.g. a ROS header stamp) is kept; otherwise the epoch time at grab."""

    kind = "iterable"

    def __init__(self, frames: Iterable[Any], color: str = "bgr", fps: float | None = None) -> None:
        super().__init__(f"<{type(frames).__name__}>")
        self._iter = iter(frames)
        self.color = color
        self.fps = fps

    def frames(self, stride: int = 1) -> Iterator[Grab]:
        for index, item in enumerate(self._iter):
            if self.stop_event.is_set():
                return
            wall, mono = _grab_clock()
            stamp = wall
            if isinstance(item, tuple) and len(item) == 2:
                stamp, item = float(item[0]), item[1]
            if index % stride:
                continue
            frame = np.asarray(item)
            if frame.dtype != np.uint8 or frame.ndim not in (2, 3):
                raise RuntimeInputError(
                    f"{self.name}: item {index} is not a uint8 frame ({frame.dtype}, shape {frame.shape})"
                )
            if self.color == "rgb" and frame.ndim == 3 and frame.shape[2] == 3:
                frame = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
            elif self.color == "rgb" and frame.ndim == 3 and frame.shape[2] == 4:
                frame = cv2.cvtColor(frame, cv2.COLOR_RGBA2BGR)
            yield Grab(index, stamp, wall, mono, 0.0, frame)


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

    def frames(self, stride: int = 1) -> Iterator[Grab]:
        for index in range(0, len(self.files), stride):
            if self.stop_event.is_set():
                return
            wall, mono = _grab_clock()
            frame = cv2.imread(str(self.files[index]), cv2.IMREAD_UNCHANGED)
            if frame is None or frame.dtype != np.uint8:
                self.unreadable += 1
                log.warning("%s: unreadable image, skipped", self.files[index])
                continue
            yield Grab(index, index / (self.fps or FOLDER_FPS), wall, mono, time.monotonic() - mono, frame)


def open_source(
    source: str | int | Path | Iterable[Any],
    fps: float | None = None,
    policy: LivePolicy | None = None,
    color: str = "bgr",
    topic: str | None = None,
) -> FrameSource:
    """A video file, an image folder, a camera index (int or digit string), an RTSP/HTTP URL, a GStreamer
    pipeline string, a ROS 2 bag (.mcap, .db3 or bag folder; `topic` or its only image topic), or any
    iterable of frames."""
    if color not in ("bgr", "rgb"):
        raise RuntimeInputError(f"color must be 'bgr' or 'rgb', got {color!r}")
    if fps is not None and not (fps > 0 and math.isfinite(fps)):
        raise RuntimeInputError(f"fps must be a positive number of frames a second, got {fps}")
    policy = policy or LivePolicy()
    if not (policy.read_timeout > 0 and math.isfinite(policy.read_timeout)):
        raise RuntimeInputError(
            f"read timeout must be a positive number of seconds, got {policy.read_timeout}"
        )
    if isinstance(source, int) or (isinstance(source, str) and source.isdigit()):
        return CaptureSource(f"camera {int(source)}", int(source), "camera", policy)
    if not isinstance(source, (str, Path)):
        if isinstance(source, np.ndarray) and source.ndim in (2, 3) and source.dtype == np.uint8:
            source = [source]  # one frame
        if isinstance(source, Iterable):
            return IterableSource(source, color, fps)
        raise RuntimeInputError(f"cannot stream from a {type(source).__name__}")
    text = str(source)
    if text.lower().startswith(URL_SCHEMES):
        return _open_url(text, policy)
    if is_gstreamer_pipeline(text):
        if not has_gstreamer():
            raise RuntimeInputError(f"GStreamer pipeline given, but {GSTREAMER_HINT}")
        pipeline = text.removeprefix("gst:").strip()
        return CaptureSource("gstreamer pipeline", pipeline, "gstreamer", policy, cv2.CAP_GSTREAMER)
    path = Path(text)
    from edge_vsd.runtimes.bags import is_bag, open_bag_source

    if is_bag(path):
        if not path.exists():
            raise RuntimeInputError(f"{path}: no such bag file or folder")
        return open_bag_source(path, topic)
    if topic is not None:
        raise RuntimeInputError(f"{path}: --topic applies to ROS 2 bags (.mcap, .db3, bag folder) only")
    if path.is_dir():
        return FolderSource(path, fps)
    if not path.is_file():
        raise RuntimeInputError(f"{path}: no such file, folder, camera index or URL")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return FolderSource(path, fps)
    return CaptureSource(str(path), str(path), "video", policy)

"""Streaming feature extraction: a background thread decodes frames into a bounded queue while the caller's
thread runs the encoder, so decoding and inference overlap.

Queue policy (`mode`):

- `latest` (default for cameras, URLs and GStreamer): a `queue_size`-frame queue (default 1); when it is
  full the oldest frame is dropped, so a frame is never older than about one inference when it reaches
  the encoder. Every dropped frame is counted (`frames_dropped`); its number is skipped in `frame_index`.
- `all` (default for files, folders and iterables): the decoder waits for the encoder; nothing is lost.
  For files, folders and iterables, where the engine offers it (OpenVINO, ONNX Runtime on the CPU), two
  batches are in inference at once (`pipelined`; OpenVINO may choose more on large CPUs): on 2 cores two
  single-thread requests ran ViT-S/16 INT8 1.38x (OpenVINO) and 1.77x (ONNX Runtime dynamic INT8) as fast
  as one request with both threads. A result is delivered as soon as no new frame is waiting. By default
  only inputs of PIPELINE_MIN_FRAMES frames or more (or of unknown length) do this.

Each item unpacks as `(frame_index, timestamp, Features)` and carries `.timing` (epoch and monotonic time
at grab, age at output, decode/preprocess/inference milliseconds). A stream that ends early, a live source
that is lost for good, or a decoder that fails does not raise: iteration stops and `error`, `stop_reason`,
`ended_early` and `summary()` say what happened (also logged on the "edge_vsd.runtimes" logger).
"""

from __future__ import annotations

import logging
import math
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from edge_vsd.runtimes.encoder import Features
from edge_vsd.runtimes.errors import RuntimeInputError
from edge_vsd.runtimes.sources import FrameSource, Grab, LivePolicy, open_source

if TYPE_CHECKING:
    from edge_vsd.runtimes.encoder import Encoder, EncoderPipeline

log = logging.getLogger("edge_vsd.runtimes")

MODES = ("latest", "all")
DEFAULT_QUEUE = {"latest": 1, "all": 8}
_END = object()
# frames from which `all` mode keeps two inferences in flight by default: preparing the engine's second
# model took 0.55 s (ViT-S/16 INT8, OpenVINO, 2-core Xeon), earned back after about 300 frames
PIPELINE_MIN_FRAMES = 500
_POLL_S = 0.1


def default_workers() -> int:
    """Preprocessing threads: none extra on 1-2 cores (the encoder needs them), up to 4 with spare cores."""
    cores = os.cpu_count() or 1
    return 1 if cores <= 2 else min(4, cores // 2)


@dataclass(frozen=True)
class FrameTiming:
    """Clocks of one processed frame. `wall_time` (epoch s) and `mono_time` (time.monotonic()) are taken at
    grab; `age_s` is the time from grab to output; `inference_ms` is the encoder call (a batch) it was in."""

    wall_time: float
    mono_time: float
    age_s: float
    decode_ms: float
    preprocess_ms: float
    inference_ms: float


class StreamItem(tuple):
    """Unpacks as `(frame_index, timestamp, features)`; `.timing` holds the frame's `FrameTiming`,
    `.frame_hw` the decoded frame's (height, width) (see `edge_vsd.runtimes.geometry.PatchGrid`) and
    `.stamp_ns` a ROS 2 bag's header stamp in integer nanoseconds (None for other sources)."""

    timing: FrameTiming
    frame_hw: tuple[int, int]
    stamp_ns: int | None

    def __new__(
        cls,
        index: int,
        timestamp: float,
        features: Features,
        timing: FrameTiming,
        frame_hw: tuple[int, int],
        stamp_ns: int | None = None,
    ) -> StreamItem:
        item = super().__new__(cls, (index, timestamp, features))
        item.timing, item.frame_hw, item.stamp_ns = timing, frame_hw, stamp_ns
        return item

    @property
    def index(self) -> int:  # type: ignore[override]  # the frame index: the API since items were tuples
        return self[0]

    @property
    def timestamp(self) -> float:
        return self[1]

    @property
    def features(self) -> Features:
        return self[2]


class _OneAtATime:
    """`EncoderPipeline`'s interface over plain `Encoder.run_tensor` calls: depth 1, run at `submit`."""

    depth = 1

    def __init__(self, encoder: Encoder) -> None:
        self.encoder = encoder
        self._done: deque = deque()

    def submit(self, x: np.ndarray) -> None:
        t0 = time.perf_counter()
        feats = self.encoder.run_tensor(x)
        self._done.append((feats, (time.perf_counter() - t0) * 1e3))

    def result(self) -> tuple[Features, float]:
        return self._done.popleft()

    def close(self) -> None:
        self._done.clear()


@dataclass
class _Pending:
    grab: Grab
    tensor: Any  # `Encoder.prepare`'s array, a Future of (array, seconds), or None (prepared by the consumer)
    prep_s: float = 0.0


class FeatureStream:
    """Iterate to get `StreamItem`s (`cls` (D,), `patches` (h, w, D), `frame` the BGR frame when
    `keep_frames`). Opening an unreadable source raises RuntimeInputError at once. Live sources start
    reading when the stream is created (so grab times are true); call `close()` or use `with`."""

    def __init__(
        self,
        encoder: Encoder,
        source: Any,
        stride: int = 1,
        mode: str | None = None,
        queue_size: int | None = None,
        batch_size: int | None = None,
        keep_frames: bool = False,
        max_frames: int | None = None,
        duration: float | None = None,
        fps: float | None = None,
        workers: int | None = None,
        color: str = "bgr",
        read_timeout: float = 5.0,
        reconnect: int | None = 5,
        backoff: float = 0.5,
        pipelined: bool | None = None,
        topic: str | None = None,
    ) -> None:
        if int(stride) < 1:
            raise RuntimeInputError(f"stride must be >= 1, got {stride}")
        if mode is not None and mode not in MODES:
            raise RuntimeInputError(f"mode must be one of {MODES}, got {mode!r}")
        if queue_size is not None and int(queue_size) < 1:
            raise RuntimeInputError(f"queue size must be >= 1, got {queue_size}")
        if duration is not None and not duration > 0:
            raise RuntimeInputError(f"duration must be > 0 seconds, got {duration}")
        if reconnect is not None and reconnect < 0:
            raise RuntimeInputError(f"reconnect must be >= 0 or None (forever), got {reconnect}")
        self.encoder = encoder
        self.stride = int(stride)
        self.keep_frames = keep_frames
        self.max_frames = max_frames
        self.duration = duration
        self.batch_size = batch_size or encoder.static_batch or 4
        self.workers = max(1, workers if workers is not None else default_workers())
        policy = LivePolicy(read_timeout=float(read_timeout), reconnect=reconnect, backoff=float(backoff))
        self.source: FrameSource = open_source(source, fps, policy, color, topic)
        self.mode = mode or ("latest" if self.source.live else "all")
        self.in_flight = 1  # inferences at once, known once iteration starts
        self.queue_size = int(queue_size or DEFAULT_QUEUE[self.mode])
        self.fps = self.source.fps
        count = self.source.frame_count
        self.expected_frames = math.ceil(count / self.stride) if count else None
        if max_frames is not None and self.expected_frames is not None:
            self.expected_frames = min(self.expected_frames, max_frames)
        # several inferences in flight raise throughput but add latency: files yes, live sources never, and
        # by default not for inputs too short to pay for the engine's second model
        known = [n for n in (self.expected_frames, max_frames) if n is not None]
        long_enough = min(known, default=PIPELINE_MIN_FRAMES) >= PIPELINE_MIN_FRAMES
        wanted = long_enough if pipelined is None else pipelined
        self.pipelined = self.mode == "all" and not self.source.live and wanted
        self.frames_decoded = 0
        self.frames_processed = 0
        self._frames_taken = 0  # off the queue, into inference (ahead of frames_processed when pipelined)
        self.frames_dropped = 0
        self.error: BaseException | None = None
        self.ended_early = False
        self.stop_reason: str | None = None  # end | max_frames | duration | stopped | caller | error
        self._queue: queue.Queue = queue.Queue(maxsize=self.queue_size)
        self._stop = threading.Event()
        self._stop_requested = threading.Event()
        self._thread: threading.Thread | None = None
        self._iterated = False
        self._pool: ThreadPoolExecutor | None = None
        if self.source.live:
            self._start()

    # -- decode thread ---------------------------------------------------------------------------------------
    def _start(self) -> None:
        if self.workers > 1 and self.mode == "all":
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="edge-vsd-prep")
        self._thread = threading.Thread(target=self._decode, name="edge-vsd-decode", daemon=True)
        self._thread.start()

    def _put(self, item: object) -> None:
        latest = self.mode == "latest" and item is not _END
        while not self._stop.is_set():
            try:
                if latest:
                    self._queue.put_nowait(item)
                else:
                    self._queue.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                if latest:
                    try:  # the oldest queued frame goes, so the encoder always gets a fresh one
                        self._queue.get_nowait()
                        self.frames_dropped += 1
                    except queue.Empty:
                        pass

    def _prepare(self, frames: Any, resize_in_engine: bool = False) -> tuple[np.ndarray, float]:
        start = time.perf_counter()
        return self.encoder.prepare(frames, resize_in_engine), time.perf_counter() - start

    def _decode(self) -> None:
        try:
            for grab in self.source.frames(self.stride):
                if self._stop.is_set():
                    break
                self.frames_decoded += 1
                if self.mode == "latest":  # dropped frames should cost no preprocessing
                    pending = _Pending(grab, None)
                elif self._pool is not None:  # resizing large frames costs more than decoding them
                    pending = _Pending(grab, self._pool.submit(self._prepare, grab.frame))
                else:
                    tensor, seconds = self._prepare(grab.frame)
                    pending = _Pending(grab, tensor, seconds)
                self._put(pending)
        except Exception as exc:  # a decoder failing or a live source lost: reported, not raised
            self.error = exc
        finally:
            self._put(_END)

    # -- consumer --------------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the stream to end after the current batch and any already in inference (safe from a signal
        handler or another thread)."""
        self._stop_requested.set()

    def _should_stop(self, start: float) -> str | None:
        if self._stop_requested.is_set():
            return "stopped"
        if self.max_frames is not None and self._frames_taken >= self.max_frames:
            return "max_frames"
        if self.duration is not None and time.monotonic() - start >= self.duration:
            return "duration"
        return None

    def _next_batch(self, start: float) -> list[_Pending] | str:
        while True:
            reason = self._should_stop(start)
            if reason:
                return reason
            try:
                item = self._queue.get(timeout=_POLL_S)
                break
            except queue.Empty:
                if self._thread is not None and not self._thread.is_alive() and self._queue.empty():
                    return "end"
        if item is _END:
            return "end"
        batch = [item]
        while len(batch) < self.batch_size:
            try:
                nxt = self._queue.get_nowait()
            except queue.Empty:
                break
            if nxt is _END:
                self._queue.put(_END)  # seen again by the next call, which then ends the stream
                break
            batch.append(nxt)
        return batch

    def _tensors(self, batch: list[_Pending]) -> list[np.ndarray]:
        if all(p.tensor is None for p in batch):  # "latest" mode, prepared here, just before its inference:
            # as one batch, so the engine resizes either all frames in its graph or none
            x, seconds = self._prepare([p.grab.frame for p in batch], resize_in_engine=True)
            for p in batch:
                p.prep_s = seconds / len(batch)
            return [x]
        out = []
        for p in batch:
            if isinstance(p.tensor, Future):
                p.tensor, p.prep_s = p.tensor.result()
            out.append(p.tensor)
        return out

    def _runs(self) -> EncoderPipeline | _OneAtATime:
        if self.pipelined and self.batch_size <= self.encoder.max_batch:
            pipe = self.encoder.pipeline()
            if pipe is not None:
                return pipe
        return _OneAtATime(self.encoder)

    def __iter__(self) -> Iterator[StreamItem]:
        if self._iterated:
            raise RuntimeError("a FeatureStream can be iterated only once")
        self._iterated = True
        if self._thread is None:
            self._start()
        runs = self._runs()
        self.in_flight = runs.depth
        pending: deque[list[_Pending]] = deque()  # batches in inference, oldest first
        start = time.monotonic()
        try:
            while True:
                if pending and self._queue.empty():  # nothing to start: deliver what is done meanwhile
                    yield from self._items(pending.popleft(), *runs.result())
                batch = self._next_batch(start)
                if isinstance(batch, str):
                    self.stop_reason = batch
                    break
                if self.max_frames is not None:
                    batch = batch[: self.max_frames - self._frames_taken]
                try:
                    tensors = self._tensors(batch)
                except Exception as exc:  # preprocessing failed: end the stream, reported like a decode error
                    self.error = exc
                    self.stop_reason = "error"
                    break
                try:
                    runs.submit(np.concatenate(tensors))
                except Exception:  # the engine refused this batch: the ones before it still count
                    while pending:
                        yield from self._items(pending.popleft(), *runs.result())
                    raise
                self._frames_taken += len(batch)
                pending.append(batch)
                if len(pending) == runs.depth:  # the oldest is done before another starts
                    yield from self._items(pending.popleft(), *runs.result())
            while pending:  # what was started before the stream ended is delivered
                yield from self._items(pending.popleft(), *runs.result())
        except GeneratorExit:
            self.stop_reason = "caller"
            raise
        finally:
            runs.close()
            self.close()
            self._report()

    def _items(self, batch: list[_Pending], feats: Features, inference_ms: float) -> Iterator[StreamItem]:
        for k, p in enumerate(batch):
            g = p.grab
            self.frames_processed += 1
            timing = FrameTiming(
                g.wall_time,
                g.mono_time,
                time.monotonic() - g.mono_time,
                g.decode_s * 1e3,
                p.prep_s * 1e3,
                inference_ms,
            )
            frame = g.frame if self.keep_frames else None
            out = Features(feats.cls[k], feats.patches[k], frame)
            yield StreamItem(g.index, g.timestamp, out, timing, g.frame.shape[:2], g.stamp_ns)

    @property
    def lost(self) -> bool:
        """True when a live source ended or failed before max_frames/duration/stop() ended the stream."""
        return self.source.live and self.stop_reason in ("end", "error")

    def _report(self) -> None:
        if self.stop_reason in ("caller", "stopped"):
            return
        if self.stop_reason == "end" and self.error is not None:
            self.stop_reason = "error"
        short = self.expected_frames is not None and self.frames_processed < self.expected_frames
        self.ended_early = bool(short or self.error is not None or self.lost)
        if self.error is not None:
            log.warning(
                "%s: stream ended after %d frames: %s", self.source.name, self.frames_processed, self.error
            )
        elif self.lost:
            log.warning("%s: live stream ended after %d frames", self.source.name, self.frames_processed)
        elif short and (self.max_frames is None or self.frames_processed < self.max_frames):
            log.warning(
                "%s: stream ended early: %d of %d expected frames processed",
                self.source.name,
                self.frames_processed,
                self.expected_frames,
            )
        if self.frames_dropped:
            log.info(
                "%s: dropped %d frames to stay current (mode %s, queue %d)",
                self.source.name,
                self.frames_dropped,
                self.mode,
                self.queue_size,
            )

    def close(self) -> None:
        """Stop the decode thread and release the source (also done when iteration ends)."""
        self._stop.set()
        self.source.stop_event.set()
        thread = self._thread
        if thread is not None and thread.is_alive():
            deadline = time.monotonic() + self.source.policy.read_timeout + 1.0
            while thread.is_alive() and time.monotonic() < deadline:
                try:  # unblock a decoder waiting on a full queue
                    self._queue.get_nowait()
                except queue.Empty:
                    pass
                thread.join(timeout=_POLL_S)
            if thread.is_alive():  # stuck in a blocking read: it is a daemon and ends with the process
                log.info("%s: decoder still blocked in a read; left to finish", self.source.name)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if thread is None or not thread.is_alive():
            self.source.release()

    def summary(self) -> str:
        """One line: processed / dropped / unreadable frames, drops and reconnects, and how it ended."""
        src = self.source
        parts = [f"{self.frames_processed} frames processed"]
        if self.frames_dropped:
            parts.append(f"{self.frames_dropped} dropped (mode {self.mode})")
        if src.unreadable:
            parts.append(f"{src.unreadable} unreadable")
        if src.drops or src.reconnects:
            parts.append(f"{src.drops} connection drops, {src.reconnects} reconnects")
        if self.ended_early:
            parts.append(
                "ended early"
                + (f" (expected {self.expected_frames})" if self.expected_frames is not None else "")
            )
        return ", ".join(parts)

    def __enter__(self) -> FeatureStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

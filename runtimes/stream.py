"""Streaming feature extraction: a background thread decodes (and resizes) frames into a bounded queue while
the caller's thread runs the encoder, so decoding and inference overlap.

A stream that ends early (truncated file, camera unplugged) or drops frames (a live source faster than the
encoder) does not raise: iteration simply stops, and `frames_processed`, `frames_dropped`, `ended_early`
and `error` say what happened (also logged on the "edge_vsd.runtimes" logger).
"""

from __future__ import annotations

import logging
import math
import os
import queue
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from edge_vsd.runtimes.encoder import Features
from edge_vsd.runtimes.errors import RuntimeInputError
from edge_vsd.runtimes.sources import FrameSource, open_source

if TYPE_CHECKING:
    from edge_vsd.runtimes.encoder import Encoder

log = logging.getLogger("edge_vsd.runtimes")

_END = object()
_POLL_S = 0.1


def default_workers() -> int:
    """Preprocessing threads: none extra on 1-2 cores (the encoder needs them), up to 4 with spare cores."""
    cores = os.cpu_count() or 1
    return 1 if cores <= 2 else min(4, cores // 2)


class FeatureStream:
    """Iterate to get `(frame_index, timestamp_seconds, Features)` per processed frame (`cls` (D,), `patches`
    (h, w, D), `frame` the decoded BGR frame when `keep_frames`). Opening an unreadable source raises
    RuntimeInputError at once; anything after the first frame ends the stream quietly and is reported."""

    def __init__(
        self,
        encoder: Encoder,
        source: str | int | Path,
        stride: int = 1,
        queue_size: int = 8,
        batch_size: int | None = None,
        keep_frames: bool = False,
        max_frames: int | None = None,
        fps: float | None = None,
        workers: int | None = None,
    ) -> None:
        if int(stride) < 1:
            raise RuntimeInputError(f"stride must be >= 1, got {stride}")
        self.encoder = encoder
        self.stride = int(stride)
        self.keep_frames = keep_frames
        self.max_frames = max_frames
        self.batch_size = batch_size or encoder.static_batch or 4
        self.workers = max(1, workers if workers is not None else default_workers())
        self.source: FrameSource = open_source(source, fps)
        self.fps = self.source.fps
        count = self.source.frame_count
        self.expected_frames = math.ceil(count / self.stride) if count else None
        if max_frames is not None and self.expected_frames is not None:
            self.expected_frames = min(self.expected_frames, max_frames)
        self.frames_decoded = 0
        self.frames_processed = 0
        self.frames_dropped = 0
        self.error: BaseException | None = None
        self.ended_early = False
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, queue_size))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopped_by_caller = False
        self._pool: ThreadPoolExecutor | None = None

    # -- decode thread ---------------------------------------------------------------------------------------
    def _put(self, item: object) -> None:
        live = self.source.live and item is not _END
        while not self._stop.is_set():
            try:
                if live:
                    self._queue.put_nowait(item)
                else:
                    self._queue.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                if live:
                    try:  # a live source must not lag behind: the oldest queued frame goes
                        self._queue.get_nowait()
                        self.frames_dropped += 1
                    except queue.Empty:
                        pass

    def _prepare(self, frame: np.ndarray) -> np.ndarray:
        prep = self.encoder.preprocess
        return prep.normalize(prep.resize(frame)[None])

    def _decode(self) -> None:
        try:
            for index, timestamp, frame in self.source.frames(self.stride):
                if self._stop.is_set():
                    break
                # resizing costs more than decoding for large frames; with spare cores it runs in a pool
                x = self._pool.submit(self._prepare, frame) if self._pool else self._prepare(frame)
                self.frames_decoded += 1
                self._put((index, timestamp, x, frame if self.keep_frames else None))
        except Exception as exc:  # a decoder failing mid-stream ends the stream; it is reported, not raised
            self.error = exc
        finally:
            self._put(_END)

    # -- consumer --------------------------------------------------------------------------------------------
    def _next_batch(self) -> list | None:
        while True:
            try:
                item = self._queue.get(timeout=_POLL_S)
                break
            except queue.Empty:
                if self._thread is not None and not self._thread.is_alive() and self._queue.empty():
                    return None
        if item is _END:
            return None
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

    def __iter__(self) -> Iterator[tuple[int, float, Features]]:
        if self._thread is not None:
            raise RuntimeError("a FeatureStream can be iterated only once")
        if self.workers > 1:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="edge-vsd-prep")
        self._thread = threading.Thread(target=self._decode, name="edge-vsd-decode", daemon=True)
        self._thread.start()
        try:
            while self.max_frames is None or self.frames_processed < self.max_frames:
                batch = self._next_batch()
                if batch is None:
                    break
                if self.max_frames is not None:
                    batch = batch[: self.max_frames - self.frames_processed]
                try:
                    tensors = [b[2].result() if isinstance(b[2], Future) else b[2] for b in batch]
                except Exception as exc:  # preprocessing failed: end the stream, reported like a decode error
                    self.error = exc
                    break
                feats = self.encoder.run_tensor(np.concatenate(tensors))
                for k, (index, timestamp, _, frame) in enumerate(batch):
                    self.frames_processed += 1
                    yield index, timestamp, Features(feats.cls[k], feats.patches[k], frame)
        except GeneratorExit:
            self._stopped_by_caller = True
            raise
        finally:
            self.close()
            self._report()

    def _report(self) -> None:
        if self._stopped_by_caller:
            return
        short = self.expected_frames is not None and self.frames_processed < self.expected_frames
        self.ended_early = bool(short or self.error is not None)
        if self.error is not None:
            log.warning(
                "%s: stream ended after %d frames: %s", self.source.name, self.frames_processed, self.error
            )
        elif short and (self.max_frames is None or self.frames_processed < self.max_frames):
            log.warning(
                "%s: stream ended early: %d of %d expected frames processed",
                self.source.name,
                self.frames_processed,
                self.expected_frames,
            )
        if self.frames_dropped:
            log.warning(
                "%s: dropped %d frames to keep up with the source", self.source.name, self.frames_dropped
            )

    def close(self) -> None:
        """Stop the decode thread and release the source (also done when iteration ends)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread.is_alive():
            while thread.is_alive():
                try:  # unblock a decoder waiting on a full queue
                    self._queue.get_nowait()
                except queue.Empty:
                    pass
                thread.join(timeout=_POLL_S)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self.source.release()

    def summary(self) -> str:
        """One line: processed / dropped / unreadable frames and whether the stream ended early."""
        parts = [f"{self.frames_processed} frames processed"]
        if self.frames_dropped:
            parts.append(f"{self.frames_dropped} dropped")
        if self.source.unreadable:
            parts.append(f"{self.source.unreadable} unreadable")
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

"""The encoder `load` returns: preprocessing + a backend, frames in, float32 features out."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from edge_vsd.runtimes.backend import Backend
from edge_vsd.runtimes.errors import RuntimeInputError
from edge_vsd.runtimes.manifest import input_spec
from edge_vsd.runtimes.preprocess import Preprocessor, as_frame_list, to_bgr

log = logging.getLogger("edge_vsd.runtimes")

DEFAULT_MAX_BATCH = 16  # chunk size for dynamic-batch artifacts: bounds memory, keeps batching benefits


@dataclass
class Features:
    """Encoder output: `cls` (N, D) and `patches` (N, h, w, D) float32; a stream's items hold one frame each
    (`cls` (D,), `patches` (h, w, D)) and, when asked for, the decoded `frame`."""

    cls: np.ndarray
    patches: np.ndarray
    frame: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.cls)


class Encoder:
    """A verified artifact bound to a backend. Call it on frames; `.stream(source)` for videos and cameras."""

    def __init__(self, artifact_dir: str | Path, manifest: dict[str, Any], backend: Backend) -> None:
        self.artifact_dir = Path(artifact_dir)
        self.manifest = manifest
        self.backend = backend
        self.spec = input_spec(manifest)
        self.preprocess = Preprocessor(self.spec)
        self.static_batch = self.spec.batch
        self.max_batch = self.spec.batch or DEFAULT_MAX_BATCH
        h, w = self.spec.image_size
        patch = manifest["model"]["patch_size"]
        self.grid = (h // patch, w // patch)
        self.embed_dim: int | None = manifest["model"].get("embed_dim")
        self._checked = False

    @property
    def backend_name(self) -> str:
        """Which engine runs the model, e.g. "onnxruntime-cpu" or "tensorrt"."""
        return self.backend.name

    @property
    def image_size(self) -> tuple[int, int]:
        """Model input size (H, W)."""
        return self.spec.image_size

    @property
    def takes_uint8(self) -> bool:
        """Whether the backend normalises in its own graph and so takes resized uint8 (N, H, W, 3) frames."""
        return bool(getattr(self.backend, "takes_uint8", False))

    def prepare(
        self, frames: np.ndarray | Sequence[np.ndarray], resize_in_engine: bool = False
    ) -> np.ndarray:
        """Frames -> what the backend takes: the normalised (N, 3, H, W) tensor, or the resized uint8
        (N, H, W, 3) frames in the manifest's colour order when the backend folds the normalisation. With
        `resize_in_engine`, frames of one size that the engine resizes in its own graph (OpenVINO, see its
        `resizes`) come back as they are, uint8 BGR (N, H, W, 3). `run_tensor` takes any of these."""
        if not self.takes_uint8:
            return self.preprocess(frames)
        bgr = [to_bgr(np.asarray(f)) for f in as_frame_list(frames)]
        size = bgr[0].shape[:2]
        resizes = getattr(self.backend, "resizes", None) if resize_in_engine else None
        if resizes is not None and all(b.shape[:2] == size for b in bgr) and resizes(size):
            return bgr[0][None] if len(bgr) == 1 else np.stack(bgr)
        return np.stack([self.preprocess.resize(f) for f in bgr])

    def __call__(self, frames: np.ndarray | Sequence[np.ndarray]) -> Features:
        """uint8 BGR/gray/BGRA frame, list of frames or (N, H, W, 3) batch -> Features with N rows."""
        return self.run_tensor(self.prepare(frames, resize_in_engine=True))

    def run_tensor(self, x: np.ndarray) -> Features:
        """`prepare`'s output -> Features; loops over the artifact's batch size."""
        run = self.backend.run
        if self.takes_uint8 and x.dtype == np.uint8 and x.shape[1:3] != tuple(self.image_size):
            run = getattr(self.backend, "run_frames", run)  # frames at their own size: the engine resizes
        n = x.shape[0]
        cls_parts, patch_parts = [], []
        for start in range(0, n, self.max_batch):
            chunk = x[start : start + self.max_batch]
            real = chunk.shape[0]
            chunk = self._padded(chunk)
            try:
                cls, patches = run(chunk)
            except RuntimeInputError:
                raise
            except Exception as exc:  # an engine's own multi-line error; the model is the likely cause
                raise self._engine_error(chunk, exc) from exc
            cls_parts.append(np.asarray(cls[:real], np.float32))
            patch_parts.append(np.asarray(patches[:real], np.float32))
        out = Features(
            cls=cls_parts[0] if len(cls_parts) == 1 else np.concatenate(cls_parts),
            patches=patch_parts[0] if len(patch_parts) == 1 else np.concatenate(patch_parts),
        )
        if not self._checked:
            self._check_shapes(out, n)
        return out

    def _padded(self, chunk: np.ndarray) -> np.ndarray:
        """`chunk` filled up to a static batch with zero rows, contiguous, as the engine takes it."""
        if self.static_batch and chunk.shape[0] < self.static_batch:
            pad = np.zeros((self.static_batch - chunk.shape[0], *chunk.shape[1:]), chunk.dtype)
            chunk = np.concatenate([chunk, pad])
        return np.ascontiguousarray(chunk)

    def _engine_error(self, chunk: np.ndarray, exc: Exception) -> RuntimeInputError:
        """One line for an engine's own (often multi-line) error on `chunk`."""
        lines = [t.strip() for t in str(exc).splitlines() if t.strip()]
        first = next((t for t in lines if not t.startswith("Exception from")), type(exc).__name__)[:200]
        return RuntimeInputError(
            f"{self.artifact_dir}: {self.backend_name} failed on a {chunk.dtype} input of shape "
            f"{tuple(chunk.shape)} (does the manifest match the model?): {first}"
        )

    def _features(self, cls: np.ndarray, patches: np.ndarray, n: int) -> Features:
        out = Features(np.asarray(cls[:n], np.float32), np.asarray(patches[:n], np.float32))
        if not self._checked:
            self._check_shapes(out, n)
        return out

    def pipeline(self) -> EncoderPipeline | None:
        """Several inferences in flight at once, where the engine offers it (OpenVINO's throughput mode, two
        ONNX Runtime CPU sessions), for sources whose frames need not wait for each other; else None."""
        make = getattr(self.backend, "pipeline", None)
        if make is None:
            return None
        try:
            pipe = make()
        except Exception as exc:  # noqa: BLE001 - the one-request path still works
            log.info("%s: no throughput pipeline (%s); one inference at a time", self.backend_name, exc)
            return None
        return EncoderPipeline(self, pipe) if pipe is not None else None

    def _check_shapes(self, out: Features, n: int) -> None:
        d = out.cls.shape[-1] if out.cls.ndim == 2 else None
        expected_patches = (n, *self.grid, d)
        if d is None or out.cls.shape[0] != n or out.patches.shape != expected_patches:
            raise RuntimeInputError(
                f"{self.artifact_dir}: encoder returned cls {out.cls.shape}, patches {out.patches.shape}; "
                f"the manifest implies ({n}, D) and {(n, *self.grid, 'D')}"
            )
        if self.embed_dim is not None and d != self.embed_dim:
            raise RuntimeInputError(
                f"{self.artifact_dir}: encoder width {d} != model.embed_dim {self.embed_dim}"
            )
        self._checked = True

    def stream(self, source: Any, stride: int = 1, **kwargs: Any):
        """Features for every `stride`-th frame of a video file, image folder, camera index, RTSP/HTTP URL,
        GStreamer pipeline or iterable of frames (`color="rgb"` for RGB), decoded in a background thread;
        `mode`, `queue_size`, `read_timeout`, `reconnect`, `max_frames`, `duration`: see
        `edge_vsd.runtimes.stream.FeatureStream`."""
        from edge_vsd.runtimes.stream import FeatureStream

        return FeatureStream(self, source, stride=stride, **kwargs)

    def close(self) -> None:
        """Release the backend."""
        self.backend.close()

    def __enter__(self) -> Encoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = str(self.artifact_dir)
        return f"Encoder({where!r}, backend={self.backend_name!r}, image_size={self.image_size})"


class EncoderPipeline:
    """`depth` batches in flight: `submit` the next one (at most `depth` waiting), `result` returns the
    oldest as (Features, inference ms). Each batch must fit one engine call (`Encoder.max_batch`)."""

    def __init__(self, encoder: Encoder, pipe: Any) -> None:
        self.encoder, self.pipe, self.depth = encoder, pipe, int(pipe.depth)
        self._chunks: deque = deque()

    def submit(self, x: np.ndarray) -> None:
        if x.shape[0] > self.encoder.max_batch:
            raise ValueError(f"a batch of {x.shape[0]} exceeds the engine's {self.encoder.max_batch}")
        chunk = self.encoder._padded(x)
        try:
            self.pipe.submit(chunk)
        except Exception as exc:
            raise self.encoder._engine_error(chunk, exc) from exc
        self._chunks.append((x.shape[0], chunk))

    def result(self) -> tuple[Features, float]:
        n, chunk = self._chunks.popleft()
        try:
            cls, patches, ms = self.pipe.result()
        except Exception as exc:
            raise self.encoder._engine_error(chunk, exc) from exc
        return self.encoder._features(cls, patches, n), ms

    def close(self) -> None:
        """Wait for what is in flight (the engine keeps its throughput model or sessions for the next one)."""
        self._chunks.clear()
        self.pipe.close()

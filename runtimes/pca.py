"""PCA visualisation of patch features: first three components as RGB, upsampled, beside the frame."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
from edge_vsd.runtimes.errors import RuntimeInputError

MAX_FIT_ROWS = 50_000


class PatchPCA:
    """Three principal components of patch tokens, with colour ranges fixed at fit time so a video's colours
    stay stable from frame to frame."""

    def fit(self, patches: np.ndarray, seed: int = 0) -> PatchPCA:
        """Fit on (..., D) patch tokens (e.g. (N, h, w, D))."""
        x = np.asarray(patches, np.float64).reshape(-1, patches.shape[-1])
        if len(x) > MAX_FIT_ROWS:
            x = x[np.random.default_rng(seed).choice(len(x), MAX_FIT_ROWS, replace=False)]
        self.mean = x.mean(axis=0)
        _, _, vt = np.linalg.svd(x - self.mean, full_matrices=False)
        comps = np.zeros((3, x.shape[1]))
        comps[: min(3, len(vt))] = vt[:3]
        # SVD signs are arbitrary: fix them so the same features always get the same colours
        signs = np.sign(comps[np.arange(3), np.abs(comps).argmax(axis=1)])
        self.components = comps * np.where(signs == 0, 1, signs)[:, None]
        proj = (x - self.mean) @ self.components.T
        self.low, self.high = np.percentile(proj, 1, axis=0), np.percentile(proj, 99, axis=0)
        return self

    def colors(self, patches: np.ndarray) -> np.ndarray:
        """(h, w, D) tokens of one frame -> (h, w, 3) uint8 BGR image (component 1 = red)."""
        proj = (np.asarray(patches, np.float64) - self.mean) @ self.components.T
        rgb = np.clip((proj - self.low) / np.maximum(self.high - self.low, 1e-12), 0, 1)
        return np.ascontiguousarray((rgb[..., ::-1] * 255).round().astype(np.uint8))


def side_by_side(frame: np.ndarray, patches: np.ndarray, pca: PatchPCA, height: int = 360) -> np.ndarray:
    """The BGR frame scaled to `height` rows with its PCA map, upsampled to the same size, on the right."""
    if frame.ndim == 2:
        frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    elif frame.shape[2] == 4:
        frame = cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    h, w = frame.shape[:2]
    size = (max(1, round(w * height / h)), height)
    view = cv2.resize(frame, size, interpolation=cv2.INTER_AREA if h > height else cv2.INTER_LINEAR)
    pca_map = cv2.resize(pca.colors(patches), size, interpolation=cv2.INTER_NEAREST)
    return np.hstack([view, pca_map])


def save_png(
    path: str | Path, frames: list[np.ndarray], patches: list[np.ndarray], height: int = 240
) -> Path:
    """PNG of a few frames, one row each: frame | PCA of its patch features (PCA fitted on these frames)."""
    path = Path(path)
    if not frames:
        raise RuntimeInputError(f"{path}: no frames to draw")
    pca = PatchPCA().fit(np.stack(patches))
    rows = [side_by_side(f, p, pca, height) for f, p in zip(frames, patches, strict=True)]
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows]
    ok, buf = cv2.imencode(".png", np.vstack(rows))
    if not ok:
        raise RuntimeInputError(f"{path}: OpenCV could not encode the PNG")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")  # created with the umask's permissions, renamed when complete
    tmp.write_bytes(buf.tobytes())
    os.replace(tmp, path)
    return path


class EvenSample:
    """Keeps about `k` items spread evenly over a stream of unknown length, in bounded memory."""

    def __init__(self, k: int) -> None:
        self.k, self.step, self.seen = max(1, k), 1, 0
        self.items: list[tuple[int, object]] = []

    def add(self, item: object) -> None:
        if self.seen % self.step == 0:
            self.items.append((self.seen, item))
            if len(self.items) > 2 * self.k:
                self.step *= 2
                self.items = [(n, it) for n, it in self.items if n % self.step == 0]
        self.seen += 1

    def result(self) -> list:
        if len(self.items) <= self.k:
            return [it for _, it in self.items]
        picks = np.linspace(0, len(self.items) - 1, self.k).round().astype(int)
        return [self.items[i][1] for i in picks]


class PCAVideoWriter:
    """MP4 (mp4v) of frame | PCA map. The PCA is fitted on the first `fit_frames` frames, which are buffered
    until then; the file is written under a temporary name and renamed by `close()`."""

    def __init__(self, path: str | Path, fps: float, height: int = 360, fit_frames: int = 16) -> None:
        self.path = Path(path)
        self.fps, self.height, self.fit_frames = float(fps), height, fit_frames
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix or '.mp4'}")
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._writer: cv2.VideoWriter | None = None
        self._pca: PatchPCA | None = None
        self.frames_written = 0

    def add(self, frame: np.ndarray, patches: np.ndarray) -> None:
        """Queue or write one frame with its (h, w, D) patch features."""
        if self._pca is None:
            self._pending.append((frame, patches))
            if len(self._pending) >= self.fit_frames:
                self._flush()
            return
        self._write(side_by_side(frame, patches, self._pca, self.height))

    def _flush(self) -> None:
        if not self._pending:
            return
        self._pca = PatchPCA().fit(np.stack([p for _, p in self._pending]))
        pending, self._pending = self._pending, []
        for frame, patches in pending:
            self._write(side_by_side(frame, patches, self._pca, self.height))

    def _write(self, image: np.ndarray) -> None:
        if self._writer is None:
            h, w = image.shape[:2]
            self._size = (w, h)
            self._writer = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter.fourcc(*"mp4v"), self.fps, (w, h))
            if not self._writer.isOpened():
                raise RuntimeInputError(f"{self.path}: OpenCV cannot write an MP4 video here")
        if (image.shape[1], image.shape[0]) != self._size:  # sources can change resolution mid-stream
            image = cv2.resize(image, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(image)
        self.frames_written += 1

    def close(self) -> Path | None:
        """Finish the file and move it into place; None when no frame was added."""
        self._flush()
        if self._writer is None:
            return None
        self._writer.release()
        self._writer = None
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Drop the partial file."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        self._tmp.unlink(missing_ok=True)

"""Frames -> the encoder's input tensor with numpy and OpenCV only, exactly as the manifest says.

Same steps as the training-side reference (`edge_vsd.data.preprocess`): whole uint8 BGR frame resized to
the model size with OpenCV (no resize when it already has that size) -> RGB -> * scale -> (x - mean) / std
-> NCHW.
Grayscale (H, W) / (H, W, 1) and BGRA (H, W, 4) frames are converted to BGR first; uint16 frames to uint8.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from edge_vsd.runtimes.errors import RuntimeInputError
from edge_vsd.runtimes.manifest import InputSpec

_INTERPOLATION = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR}
_TO_BGR = {1: cv2.COLOR_GRAY2BGR, 4: cv2.COLOR_BGRA2BGR}


def to_bgr(frame: np.ndarray) -> np.ndarray:
    """One uint8 or uint16 frame (H, W), (H, W, 1), (H, W, 3) BGR or (H, W, 4) BGRA -> (H, W, 3) uint8 BGR.
    16-bit frames (depth/thermal cameras, 16-bit PNGs) are scaled to 8 bits: value / 257, rounded."""
    if frame.dtype == np.uint16:
        frame = ((frame.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if frame.dtype != np.uint8:
        raise RuntimeInputError(f"frames must be uint8 or uint16 (as OpenCV decodes them), got {frame.dtype}")
    if frame.ndim == 2:
        frame = frame[..., None]
    if frame.ndim != 3 or frame.shape[2] not in (1, 3, 4) or frame.shape[0] == 0 or frame.shape[1] == 0:
        raise RuntimeInputError(
            f"a frame must be (H, W), (H, W, 3) BGR or (H, W, 4) BGRA, got shape {frame.shape}"
        )
    if frame.shape[2] == 3:
        return frame
    return cv2.cvtColor(np.ascontiguousarray(frame), _TO_BGR[frame.shape[2]])


def as_frame_list(frames: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
    """Split input into single frames: one frame, a list of frames, an (N, H, W, C) or an (N, H, W) batch."""
    if isinstance(frames, np.ndarray):
        if frames.ndim == 2 or (frames.ndim == 3 and frames.shape[2] in (1, 3, 4)):
            return [frames]
        if frames.ndim == 3 and frames.shape[2] == 2:  # two channels, not 2-pixel-wide gray frames
            raise RuntimeInputError(
                f"a frame must be (H, W), (H, W, 3) BGR or (H, W, 4) BGRA, "
                f"got shape {frames.shape} (2 channels)"
            )
        if frames.ndim in (3, 4):
            if len(frames) == 0:
                raise RuntimeInputError(f"no frames given (an array of shape {frames.shape})")
            return list(frames)
        raise RuntimeInputError(f"cannot read frames from an array of shape {frames.shape}")
    if isinstance(frames, (list, tuple)):
        out = [np.asarray(f) for f in frames]
        if not out:
            raise RuntimeInputError("no frames given")
        return out
    raise RuntimeInputError(f"frames must be a numpy array or a list of arrays, got {type(frames).__name__}")


class Preprocessor:
    """Callable frames -> (N, 3, H, W) tensor for one artifact's `InputSpec`."""

    def __init__(self, spec: InputSpec) -> None:
        self.spec = spec
        self.image_size = spec.image_size
        self._interp = _INTERPOLATION[spec.interpolation]
        self._dtype = np.dtype(spec.dtype)
        # Normalisation of a uint8 value is one lookup per channel: computed in float64, rounded once.
        values = np.arange(256, dtype=np.float64) * spec.scale
        mean, std = np.asarray(spec.mean), np.asarray(spec.std)
        self._lut = ((values[None, :] - mean[:, None]) / std[:, None]).astype(np.float32)

    def resize(self, frame: np.ndarray) -> np.ndarray:
        """One frame of any supported kind -> (H, W, 3) uint8 in the manifest's colour order at model size."""
        bgr = to_bgr(np.asarray(frame))
        h, w = self.image_size
        if bgr.shape[:2] != (h, w):
            bgr = cv2.resize(bgr, (w, h), interpolation=self._interp)
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) if self.spec.color == "RGB" else bgr

    def normalize(self, resized: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 at model size -> normalised (N, 3, H, W) in the input dtype."""
        out = np.empty((resized.shape[0], 3, *resized.shape[1:3]), np.float32)
        for c in range(3):
            np.take(self._lut[c], resized[..., c], out=out[:, c])
        return out if self._dtype == np.float32 else out.astype(self._dtype)

    def __call__(self, frames: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """Any accepted frames -> normalised NCHW tensor."""
        return self.normalize(np.stack([self.resize(f) for f in as_frame_list(frames)]))

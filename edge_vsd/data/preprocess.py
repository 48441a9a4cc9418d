"""Evaluation preprocessing, the reference that exported artifacts must reproduce exactly.

BGR uint8 frame -> whole frame resized to the model size ("stretch", OpenCV INTER_AREA) -> RGB -> [0, 1]
-> (x - mean) / std -> NCHW float32. `edge_vsd.runtimes` re-implements this without torch.
"""

from __future__ import annotations

import cv2
import numpy as np

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
RESIZE = "stretch"
INTERPOLATION = "area"


def resize_rgb(frame_bgr: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """Resize the whole BGR frame to (H, W) and return it as RGB uint8."""
    h, w = image_size
    if frame_bgr.shape[:2] != (h, w):
        frame_bgr = cv2.resize(frame_bgr, (w, h), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)


def preprocess(frames_bgr, image_size: tuple[int, int]):
    """uint8 BGR frames (H, W, 3) or (N, H, W, 3) -> normalised NCHW float32 torch tensor."""
    import torch

    frames = np.asarray(frames_bgr)
    if frames.ndim == 3:
        frames = frames[None]
    rgb = np.stack([resize_rgb(f, image_size) for f in frames])
    x = torch.from_numpy(rgb).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous()

"""The floors a quality table is read against: raw-pixel patches, the same architecture at random init
(several seeds), copy-the-first-mask (DAVIS) and the majority class (probes). A trained encoder that does
not clear them has shown no learning. Beside them, the truth's outlines seen patch by patch: what a perfect
local edge detector gives the probes."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np

MEAN = np.array([0.485, 0.456, 0.406], np.float32)  # ImageNet's, as every encoder here normalises
STD = np.array([0.229, 0.224, 0.225], np.float32)
FLOOR_SEEDS = 3  # random inits, so a table shows their spread


class RawPixels:
    """Callable like a runtimes encoder: each patch's standardised RGB pixels are its feature (p*p*3 values),
    the CLS is their mean. What any encoder must beat to have learned more than colour."""

    backend_name = "pixels"

    def __init__(self, patch_size: int, image_size: tuple[int, int]) -> None:
        self.patch = patch_size
        self.image_size: tuple[int, int] = (int(image_size[0]), int(image_size[1]))
        self.manifest: dict[str, Any] = {"precision": "-", "model": {"patch_size": patch_size}}

    def __call__(self, frames: np.ndarray) -> SimpleNamespace:
        frames = frames[None] if frames.ndim == 3 else frames
        h, w = self.image_size
        rgb = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA)[..., ::-1] for f in frames])
        x = (rgb.astype(np.float32) / 255 - MEAN) / STD  # (B, H, W, 3), as the encoders see their input
        b = len(x)
        p = self.patch
        patches = x.reshape(b, h // p, p, w // p, p, 3).transpose(0, 1, 3, 2, 4, 5)
        patches = patches.reshape(b, h // p, w // p, -1)
        return SimpleNamespace(cls=patches.mean((1, 2)), patches=np.ascontiguousarray(patches, np.float32))


def random_init(cfg: Any, seed: int) -> Any:
    """The ViT of `cfg` (a ViTConfig) with the weights `edge-vsd train --seed SEED` starts from."""
    import torch

    from edge_vsd.model import VisionTransformer

    torch.manual_seed(seed)  # what `train` draws first after seeding: the same random weights
    return VisionTransformer(cfg).eval()


def mean_std(values: list[float | None]) -> dict[str, Any]:
    """{"mean", "std" (sample, ddof 1), "n", "values"} of the values that are not None."""
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return {"mean": None, "std": None, "n": 0, "values": []}
    std = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
    return {"mean": float(np.mean(vals)), "std": std, "n": len(vals), "values": vals}


def outline_patches(labels: np.ndarray, patch: int) -> np.ndarray:
    """(N, h, w, patch * patch): each patch's pixels marked 1 where the class changes to the right or below,
    0 elsewhere; the objects' outlines found perfectly, but each patch sees only its own piece of them."""
    n, h, w = labels.shape
    gh, gw = h // patch, w // patch
    lab = labels[:, : gh * patch, : gw * patch]
    edge = np.zeros(lab.shape, bool)
    edge[:, :, :-1] |= lab[:, :, 1:] != lab[:, :, :-1]
    edge[:, :-1, :] |= lab[:, 1:, :] != lab[:, :-1, :]
    cells = edge.reshape(n, gh, patch, gw, patch).transpose(0, 1, 3, 2, 4)
    return np.ascontiguousarray(cells.reshape(n, gh, gw, patch * patch), np.float32)

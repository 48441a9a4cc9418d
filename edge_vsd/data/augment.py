"""Pair augmentation in torch: one geometric crop/flip for both frames, photometric draws per frame.

Every draw comes from an explicit `torch.Generator`, so a sample is a pure function of its seed
(what makes resumed training bit-exact and worker count irrelevant)."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from edge_vsd.data.preprocess import MEAN, STD

_MEAN = torch.tensor(MEAN).view(3, 1, 1)
_STD = torch.tensor(STD).view(3, 1, 1)


def _u(g: torch.Generator, lo: float = 0.0, hi: float = 1.0) -> float:
    return lo + (hi - lo) * torch.rand((), generator=g).item()


def crop_box(g: torch.Generator, h: int, w: int, scale: tuple[float, float]) -> tuple[int, int, int, int]:
    """Random-resized-crop box (top, left, height, width): area share in `scale`, aspect in [3/4, 4/3]."""
    for _ in range(10):
        area = h * w * _u(g, *scale)
        ratio = math.exp(_u(g, math.log(3 / 4), math.log(4 / 3)))
        cw, ch = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
        if 0 < cw <= w and 0 < ch <= h:
            return int(_u(g) * (h - ch + 1)), int(_u(g) * (w - cw + 1)), ch, cw
    side = min(h, w)
    return (h - side) // 2, (w - side) // 2, side, side


def to_float(frames: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 RGB -> (N, 3, H, W) float in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(255.0)


def crop_resize(x: torch.Tensor, box: tuple[int, int, int, int], size: int, flip: bool) -> torch.Tensor:
    top, left, ch, cw = box
    x = x[..., top : top + ch, left : left + cw]
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x.flip(-1) if flip else x


def photometric(x: torch.Tensor, g: torch.Generator, blur_p: float) -> torch.Tensor:
    """Colour jitter (p 0.8), grayscale (p 0.2), Gaussian blur (p blur_p) on one (3, H, W) image."""
    if _u(g) < 0.8:
        x = x * _u(g, 0.6, 1.4)  # brightness
        m = x.mean()
        x = (x - m) * _u(g, 0.6, 1.4) + m  # contrast
        gray = (0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]).unsqueeze(0)
        x = (x - gray) * _u(g, 0.8, 1.2) + gray  # saturation
        x = x.clamp(0, 1)
    if _u(g) < 0.2:
        x = (0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]).expand(3, -1, -1)
    if _u(g) < blur_p:
        sigma = _u(g, 0.1, 2.0)
        r = max(1, int(2 * sigma))
        k = torch.exp(-(torch.arange(-r, r + 1, dtype=torch.float32) ** 2) / (2 * sigma**2))
        k = (k / k.sum()).view(1, 1, -1)
        x = x.unsqueeze(1)
        x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k.unsqueeze(2))
        x = F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), k.unsqueeze(3)).squeeze(1)
    return x


def normalize(x: torch.Tensor) -> torch.Tensor:
    return (x - _MEAN) / _STD


def augment_pair(
    frames: np.ndarray, g: torch.Generator, img_size: int, n_local: int = 0, local_size: int = 48
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Two uint8 RGB frames (2, H, W, 3) -> global views (2, 3, S, S) and local crops (2*n_local, 3, s, s)."""
    x = to_float(frames)
    h, w = x.shape[-2:]
    box, flip = crop_box(g, h, w, (0.35, 1.0)), _u(g) < 0.5
    views = crop_resize(x, box, img_size, flip)
    globals_ = torch.stack([normalize(photometric(v, g, blur_p)) for v, blur_p in zip(views, (0.5, 0.1))])
    if n_local == 0:
        return globals_, None
    locals_ = []
    for frame in x:
        for _ in range(n_local):
            crop = crop_resize(frame[None], crop_box(g, h, w, (0.05, 0.35)), local_size, _u(g) < 0.5)[0]
            locals_.append(normalize(photometric(crop, g, 0.5)))
    return globals_, torch.stack(locals_)

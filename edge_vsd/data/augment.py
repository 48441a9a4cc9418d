"""View augmentation in torch, after DINO's recipe: crop/flip, colour jitter, grayscale, blur, solarisation.

For VSD both frames of a pair share one geometric crop/flip (patch i of both covers the same region), and
photometric draws are per frame. With `independent_crops` each view gets its own crop, as DINO's two global
views do. Every draw comes from an explicit `torch.Generator`, so a sample is a pure function of its seed
(what makes resumed training bit-exact and worker count irrelevant)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from edge_vsd.data.preprocess import MEAN, STD

_MEAN = torch.tensor(MEAN).view(3, 1, 1)
_STD = torch.tensor(STD).view(3, 1, 1)
_LUMA = (0.299, 0.587, 0.114)
# RGB <-> YIQ: a hue shift is a rotation of the (I, Q) chroma plane
_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_INV = torch.linalg.inv(_YIQ)
DINO_SIGMA_AT = 224  # DINO draws blur sigma in [0.1, 2.0] pixels for 224-pixel crops


@dataclass(frozen=True)
class AugmentConfig:
    """The view recipe; the defaults are DINO's (`main_dino.py` DataAugmentationDINO)."""

    crop_scale: tuple[float, float] = (0.4, 1.0)  # global crops: share of the frame's area
    local_scale: tuple[float, float] = (0.05, 0.4)
    independent_crops: bool = False  # DINO: True; VSD needs shared geometry for its dense term
    blur_prob: tuple[float, float] = (1.0, 0.1)  # first and second global view; local crops 0.5
    solarize_prob: float = 0.2  # second global view only
    hue: float = 0.1  # colour jitter (0.4, 0.4, 0.2, hue) with p 0.8
    blur_sigma: str = "relative"  # "relative": sigma scaled from 224 px to the crop size; "pixels": as drawn


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


def _gray(x: torch.Tensor) -> torch.Tensor:
    return (_LUMA[0] * x[0] + _LUMA[1] * x[1] + _LUMA[2] * x[2]).unsqueeze(0)


def shift_hue(x: torch.Tensor, turns: float) -> torch.Tensor:
    """Rotate hue by `turns` of a full circle (YIQ chroma rotation, close to torchvision's HSV shift)."""
    c, s = math.cos(2 * math.pi * turns), math.sin(2 * math.pi * turns)
    rot = torch.tensor([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])
    m = _YIQ_INV @ rot @ _YIQ
    return torch.einsum("ij,jhw->ihw", m, x).clamp(0, 1)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of a (3, H, W) image, reflect padding."""
    r = max(1, int(2 * sigma))
    k = torch.exp(-(torch.arange(-r, r + 1, dtype=torch.float32) ** 2) / (2 * sigma**2))
    k = (k / k.sum()).view(1, 1, -1)
    x = x.unsqueeze(1)
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k.unsqueeze(2))
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), k.unsqueeze(3)).squeeze(1)


def photometric(
    x: torch.Tensor, g: torch.Generator, blur_p: float, cfg: AugmentConfig, solarize_p: float = 0.0
) -> torch.Tensor:
    """Colour jitter (p 0.8), grayscale (p 0.2), Gaussian blur (p blur_p), solarisation on one (3, H, W)."""
    if _u(g) < 0.8:
        x = (x * _u(g, 0.6, 1.4)).clamp(0, 1)  # brightness 0.4
        m = _gray(x).mean()
        x = ((x - m) * _u(g, 0.6, 1.4) + m).clamp(0, 1)  # contrast 0.4, around the mean gray level
        gray = _gray(x)
        x = ((x - gray) * _u(g, 0.8, 1.2) + gray).clamp(0, 1)  # saturation 0.2
        if cfg.hue > 0:
            x = shift_hue(x, _u(g, -cfg.hue, cfg.hue))
    if _u(g) < 0.2:
        x = _gray(x).expand(3, -1, -1)
    if _u(g) < blur_p:
        sigma = _u(g, 0.1, 2.0)
        if cfg.blur_sigma == "relative":
            sigma *= x.shape[-1] / DINO_SIGMA_AT
        x = gaussian_blur(x, sigma)
    if solarize_p and _u(g) < solarize_p:
        x = torch.where(x >= 0.5, 1.0 - x, x)
    return x


def normalize(x: torch.Tensor) -> torch.Tensor:
    return (x - _MEAN) / _STD


def augment_pair(
    frames: np.ndarray,
    g: torch.Generator,
    img_size: int,
    n_local: int = 0,
    local_size: int = 48,
    cfg: AugmentConfig | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Two uint8 RGB frames (2, H, W, 3) -> global views (2, 3, S, S) and local crops (2*n_local, 3, s, s)."""
    cfg = cfg or AugmentConfig()
    x = to_float(frames)
    h, w = x.shape[-2:]
    if cfg.independent_crops:
        views = torch.cat(
            [crop_resize(f[None], crop_box(g, h, w, cfg.crop_scale), img_size, _u(g) < 0.5) for f in x]
        )
    else:
        views = crop_resize(x, crop_box(g, h, w, cfg.crop_scale), img_size, _u(g) < 0.5)
    solarize = (0.0, cfg.solarize_prob)
    globals_ = torch.stack(
        [
            normalize(photometric(v, g, blur_p, cfg, sol))
            for v, blur_p, sol in zip(views, cfg.blur_prob, solarize)
        ]
    )
    if n_local == 0:
        return globals_, None
    locals_ = []
    for frame in x:
        for _ in range(n_local):
            box = crop_box(g, h, w, cfg.local_scale)
            crop = crop_resize(frame[None], box, local_size, _u(g) < 0.5)[0]
            locals_.append(normalize(photometric(crop, g, 0.5, cfg)))
    return globals_, torch.stack(locals_)

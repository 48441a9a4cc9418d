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
_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_INV = np.linalg.inv(_YIQ)
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


# one row per view: what `draw_photometric` drew (off steps hold identity values)
PHOTO_FIELDS = ("jitter", "brightness", "contrast", "saturation", "hue", "gray", "blur", "sigma", "solarize")
_F = {k: i for i, k in enumerate(PHOTO_FIELDS)}


def draw_photometric(
    g: torch.Generator, blur_p: float, cfg: AugmentConfig, size: int, solarize_p: float = 0.0
) -> torch.Tensor:
    """Draw one view's colour jitter (p 0.8), grayscale (p 0.2), blur (p blur_p) and solarisation, in that
    order, as a row of PHOTO_FIELDS. Applying it is separate, so it can run later on a batch and a GPU."""
    p: dict[str, float]
    p = dict(jitter=0, brightness=1, contrast=1, saturation=1, hue=0, gray=0, blur=0, sigma=1, solarize=0)
    if _u(g) < 0.8:
        p.update(jitter=1, brightness=_u(g, 0.6, 1.4), contrast=_u(g, 0.6, 1.4), saturation=_u(g, 0.8, 1.2))
        if cfg.hue > 0:
            p["hue"] = _u(g, -cfg.hue, cfg.hue)
    if _u(g) < 0.2:
        p["gray"] = 1
    if _u(g) < blur_p:
        sigma = _u(g, 0.1, 2.0)
        p.update(blur=1, sigma=sigma * size / DINO_SIGMA_AT if cfg.blur_sigma == "relative" else sigma)
    if solarize_p and _u(g) < solarize_p:
        p["solarize"] = 1
    return torch.tensor([float(p[k]) for k in PHOTO_FIELDS])


def _gray_batch(x: torch.Tensor) -> torch.Tensor:
    return (_LUMA[0] * x[:, 0] + _LUMA[1] * x[:, 1] + _LUMA[2] * x[:, 2]).unsqueeze(1)


def _hue_matrices(turns: np.ndarray) -> torch.Tensor:
    """(B,) turns of the colour circle -> (B, 3, 3) float32 RGB matrices rotating the YIQ chroma plane.
    Computed in numpy: a tiny torch CPU op in the training process took 2-8 ms beside busy loader workers."""
    c, s = np.cos(2 * math.pi * turns), np.sin(2 * math.pi * turns)
    rot = np.zeros((len(turns), 3, 3))
    rot[:, 0, 0], rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = 1, c, -s, s, c
    return torch.from_numpy((_YIQ_INV @ rot @ _YIQ).astype(np.float32))


def _blur_batch(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur with a sigma per image (`sigma` on the CPU), reflect padding; kernels
    zero-padded to the widest."""
    sigma = sigma.double().numpy()
    radius = np.maximum(1, (2 * sigma).astype(int))
    r = int(radius.max())
    taps = np.arange(-r, r + 1)
    k = np.exp(-(taps**2) / (2 * sigma[:, None] ** 2)) * (np.abs(taps) <= radius[:, None])  # own support
    k = torch.from_numpy((k / k.sum(1, keepdims=True)).astype(np.float32))
    k = k.to(x.device, x.dtype, non_blocking=True)
    b, c, h, w = x.shape
    if b == 1:  # one kernel for all channels: a plain single-channel convolution is faster on CPU
        y, k, groups = x.reshape(c, 1, h, w), k, 1
    else:
        y, k, groups = x.reshape(1, b * c, h, w), k.repeat_interleave(c, 0), b * c  # (B*C, taps)
    y = F.conv2d(F.pad(y, (r, r, 0, 0), mode="reflect"), k[:, None, None, :], groups=groups)
    y = F.conv2d(F.pad(y, (0, 0, r, r), mode="reflect"), k[:, None, :, None], groups=groups)
    return y.reshape(b, c, h, w)


def apply_photometric(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Apply drawn rows `p` (B, len(PHOTO_FIELDS)) to images x (B, 3, H, W) in [0, 1], on x's device. Each
    step runs only when some image drew it, and leaves the others exactly as they were. Pass `p` on the CPU:
    the decisions read it there, so a GPU batch needs no device-to-host sync."""
    flags = p.cpu()
    on = {k: flags[:, _F[k]] > 0 for k in ("jitter", "gray", "blur", "solarize")}
    col = p.to(x.device, x.dtype, non_blocking=True)[:, :, None, None, None].unbind(1)  # masks come from it

    def where(field: str, y: torch.Tensor) -> torch.Tensor:
        if bool(on[field].all()):
            return y
        return torch.where(col[_F[field]] > 0, y, x)

    if on["jitter"].any():
        y = (x * col[_F["brightness"]]).clamp(0, 1)  # brightness 0.4
        m = _gray_batch(y).mean((1, 2, 3), keepdim=True)
        y = ((y - m) * col[_F["contrast"]] + m).clamp(0, 1)  # contrast 0.4, around the mean gray level
        gray = _gray_batch(y)
        y = ((y - gray) * col[_F["saturation"]] + gray).clamp(0, 1)  # saturation 0.2
        hue = flags[:, _F["hue"]]
        if hue.any():
            rot = _hue_matrices(hue.double().numpy()).to(x.device, x.dtype, non_blocking=True)
            y = torch.einsum("bij,bjhw->bihw", rot, y).clamp(0, 1)
        x = where("jitter", y)
    if on["gray"].any():
        x = where("gray", _gray_batch(x).expand(-1, 3, -1, -1))
    if on["blur"].any():
        # blur the whole batch and keep it where drawn: a subset would give the GPU convolution a new group
        # count every batch, and a new kernel plan costs ~40 ms each time
        x = where("blur", _blur_batch(x, flags[:, _F["sigma"]]))
    if on["solarize"].any():
        x = where("solarize", torch.where(x >= 0.5, 1.0 - x, x))
    return x


def normalize(x: torch.Tensor) -> torch.Tensor:
    return (x - _MEAN.to(x.device)) / _STD.to(x.device)


def augment_pair(
    frames: np.ndarray,
    g: torch.Generator,
    img_size: int,
    n_local: int = 0,
    local_size: int = 48,
    cfg: AugmentConfig | None = None,
    defer_photometric: bool = False,
) -> dict[str, torch.Tensor]:
    """Two uint8 RGB frames (2, H, W, 3) -> {"globals": (2, 3, S, S), "locals": (2*n_local, 3, s, s) if any},
    normalised. With `defer_photometric` the views stay uint8 crops and "globals_photo"/"locals_photo" hold
    the drawn photometric rows, for `finish_views` to apply on the training device (same draws and order)."""
    cfg = cfg or AugmentConfig()
    # deferred: crop and resize the uint8 frames themselves (torch's uint8 antialiased path, ~8x faster)
    x = (
        torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)
        if defer_photometric
        else to_float(frames)
    )
    h, w = x.shape[-2:]
    if cfg.independent_crops:
        views = torch.cat(
            [crop_resize(f[None], crop_box(g, h, w, cfg.crop_scale), img_size, _u(g) < 0.5) for f in x]
        )
    else:
        views = crop_resize(x, crop_box(g, h, w, cfg.crop_scale), img_size, _u(g) < 0.5)
    solarize = (0.0, cfg.solarize_prob)
    out = {"globals": views}
    out["globals_photo"] = torch.stack(
        [draw_photometric(g, blur_p, cfg, img_size, sol) for blur_p, sol in zip(cfg.blur_prob, solarize)]
    )
    if n_local:
        crops, rows = [], []
        for frame in x:
            for _ in range(n_local):
                box = crop_box(g, h, w, cfg.local_scale)
                crops.append(crop_resize(frame[None], box, local_size, _u(g) < 0.5)[0])
                rows.append(draw_photometric(g, 0.5, cfg, local_size))
        out["locals"], out["locals_photo"] = torch.stack(crops), torch.stack(rows)
    if defer_photometric:  # uint8 crops, as DINO's PIL pipeline holds them: a quarter of the bytes to copy
        return {k: v.contiguous() for k, v in out.items()}
    # in the loader, one view at a time, so each step runs only on the views that drew it (a batch call would
    # blur both views whenever one drew blur)
    return {
        k: torch.stack(
            [normalize(apply_photometric(v[None], r[None])[0]) for v, r in zip(out[k], out[f"{k}_photo"])]
        )
        for k in ("globals", "locals")
        if k in out
    }


def finish_views(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Apply the photometric rows to the views and normalise: {"globals", "locals"?} float. Works on a
    sample or a batch (views (..., 3, S, S), rows (..., len(PHOTO_FIELDS))) on any device."""
    out: dict[str, torch.Tensor] = {}
    for name in ("globals", "locals"):
        if name not in batch:
            continue
        v, rows = batch[name], batch[f"{name}_photo"]
        if v.dtype == torch.uint8:
            v = v.float().div_(255.0)
        shape = v.shape
        flat = apply_photometric(v.reshape(-1, *shape[-3:]), rows.reshape(-1, rows.shape[-1]))
        out[name] = normalize(flat).reshape(shape)
    return out

"""The hard synthetic set (`make-data --hard`): scenes where colour alone cannot find the objects, so random
and raw-pixel features score low and a learned encoder has room to show.

- objects are filled with the background's kind of texture (coloured noise) at a finer grain, so they stand
  out in one frame by their grain and not their colour; their hue and size drift over time;
- the segmentation classes are shapes (disc, square, triangle): colour and texture are drawn anew for each
  instance, so only the outline tells the class; the textures are shape-free noise, so the labelled
  objects are the only discs, squares and triangles in a frame;
- a textured bar occludes, the camera pans with parallax (two background layers at two speeds);
- every frame has its own light (brightness, contrast, gamma, white balance, hue), sensor noise, blur and
  JPEG compression, drifting smoothly over time."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from edge_vsd.data.synthetic import _texture

HARD_CLASSES = {1: "background", 2: "disc", 3: "square", 4: "triangle"}
SHAPES = ("disc", "square", "triangle")
# Textures carry no drawn shapes: with them the background was full of discs and squares, so a single frame
# could not tell a labelled disc from the texture's and every encoder's shape probe sat at the majority class.
NO_SHAPES = 0
# Objects' grain (pixels) against the background's (4, 16, 64). With the background's own grain (version 2)
# one frame barely showed an object: a class-balanced linear probe found objects at IoU 0.09-0.15 for raw
# pixels, random init and a trained encoder alike (0.20-0.29 on version 3).
OBJECT_GRAIN = (2, 8)
# written into make-data's config.json; version 1's textures drew discs and squares, version 2's objects
# had the background's grain
HARD_VERSION = 3


def _shape_mask(
    shape: str, h: int, w: int, centre: tuple[float, float], r: float, angle: float
) -> np.ndarray:
    mask = np.zeros((h, w), np.uint8)
    cx, cy = centre
    if shape == "disc":
        cv2.circle(mask, (int(cx), int(cy)), max(1, int(r)), 1, -1)
        return mask
    n = 4 if shape == "square" else 3
    a = angle + np.arange(n) * 2 * np.pi / n
    pts = np.stack([cx + r * np.cos(a), cy + r * np.sin(a)], 1).round().astype(np.int32)
    cv2.fillPoly(mask, [pts], 1)
    return mask


def _hue_shift(img: np.ndarray, shift: float) -> np.ndarray:
    hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
    hsv[..., 0] = ((hsv[..., 0].astype(np.int32) + int(round(shift * 180))) % 180).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)


def _walk(rng: np.random.Generator, n: int, scale: float) -> np.ndarray:
    """A smooth random walk of `n` steps in about [-scale, scale] (low-pass filtered noise)."""
    steps = rng.normal(0, 1, n + 20)
    smooth = np.convolve(steps, np.ones(20) / 20, mode="valid")[:n]
    return scale * smooth / max(1e-6, np.abs(smooth).max())


def nuisance(frame: np.ndarray, rng: np.random.Generator, light: dict[str, float]) -> np.ndarray:
    """One frame's photometric drift, sensor noise, blur and JPEG round trip."""
    img = _hue_shift(frame, light["hue"])
    x = img.astype(np.float32) / 255 * np.float32(light["wb"])
    x = (x - 0.5) * light["contrast"] + 0.5 + light["brightness"]
    x = np.clip(x, 0, 1) ** light["gamma"] * 255
    x = x + rng.normal(0, light["noise"], x.shape)
    img = np.clip(x, 0, 255).astype(np.uint8)
    if light["blur"] > 0.3:
        img = cv2.GaussianBlur(img, (0, 0), light["blur"])
    ok, jpg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(light["jpeg"])])
    out = cv2.imdecode(jpg, cv2.IMREAD_COLOR)
    assert out is not None  # a JPEG it has just encoded
    return out


def render_hard(
    n_frames: int = 120, height: int = 144, width: int = 192, seed: int = 0, n_obj: int = 5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames (N, H, W, 3) uint8 BGR, object ids (N, H, W) (0 none, k the k-th object; later ones occlude
    earlier ones, the bar occludes all) and shape classes (N, H, W) (see HARD_CLASSES)."""
    rng = np.random.default_rng(seed)
    pad = 3
    bg = _texture(rng, height * pad, width * pad, NO_SHAPES)
    mid = _texture(rng, height * pad, width * pad, NO_SHAPES)
    mid_mask: np.ndarray = (rng.random((height * pad // 24, width * pad // 24)) > 0.55).astype(np.float32)
    mid_mask = cv2.resize(cv2.GaussianBlur(mid_mask, (3, 3), 0), (width * pad, height * pad))[..., None]
    pan = rng.uniform(-1, 1, 2)
    pan /= np.linalg.norm(pan) + 1e-6
    size = min(height, width)
    objs: list[dict[str, Any]] = []
    for _ in range(n_obj):
        objs.append(
            {
                "shape": SHAPES[int(rng.integers(len(SHAPES)))],
                "texture": _texture(rng, height, width, NO_SHAPES, OBJECT_GRAIN),
                "pos": rng.uniform([0.15 * width, 0.15 * height], [0.85 * width, 0.85 * height]),
                "vel": rng.uniform(-1.5, 1.5, 2),
                "r": rng.uniform(0.09, 0.16) * size,
                "angle": rng.uniform(0, np.pi),
                "spin": rng.uniform(-0.03, 0.03),
                "hue": rng.uniform(0, 1),
                "hue_drift": _walk(rng, n_frames, 0.08),
                "scale_drift": 1 + _walk(rng, n_frames, 0.2),
            }
        )
    bar_tex = _texture(rng, height, width, NO_SHAPES)
    bar_w, bar_speed = int(0.12 * width), rng.uniform(1.0, 2.0) * rng.choice([-1, 1])
    walks = {k: _walk(rng, n_frames, s) for k, s in (("brightness", 0.15), ("hue", 0.06), ("contrast", 0.3))}
    wb = 1 + np.stack([_walk(rng, n_frames, 0.15) for _ in range(3)], 1)
    gamma = np.exp(_walk(rng, n_frames, 0.3))
    frames = np.empty((n_frames, height, width, 3), np.uint8)
    ids = np.zeros((n_frames, height, width), np.uint8)
    classes = np.ones((n_frames, height, width), np.uint8)
    origin = np.array([width * (pad - 1) / 2, height * (pad - 1) / 2])
    span = np.array([width * (pad - 1), height * (pad - 1)])
    for t in range(n_frames):
        layers = []
        for speed, tex in ((0.5, bg), (1.5, mid)):
            x, y = (origin + pan * speed * t) % span
            layers.append(tex[int(y) : int(y) + height, int(x) : int(x) + width].astype(np.float32))
        x, y = (origin + pan * 1.5 * t) % span
        m = mid_mask[int(y) : int(y) + height, int(x) : int(x) + width]
        frame = (layers[0] * (1 - m) + layers[1] * m).astype(np.uint8)
        for k, o in enumerate(objs, 1):
            p = o["pos"] + o["vel"] * t
            box = np.array([width, height], np.float64)
            p = np.abs(np.mod(p, 2 * box) - box)  # bounce off the edges
            p = np.clip(p, 0.1 * box, 0.9 * box)
            mask = _shape_mask(
                o["shape"], height, width, tuple(p), o["r"] * o["scale_drift"][t], o["angle"] + o["spin"] * t
            ).astype(bool)
            fill = _hue_shift(o["texture"], o["hue"] + o["hue_drift"][t])
            frame[mask] = fill[mask]
            ids[t][mask] = k
            classes[t][mask] = 2 + SHAPES.index(o["shape"])
        bx = int((t * bar_speed) % (width + bar_w)) - bar_w
        lo, hi = max(0, bx), min(width, bx + bar_w)
        if hi > lo:
            frame[:, lo:hi] = bar_tex[:, lo:hi]
            ids[t][:, lo:hi] = 0
            classes[t][:, lo:hi] = 1
        light = {
            "brightness": walks["brightness"][t],
            "hue": walks["hue"][t],
            "contrast": 1 + walks["contrast"][t],
            "wb": wb[t],
            "gamma": gamma[t],
            "noise": rng.uniform(2, 8),
            "blur": rng.uniform(0, 1.2),
            "jpeg": rng.uniform(30, 90),
        }
        frames[t] = nuisance(frame, rng, light)
    return frames, ids, classes

"""Accuracy without labels: cosine vs a reference, patch correspondence under known homographies,
kNN agreement."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

Encode = Callable[[np.ndarray], Any]  # frames (N, H, W, 3) uint8 BGR -> object with .cls and .patches


def encode_all(enc: Encode, frames: np.ndarray, batch: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Run frames through an encoder in chunks; return (cls (N, D), patches (N, h, w, D)) as float32."""
    cls, patches = [], []
    for i in range(0, len(frames), max(1, batch)):
        out = enc(frames[i : i + batch])
        cls.append(np.asarray(out.cls, np.float32))
        patches.append(np.asarray(out.patches, np.float32))
    return np.concatenate(cls), np.concatenate(patches)


def _row_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    num = (a * b).sum(-1)
    den = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    return num / np.maximum(den, 1e-12)


def fidelity(
    cls: np.ndarray, patches: np.ndarray, ref_cls: np.ndarray, ref_patches: np.ndarray
) -> dict[str, Any]:
    """Cosine of CLS and of every patch token vs the reference (mean and worst), max abs error.
    Patch numbers are null when the two grids differ (e.g. a checkpoint run at another resolution)."""
    if cls.shape != ref_cls.shape:
        raise ValueError(f"CLS shapes differ: {cls.shape} vs reference {ref_cls.shape}")
    c = _row_cosine(cls, ref_cls)
    out: dict[str, Any] = {
        "cls_cosine": float(c.mean()),
        "cls_cosine_min": float(c.min()),
        "patch_cosine": None,
        "patch_cosine_min": None,
        "max_abs_error": float(np.abs(cls - ref_cls).max()),
    }
    if patches.shape == ref_patches.shape:
        d = patches.shape[-1]
        p = _row_cosine(patches.reshape(-1, d), ref_patches.reshape(-1, d))
        out.update(
            patch_cosine=float(p.mean()),
            patch_cosine_min=float(p.min()),
            max_abs_error=max(out["max_abs_error"], float(np.abs(patches - ref_patches).max())),
        )
    return out


def random_homography(rng: np.random.Generator, h: int, w: int, strength: float = 0.12) -> np.ndarray:
    """A homography that moves each image corner by up to `strength` of the image size."""
    src = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    dst = src + rng.uniform(-strength, strength, (4, 2)).astype(np.float32) * np.array([w, h], np.float32)
    return cv2.getPerspectiveTransform(src, dst.astype(np.float32))


def lighting_change(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The same scene under other light and another sensor: gain per channel (white balance), contrast,
    gamma, brightness, then Gaussian noise (sigma 4 grey levels). uint8 BGR in and out."""
    x = frame.astype(np.float32) / 255
    x = x * rng.uniform(0.8, 1.2, 3).astype(np.float32)  # white balance
    x = (x - 0.5) * rng.uniform(0.7, 1.3) + 0.5 + rng.uniform(-0.1, 0.1)  # contrast, brightness
    x = np.clip(x, 0, 1) ** rng.uniform(0.7, 1.4)  # gamma
    x = x * 255 + rng.normal(0, 4, x.shape)
    return np.clip(x, 0, 255).round().astype(np.uint8)


def homography_pairs(
    frames: np.ndarray,
    image_size: tuple[int, int],
    n: int,
    strength: float = 0.12,
    seed: int = 0,
    lighting: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sources, warped, homographies) at the model's input size, so the encoder does no further resize.
    `lighting`: the warped view also gets a `lighting_change`."""
    h, w = image_size
    rng = np.random.default_rng(seed)
    idx = np.linspace(0, len(frames) - 1, min(n, len(frames))).round().astype(int)
    src, warped, hs = [], [], []
    for i in idx:
        f = frames[i]
        if f.shape[:2] != (h, w):
            f = cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA)
        H = random_homography(rng, h, w, strength)
        src.append(f)
        view = cv2.warpPerspective(f, H, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        warped.append(lighting_change(view, rng) if lighting else view)
        hs.append(H)
    return np.stack(src), np.stack(warped), np.stack(hs)


def match_patches(
    src: np.ndarray, dst: np.ndarray, H: np.ndarray, image_size: tuple[int, int]
) -> dict[str, int | float]:
    """Match each source patch to its nearest warped patch (cosine) and count the ones that land within
    one patch (Chebyshev, in grid cells) of where H sends the patch centre. Returns counts and chance."""
    gh, gw, d = src.shape
    h, w = image_size
    ph, pw = h / gh, w / gw
    ii, jj = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
    centres = np.stack([(jj + 0.5) * pw, (ii + 0.5) * ph], -1).reshape(-1, 1, 2).astype(np.float64)
    proj = cv2.perspectiveTransform(centres, H.astype(np.float64)).reshape(-1, 2)
    inside = (proj[:, 0] >= 0) & (proj[:, 0] < w) & (proj[:, 1] >= 0) & (proj[:, 1] < h)
    if not inside.any():
        return {"correct": 0, "total": 0, "chance": 0.0}
    a = src.reshape(-1, d)[inside].astype(np.float64)
    b = dst.reshape(-1, d).astype(np.float64)
    a /= np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b /= np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    best = (a @ b.T).argmax(1)
    true_i = np.floor(proj[inside, 1] / ph).astype(int)
    true_j = np.floor(proj[inside, 0] / pw).astype(int)
    ok = (np.abs(best // gw - true_i) <= 1) & (np.abs(best % gw - true_j) <= 1)
    # Chance: share of the grid within one cell of the true cell (a random match's success rate).
    rows = np.minimum(true_i + 1, gh - 1) - np.maximum(true_i - 1, 0) + 1
    cols = np.minimum(true_j + 1, gw - 1) - np.maximum(true_j - 1, 0) + 1
    return {
        "correct": int(ok.sum()),
        "total": int(inside.sum()),
        "chance": float((rows * cols).sum() / (gh * gw)),
    }


def correspondence(
    enc: Encode,
    frames: np.ndarray,
    image_size: tuple[int, int],
    n: int = 16,
    strength: float = 0.12,
    seed: int = 0,
    batch: int = 8,
    lighting: bool = False,
) -> dict[str, Any]:
    """Share of patches matched within one patch of their true location under random homographies (and,
    with `lighting`, a change of light and sensor noise in the warped view)."""
    src, warped, hs = homography_pairs(frames, image_size, n, strength, seed, lighting)
    _, fs = encode_all(enc, src, batch)
    _, fw = encode_all(enc, warped, batch)
    correct: float = 0
    total: float = 0
    chance = 0.0
    for a, b, H in zip(fs, fw, hs, strict=True):
        m = match_patches(a, b, H, image_size)
        correct += m["correct"]
        total += m["total"]
        chance += m["chance"]
    return {
        "corr_acc": correct / total if total else None,
        "patches": total,
        "pairs": int(len(hs)),
        "chance": chance / total if total else None,
        "strength": strength,
        "seed": seed,
        "lighting": lighting,
    }


def knn_agreement(cls: np.ndarray, ref_cls: np.ndarray, k: int = 5) -> float | None:
    """Mean overlap of each frame's k nearest neighbours (cosine, itself excluded) with the reference's."""
    n = len(cls)
    if n < 3 or len(ref_cls) != n:
        return None
    k = min(k, n - 1)

    def neighbours(x: np.ndarray) -> np.ndarray:
        x = x.astype(np.float64)
        x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        sim = x @ x.T
        np.fill_diagonal(sim, -np.inf)
        return np.argsort(-sim, axis=1, kind="stable")[:, :k]

    a, b = neighbours(cls), neighbours(ref_cls)
    return float(np.mean([len(set(a[i]) & set(b[i])) / k for i in range(n)]))

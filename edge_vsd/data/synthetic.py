"""Deterministic synthetic videos: textured layers moving with parallax (numpy + OpenCV, no torch)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def _texture(
    rng: np.random.Generator, h: int, w: int, n_shapes: int, scales: tuple[int, ...] = (4, 16, 64)
) -> np.ndarray:
    """Multi-scale coloured noise (grain sizes `scales` in pixels) with random shapes on top."""
    img = np.zeros((h, w, 3), np.float32)
    for scale in scales:
        small = rng.random((max(2, h // scale), max(2, w // scale), 3), dtype=np.float32)
        img += cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC) / len(scales)
    img = np.clip(img * 255, 0, 255).astype(np.uint8)
    for _ in range(n_shapes):
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        cx, cy = int(rng.integers(0, w)), int(rng.integers(0, h))
        size = int(rng.integers(max(3, min(h, w) // 30), max(4, min(h, w) // 8)))
        if rng.random() < 0.5:
            cv2.circle(img, (cx, cy), size, color, -1, cv2.LINE_AA)
        else:
            cv2.rectangle(img, (cx, cy), (cx + size, cy + size * 2 // 3), color, -1, cv2.LINE_AA)
    return img


# class ids of the ground truth's per-pixel class maps (0 is ADE20K's "ignore")
CLASSES = {1: "far background", 2: "middle layer", 3: "object ring", 4: "object core"}


def _bounce(p: np.ndarray, size: np.ndarray) -> np.ndarray:
    """Positions moving in a box and reflecting off its walls (a triangle wave)."""
    p = np.mod(p, 2 * size)
    return np.where(p > size, 2 * size - p, p)


def render(
    n_frames: int = 120,
    height: int = 144,
    width: int = 192,
    seed: int = 0,
    motion: str = "wrap",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames (N, H, W, 3) uint8 BGR with their ground truth: object ids (N, H, W) uint8 (0 = none, k = the
    k-th moving object, later objects occlude earlier ones) and classes (N, H, W) uint8 (see CLASSES).
    Objects wrap around the frame edges (`motion="wrap"`) or bounce off them (`"bounce"`)."""
    rng = np.random.default_rng(seed)
    pad = 4
    bg = _texture(rng, height * pad, width * pad, 60)
    mid = _texture(rng, height * pad, width * pad, 40)
    mid_mask = cv2.GaussianBlur(
        (rng.random((height * pad // 16, width * pad // 16)) > 0.6).astype(np.float32), (3, 3), 0
    )
    mid_mask = cv2.resize(mid_mask, (width * pad, height * pad), interpolation=cv2.INTER_LINEAR)[..., None]
    velocity = rng.uniform(-1, 1, 2)
    velocity /= np.linalg.norm(velocity) + 1e-6
    n_obj = 6
    obj_pos = rng.uniform([0, 0], [width, height], (n_obj, 2))
    obj_vel = rng.uniform(-2.5, 2.5, (n_obj, 2))
    obj_color = rng.integers(0, 256, (n_obj, 3))
    obj_size = rng.integers(max(4, height // 14), max(6, height // 6), n_obj)
    frames = np.empty((n_frames, height, width, 3), np.uint8)
    ids = np.zeros((n_frames, height, width), np.uint8)
    classes = np.empty((n_frames, height, width), np.uint8)
    origin = np.array([width * (pad - 1) / 2, height * (pad - 1) / 2])
    box = np.array([width, height], np.float64)
    for t in range(n_frames):
        layers = []
        for speed, tex in ((0.4, bg), (1.2, mid)):
            x, y = (origin + velocity * speed * t) % np.array([width * (pad - 1), height * (pad - 1)])
            layers.append(tex[int(y) : int(y) + height, int(x) : int(x) + width].astype(np.float32))
        x, y = (origin + velocity * 1.2 * t) % np.array([width * (pad - 1), height * (pad - 1)])
        m = mid_mask[int(y) : int(y) + height, int(x) : int(x) + width]
        frame = layers[0] * (1 - m) + layers[1] * m
        frame = np.clip(frame, 0, 255).astype(np.uint8)
        classes[t] = np.where(m[..., 0] > 0.5, 2, 1)
        for k in range(n_obj):
            pos = obj_pos[k] + obj_vel[k] * t
            px, py = _bounce(pos, box) if motion == "bounce" else pos % box
            centre, r = (int(px), int(py)), int(obj_size[k])
            color = tuple(int(c) for c in obj_color[k])
            cv2.circle(frame, centre, r, color, -1, cv2.LINE_AA)
            cv2.circle(frame, centre, r // 2, (255 - color[0], color[2], color[1]), -1)
            cv2.circle(ids[t], centre, r, k + 1, -1)
            cv2.circle(classes[t], centre, r, 3, -1)
            cv2.circle(classes[t], centre, r // 2, 4, -1)
        frames[t] = frame
    return frames, ids, classes


def make_frames(n_frames: int = 120, height: int = 144, width: int = 192, seed: int = 0) -> np.ndarray:
    """(N, H, W, 3) uint8 BGR frames: a far background, a middle layer and foreground objects, each
    translating at its own speed (closer = faster), so consecutive frames differ as a moving camera's do."""
    return render(n_frames, height, width, seed)[0]


def write_video(
    path: str | Path,
    n_frames: int = 120,
    height: int = 144,
    width: int = 192,
    fps: float = 30.0,
    seed: int = 0,
) -> Path:
    """Write a synthetic video (MJPG in .avi, mp4v otherwise) and return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fourcc = cv2.VideoWriter.fourcc(*("MJPG" if path.suffix.lower() == ".avi" else "mp4v"))
    writer = cv2.VideoWriter(str(path), fourcc, fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"{path}: OpenCV cannot write this video format")
    try:
        for frame in make_frames(n_frames, height, width, seed):
            writer.write(frame)
    finally:
        writer.release()
    return path


def write_scenes(
    folder: str | Path,
    scenes: int = 6,
    n_frames: int = 50,
    height: int = 180,
    width: int = 240,
    seed: int = 10,
) -> Path:
    """Write `scenes` short synthetic videos (seeds seed, seed+1, ...) into `folder`, one scene each: frames
    of different scenes differ as a whole, which one long scene's frames do not."""
    folder = Path(folder)
    for i in range(scenes):
        write_video(folder / f"scene-{i:02d}.avi", n_frames, height, width, seed=seed + i)
    return folder

"""Video object segmentation by label propagation, scored with DAVIS-2017's J (region IoU) and F (boundary).

The protocol is DINO's `eval_video_segmentation.py` (Caron et al., 2021), which follows Jabri et al.'s
space-time random walk: the first frame's mask is carried forward by patch-feature affinity to the first
frame and a queue of the last `n_last` frames' predictions, keeping the `topk` strongest sources per target
patch inside a `radius`-patch neighbourhood, then upsampled and argmax-ed. The scores follow the DAVIS-2017
semi-supervised evaluation: J and F per object averaged over all frames but the first and the last,
J&F the mean of the two."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from edge_vsd.benchmarks.accuracy import Encode, encode_all
from edge_vsd.runtimes.errors import RuntimeInputError


@dataclass(frozen=True)
class PropagationSettings:
    """DINO's defaults (eval_video_segmentation.py): 7 last frames, top 5, 12-patch neighbourhood, T 0.1."""

    n_last: int = 7
    topk: int = 5
    radius: int = 12  # in patches; DINO used ViT-S/8 at 480p, where 12 patches are 96 pixels
    temperature: float = 0.1
    short_side: int = 480  # frames are resized so, the long side floored to a multiple of 64 (DINO)
    bound_th: float = 0.008  # boundary tolerance as a share of the image diagonal (DAVIS)


@dataclass
class Sequence:
    name: str
    frames: list[Path]
    masks: list[Path | None] = field(default_factory=list)  # None where a frame has no annotation


def read_mask(path: Path) -> np.ndarray:
    """Object ids of a DAVIS annotation (palette PNG -> indices; grayscale read as is)."""
    from PIL import Image

    with Image.open(path) as img:
        if img.mode not in ("P", "L", "I;16", "I"):
            raise RuntimeInputError(f"{path}: {img.mode} image; expected a palette or grayscale id map")
        return np.array(img).astype(np.int64)


def load_davis(root: str | Path, sequences: list[str] | None = None, max_frames: int | None = None):
    """Sequences of a DAVIS-2017-layout folder (ImageSets/2017/val.txt when present, else every folder)."""
    root = Path(root)
    img_root, ann_root = root / "JPEGImages" / "480p", root / "Annotations" / "480p"
    if not img_root.is_dir() or not ann_root.is_dir():
        raise RuntimeInputError(
            f"{root}: expected DAVIS layout with JPEGImages/480p/SEQ/*.jpg and Annotations/480p/SEQ/*.png"
        )
    val = root / "ImageSets" / "2017" / "val.txt"
    if sequences is None:
        if val.is_file():
            sequences = [s.strip() for s in val.read_text().splitlines() if s.strip()]
        else:
            sequences = sorted(p.name for p in img_root.iterdir() if p.is_dir())
    out = []
    for name in sequences:
        frames = sorted((img_root / name).glob("*.jpg"))[:max_frames]
        if not frames:
            raise RuntimeInputError(f"{img_root / name}: no .jpg frames")
        masks = [ann_root / name / (f.stem + ".png") for f in frames]
        if not masks[0].is_file():
            raise RuntimeInputError(f"{masks[0]}: missing; the first frame's mask starts the propagation")
        out.append(Sequence(name, frames, [m if m.is_file() else None for m in masks]))
    if not out:
        raise RuntimeInputError(f"{root}: no sequences to evaluate")
    return out


def dino_size(h: int, w: int, short_side: int) -> tuple[int, int]:
    """DINO's frame size: the short side set to `short_side`, the long side floored to a multiple of 64."""
    if h > w:
        return int((short_side * h / w) // 64 * 64), short_side
    return short_side, int((short_side * w / h) // 64 * 64)


def one_hot(ids: np.ndarray, n: int) -> np.ndarray:
    """(h, w) ids -> (n, h, w) float32 one-hot (ids >= n, e.g. DAVIS's 255 void, become background)."""
    ids = np.where(ids < n, ids, 0)
    return (np.arange(n)[:, None, None] == ids[None]).astype(np.float32)


def grid_ids(ids: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """(H, W) ids -> (gh, gw): the id at each cell's centre (cv2's nearest samples the cell's corner,
    which shifts every mask by half a cell)."""
    (h, w), (gh, gw) = ids.shape, grid
    ys = ((np.arange(gh) + 0.5) * h / gh).astype(int)
    xs = ((np.arange(gw) + 0.5) * w / gw).astype(int)
    return ids[np.ix_(ys, xs)]


def neighbourhood(h: int, w: int, radius: int) -> np.ndarray:
    """(h*w, h*w) 0/1 mask: source patch j may vote for target patch i when within `radius` on both axes."""
    y, x = np.divmod(np.arange(h * w), w)
    return ((np.abs(y[:, None] - y[None]) <= radius) & (np.abs(x[:, None] - x[None]) <= radius)).astype(
        np.float32
    )


def top_k(x: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the k largest values of every row. k passes of argmax: linear time even when most
    values tie (np.argpartition degrades badly on ties), and k is small (DINO: 5)."""
    if k > 16:
        return np.argpartition(-x, k - 1, axis=1)[:, :k]
    work = x.copy()
    rows = np.arange(len(x))
    idx = np.empty((len(x), k), np.int64)
    for j in range(k):
        idx[:, j] = work.argmax(1)
        work[rows, idx[:, j]] = -np.inf
    return idx


def propagate(feats: np.ndarray, first: np.ndarray, s: PropagationSettings) -> np.ndarray:
    """feats (T, h, w, D) patch features, first (C, h, w) one-hot first mask at the patch grid ->
    (T, C, h, w) soft masks; frame 0 is `first`."""
    t_len, h, w, d = feats.shape
    hw = h * w
    f = feats.reshape(t_len, hw, d).astype(np.float32)
    f /= np.maximum(np.linalg.norm(f, axis=-1, keepdims=True), 1e-12)
    near = neighbourhood(h, w, s.radius).astype(bool) if s.radius > 0 else None
    c = first.shape[0]
    out = np.empty((t_len, hw, c), np.float32)
    out[0] = first.reshape(c, hw).T
    queue: list[int] = []  # the last n_last predicted frames
    for t in range(1, t_len):
        sources = [0, *queue]
        # cosine of every target patch (rows) to every patch of every context frame (columns)
        sim = (f[t] @ np.concatenate([f[k] for k in sources]).T).reshape(hw, len(sources), hw)
        if near is not None:
            sim = np.where(near[:, None, :], sim, -np.inf)
        sim = sim.reshape(hw, -1)
        idx = top_k(sim, min(s.topk, sim.shape[1]))
        top = np.take_along_axis(sim, idx, 1)
        # exp(sim / T) normalised over the kept sources, i.e. a softmax over the top k
        weights = np.exp((top - top.max(1, keepdims=True)) / s.temperature)
        weights[~np.isfinite(top)] = 0.0
        weights /= weights.sum(1, keepdims=True)
        labels = np.concatenate([out[k_] for k_ in sources])  # (n * hw, C)
        out[t] = np.einsum("pk,pkc->pc", weights, labels[idx])
        queue = (queue + [t])[-s.n_last :] if s.n_last > 0 else []
    return out.transpose(0, 2, 1).reshape(t_len, c, h, w)


def upsample_masks(soft: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(C, h, w) soft mask -> (H, W) ids: bilinear upsampling to the frame's size, per-channel min-max
    (DINO's norm_mask), argmax. (DINO upsamples to the model's input size, then to the frame's with
    nearest neighbours; one bilinear step gives smoother borders and no dependence on the patch size.)"""
    h, w = size
    up = np.stack([cv2.resize(ch, (w, h), interpolation=cv2.INTER_LINEAR) for ch in soft])
    for ch in up:
        if ch.max() > 0:
            ch -= ch.min()
            ch /= max(float(ch.max()), 1e-12)
    return up.argmax(0)


def jaccard(pred: np.ndarray, gt: np.ndarray) -> float:
    """Region similarity J: IoU of two boolean masks (1 when both are empty, as DAVIS scores it)."""
    union = np.logical_or(pred, gt).sum()
    return 1.0 if union == 0 else float(np.logical_and(pred, gt).sum() / union)


def boundary(mask: np.ndarray) -> np.ndarray:
    """One-pixel boundary of a boolean mask: foreground pixels with a background 4-neighbour."""
    m = mask.astype(np.uint8)
    eroded = cv2.erode(
        m, np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], np.uint8), borderType=cv2.BORDER_REPLICATE
    )
    return (m > 0) & (eroded == 0)


def boundary_f(pred: np.ndarray, gt: np.ndarray, bound_th: float = 0.008) -> float:
    """Contour accuracy F: boundary precision/recall within a tolerance of `bound_th` x the diagonal."""
    r = max(1, math.ceil(bound_th * math.hypot(*gt.shape)))
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    bp, bg = boundary(pred), boundary(gt)
    n_p, n_g = int(bp.sum()), int(bg.sum())
    if n_p == 0 and n_g == 0:
        return 1.0
    if n_p == 0 or n_g == 0:
        return 0.0
    precision = (bp & (cv2.dilate(bg.astype(np.uint8), disk) > 0)).sum() / n_p
    recall = (bg & (cv2.dilate(bp.astype(np.uint8), disk) > 0)).sum() / n_g
    return 0.0 if precision + recall == 0 else float(2 * precision * recall / (precision + recall))


def score_sequence(
    preds: list[np.ndarray], gts: list[np.ndarray | None], objects: list[int], bound_th: float
):
    """Per object: mean J and F over the annotated frames except the first and the last (DAVIS-2017)."""
    frames = [i for i in range(1, len(preds) - 1) if gts[i] is not None] or [
        i for i in range(1, len(preds)) if gts[i] is not None
    ]
    scored = [(preds[i], g) for i in frames if (g := gts[i]) is not None]  # all of `frames`, narrowed
    per_object = {}
    for obj in objects:
        j = [jaccard(p == obj, g == obj) for p, g in scored]
        f = [boundary_f(p == obj, g == obj, bound_th) for p, g in scored]
        per_object[obj] = {"J": float(np.mean(j)) if j else None, "F": float(np.mean(f)) if f else None}
    return per_object


def read_frame(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise RuntimeInputError(f"{path}: cannot be decoded")
    return img


def evaluate_sequence(enc: Encode, seq: Sequence, s: PropagationSettings, batch: int = 8) -> dict[str, Any]:
    """Propagate the first mask through one sequence; J, F and the predicted id maps (original size)."""
    frames = np.stack([read_frame(p) for p in seq.frames])
    gts = [read_mask(m) if m is not None else None for m in seq.masks]
    oh, ow = frames.shape[1:3]
    first = gts[0]
    assert first is not None  # load_davis refuses a sequence without its first mask
    if first.shape != (oh, ow):
        raise RuntimeInputError(f"{seq.masks[0]}: size {first.shape[::-1]} differs from its frame {(ow, oh)}")
    objects = [int(o) for o in np.unique(first) if 0 < o < 255]
    _, feats = encode_all(enc, frames, batch)
    gh, gw = feats.shape[1:3]
    small = grid_ids(first, (gh, gw))
    n_ids = max(objects, default=0) + 1
    soft = propagate(feats, one_hot(small, n_ids), s)
    preds = [first] + [upsample_masks(m, (oh, ow)).astype(np.int64) for m in soft[1:]]
    per_object = score_sequence(preds, gts, objects, s.bound_th)
    js = [v["J"] for v in per_object.values() if v["J"] is not None]
    fs = [v["F"] for v in per_object.values() if v["F"] is not None]
    return {
        "name": seq.name,
        "frames": len(frames),
        "objects": len(objects),
        "grid": [gh, gw],
        "J": float(np.mean(js)) if js else None,
        "F": float(np.mean(fs)) if fs else None,
        "per_object": {str(k): v for k, v in per_object.items()},
        "predictions": preds,
        "gts": gts,
        "images": frames,
    }


def summarize(per_seq: list[dict[str, Any]]) -> dict[str, Any]:
    """Overall J mean, F mean (over every object of every sequence, as DAVIS does) and J&F."""
    js = [o["J"] for s in per_seq for o in s["per_object"].values() if o["J"] is not None]
    fs = [o["F"] for s in per_seq for o in s["per_object"].values() if o["F"] is not None]
    j, f = (float(np.mean(js)) if js else None), (float(np.mean(fs)) if fs else None)
    return {"J": j, "F": f, "JF": None if j is None or f is None else (j + f) / 2, "objects": len(js)}


def copy_first_mask(seqs: list[Sequence], s: PropagationSettings) -> dict[str, Any]:
    """The DAVIS floor: every frame predicted as the first frame's mask, scored as `evaluate_sequence` is."""
    per_seq = []
    for seq in seqs:
        gts = [read_mask(m) if m is not None else None for m in seq.masks]
        first = gts[0]
        assert first is not None  # load_davis refuses a sequence without its first mask
        objects = [int(o) for o in np.unique(first) if 0 < o < 255]
        per_object = score_sequence([first] * len(gts), gts, objects, s.bound_th)
        per_seq.append({"per_object": {str(k): v for k, v in per_object.items()}})
    return summarize(per_seq)


def patch_oracle(seqs: list[Sequence], s: PropagationSettings, patch: int) -> dict[str, Any]:
    """The DAVIS ceiling of a patch-grid encoder: each frame's true mask seen at the patch grid (the id at
    each cell's centre) and upsampled as predictions are. What perfect features at this grid could score."""
    per_seq = []
    for seq in seqs:
        gts = [read_mask(m) if m is not None else None for m in seq.masks]
        first = gts[0]
        assert first is not None  # load_davis refuses a sequence without its first mask
        h, w = first.shape
        dh, dw = dino_size(h, w, s.short_side)
        grid = (max(1, dh // patch), max(1, dw // patch))
        objects = [int(o) for o in np.unique(first) if 0 < o < 255]
        n = max(objects, default=0) + 1
        preds = [
            first if i == 0 or g is None else upsample_masks(one_hot(grid_ids(g, grid), n), (h, w))
            for i, g in enumerate(gts)
        ]
        per_object = score_sequence(preds, gts, objects, s.bound_th)
        per_seq.append({"per_object": {str(k): v for k, v in per_object.items()}})
    return summarize(per_seq)

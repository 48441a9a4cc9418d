"""Labelled probe: a linear softmax head on frozen patch features, trained briefly with numpy; mIoU on a
held-out split of an ADE20K-layout folder (images/*.jpg, annotations/*.png, label 0 = ignore)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from edge_vsd.benchmarks.accuracy import Encode, encode_all
from edge_vsd.runtimes.errors import RuntimeInputError

IGNORE = 0


@dataclass
class SegData:
    """Images (N, H, W, 3) uint8 BGR, all brought to one size, and label maps (N, H, W) uint8/uint16."""

    images: np.ndarray
    labels: np.ndarray
    names: list[str]


def load_seg_data(root: str | Path, max_images: int = 200) -> SegData:
    """Pair images/X.jpg with annotations/X.png; one-line RuntimeInputError for an unusable folder."""
    root = Path(root)
    img_dir, ann_dir = root / "images", root / "annotations"
    if not img_dir.is_dir() or not ann_dir.is_dir():
        raise RuntimeInputError(
            f"{root}: expected ADE20K layout with images/ and annotations/ folders (--seg-data)"
        )
    anns = {p.stem: p for p in ann_dir.glob("*.png")}
    pairs = [
        (p, anns[p.stem])
        for p in sorted(img_dir.iterdir())
        if p.suffix.lower() in (".jpg", ".jpeg", ".png") and p.stem in anns
    ][:max_images]
    if len(pairs) < 4:
        raise RuntimeInputError(
            f"{root}: needs at least 4 image/annotation pairs with matching names, found {len(pairs)}"
        )
    images, labels, names = [], [], []
    size: tuple[int, int] | None = None
    for img_path, ann_path in pairs:
        img = cv2.imread(str(img_path), cv2.IMREAD_COLOR)
        ann = cv2.imread(str(ann_path), cv2.IMREAD_UNCHANGED)
        if img is None or ann is None:
            raise RuntimeInputError(f"{img_path if img is None else ann_path}: cannot be decoded")
        if ann.ndim == 3:
            if not (np.array_equal(ann[..., 0], ann[..., 1]) and np.array_equal(ann[..., 1], ann[..., 2])):
                raise RuntimeInputError(f"{ann_path}: colour annotation; expected one class index per pixel")
            ann = ann[..., 0]
        if ann.shape != img.shape[:2]:
            raise RuntimeInputError(
                f"{ann_path}: size {ann.shape[::-1]} differs from its image {img.shape[1::-1]}"
            )
        size = size or img.shape[:2]
        if img.shape[:2] != size:  # stack at the first image's size; labels resized without blending classes
            img = cv2.resize(img, size[::-1], interpolation=cv2.INTER_AREA)
            ann = cv2.resize(ann, size[::-1], interpolation=cv2.INTER_NEAREST)
        images.append(img)
        labels.append(ann)
        names.append(img_path.stem)
    return SegData(np.stack(images), np.stack(labels), names)


def holdout_split(n: int, holdout: float = 0.25, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(test, train) image indices: a seeded permutation, `holdout` of it (at least one) held out."""
    order = np.random.default_rng(seed).permutation(n)
    n_test = max(1, int(round(n * holdout)))
    return order[:n_test], order[n_test:]


def patch_labels(labels: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Majority non-ignore label of each patch cell (IGNORE where a cell has no labelled pixel)."""
    n, h, w = labels.shape
    gh, gw = grid
    ys = np.linspace(0, h, gh + 1).round().astype(int)
    xs = np.linspace(0, w, gw + 1).round().astype(int)
    out = np.full((n, gh, gw), IGNORE, np.int64)
    for k in range(n):
        for i in range(gh):
            for j in range(gw):
                cell = labels[k, ys[i] : ys[i + 1], xs[j] : xs[j + 1]].ravel()
                cell = cell[cell != IGNORE]
                if cell.size:
                    out[k, i, j] = np.bincount(cell).argmax()
    return out


def train_softmax(
    x: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    epochs: int = 30,
    lr: float = 0.05,
    batch: int = 256,
    weight_decay: float = 1e-4,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression with minibatch Adam; returns (W (D, K), b (K,))."""
    rng = np.random.default_rng(seed)
    d = x.shape[1]
    params = [np.zeros((d, n_classes)), np.zeros(n_classes)]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    step = 0
    for _ in range(epochs):
        order = rng.permutation(len(x))
        for s in range(0, len(x), batch):
            idx = order[s : s + batch]
            xb, yb = x[idx], y[idx]
            logits = xb @ params[0] + params[1]
            logits -= logits.max(1, keepdims=True)
            p = np.exp(logits)
            p /= p.sum(1, keepdims=True)
            p[np.arange(len(yb)), yb] -= 1.0
            p /= len(yb)
            grads = [xb.T @ p + weight_decay * params[0], p.sum(0)]
            step += 1
            for k, g in enumerate(grads):
                m[k] = 0.9 * m[k] + 0.1 * g
                v[k] = 0.999 * v[k] + 0.001 * g * g
                mh, vh = m[k] / (1 - 0.9**step), v[k] / (1 - 0.999**step)
                params[k] -= lr * mh / (np.sqrt(vh) + 1e-8)
    return params[0], params[1]


def class_ious(pred: np.ndarray, target: np.ndarray, classes: np.ndarray) -> dict[int, float]:
    """IoU of each class present in target or prediction, ignoring IGNORE pixels."""
    keep = target != IGNORE
    p, t = pred[keep], target[keep]
    out = {}
    for c in classes:
        union = np.sum((p == c) | (t == c))
        if union:
            out[int(c)] = float(np.sum((p == c) & (t == c)) / union)
    return out


def miou(pred: np.ndarray, target: np.ndarray, classes: np.ndarray) -> tuple[float, float]:
    """(mean IoU over classes present in target or prediction, pixel accuracy), ignoring IGNORE pixels."""
    ious = list(class_ious(pred, target, classes).values())
    keep = target != IGNORE
    acc = float(np.mean(pred[keep] == target[keep])) if keep.any() else 0.0
    return (float(np.mean(ious)) if ious else 0.0), acc


def seg_features(
    enc: Encode, data: SegData, image_size: tuple[int, int], batch: int = 8
) -> tuple[np.ndarray, np.ndarray]:
    """(labels (N, H, W), patch features (N, h, w, D)) with images and labels brought to `image_size`."""
    h, w = image_size
    images = np.stack([cv2.resize(im, (w, h), interpolation=cv2.INTER_AREA) for im in data.images])
    labels = np.stack([cv2.resize(lb, (w, h), interpolation=cv2.INTER_NEAREST) for lb in data.labels])
    return labels, encode_all(enc, images, batch)[1]


def seg_probe(
    enc: Encode | None,
    data: SegData,
    image_size: tuple[int, int],
    holdout: float = 0.25,
    epochs: int = 30,
    seed: int = 0,
    batch: int = 8,
    features: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Train the linear head on a split of `data`; mIoU (at the model's input resolution) on the rest.
    `features`: what `seg_features` returned for the same encoder and size, to encode only once."""
    h, w = image_size
    if features is None:
        assert enc is not None, "seg_probe needs an encoder or its features"
        features = seg_features(enc, data, image_size, batch)
    labels, feats = features
    n, gh, gw, d = feats.shape
    test, train = holdout_split(n, holdout, seed)
    y_grid = patch_labels(labels[train], (gh, gw)).reshape(-1)
    x = feats[train].reshape(-1, d).astype(np.float64)
    keep = y_grid != IGNORE
    x, y_grid = x[keep], y_grid[keep]
    if not len(y_grid):
        raise RuntimeInputError("seg probe: no labelled pixels in the training split")
    classes = np.unique(y_grid)
    y = np.searchsorted(classes, y_grid)
    mu, sd = x.mean(0), x.std(0) + 1e-6
    W, b = train_softmax((x - mu) / sd, y, len(classes), epochs=epochs, seed=seed)
    logits = (
        ((feats[test].reshape(-1, d) - mu) / sd @ W + b).reshape(len(test), gh, gw, -1).astype(np.float32)
    )
    preds = []
    for lg in logits:
        # cv2.resize handles at most 512 channels; upsample the class scores in slices if there are more.
        up = np.concatenate(
            [
                cv2.resize(lg[..., s : s + 512], (w, h), interpolation=cv2.INTER_LINEAR).reshape(h, w, -1)
                for s in range(0, lg.shape[-1], 512)
            ],
            -1,
        )
        preds.append(classes[up.argmax(-1)])
    all_classes = np.union1d(classes, np.unique(labels[test][labels[test] != IGNORE]))
    m, acc = miou(np.stack(preds), labels[test], all_classes)
    return {
        "miou": m,
        "pixel_acc": acc,
        "class_iou": {str(c): v for c, v in class_ious(np.stack(preds), labels[test], all_classes).items()},
        "classes": int(len(all_classes)),
        "train_images": int(len(train)),
        "test_images": int(len(test)),
        "epochs": epochs,
    }


def over_splits(
    score: Callable[[int], dict[str, Any]], splits: int, keys: tuple[str, ...] = ("miou", "pixel_acc")
) -> dict[str, Any]:
    """`score(seed)` on `splits` seeded holdout splits: the `keys` (and any class IoUs) averaged, each
    split's values under "splits". One split is `score(0)` unchanged."""
    runs = [score(seed) for seed in range(splits)]
    if splits == 1:
        return runs[0]
    out = dict(runs[0])
    for key in keys:
        values = [float(r[key]) for r in runs if r.get(key) is not None]
        out[key] = float(np.mean(values)) if len(values) == len(runs) else None
    if "class_iou" in out:
        classes = sorted({c for r in runs for c in r["class_iou"]}, key=int)
        out["class_iou"] = {
            c: float(np.mean([r["class_iou"][c] for r in runs if c in r["class_iou"]])) for c in classes
        }
    out["splits"] = {key: [r.get(key) for r in runs] for key in keys}
    return out

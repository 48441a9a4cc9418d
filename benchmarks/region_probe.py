"""Region probe: name each labelled region's class from its mask-pooled patch features.

The patch probe must find an object and name it; this one is given the region (a connected component of
one class in the label map) and only names it, so it tells "the features do not carry the class" apart
from "the features carry it but a patch alone cannot place it". Scored by cross-validation over images."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from edge_vsd.benchmarks.seg_probe import IGNORE, train_softmax

MIN_PATCHES = 1.0  # a region must cover at least one patch's area to be pooled
FOLDS = 4
EPOCHS = 100


def region_features(
    feats: np.ndarray, labels: np.ndarray, min_patches: float = MIN_PATCHES
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pooled features (R, D), class (R,), image index (R,)) for every connected region of every class:
    the patch features averaged with each patch cell's share of the region as its weight."""
    n, gh, gw, d = feats.shape
    pooled, classes, images = [], [], []
    for k in range(n):
        for c in np.unique(labels[k]):
            if c == IGNORE:
                continue
            count, comp = cv2.connectedComponents((labels[k] == c).astype(np.uint8), connectivity=8)
            for r in range(1, count):
                cover = cv2.resize((comp == r).astype(np.float32), (gw, gh), interpolation=cv2.INTER_AREA)
                if cover.sum() < min_patches:
                    continue
                pooled.append((cover[..., None] * feats[k]).sum((0, 1)) / cover.sum())
                classes.append(int(c))
                images.append(k)
    if not pooled:
        return np.zeros((0, d), np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.stack(pooled).astype(np.float32), np.array(classes), np.array(images)


def region_probe(
    feats: np.ndarray, labels: np.ndarray, folds: int = FOLDS, epochs: int = EPOCHS, seed: int = 0
) -> dict[str, Any]:
    """Linear softmax on pooled region features, `folds`-fold over images (each region scored once, by a
    head that never saw its image); balanced accuracy (mean recall over classes), accuracy, per-class recall.
    `labels` (N, H, W) at the features' input size."""
    x, y, img = region_features(feats, labels)
    classes = np.unique(y)
    n_images = len(labels)
    if len(classes) < 2 or n_images < 2:
        return {"balanced_acc": None, "regions": int(len(y))}
    fold_of = np.random.default_rng(seed).permutation(n_images) % min(folds, n_images)
    pred = np.full(len(y), -1)
    for f in np.unique(fold_of):
        test = fold_of[img] == f
        train = ~test
        seen = np.unique(y[train])
        mu, sd = x[train].mean(0), x[train].std(0) + 1e-6
        W, b = train_softmax(
            (x[train] - mu) / sd,
            np.searchsorted(seen, y[train]),
            len(seen),
            epochs=epochs,
            batch=32,
            seed=seed,
        )
        pred[test] = seen[((x[test] - mu) / sd @ W + b).argmax(1)]
    recall = {str(c): float(np.mean(pred[y == c] == c)) for c in classes}
    majority = np.bincount(y).argmax()
    return {
        "balanced_acc": float(np.mean(list(recall.values()))),
        "acc": float(np.mean(pred == y)),
        "class_recall": recall,
        "chance": 1.0 / len(classes),  # a constant answer's balanced accuracy
        "majority_acc": float(np.mean(y == majority)),
        "regions": int(len(y)),
        "folds": int(len(np.unique(fold_of))),
        "epochs": epochs,
    }

"""Region probe: pooling over labelled regions and naming their class, on features that carry it or not."""

from __future__ import annotations

import numpy as np
import pytest
from edge_vsd.benchmarks.floors import outline_patches
from edge_vsd.benchmarks.region_probe import region_features, region_probe

P = 8  # pixels per patch cell in these label maps


def test_regions_are_connected_components_pooled_by_cover():
    labels = np.ones((1, 32, 32), np.uint8)  # a 4x4 grid of 8-px cells
    labels[0, 0:8, 0:8] = 2  # one whole cell
    labels[0, 16:32, 16:24] = 2  # a second region of class 2: two cells
    labels[0, 30:32, 0:2] = 3  # under one cell's area: dropped
    labels[0, 0:4, 24:32] = 0  # ignored pixels form no region
    feats = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)  # each cell's index as its feature
    x, y, img = region_features(feats, labels)
    assert sorted(y.tolist()) == [1, 2, 2] and set(img.tolist()) == {0}
    pooled = {float(v) for v in x[y == 2, 0]}
    assert pooled == {0.0, (10 + 14) / 2}  # cell 0 alone; cells (2, 2) and (3, 2) equally
    background = x[y == 1, 0][0]
    assert 0 < background < 15


def _scene(rng: np.random.Generator, n: int) -> np.ndarray:
    """n label maps (64x64): background 1 and four squares of random classes 2-4 on an 8x8 cell grid."""
    labels = np.ones((n, 64, 64), np.uint8)
    for k in range(n):
        for top, left in [(0, 0), (0, 32), (32, 0), (32, 32)]:
            r, c = top + 8 * rng.integers(0, 2), left + 8 * rng.integers(0, 2)
            labels[k, r : r + 16, c : c + 16] = 2 + rng.integers(0, 3)
    return labels


@pytest.mark.parametrize("carries_class", [True, False])
def test_probe_names_classes_only_when_the_features_carry_them(carries_class):
    rng = np.random.default_rng(0)
    labels = _scene(rng, 24)
    cells = labels[:, ::P, ::P].astype(int)  # each cell's class
    feats = rng.normal(size=(24, 8, 8, 16)).astype(np.float32)
    if carries_class:
        feats[..., :5] += 2.0 * np.eye(5)[cells]  # a class direction, buried in noise per patch
    out = region_probe(feats, labels)
    assert out["regions"] == 24 * 5 and out["folds"] == 4
    assert out["chance"] == pytest.approx(0.25)
    assert out["balanced_acc"] == pytest.approx(np.mean(list(out["class_recall"].values())))
    if carries_class:
        assert out["balanced_acc"] > 0.95, out
    else:
        assert out["balanced_acc"] < 0.5, out


def test_one_class_gives_no_score():
    out = region_probe(np.zeros((2, 4, 4, 3), np.float32), np.ones((2, 32, 32), np.uint8))
    assert out["balanced_acc"] is None and out["regions"] == 2


def test_outline_patches_mark_class_changes_in_each_patch():
    labels = np.ones((1, 16, 24), np.uint8)  # 2 x 3 patches of 8 px
    labels[0, 4:12, 4:12] = 2  # a square across the first two columns of patches
    cells = outline_patches(labels, 8)
    assert cells.shape == (1, 2, 3, 64) and set(np.unique(cells)) == {0.0, 1.0}
    edges = cells.reshape(2, 3, 8, 8)
    assert edges[:, 2].sum() == 0  # the third column of patches holds no outline
    # the pixel before each change is marked: rows 3 and 11, columns 3 and 11, 8 long each, (11, 11) once
    assert edges[0, 0][3, 4:].sum() == 4 and edges[0, 0][4:, 3].sum() == 4
    assert cells.sum() == 4 * 8 - 1

"""Linear segmentation probe on a generated ADE20K-layout dataset (class = shape colour)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from edge_vsd.benchmarks import seg_probe
from edge_vsd.runtimes.errors import RuntimeInputError
from test_bench_support import SIZE, make_seg_dataset, toy

from edge_vsd import runtimes


@pytest.fixture(scope="module")
def seg_dir(tmp_path_factory):
    return make_seg_dataset(tmp_path_factory.mktemp("ade") / "ade", n=16)


def test_load_pairs_images_with_annotations(seg_dir):
    data = seg_probe.load_seg_data(seg_dir)
    assert data.images.shape == (16, 128, 128, 3) and data.labels.shape == (16, 128, 128)
    assert set(np.unique(data.labels)) <= {0, 1, 2, 3, 4}
    assert len(data.names) == 16


def test_probe_miou_well_above_chance(tmp_path, seg_dir):
    enc = runtimes.load(toy(tmp_path / "toy"))
    out = seg_probe.seg_probe(enc, seg_probe.load_seg_data(seg_dir), SIZE, epochs=30)
    assert out["train_images"] == 12 and out["test_images"] == 4
    assert out["classes"] >= 3
    # Chance (uniform guess over 4 classes) gives an mIoU near 0.15 here; a linear head on colour-aware
    # patch features must do far better.
    assert out["miou"] > 0.6, out
    assert out["miou"] == pytest.approx(np.mean(list(out["class_iou"].values())))
    assert out["pixel_acc"] > 0.8, out


def test_probe_on_constant_features_is_poor(tmp_path, seg_dir):
    # An encoder whose output ignores the image: same toy graph fed a blank frame for every input.
    enc = runtimes.load(toy(tmp_path / "toy"))

    def blind(frames):
        return enc(np.zeros_like(frames))

    out = seg_probe.seg_probe(blind, seg_probe.load_seg_data(seg_dir), SIZE, epochs=5)
    assert out["miou"] < 0.4


def test_patch_labels_majority_and_ignore():
    labels = np.zeros((1, 4, 4), np.uint8)
    labels[0, :2, :2] = [[2, 2], [2, 3]]
    labels[0, 2:, 2:] = 0
    labels[0, :2, 2:] = [[1, 0], [0, 0]]
    out = seg_probe.patch_labels(labels, (2, 2))
    assert out.tolist() == [[[2, 1], [0, 0]]]


def test_miou_exact():
    target = np.array([[1, 1, 2, 2], [0, 0, 2, 2]])
    pred = np.array([[1, 2, 2, 2], [1, 1, 2, 2]])
    m, acc = seg_probe.miou(pred, target, np.array([1, 2]))
    # class 1: inter 1, union 2 -> 0.5; class 2: inter 4, union 5 -> 0.8; ignore pixels dropped.
    assert m == pytest.approx(0.65) and acc == pytest.approx(5 / 6)
    assert seg_probe.class_ious(pred, target, np.array([1, 2, 3])) == pytest.approx({1: 0.5, 2: 0.8})


def test_bad_layouts_are_one_line_errors(tmp_path):
    with pytest.raises(RuntimeInputError, match="images/ and annotations/"):
        seg_probe.load_seg_data(tmp_path)
    (tmp_path / "images").mkdir()
    (tmp_path / "annotations").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "a.jpg"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(RuntimeInputError, match="at least 4"):
        seg_probe.load_seg_data(tmp_path)

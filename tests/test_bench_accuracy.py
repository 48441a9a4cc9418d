"""Label-free accuracy on real ONNX artifacts: correspondence under homographies, fidelity, kNN agreement."""

from __future__ import annotations

import numpy as np
import pytest
from edge_vsd.benchmarks import accuracy
from test_bench_support import SIZE, add_output_noise, smooth_frames, toy

from edge_vsd import runtimes


@pytest.fixture(scope="module")
def frames():
    return smooth_frames(8, seed=3)


def test_matching_is_exact_without_warp():
    # Identity homography: every patch's nearest neighbour is itself.
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(16, 16, 8))
    m = accuracy.match_patches(feats, feats, np.eye(3), SIZE)
    assert m["correct"] == m["total"] == 256
    assert m["chance"] == pytest.approx(
        sum(
            (min(i + 1, 15) - max(i - 1, 0) + 1) * (min(j + 1, 15) - max(j - 1, 0) + 1)
            for i in range(16)
            for j in range(16)
        )
        / 256
    )


def test_matching_follows_a_known_shift():
    # A pure translation by 3 cells: features shifted the same way must match, a mismatch must not.
    rng = np.random.default_rng(1)
    src = rng.normal(size=(16, 16, 8))
    dst = np.roll(src, 3, axis=1)
    shift = np.array([[1, 0, 3 * 8], [0, 1, 0], [0, 0, 1]], float)
    m = accuracy.match_patches(src, dst, shift, SIZE)
    assert m["total"] == 16 * 13  # the last 3 columns leave the image
    assert m["correct"] == m["total"]
    wrong = accuracy.match_patches(src, src, shift, SIZE)
    assert wrong["correct"] < 0.1 * wrong["total"]


def test_random_homography_is_bounded_and_seeded():
    a = accuracy.random_homography(np.random.default_rng(5), 128, 128, 0.1)
    b = accuracy.random_homography(np.random.default_rng(5), 128, 128, 0.1)
    np.testing.assert_array_equal(a, b)
    corners = np.array([[0, 0, 1], [128, 0, 1], [128, 128, 1], [0, 128, 1]], float)
    moved = corners @ a.T
    moved = moved[:, :2] / moved[:, 2:]
    assert np.abs(moved - corners[:, :2]).max() <= 0.1 * 128 + 1e-6


def test_correspondence_high_for_clean_artifact_low_for_damaged(tmp_path, frames):
    clean = runtimes.load(toy(tmp_path / "clean"))
    damaged = runtimes.load(add_output_noise(toy(tmp_path / "damaged"), sigma=1.0))
    c = accuracy.correspondence(clean, frames, SIZE, n=8, strength=0.08)
    d = accuracy.correspondence(damaged, frames, SIZE, n=8, strength=0.08)
    assert c["pairs"] == d["pairs"] == 8 and c["patches"] == d["patches"] > 1000
    assert c["corr_acc"] > 0.9
    assert d["corr_acc"] < 0.5
    assert c["chance"] < 0.05  # within-one-patch by luck on a 16x16 grid


def test_fidelity_and_knn_against_self_and_damaged(tmp_path, frames):
    ref = runtimes.load(toy(tmp_path / "ref"))
    bad = runtimes.load(toy(tmp_path / "bad", noise=0.5))
    rc, rp = accuracy.encode_all(ref, frames, 3)
    bc, bp = accuracy.encode_all(bad, frames, 3)
    same = accuracy.fidelity(rc, rp, rc, rp)
    assert same["cls_cosine"] == pytest.approx(1.0) and same["patch_cosine"] == pytest.approx(1.0)
    assert same["max_abs_error"] == 0.0
    off = accuracy.fidelity(bc, bp, rc, rp)
    assert off["patch_cosine"] < 0.97 and off["patch_cosine_min"] <= off["patch_cosine"]
    assert off["max_abs_error"] > 0.01
    assert accuracy.knn_agreement(rc, rc, k=3) == 1.0


def test_knn_agreement_counts_overlap():
    def on_circle(degrees):
        rad = np.radians(degrees)
        return np.stack([np.cos(rad), np.sin(rad)], 1)

    x = on_circle([0, 10, 20, 90, 100, 110])
    ref = on_circle([0, 10, 90, 20, 100, 110])  # frames 2 and 3 swapped clusters
    # Neighbour sets (k=2) overlap by 1/2, 1/2, 0, 0, 1/2, 1/2 -> 1/3 on average.
    assert accuracy.knn_agreement(x, ref, k=2) == pytest.approx(1 / 3)
    assert accuracy.knn_agreement(x[:2], ref[:2]) is None  # too few frames


def test_fidelity_skips_patches_at_another_resolution():
    rng = np.random.default_rng(0)
    cls = rng.normal(size=(4, 8))
    out = accuracy.fidelity(cls, rng.normal(size=(4, 2, 2, 8)), cls, rng.normal(size=(4, 4, 4, 8)))
    assert out["cls_cosine"] == pytest.approx(1.0) and out["patch_cosine"] is None
    with pytest.raises(ValueError, match="CLS shapes differ"):
        accuracy.fidelity(cls, None, cls[:, :4], None)

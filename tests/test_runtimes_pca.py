"""PCA visualisation helpers: colours, frame sampling, video writer."""

from __future__ import annotations

import cv2
import numpy as np
from edge_vsd.runtimes.pca import EvenSample, PatchPCA, PCAVideoWriter, side_by_side


def test_pca_colours_follow_the_dominant_direction_and_are_sign_stable():
    rng = np.random.default_rng(0)
    direction = rng.standard_normal(16)
    coef = np.linspace(-1, 1, 7 * 9)[:, None]
    patches = (coef * direction + 0.01 * rng.standard_normal((63, 16))).reshape(1, 7, 9, 16)
    a = PatchPCA().fit(patches)
    b = PatchPCA().fit(patches.reshape(-1, 16)[::-1])  # same tokens, another order: SVD signs may flip
    colours = a.colors(patches[0])
    assert colours.shape == (7, 9, 3) and colours.dtype == np.uint8
    red = colours[..., 2].reshape(-1).astype(int)  # BGR: component 1 is red
    assert abs(np.corrcoef(red, coef[:, 0])[0, 1]) > 0.99
    np.testing.assert_array_equal(colours, b.colors(patches[0]))


def test_side_by_side_has_frame_and_map_of_equal_size():
    frame = np.full((120, 160, 4), 200, np.uint8)  # BGRA is converted
    patches = np.random.default_rng(1).standard_normal((3, 4, 8))
    image = side_by_side(frame, patches, PatchPCA().fit(patches), height=60)
    assert image.shape == (60, 160, 3)


def test_even_sample_spreads_over_an_unknown_length():
    sample = EvenSample(4)
    for i in range(1000):
        sample.add(i)
    picked = sample.result()
    assert len(picked) == 4 and picked[0] == 0 and picked[-1] >= 750
    assert np.all(np.diff(picked) > 150)
    short = EvenSample(4)
    for i in range(3):
        short.add(i)
    assert short.result() == [0, 1, 2]


def test_video_writer_with_fewer_frames_than_the_fit_window(tmp_path):
    writer = PCAVideoWriter(tmp_path / "v.mp4", fps=5, height=48, fit_frames=16)
    rng = np.random.default_rng(2)
    for _ in range(3):
        writer.add(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), rng.standard_normal((4, 4, 8)))
    assert writer.close() == tmp_path / "v.mp4"
    cap = cv2.VideoCapture(str(tmp_path / "v.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    assert PCAVideoWriter(tmp_path / "empty.mp4", fps=5).close() is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]

"""Calibration sampling: equal shares per source, held-out frames disjoint from calibration, stable hash."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from edge_vsd.export.calibration import _shares, load_frames, tensor_sha256, to_tensor

from edge_vsd.data.preprocess import preprocess
from edge_vsd.errors import InputError


def test_shares_are_equal_and_capped():
    assert _shares([795, 3, 100], 128) == [63, 3, 62]
    assert _shares([10, 10], 7) == [4, 3]
    assert _shares([5], 10) == [5]
    assert sum(_shares([40, 40, 40], 64)) == 64


def test_video_plus_image_folder(tmp_path, synthetic_video):
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        cv2.imwrite(str(folder / f"{i:02d}.png"), rng.integers(0, 255, (50, 70, 3), dtype=np.uint8))
    (folder / "notes.txt").write_text("ignored")
    fs = load_frames([synthetic_video, folder], (32, 48), n_calib=16, n_heldout=6)
    assert fs.calib.shape == (16, 32, 48, 3) and fs.heldout.shape == (6, 32, 48, 3)
    assert fs.total_frames == 90 + 6 and fs.sources == [str(synthetic_video), str(folder)]
    assert {f.shape for f in fs.raw_heldout} == {(144, 192, 3), (50, 70, 3)}  # as decoded, per source
    # every folder image that is not held out is a calibration frame: the folder got its share
    imgs = [
        cv2.resize(cv2.imread(str(p)), (48, 32), interpolation=cv2.INTER_AREA)
        for p in sorted(folder.glob("*.png"))
    ]
    in_calib = sum(any(np.array_equal(im, c) for c in fs.calib) for im in imgs)
    in_held = sum(any(np.array_equal(im, h) for h in fs.heldout) for im in imgs)
    assert in_calib >= 3 and in_calib + in_held <= 6
    # held-out frames are never calibration frames
    assert not any(np.array_equal(h, c) for h in fs.heldout for c in fs.calib)
    # preprocessing equals the reference applied to the model-size frames; the hash is deterministic
    x = to_tensor(fs.calib)
    np.testing.assert_array_equal(x, preprocess(fs.calib, (32, 48)).numpy())
    again = load_frames([synthetic_video, folder], (32, 48), n_calib=16, n_heldout=6)
    assert tensor_sha256(to_tensor(again.calib)) == tensor_sha256(x)
    assert tensor_sha256(x[:-1]) != tensor_sha256(x)


def test_short_sources_shrink_with_a_note(synthetic_video):
    fs = load_frames([synthetic_video], (32, 32), n_calib=128, n_heldout=32)
    assert len(fs.calib) + len(fs.heldout) <= 90 and len(fs.heldout) == 18 and fs.notes


@pytest.mark.parametrize("n", [1, 3])
def test_too_few_frames(tmp_path, n):
    for i in range(n):
        cv2.imwrite(str(tmp_path / f"{i}.jpg"), np.full((20, 20, 3), 40 * i + 10, np.uint8))
    with pytest.raises(InputError, match="usable frames"):
        load_frames([tmp_path], (16, 16), n_calib=8, n_heldout=2)


@pytest.mark.realdata
def test_video_shorter_than_its_header():
    """opencv-doc's tree.avi claims 444 frames but 68 decode: sampling stays within what decodes."""
    from conftest import opencv_sample

    fs = load_frames([opencv_sample("tree.avi")], (32, 32), n_calib=16, n_heldout=4)
    assert fs.total_frames == 68
    assert len(fs.calib) == 16 and len(fs.heldout) == 4
    assert len({f.tobytes() for f in fs.calib}) == 16  # distinct frames, not one repeated

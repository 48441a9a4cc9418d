"""The learning docs' real-footage probe folders are rebuilt from opencv-doc the same way every time."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import OPENCV_DATA, opencv_sample
from edge_vsd.benchmarks import probe_folders as pf

pytestmark = pytest.mark.realdata


def test_the_folders_hold_evenly_spread_frames_and_centre_crops_and_rebuild_identically(tmp_path):
    video = opencv_sample("vtest.avi")
    opencv_sample("baboon.jpg")
    assert pf.main(["--out", str(tmp_path / "a"), "--samples", str(OPENCV_DATA)]) == 0
    frames = sorted((tmp_path / "a" / "vtest_small").glob("*.png"))
    photos = sorted((tmp_path / "a" / "photos_small").glob("*.png"))
    assert len(frames) == pf.VIDEO_FRAMES and [p.stem for p in photos] == sorted(pf.PHOTOS)
    assert {cv2.imread(str(p)).shape for p in frames + photos} == {(*pf.SIZE, 3)}

    # the first and the last frame of the video are the folder's first and last
    cap = cv2.VideoCapture(str(video))
    first, last = None, None
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        first = frame if first is None else first
        last = frame
    for got, want in ((frames[0], first), (frames[-1], last)):
        resized = cv2.resize(want, pf.SIZE[::-1], interpolation=cv2.INTER_AREA)
        assert np.array_equal(cv2.imread(str(got)), resized)
    # baboon is square: its centre 3:4 band keeps full width, drops top and bottom equally
    baboon = cv2.imread(str(OPENCV_DATA / "baboon.jpg"))
    h, w = baboon.shape[:2]
    band = baboon[(h - w * 3 // 4) // 2 :][: w * 3 // 4]
    want = cv2.resize(band, pf.SIZE[::-1], interpolation=cv2.INTER_AREA)
    assert np.array_equal(cv2.imread(str(tmp_path / "a" / "photos_small" / "baboon.png")), want)

    pf.main(["--out", str(tmp_path / "b"), "--samples", str(OPENCV_DATA)])
    for p in frames + photos:
        assert p.read_bytes() == (tmp_path / "b" / p.relative_to(tmp_path / "a")).read_bytes()


def test_a_missing_sample_folder_is_a_one_line_exit(tmp_path):
    with pytest.raises(SystemExit, match="vtest.avi: missing"):
        pf.main(["--out", str(tmp_path), "--samples", str(tmp_path / "nowhere")])

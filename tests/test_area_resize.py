"""The area resize as matrix products, against OpenCV's INTER_AREA, and OpenVINO running it in its graph."""

from __future__ import annotations

import cv2
import edge_vsd.runtimes as rt
import numpy as np
import pytest
from edge_vsd.runtimes import area_resize
from toy_artifact import make_toy_artifact


def _numpy_resize(frame: np.ndarray, dst_hw: tuple[int, int]) -> np.ndarray:
    (sh, sw), (dh, dw) = frame.shape[:2], dst_hw
    wy, wx = area_resize.block_weights(sh, dh), area_resize.block_weights(sw, dw)
    rows = frame.astype(np.float64).reshape(sh // wy.shape[1], wy.shape[1], sw, 3)
    rows = np.einsum("qp,rpwc->rqwc", wy, rows).reshape(dh, sw // wx.shape[1], wx.shape[1], 3)
    return np.einsum("qp,hrpc->hrqc", wx, rows).reshape(dh, dw, 3)


@pytest.mark.parametrize(
    "src, dst",
    [((480, 640), (224, 224)), ((576, 768), (224, 224)), ((90, 120), (48, 80)), ((448, 448), (224, 224))],
)
def test_block_products_match_opencv_area_resize(src, dst):
    frame = np.random.default_rng(0).integers(0, 256, (*src, 3), dtype=np.uint8)
    assert area_resize.foldable(src, dst)
    ours = _numpy_resize(frame, dst)
    want = cv2.resize(frame, dst[::-1], interpolation=cv2.INTER_AREA).astype(np.float64)
    off = np.abs(ours - want)  # OpenCV rounds its sums to uint8 (ties to even, or up on its 2x path)
    assert off.max() < 1 and (off > 0.5 + 1e-4).mean() < 0.005
    np.testing.assert_allclose(area_resize.block_weights(src[0], dst[0]).sum(1), 1.0, rtol=1e-6)


def test_what_folds():
    assert not area_resize.foldable((224, 224), (224, 224))  # no resize at all
    assert not area_resize.foldable((200, 640), (224, 224))  # an axis grows: OpenCV's area is bilinear there
    assert not area_resize.foldable((479, 640), (224, 224))  # 479 and 224 share no factor: q = 224
    assert area_resize.foldable((224, 640), (224, 224))  # one axis unchanged


def _frames(n, h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def test_openvino_resizes_in_its_graph_once_a_size_repeats(tmp_path):
    pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install edge-vsd[openvino])")
    art = make_toy_artifact(tmp_path / "a", batch=1, image_size=(48, 80), patch=16, dim=24)
    assert not rt.load(art, backend="openvino", threads=1).backend._resizes  # fp32 in f32: exact, OpenCV's
    enc = rt.load(art, backend="openvino", threads=1, fold_resize=True)
    opencv = rt.load(art, backend="openvino", threads=1, fold_resize=False)
    frames = _frames(3, 90, 120)
    first = enc(frames[0])
    assert not enc.backend._resizing  # one sighting of a size compiles nothing
    second = enc(frames[1])
    assert list(enc.backend._resizing) == [(90, 120)]
    assert enc.prepare(frames[2], resize_in_engine=True).shape == (1, 90, 120, 3)  # frames go in as they are
    batch = enc(frames)  # a batch of that size, one engine call per frame (static batch 1)
    want = opencv(frames)
    assert not opencv.backend._resizing
    scale = np.abs(want.patches).max()
    np.testing.assert_allclose(first.cls, want.cls[:1], atol=1e-5 * scale)  # OpenCV's path, unchanged
    # in the graph: OpenCV's resize but for a grey level at a few pixels
    for got in (second.patches, batch.patches[1:2]):
        np.testing.assert_allclose(got, want.patches[1:2], atol=0.02 * scale)
    np.testing.assert_allclose(batch.patches, want.patches, atol=0.02 * scale)


def test_openvino_keeps_the_latest_resizing_models_and_skips_one_off_sizes(tmp_path):
    pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install edge-vsd[openvino])")
    art = make_toy_artifact(tmp_path / "a", batch=None, image_size=(48, 80), patch=16, dim=24)
    enc = rt.load(art, backend="openvino", threads=1, fold_resize=True)
    for h, w in [(96, 160), (144, 240), (96, 160), (144, 240)]:  # alternating sizes: never twice in a row
        enc(_frames(1, h, w))
    assert not enc.backend._resizing
    for h, w in [(96, 160), (96, 160), (144, 240), (144, 240), (192, 320), (192, 320)]:
        enc(_frames(2, h, w))
    assert list(enc.backend._resizing) == [(144, 240), (192, 320)]
    mixed = enc([_frames(1, 192, 320)[0], _frames(1, 96, 160)[0]])  # sizes differ: OpenCV resizes them
    assert mixed.cls.shape == (2, 24)


def test_latest_mode_stream_lets_openvino_resize_and_all_mode_keeps_opencv(tmp_path):
    # "latest" (live cameras) prepares each frame just before its inference, one at a time: the engine may
    # resize it; "all" prepares in decode threads, where OpenCV's resize overlaps inference
    pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install edge-vsd[openvino])")
    art = make_toy_artifact(tmp_path / "a", batch=1, image_size=(48, 80), patch=16, dim=24)
    frames = list(_frames(6, 90, 120, seed=3))
    want = rt.load(art, backend="openvino", threads=1, fold_resize=False)(frames)
    scale = np.abs(want.patches).max()
    for mode, folds in (("latest", True), ("all", False)):
        enc = rt.load(art, backend="openvino", threads=1, fold_resize=True)
        with enc.stream(iter(frames), mode=mode, queue_size=len(frames)) as stream:  # a queue that drops none
            got = {item.index: item.features.patches for item in stream}
        assert sorted(got) == list(range(len(frames)))
        assert bool(enc.backend._resizing) == folds, mode
        for i, patches in got.items():
            np.testing.assert_allclose(patches, want.patches[i], atol=0.02 * scale)


def test_latest_mode_batch_is_resized_by_one_path(tmp_path):
    # a batch whose first frame comes before the engine resizes that size and whose second comes after
    # must not mix uint8 frames at two sizes
    pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install edge-vsd[openvino])")
    art = make_toy_artifact(tmp_path / "a", batch=None, image_size=(48, 80), patch=16, dim=24)
    enc = rt.load(art, backend="openvino", threads=1, fold_resize=True)
    frames = list(_frames(7, 90, 120, seed=4))
    want = rt.load(art, backend="openvino", threads=1, fold_resize=False)(frames)
    with enc.stream(iter(frames), mode="latest", queue_size=len(frames), batch_size=2) as stream:
        got = {item.index: item.features.patches for item in stream}
    assert sorted(got) == list(range(len(frames))) and stream.error is None
    scale = np.abs(want.patches).max()
    for i, patches in got.items():
        np.testing.assert_allclose(patches, want.patches[i], atol=0.02 * scale)

"""Runtime preprocessing (numpy/OpenCV) against the training-side reference (torch)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from edge_vsd.runtimes.errors import RuntimeInputError
from edge_vsd.runtimes.manifest import input_spec, validate_manifest
from edge_vsd.runtimes.preprocess import Preprocessor, as_frame_list
from toy_artifact import toy_manifest


def _spec(image_size=(64, 64), **input_overrides):
    manifest = toy_manifest(image_size, 16, 8, 1, {"encoder.onnx": {"sha256": "0" * 64, "bytes": 1}})
    manifest["input"].update(input_overrides)
    return input_spec(validate_manifest(manifest))


def _frames(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _reference(frames_bgr, image_size):
    reference = pytest.importorskip(
        "edge_vsd.data.preprocess", reason="the reference preprocessing needs torch"
    )
    pytest.importorskip("torch")
    return reference.preprocess(frames_bgr, image_size).numpy()


@pytest.mark.parametrize("image_size", [(64, 64), (112, 96)])
@pytest.mark.parametrize(
    "shape",
    [(480, 640, 3), (64, 64, 3), (112, 96, 3), (30, 50, 3), (3, 120, 160, 3), (1, 77, 99, 3)],
    ids=["downscale", "square", "exact-size-nonsquare", "upscale", "batch", "batch-of-one"],
)
def test_bgr_frames_match_the_training_reference(image_size, shape):
    frames = _frames(shape)
    ours = Preprocessor(_spec(image_size))(frames)
    ref = _reference(frames, image_size)
    assert ours.dtype == np.float32
    assert ours.shape == ref.shape == (1 if len(shape) == 3 else shape[0], 3, *image_size)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    "shape,code",
    [((100, 90), cv2.COLOR_GRAY2BGR), ((100, 90, 1), cv2.COLOR_GRAY2BGR), ((77, 99, 4), cv2.COLOR_BGRA2BGR)],
    ids=["gray", "gray-1ch", "bgra"],
)
def test_gray_and_bgra_frames_are_converted_then_match_the_reference(shape, code):
    frame = _frames(shape, seed=1)
    ours = Preprocessor(_spec())(frame)
    ref = _reference(cv2.cvtColor(frame, code), (64, 64))
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-5)


def test_list_of_mixed_sizes_and_kinds_equals_per_frame_results():
    prep = Preprocessor(_spec())
    frames = [_frames((90, 120, 3), 2), _frames((50, 40), 3), _frames((64, 64, 4), 4)]
    batch = prep(frames)
    assert batch.shape == (3, 3, 64, 64)
    for i, frame in enumerate(frames):
        np.testing.assert_array_equal(batch[i], prep(frame)[0])


def test_manifest_fields_are_followed_linear_bgr_scale_mean_std():
    spec = _spec(
        (32, 48), interpolation="linear", color="BGR", scale=1 / 127.5, mean=[1, 1, 1], std=[1, 1, 1]
    )
    frame = _frames((70, 90, 3), 5)
    expected = cv2.resize(frame, (48, 32), interpolation=cv2.INTER_LINEAR).astype(np.float64) / 127.5 - 1
    ours = Preprocessor(spec)(frame)
    np.testing.assert_allclose(ours[0], expected.transpose(2, 0, 1), rtol=0, atol=1e-6)


def test_float16_input_dtype():
    ours = Preprocessor(_spec(dtype="float16"))(_frames((64, 64, 3)))
    assert ours.dtype == np.float16


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((10, 10, 3), np.float32),
        np.zeros((2, 10, 10, 2), np.uint8),
        np.zeros((2, 2, 2, 2, 3), np.uint8),
        [],
    ],
    ids=["float", "2-channels", "5-dims", "empty-list"],
)
def test_bad_frames_raise_one_line_input_errors(bad):
    with pytest.raises(RuntimeInputError) as err:
        Preprocessor(_spec())(bad)
    assert "\n" not in str(err.value)


def test_gray_batch_splits_into_frames():
    assert len(as_frame_list(np.zeros((5, 20, 30), np.uint8))) == 5
    assert len(as_frame_list(np.zeros((20, 30), np.uint8))) == 1


def test_two_channel_frame_is_refused_not_read_as_gray_frames():
    with pytest.raises(RuntimeInputError, match=r"\(2 channels\)"):
        Preprocessor(_spec())(np.zeros((48, 64, 2), np.uint8))

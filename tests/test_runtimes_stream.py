"""Streaming extraction: video files, image folders, stride, truncated and broken sources, live dropping."""

from __future__ import annotations

import logging
import threading
import time

import cv2
import edge_vsd.runtimes as rt
import numpy as np
import onnx
import pytest
from conftest import opencv_sample
from edge_vsd.runtimes.cpuinfo import usable_cores
from edge_vsd.runtimes.errors import RuntimeInputError
from edge_vsd.runtimes.manifest import file_entry, write_manifest
from toy_artifact import make_toy_artifact, toy_manifest, toy_model

from edge_vsd.data.synthetic import make_frames, write_video


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    art = make_toy_artifact(tmp_path_factory.mktemp("art") / "toy", batch=None, image_size=(48, 64))
    return rt.load(art, threads=1)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("vid") / "v.avi", n_frames=24, height=72, width=96, fps=25.0)


def _decode_all(path):
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            return frames
        frames.append(frame)


def test_video_stream_yields_every_frame_with_features_equal_to_direct_calls(encoder, video):
    stream = encoder.stream(video)
    items = list(stream)
    frames = _decode_all(video)
    assert [i for i, _, _ in items] == list(range(24))
    np.testing.assert_allclose([t for _, t, _ in items], np.arange(24) / 25.0, atol=1e-6)
    direct = encoder(frames)
    np.testing.assert_allclose(np.stack([f.cls for _, _, f in items]), direct.cls, atol=1e-5)
    np.testing.assert_allclose(np.stack([f.patches for _, _, f in items]), direct.patches, atol=1e-5)
    assert items[0][2].patches.shape == (3, 4, 32)
    assert stream.frames_processed == 24 and not stream.ended_early and stream.frames_dropped == 0


def test_stride_and_max_frames(encoder, video):
    stream = encoder.stream(video, stride=5)
    assert [i for i, _, _ in stream] == [0, 5, 10, 15, 20]
    assert stream.expected_frames == 5 and not stream.ended_early
    short = encoder.stream(video, stride=2, max_frames=3)
    assert [i for i, _, _ in short] == [0, 2, 4] and not short.ended_early
    with pytest.raises(RuntimeInputError, match="stride"):
        encoder.stream(video, stride=0)


def test_keep_frames_returns_the_decoded_frame(encoder, video):
    items = list(encoder.stream(video, stride=8, keep_frames=True))
    frames = _decode_all(video)
    for index, _, feats in items:
        np.testing.assert_array_equal(feats.frame, frames[index])


@pytest.mark.realdata
def test_video_files_decode_on_one_thread_on_two_cores_with_the_same_frames(encoder, monkeypatch):
    import edge_vsd.runtimes.sources as sources

    monkeypatch.setattr(sources.os, "cpu_count", lambda: 16)
    assert sources.decode_threads() is None  # the decoder's own default where cores are spare
    monkeypatch.setattr(sources.os, "cpu_count", lambda: 2)
    assert sources.decode_threads() == 1
    vtest = opencv_sample("vtest.avi")  # MPEG-4, which FFmpeg decodes with threads by default
    items = list(encoder.stream(vtest, max_frames=40, keep_frames=True))
    frames = _decode_all(vtest)[:40]
    assert len(items) == 40
    for index, _, feats in items:
        np.testing.assert_array_equal(feats.frame, frames[index])


def test_image_folder_natural_order_and_unreadable_images(encoder, tmp_path, caplog):
    frames = make_frames(5, 40, 60, seed=1)
    for i, frame in enumerate(frames):
        cv2.imwrite(
            str(tmp_path / f"frame_{i * 5}.png"), frame
        )  # frame_0, frame_5, frame_10 ...: natural order
    (tmp_path / "frame_7.jpg").write_bytes(b"broken jpeg")
    (tmp_path / "notes.txt").write_text("not an image")
    with caplog.at_level(logging.WARNING, logger="edge_vsd.runtimes"):
        stream = encoder.stream(tmp_path, fps=10)
        items = list(stream)
    assert [i for i, _, _ in items] == [0, 1, 3, 4, 5]  # position 2 (frame_7.jpg) is unreadable
    np.testing.assert_allclose([t for _, t, _ in items], [0, 0.1, 0.3, 0.4, 0.5])
    np.testing.assert_allclose(items[4][2].cls, encoder(frames[4]).cls[0], atol=1e-5)
    assert stream.source.unreadable == 1 and stream.ended_early
    assert "unreadable" in stream.summary() and "frame_7.jpg" in caplog.text


def test_single_image_file_is_a_one_frame_source(encoder, tmp_path):
    cv2.imwrite(str(tmp_path / "one.png"), make_frames(1, 40, 60)[0])
    assert [i for i, _, _ in encoder.stream(tmp_path / "one.png")] == [0]


def test_truncated_video_ends_early_without_crashing(encoder, video, tmp_path, caplog):
    data = video.read_bytes()
    broken = tmp_path / "truncated.avi"
    broken.write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.WARNING, logger="edge_vsd.runtimes"):
        stream = encoder.stream(broken)
        n = sum(1 for _ in stream)
    assert 0 < n < 24
    assert stream.frames_processed == n and stream.ended_early
    assert f"{n} of 24 expected frames processed" in caplog.text
    assert f"{n} frames processed" in stream.summary()


@pytest.mark.realdata
def test_deliberately_broken_sample_video_does_not_crash(encoder):
    stream = encoder.stream(opencv_sample("Megamind_bugy.avi"), stride=10)
    n = sum(1 for _ in stream)
    assert n > 0 and stream.frames_processed == n


def test_unreadable_sources_raise_at_open(encoder, tmp_path):
    (tmp_path / "fake.mp4").write_text("this is not a video")
    (tmp_path / "empty").mkdir()
    for source, message in [
        (tmp_path / "missing.mp4", "no such file"),
        (tmp_path / "fake.mp4", "fake.mp4"),
        (tmp_path / "empty", "no images"),
        (97, "camera 97"),
    ]:
        with pytest.raises(RuntimeInputError, match=message) as err:
            encoder.stream(source)
        assert "\n" not in str(err.value)


def test_breaking_out_early_stops_the_decode_thread(encoder, video):
    before = threading.active_count()
    stream = encoder.stream(video, queue_size=1)
    for index, _, _ in stream:
        if index == 2:
            break
    stream.close()
    assert not stream._thread.is_alive()
    assert threading.active_count() <= before
    assert not stream.ended_early  # the caller stopped it: not reported as a failure


def test_latest_mode_drops_oldest_frames_instead_of_lagging(encoder, video):
    stream = encoder.stream(video, mode="latest", batch_size=1)
    assert stream.queue_size == 1  # latest mode's default
    indices = []
    for index, _, _ in stream:
        indices.append(index)
        time.sleep(0.05)  # a slow consumer
    assert stream.frames_dropped > 0
    assert stream.frames_processed + stream.frames_dropped == stream.frames_decoded == 24
    # in order, and the newest frame is always delivered (the first one is not: on a busy machine the
    # decoder can reach frame 1 before the consumer takes frame 0, and then frame 0 is the oldest to drop)
    assert indices == sorted(indices) and indices[-1] == 23
    assert len(set(range(24)) - set(indices)) == stream.frames_dropped  # dropped numbers are skipped
    assert "dropped" in stream.summary()


def test_file_defaults_to_all_mode_and_loses_nothing_with_a_slow_consumer(encoder, video):
    stream = encoder.stream(video, queue_size=2)
    assert stream.mode == "all"
    indices = []
    for index, _, _ in stream:
        indices.append(index)
        time.sleep(0.01)
    assert indices == list(range(24)) and stream.frames_dropped == 0


def test_parallel_preprocessing_workers_give_identical_results_in_order(encoder, video):
    serial = list(encoder.stream(video, workers=1))
    parallel_stream = encoder.stream(video, workers=3, queue_size=4)
    parallel = list(parallel_stream)
    assert [i for i, _, _ in parallel] == [i for i, _, _ in serial] == list(range(24))
    for (_, _, a), (_, _, b) in zip(serial, parallel, strict=True):
        np.testing.assert_array_equal(a.patches, b.patches)
    assert parallel_stream._pool is None  # shut down with the stream


@pytest.fixture(scope="module", params=["openvino", "onnxruntime"])
def ov_encoder(request, tmp_path_factory):
    """An encoder whose engine keeps two requests in flight: OpenVINO's throughput mode, or two ONNX
    Runtime sessions of one thread each."""
    if request.param == "openvino":
        pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install edge-vsd[openvino])")
    if usable_cores() < 2:
        pytest.skip("one core: one request at a time")
    art = make_toy_artifact(tmp_path_factory.mktemp("ov") / "toy", batch=1, image_size=(48, 64))
    enc = rt.load(art, backend=request.param, threads=2)
    yield enc
    enc.close()


def test_files_keep_several_inferences_in_flight_with_the_same_features(ov_encoder, video):
    pipe = ov_encoder.pipeline()
    assert pipe is not None and pipe.depth >= 2
    pipe.close()
    assert not ov_encoder.stream(video).pipelined  # 24 frames: too few to pay for the second model
    one = list(ov_encoder.stream(video, pipelined=False))
    stream = ov_encoder.stream(video, pipelined=True)
    many = list(stream)
    assert stream.pipelined and stream.in_flight == pipe.depth and stream.stop_reason == "end"
    assert [i for i, _, _ in many] == [i for i, _, _ in one] == list(range(24))
    for (_, _, a), (_, _, b) in zip(one, many, strict=True):
        np.testing.assert_allclose(b.cls, a.cls, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(b.patches, a.patches, rtol=1e-5, atol=1e-6)
    assert all(item.timing.inference_ms > 0 for item in many)
    assert not ov_encoder.stream(video, mode="latest").pipelined  # live pace: one at a time, least latency


def test_in_flight_frames_still_honour_max_frames_stop_and_an_early_break(ov_encoder, video):
    stream = ov_encoder.stream(video, max_frames=7, pipelined=True)
    assert [i for i, _, _ in stream] == list(range(7)) and stream.stop_reason == "max_frames"
    assert stream.frames_processed == 7 and not stream.ended_early
    stream = ov_encoder.stream(video, pipelined=True)
    seen = []
    for index, _, _ in stream:
        seen.append(index)
        if index == 3:
            stream.stop()
    # frames already in inference when stop() came are delivered, in order, and nothing after them
    assert seen == list(range(len(seen))) and 4 <= len(seen) <= 4 + stream.in_flight
    assert stream.stop_reason == "stopped"
    stream = ov_encoder.stream(video, pipelined=True)
    items = iter(stream)
    assert [next(items)[0] for _ in range(3)] == [0, 1, 2]
    items.close()  # the caller stops reading with a request still in flight
    assert stream.stop_reason == "caller"


def test_a_finished_result_is_not_held_back_waiting_for_the_next_frame(ov_encoder):
    """A source that gives frame k+1 only once item k has come out (a slow camera fed as an iterable, or a
    consumer that must answer before the next frame): every frame arrives, none waits for its successor."""
    received = [threading.Event() for _ in range(6)]

    def frames():
        for k in range(6):
            if k and not received[k - 1].wait(timeout=10):
                return  # item k-1 never came: the stream held it back
            yield np.full((72, 96, 3), 20 * k, np.uint8)

    stream = ov_encoder.stream(frames())
    got = []
    for index, _, _ in stream:
        got.append(index)
        received[index].set()
    assert stream.pipelined and got == list(range(6)) and stream.stop_reason == "end"


def test_an_engine_refusing_a_batch_still_delivers_the_batches_before_it(ov_encoder, tmp_path):
    """The manifest says any batch size but the graph takes 1, so the first batch of 2 frames fails at
    submit: every frame that went into inference before it still comes out, before the one-line error."""
    art = tmp_path / "mismatch"
    art.mkdir()
    onnx_path = art / "encoder.onnx"
    onnx.save(toy_model((48, 64), 16, 32, 0, 0.0, 1), onnx_path)
    write_manifest(art, toy_manifest((48, 64), 16, 32, None, {"encoder.onnx": file_entry(onnx_path)}))
    enc = rt.load(art, backend=ov_encoder.backend_name.split("-")[0], threads=2)

    first_out, all_queued = threading.Event(), threading.Event()

    def frames():
        yield np.zeros((72, 96, 3), np.uint8)
        first_out.wait(30)  # the first frame goes into inference alone and comes out
        yield from (np.zeros((72, 96, 3), np.uint8) for _ in range(6))
        all_queued.set()  # reached once the decoder has queued the sixth frame

    got = []
    stream = enc.stream(frames(), batch_size=2)
    with pytest.raises(RuntimeInputError, match="failed on"):
        for index, _, _ in stream:
            got.append(index)
            if index == 0:  # hold the consumer until the rest wait in the queue, so the next batch has 2
                first_out.set()
                all_queued.wait(30)
    # the frames before the refused batch came out in order (the engine may refuse it at submit, with
    # another batch still in inference, or when its result is taken)
    assert got and got == list(range(len(got))) and stream.frames_processed == len(got)
    enc.close()

"""Live sources against a real MJPEG HTTP server on 127.0.0.1: capture clocks, latest/all policy, drops,
stalls, a server restart, corrupt frames, a source lost for good, and Ctrl-C / SIGTERM / SIGKILL on extract.
Every server is bounded in frames and seconds; every subprocess has a timeout."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import edge_vsd.runtimes as rt
import numpy as np
import pytest
from edge_vsd.runtimes.errors import RuntimeInputError
from edge_vsd.runtimes.sources import GSTREAMER_HINT, MJPEGSource, has_gstreamer
from edge_vsd.runtimes.writer import load_features, partial_dir, read_meta
from mjpeg_server import MJPEGServer
from toy_artifact import make_toy_artifact

from edge_vsd.cli import main

FAST = {"read_timeout": 1.0, "backoff": 0.05}  # reconnect quickly in tests


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    return make_toy_artifact(tmp_path_factory.mktemp("art") / "toy", batch=1, image_size=(48, 64))


@pytest.fixture(scope="module")
def encoder(artifact):
    return rt.load(artifact, threads=1)


def _indices(stream):
    return [index for index, _, _ in stream]


def test_http_mjpeg_is_parsed_here_with_true_capture_times(encoder):
    with MJPEGServer(fps=25, max_frames=200) as server:
        stream = encoder.stream(server.url, max_frames=12, **FAST)
        assert isinstance(stream.source, MJPEGSource) and stream.mode == "latest" and stream.queue_size == 1
        time.sleep(0.6)  # the caller starts late: frames must not come out in a burst of fresh timestamps
        items = list(stream)
    assert len(items) == 12 and stream.stop_reason == "max_frames" and not stream.lost
    indices = [it.index for it in items]
    assert indices == sorted(indices) and indices[0] > 5  # the stale frames were dropped, and counted
    assert stream.frames_dropped >= indices[-1] + 1 - 12  # every skipped number was a counted drop
    done = stream.frames_processed + stream.frames_dropped
    assert done <= stream.frames_decoded <= done + 2  # + the queued frame and one in flight at close
    got = np.array([it.timing.wall_time for it in items])
    sent = np.array([server.sent_times[it.index] for it in items])
    assert all(it.timestamp == it.timing.wall_time and it.timing.age_s >= 0 for it in items)
    # stamped when the camera sent them (not in a burst when the caller got round to them)
    assert np.median(np.abs(got - sent)) < 0.1
    assert abs((got[-1] - got[0]) - (sent[-1] - sent[0])) < 0.25 and sent[-1] - sent[0] > 0.3


def test_all_mode_on_a_live_source_loses_nothing(encoder):
    with MJPEGServer(fps=100, max_frames=60) as server:
        stream = encoder.stream(server.url, mode="all", max_frames=40, **FAST)
        indices = []
        for index, _, _ in stream:
            indices.append(index)
            time.sleep(0.02)  # slower than the camera
    assert indices == list(range(40)) and stream.frames_dropped == 0


def test_dropped_connection_reconnects_and_is_logged(encoder, caplog):
    with MJPEGServer(fps=100, max_frames=120, close_at={15}) as server, caplog.at_level(logging.INFO):
        stream = encoder.stream(server.url, mode="all", max_frames=40, reconnect=3, **FAST)
        indices = _indices(stream)
    assert len(indices) == 40 and stream.stop_reason == "max_frames" and not stream.lost
    assert server.connections == 2 and stream.source.drops == 1 and stream.source.reconnects == 1
    assert [k for _, k, _ in stream.source.events] == ["drop", "reconnect"]
    assert "drop: the server closed the stream" in caplog.text and "reconnect" in caplog.text
    assert "1 connection drops, 1 reconnects" in stream.summary()


def test_a_stall_becomes_a_drop_after_the_read_timeout(encoder):
    with MJPEGServer(fps=50, max_frames=100, stall_at={8}, stall_s=8.0) as server:
        stream = encoder.stream(server.url, mode="all", max_frames=20, read_timeout=0.5, backoff=0.05)
        start = time.monotonic()
        items = list(stream)
        elapsed = time.monotonic() - start
    assert len(items) == 20 and stream.source.drops == 1 and stream.source.reconnects == 1
    assert "stall" in stream.source.events[0][2]
    gap = max(np.diff([it.timing.mono_time for it in items]))
    assert gap >= 0.5 and elapsed < 7.0, (gap, elapsed)  # resumed without waiting out the 8 s stall


def test_server_restart_and_the_stream_resumes(encoder):
    server = MJPEGServer(fps=50, max_frames=300)
    try:
        stream = encoder.stream(server.url, mode="all", max_frames=30, reconnect=20, **FAST)
        indices = []
        for index, _, _ in stream:
            indices.append(index)
            if len(indices) == 10:
                server.stop()  # the camera server goes away ...
                threading.Timer(0.6, server.start).start()  # ... and comes back on the same port
    finally:
        time.sleep(0.7)
        server.stop()
    assert len(indices) == 30 and indices == sorted(indices) and not stream.lost
    assert stream.source.reconnects == 1 and stream.source.drops == 1


def test_corrupt_frames_are_counted_not_renumbered(encoder, caplog):
    for content_length in (True, False):
        with MJPEGServer(fps=100, max_frames=25, corrupt_at={5, 6, 11}, content_length=content_length) as s:
            stream = encoder.stream(s.url, mode="all", max_frames=20, **FAST)
            indices = _indices(stream)
        assert indices == [i for i in range(23) if i not in (5, 6, 11)], content_length
        assert stream.source.unreadable == 3 and "3 unreadable" in stream.summary()
    assert "frame 5 could not be decoded" in caplog.text


def test_live_source_lost_for_good_ends_the_stream_as_an_error(encoder):
    with MJPEGServer(fps=100, max_frames=12) as server:
        stream = encoder.stream(server.url, mode="all", reconnect=2, **FAST)
        n = len(_indices(stream))
    assert n == 12 and stream.lost and stream.ended_early
    assert "2 reconnect attempts failed" in str(stream.error) and server.url in str(stream.error)


def test_iterable_of_rgb_frames(encoder):
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (40, 60, 3), np.uint8) for _ in range(5)]
    gen = ((100.0 + k, f) for k, f in enumerate(frames))  # (timestamp, frame) pairs, e.g. ROS stamps
    items = list(encoder.stream(gen, color="rgb"))
    assert [it.index for it in items] == list(range(5)) and [it.timestamp for it in items] == [
        100.0 + k for k in range(5)
    ]
    expected = encoder([f[..., ::-1] for f in frames]).cls
    np.testing.assert_allclose(np.stack([it.features.cls for it in items]), expected, atol=1e-5)
    plain = list(encoder.stream(iter(frames)))  # bare BGR frames: epoch time at grab
    assert abs(plain[0].timestamp - time.time()) < 60
    np.testing.assert_allclose(plain[2].features.cls, encoder(frames[2]).cls[0], atol=1e-5)


@pytest.mark.skipif(has_gstreamer(), reason="this OpenCV has GStreamer; the message is for builds without it")
def test_gstreamer_pipeline_without_gstreamer_says_how_to_get_it(encoder):
    with pytest.raises(RuntimeInputError) as err:
        encoder.stream("videotestsrc num-buffers=5 ! videoconvert ! appsink")
    assert GSTREAMER_HINT in str(err.value) and "\n" not in str(err.value)


def test_unreachable_url_is_a_one_line_input_error(encoder):
    server = MJPEGServer()
    url = server.url
    server.stop()
    with pytest.raises(RuntimeInputError, match="cannot connect") as err:
        encoder.stream(url, read_timeout=1.0)
    assert "\n" not in str(err.value)


# -- extract on a live source -----------------------------------------------------------------------
def test_extract_exits_1_when_the_live_source_is_lost_but_keeps_what_it_recorded(artifact, tmp_path, capsys):
    out = tmp_path / "live.npz"
    with MJPEGServer(fps=100, max_frames=15) as server:
        rc = main(
            ["extract", server.url, "--artifact", str(artifact), "--out", str(out), "--mode", "all"]
            + ["--reconnect", "1", "--read-timeout", "1"]
        )
    assert rc == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("edge-vsd extract: error: ") and "live stream lost" in err[-1]
    assert "15 frames processed" in err[-1] and str(out) in err[-1]
    data = load_features(out)
    assert list(data["frame_index"]) == list(range(15)) and read_meta(data)["source_kind"] == "url"


def test_extract_on_a_live_source_stops_cleanly_at_max_frames(artifact, tmp_path, capsys):
    out = tmp_path / "live.npz"
    with MJPEGServer(fps=100, max_frames=100) as server:
        rc = main(
            ["extract", server.url, "--artifact", str(artifact), "--out", str(out), "--max-frames", "10"]
        )
    assert rc == 0 and len(load_features(out)["cls"]) == 10


def _extract_child(url: str, artifact: Path, out: Path, *extra: str) -> subprocess.Popen:
    # a shell that starts jobs in the background ignores SIGINT, and children inherit that
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edge_vsd.cli",
            "extract",
            url,
            "--artifact",
            str(artifact),
            "--out",
            str(out),
            "--shard-size",
            "5",
            "--mode",
            "all",
            *extra,
        ],
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _wait_for_shards(out: Path, proc: subprocess.Popen, n: int, timeout: float = 60.0) -> None:
    index = partial_dir(out) / "index.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if index.is_file() and len(json.loads(index.read_text())["shards"]) >= n:
            return
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"no {n} shards within {timeout} s: {proc.communicate()[1]}")


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_and_sigterm_finalise_the_recording(artifact, tmp_path, sig, code):
    out = tmp_path / "rec.npz"
    with MJPEGServer(fps=60, max_frames=3000) as server:
        proc = _extract_child(server.url, artifact, out)
        _wait_for_shards(out, proc, 2)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    lines = err.strip().splitlines()
    assert lines[-1].startswith(f"extract: stopped by {signal.Signals(sig).name}: "), lines
    folder = tmp_path / "rec"
    index = json.loads((folder / "index.json").read_text())
    data = load_features(out)
    assert (
        index["complete"] and index["stop_reason"] == "stopped" and index["frames"] == len(data["cls"]) >= 10
    )
    assert list(data["frame_index"]) == list(range(len(data["cls"])))  # all mode: nothing dropped
    assert f"{index['frames']} frames processed" in lines[-1]
    assert not partial_dir(out).exists()


def test_kill_9_leaves_finished_shards_readable(artifact, tmp_path):
    out = tmp_path / "rec.npz"
    with MJPEGServer(fps=60, max_frames=3000) as server:
        proc = _extract_child(server.url, artifact, out)
        _wait_for_shards(out, proc, 2)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    partial = partial_dir(out)
    data = load_features(partial)
    index = json.loads((partial / "index.json").read_text())
    assert not index["complete"] and len(data["cls"]) == index["frames"] >= 10
    assert list(data["frame_index"]) == list(range(index["frames"]))
    # the next run with the same --out keeps the killed run's shards aside instead of deleting them
    with MJPEGServer(fps=100, max_frames=100) as server:
        assert (
            main(["extract", server.url, "--artifact", str(artifact), "--out", str(out), "--max-frames", "3"])
            == 0
        )
    assert len(load_features(partial.with_name(partial.name + ".1"))["cls"]) == index["frames"]
    assert os.path.isfile(out)


def test_extract_duration_and_bad_live_flags(artifact, tmp_path, capsys):
    out = tmp_path / "d.npz"
    with MJPEGServer(fps=50, max_frames=500) as server:
        rc = main(
            ["extract", server.url, "--artifact", str(artifact), "--out", str(out), "--duration", "0.5"]
        )
        assert rc == 0
        data = load_features(out)
        assert 3 <= len(data["cls"]) and data["wall_time"][-1] - data["wall_time"][0] < 1.0
        assert np.all(data["age"] >= 0) and read_meta(data)["mode"] == "latest"
        capsys.readouterr()
        for flag, value in [("--queue-size", "0"), ("--read-timeout", "0"), ("--duration", "-1")]:
            assert (
                main(["extract", server.url, "--artifact", str(artifact), "--out", str(out), flag, value])
                == 2
            )
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and flag in err[0], err
    with pytest.raises(SystemExit):
        main(["extract", "0", "--artifact", str(artifact), "--out", str(out), "--reconnect", "never"])

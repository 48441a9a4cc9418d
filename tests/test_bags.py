"""ROS 2 bags in and out: bags written here with rosbags (MCAP and db3, raw and compressed, with a dropped
stretch) for train and extract, features written back as MCAP and read with rosbags and mcap, the bad
bags' one-line errors through the real CLI."""

from __future__ import annotations

import json
import re
import socket
import struct
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
import pytest
from edge_vsd.runtimes.bags import _BAYER, GAP_FACTOR, Bag, cdr_stamp, stamp_segments
from edge_vsd.runtimes.feature_mcap import FEATURES_TOPIC, FEATURES_TYPE, PCA_TOPIC, features_from_message
from edge_vsd.runtimes.writer import load_features
from toy_artifact import make_toy_artifact

from edge_vsd.cli import main
from edge_vsd.data.synthetic import make_frames

pytest.importorskip("rosbags", reason="needs the robot extra (pip install 'edge-vsd[robot]')")
from bag_fixtures import (  # noqa: E402 (writes bags with rosbags)
    START_NS,
    STORE,
    compressed_msg,
    image_msg,
    imu_msgs,
    mosaic,
    stamps,
    to_yuv422,
    write_bag,
)

CAM = "/cam/image_raw"
N = 40
DROP = (18, 30)  # frames 18..29 never recorded: a 1.3 s hole at 10 fps


@pytest.fixture(scope="module")
def frames():
    return make_frames(N, 72, 96)


@pytest.fixture(scope="module")
def true_stamps():
    return stamps(N, fps=10.0, drop=DROP)


@pytest.fixture(scope="module")
def bags(tmp_path_factory, frames, true_stamps):
    """The same frames and stamps as an MCAP file (compressed), a db3 file (raw bgr8) and a bag folder."""
    d = tmp_path_factory.mktemp("bags")
    raw = [image_msg(f, s) for f, s in zip(frames, true_stamps)]
    jpeg = [compressed_msg(f, s) for f, s in zip(frames, true_stamps)]
    return {
        "mcap": write_bag(d / "run.mcap", {f"{CAM}/compressed": jpeg, "/imu": imu_msgs(30)}),
        "db3": write_bag(d / "run.db3", {CAM: raw}, storage="sqlite3"),
        "folder": write_bag(d / "run_bag", {CAM: raw}, single_file=False),
    }


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    return make_toy_artifact(tmp_path_factory.mktemp("art") / "toy", batch=1, image_size=(48, 64))


PROGRESS_LINE = re.compile(r"^[\w ]+: +\d+% ")  # off a terminal the bar writes plain lines; how far it got


def _one_line_error(capsys, code: int) -> str:
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    lines = [line for line in err.splitlines() if not PROGRESS_LINE.match(line)]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# -- reading -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["mcap", "db3", "folder"])
def test_every_storage_gives_the_frames_and_their_exact_stamps(bags, kind, frames, true_stamps):
    bag = Bag(bags[kind])
    got = list(bag.frames())
    assert [g.stamp_ns for g in got] == [int(s) for s in true_stamps]  # exact, as integers
    assert [g.index for g in got] == list(range(N))
    err = np.abs(np.stack([g.frame for g in got]).astype(int) - frames).mean()
    assert err < (8 if kind == "mcap" else 1e-9)  # JPEG on the MCAP topic, raw bytes elsewhere


def _reference(frame: np.ndarray, enc: str) -> np.ndarray:
    if enc == "mono8":
        return cv2.cvtColor(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    return frame


@pytest.mark.parametrize(
    "enc", ["bgr8", "rgb8", "mono8", "bayer_rggb8", "bayer_bggr8", "bayer_gbrg8", "bayer_grbg8", "yuv422"]
)
def test_each_encoding_decodes_to_the_recorded_picture(tmp_path, frames, enc):
    f = frames[5]
    path = write_bag(tmp_path / "e.mcap", {CAM: [image_msg(f, START_NS + k, enc) for k in range(2)]})
    out = next(Bag(path).frames()).frame
    err = np.abs(out.astype(int) - _reference(f, enc)).mean()
    assert out.shape == f.shape and out.dtype == np.uint8
    if enc.startswith("bayer_"):  # demosaicing loses detail, but far less than reading the wrong pattern
        codes = list(_BAYER.values())
        wrong_code = codes[(codes.index(_BAYER[enc]) + 1) % len(codes)]
        wrong = cv2.cvtColor(mosaic(f, enc[6:10]), wrong_code)
        assert err < 8 and err < 0.3 * np.abs(wrong.astype(int) - f).mean()
    elif enc == "yuv422":  # chroma at half width; the other byte order would be far off
        wrong = cv2.cvtColor(to_yuv422(f, uyvy=True), cv2.COLOR_YUV2BGR_YUY2)
        assert err < 12 and err < 0.3 * np.abs(wrong.astype(int) - f).mean()
    else:
        assert err == 0


@pytest.mark.parametrize("little_endian", [True, False])
def test_stamps_read_from_the_cdr_bytes_match_the_deserialized_header(frames, little_endian):
    for msg in (image_msg(frames[0], START_NS + 1), compressed_msg(frames[1], START_NS + 999_999_999)):
        data = STORE.serialize_cdr(msg, msg.__msgtype__, little_endian=little_endian)
        back = STORE.deserialize_cdr(data, msg.__msgtype__).header.stamp
        assert (
            cdr_stamp(data)
            == back.sec * 10**9 + back.nanosec
            == msg.header.stamp.sec * 10**9 + (msg.header.stamp.nanosec)
        )


def test_gaps_split_the_stamps_and_jitter_does_not():
    period = 100_000_000
    jitter = np.array([0, 7, -9, 12, -3, 5, 0, -11, 8, 2]) * 1_000_000  # up to 12% of a period
    even = START_NS + np.arange(10) * period + jitter
    assert stamp_segments(even) == [(0, 10)]
    one_lost = np.delete(even, 4)  # a single missing frame: 2 periods > GAP_FACTOR periods
    assert GAP_FACTOR < 2 and stamp_segments(one_lost) == [(0, 4), (4, 9)]
    assert stamp_segments(stamps(20, drop=(5, 9))) == [(0, 5), (5, 20)]


# -- train ---------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_train_from_a_bag_never_pairs_across_the_dropped_stretch(bags, tmp_path, true_stamps):
    run = tmp_path / "run"
    args = ["train", "--video", str(bags["mcap"]), "--topic", f"{CAM}/compressed", "--out", str(run)]
    args += ["--steps", "2", "--img-size", "32", "--batch-size", "4", "--out-dim", "64"]
    assert main([*args, "--delta-seconds", "0.5"]) == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(np.isfinite(r["loss"]) for r in rows)
    index = json.loads((run / "frame_cache" / "index.json").read_text())
    assert index["topic"] == f"{CAM}/compressed"
    segs = [np.load(run / "frame_cache" / e["stamps"]) for e in index["videos"]]
    assert [len(s) for s in segs] == [DROP[0], N - DROP[0]]
    assert np.array_equal(np.concatenate(segs), true_stamps)  # the cache keeps the header stamps
    assert all(e["fps"] == pytest.approx(10.0, rel=1e-3) for e in index["videos"])

    from edge_vsd.data.cache import open_cache
    from edge_vsd.data.pairs import FramePairs

    pairs = FramePairs(open_cache(run / "frame_cache"), 32, delta_seconds=0.5)
    gaps = []
    for i in range(len(pairs)):
        v, a, b = pairs.pair(i)
        gaps.append((segs[v][b] - segs[v][a]) / 1e9)
    # every pair is 0.5 s apart on the header clock: none spans the 1.3 s hole
    assert len(gaps) == N and max(gaps) < 0.51 and min(gaps) > 0.49


def test_train_refuses_a_bag_with_two_cameras_and_no_topic(tmp_path, frames, true_stamps, capsys):
    msgs = [image_msg(f, s) for f, s in zip(frames[:4], true_stamps[:4])]
    bag = write_bag(tmp_path / "two.mcap", {"/left/image_raw": msgs, "/right/image_raw": msgs[:3]})
    code = main(["train", "--video", str(bag), "--out", str(tmp_path / "run"), "--steps", "1"])
    line = _one_line_error(capsys, code)
    assert "2 image topics, choose one with --topic" in line
    assert "/left/image_raw (sensor_msgs/msg/Image, 4 messages)" in line and "/right/image_raw" in line
    assert not (tmp_path / "run" / "frame_cache").exists()


# -- extract -------------------------------------------------------------------------------------------------
def test_extract_to_mcap_reads_back_with_rosbags_and_mcap(bags, artifact, tmp_path, true_stamps):
    out, ref = tmp_path / "feats.mcap", tmp_path / "feats.npz"
    for dest in (out, ref):
        assert main(["extract", str(bags["mcap"]), "--artifact", str(artifact), "--out", str(dest)]) == 0
    npz = load_features(ref)
    assert npz["stamp_ns"].dtype == np.int64 and np.array_equal(npz["stamp_ns"], true_stamps)

    from rosbags.highlevel import AnyReader

    with AnyReader([out]) as reader:  # rosbags decodes with the definitions stored in the file
        types = {c.topic: c.msgtype for c in reader.connections}
        assert types == {FEATURES_TOPIC: FEATURES_TYPE, PCA_TOPIC: "sensor_msgs/msg/CompressedImage"}
        feats, pics = [], []
        for conn, log_time, raw in reader.messages():
            msg = reader.deserialize(raw, conn.msgtype)
            stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
            assert stamp == log_time
            (feats if conn.topic == FEATURES_TOPIC else pics).append((stamp, msg))
    assert [s for s, _ in feats] == [int(s) for s in true_stamps]  # bit for bit
    assert sorted(s for s, _ in pics) == [int(s) for s in true_stamps]
    first = feats[0][1]
    assert (first.grid_height, first.grid_width, first.dim, first.patch_size) == (3, 4, 32, 16)
    assert (first.image_height, first.image_width, first.input_height, first.input_width) == (72, 96, 48, 64)
    cls = np.stack([features_from_message(m)[0] for _, m in feats])
    patches = np.stack([features_from_message(m)[1] for _, m in feats])
    assert np.array_equal(cls, npz["cls"].astype(np.float16))
    assert np.array_equal(patches, npz["patches"].astype(np.float16))
    picture = cv2.imdecode(np.asarray(pics[0][1].data, np.uint8), cv2.IMREAD_COLOR)
    assert pics[0][1].format == "jpeg" and picture.shape == (72, 192, 3)  # frame | PCA map

    from mcap.reader import make_reader
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    with open(out, "rb") as f:
        reader = make_reader(f)
        summary = reader.get_summary()
        schema = next(s for s in summary.schemas.values() if s.name == FEATURES_TYPE)
        assert schema.encoding == "ros2msg" and reader.get_header().profile == "ros2"
        rows = [(ch.topic, m.log_time, m.data) for _, ch, m in reader.iter_messages(topics=[FEATURES_TOPIC])]
        meta = next(reader.iter_metadata())
    # the schema text alone decodes the messages: no edge-vsd needed
    store = get_typestore(Stores.EMPTY)
    text = schema.data.decode()
    own, *deps = text.split("=" * 80 + "\n")
    store.register(get_types_from_msg(own, FEATURES_TYPE))
    for dep in deps:
        name, body = dep.split("\n", 1)
        store.register(get_types_from_msg(body, name.removeprefix("MSG: ").strip()))
    assert [t for _, t, _ in rows] == [int(s) for s in true_stamps]
    msg = store.deserialize_cdr(rows[7][2], FEATURES_TYPE)
    assert np.array_equal(np.asarray(msg.cls, np.uint16).view(np.float16), cls[7])
    assert meta.name == "edge_vsd" and meta.metadata["source"] == str(bags["mcap"])


@pytest.mark.parametrize("kind", ["db3", "folder"])
def test_extract_npz_records_the_header_stamp_of_each_row(bags, artifact, tmp_path, true_stamps, kind):
    out = tmp_path / "f.npz"
    args = ["extract", str(bags[kind]), "--artifact", str(artifact), "--out", str(out), "--stride", "3"]
    assert main(args) == 0
    data = load_features(out)
    assert np.array_equal(data["stamp_ns"], true_stamps[::3])
    assert np.array_equal(data["frame_index"], np.arange(0, N, 3))
    assert np.allclose(data["timestamp"], true_stamps[::3] / 1e9)


# -- bad bags ------------------------------------------------------------------------------------------------
def test_truncated_mcap_is_read_to_its_last_complete_chunk(tmp_path, artifact, caplog):
    big = make_frames(120, 96, 128)
    st = stamps(120)
    whole = write_bag(tmp_path / "whole.mcap", {CAM: [image_msg(f, s) for f, s in zip(big, st)]})
    data = whole.read_bytes()
    cut = tmp_path / "killed.mcap"
    cut.write_bytes(data[: len(data) * 6 // 10])  # the recorder was killed 60% of the way in
    out = tmp_path / "f.npz"
    assert main(["extract", str(cut), "--artifact", str(artifact), "--out", str(out)]) == 0
    (note,) = [r.getMessage() for r in caplog.records if "truncated MCAP" in r.getMessage()]
    lost = int(note.split("; the ")[1].split(" bytes after it")[0])
    assert 0 < lost < len(data) * 6 // 10 and "are lost" in note
    got = load_features(out)["stamp_ns"]
    assert 20 < len(got) < 72 and np.array_equal(got, st[: len(got)])  # a prefix, nothing invented


def _bad(tmp_path, name, topics):
    return write_bag(tmp_path / f"{name}.mcap", topics)


def test_bad_bags_get_one_line_errors(tmp_path, artifact, frames, true_stamps, capsys):
    f, s = frames[:6], true_stamps[:6]

    def extract(bag, *extra):
        out = tmp_path / f"{bag.stem}.npz"
        code = main(["extract", str(bag), "--artifact", str(artifact), "--out", str(out), *extra])
        return _one_line_error(capsys, code), out

    line, out = extract(_bad(tmp_path, "imu_only", {"/imu": imu_msgs(5)}))
    assert "no image topic" in line and "/imu (sensor_msgs/msg/Imu, 5 messages)" in line and not out.exists()
    mcap_out = tmp_path / "imu_only_feats.mcap"
    code = main(
        ["extract", str(tmp_path / "imu_only.mcap"), "--artifact", str(artifact), "--out", str(mcap_out)]
    )
    assert "no image topic" in _one_line_error(capsys, code)
    assert not list(tmp_path.glob("*imu_only_feats*"))  # neither the file nor a partial one

    two = {"/a/image_raw": [image_msg(x, t) for x, t in zip(f, s)]}
    two["/b/image_raw/compressed"] = [compressed_msg(x, t) for x, t in zip(f[:2], s[:2])]
    line, _ = extract(_bad(tmp_path, "two", two))
    assert "2 image topics, choose one with --topic" in line
    assert "/a/image_raw (sensor_msgs/msg/Image, 6 messages)" in line
    assert "/b/image_raw/compressed (sensor_msgs/msg/CompressedImage, 2 messages)" in line

    line, _ = extract(_bad(tmp_path, "imu_topic", {**two, "/imu": imu_msgs(3)}), "--topic", "/imu")
    assert "topic /imu is sensor_msgs/msg/Imu, not an image" in line

    small = cv2.resize(f[4], (48, 36))
    mixed = [image_msg(x, t) for x, t in zip([*f[:4], small, f[5]], s)]
    line, out = extract(_bad(tmp_path, "mixed", {CAM: mixed}))
    assert "message 4 is 48x36, earlier frames 96x72: mixed image sizes" in line
    assert np.array_equal(load_features(out)["stamp_ns"], s[:4])  # the frames before it are kept

    backwards = [image_msg(x, t) for x, t in zip(f, [*s[:3], s[1], *s[4:]])]
    line, _ = extract(_bad(tmp_path, "backwards", {CAM: backwards}))
    assert "message 3 has header stamp" in line and "stamps out of order" in line

    odd = [image_msg(x, t, "16UC1") for x, t in zip(f, s)]
    line, _ = extract(_bad(tmp_path, "odd", {CAM: odd}))
    assert "image encoding '16UC1' is not supported" in line and CAM in line

    cut_short = bytes(STORE.serialize_cdr(image_msg(f[1], s[1]), "sensor_msgs/msg/Image"))[:40]
    line, _ = extract(_bad(tmp_path, "garbled", {CAM: [image_msg(f[0], s[0]), (int(s[1]), cut_short)]}))
    assert "message 1 is not a valid sensor_msgs/msg/Image" in line

    line, _ = extract(_bad(tmp_path, "none", {CAM: mixed}), "--topic", "/nope")
    assert "no topic /nope in this bag" in line


def test_the_base_runtime_imports_no_bag_library_until_a_bag_is_opened():
    code = (
        "import sys, edge_vsd.runtimes.cli, edge_vsd.runtimes.sources, edge_vsd.data.video, edge_vsd.cli\n"
        "bad = [m for m in ('rosbags', 'mcap', 'foxglove', 'websockets') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_robot_extra_is_named(tmp_path, bags, monkeypatch):
    from edge_vsd.runtimes.errors import RuntimeInputError

    monkeypatch.setitem(sys.modules, "rosbags.typesys", None)  # as if the package were not installed
    hint = r"needs the package 'rosbags.typesys' \(pip install 'edge-vsd\[robot\]'\)"
    with pytest.raises(RuntimeInputError, match=hint):
        Bag(bags["mcap"])


# -- live view -----------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _connect(url: str, deadline: float):
    from websockets.sync.client import connect

    while True:
        try:
            return connect(url, subprotocols=["foxglove.sdk.v1", "foxglove.websocket.v1"], open_timeout=2)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_foxglove_port_in_use_is_a_one_line_error(bags, artifact, tmp_path, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = tmp_path / "f.npz"
        args = ["extract", str(bags["mcap"]), "--artifact", str(artifact), "--out", str(out)]
        line = _one_line_error(capsys, main([*args, "--foxglove", str(port)]))
    assert f"--foxglove {port}: cannot serve on 127.0.0.1:{port}" in line and not out.exists()


@pytest.mark.slow
def test_foxglove_live_view_serves_pca_pictures_and_latency_to_a_websocket_client(artifact, tmp_path):
    pytest.importorskip("websockets", reason="the test's WebSocket client (dev extra)")
    from mjpeg_server import MJPEGServer
    from rosbags.typesys import Stores, get_typestore

    port, out, result = _free_port(), tmp_path / "live.npz", {}
    with MJPEGServer(fps=25, max_frames=400) as camera:
        args = ["extract", camera.url, "--artifact", str(artifact), "--out", str(out)]
        args += ["--foxglove", str(port), "--duration", "5"]
        worker = threading.Thread(target=lambda: result.setdefault("code", main(args)))
        worker.start()
        pictures, latency = [], []
        try:
            with _connect(f"ws://127.0.0.1:{port}", time.monotonic() + 4) as ws:
                channels = {}
                while len(channels) < 2:
                    msg = json.loads(ws.recv(timeout=5))
                    if msg["op"] == "advertise":
                        channels.update({c["topic"]: c for c in msg["channels"]})
                pca, lat = channels[PCA_TOPIC], channels["/edge_vsd/latency"]
                assert pca["encoding"] == "cdr" and pca["schemaName"] == "sensor_msgs/msg/CompressedImage"
                subs = [{"id": 1, "channelId": pca["id"]}, {"id": 2, "channelId": lat["id"]}]
                ws.send(json.dumps({"op": "subscribe", "subscriptions": subs}))
                while len(pictures) < 3 or len(latency) < 3:
                    data = ws.recv(timeout=5)
                    if not isinstance(data, bytes) or data[0] != 0x01:  # 0x01: message data
                        continue
                    sub, log_time = struct.unpack_from("<IQ", data, 1)
                    (pictures if sub == 1 else latency).append((log_time, data[13:]))
        finally:
            worker.join(timeout=30)
    assert result.get("code") == 0 and load_features(out)["cls"].shape[0] > 0
    store = get_typestore(Stores.LATEST)
    for log_time, payload in pictures:
        msg = store.deserialize_cdr(payload, "sensor_msgs/msg/CompressedImage")
        assert msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec == log_time and msg.format == "jpeg"
        assert cv2.imdecode(np.asarray(msg.data, np.uint8), cv2.IMREAD_COLOR).shape == (72, 192, 3)
    for log_time, payload in latency:
        row = json.loads(payload)
        assert row["stamp_ns"] == log_time and row["age_ms"] >= 0 and row["inference_ms"] > 0


# -- export calibration and eval frames ----------------------------------------------------------------------
def test_export_calibration_and_eval_frames_come_from_the_bag_topic(bags, frames):
    from edge_vsd.benchmarks.data import load_frames as eval_frames
    from edge_vsd.export.calibration import load_frames as calib_frames

    decoded = np.stack([g.frame for g in Bag(bags["db3"]).frames()])  # raw bgr8: the recorded frames
    assert np.array_equal(decoded, frames)
    resized = [cv2.resize(f, (64, 48), interpolation=cv2.INTER_AREA) for f in frames]
    fs = calib_frames([bags["db3"]], (48, 64), n_calib=8, n_heldout=4, topic=CAM)
    assert fs.calib.shape == (8, 48, 64, 3) and len(fs.heldout) == 4 and fs.total_frames == N
    for x in [*fs.calib, *fs.heldout]:  # every frame is one of the topic's, resized as the reference does
        assert any(np.array_equal(x, r) for r in resized)

    got, info = eval_frames(bags["folder"], 8)
    assert info["kind"] == "bag" and got.shape == (8, 72, 96, 3)
    assert np.array_equal(got, frames[: 8 * (N // 8) : N // 8])


def test_topic_without_a_bag_is_refused(tmp_path, artifact, capsys):
    from edge_vsd.data.synthetic import write_video

    video = write_video(tmp_path / "v.avi", n_frames=8, height=48, width=64)
    code = main(
        ["train", "--video", str(video), "--topic", CAM, "--out", str(tmp_path / "run"), "--steps", "1"]
    )
    assert "--topic /cam/image_raw: applies to ROS 2 bags" in _one_line_error(capsys, code)
    code = main(
        ["extract", str(video), "--topic", CAM, "--artifact", str(artifact), "--out", str(tmp_path / "f.npz")]
    )
    assert "--topic applies to ROS 2 bags" in _one_line_error(capsys, code)


def test_prepare_caches_each_stretch_of_a_db3_bag(bags, tmp_path, capsys):
    out = tmp_path / "cache"
    assert main(["prepare", str(bags["db3"]), "--img-size", "32", "--out", str(out)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "segment" in line]
    assert len(lines) == 2 and f"{CAM} (segment 1): {DROP[0]} frames" in lines[0]
    assert f"{CAM} (segment 2): {N - DROP[0]} frames" in lines[1] and "@ 10 fps" in lines[1]

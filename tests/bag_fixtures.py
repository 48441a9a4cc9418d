"""Test bags written with rosbags: MCAP or sqlite3, raw or compressed images, stamps with a dropped gap."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

STORE = get_typestore(Stores.LATEST)
IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
START_NS = 1_700_000_000_123_456_789  # an epoch stamp float64 seconds cannot hold to the nanosecond


def stamps(n: int, fps: float = 10.0, drop: tuple[int, int] | None = None) -> np.ndarray:
    """n header stamps (ns) at `fps` with an odd nanosecond jitter; `drop=(a, b)`: the frames a..b-1 are
    missing (the camera dropped a stretch), later frames keep their true times."""
    period = round(1e9 / fps)
    idx = np.arange(n + (drop[1] - drop[0] if drop else 0))
    if drop:
        idx = np.concatenate([idx[: drop[0]], idx[drop[1] :]])
    return START_NS + idx.astype(np.int64) * period + (idx % 7).astype(np.int64) * 13


def _header(stamp_ns: int, frame_id: str = "cam"):
    t = STORE.types["builtin_interfaces/msg/Time"]
    h = STORE.types["std_msgs/msg/Header"]
    return h(stamp=t(sec=int(stamp_ns) // 10**9, nanosec=int(stamp_ns) % 10**9), frame_id=frame_id)


def image_msg(frame_bgr: np.ndarray, stamp_ns: int, encoding: str = "bgr8"):
    """A sensor_msgs/msg/Image from a BGR frame in `encoding` (bgr8, rgb8, mono8, bayer_*8, yuv422)."""
    h, w = frame_bgr.shape[:2]
    if encoding == "bgr8":
        data = frame_bgr
    elif encoding == "rgb8":
        data = frame_bgr[..., ::-1]
    elif encoding == "mono8":
        data = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY)
    elif encoding.startswith("bayer_"):
        data = mosaic(frame_bgr, encoding[6:10])
    elif encoding in ("yuv422", "yuv422_yuy2"):
        data = to_yuv422(frame_bgr, uyvy=encoding == "yuv422")
    else:  # an encoding the reader must refuse: bytes of the right size, any content
        data = np.zeros((h, w, 2), np.uint8)
    data = np.ascontiguousarray(data)
    step = data.strides[0]
    return STORE.types[IMAGE](
        header=_header(stamp_ns),
        height=h,
        width=w,
        encoding=encoding,
        is_bigendian=0,
        step=step,
        data=data.reshape(-1),
    )


def mosaic(frame_bgr: np.ndarray, pattern: str) -> np.ndarray:
    """A one-channel Bayer mosaic of a BGR frame; `pattern` names the 2x2 cell row by row (e.g. 'rggb')."""
    channel = {"b": 0, "g": 1, "r": 2}
    out = np.empty(frame_bgr.shape[:2], np.uint8)
    for k, c in enumerate(pattern):
        dy, dx = divmod(k, 2)
        out[dy::2, dx::2] = frame_bgr[dy::2, dx::2, channel[c]]
    return out


def to_yuv422(frame_bgr: np.ndarray, uyvy: bool) -> np.ndarray:
    """(H, W, 2) packed 4:2:2: UYVY (ROS yuv422) or YUYV (yuv422_yuy2)."""
    yuv = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2YUV).astype(np.int32)
    y, u, v = yuv[..., 0], yuv[..., 1], yuv[..., 2]
    uu = ((u[:, 0::2] + u[:, 1::2] + 1) // 2).astype(np.uint8)
    vv = ((v[:, 0::2] + v[:, 1::2] + 1) // 2).astype(np.uint8)
    out = np.empty((*frame_bgr.shape[:2], 2), np.uint8)
    chroma = np.empty(frame_bgr.shape[:2], np.uint8)
    chroma[:, 0::2], chroma[:, 1::2] = uu, vv
    if uyvy:
        out[..., 0], out[..., 1] = chroma, y
    else:
        out[..., 0], out[..., 1] = y, chroma
    return out


def compressed_msg(frame_bgr: np.ndarray, stamp_ns: int, fmt: str = "jpeg"):
    ok, buf = cv2.imencode(".jpg" if fmt == "jpeg" else ".png", frame_bgr)
    assert ok
    return STORE.types[COMPRESSED](header=_header(stamp_ns), format=fmt, data=buf.reshape(-1))


def write_bag(
    path: str | Path,
    topics: dict[str, list],
    storage: str = "mcap",
    single_file: bool = True,
) -> Path:
    """Write `{topic: [message or (stamp_ns, raw bytes), ...]}` (one type per topic, the first a message; in
    list order: received 1 ms after the stamp, never before the previous one) as a rosbag2 bag;
    `single_file`: the lone .mcap/.db3 file, no folder."""
    path = Path(path)
    folder = path.with_suffix("") if single_file else path
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    rows = []
    with Writer(folder, version=9, storage_plugin=plugin) as writer:
        for topic, msgs in topics.items():
            typename = msgs[0].__msgtype__
            conn = writer.add_connection(topic, typename, typestore=STORE)
            received = 0
            for m in msgs:  # received 1 ms after the stamp, and never before the topic's previous message
                if isinstance(m, tuple):  # (stamp_ns, raw bytes): a message as it is, valid or not
                    stamp_ns, data = m
                else:
                    stamp_ns = m.header.stamp.sec * 10**9 + m.header.stamp.nanosec
                    data = STORE.serialize_cdr(m, typename)
                received = max(received + 1, stamp_ns + 1_000_000)
                rows.append((received, conn, data))
        for t, conn, data in sorted(rows, key=lambda r: r[0]):
            writer.write(conn, t, data)
    if not single_file:
        return folder
    (inner,) = [p for p in folder.iterdir() if p.suffix in (".mcap", ".db3")]
    shutil.move(inner, path)
    shutil.rmtree(folder)
    return path


def imu_msgs(n: int):
    """Non-image messages (sensor_msgs/msg/Imu) for a second topic."""
    imu = STORE.types["sensor_msgs/msg/Imu"]
    q = STORE.types["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0)
    v = STORE.types["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=9.81)
    cov = np.zeros(9)
    return [
        imu(
            header=_header(START_NS + i * 5_000_000, "imu"),
            orientation=q,
            orientation_covariance=cov,
            angular_velocity=v,
            angular_velocity_covariance=cov,
            linear_acceleration=v,
            linear_acceleration_covariance=cov,
        )
        for i in range(n)
    ]

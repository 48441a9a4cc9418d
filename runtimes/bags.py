"""ROS 2 bags as frame sources: an MCAP file, a sqlite3 `.db3` file or a bag folder (`metadata.yaml`).

One image topic (`sensor_msgs/msg/Image` or `sensor_msgs/msg/CompressedImage`) is decoded with OpenCV into
BGR uint8 frames; each frame keeps its header stamp in integer nanoseconds (the clock of everything
downstream). MCAP is read record by record with the `mcap` package, so a file cut short by a kill during
recording is read up to its last complete record (chunk) and the loss is reported; `.db3` and non-MCAP
folders go through `rosbags`. Messages are deserialized with `rosbags`' type store. Both packages come with
the `robot` extra and are imported only when a bag is opened.
"""

from __future__ import annotations

import io
import logging
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from edge_vsd.runtimes.errors import RuntimeInputError

log = logging.getLogger("edge_vsd.runtimes")

BAG_SUFFIXES = (".mcap", ".db3")
IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
IMAGE_TYPES = (IMAGE, COMPRESSED)
# An interval between consecutive header stamps longer than this many median intervals is a gap (at least
# one frame missing): frames on either side belong to different segments, and no training pair spans it.
GAP_FACTOR = 1.5
ROBOT_EXTRA = "pip install 'edge-vsd[robot]'"

# OpenCV's Bayer names count from the second row's second pixel, so ROS's rggb is OpenCV's BG (as cv_bridge)
_BAYER = {
    "bayer_rggb8": cv2.COLOR_BayerBG2BGR,
    "bayer_bggr8": cv2.COLOR_BayerRG2BGR,
    "bayer_gbrg8": cv2.COLOR_BayerGR2BGR,
    "bayer_grbg8": cv2.COLOR_BayerGB2BGR,
}
# encoding -> (channels, OpenCV conversion to BGR or None)
_RAW: dict[str, tuple[int, int | None]] = {
    "bgr8": (3, None),
    "8UC3": (3, None),
    "rgb8": (3, cv2.COLOR_RGB2BGR),
    "bgra8": (4, cv2.COLOR_BGRA2BGR),
    "rgba8": (4, cv2.COLOR_RGBA2BGR),
    "mono8": (1, cv2.COLOR_GRAY2BGR),
    "8UC1": (1, cv2.COLOR_GRAY2BGR),
    "yuv422": (2, cv2.COLOR_YUV2BGR_UYVY),  # ROS's yuv422 is UYVY byte order
    "uyvy": (2, cv2.COLOR_YUV2BGR_UYVY),
    "yuv422_yuy2": (2, cv2.COLOR_YUV2BGR_YUY2),
    "yuyv": (2, cv2.COLOR_YUV2BGR_YUY2),
    **{name: (1, code) for name, code in _BAYER.items()},
}
SUPPORTED_ENCODINGS = tuple(_RAW)


class BagError(RuntimeInputError):
    """A bag that cannot be used as asked (topic, type, encoding, stamps, sizes): one line, exit 2."""


def is_bag(path: str | Path) -> bool:
    """An `.mcap` or `.db3` file, or a folder with a rosbag2 `metadata.yaml`."""
    p = Path(path)
    if p.is_dir():
        return (p / "metadata.yaml").is_file()
    return p.suffix.lower() in BAG_SUFFIXES


def _imports(path: Path) -> tuple[Any, Any]:
    """(rosbags.typesys, mcap) or a one-line error naming the extra."""
    try:
        import mcap  # noqa: F401
        import rosbags.typesys as typesys
    except ImportError as exc:
        raise RuntimeInputError(
            f"{path}: reading ROS 2 bags needs the package {exc.name!r} ({ROBOT_EXTRA})"
        ) from None
    return typesys, mcap


def _natural_key(path: Path) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def ros2_name(msgtype: str) -> str:
    """`pkg/Type` (ROS 1 spelling) -> `pkg/msg/Type`."""
    parts = msgtype.split("/")
    return f"{parts[0]}/msg/{parts[1]}" if len(parts) == 2 else msgtype


@dataclass(frozen=True)
class Topic:
    name: str
    msgtype: str
    count: int

    def __str__(self) -> str:
        return f"{self.name} ({self.msgtype}, {self.count} messages)"


@dataclass
class BagFrame:
    """One decoded image: its position on the topic, header stamp (ns) and BGR uint8 pixels."""

    index: int
    stamp_ns: int
    frame: np.ndarray


# -- MCAP, record by record ----------------------------------------------------------------------------------
_MAGIC = b"\x89MCAP0\r\n"
_OP_SCHEMA, _OP_CHANNEL, _OP_MESSAGE, _OP_CHUNK, _OP_FOOTER, _OP_DATA_END = 0x03, 0x04, 0x05, 0x06, 0x02, 0x0F


class _McapFile:
    """Schemas, channels and messages of one MCAP file in file order; a truncated tail ends the read and
    leaves `lost_bytes` (bytes after the last complete record) and `complete` False."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size = path.stat().st_size
        self.complete = True
        self.lost_bytes = 0

    def records(self) -> Iterator[Any]:
        from mcap.data_stream import ReadDataStream
        from mcap.records import Channel, Chunk, Message, Schema
        from mcap.stream_reader import breakup_chunk

        readers = {_OP_SCHEMA: Schema.read, _OP_CHANNEL: Channel.read, _OP_CHUNK: Chunk.read}
        with open(self.path, "rb") as f:
            if f.read(8) != _MAGIC:
                raise BagError(f"{self.path}: not an MCAP file (bad magic bytes)")
            good = 8
            while True:
                head = f.read(9)
                if len(head) < 9:
                    break
                op, length = head[0], int.from_bytes(head[1:], "little")
                if op == _OP_FOOTER:
                    return
                body = f.read(length)
                if len(body) < length:
                    break
                try:
                    if op == _OP_MESSAGE:
                        items = [Message.read(ReadDataStream(io.BytesIO(body)), length)]
                    elif op in readers:
                        record = readers[op](ReadDataStream(io.BytesIO(body)))
                        items = breakup_chunk(record) if op == _OP_CHUNK else [record]
                    else:
                        items = []
                except Exception:  # a record whose bytes are there but garbled: the tail is unusable
                    break
                good = f.tell()
                yield from items
        self.complete = False
        self.lost_bytes = self.size - good

    def lost_note(self) -> str:
        pct = 100.0 * self.lost_bytes / max(1, self.size)
        return (
            f"{self.path}: truncated MCAP (no footer: was the recording killed?); read up to the last "
            f"complete chunk; the {self.lost_bytes} bytes after it ({pct:.1f}% of the file, an incomplete "
            "chunk) are lost"
        )


def _mcap_summary_topics(path: Path) -> list[Topic] | None:
    """Topics with message counts from an intact file's summary; None when it has none (or is cut short)."""
    from mcap.reader import make_reader

    try:
        with open(path, "rb") as f:
            summary = make_reader(f).get_summary()
    except Exception:  # no footer / summary: the caller scans the records instead
        return None
    if summary is None or summary.statistics is None:
        return None
    counts = summary.statistics.channel_message_counts
    out: dict[str, Topic] = {}
    for cid, ch in summary.channels.items():
        schema = summary.schemas.get(ch.schema_id)
        msgtype = ros2_name(schema.name) if schema is not None else "(no schema)"
        old = out.get(ch.topic)
        out[ch.topic] = Topic(ch.topic, msgtype, counts.get(cid, 0) + (old.count if old else 0))
    return list(out.values())


class Bag:
    """An opened bag with one chosen image topic (see the module docstring). Iterate `frames()`."""

    def __init__(self, path: str | Path, topic: str | None = None) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise BagError(f"{self.path}: no such bag file or folder")
        self.typesys, _ = _imports(self.path)
        self.typestore = self.typesys.get_typestore(self.typesys.Stores.LATEST)
        self.mcap_files = self._mcap_files()
        self.truncated: list[_McapFile] = []
        self.topics = self._list_topics()
        self.topic = self._choose(topic)
        self.msgtype = next(t.msgtype for t in self.topics if t.name == self.topic.name)
        self.unreadable = 0  # compressed frames OpenCV could not decode (counted, skipped)

    # -- opening ---------------------------------------------------------------------------------------------
    def _mcap_files(self) -> list[Path]:
        if self.path.is_dir():
            if not (self.path / "metadata.yaml").is_file():
                raise BagError(f"{self.path}: a folder without metadata.yaml is not a ROS 2 bag")
            # split recordings are run_0.mcap, run_1.mcap, ..., run_10.mcap: in number order
            return sorted(self.path.glob("*.mcap"), key=_natural_key)
        if self.path.suffix.lower() == ".mcap":
            return [self.path]
        if self.path.suffix.lower() != ".db3":
            raise BagError(f"{self.path}: not a ROS 2 bag (.mcap, .db3 or a folder with metadata.yaml)")
        return []

    def _list_topics(self) -> list[Topic]:
        if not self.mcap_files:
            return self._rosbags_topics()
        merged: dict[str, Topic] = {}
        for path in self.mcap_files:
            topics = _mcap_summary_topics(path)
            if topics is None:
                topics = self._scan_topics(path)
            for t in topics:
                old = merged.get(t.name)
                merged[t.name] = Topic(t.name, t.msgtype, t.count + (old.count if old else 0))
        return list(merged.values())

    def _scan_topics(self, path: Path) -> list[Topic]:
        from mcap.records import Channel, Message, Schema

        f = _McapFile(path)
        schemas: dict[int, str] = {}
        channels: dict[int, tuple[str, str]] = {}
        counts: dict[int, int] = {}
        try:
            for r in f.records():
                if isinstance(r, Schema):
                    schemas[r.id] = ros2_name(r.name)
                elif isinstance(r, Channel):
                    channels[r.id] = (r.topic, schemas.get(r.schema_id, "(no schema)"))
                elif isinstance(r, Message):
                    counts[r.channel_id] = counts.get(r.channel_id, 0) + 1
        except OSError as exc:
            raise BagError(f"{path}: cannot read ({exc})") from None
        if not f.complete:
            log.warning("%s", f.lost_note())
            self.truncated.append(f)
        return [Topic(topic, typ, counts.get(cid, 0)) for cid, (topic, typ) in channels.items()]

    def _rosbags_reader(self) -> Any:
        from rosbags.rosbag2 import Reader

        return Reader(self.path)

    def _rosbags_topics(self) -> list[Topic]:
        try:
            with self._rosbags_reader() as reader:
                items = reader.topics.items()
                return [Topic(name, ros2_name(info.msgtype or ""), info.msgcount) for name, info in items]
        except Exception as exc:  # rosbags' ReaderError and sqlite errors: a bag it cannot open
            raise BagError(f"{self.path}: cannot read this bag ({' '.join(str(exc).split())})") from None

    def _choose(self, topic: str | None) -> Topic:
        images = [t for t in self.topics if t.msgtype in IMAGE_TYPES]
        if topic is not None:
            found = next((t for t in self.topics if t.name == topic), None)
            if found is None:
                have = ", ".join(map(str, self.topics)) or "none"
                raise BagError(f"{self.path}: no topic {topic} in this bag (topics: {have})")
            if found.msgtype not in IMAGE_TYPES:
                raise BagError(
                    f"{self.path}: topic {topic} is {found.msgtype}, not an image "
                    f"({IMAGE} or {COMPRESSED}); image topics: {', '.join(map(str, images)) or 'none'}"
                )
            chosen = found
        elif not images:
            have = ", ".join(map(str, self.topics)) or "none"
            raise BagError(f"{self.path}: no image topic ({IMAGE} or {COMPRESSED}); topics: {have}")
        elif len(images) > 1:
            raise BagError(
                f"{self.path}: {len(images)} image topics, choose one with --topic: "
                + ", ".join(map(str, images))
            )
        else:
            chosen = images[0]
        if chosen.count == 0:
            raise BagError(f"{self.path}: topic {chosen.name} holds no messages")
        return chosen

    # -- reading ---------------------------------------------------------------------------------------------
    @property
    def frame_count(self) -> int:
        return self.topic.count

    def raw_messages(self) -> Iterator[bytes]:
        """Serialized (CDR) messages of the chosen topic, in file order."""
        if not self.mcap_files:
            reader = self._rosbags_reader()
            with reader:
                conns = [c for c in reader.connections if c.topic == self.topic.name]
                for _, _, data in reader.messages(connections=conns):
                    yield data
            return
        from mcap.records import Channel, Message

        for path in self.mcap_files:
            f = _McapFile(path)
            wanted: set[int] = set()
            for r in f.records():
                if isinstance(r, Message):
                    if r.channel_id in wanted:
                        yield r.data
                elif isinstance(r, Channel) and r.topic == self.topic.name:
                    if r.message_encoding != "cdr":
                        raise BagError(
                            f"{path}: topic {r.topic} is encoded as {r.message_encoding!r}; "
                            "only ROS 2 (CDR) messages are read"
                        )
                    wanted.add(r.id)
            if not f.complete and all(t.path != path for t in self.truncated):
                log.warning("%s", f.lost_note())
                self.truncated.append(f)

    def frames(self, stride: int = 1) -> Iterator[BagFrame]:
        """Decoded frames (every stride-th message) with their header stamps; raises BagError on mixed
        sizes, stamps going back in time and unsupported encodings."""
        first: tuple[int, int] | None = None
        last_stamp: int | None = None
        for index, data in enumerate(self.raw_messages()):
            stamp = cdr_stamp(data)
            if last_stamp is not None and stamp < last_stamp:
                raise BagError(
                    f"{self.path}: topic {self.topic.name}: message {index} has header stamp {stamp} ns, "
                    f"earlier than message {index - 1} ({last_stamp} ns): stamps out of order"
                )
            last_stamp = stamp
            if index % stride:
                continue
            try:
                msg = self.typestore.deserialize_cdr(data, self.msgtype)
            except Exception as exc:  # rosbags' SerdeError, or bytes too short for the type
                raise BagError(
                    f"{self.path}: topic {self.topic.name}: message {index} is not a valid "
                    f"{self.msgtype} ({' '.join(str(exc).split()) or type(exc).__name__})"
                ) from None
            frame = self.decode(msg, index)
            if frame is None:
                continue
            if first is None:
                first = frame.shape[:2]
            elif frame.shape[:2] != first:
                raise BagError(
                    f"{self.path}: topic {self.topic.name}: message {index} is {frame.shape[1]}x"
                    f"{frame.shape[0]}, earlier frames {first[1]}x{first[0]}: mixed image sizes on one topic"
                )
            yield BagFrame(index, stamp, frame)

    def decode(self, msg: Any, index: int) -> np.ndarray | None:
        """An Image or CompressedImage message -> BGR uint8 (H, W, 3); None for a corrupt compressed one."""
        if self.msgtype == COMPRESSED:
            fmt = str(msg.format).lower()
            if "compresseddepth" in fmt:
                raise BagError(
                    f"{self.path}: topic {self.topic.name}: CompressedImage format {msg.format!r} "
                    "(depth) is not supported"
                )
            frame = cv2.imdecode(np.frombuffer(msg.data, np.uint8), cv2.IMREAD_COLOR)
            if frame is None:
                self.unreadable += 1
                log.warning("%s: %s message %d: undecodable, skipped", self.path, self.topic.name, index)
            return frame
        return decode_raw(msg, f"{self.path}: topic {self.topic.name}")


def cdr_stamp(data: bytes | memoryview) -> int:
    """The header stamp (ns) of a CDR-serialized message whose first field is a std_msgs/Header: after the
    4-byte encapsulation header come `int32 sec` and `uint32 nanosec`, in the byte order it names."""
    little = bool(data[1] & 1)
    sec = int.from_bytes(data[4:8], "little" if little else "big", signed=True)
    return sec * 1_000_000_000 + int.from_bytes(data[8:12], "little" if little else "big")


def decode_raw(msg: Any, where: str) -> np.ndarray:
    """A sensor_msgs/msg/Image with an 8-bit encoding -> BGR uint8 (H, W, 3)."""
    enc = str(msg.encoding)
    if enc not in _RAW:
        raise BagError(
            f"{where}: image encoding {enc!r} is not supported (supported: {', '.join(SUPPORTED_ENCODINGS)})"
        )
    channels, code = _RAW[enc]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    data = np.asarray(msg.data, np.uint8)
    if h * step > data.size or step < w * channels:
        raise BagError(f"{where}: {enc} image {w}x{h} (step {step}) holds only {data.size} bytes")
    pixels = data[: h * step].reshape(h, step)[:, : w * channels].reshape(h, w, channels)
    if code is None:
        return np.ascontiguousarray(pixels)
    if channels == 1:
        pixels = pixels[:, :, 0]
    return cv2.cvtColor(np.ascontiguousarray(pixels), code)


def stamp_segments(stamps_ns: np.ndarray, factor: float = GAP_FACTOR) -> list[tuple[int, int]]:
    """[start, end) index ranges of `stamps_ns` split at gaps: intervals longer than `factor` x the median."""
    stamps = np.asarray(stamps_ns, np.int64)
    if len(stamps) < 3:
        return [(0, len(stamps))] if len(stamps) else []
    dt = np.diff(stamps)
    period = float(np.median(dt))
    cuts = [int(i) + 1 for i in np.flatnonzero(dt > factor * period)] if period > 0 else []
    bounds = [0, *cuts, len(stamps)]
    return list(zip(bounds, bounds[1:]))


def nominal_fps(stamps_ns: np.ndarray) -> float | None:
    """Frames a second from the median interval between header stamps (None when it cannot be told)."""
    stamps = np.asarray(stamps_ns, np.int64)
    if len(stamps) < 2:
        return None
    period = float(np.median(np.diff(stamps)))
    return 1e9 / period if period > 0 else None


def file_bytes(path: Path) -> int:
    """Size of a bag file, or of all files of a bag folder."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.iterdir() if p.is_file())
    return os.path.getsize(path)


def open_bag_source(path: str | Path, topic: str | None = None) -> Any:
    """A `FrameSource` over a bag's image topic (see `BagSource`)."""
    from edge_vsd.runtimes.sources import FrameSource, Grab

    class BagSource(FrameSource):
        """Frames of one image topic; `Grab.timestamp` is the header stamp in seconds and `Grab.stamp_ns`
        the same stamp exact, in integer nanoseconds. Reading errors end the stream with a BagError."""

        kind = "bag"

        def __init__(self) -> None:
            self.bag = Bag(path, topic)
            super().__init__(f"{self.bag.path} {self.bag.topic.name}")
            self.frame_count = self.bag.frame_count

        def frames(self, stride: int = 1) -> Iterator[Grab]:
            wall, mono = time.time(), time.monotonic()
            for item in self.bag.frames(stride):
                if self.stop_event.is_set():
                    return
                self.unreadable = self.bag.unreadable
                decode_s = time.monotonic() - mono
                yield Grab(item.index, item.stamp_ns / 1e9, wall, mono, decode_s, item.frame, item.stamp_ns)
                wall, mono = time.time(), time.monotonic()
            self.unreadable = self.bag.unreadable

    return BagSource()

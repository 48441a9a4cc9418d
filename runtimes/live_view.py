"""A live view for Foxglove: `extract SRC --foxglove [PORT]` serves the PCA picture and the latency figures
over the Foxglove WebSocket protocol (foxglove-sdk), on 127.0.0.1 unless told otherwise.

Topics: `/edge_vsd/pca/compressed` (sensor_msgs/msg/CompressedImage, CDR, the same message the MCAP output
holds) and `/edge_vsd/latency` (JSON: frame_index, stamp_ns, age_ms, decode_ms, preprocess_ms,
inference_ms). Pictures are encoded only while a client subscribes to them.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from edge_vsd.runtimes.errors import RuntimeInputError
from edge_vsd.runtimes.feature_mcap import (
    COMPRESSED_TYPE,
    PCA_TOPIC,
    ROBOT_EXTRA,
    PCAPictures,
    header,
    msgdef,
    typestore,
)

log = logging.getLogger("edge_vsd.runtimes")

DEFAULT_PORT = 8765  # Foxglove's default
LATENCY_TOPIC = "/edge_vsd/latency"
LATENCY_SCHEMA = {
    "type": "object",
    "properties": {
        name: {"type": "number"}
        for name in ("frame_index", "stamp_ns", "age_ms", "decode_ms", "preprocess_ms", "inference_ms")
    },
}


class LiveView:
    """A Foxglove WebSocket server with the PCA and latency channels; `add` per processed frame."""

    def __init__(self, port: int = DEFAULT_PORT, host: str = "127.0.0.1") -> None:
        try:
            import foxglove
        except ImportError as exc:
            raise RuntimeInputError(f"--foxglove needs the package {exc.name!r} ({ROBOT_EXTRA})") from None
        self.store = typestore("--foxglove")
        self.context = foxglove.Context()
        schema = foxglove.Schema(
            name=COMPRESSED_TYPE, encoding="ros2msg", data=msgdef(self.store, COMPRESSED_TYPE)
        )
        self.pca = foxglove.Channel(PCA_TOPIC, schema=schema, message_encoding="cdr", context=self.context)
        self.latency = foxglove.Channel(LATENCY_TOPIC, schema=LATENCY_SCHEMA, context=self.context)
        try:
            self.server = foxglove.start_server(name="edge-vsd", host=host, port=port, context=self.context)
        except Exception as exc:  # port taken, bad address: the SDK's error, on one line
            raise RuntimeInputError(f"--foxglove {port}: cannot serve on {host}:{port} ({exc})") from None
        self.port = int(self.server.port)
        self.url = f"ws://{host}:{self.port}"
        self._pictures = PCAPictures(fit_frames=1)
        self.sent = 0

    def add(
        self, stamp_ns: int, frame: np.ndarray | None, patches: np.ndarray, timing: Any, index: int
    ) -> None:
        """Publish one frame's latency, and its PCA picture when a client is subscribed to it."""
        self.latency.log(
            {
                "frame_index": index,
                "stamp_ns": stamp_ns,
                "age_ms": timing.age_s * 1e3,
                "decode_ms": timing.decode_ms,
                "preprocess_ms": timing.preprocess_ms,
                "inference_ms": timing.inference_ms,
            },
            log_time=stamp_ns,
        )
        if frame is None or not self.pca.has_sinks():
            return
        for stamp, jpeg in self._pictures.add(stamp_ns, frame, patches):
            msg = self.store.types[COMPRESSED_TYPE](
                header=header(self.store, stamp), format="jpeg", data=np.frombuffer(jpeg, np.uint8)
            )
            self.pca.log(bytes(self.store.serialize_cdr(msg, COMPRESSED_TYPE)), log_time=stamp)
            self.sent += 1

    def close(self) -> None:
        self.server.stop()

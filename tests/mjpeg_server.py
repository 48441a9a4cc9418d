"""A real MJPEG-over-HTTP camera for tests, on 127.0.0.1 only, bounded in frames and time.

Serves `multipart/x-mixed-replace` JPEG parts at a fixed rate from a shared frame counter (like a live
camera, a client that reconnects sees later frames). Faults are scripted per frame number: `close_at`
(drop the connection), `stall_at` (keep the socket open and send nothing for `stall_s`), `corrupt_at`
(a part whose bytes are not a JPEG). `stop()`/`start()` simulate a camera server that restarts on the
same port.
"""

from __future__ import annotations

import socket
import socketserver
import threading
import time

import cv2
import numpy as np

BOUNDARY = "edgevsdframe"
MAX_SECONDS = 60.0  # no connection is served longer than this, whatever the test does


def jpeg(index: int, height: int = 72, width: int = 96) -> bytes:
    """A JPEG whose content encodes `index` (a bright bar at a position that moves with it)."""
    img = np.full((height, width, 3), 40, np.uint8)
    x = (index * 7) % (width - 8)
    img[:, x : x + 8] = 220
    img[: height // 4, :, 1] = (index * 13) % 256
    ok, data = cv2.imencode(".jpg", img)
    assert ok
    return data.tobytes()


class MJPEGServer:
    """`url` is the stream's address; frames are numbered from 0 across connections."""

    def __init__(
        self,
        fps: float = 50.0,
        max_frames: int = 400,
        close_at: set[int] | None = None,
        stall_at: set[int] | None = None,
        stall_s: float = 2.0,
        corrupt_at: set[int] | None = None,
        content_length: bool = True,
    ) -> None:
        self.fps, self.max_frames = fps, max_frames
        self.close_at, self.stall_at = set(close_at or ()), set(stall_at or ())
        self.corrupt_at = set(corrupt_at or ())
        self.stall_s, self.content_length = stall_s, content_length
        self.next_frame = 0
        self.connections = 0
        self.sent_times: dict[int, float] = {}  # frame number -> time.time() when its part was sent
        self._lock = threading.Lock()
        self._server: socketserver.ThreadingTCPServer | None = None
        self.port = 0
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    def start(self) -> None:
        """Listen (again) on 127.0.0.1, on the same port as before when restarting."""
        owner = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                owner._serve(self.request)

        class Server(socketserver.ThreadingTCPServer):
            allow_reuse_address = True
            daemon_threads = True

        self._server = Server(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Stop listening and drop open connections (they notice at their next write)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _take(self) -> int | None:
        with self._lock:
            if self.next_frame >= self.max_frames:
                return None
            n = self.next_frame
            self.next_frame += 1
            return n

    def _serve(self, sock: socket.socket) -> None:
        sock.settimeout(5)
        try:
            sock.recv(4096)  # the request; its contents do not matter
        except OSError:
            return
        server = self._server
        with self._lock:
            self.connections += 1
        head = (
            "HTTP/1.0 200 OK\r\nCache-Control: no-cache\r\n"
            f"Content-Type: multipart/x-mixed-replace; boundary={BOUNDARY}\r\n\r\n"
        )
        deadline = time.monotonic() + MAX_SECONDS
        try:
            sock.sendall(head.encode())
            while time.monotonic() < deadline and server is self._server:
                n = self._take()
                if n is None:
                    return
                if n in self.close_at:
                    return
                if n in self.stall_at:
                    time.sleep(self.stall_s)
                data = b"\xff\xd8 not a jpeg " + bytes(200) if n in self.corrupt_at else jpeg(n)
                part = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                if self.content_length:
                    part += f"Content-Length: {len(data)}\r\n"
                self.sent_times[n] = time.time()
                sock.sendall(part.encode() + b"\r\n" + data + b"\r\n")
                time.sleep(1.0 / self.fps)
        except OSError:
            return
        finally:
            sock.close()

    def __enter__(self) -> MJPEGServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

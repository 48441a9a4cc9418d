"""Progress that suits where stderr goes: tqdm's bar on a terminal; elsewhere (a log file, CI, a service's
journal) a plain line every EVERY_S seconds and one at the end, not a redraw per step. Twin of
edge_vsd.runtimes.progress (the core and the torch-free runtimes do not import each other)."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from tqdm import tqdm

EVERY_S = 30.0
PLAIN = "{desc}: {percentage:3.0f}% {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}{postfix}]"
PLAIN_OPEN = "{desc}: {n_fmt} [{elapsed}, {rate_fmt}{postfix}]"  # no total known


class PlainLines:
    """A text stream that writes each of tqdm's carriage-return redraws as one line of its own."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        line = text.replace("\r", "").strip()
        if line:
            self.stream.write(line + "\n")

    def flush(self) -> None:
        self.stream.flush()


class PlainBar(tqdm):
    """tqdm redrawn only by its own updates (no monitor thread, whose forced redraws come every 10 s),
    with a last line when it closes unless the one before already says as much."""

    monitor_interval = 0

    def close(self) -> None:
        if self.n == self.last_print_n:
            self.leave = False  # nothing to add: it clears, which writes no line here
        super().close()


def progress(
    *, disable: bool = False, every_s: float = EVERY_S, stream: TextIO | None = None, **kwargs: Any
) -> tqdm:
    """A tqdm progress bar (tqdm's keyword arguments) on `stream` (default: stderr): a live bar when it is a
    terminal, else plain lines at most every `every_s` seconds and a last one when it closes."""
    stream = sys.stderr if stream is None else stream
    if disable or stream.isatty():
        return tqdm(disable=disable, file=stream, dynamic_ncols=True, **kwargs)
    kwargs["leave"] = True  # the last line says how far it got
    fmt = PLAIN if kwargs.get("total") else PLAIN_OPEN
    return PlainBar(file=PlainLines(stream), mininterval=every_s, miniters=1, bar_format=fmt, **kwargs)

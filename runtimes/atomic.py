"""Atomic file writes: a temp file in the same folder, fsynced, renamed over the target when complete."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def write_atomic(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """Call `write(f)` on a temp file beside `path`, then rename it to `path`; no partial file on failure."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, umask_mode(0o666))  # mkstemp makes it owner-only; the result should read like any file
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def can_create_in(folder: str | Path) -> bool:
    """Whether a file can be created in `folder`, found by creating (and removing) one: permission bits do
    not tell for root, read-only mounts or pseudo file systems such as /proc."""
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".edge-vsd-probe-"):
            return True
    except OSError:
        return False


def unwritable_at(start: str | Path) -> Path | None:
    """None when a file can be made at `start` or, where it does not exist yet, in its nearest existing
    folder; else that nearest existing path (not a folder, or refusing new files)."""
    probe = Path(start)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return None if probe.is_dir() and can_create_in(probe) else probe


def umask_mode(mode: int) -> int:
    """`mode` less this process's umask: what `open()` or `mkdir()` would have given."""
    mask = os.umask(0o022)  # the only way to read it; set back at once
    os.umask(mask)
    return mode & ~mask


def fsync_dir(folder: str | Path) -> None:
    """Make a rename in `folder` durable (skipped where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    return write_atomic(path, lambda f: f.write(data))

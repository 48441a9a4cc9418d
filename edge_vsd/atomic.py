"""Durable atomic writes for the core: temp file beside the target, fsync, rename, fsync the folder."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def write_atomic(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """Call `write(f)` on a temp file beside `path`, fsync it and rename it over `path`. A crash at any
    moment leaves either the old file or the new one under `path`, never a partial one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
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


def umask_mode(mode: int) -> int:
    """`mode` less this process's umask: what `open()` or `mkdir()` would have given."""
    mask = os.umask(0o022)  # the only way to read it; set back at once
    os.umask(mask)
    return mode & ~mask


def fsync_dir(folder: str | Path) -> None:
    """Make a rename in `folder` durable (no-op where folders cannot be opened, e.g. Windows)."""
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


def remove_stale_temps(path: str | Path) -> None:
    """Delete temp files a killed writer of `path` left behind (`.NAME.*.tmp` beside it)."""
    path = Path(path)
    if path.parent.is_dir():
        for stale in path.parent.glob(f".{path.name}.*.tmp"):
            stale.unlink(missing_ok=True)

"""Artifact folder written atomically: a hidden staging folder next to the destination, renamed at the end."""

from __future__ import annotations

import glob
import os
import re
import shutil
import tempfile
from pathlib import Path

from edge_vsd.atomic import fsync_dir, umask_mode
from edge_vsd.errors import InputError


class Staging:
    """Claims the output location up front (so an unwritable or existing output fails before any work) and
    moves the finished folder into place with a rename; on failure everything staged is removed."""

    def __init__(self, out: str | Path, force: bool):
        self.out = Path(out)
        if self.out.parent.is_dir():
            remove_stale(self.out)
        if self.out.exists() and not self.out.is_dir():
            raise InputError(f"{self.out}: exists and is a file, not an artifact folder")
        if self.out.exists() and not (self.out / "manifest.json").is_file() and any(self.out.iterdir()):
            raise InputError(f"{self.out}: exists and is not an artifact folder; choose another --out")
        if self.out.exists() and not force:
            raise InputError(f"{self.out}: already exists; pass --force to replace it")
        parent = self.out.parent.absolute()
        self._new_dirs = [p for p in (parent, *parent.parents) if not p.exists()]
        try:
            parent.mkdir(parents=True, exist_ok=True)
            self.dir = Path(
                tempfile.mkdtemp(prefix=f".{self.out.name}.{os.getpid()}.", suffix=".partial", dir=parent)
            )
            self.dir.chmod(umask_mode(0o777))  # mkdtemp makes it owner-only; a robot's other users read it
        except OSError as exc:
            self._remove_new_dirs()
            raise InputError(f"{self.out}: cannot write the artifact here ({exc.strerror or exc})") from None

    def commit(self) -> Path:
        """fsync the staged files, rename the folder to the destination (replacing an old one when forced)."""
        for f in self.dir.iterdir():
            if f.is_file():
                fd = os.open(f, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        fsync_dir(self.dir)
        old = None
        if self.out.exists():
            old = self.out.with_name(f".{self.out.name}.{os.getpid()}.old")
            os.replace(self.out, old)
        os.replace(self.dir, self.out)
        fsync_dir(self.out.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.out

    def abort(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        self._remove_new_dirs()

    def _remove_new_dirs(self) -> None:
        for d in self._new_dirs:  # innermost first: leave no empty folders we made
            try:
                d.rmdir()
            except OSError:
                break


def remove_stale(out: Path) -> None:
    """Clean up after exports killed mid-way (`kill -9`), leaving live ones alone: remove their staging
    folders (`.NAME.PID.*.partial`); an old artifact set aside for `--force` (`.NAME.PID.old`) goes back
    under NAME when the kill came before the new one took its place, else it is removed."""
    for entry in out.parent.glob(f".{glob.escape(out.name)}.*"):
        m = re.fullmatch(rf"\.{re.escape(out.name)}\.(\d+)\.(.+\.partial|old)", entry.name)
        if not m or not entry.is_dir() or _alive(int(m.group(1))):
            continue
        if m.group(2) == "old" and not out.exists():
            os.replace(entry, out)
        else:
            shutil.rmtree(entry, ignore_errors=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True

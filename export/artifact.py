"""Artifact folder written atomically: a hidden staging folder next to the destination, renamed at the end."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from edge_vsd.errors import InputError


class Staging:
    """Claims the output location up front (so an unwritable or existing output fails before any work) and
    moves the finished folder into place with a rename; on failure everything staged is removed."""

    def __init__(self, out: str | Path, force: bool):
        self.out = Path(out)
        if self.out.exists() and not self.out.is_dir():
            raise InputError(f"{self.out}: exists and is a file, not an artifact folder")
        if self.out.exists() and not force:
            raise InputError(f"{self.out}: already exists; pass --force to replace it")
        if self.out.exists() and not (self.out / "manifest.json").is_file() and any(self.out.iterdir()):
            raise InputError(f"{self.out}: exists and is not an artifact folder; refusing to replace it")
        parent = self.out.parent.absolute()
        self._new_dirs = [p for p in (parent, *parent.parents) if not p.exists()]
        try:
            parent.mkdir(parents=True, exist_ok=True)
            self.dir = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.", suffix=".partial", dir=parent))
        except OSError as exc:
            self._remove_new_dirs()
            raise InputError(f"{self.out}: cannot write the artifact here ({exc.strerror or exc})") from None

    def commit(self) -> Path:
        """Rename the staging folder to the destination (replacing an old artifact when forced)."""
        old = None
        if self.out.exists():
            old = self.out.with_name(f".{self.out.name}.old-{os.getpid()}")
            os.replace(self.out, old)
        os.replace(self.dir, self.out)
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

"""Write extracted features: one `.npz`, or a folder of shards for long inputs.

`FILE.npz` holds `cls` (N, D) float32, `patches` (N, h, w, D) float32, `frame_index` (N,) int64 and
`timestamp` (N,) float64 seconds. When more than `shard_size` frames arrive, the output becomes the folder
`FILE/` (the name without `.npz`) with `shard-00000.npz`, `shard-00001.npz`, ... (same keys, at most
`shard_size` frames each, in order) and `index.json` (shards, frame counts, total). Everything is written
under temporary names and moved into place by `close()`, so an interrupted run leaves no partial output.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from edge_vsd.runtimes.atomic import write_atomic
from edge_vsd.runtimes.errors import RuntimeInputError

INDEX_NAME = "index.json"
KEYS = ("cls", "patches", "frame_index", "timestamp")


def shard_dir(out: Path) -> Path:
    """The folder used instead of `out` when the features need more than one shard."""
    return out.with_suffix("")


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    write_atomic(path, lambda f: np.savez(f, **arrays))


class FeatureWriter:
    """Accumulate per-frame features; `close()` writes `out` (.npz) or its shard folder."""

    def __init__(self, out: str | Path, shard_size: int = 2000, meta: dict[str, Any] | None = None) -> None:
        self.out = Path(out)
        if self.out.suffix.lower() != ".npz":
            raise RuntimeInputError(f"{self.out}: --out must be a .npz file name")
        if shard_size < 1:
            raise RuntimeInputError(f"--shard-size must be >= 1, got {shard_size}")
        folder = shard_dir(self.out)
        if folder.exists() and not (folder / INDEX_NAME).is_file():
            raise RuntimeInputError(
                f"{folder}: exists and is not an earlier shard folder; would be overwritten"
            )
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.shard_size = shard_size
        self.meta = meta or {}
        self._rows: list[tuple[int, float, np.ndarray, np.ndarray]] = []
        self._tmp_dir: Path | None = None
        self._shards: list[dict[str, Any]] = []
        self.count = 0

    def add(self, frame_index: int, timestamp: float, cls: np.ndarray, patches: np.ndarray) -> None:
        """Append one frame's features."""
        if len(self._rows) == self.shard_size:
            self._flush_shard()
        self._rows.append((frame_index, timestamp, cls, patches))
        self.count += 1

    def _arrays(self) -> dict[str, np.ndarray]:
        rows = self._rows
        return {
            "cls": np.stack([r[2] for r in rows]).astype(np.float32, copy=False),
            "patches": np.stack([r[3] for r in rows]).astype(np.float32, copy=False),
            "frame_index": np.array([r[0] for r in rows], np.int64),
            "timestamp": np.array([r[1] for r in rows], np.float64),
        }

    def _flush_shard(self) -> None:
        if self._tmp_dir is None:
            final = shard_dir(self.out)
            self._tmp_dir = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
        name = f"shard-{len(self._shards):05d}.npz"
        arrays = self._arrays()
        _save_npz(self._tmp_dir / name, arrays)
        self._shards.append(
            {
                "file": name,
                "frames": len(self._rows),
                "first_frame_index": int(arrays["frame_index"][0]),
                "last_frame_index": int(arrays["frame_index"][-1]),
            }
        )
        self._rows = []

    def close(self) -> Path:
        """Write what was collected; return the .npz path or the shard folder."""
        if self.count == 0:
            raise RuntimeInputError(f"{self.out}: no frames were processed, nothing written")
        if self._tmp_dir is None:
            _save_npz(self.out, self._arrays())
            self._rows = []
            stale = shard_dir(self.out)
            if (stale / INDEX_NAME).is_file():  # an earlier, longer run's shards would contradict this file
                shutil.rmtree(stale)
            return self.out
        if self._rows:
            self._flush_shard()
        index = {
            "frames": self.count,
            "shard_size": self.shard_size,
            "keys": list(KEYS),
            "shards": self._shards,
        }
        index.update(self.meta)
        (self._tmp_dir / INDEX_NAME).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
        final = shard_dir(self.out)
        if final.exists():
            shutil.rmtree(final)
        os.replace(self._tmp_dir, final)
        self._tmp_dir = None
        self.out.unlink(missing_ok=True)  # an earlier, shorter run's single file would contradict the shards
        return final

    def abort(self) -> None:
        """Remove temporary shards."""
        if self._tmp_dir is not None:
            shutil.rmtree(self._tmp_dir, ignore_errors=True)
            self._tmp_dir = None
        self._rows = []


def load_features(path: str | Path) -> dict[str, np.ndarray]:
    """Read an extract output (a .npz or a shard folder) back into one dict of arrays."""
    path = Path(path)
    if path.is_dir():
        index = json.loads((path / INDEX_NAME).read_text(encoding="utf-8"))
        parts = [dict(np.load(path / s["file"])) for s in index["shards"]]
        return {k: np.concatenate([p[k] for p in parts]) for k in KEYS}
    if not path.is_file() and shard_dir(path).is_dir():
        return load_features(shard_dir(path))
    with np.load(path) as data:
        return {k: data[k] for k in data.files}

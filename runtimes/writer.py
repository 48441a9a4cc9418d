"""Write extracted features as they arrive: one `.npz`, or a folder of shards for long inputs.

Keys per processed frame: `cls` (N, D) and `patches` (N, h, w, D) (float32, or float16 with
dtype="float16"), `frame_index` (N,) int64, `timestamp` (N,) float64 s (source clock), `wall_time` (N,)
epoch s and `mono_time` (N,) monotonic s at grab, `age` (N,) s from grab to output; from a ROS 2 bag also
`stamp_ns` (N,) int64, the header stamp exact; plus `meta`, a JSON string (source, stride, dtype, original
frame size, resize rule and the patch-to-pixel mapping).

Rows go straight to disk (raw files of the open shard), so memory does not grow with the shard size. While
running, the output is the folder `FILE.partial/`: every closed shard (`shard-00000.npz`, ...) is written
under a temporary name and renamed, and `index.json` is rewritten atomically after each one, so a process
killed with SIGKILL leaves readable shards and a valid index there. `close()` finishes the open shard and
moves the result into place: `FILE.npz` when it fits in one shard, else the folder `FILE/` (the name
without `.npz`). All files get the permissions the umask allows.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from edge_vsd.runtimes.errors import RuntimeInputError

INDEX_NAME = "index.json"
FEATURE_KEYS = ("cls", "patches")
ROW_KEYS = ("frame_index", "timestamp", "wall_time", "mono_time", "age")
KEYS = FEATURE_KEYS + ROW_KEYS
OPTIONAL_KEYS = ("stamp_ns",)  # only from sources that have it (ROS 2 bags)
DTYPES = ("float32", "float16")
_ROW_DTYPES = {"frame_index": np.int64, "stamp_ns": np.int64}


def shard_dir(out: Path) -> Path:
    """The folder used instead of `out` when the features need more than one shard."""
    return out.with_suffix("")


def partial_dir(out: Path) -> Path:
    """Where a running (or killed) extraction keeps its shards."""
    return out.with_suffix(".partial")


def _replace_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


class _OpenShard:
    """Rows of the shard being written, appended to one raw file per key."""

    def __init__(self, folder: Path, dtype: np.dtype) -> None:
        folder.mkdir()
        self.folder, self.dtype, self.rows = folder, dtype, 0
        self.files: dict[str, BinaryIO] = {}
        self.first = self.last = -1  # frame numbers of the first and last row
        self.shapes: dict[str, tuple[tuple[int, ...], np.dtype]] = {}

    def add(self, values: dict[str, Any]) -> None:
        for key, value in values.items():
            dtype = self.dtype if key in FEATURE_KEYS else np.dtype(_ROW_DTYPES.get(key, np.float64))
            arr = np.asarray(value, dtype=dtype)
            if not arr.flags.c_contiguous:
                arr = np.ascontiguousarray(arr)
            if key not in self.files:
                self.files[key] = open(self.folder / f"{key}.raw", "wb")  # noqa: SIM115 (closed in save)
                self.shapes[key] = (arr.shape, dtype)
            elif arr.shape != self.shapes[key][0]:
                raise RuntimeInputError(
                    f"{key}: row shape {arr.shape} != {self.shapes[key][0]} of earlier rows"
                )
            self.files[key].write(arr.tobytes() if arr.ndim == 0 else arr.data)
        if self.rows == 0:
            self.first = int(values["frame_index"])
        self.last = int(values["frame_index"])
        self.rows += 1

    def save(self, path: Path, meta: str) -> None:
        """Pack the rows into an .npz (no compression, streamed in chunks), renamed into place."""
        tmp = path.with_name(f".{path.name}.tmp")
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
            for key in KEYS + OPTIONAL_KEYS:
                if key not in self.files:
                    continue
                f = self.files[key]
                f.close()
                shape, dtype = self.shapes[key]
                header: dict[str, Any] = {"fortran_order": False}
                header["descr"] = np.lib.format.dtype_to_descr(dtype)
                header["shape"] = (self.rows, *shape)
                with zf.open(f"{key}.npy", "w", force_zip64=True) as member, open(f.name, "rb") as raw:
                    np.lib.format.write_array_header_2_0(member, header)
                    shutil.copyfileobj(raw, member, 1 << 20)
            with zf.open("meta.npy", "w") as member:
                np.lib.format.write_array(member, np.array(meta))
        os.replace(tmp, path)
        self.discard()

    def discard(self) -> None:
        for f in self.files.values():
            f.close()
        shutil.rmtree(self.folder, ignore_errors=True)


class FeatureWriter:
    """Append per-frame features with `add`; `close()` moves the result to `out` (.npz) or its folder."""

    def __init__(
        self,
        out: str | Path,
        shard_size: int = 2000,
        meta: dict[str, Any] | None = None,
        dtype: str = "float32",
    ) -> None:
        self.out = Path(out)
        if self.out.suffix.lower() != ".npz":
            raise RuntimeInputError(f"{self.out}: --out must be a .npz file name")
        if shard_size < 1:
            raise RuntimeInputError(f"--shard-size must be >= 1, got {shard_size}")
        if dtype not in DTYPES:
            raise RuntimeInputError(f"--dtype must be one of {DTYPES}, got {dtype!r}")
        folder = shard_dir(self.out)
        if folder.exists() and not (folder / INDEX_NAME).is_file():
            raise RuntimeInputError(
                f"{folder}: exists and is not an earlier shard folder; would be overwritten"
            )
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.shard_size = shard_size
        self.dtype = np.dtype(dtype)
        self.meta: dict[str, Any] = {**(meta or {}), "dtype": dtype}
        self.count = 0
        self.moved_aside: Path | None = None
        self._shards: list[dict[str, Any]] = []
        self._open: _OpenShard | None = None
        self._dir: Path | None = None

    def _start(self) -> None:
        partial = partial_dir(self.out)
        if partial.exists():  # a killed run's shards: kept, moved aside, never deleted
            n = 1
            while partial.with_name(f"{partial.name}.{n}").exists():
                n += 1
            self.moved_aside = partial.with_name(f"{partial.name}.{n}")
            os.replace(partial, self.moved_aside)
        partial.mkdir()
        self._dir = partial

    def add(
        self,
        frame_index: int,
        timestamp: float,
        cls: np.ndarray,
        patches: np.ndarray,
        wall_time: float = float("nan"),
        mono_time: float = float("nan"),
        age: float = float("nan"),
        stamp_ns: int | None = None,
    ) -> None:
        """Append one frame's features and clocks (`stamp_ns`: a bag's header stamp, every row or none)."""
        if self._dir is None:
            self._start()
        if self._open is None:
            self._open = _OpenShard(self._partial() / f".open-{len(self._shards):05d}", self.dtype)
        row = {
            "cls": cls,
            "patches": patches,
            "frame_index": frame_index,
            "timestamp": timestamp,
            "wall_time": wall_time,
            "mono_time": mono_time,
            "age": age,
        }
        if stamp_ns is not None:
            row["stamp_ns"] = stamp_ns
        self._open.add(row)
        self.count += 1
        if self._open.rows == self.shard_size:
            self._close_shard()

    def _index(self, complete: bool) -> dict[str, Any]:
        return {
            "frames": sum(s["frames"] for s in self._shards),
            "shard_size": self.shard_size,
            "keys": list(KEYS),
            "complete": complete,
            "shards": self._shards,
            **self.meta,
        }

    def _close_shard(self) -> None:
        shard, self._open = self._open, None
        if shard is None or shard.rows == 0:
            return
        name = f"shard-{len(self._shards):05d}.npz"
        shard.save(self._partial() / name, json.dumps(self.meta))
        self._shards.append(
            {
                "file": name,
                "frames": shard.rows,
                "first_frame_index": shard.first,
                "last_frame_index": shard.last,
            }
        )
        _replace_json(self._partial() / INDEX_NAME, self._index(complete=False))

    def _partial(self) -> Path:
        """The folder being written (set by the first frame)."""
        assert self._dir is not None, "no frame has been written"
        return self._dir

    def close(self, **extra_meta: Any) -> Path:
        """Finish the open shard and move the output into place; return the .npz path or the folder."""
        if self.count == 0:
            self.abort()
            raise RuntimeInputError(f"{self.out}: no frames were processed, nothing written")
        self.meta.update(extra_meta)
        self._close_shard()
        partial, self._dir = self._partial(), None
        folder = shard_dir(self.out)
        if len(self._shards) == 1:
            os.replace(partial / self._shards[0]["file"], self.out)
            shutil.rmtree(partial)
            if (folder / INDEX_NAME).is_file():  # an earlier, longer run's shards would contradict this file
                shutil.rmtree(folder)
            return self.out
        _replace_json(partial / INDEX_NAME, self._index(complete=True))
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(folder, old)
            os.replace(partial, folder)
            shutil.rmtree(old)
        else:
            os.replace(partial, folder)
        self.out.unlink(missing_ok=True)  # an earlier, shorter run's single file would contradict the shards
        return folder

    def abort(self) -> None:
        """Remove everything this writer wrote (used when nothing worth keeping was recorded)."""
        if self._open is not None:
            self._open.discard()
            self._open = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


def read_meta(data: Any) -> dict[str, Any]:
    """The `meta` record of a loaded .npz or `load_features` result ({} for files without one)."""
    return json.loads(str(data["meta"])) if "meta" in data else {}


def load_features(path: str | Path) -> dict[str, np.ndarray]:
    """Read an extract output (a .npz, a shard folder or a killed run's FILE.partial folder) into one dict
    of arrays; `meta` is the JSON record (see `read_meta`)."""
    path = Path(path)
    if path.is_dir():
        index = json.loads((path / INDEX_NAME).read_text(encoding="utf-8"))
        parts = []
        for s in index["shards"]:
            with np.load(path / s["file"]) as data:
                parts.append({k: data[k] for k in data.files})
        out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0] if k != "meta"}
        if "meta" in parts[0]:
            out["meta"] = parts[0]["meta"]
        return out
    if not path.is_file() and shard_dir(path).is_dir():
        return load_features(shard_dir(path))
    with np.load(path) as data:
        return {k: data[k] for k in data.files}

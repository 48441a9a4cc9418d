"""Frame cache: each video decoded once into a memory-mapped uint8 .npy, with an index.json of sources."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from edge_vsd.data.video import decode, expand_sources
from edge_vsd.errors import InputError

log = logging.getLogger("edge_vsd")
INDEX = "index.json"
CACHE_VERSION = 1


@dataclass
class CachedVideo:
    source: str
    frames: np.ndarray  # memory-mapped (N, H, W, 3) uint8 RGB
    fps: float


def _fingerprint(path: Path) -> dict:
    st = path.stat()
    return {"source": str(path.resolve()), "bytes": st.st_size, "mtime": st.st_mtime}


def is_cache(path: str | Path) -> bool:
    return (Path(path) / INDEX).is_file()


def build_cache(
    sources: list[str | Path], out: str | Path, short_side: int, show_progress: bool = True
) -> Path:
    """Decode `sources` into the cache folder `out` (written under a temp name, renamed when complete)."""
    out = Path(out)
    paths = expand_sources(sources)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        entries, skipped = [], []
        bar = tqdm(desc="decoding", unit="frame", disable=not show_progress, dynamic_ncols=True)
        for i, path in enumerate(paths):
            video = decode(path, short_side, bar)
            if video is None:
                skipped.append(
                    _fingerprint(path) if path.exists() else {"source": str(path), "bytes": -1, "mtime": 0}
                )
                continue
            name = f"video_{i:04d}.npy"
            np.save(tmp / name, video.frames)
            entries.append(
                {
                    **_fingerprint(path),
                    "file": name,
                    "fps": video.fps,
                    "frames": int(video.frames.shape[0]),
                    "shape": list(video.frames.shape[1:]),
                }
            )
        bar.close()
        if not entries:
            raise InputError(f"no usable video among {', '.join(map(str, paths))}")
        index = {"version": CACHE_VERSION, "short_side": short_side, "videos": entries, "skipped": skipped}
        (tmp / INDEX).write_text(json.dumps(index, indent=1))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def cache_matches(cache: Path, sources: list[str | Path], short_side: int) -> bool:
    """True when `cache` was built from exactly these (unchanged) files at this size."""
    try:
        index = json.loads((cache / INDEX).read_text())
        want = {tuple(_fingerprint(p).values()) for p in expand_sources(sources)}
    except (OSError, ValueError, KeyError):
        return False
    have = {(e["source"], e["bytes"], e["mtime"]) for e in index["videos"] + index.get("skipped", [])}
    return index.get("short_side") == short_side and have == want


def open_cache(cache: str | Path) -> list[CachedVideo]:
    """Memory-map every video of a cache folder."""
    cache = Path(cache)
    try:
        index = json.loads((cache / INDEX).read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{cache}: not a frame cache ({exc})") from None
    return [
        CachedVideo(e["source"], np.load(cache / e["file"], mmap_mode="r"), float(e["fps"]))
        for e in index["videos"]
    ]

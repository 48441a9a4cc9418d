"""Frame cache: each video decoded once into a memory-mapped uint8 .npy, with an index.json of sources."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_vsd.data.video import CACHE_INDEX, expand_sources, is_bag, try_decode
from edge_vsd.errors import InputError
from edge_vsd.progress import progress

log = logging.getLogger("edge_vsd")
INDEX = CACHE_INDEX
CACHE_VERSION = 1


@dataclass
class CachedVideo:
    source: str
    frames: np.ndarray  # memory-mapped (N, H, W, 3) uint8 RGB
    fps: float


def _fingerprint(path: Path) -> dict:
    if path.is_dir():  # a bag folder: its files together
        stats = [p.stat() for p in path.iterdir() if p.is_file()]
        size, mtime = sum(st.st_size for st in stats), max((st.st_mtime for st in stats), default=0.0)
        return {"source": str(path.resolve()), "bytes": size, "mtime": mtime}
    st = path.stat()
    return {"source": str(path.resolve()), "bytes": st.st_size, "mtime": st.st_mtime}


def is_cache(path: str | Path) -> bool:
    return (Path(path) / INDEX).is_file()


def build_cache(
    sources: Sequence[str | Path],
    out: str | Path,
    short_side: int,
    show_progress: bool = True,
    topic: str | None = None,
) -> Path:
    """Decode `sources` into the cache folder `out` (written under a temp name, renamed when complete).
    An earlier cache in `out` is replaced; anything else there is refused. ROS 2 bags give one cached
    video per stretch without a stamp gap, from their image topic (`topic`, or the only one)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    if out.is_dir() and not is_cache(out) and any(out.iterdir()):
        raise InputError(f"{out}: exists and is not a frame cache; refusing to replace it (choose another)")
    paths = expand_sources(sources)
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_builds(out)
    # mkdir, unlike mkdtemp, gives the folder the mode the umask allows: others may read the cache
    tmp = out.parent / f".{out.name}.{_builder()}.{uuid.uuid4().hex[:8]}.partial"
    tmp.mkdir()
    try:
        entries, skipped, reasons = [], [], []
        bar = progress(desc="decoding", unit="frame", disable=not show_progress)
        for i, path in enumerate(paths):
            if is_bag(path):
                entries += _cache_bag(path, tmp, f"video_{i:04d}", short_side, topic, bar)
                continue
            video = try_decode(path, short_side, bar)
            if isinstance(video, str):
                log.warning("skipping %s: %s", path, video)
                reasons.append(f"{path}: {video}")
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
            more = f" (and {len(reasons) - 3} more)" if len(reasons) > 3 else ""
            raise InputError(f"no usable video: {'; '.join(reasons[:3])}{more}")
        index = {"version": CACHE_VERSION, "short_side": short_side, "videos": entries, "skipped": skipped}
        if topic is not None:
            index["topic"] = topic
        (tmp / INDEX).write_text(json.dumps(index, indent=1))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _cache_bag(path: Path, tmp: Path, stem: str, short_side: int, topic: str | None, bar) -> list[dict]:
    """A bag's segments as cache entries (frames and their header stamps, one .npy each)."""
    from edge_vsd.data.bag_frames import decode_bag

    entries = []
    for k, seg in enumerate(decode_bag(path, short_side, topic, bar)):
        name = f"{stem}_{k:03d}"
        np.save(tmp / f"{name}.npy", seg.frames)
        np.save(tmp / f"{name}.stamps.npy", seg.stamps_ns)
        entries.append(
            {
                **_fingerprint(path),
                "file": f"{name}.npy",
                "fps": seg.fps,
                "frames": int(seg.frames.shape[0]),
                "shape": list(seg.frames.shape[1:]),
                "topic": seg.topic,
                "segment": k,
                "stamps": f"{name}.stamps.npy",
            }
        )
    return entries


def _builder() -> str:
    """This process as `PID@HOST`, the part of a build's temp name that says who writes it."""
    return f"{os.getpid()}@{socket.gethostname()}"


def _remove_stale_builds(out: Path) -> None:
    """Delete the temp folders that builds of `out` on this host left when killed (their process is gone)."""
    host = socket.gethostname()
    for stale in out.parent.glob(f".{out.name}.*@{host}.*.partial"):
        try:
            os.kill(int(stale.name[len(out.name) + 2 :].split("@")[0]), 0)
        except ProcessLookupError:
            shutil.rmtree(stale, ignore_errors=True)
        except (ValueError, PermissionError):  # not our name, or another user's live process
            pass


def cache_matches(
    cache: Path, sources: Sequence[str | Path], short_side: int, topic: str | None = None
) -> bool:
    """True when `cache` was built from exactly these (unchanged) files at this size (and bag topic)."""
    try:
        index = json.loads((cache / INDEX).read_text())
        want = {tuple(_fingerprint(p).values()) for p in expand_sources(sources)}
    except (OSError, ValueError, KeyError):
        return False
    have = {(e["source"], e["bytes"], e["mtime"]) for e in index["videos"] + index.get("skipped", [])}
    same_topic = index.get("topic") == topic
    return index.get("short_side") == short_side and have == want and same_topic


def stored_short_side(cache: str | Path) -> int | None:
    """The short side (pixels) a cache's frames were stored at; None when its index does not say."""
    try:
        value = json.loads((Path(cache) / INDEX).read_text()).get("short_side")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


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

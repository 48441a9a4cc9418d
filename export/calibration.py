"""Calibration and held-out frames sampled evenly across videos, image folders and images, preprocessed
exactly as the artifact's manifest says (edge_vsd.data.preprocess)."""

from __future__ import annotations

import hashlib
from collections.abc import Set
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edge_vsd.data.preprocess import resize_rgb
from edge_vsd.data.video import is_bag
from edge_vsd.errors import InputError

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
# 128 frames by default. Measured on a vit_tiny@112 with ViT-like activation outliers, calibrated on vtest +
# Megamind + tree and scored on 48 held-out frames: patch cosine 0.977 (16 frames), 0.976 (64), 0.983 (128);
# diverse footage keeps widening the activation ranges past 64 frames. Cost is linear in frames (two NNCF
# statistics passes, ~0.15 s per frame for vit_small@224 on 2 cores). Tests use 8-16.
DEFAULT_CALIB_FRAMES = 128
DEFAULT_HELDOUT_FRAMES = 32
MIN_CALIB_FRAMES = 4
RAW_HELDOUT_FRAMES = 8


@dataclass
class FrameSet:
    """Resized BGR uint8 frames for calibration and for the held-out fidelity gate."""

    calib: np.ndarray  # (N, H, W, 3) uint8 BGR at model size
    heldout: np.ndarray  # (M, H, W, 3)
    sources: list[str]
    total_frames: int
    notes: list[str] = field(default_factory=list)
    # A few held-out frames as decoded (source resolution): the runtime check resizes them itself.
    raw_heldout: list[np.ndarray] = field(default_factory=list)


def to_tensor(frames_bgr: np.ndarray) -> np.ndarray:
    """Model-size BGR uint8 frames -> normalised NCHW float32 (same math as the reference preprocess)."""
    from edge_vsd.data.preprocess import preprocess

    return preprocess(frames_bgr, frames_bgr.shape[1:3]).numpy()


def tensor_sha256(x: np.ndarray) -> str:
    """Hash of a float32 tensor's shape and bytes: identifies exactly what calibration saw."""
    x = np.ascontiguousarray(x, np.float32)
    digest = hashlib.sha256(repr(tuple(x.shape)).encode())
    digest.update(x.tobytes())
    return digest.hexdigest()


class _Source:
    """One video, image folder or image: a frame count and random access by index (sequential reads)."""

    def __init__(self, path: Path, topic: str | None = None):
        self.path = path
        self.bag = None
        self.images: list[Path] | None
        if is_bag(path):  # a ROS 2 bag's image topic: frames are its messages, in order
            from edge_vsd.runtimes.bags import Bag

            self.bag = Bag(path, topic)
            self.images = None
            self.count = self.bag.frame_count
        elif path.is_dir():
            self.images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTS)
            if not self.images:
                raise InputError(
                    f"{path}: calibration folder holds no images ({', '.join(sorted(IMAGE_EXTS))})"
                )
            self.count = len(self.images)
        elif path.suffix.lower() in IMAGE_EXTS:
            self.images = [path]
            self.count = 1
        else:
            self.images = None
            self.count = self._count_video()

    def _open(self) -> cv2.VideoCapture:
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            raise InputError(f"{self.path}: not a readable video or image (calibration data)")
        return cap

    def _count_video(self) -> int:
        # The container's count when it has one (a decode pass over a long video is slow); `read` corrects it
        # when the file ends early, as broken or variable-rate files do.
        cap = self._open()
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        if n <= 0:
            while cap.grab():
                n += 1
        cap.release()
        if n == 0:
            raise InputError(f"{self.path}: no decodable frames (calibration data)")
        return n

    def read(
        self, indices: list[int], size: tuple[int, int], keep_raw: Set[int] = frozenset()
    ) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
        """Frames at `indices` (sorted) resized to the model size, and those in `keep_raw` as decoded;
        unreadable images are skipped. A video that ends before its stated length gets `count` lowered to
        the frames that decoded."""
        out: dict[int, np.ndarray] = {}
        raw: dict[int, np.ndarray] = {}

        def keep(i: int, frame: np.ndarray) -> None:
            out[i] = _model_size(frame, size)
            if i in keep_raw:
                raw[i] = frame

        if not indices:
            return out, raw
        if self.images is not None:
            for i in indices:
                img = cv2.imread(str(self.images[i]), cv2.IMREAD_COLOR)
                if img is not None:
                    keep(i, img)
            return out, raw
        wanted = set(indices)
        if self.bag is not None:
            seen = 0
            for item in self.bag.frames():
                seen = item.index + 1
                if item.index in wanted:
                    keep(item.index, item.frame)
                if seen > max(indices):
                    break
            else:  # fewer decodable messages than the bag's summary counted (a truncated file)
                self.count = seen
            return out, raw
        cap = self._open()
        for i in range(max(indices) + 1):
            if not cap.grab():
                self.count = i
                break
            if i in wanted:
                ok, frame = cap.retrieve()
                if ok and frame is not None:
                    keep(i, frame)
        cap.release()
        return out, raw


def _model_size(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    # The reference resize, kept in BGR so the reference preprocess later sees a frame already at size.
    return cv2.cvtColor(resize_rgb(frame, size), cv2.COLOR_RGB2BGR)


def _even(n_total: int, k: int, offset: float) -> list[int]:
    """k indices spread evenly over [0, n_total), each at `offset` (0..1) within its stride."""
    if k <= 0:
        return []
    stride = n_total / k
    return sorted({min(n_total - 1, int(stride * (j + offset))) for j in range(k)})


def _shares(capacity: list[int], n: int) -> list[int]:
    """Split n frames as equally as possible over sources, none taking more than it holds (water-filling):
    every video or folder is represented, whatever its length."""
    share = [0] * len(capacity)
    left = n
    while left > 0:
        open_ = [i for i, c in enumerate(capacity) if share[i] < c]
        if not open_:
            break
        each = max(1, left // len(open_))
        for i in open_:
            take = min(each, capacity[i] - share[i], left)
            share[i] += take
            left -= take
            if left == 0:
                break
    return share


def _pick(count: int, n_calib: int, n_heldout: int) -> tuple[list[int], list[int]]:
    """Calibration indices at the start of each of n_calib strides; held-out indices from the midpoints
    between them, so the gate never scores a frame calibration saw."""
    calib = _even(count, n_calib, 0.0)
    taken = set(calib)
    mids = [i for i in _even(count, n_calib, 0.5) if i not in taken] or [
        i for i in range(count) if i not in taken
    ]
    k = min(n_heldout, len(mids))
    held = sorted({mids[int(j * len(mids) / k)] for j in range(k)}) if k else []
    return calib, held


def load_frames(
    paths: list[str | Path],
    size: tuple[int, int],
    n_calib: int = DEFAULT_CALIB_FRAMES,
    n_heldout: int = DEFAULT_HELDOUT_FRAMES,
    topic: str | None = None,
) -> FrameSet:
    """`n_calib` calibration and `n_heldout` held-out frames, shared equally between the sources and spread
    evenly through each one (ROS 2 bags: the frames of `topic`, or of their only image topic)."""
    if n_calib < MIN_CALIB_FRAMES:
        raise InputError(f"--calib-frames {n_calib}: need at least {MIN_CALIB_FRAMES}")
    sources = []
    for p in paths:
        path = Path(p)
        if not path.exists():
            raise InputError(f"{path}: calibration source not found")
        sources.append(_Source(path, topic))
    names = ", ".join(str(s.path) for s in sources)
    total = sum(s.count for s in sources)
    notes = []
    n_heldout = min(n_heldout, max(1, total // 5))
    if total - n_heldout < n_calib:
        n_calib = total - n_heldout
        notes.append(
            f"only {total} frames in the calibration sources: {n_calib} for calibration, {n_heldout} held out"
        )
    if n_calib < MIN_CALIB_FRAMES:
        raise InputError(
            f"{names}: only {total} usable frames; calibration needs at least {MIN_CALIB_FRAMES + 1}"
        )
    # Each source's share of all frames, then of the held-out ones: every source is calibrated on and scored.
    share = _shares([s.count for s in sources], n_calib + n_heldout)
    held_share = _shares(share, n_heldout)
    calib_share = [a - b for a, b in zip(share, held_share, strict=True)]
    calib, held, raw = [], [], []
    raw_per_source = -(-RAW_HELDOUT_FRAMES // len(sources))
    for src, nc, nh in zip(sources, calib_share, held_share, strict=True):
        c_idx, h_idx = _pick(src.count, nc, nh)
        frames, raws = src.read(sorted(set(c_idx) | set(h_idx)), size, set(h_idx[:raw_per_source]))
        if max(c_idx + h_idx, default=-1) >= src.count:  # shorter than its header said: resample within it
            if src.count == 0:
                raise InputError(f"{src.path}: no decodable frames (calibration data)")
            nc = min(nc, src.count)
            c_idx, h_idx = _pick(src.count, nc, min(nh, src.count - nc))
            frames, raws = src.read(sorted(set(c_idx) | set(h_idx)), size, set(h_idx[:raw_per_source]))
        calib += [frames[i] for i in c_idx if i in frames]
        held += [frames[i] for i in h_idx if i in frames]
        raw += [raws[i] for i in h_idx if i in raws]
    if len(calib) < MIN_CALIB_FRAMES or not held:
        raise InputError(f"{names}: only {len(calib) + len(held)} frames could be decoded")
    calib_arr = np.stack(calib)
    if int(calib_arr.max()) == int(calib_arr.min()):
        raise InputError(f"{names}: calibration frames are blank (a single constant value)")
    total = sum(s.count for s in sources)
    sources_used = [str(s.path) for s in sources]
    return FrameSet(calib_arr, np.stack(held), sources_used, total, notes, raw[:RAW_HELDOUT_FRAMES])


def synthetic_frames(size: tuple[int, int], n_calib: int, n_heldout: int, seed: int = 0) -> FrameSet:
    """Frames from the built-in synthetic video when no --calib is given (parity checks, smoke exports)."""
    from edge_vsd.data.synthetic import make_frames

    # Rendered at 1.5x the model size, so the runtime check exercises its own resize.
    raw = make_frames(
        n_frames=n_calib + n_heldout, height=size[0] * 3 // 2, width=size[1] * 3 // 2, seed=seed
    )
    frames = np.stack([_model_size(f, size) for f in raw])
    return FrameSet(
        frames[:n_calib],
        frames[n_calib:],
        ["synthetic"],
        len(frames),
        ["no --calib given: synthetic frames (pass --calib with your own footage for INT8)"],
        list(raw[n_calib : n_calib + RAW_HELDOUT_FRAMES]),
    )

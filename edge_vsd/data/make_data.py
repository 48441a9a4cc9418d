"""`edge-vsd make-data`: labelled synthetic data that needs no download.

Writes, from the synthetic scene generator and its ground truth:
  OUT/davis/  DAVIS-2017 layout: JPEGImages/480p/SEQ/00000.jpg, Annotations/480p/SEQ/00000.png (palette PNG,
              one id per moving object), ImageSets/2017/val.txt
  OUT/ade/    ADE20K layout: images/N.jpg, annotations/N.png (class per pixel, 0 = ignore; see CLASSES)
  OUT/videos/ unlabelled training videos (other seeds than the labelled scenes)
With --hard every part comes from `edge_vsd.data.synthetic_hard`: shape classes, objects in the background's
kind of noise at a finer grain, per-frame light, noise, blur and JPEG, occlusion (the set where random
features score low).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from edge_vsd.atomic import umask_mode
from edge_vsd.data.synthetic import CLASSES, render, write_video
from edge_vsd.data.synthetic_hard import HARD_CLASSES, HARD_VERSION, render_hard
from edge_vsd.errors import InputError

# seeds of the three parts never overlap, so no labelled scene is seen in training
DAVIS_SEED, ADE_SEED, VIDEO_SEED = 100_000, 200_000, 300_000


@dataclass
class DataConfig:
    out: str = "synthetic-data"
    sequences: int = 4
    frames: int = 40
    height: int = 192
    width: int = 256
    ade_images: int = 48
    videos: int = 2
    video_frames: int = 300
    seed: int = 0
    hard: bool = False  # the hard set: see edge_vsd.data.synthetic_hard

    def render(self, n_frames: int, seed: int, motion: str = "wrap"):
        """(frames, ids, classes) of one scene from this set's generator."""
        if self.hard:
            return render_hard(n_frames, self.height, self.width, seed)
        return render(n_frames, self.height, self.width, seed, motion)


def davis_palette() -> list[int]:
    """A 256-colour palette: 0 black, then distinct colours (the bit-interleaving scheme DAVIS uses)."""
    pal = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal += [r, g, b]
    return pal


def write_indexed_png(path: Path, ids: np.ndarray) -> None:
    """uint8 object ids -> palette PNG (what DAVIS annotations are)."""
    from PIL import Image

    img = Image.fromarray(ids.astype(np.uint8), mode="P")
    img.putpalette(davis_palette())
    img.save(path)


def write_davis(root: Path, cfg: DataConfig) -> list[str]:
    names = []
    for i in range(cfg.sequences):
        name = f"synthetic-{i:02d}"
        frames, ids, _ = cfg.render(cfg.frames, DAVIS_SEED + cfg.seed * 1000 + i, "bounce")
        img_dir = root / "JPEGImages" / "480p" / name
        ann_dir = root / "Annotations" / "480p" / name
        img_dir.mkdir(parents=True)
        ann_dir.mkdir(parents=True)
        for t, (frame, mask) in enumerate(zip(frames, ids)):
            cv2.imwrite(str(img_dir / f"{t:05d}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, 95])
            write_indexed_png(ann_dir / f"{t:05d}.png", mask)
        names.append(name)
    sets = root / "ImageSets" / "2017"
    sets.mkdir(parents=True)
    (sets / "val.txt").write_text("".join(n + "\n" for n in names))
    return names


def write_ade(root: Path, cfg: DataConfig) -> None:
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir(parents=True)
    for i in range(cfg.ade_images):
        frames, _, classes = cfg.render(8, ADE_SEED + cfg.seed * 1000 + i)
        cv2.imwrite(str(root / "images" / f"{i:05d}.jpg"), frames[-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
        cv2.imwrite(str(root / "annotations" / f"{i:05d}.png"), classes[-1])
    names = HARD_CLASSES if cfg.hard else CLASSES
    (root / "classes.json").write_text(json.dumps({str(k): v for k, v in names.items()}, indent=2) + "\n")


def write_frames(path: Path, frames: np.ndarray, fps: float = 30.0) -> None:
    """BGR frames to an MJPG .avi."""
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (w, h))
    try:
        for frame in frames:
            writer.write(frame)
    finally:
        writer.release()


def make_data(cfg: DataConfig, force: bool = False) -> Path:
    """Write every part into a staging folder beside OUT, then rename it into place."""
    out = Path(cfg.out)
    if out.exists() and not force:
        raise InputError(f"{out}: already exists; pass --force to replace it")
    for name, value in asdict(cfg).items():
        if name not in ("out", "seed", "hard") and value < (1 if name != "videos" else 0):
            raise InputError(f"--{name.replace('_', '-')} {value}: must be at least 1")
    if cfg.height < 32 or cfg.width < 32:
        raise InputError(f"--size {cfg.height}x{cfg.width}: at least 32x32")
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        os.chmod(stage, umask_mode(0o777))  # mkdtemp makes it owner-only; the data is for everyone
        write_davis(stage / "davis", cfg)
        write_ade(stage / "ade", cfg)
        for i in range(cfg.videos):
            path, seed = stage / "videos" / f"train-{i:02d}.avi", VIDEO_SEED + cfg.seed * 1000 + i
            if cfg.hard:
                write_frames(path, cfg.render(cfg.video_frames, seed)[0])
            else:
                write_video(path, cfg.video_frames, cfg.height, cfg.width, seed=seed)
        record = {**asdict(cfg), **({"hard_version": HARD_VERSION} if cfg.hard else {})}
        (stage / "config.json").write_text(json.dumps(record, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return out


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected HxW, e.g. 192x256") from None
    return h, w


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = DataConfig()
    p.add_argument("--out", default=d.out, help=f"output folder (default {d.out})")
    p.add_argument(
        "--sequences", type=int, default=d.sequences, help="DAVIS-layout sequences (default %(default)s)"
    )
    p.add_argument(
        "--frames", type=int, default=d.frames, help="frames per DAVIS sequence (default %(default)s)"
    )
    p.add_argument(
        "--size",
        type=_size,
        default=(d.height, d.width),
        metavar="HxW",
        help=f"frame size (default {d.height}x{d.width})",
    )
    p.add_argument(
        "--ade-images",
        type=int,
        default=d.ade_images,
        help="ADE-layout labelled images (default %(default)s)",
    )
    p.add_argument(
        "--videos", type=int, default=d.videos, help="unlabelled training videos (default %(default)s)"
    )
    p.add_argument(
        "--video-frames",
        type=int,
        default=d.video_frames,
        help="frames per training video (default %(default)s)",
    )
    p.add_argument("--seed", type=int, default=d.seed, help="random seed (default %(default)s)")
    p.add_argument(
        "--hard",
        action="store_true",
        help="the hard set: classes by shape, objects in the background's kind of noise at a finer grain "
        "with drifting hue and size, per-frame light, noise, blur and JPEG, occlusion (random features score "
        "low here)",
    )
    p.add_argument("--force", action="store_true", help="replace an existing output folder")


def run(args: argparse.Namespace) -> int:
    h, w = args.size
    cfg = DataConfig(
        args.out,
        args.sequences,
        args.frames,
        h,
        w,
        args.ade_images,
        args.videos,
        args.video_frames,
        args.seed,
        args.hard,
    )
    out = make_data(cfg, args.force)
    print(f"davis: {out / 'davis'} ({cfg.sequences} sequences x {cfg.frames} frames)")
    print(
        f"ade:   {out / 'ade'} ({cfg.ade_images} images, "
        f"{len(HARD_CLASSES if cfg.hard else CLASSES)} classes)"
    )
    print(f"videos: {out / 'videos'} ({cfg.videos} x {cfg.video_frames} frames, unlabelled)")
    return 0

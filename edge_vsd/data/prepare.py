"""`edge-vsd prepare`: decode videos once into a memory-mapped frame cache that `train` reads."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edge_vsd.checks import check_img_size, check_writable_dir
from edge_vsd.data.cache import build_cache, open_cache
from edge_vsd.data.video import CACHE_INDEX


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("videos", nargs="+", metavar="VIDEO", help="video files, folders or glob patterns")
    p.add_argument(
        "--img-size",
        type=int,
        default=112,
        help="training image size; frames are stored with their short side at ~1.15x this (default 112)",
    )
    p.add_argument(
        "--patch-size",
        type=int,
        choices=[8, 16],
        default=16,
        help="the patch size train will use; --img-size must be a multiple of it, as in train (default 16)",
    )
    p.add_argument(
        "--topic", help="ROS 2 bags: the image topic (default: the bag's only Image/CompressedImage topic)"
    )
    p.add_argument("--out", required=True, help="cache folder to write")


def cache_short_side(img_size: int) -> int:
    """Frames are cached a little larger than the training crop so random-resized crops keep detail."""
    return int(round(img_size * 1.15))


def run(args: argparse.Namespace) -> int:
    check_img_size(args.img_size, args.patch_size)
    check_writable_dir(Path(args.out), "--out")
    out = build_cache(args.videos, args.out, cache_short_side(args.img_size), topic=args.topic)
    entries = json.loads((out / CACHE_INDEX).read_text())["videos"]
    for v, entry in zip(open_cache(out), entries):
        name = _as_given(v.source)
        if "segment" in entry:  # a ROS 2 bag: one cached video per stretch between stamp gaps
            name += f" {entry['topic']} (segment {entry['segment'] + 1})"
        print(f"{name}: {v.frames.shape[0]} frames {v.frames.shape[2]}x{v.frames.shape[1]} @ {v.fps:g} fps")
    print(f"cache written to {out}")
    return 0


def _as_given(source: str) -> str:
    """A cached video's path (stored absolute, to recognise the file) relative to here when it is below."""
    try:
        return str(Path(source).relative_to(Path.cwd()))
    except ValueError:
        return source

"""The two small image folders the learning docs score real-footage training on, rebuilt from Debian's
opencv-doc samples so every session measures on the same pixels:

- `vtest_small`: 50 frames of vtest.avi, spread evenly over the video (in domain for the opencv-doc runs);
- `photos_small`: 8 opencv-doc photographs, centre-cropped to 3:4 (out of domain).

Both at 168x224 (INTER_AREA), as PNG. Use them with `edge-vsd eval --data DIR` or `train --eval-data DIR`.

    python -m edge_vsd.benchmarks.probe_folders [--out probe] [--samples OPENCV_DOC_EXAMPLES_DATA]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

OPENCV_SAMPLES = Path("/usr/share/doc/opencv-doc/examples/data")
SIZE = (168, 224)  # (H, W)
VIDEO, VIDEO_FRAMES = "vtest.avi", 50
PHOTOS = ("aloeL", "baboon", "building", "butterfly", "fruits", "home", "leuvenA", "messi5")


def _fit(img: np.ndarray) -> np.ndarray:
    """Centre-crop to the folders' aspect (3:4) and resize to SIZE."""
    h, w = img.shape[:2]
    th, tw = SIZE
    if w * th > h * tw:  # too wide
        cw = h * tw // th
        img = img[:, (w - cw) // 2 : (w - cw) // 2 + cw]
    else:
        ch = w * th // tw
        img = img[(h - ch) // 2 : (h - ch) // 2 + ch]
    return cv2.resize(img, (tw, th), interpolation=cv2.INTER_AREA)


def video_folder(video: Path, out: Path, n: int = VIDEO_FRAMES) -> list[Path]:
    """`n` frames spread evenly over `video` (first and last included), as out/000.png ..."""
    cap = cv2.VideoCapture(str(video))
    count = 0
    while cap.grab():  # count first: holding every decoded frame of a long video would take gigabytes
        count += 1
    cap.release()
    if count < n:
        raise SystemExit(f"{video}: {count} frames decoded, {n} needed")
    wanted = {int(i): k for k, i in enumerate(np.linspace(0, count - 1, n).round())}
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{k:03d}.png" for k in range(n)]
    cap = cv2.VideoCapture(str(video))
    for i in range(count):
        ok, frame = cap.read()
        if not ok:
            raise SystemExit(f"{video}: frame {i} of {count} could not be decoded on the second pass")
        if i in wanted:
            cv2.imwrite(str(paths[wanted[i]]), _fit(frame))
    cap.release()
    return paths


def photo_folder(samples: Path, out: Path, names: tuple[str, ...] = PHOTOS) -> list[Path]:
    """The named opencv-doc photographs (.jpg), centre-cropped and resized, as out/NAME.png."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        img = cv2.imread(str(samples / f"{name}.jpg"), cv2.IMREAD_COLOR)
        if img is None:
            raise SystemExit(f"{samples / name}.jpg: missing or unreadable (apt-get install opencv-doc)")
        paths.append(out / f"{name}.png")
        cv2.imwrite(str(paths[-1]), _fit(img))
    return paths


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--out", type=Path, default=Path("probe"), help="folder for vtest_small/ and photos_small/"
    )
    p.add_argument("--samples", type=Path, default=OPENCV_SAMPLES, help="opencv-doc's examples/data folder")
    args = p.parse_args(argv)
    if not (args.samples / VIDEO).exists():
        raise SystemExit(f"{args.samples / VIDEO}: missing (apt-get install opencv-doc, or pass --samples)")
    video = video_folder(args.samples / VIDEO, args.out / "vtest_small")
    photos = photo_folder(args.samples, args.out / "photos_small")
    print(
        f"{args.out / 'vtest_small'}: {len(video)} frames; {args.out / 'photos_small'}: {len(photos)} photos"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Robot-loop example: camera or video frames in, patch features out, a point tracked across frames.

The tracker is the simplest useful thing a robot can do with dense features and no labels: remember the
feature of the patch under a clicked point, then in every new frame move to the most similar patch near
where the point was last seen. Torch-free: it needs only the base install and an exported artifact.

    python examples/robot_perception.py --artifact artifacts/cpu-int8 --source 0           # camera 0
    python examples/robot_perception.py --artifact artifacts/cpu-int8 --source walk.mp4 --point 320 240 \
        --out-video track.mp4
"""

from __future__ import annotations

import argparse
import sys

import cv2
import numpy as np
from edge_vsd.runtimes import load


class PatchTracker:
    """Nearest-neighbour tracking of one patch feature, searched within `radius` patches of the last hit."""

    def __init__(self, template: np.ndarray, cell: tuple[int, int], radius: int = 2):
        self.template = template / (np.linalg.norm(template) + 1e-8)
        self.cell, self.radius = cell, radius

    @classmethod
    def at_point(
        cls, patches: np.ndarray, xy: tuple[float, float], frame_hw: tuple[int, int], radius: int = 2
    ):
        cell = point_to_cell(xy, frame_hw, patches.shape[:2])
        return cls(patches[cell], cell, radius)

    def update(self, patches: np.ndarray) -> tuple[tuple[int, int], float]:
        """Move to the best-matching patch of this frame; returns the (row, col) cell and its cosine."""
        h, w = patches.shape[:2]
        r0, c0 = self.cell
        rows = slice(max(0, r0 - self.radius), min(h, r0 + self.radius + 1))
        cols = slice(max(0, c0 - self.radius), min(w, c0 + self.radius + 1))
        window = patches[rows, cols]
        sims = window @ self.template / (np.linalg.norm(window, axis=-1) + 1e-8)
        dr, dc = np.unravel_index(int(np.argmax(sims)), sims.shape)
        self.cell = (rows.start + int(dr), cols.start + int(dc))
        return self.cell, float(sims[dr, dc])


def point_to_cell(
    xy: tuple[float, float], frame_hw: tuple[int, int], grid: tuple[int, int]
) -> tuple[int, int]:
    x, y = xy
    return (
        min(grid[0] - 1, int(y / frame_hw[0] * grid[0])),
        min(grid[1] - 1, int(x / frame_hw[1] * grid[1])),
    )


def cell_to_point(cell: tuple[int, int], frame_hw: tuple[int, int], grid: tuple[int, int]) -> tuple[int, int]:
    return (int((cell[1] + 0.5) * frame_hw[1] / grid[1]), int((cell[0] + 0.5) * frame_hw[0] / grid[0]))


def track(
    artifact: str,
    source,
    point: tuple[float, float] | None = None,
    max_frames: int | None = None,
    radius: int = 2,
    out_video: str | None = None,
) -> list[dict]:
    """Run the loop; returns one record per frame: index, timestamp, (x, y) in pixels, similarity."""
    encoder = load(artifact)
    tracker, writer, records = None, None, []
    for index, timestamp, features in encoder.stream(source, keep_frames=True, max_frames=max_frames):
        frame, patches = features.frame, features.patches
        hw = frame.shape[:2]
        if tracker is None:
            xy = point if point is not None else (hw[1] / 2, hw[0] / 2)
            tracker = PatchTracker.at_point(patches, xy, hw, radius)
            cell, sim = tracker.cell, 1.0
        else:
            cell, sim = tracker.update(patches)
        x, y = cell_to_point(cell, hw, patches.shape[:2])
        records.append({"frame": index, "timestamp": timestamp, "x": x, "y": y, "similarity": sim})
        if out_video:
            if writer is None:
                writer = cv2.VideoWriter(out_video, cv2.VideoWriter_fourcc(*"mp4v"), 15, (hw[1], hw[0]))
            shown = frame.copy()
            cv2.circle(shown, (x, y), 6, (0, 0, 255), 2)
            writer.write(shown)
    if writer is not None:
        writer.release()
    return records


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--artifact", required=True, help="exported artifact folder (manifest.json)")
    p.add_argument("--source", required=True, help="video file, image folder, camera index or stream URL")
    p.add_argument(
        "--point", nargs=2, type=float, metavar=("X", "Y"), help="pixel to track (default: centre)"
    )
    p.add_argument("--radius", type=int, default=2, help="search window in patches around the last hit")
    p.add_argument("--max-frames", type=int, help="stop after N frames")
    p.add_argument("--out-video", help="MP4 with the tracked point drawn")
    args = p.parse_args(argv)
    source = int(args.source) if args.source.isdigit() else args.source
    records = track(
        args.artifact,
        source,
        tuple(args.point) if args.point else None,
        args.max_frames,
        args.radius,
        args.out_video,
    )
    for r in records:
        print(
            f"frame {r['frame']:5d}  t={r['timestamp']:7.2f}s  x={r['x']:4d} y={r['y']:4d}"
            f"  cos={r['similarity']:.3f}"
        )
    return 0 if records else 1


if __name__ == "__main__":
    sys.exit(main())

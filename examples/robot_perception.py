"""Robot-loop example: camera or video frames in, patch features out, a point tracked across frames.

The tracker is the simplest useful thing a robot can do with dense features and no labels: remember the
feature of the patch under a point (clicked in a window where a display exists, or given with --point),
then in every new frame find the most similar patch near where the point was last seen, refine the
position to 1/8 of a patch by matching features interpolated between patch centres, and report a
confidence. Below
`--lost-below` the point is marked lost and the next frames search the whole image until it is found
again. The template slowly adapts while the match is confident, anchored to the first look.
Torch-free: it needs only the base install and an exported artifact.

    python examples/robot_perception.py --artifact artifacts/cpu-int8 --source 0           # camera 0, click
    python examples/robot_perception.py --artifact artifacts/cpu-int8 --source walk.mp4 --point 320 240 \
        --out-video track.mp4
    python examples/robot_perception.py --artifact artifacts/cpu-int8 --pan-eval vtest.avi  # error in px
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass

import cv2
import numpy as np
from edge_vsd.runtimes import load
from edge_vsd.runtimes.geometry import PatchGrid


def _unit(x: np.ndarray) -> np.ndarray:
    return x / (np.linalg.norm(x, axis=-1, keepdims=True) + 1e-8)


def sample(patches: np.ndarray, gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """Features at continuous grid positions (cell (r, c) centred at (c + 0.5, r + 0.5)), bilinear between
    cell centres and clamped at the border: (h, w, D) and positions of shape S -> (*S, D)."""
    h, w = patches.shape[:2]
    u = np.clip(np.asarray(gx, np.float32) - 0.5, 0, w - 1)
    v = np.clip(np.asarray(gy, np.float32) - 0.5, 0, h - 1)
    c0, r0 = (
        np.minimum(u.astype(int), w - 2 if w > 1 else 0),
        np.minimum(v.astype(int), h - 2 if h > 1 else 0),
    )
    c1, r1 = np.minimum(c0 + 1, w - 1), np.minimum(r0 + 1, h - 1)
    fu, fv = (u - c0)[..., None], (v - r0)[..., None]
    top = patches[r0, c0] * (1 - fu) + patches[r0, c1] * fu
    bottom = patches[r1, c0] * (1 - fu) + patches[r1, c1] * fu
    return top * (1 - fv) + bottom * fv


@dataclass
class TrackState:
    """Where the point is in one frame: pixel (x, y), similarity of the best match, lost or not."""

    x: float
    y: float
    similarity: float
    lost: bool


class PatchTracker:
    """Tracks one point by its feature: a patch-level search, then (with `refine`) a search in 1/8-cell
    steps over features sampled bilinearly between patch centres; a lost state; a slowly adapted template."""

    STEPS = 8  # sub-patch positions per cell in the refinement

    def __init__(
        self,
        patches: np.ndarray,
        xy: tuple[float, float],
        grid: PatchGrid,
        radius: int = 2,
        lost_below: float = 0.5,
        adapt: float = 0.1,
        refine: bool = True,
    ) -> None:
        self.grid, self.radius, self.lost_below = grid, radius, lost_below
        self.adapt, self.refine = adapt, refine
        gx, gy = grid.pixel_to_grid(*xy)
        row, col = grid.point_to_cell(*xy)
        feature = sample(patches, gx, gy) if refine else patches[row, col]
        self.anchor = _unit(feature.astype(np.float32))
        self.template = self.anchor.copy()
        self.offset = (0.0, 0.0) if refine else (gx - (col + 0.5), gy - (row + 0.5))
        self.pos = (gx, gy) if refine else (col + 0.5, row + 0.5)  # continuous grid position tracked
        self.velocity = (0.0, 0.0)
        self.lost = False

    def _score(self, features: np.ndarray) -> np.ndarray:
        unit = _unit(features.astype(np.float32))
        return 0.5 * (unit @ self.anchor + unit @ self.template)

    def _refine(self, patches: np.ndarray, r: int, c: int) -> tuple[float, float, float]:
        """Best continuous position within one cell of cell (r, c)'s centre, and its score."""
        offsets = np.linspace(-1.0, 1.0, 2 * self.STEPS + 1)
        gx, gy = (g.ravel() for g in np.meshgrid(c + 0.5 + offsets, r + 0.5 + offsets))
        gx, gy = np.append(gx, self.pos[0]), np.append(gy, self.pos[1])  # staying put is a candidate too
        scores = self._score(sample(patches, gx, gy))
        best = int(np.argmax(scores))
        return float(gx[best]), float(gy[best]), float(scores[best])

    def update(self, patches: np.ndarray) -> TrackState:
        """Find the point in this frame's (h, w, D) patch features."""
        scores = self._score(patches)
        h, w = scores.shape
        if self.lost:  # search everywhere
            rows, cols = slice(0, h), slice(0, w)
        else:  # around where the motion so far says it will be
            px, py = self.pos[0] + self.velocity[0], self.pos[1] + self.velocity[1]
            c0, r0 = int(np.clip(px, 0, w - 1)), int(np.clip(py, 0, h - 1))
            rows = slice(max(0, r0 - self.radius), min(h, r0 + self.radius + 1))
            cols = slice(max(0, c0 - self.radius), min(w, c0 + self.radius + 1))
        window = scores[rows, cols]
        dr, dc = np.unravel_index(int(np.argmax(window)), window.shape)
        r, c = rows.start + int(dr), cols.start + int(dc)
        if self.refine:
            gx, gy, best = self._refine(patches, r, c)
        else:
            gx, gy, best = c + 0.5, r + 0.5, float(scores[r, c])
        self.lost = best < self.lost_below
        if not self.lost:
            self.velocity = (
                0.5 * self.velocity[0] + 0.5 * (gx - self.pos[0]),
                0.5 * self.velocity[1] + 0.5 * (gy - self.pos[1]),
            )
            self.pos = (gx, gy)
            if self.adapt:
                seen = sample(patches, gx, gy) if self.refine else patches[r, c]
                self.template = _unit((1 - self.adapt) * self.template + self.adapt * _unit(seen))
        x, y = self.grid.grid_to_pixel(self.pos[0] + self.offset[0], self.pos[1] + self.offset[1])
        return TrackState(x, y, best, self.lost)


def display_available() -> bool:
    """Whether OpenCV can open a window here (a GUI build and a display)."""
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or sys.platform != "linux"):
        return False
    try:
        cv2.namedWindow("edge-vsd probe", cv2.WINDOW_NORMAL)
        cv2.destroyWindow("edge-vsd probe")
        return True
    except cv2.error:
        return False


def click_point(frame: np.ndarray, title: str = "click the point to track") -> tuple[float, float] | None:
    """Show the frame and return the first left click (None if the window is closed with a key)."""
    picked: list[tuple[float, float]] = []

    def on_mouse(event: int, x: int, y: int, *_: object) -> None:
        if event == cv2.EVENT_LBUTTONDOWN:
            picked.append((float(x), float(y)))

    cv2.namedWindow(title)
    cv2.setMouseCallback(title, on_mouse)
    cv2.imshow(title, frame)
    while not picked:
        if cv2.waitKey(20) != -1:
            break
    cv2.destroyWindow(title)
    return picked[0] if picked else None


def _draw(frame: np.ndarray, state: TrackState) -> np.ndarray:
    shown = frame.copy()
    color = (0, 0, 255) if not state.lost else (0, 200, 255)
    centre = (round(state.x), round(state.y))
    cv2.circle(shown, centre, 6, color, 2)
    label = f"{'LOST ' if state.lost else ''}cos {state.similarity:.2f}"
    cv2.putText(shown, label, (10, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, color, 2)
    return shown


class _VideoOut:
    """MP4 at the source's frame rate; for a source without one (a live stream), the rate is estimated
    from the first frames' capture times."""

    def __init__(self, path: str, fps: float | None, probe: int = 10) -> None:
        self.path, self.fps, self.probe = path, fps, probe
        self.pending: list[tuple[float, np.ndarray]] = []
        self.writer: cv2.VideoWriter | None = None

    def add(self, timestamp: float, image: np.ndarray) -> None:
        if self.writer is None:
            self.pending.append((timestamp, image))
            if self.fps is None and len(self.pending) < self.probe:
                return
            self._open()
            return
        self.writer.write(image)

    def _open(self) -> None:
        if self.fps is None:
            gaps = np.diff([t for t, _ in self.pending])
            gaps = gaps[gaps > 0]
            self.fps = float(1.0 / np.median(gaps)) if len(gaps) else 30.0
        h, w = self.pending[0][1].shape[:2]
        self.writer = cv2.VideoWriter(self.path, cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
        for _, image in self.pending:
            self.writer.write(image)
        self.pending = []

    def close(self) -> None:
        if self.writer is None and self.pending:
            self._open()
        if self.writer is not None:
            self.writer.release()


def track(
    artifact: str,
    source,
    point: tuple[float, float] | None = None,
    max_frames: int | None = None,
    radius: int = 2,
    out_video: str | None = None,
    lost_below: float = 0.5,
    show: bool = False,
    refine: bool = True,
) -> list[dict]:
    """Run the loop; returns one record per frame: index, timestamp, (x, y) in pixels, similarity, lost."""
    encoder = load(artifact)
    print(f"engine: {encoder.backend_name}", file=sys.stderr)  # the tuned choice, or the fallback that ran
    tracker, records, video = None, [], None
    with encoder.stream(source, keep_frames=True, max_frames=max_frames) as stream:
        if out_video:
            video = _VideoOut(out_video, stream.fps)
        for index, timestamp, features in stream:
            frame, patches = features.frame, features.patches
            hw = frame.shape[:2]
            if tracker is None:
                xy = point
                if xy is None and show:
                    xy = click_point(frame)
                if xy is None:
                    xy = (hw[1] / 2, hw[0] / 2)
                grid = PatchGrid.for_encoder(encoder, hw)
                tracker = PatchTracker(patches, xy, grid, radius, lost_below, refine=refine)
                state = TrackState(xy[0], xy[1], 1.0, False)
            else:
                state = tracker.update(patches)
            records.append(
                {
                    "frame": index,
                    "timestamp": timestamp,
                    "x": state.x,
                    "y": state.y,
                    "similarity": state.similarity,
                    "lost": state.lost,
                }
            )
            if video is not None or show:
                shown = _draw(frame, state)
                if video is not None:
                    video.add(timestamp, shown)
                if show:
                    cv2.imshow("edge-vsd tracking (q quits)", shown)
                    if cv2.waitKey(1) & 0xFF == ord("q"):
                        break
    if video is not None:
        video.close()
    encoder.close()
    return records


# -- known-motion evaluation ---------------------------------------------------------------------------------
def synth_pan(
    video: str, frames: int = 30, step: float = 8.0, size: tuple[int, int] = (288, 384), top: int = 0
) -> list[np.ndarray]:
    """A camera pan made from real frames: a `size` (H, W) window that slides `step` px right per frame
    over consecutive frames of `video`, so the static scene moves `step` px left per frame."""
    cap = cv2.VideoCapture(video)
    out = []
    for k in range(frames):
        ok, frame = cap.read()
        if not ok:
            break
        x0 = round(k * step)
        if x0 + size[1] > frame.shape[1]:
            break
        out.append(np.ascontiguousarray(frame[top : top + size[0], x0 : x0 + size[1]]))
    cap.release()
    return out


def pan_error(
    artifact: str,
    video: str,
    points: list[tuple[float, float]] | None = None,
    frames: int = 30,
    step: float = 8.0,
    refine: bool = True,
) -> dict[str, float]:
    """Track points of the static scene through `synth_pan`; pixel error against the known motion."""
    pan = synth_pan(video, frames, step)
    n = len(pan)
    w = pan[0].shape[1]
    if points is None:  # spread over the upper (static) part, far enough right to stay in view
        xs = np.linspace(step * n + 20, w - 20, 3)
        points = [(float(x), float(y)) for x in xs for y in (60.0, 140.0)]
    encoder = load(artifact)
    patches = encoder(pan).patches
    grid = PatchGrid.for_encoder(encoder, pan[0].shape[:2])
    encoder.close()
    dx, dy, lost = [], [], 0
    for x0, y0 in points:
        tracker = PatchTracker(patches[0], (x0, y0), grid, refine=refine)
        for k in range(1, n):
            state = tracker.update(patches[k])
            dx.append(abs(state.x - (x0 - step * k)))
            dy.append(abs(state.y - y0))
            lost += state.lost
    errors = np.hypot(dx, dy)
    e = np.asarray(errors)
    return {
        "points": len(points),
        "frames": n,
        "step_px": step,
        "mean_px": float(e.mean()),
        "median_px": float(np.median(e)),
        "p90_px": float(np.percentile(e, 90)),
        "max_px": float(e.max()),
        "mean_x_px": float(np.mean(dx)),
        "mean_y_px": float(np.mean(dy)),
        "lost_frames": int(lost),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--artifact", required=True, help="exported artifact folder (manifest.json)")
    p.add_argument("--source", help="video file, image folder, camera index or stream URL")
    p.add_argument(
        "--point",
        nargs=2,
        type=float,
        metavar=("X", "Y"),
        help="pixel to track (default: a click where a display exists, else the centre)",
    )
    p.add_argument("--radius", type=int, default=2, help="search window in patches around the last hit")
    p.add_argument("--lost-below", type=float, default=0.5, help="similarity under which the point is lost")
    p.add_argument("--max-frames", type=int, help="stop after N frames")
    p.add_argument("--out-video", help="MP4 with the tracked point drawn, at the source's frame rate")
    p.add_argument("--show", action="store_true", help="live window (needs a GUI OpenCV and a display)")
    p.add_argument("--pan-eval", metavar="VIDEO", help="report the error on a known 8 px/frame pan of VIDEO")
    args = p.parse_args(argv)
    if args.pan_eval:
        for refine in (False, True):
            result = pan_error(args.artifact, args.pan_eval, refine=refine)
            name = "sub-patch refinement" if refine else "patch centres only"
            print(f"{name}: " + ", ".join(f"{k} {v:.1f}" for k, v in result.items()))
        return 0
    if not args.source:
        p.error("--source is required (or --pan-eval)")
    show = args.show or (args.point is None and display_available())
    if args.point is None and not show:
        print("no display: tracking the frame centre (pass --point X Y)", file=sys.stderr)
    source = int(args.source) if args.source.isdigit() else args.source
    records = track(
        args.artifact,
        source,
        tuple(args.point) if args.point else None,
        args.max_frames,
        args.radius,
        args.out_video,
        args.lost_below,
        show,
    )
    for r in records:
        print(
            f"frame {r['frame']:5d}  t={r['timestamp']:7.2f}s  x={r['x']:6.1f} y={r['y']:6.1f}"
            f"  cos={r['similarity']:.3f}{'  LOST' if r['lost'] else ''}"
        )
    return 0 if records else 1


if __name__ == "__main__":
    sys.exit(main())

"""examples/robot_perception.py on real artifacts and videos."""

import importlib.util
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from edge_vsd.runtimes.geometry import PatchGrid

from edge_vsd.cli import main
from edge_vsd.data.synthetic import make_frames
from edge_vsd.model import build_vit

ROOT = Path(__file__).resolve().parents[1]


def _example():
    spec = importlib.util.spec_from_file_location(
        "robot_perception", ROOT / "examples" / "robot_perception.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("example")
    torch.manual_seed(0)
    vit = build_vit("vit_tiny", 64)
    torch.save({"teacher": {f"backbone.{k}": v for k, v in vit.state_dict().items()}}, tmp / "ckpt.pt")
    assert (
        main(["export", str(tmp / "ckpt.pt"), "--target", "cpu", "--out", str(tmp / "art"), "--quiet"]) == 0
    )
    return tmp / "art"


def _write(path: Path, frames: np.ndarray) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, frames.shape[2:0:-1])
    for f in frames:
        writer.write(f)
    writer.release()
    return path


def test_tracks_a_translating_scene(artifact, tmp_path):
    """The scene shifts right by one patch (16 px at 64 px) per frame: the tracked point follows it."""
    base = make_frames(1, 64, 128, seed=5)[0]
    frames = np.stack([np.roll(base, 16 * k, axis=1) for k in range(3)])[:, :, 16:80]
    video = _write(tmp_path / "shift.avi", frames)
    records = _example().track(str(artifact), str(video), point=(24, 40), radius=2)
    assert [r["frame"] for r in records] == [0, 1, 2]
    xs = [r["x"] for r in records]
    assert abs(xs[1] - xs[0] - 16) <= 4 and abs(xs[2] - xs[1] - 16) <= 4, xs
    assert max(abs(r["y"] - 40) for r in records) <= 4 and not any(r["lost"] for r in records)


def test_static_scene_stays_put_and_cli(artifact, tmp_path, capsys):
    frames = np.stack([make_frames(1, 64, 64, seed=2)[0]] * 4)
    video = _write(tmp_path / "static.avi", frames)
    out = tmp_path / "track.mp4"
    assert (
        _example().main(
            [
                "--artifact",
                str(artifact),
                "--source",
                str(video),
                "--point",
                "40",
                "20",
                "--out-video",
                str(out),
            ]
        )
        == 0
    )
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("frame")]
    assert len(lines) == 4 and len({line.split("cos")[0].split("x=")[1] for line in lines}) == 1
    cap = cv2.VideoCapture(str(out))
    assert cap.get(cv2.CAP_PROP_FRAME_COUNT) == 4
    assert cap.get(cv2.CAP_PROP_FPS) == 10  # the source's frame rate


def test_tracker_loses_the_point_and_finds_it_again_anywhere():
    """Tracker logic on feature grids: the template vanishes (lost), then reappears far away (found)."""
    example = _example()
    rng = np.random.default_rng(0)
    grid = PatchGrid((80, 160), (5, 10), (80, 160), 16)
    first = rng.standard_normal((5, 10, 32)).astype(np.float32)
    tracker = example.PatchTracker(first, (24.0, 40.0), grid, radius=2, lost_below=0.6)
    gone = rng.standard_normal((5, 10, 32)).astype(np.float32)
    state = tracker.update(gone)
    assert state.lost and state.similarity < 0.6
    back = rng.standard_normal((5, 10, 32)).astype(np.float32)
    back[1, 8] = first[2, 1]  # the tracked patch is now 7 cells right, 1 up: outside the search radius
    state = tracker.update(back)
    assert not state.lost and state.similarity > 0.6
    assert grid.point_to_cell(state.x, state.y) == (1, 8)


@pytest.mark.realdata
def test_runs_on_vtest(artifact, vtest):
    records = _example().track(str(artifact), str(vtest), point=(400, 300), max_frames=20)
    assert len(records) == 20
    assert all(0 <= r["x"] < 768 and 0 <= r["y"] < 576 and -1 <= r["similarity"] <= 1 for r in records)


@pytest.mark.realdata
def test_pan_of_real_frames_moves_the_scene_by_the_known_step(artifact, vtest):
    example = _example()
    pan = example.synth_pan(str(vtest), frames=6, step=8)
    assert len(pan) == 6 and pan[0].shape == (288, 384, 3)
    for a, b in zip(pan, pan[1:], strict=False):  # the scene moved 8 px left; only people moved otherwise
        shifted = np.abs(a[:, 8:].astype(int) - b[:, :-8].astype(int))
        unshifted = np.abs(a.astype(int) - b.astype(int))
        assert np.median(shifted) < 3 < np.median(unshifted)
    result = example.pan_error(str(artifact), str(vtest), frames=6)
    assert result["points"] == 6 and result["frames"] == 6 and np.isfinite(result["mean_px"])

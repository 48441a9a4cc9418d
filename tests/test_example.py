"""examples/robot_perception.py on real artifacts and videos."""

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from edge_vsd.cli import main
from edge_vsd.data.synthetic import make_frames
from edge_vsd.model import build_vit

ROOT = Path(__file__).resolve().parents[1]


def _example():
    spec = importlib.util.spec_from_file_location(
        "robot_perception", ROOT / "examples" / "robot_perception.py"
    )
    module = importlib.util.module_from_spec(spec)
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
    assert xs[1] - xs[0] == 16 and xs[2] - xs[1] == 16, xs
    assert len({r["y"] for r in records}) == 1


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


@pytest.mark.realdata
def test_runs_on_vtest(artifact, vtest):
    records = _example().track(str(artifact), str(vtest), point=(400, 300), max_frames=20)
    assert len(records) == 20
    assert all(0 <= r["x"] < 768 and 0 <= r["y"] < 576 and -1 <= r["similarity"] <= 1 for r in records)

"""`edge-vsd extract`: outputs, shards, PCA visualisations, one-line errors, and torch-free for real."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import cv2
import edge_vsd.runtimes as rt
import numpy as np
import pytest
from edge_vsd.runtimes.cpuinfo import usable_cores
from edge_vsd.runtimes.errors import RuntimeInputError
from edge_vsd.runtimes.geometry import PatchGrid
from edge_vsd.runtimes.stream import PIPELINE_MIN_FRAMES
from edge_vsd.runtimes.writer import KEYS, load_features, read_meta
from toy_artifact import make_toy_artifact

from edge_vsd.cli import main
from edge_vsd.data.synthetic import write_video

N_FRAMES = 24


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    return make_toy_artifact(tmp_path_factory.mktemp("art") / "toy", batch=1, image_size=(48, 64))


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return write_video(
        tmp_path_factory.mktemp("vid") / "v.avi", n_frames=N_FRAMES, height=72, width=96, fps=20
    )


def _extract(*args):
    return main(["extract", *map(str, args)])


def test_extract_writes_npz_matching_the_encoder(artifact, video, tmp_path):
    out = tmp_path / "feats.npz"
    assert _extract(video, "--artifact", artifact, "--out", out, "--stride", 3, "--threads", 1) == 0
    with np.load(out) as data:
        assert sorted(data.files) == sorted([*KEYS, "meta"])
        cls, patches, index, stamp = (data[k] for k in ("cls", "patches", "frame_index", "timestamp"))
        wall, age, meta = data["wall_time"], data["age"], read_meta(data)
    assert cls.shape == (8, 32) and patches.shape == (8, 3, 4, 32)
    assert np.all(np.abs(wall - time.time()) < 600) and np.all(np.diff(wall) >= 0) and np.all(age >= 0)
    assert meta["source"] == str(video) and meta["stride"] == 3 and meta["frame_size_hw"] == [72, 96]
    mapping = meta["patch_to_pixel"]
    assert mapping["grid_hw"] == [3, 4] and mapping["cell_size_px_hw"] == [24, 24]
    assert mapping["resize"] == "stretch" and meta["dtype"] == "float32"
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask
    assert cls.dtype == patches.dtype == np.float32
    np.testing.assert_array_equal(index, np.arange(0, N_FRAMES, 3))
    np.testing.assert_allclose(stamp, index / 20.0, atol=1e-6)
    cap = cv2.VideoCapture(str(video))
    cap.set(cv2.CAP_PROP_POS_FRAMES, 6)
    frame = cap.read()[1]
    np.testing.assert_allclose(cls[2], rt.load(artifact)(frame).cls[0], atol=1e-5)
    assert [p.name for p in tmp_path.iterdir()] == ["feats.npz"]  # no temporary files left behind


def test_extract_keeps_two_inferences_in_flight_on_openvino_with_the_same_rows(artifact, tmp_path, capsys):
    pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install edge-vsd[openvino])")
    if usable_cores() < 2:
        pytest.skip("OpenVINO's throughput mode keeps one stream on one core")
    long = write_video(tmp_path / "long.avi", n_frames=PIPELINE_MIN_FRAMES, height=72, width=96, fps=20)
    common = (long, "--artifact", artifact, "--backend", "openvino", "--threads", 2)
    assert _extract(*common, "--out", tmp_path / "many.npz") == 0
    assert "at once)" in capsys.readouterr().err  # "(... FPS, openvino-cpu, 2 at once)"
    assert _extract(*common, "--out", tmp_path / "one.npz", "--one-at-a-time") == 0
    assert "at once" not in capsys.readouterr().err
    assert _extract(*common, "--out", tmp_path / "short.npz", "--max-frames", 50) == 0
    assert "at once" not in capsys.readouterr().err  # too short to pay for the second model
    many, one = load_features(tmp_path / "many.npz"), load_features(tmp_path / "one.npz")
    np.testing.assert_array_equal(many["frame_index"], np.arange(PIPELINE_MIN_FRAMES))
    np.testing.assert_array_equal(many["frame_index"], one["frame_index"])
    np.testing.assert_allclose(many["patches"], one["patches"], rtol=1e-5, atol=1e-6)


def test_long_inputs_become_a_shard_folder(artifact, video, tmp_path, capsys):
    single = tmp_path / "single.npz"
    sharded = tmp_path / "long.npz"
    assert _extract(video, "--artifact", artifact, "--out", single) == 0
    assert _extract(video, "--artifact", artifact, "--out", sharded, "--shard-size", 10) == 0
    folder = tmp_path / "long"
    assert not sharded.exists() and folder.is_dir()
    assert sorted(p.name for p in folder.iterdir()) == [
        "index.json",
        "shard-00000.npz",
        "shard-00001.npz",
        "shard-00002.npz",
    ]
    index = json.loads((folder / "index.json").read_text())
    assert index["frames"] == N_FRAMES and [s["frames"] for s in index["shards"]] == [10, 10, 4]
    merged, whole = load_features(sharded), load_features(single)
    assert merged.keys() == whole.keys()
    for key in ("cls", "patches", "frame_index", "timestamp"):  # the clocks of two runs differ
        np.testing.assert_array_equal(merged[key], whole[key])
    assert index["complete"] and index["frame_size_hw"] == [72, 96]
    assert "24 frames processed" in capsys.readouterr().err


def test_pca_png_and_mp4_are_valid(artifact, video, tmp_path):
    png, mp4 = tmp_path / "pca.png", tmp_path / "pca.mp4"
    args = ["--artifact", artifact, "--out", tmp_path / "f.npz", "--pca-png", png, "--pca-video", mp4]
    assert _extract(video, *args, "--pca-frames", 3, "--stride", 2) == 0
    image = cv2.imread(str(png))
    assert image is not None and image.shape[0] == 3 * 240  # three frames, one row each
    assert image.shape[1] == 2 * round(96 * 240 / 72)  # frame | PCA map
    assert image[:, image.shape[1] // 2 :].std() > 10  # the PCA half is not blank
    cap = cv2.VideoCapture(str(mp4))
    count = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        count += 1
        assert frame.shape == (360, 2 * 480, 3)
    assert count == N_FRAMES // 2
    assert not list(tmp_path.glob(".*"))  # temporary names were renamed
    umask = os.umask(0)
    os.umask(umask)
    for path in (png, mp4, tmp_path / "f.npz"):
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path


def _one_line_error(capsys, *args):
    assert _extract(*args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("edge-vsd extract: error: "), err
    return err[0]


def test_bad_inputs_exit_2_with_one_line(artifact, video, tmp_path, capsys):
    out = tmp_path / "f.npz"
    assert "nope.avi" in _one_line_error(capsys, tmp_path / "nope.avi", "--artifact", artifact, "--out", out)
    assert "manifest.json" in _one_line_error(capsys, video, "--artifact", tmp_path, "--out", out)
    assert ".npz" in _one_line_error(capsys, video, "--artifact", artifact, "--out", tmp_path / "f.txt")
    assert "stride" in _one_line_error(capsys, video, "--artifact", artifact, "--out", out, "--stride", 0)
    for fps in (0, -5, "nan"):
        assert "--fps" in _one_line_error(capsys, video, "--artifact", artifact, "--out", out, "--fps", fps)
    (tmp_path / "junk.mp4").write_bytes(os.urandom(2048))
    assert "junk.mp4" in _one_line_error(capsys, tmp_path / "junk.mp4", "--artifact", artifact, "--out", out)
    assert not out.exists()


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs a /proc file system to write into")
def test_unwritable_side_output_fails_before_the_old_output_is_replaced(artifact, video, tmp_path, capsys):
    """/proc passes permission checks for root, yet no file can be made there: found before any work."""
    out = tmp_path / "f.npz"
    assert _extract(video, "--artifact", artifact, "--out", out, "--max-frames", 4) == 0
    before = out.read_bytes()
    capsys.readouterr()
    png = "/proc/edge-vsd-test.png"
    err = _one_line_error(capsys, video, "--artifact", artifact, "--out", out, "--force", "--pca-png", png)
    assert "--pca-png" in err and out.read_bytes() == before


def test_a_foreign_folder_where_shards_would_go_is_named(artifact, video, tmp_path, capsys):
    (tmp_path / "myproj").mkdir()
    (tmp_path / "myproj" / "notes.txt").write_text("keep")
    for extra in ([], ["--force"]):
        err = _one_line_error(capsys, video, "--artifact", artifact, "--out", tmp_path / "myproj.npz", *extra)
        assert "choose another --out" in err
    assert (tmp_path / "myproj" / "notes.txt").read_text() == "keep"


def test_tampered_artifact_exits_2(artifact, video, tmp_path, capsys):
    import shutil

    art = shutil.copytree(artifact, tmp_path / "art")
    with open(art / "encoder.onnx", "ab") as f:
        f.write(b"\0")
    assert "encoder.onnx" in _one_line_error(capsys, video, "--artifact", art, "--out", tmp_path / "f.npz")


def test_help_documents_the_shard_layout(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["extract", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "shard-00000.npz" in text and "--shard-size" in text and "--pca-video" in text


BLOCKER = '''
import importlib.abc, sys

class _NoTorch(importlib.abc.MetaPathFinder):
    """Simulates a device without torch (and without the training/export stack or the edge_vsd core)."""

    BLOCKED = ("torch", "torchvision", "onnx", "onnxscript", "onnxsim", "nncf", "edge_vsd.model",
               "edge_vsd.checkpoint", "edge_vsd.data", "edge_vsd.train", "edge_vsd.export")

    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in self.BLOCKED):
            raise ImportError(f"{name} is not installed on this device (blocked by the test)")
        return None

sys.meta_path.insert(0, _NoTorch())
'''

CHILD = """
import sys
try:
    import torch
except ImportError:
    pass
else:
    sys.exit("the import hook did not block torch")
import numpy as np
import edge_vsd.runtimes as rt
from edge_vsd.cli import main

enc = rt.load(sys.argv[1])
feats = enc(np.zeros((2, 50, 70, 3), np.uint8))
assert feats.cls.shape == (2, 32), feats.cls.shape
rc = main(["extract", sys.argv[2], "--artifact", sys.argv[1], "--out", sys.argv[3], "--pca-png", sys.argv[4]])
bad = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "onnx") or m.startswith("edge_vsd.data"))
print("RC", rc, "BAD", bad)
"""


def test_load_and_extract_work_where_torch_cannot_be_imported(artifact, video, tmp_path):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(textwrap.dedent(BLOCKER))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")])}
    out, png = tmp_path / "f.npz", tmp_path / "p.png"
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(artifact), str(video), str(out), str(png)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "RC 0 BAD []" in proc.stdout, proc.stdout + proc.stderr
    with np.load(out) as data:
        assert data["patches"].shape == (N_FRAMES, 3, 4, 32)
    assert cv2.imread(str(png)) is not None


def test_float16_latency_log_and_geometry(artifact, video, tmp_path, capsys):
    out16, out32, log = tmp_path / "f16.npz", tmp_path / "f32.npz", tmp_path / "lat.csv"
    assert _extract(video, "--artifact", artifact, "--out", out32) == 0
    assert (
        _extract(video, "--artifact", artifact, "--out", out16, "--dtype", "float16", "--latency-log", log)
        == 0
    )
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "latency p50/p99 ms: decode" in line and "total" in line
    a, b = load_features(out32), load_features(out16)
    assert b["patches"].dtype == np.float16 and read_meta(b)["dtype"] == "float16"
    np.testing.assert_allclose(b["patches"].astype(np.float32), a["patches"], atol=2e-3, rtol=1e-2)
    assert out16.stat().st_size < 0.6 * out32.stat().st_size
    rows = log.read_text().strip().splitlines()
    assert rows[0] == "frame_index,wall_time,decode_ms,preprocess_ms,inference_ms,total_ms"
    table = np.array([[float(v) for v in r.split(",")] for r in rows[1:]])
    assert len(table) == N_FRAMES and list(table[:, 0]) == list(range(N_FRAMES))
    assert np.all(table[:, 2:] >= 0) and np.all(table[:, 5] >= table[:, 4])  # total includes inference
    # the recorded mapping places patch cells on the original frame
    grid = PatchGrid.from_dict(read_meta(a)["patch_to_pixel"])
    assert grid.cell_box(1, 2) == (48.0, 24.0, 72.0, 48.0) and grid.point_to_cell(95, 71) == (2, 3)


def test_patch_grid_round_trips_points_and_cells():
    grid = PatchGrid((576, 768), (7, 7), (112, 112), 16)
    assert grid.cell_size == (576 / 7, 768 / 7)
    for x, y in [(0.0, 0.0), (100.5, 300.25), (767.9, 575.9)]:
        gx, gy = grid.pixel_to_grid(x, y)
        assert np.allclose(grid.grid_to_pixel(gx, gy), (x, y))
        r, c = grid.point_to_cell(x, y)
        x0, y0, x1, y1 = grid.cell_box(r, c)
        assert x0 <= x < x1 and y0 <= y < y1
    assert grid.point_to_cell(-5, 10_000) == (6, 0)  # clamped
    assert grid.cell_center(0, 0) == (768 / 14, 576 / 14)
    assert PatchGrid.from_dict(grid.to_dict()) == grid
    with pytest.raises(RuntimeInputError):
        PatchGrid((576, 768), (7, 7), (112, 112), 16, resize="crop")

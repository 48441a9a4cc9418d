"""`edge-vsd export` on bad input: one line naming the file and the problem, exit 2, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from edge_vsd.cli import main
from edge_vsd.model import build_vit

SIZE = 64


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "vsd.pt"
    sd = {f"backbone.{k}": v for k, v in build_vit("vit_tiny", SIZE).state_dict().items()}
    torch.save({"teacher": sd, "edge_vsd": {"img_size": [SIZE, SIZE]}}, path)
    return path


def run_export(tmp_path: Path, capsys, *args: str) -> tuple[int, list[str]]:
    """Run the CLI with the artifact under tmp_path/work; return (exit code, stderr lines)."""
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    before = sorted(p.name for p in work.iterdir())
    argv = ["export", *args]
    if "--out" not in args:
        argv += ["--out", str(work / "art")]
    code = main([*argv, "--quiet", "--heldout-frames", "4", "--calib-frames", "8"])
    err = capsys.readouterr().err.strip().splitlines()
    assert sorted(p.name for p in work.iterdir()) == before, "something was written"
    return code, err


def one_line_error(code: int, err: list[str], *needles: str) -> None:
    assert code == 2
    assert len(err) == 1, err
    assert err[0].startswith("edge-vsd export: error: ")
    for n in needles:
        assert n in err[0], err[0]


def test_missing_checkpoint(tmp_path, capsys):
    missing = tmp_path / "nope.pt"
    one_line_error(*run_export(tmp_path, capsys, str(missing)), str(missing), "no such file")


def test_corrupt_checkpoint(tmp_path, capsys, ckpt):
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(ckpt.read_bytes()[:5000])
    one_line_error(*run_export(tmp_path, capsys, str(bad)), str(bad), "not a readable")


def test_non_checkpoint_file(tmp_path, capsys):
    notes = tmp_path / "notes.pt"
    torch.save({"lr": torch.tensor(0.1), "epoch": torch.tensor(3)}, notes)
    one_line_error(*run_export(tmp_path, capsys, str(notes)), str(notes), "missing backbone weights")


def test_nan_weights(tmp_path, capsys, ckpt):
    state = torch.load(ckpt, weights_only=True)
    state["teacher"]["backbone.blocks.3.mlp.fc1.weight"][0, 0] = float("nan")
    bad = tmp_path / "nan.pt"
    torch.save(state, bad)
    one_line_error(*run_export(tmp_path, capsys, str(bad)), str(bad), "blocks.3.mlp.fc1.weight", "NaN")


def test_missing_weights(tmp_path, capsys, ckpt):
    state = torch.load(ckpt, weights_only=True)
    del state["teacher"]["backbone.blocks.5.attn.proj.weight"]
    bad = tmp_path / "partial.pt"
    torch.save(state, bad)
    one_line_error(*run_export(tmp_path, capsys, str(bad)), str(bad), "blocks.5.attn.proj.weight")


def test_unknown_target(tmp_path, capsys, ckpt):
    one_line_error(
        *run_export(tmp_path, capsys, str(ckpt), "--target", "raspberry"), "unknown target", "raspberry"
    )


@pytest.mark.parametrize("kind", ["text", "empty_dir", "blank_images", "missing"])
def test_unusable_calibration_data(kind, tmp_path, capsys, ckpt):
    import cv2
    import numpy as np

    src = tmp_path / kind
    if kind == "text":
        src = tmp_path / "frames.mp4"
        src.write_text("this is not a video\n")
    elif kind == "empty_dir":
        src.mkdir()
        (src / "readme.txt").write_text("no images here")
    elif kind == "blank_images":
        src.mkdir()
        for i in range(12):
            cv2.imwrite(str(src / f"{i:03d}.png"), np.zeros((48, 64, 3), np.uint8))
    one_line_error(*run_export(tmp_path, capsys, str(ckpt), "--int8", "--calib", str(src)), str(src))


@pytest.mark.realdata
def test_broken_video_is_unusable_calibration(tmp_path, capsys, ckpt):
    from conftest import opencv_sample

    src = tmp_path / "broken.avi"
    src.write_bytes(opencv_sample("vtest.avi").read_bytes()[:4096])
    one_line_error(*run_export(tmp_path, capsys, str(ckpt), "--int8", "--calib", str(src)), str(src))


def test_unwritable_output(tmp_path, capsys, ckpt):
    blocker = tmp_path / "work" / "a_file"
    blocker.parent.mkdir()
    blocker.write_text("x")
    target = blocker / "artifact"  # a folder inside a regular file: not writable even as root
    one_line_error(*run_export(tmp_path, capsys, str(ckpt), "--out", str(target)), str(target))


def test_existing_output_needs_force(tmp_path, capsys, ckpt):
    existing = tmp_path / "work" / "art"
    existing.mkdir(parents=True)
    (existing / "manifest.json").write_text("{}")
    one_line_error(*run_export(tmp_path, capsys, str(ckpt), "--out", str(existing)), str(existing), "--force")
    assert (existing / "manifest.json").read_text() == "{}"


def test_someone_elses_folder_is_refused_without_asking_for_force(tmp_path, capsys, ckpt):
    mine = tmp_path / "work" / "userdir"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("keep")
    for extra in ([], ["--force"]):
        out = run_export(tmp_path, capsys, str(ckpt), "--out", str(mine), *extra)
        one_line_error(*out, "not an artifact folder; choose another --out")
    assert (mine / "notes.txt").read_text() == "keep"


def test_bad_image_size(tmp_path, capsys, ckpt):
    one_line_error(*run_export(tmp_path, capsys, str(ckpt), "--img-size", "100"), "patch size 16")

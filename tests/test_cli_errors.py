"""Bad input to quickstart, bench-train and train: one line naming the input and the problem, exit 2, no
traceback, checked before any work (nothing written)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge_vsd.cli import main


def one_line_error(capsys, argv: list[str], *needles: str) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, (code, err)
    assert err[0].startswith(f"edge-vsd {argv[0]}: error: ") and "unexpected" not in err[0], err[0]
    for n in needles:
        assert n in err[0], err[0]
    return err[0]


@pytest.mark.parametrize(
    "flags, needles",
    [
        (["--img-size", "50"], ["--img-size 50", "multiple of the patch size 16"]),
        (["--steps", "0"], ["--steps 0"]),
        (["--batch-size", "-1"], ["--batch-size -1"]),
        (["--video", "{tmp}/missing.avi"], ["missing.avi", "no such file"]),
    ],
)
def test_quickstart_checks_its_arguments_before_any_work(tmp_path, capsys, flags, needles):
    out = tmp_path / "qs"
    flags = [f.replace("{tmp}", str(tmp_path)) for f in flags]
    one_line_error(capsys, ["quickstart", "--out", str(out), "--precision", "fp32", *flags], *needles)
    assert list(tmp_path.iterdir()) == []  # no synthetic videos, no output folder


def test_quickstart_refuses_a_video_shorter_than_its_delta(tmp_path, capsys):
    from edge_vsd.data.synthetic import write_video

    short = write_video(tmp_path / "short.avi", n_frames=10, height=48, width=64)
    one_line_error(capsys, ["quickstart", "--out", str(tmp_path / "qs"), "--video", str(short)], "short.avi")
    assert not (tmp_path / "qs").exists()


def test_quickstart_force_replaces_only_its_own_outputs(tmp_path, capsys):
    out = tmp_path / "qs"
    (out / "run").mkdir(parents=True)
    (out / "run" / "checkpoint.pt").write_bytes(b"earlier")
    (out / "mine.txt").write_text("keep")
    one_line_error(capsys, ["quickstart", "--out", str(out)], "earlier quickstart", "--force")
    # with --force, a bad flag still stops it before anything is removed
    one_line_error(capsys, ["quickstart", "--out", str(out), "--force", "--steps", "0"], "--steps 0")
    assert (out / "run" / "checkpoint.pt").read_bytes() == b"earlier"
    assert (out / "mine.txt").read_text() == "keep"


@pytest.mark.parametrize(
    "flags, needles",
    [
        (["--img-size", "50"], ["--img-size 50", "patch size"]),
        (["--img-size", "32", "--steps", "0"], ["--steps 0"]),
        (["--img-size", "32", "--rounds", "0"], ["--rounds 0"]),
        (["--img-size", "32", "--workers", "-1"], ["--workers -1"]),
        (["--img-size", "32", "--video", "{tmp}/nope.avi"], ["nope.avi"]),
        (["--img-size", "32", "--json", "{tmp}/no/such/r.json"], ["r.json", "--json"]),
    ],
)
def test_bench_train_checks_its_arguments(tmp_path, capsys, flags, needles):
    flags = [f.replace("{tmp}", str(tmp_path)) for f in flags]
    one_line_error(capsys, ["bench-train", *flags], *needles)


@pytest.mark.parametrize(
    "content, needles",
    [
        ({"img_size": "big"}, ["c.json", "img_size 'big'", "expected an integer"]),
        ({"steps": 2.5}, ["c.json", "steps 2.5", "an integer or null"]),
        ({"bf16": "yes"}, ["c.json", "bf16 'yes'", "true or false"]),
        ({"crop_scale": [0.4]}, ["c.json", "crop_scale [0.4]", "a list of 2 numbers"]),
        ({"video": "a.avi"}, ["c.json", "video 'a.avi'", "a list of strings"]),
        ([1, 2], ["c.json", "expected a mapping"]),
    ],
)
def test_train_config_file_values_of_the_wrong_type(synthetic_video, tmp_path, capsys, content, needles):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps(content))
    argv = ["train", "--config", str(cfg), "--video", str(synthetic_video), "--out", str(tmp_path / "r")]
    one_line_error(capsys, argv, *needles)
    assert not (tmp_path / "r").exists()


def test_train_init_given_an_artifact_folder(synthetic_video, tmp_path, capsys):
    art = tmp_path / "cpu-fp32"
    art.mkdir()
    (art / "manifest.json").write_text("{}")
    argv = ["train", "--video", str(synthetic_video), "--out", str(tmp_path / "r"), "--init", str(art)]
    line = one_line_error(capsys, argv, str(art), "exported artifact folder", "not a checkpoint file")
    assert "no such" not in line


def test_train_reports_why_each_video_was_unusable(tmp_path, capsys):
    bad = Path(tmp_path / "corrupt.avi")
    bad.write_bytes(b"garbage\n")
    argv = ["train", "--video", str(bad), "--out", str(tmp_path / "r"), "--img-size", "32"]
    code = main(argv)
    err = [e for e in capsys.readouterr().err.strip().splitlines() if e.startswith("edge-vsd")]
    assert code == 2 and len(err) == 1, err
    assert f"{bad}: OpenCV cannot open it as a video" in err[0]
    assert not (tmp_path / "r").exists()


def test_train_local_size_must_fit_the_patch_grid(synthetic_video, tmp_path, capsys):
    argv = ["train", "--video", str(synthetic_video), "--out", str(tmp_path / "r"), "--img-size", "32"]
    bad = [*argv, "--local-crops", "2", "--local-size", "40"]
    one_line_error(capsys, bad, "--local-size 40", "patch size 16")
    assert not (tmp_path / "r").exists()


def test_train_local_size_with_init_asks_only_for_a_positive_size(synthetic_video, tmp_path, capsys):
    # the --init checkpoint sets the patch size, so the config check cannot name one
    argv = ["train", "--video", str(synthetic_video), "--out", str(tmp_path / "r"), "--init", "w.pt"]
    err = one_line_error(
        capsys, [*argv, "--local-crops", "2", "--local-size", "0"], "--local-size 0: must be > 0"
    )
    assert "patch size" not in err
    assert not (tmp_path / "r").exists()

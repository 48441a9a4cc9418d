"""`edge-vsd prepare` and the frame cache: the training size rule, permissions, refusals and warnings."""

from __future__ import annotations

import logging
import os
import socket
import stat

import pytest

from edge_vsd.cli import main
from edge_vsd.config import TrainConfig
from edge_vsd.data.cache import build_cache, is_cache
from edge_vsd.errors import InputError
from edge_vsd.preflight import check_videos


def _one_line(capsys, code: int, *needles: str) -> str:
    """The one error line (progress bars aside), exit 2, no traceback; returns it."""
    err = [e for e in capsys.readouterr().err.strip().splitlines() if not e.startswith("decoding:")]
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("edge-vsd ") and "Traceback" not in err[0]
    for n in needles:
        assert n in err[0], err[0]
    return err[0]


@pytest.mark.parametrize("size", ["0", "50", "-16"])
def test_prepare_applies_trains_image_size_rule(synthetic_video, tmp_path, capsys, size):
    code = main(["prepare", str(synthetic_video), "--img-size", size, "--out", str(tmp_path / "c")])
    _one_line(capsys, code, f"--img-size {size}", "multiple of the patch size 16")
    assert list(tmp_path.iterdir()) == []


def test_prepare_takes_a_multiple_of_patch_8_when_asked(synthetic_video, tmp_path):
    args = ["prepare", str(synthetic_video), "--img-size", "40", "--patch-size", "8"]
    assert main([*args, "--out", str(tmp_path / "c")]) == 0 and is_cache(tmp_path / "c")


def test_cache_follows_the_umask(synthetic_video, tmp_path):
    old = os.umask(0o022)
    try:
        cache = build_cache([synthetic_video], tmp_path / "c", 37, show_progress=False)
    finally:
        os.umask(old)
    assert stat.S_IMODE(cache.stat().st_mode) == 0o755
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o644 for p in cache.iterdir())
    assert [p.name for p in tmp_path.iterdir()] == ["c"]  # no temp folder left


def test_prepare_refuses_to_replace_a_folder_that_is_not_a_cache(synthetic_video, tmp_path, capsys):
    keep = tmp_path / "mine"
    keep.mkdir()
    (keep / "notes.txt").write_text("mine")
    code = main(["prepare", str(synthetic_video), "--img-size", "32", "--out", str(keep)])
    _one_line(capsys, code, str(keep), "not a frame cache")
    assert (keep / "notes.txt").read_text() == "mine"


def test_a_cache_cannot_be_mixed_with_videos(synthetic_video, tmp_path):
    cache = build_cache([synthetic_video], tmp_path / "c", 37, show_progress=False)
    cfg = TrainConfig(video=[str(cache), str(synthetic_video)], out=str(tmp_path / "r"), img_size=32)
    with pytest.raises(InputError, match=f"{cache}: a frame cache, which cannot be mixed with video files"):
        check_videos(cfg)


def test_a_cache_stored_smaller_than_the_training_size_warns(synthetic_video, tmp_path, caplog):
    cache = build_cache([synthetic_video], tmp_path / "c", 37, show_progress=False)  # prepared for 32
    with caplog.at_level(logging.WARNING, logger="edge_vsd"):
        check_videos(TrainConfig(video=[str(cache)], img_size=32))
        assert not caplog.records
        check_videos(TrainConfig(video=[str(cache)], img_size=64))
    [record] = caplog.records
    assert str(cache) in record.getMessage() and "short side 37 px" in record.getMessage()
    assert "--img-size 64" in record.getMessage()


def test_no_usable_video_says_why_for_each(tmp_path, capsys):
    bad, empty = tmp_path / "corrupt.avi", tmp_path / "empty.avi"
    bad.write_bytes(b"garbage\n")
    empty.write_bytes(b"")
    code = main(["prepare", str(bad), str(empty), "--img-size", "32", "--out", str(tmp_path / "c")])
    line = _one_line(capsys, code, f"{bad}: OpenCV cannot open it as a video", f"{empty}: empty file")
    assert "no usable video" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corrupt.avi", "empty.avi"]


def test_a_stale_temp_folder_of_a_killed_build_is_removed(synthetic_video, tmp_path):
    stale = tmp_path / f".c.999999999@{socket.gethostname()}.deadbeef.partial"  # no such process
    stale.mkdir()
    (stale / "video_0000.npy").write_bytes(b"half")
    build_cache([synthetic_video], tmp_path / "c", 37, show_progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]


def test_make_data_follows_the_umask(tmp_path):
    from edge_vsd.data.make_data import DataConfig, make_data

    sizes = dict(sequences=1, frames=3, height=32, width=32, ade_images=2, videos=1, video_frames=3)
    old = os.umask(0o022)
    try:
        out = make_data(DataConfig(out=str(tmp_path / "d"), **sizes))
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o755


def test_prepare_names_videos_as_given_below_the_working_folder(
    synthetic_video, tmp_path, capsys, monkeypatch
):
    """The cache stores absolute paths (to recognise the files); the summary shows the user's own."""
    import shutil

    shutil.copy(synthetic_video, tmp_path / "clip.avi")
    monkeypatch.chdir(tmp_path)
    assert main(["prepare", "clip.avi", "--img-size", "32", "--out", "cache"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("clip.avi: ") and out[-1] == "cache written to cache"

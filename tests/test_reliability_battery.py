"""A battery of bad inputs across the CLI: each ends in exactly one line naming the input and the problem,
exit status 2, no traceback, and nothing left behind (neither in the working folder nor beside the inputs).
Also the other half of the one error path: an unexpected exception exits with 1 and a --debug hint, and
--debug shows the traceback."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from toy_artifact import make_toy_artifact

from edge_vsd.cli import main
from edge_vsd.data.synthetic import write_video
from edge_vsd.model import build_vit


class Payload:
    """Unpickling this creates a file: the proof that a checkpoint ran code."""

    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        return (Path.touch, (self.target,))


def tree(root: Path) -> dict[str, str]:
    """Every path under root with a digest of its content ("dir" for folders)."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_symlink():
            out[rel] = "link:" + os.readlink(p)
        elif p.is_dir():
            out[rel] = "dir"
        else:
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("inputs")
    torch.manual_seed(0)
    torch.save(build_vit("vit_tiny", 32).state_dict(), d / "ckpt.pt")
    (d / "garbage.pt").write_bytes(b"this is not a checkpoint")
    torch.save({"teacher": {"x": Payload(d / "pwned")}}, d / "evil.pt")
    write_video(d / "video.avi", n_frames=40, height=48, width=64)
    (d / "notjson.json").write_text("{ steps: 3")
    (d / "unknown_key.json").write_text(json.dumps({"steps": 3, "stepz": 4}))
    art = make_toy_artifact(d / "art", image_size=(32, 32))
    tampered = d / "tampered"
    shutil.copytree(art, tampered)
    onnx_bytes = bytearray((tampered / "encoder.onnx").read_bytes())
    onnx_bytes[len(onnx_bytes) // 2] ^= 0x01
    (tampered / "encoder.onnx").write_bytes(bytes(onnx_bytes))
    escape = d / "escape"
    shutil.copytree(art, escape)
    manifest = json.loads((escape / "manifest.json").read_text())
    manifest["files"] = {"../ckpt.pt": {"sha256": "0" * 64}}
    (escape / "manifest.json").write_text(json.dumps(manifest, indent=2))
    truncated = d / "truncated"
    shutil.copytree(art, truncated)
    text = (truncated / "manifest.json").read_bytes()
    (truncated / "manifest.json").write_bytes(text[: len(text) // 2])
    (d / "existing.npz").write_bytes(b"earlier features")
    report = d / "report"
    report.mkdir()
    (report / "results.json").write_text("{}")
    shutil.copytree(art, d / "existing_art")
    return d


# (id, argv with {name} for input paths and {work} for the working folder, words the one line must hold).
# Export cases that fail after its first stage pass --quiet, which turns off the stage lines ("[1] load
# checkpoint ...") printed before the error: the error path is the same.
CASES = [
    # train
    ("train-img-size", "train --video {video.avi} --out {work}/r --img-size 100", ["--img-size 100"]),
    ("train-steps-0", "train --video {video.avi} --out {work}/r --steps 0", ["--steps 0"]),
    ("train-batch-neg", "train --video {video.avi} --out {work}/r --batch-size -4", ["--batch-size -4"]),
    ("train-lr-neg", "train --video {video.avi} --out {work}/r --lr -0.1", ["--lr -0.1"]),
    ("train-accum", "train --video {video.avi} --out {work}/r --batch-size 8 --accum 3", ["--accum 3"]),
    ("train-delta-s", "train --video {video.avi} --out {work}/r --delta-seconds 0", ["--delta-seconds"]),
    ("train-delta-long", "train --video {video.avi} --out {work}/r --img-size 32 --delta 500", ["500"]),
    ("train-no-video", "train --video {work}/missing.avi --out {work}/r", ["missing.avi"]),
    ("train-arch", "train --video {video.avi} --arch vit_huge", ["--arch", "vit_huge"]),
    ("train-steps-text", "train --video {video.avi} --steps many", ["--steps", "many"]),
    ("train-out-under-file", "train --video {video.avi} --out {garbage.pt}/r", ["garbage.pt", "write"]),
    ("train-init-missing", "train --video {video.avi} --out {work}/r --init {work}/nope.pt", ["nope.pt"]),
    ("train-config-broken", "train --config {notjson.json} --out {work}/r", ["notjson.json"]),
    ("train-config-key", "train --config {unknown_key.json} --out {work}/r", ["stepz"]),
    ("train-resume-nothing", "train --video {video.avi} --out {work}/r --resume", ["nothing to resume"]),
    # export
    ("export-missing", "export {work}/nope.pt --out {work}/a", ["nope.pt"]),
    ("export-garbage", "export {garbage.pt} --quiet --out {work}/a", ["garbage.pt"]),
    ("export-pickle", "export {evil.pt} --quiet --out {work}/a", ["evil.pt", "pickled"]),
    ("export-target", "export {ckpt.pt} --target fpga --out {work}/a", ["fpga"]),
    ("export-img-size", "export {ckpt.pt} --quiet --img-size 33 --out {work}/a", ["--img-size", "patch"]),
    ("export-batch-0", "export {ckpt.pt} --batch 0 --out {work}/a", ["--batch 0"]),
    ("export-gate", "export {ckpt.pt} --gate 1.5 --out {work}/a", ["--gate 1.5"]),
    ("export-calib-missing", "export {ckpt.pt} --int8 --calib {work}/c.mp4 --out {work}/a", ["c.mp4"]),
    ("export-calib-frames", "export {ckpt.pt} --int8 --calib-frames 0 --out {work}/a", ["--calib-frames 0"]),
    ("export-exists", "export {ckpt.pt} --out {existing_art}", ["existing_art", "--force"]),
    ("export-out-under-file", "export {ckpt.pt} --out {garbage.pt}/a", ["garbage.pt"]),
    # extract
    ("extract-source", "extract {work}/nope.avi --artifact {art} --out {work}/f.npz", ["nope.avi"]),
    ("extract-artifact", "extract {video.avi} --artifact {work} --out {work}/f.npz", ["manifest.json"]),
    ("extract-suffix", "extract {video.avi} --artifact {art} --out {work}/f.txt", [".npz"]),
    ("extract-stride", "extract {video.avi} --artifact {art} --out {work}/f.npz --stride 0", ["--stride"]),
    ("extract-exists", "extract {video.avi} --artifact {art} --out {existing.npz}", ["existing.npz"]),
    ("extract-tampered", "extract {video.avi} --artifact {tampered} --out {work}/f.npz", ["encoder.onnx"]),
    ("extract-escape", "extract {video.avi} --artifact {escape} --out {work}/f.npz", ["../ckpt.pt"]),
    ("extract-truncated", "extract {video.avi} --artifact {truncated} --out {work}/f.npz", ["manifest.json"]),
    ("extract-backend", "extract {video.avi} --artifact {art} --out {work}/f.npz --backend gpu9", ["gpu9"]),
    # bench
    ("bench-missing", "bench {work}/nope --report {work}/rep", ["nope"]),
    ("bench-iters-0", "bench {art} --iters 0 --report {work}/rep", ["--iters"]),
    ("bench-report-exists", "bench {art} --report {report}", ["report", "--force"]),
    ("bench-data-missing", "bench {art} --data {work}/v.mp4 --report {work}/rep", ["v.mp4"]),
    ("bench-reference", "bench {art} --reference {notjson.json} --report {work}/rep", ["notjson.json"]),
    # tune, eval, ablate
    ("tune-missing", "tune {work}/nope", ["nope"]),
    ("tune-threads-0", "tune {art} --threads 0", ["--threads"]),
    ("eval-missing", "eval {work}/nope.pt --report {work}/ev --seg-data {work}", ["nope.pt"]),
    ("eval-nothing", "eval {ckpt.pt} --report {work}/ev", ["nothing to evaluate"]),
    ("ablate-no-labels", "ablate --video {video.avi} --out {work}/ab", ["--davis"]),
    ("ablate-steps-0", "ablate --video {video.avi} --out {work}/ab --seg-data {work} --steps 0", ["--steps"]),
]


def _argv(template: str, inputs: Path, work: Path) -> list[str]:
    names = {p.name: str(p) for p in inputs.iterdir()} | {"work": str(work)}
    return re.sub(r"\{([^}]+)\}", lambda m: names[m.group(1)], template).split()


def test_battery_is_broad():
    commands = {case[1].split()[0] for case in CASES}
    assert len(CASES) >= 30
    assert commands >= {"train", "export", "extract", "bench", "tune", "eval", "ablate"}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_nothing_left(case, inputs, tmp_path, monkeypatch, capsys):
    _, template, words = case
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # default outputs (runs/, artifacts/, bench-report/) land here
    argv = _argv(template, inputs, work)
    before_inputs, before_work = tree(inputs), tree(work)
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse usage errors
        code = exc.code
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith(f"edge-vsd {argv[0]}: error: "), err
    assert "Traceback" not in err
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert tree(work) == before_work, "output left behind"
    assert tree(inputs) == before_inputs, "an input or an existing output was changed"
    assert not (inputs / "pwned").exists()


def _boom(*_args, **_kwargs):
    raise RuntimeError("disk on fire\nsecond line")


def test_unexpected_error_is_one_line_exit_1_with_debug_hint(inputs, tmp_path, monkeypatch, capsys):
    import edge_vsd.export.cli as export_cli

    monkeypatch.setattr(export_cli, "export_artifact", _boom)
    assert main(["export", str(inputs / "ckpt.pt"), "--out", str(tmp_path / "a")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "edge-vsd export: error: unexpected RuntimeError: disk on fire second line "
        "(rerun with --debug for the traceback)"
    ]
    with pytest.raises(RuntimeError, match="disk on fire"):
        main(["--debug", "export", str(inputs / "ckpt.pt"), "--out", str(tmp_path / "a")])


def test_entry_point_debug_shows_the_traceback(inputs, tmp_path):
    """Through a real interpreter: exit 2 and one line without --debug; the traceback with it."""
    cmd = [sys.executable, "-m", "edge_vsd.cli", "train", "--video", str(inputs / "video.avi")]
    cmd += ["--out", str(tmp_path / "r"), "--img-size", "100"]
    plain = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert plain.returncode == 2 and plain.stderr.count("\n") == 1 and "Traceback" not in plain.stderr
    debug = subprocess.run([*cmd, "--debug"], capture_output=True, text=True, timeout=120)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "InputError" in debug.stderr
    assert not (tmp_path / "r").exists()

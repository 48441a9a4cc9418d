"""Files from elsewhere are untrusted: pickled code in a checkpoint never runs, any changed byte in an
artifact is caught on load, manifest entries cannot reach outside the artifact folder, and what edge-vsd
writes for other machines (manifests, reports) carries file names and digests, not this machine's paths."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import edge_vsd.runtimes as rt
import numpy as np
import pytest
import torch
from edge_vsd.export.manifest import config_record, source_records
from edge_vsd.export.pipeline import ExportConfig
from edge_vsd.runtimes.errors import RuntimeInputError
from edge_vsd.runtimes.manifest import (
    DIGEST_KEY,
    canonical_bytes,
    file_entry,
    manifest_digest,
    read_manifest,
    write_manifest,
)
from toy_artifact import make_toy_artifact

from edge_vsd.checkpoint import load_checkpoint, load_encoder
from edge_vsd.cli import main
from edge_vsd.errors import InputError


class Payload:
    """Unpickling this creates `target`: proof that loading ran code from the file."""

    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        return (Path.touch, (self.target,))


def _payload_files(d: Path) -> dict[str, Path]:
    marker = d / "pwned"
    files = {
        "top-level": {"teacher": Payload(marker)},
        "in-optimizer": {"teacher": {"w": torch.zeros(2)}, "optimizer": {"state": Payload(marker)}},
    }
    out = {}
    for name, obj in files.items():
        torch.save(obj, d / f"{name}.pt")
        out[name] = d / f"{name}.pt"
    with open(d / "legacy.pth", "wb") as f:  # a plain pickle, as older tools write
        pickle.dump({"state_dict": Payload(marker)}, f)
    out["legacy-pickle"] = d / "legacy.pth"
    return out


def test_pickled_payload_checkpoints_are_refused_and_never_run(tmp_path, synthetic_video, capsys):
    marker = tmp_path / "pwned"
    for name, path in _payload_files(tmp_path).items():
        with pytest.raises(InputError, match="refusing to load|not a readable") as err:
            load_checkpoint(path)
        assert str(path) in str(err.value) and "\n" not in str(err.value), name
        with pytest.raises(InputError):
            load_encoder(path)
        assert not marker.exists(), name
    evil = tmp_path / "top-level.pt"
    runs = [
        ["export", str(evil), "--quiet", "--out", str(tmp_path / "a")],
        ["train", "--video", str(synthetic_video), "--init", str(evil), "--out", str(tmp_path / "r")],
        ["bench", str(make_toy_artifact(tmp_path / "toy")), "--reference", str(evil)],
    ]
    capsys.readouterr()
    for argv in runs:
        code = main([*argv, "--report", str(tmp_path / "rep")] if argv[0] == "bench" else argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert not marker.exists(), argv[0]
        # every command refuses it in one line (exit 2); bench before any timing, writing no report
        assert code == 2, (argv[0], err)
        assert len(err) == 1 and "top-level.pt" in err[0] and "pickled" in err[0], err
    assert not (tmp_path / "a").exists() and not (tmp_path / "r").exists()
    assert not (tmp_path / "rep").exists()


@pytest.fixture(scope="module")
def art(tmp_path_factory) -> Path:
    return make_toy_artifact(tmp_path_factory.mktemp("art") / "art", image_size=(32, 32))


def _flip_each_byte(path: Path, positions, xor: int = 0x01):
    original = path.read_bytes()
    try:
        for i in positions:
            changed = bytearray(original)
            changed[i] ^= xor
            path.write_bytes(bytes(changed))
            yield i
    finally:
        path.write_bytes(original)


@pytest.mark.parametrize("name", ["manifest.json", "encoder.onnx"])
def test_every_changed_byte_of_an_artifact_is_caught_on_load(art, name):
    path = art / name
    size = path.stat().st_size
    # every byte of the manifest; 257 bytes spread over the model (~100 KB), its first and last included
    positions = (
        range(size) if name == "manifest.json" else sorted({int(i) for i in np.linspace(0, size - 1, 257)})
    )
    caught = 0
    for i in _flip_each_byte(path, positions):
        with pytest.raises(RuntimeInputError) as err:
            rt.load(art)
        assert "\n" not in str(err.value), i
        caught += 1
    assert caught == len(positions)
    with rt.load(art) as enc:  # restored: loads again
        assert enc(np.zeros((32, 32, 3), np.uint8)).cls.shape == (1, 32)


def _write_raw(art: Path, manifest: dict) -> None:
    """Write a manifest with a correct digest but without validation: what a hostile artifact looks like."""
    body = {k: v for k, v in manifest.items() if k != DIGEST_KEY}
    body[DIGEST_KEY] = manifest_digest(body)
    (art / "manifest.json").write_bytes(canonical_bytes(body))


@pytest.mark.parametrize(
    "entry",
    ["../outside.onnx", "/etc/passwd", "sub/encoder.onnx", "..", ".", "", "a\\..\\b", "enc\0.onnx"],
)
def test_file_entries_outside_the_folder_are_refused(art, tmp_path, entry):
    copy = Path(shutil.copytree(art, tmp_path / "a"))
    manifest = read_manifest(copy)
    manifest["files"] = {entry: manifest["files"]["encoder.onnx"]}
    _write_raw(copy, manifest)
    with pytest.raises(RuntimeInputError, match="plain file name") as err:
        rt.load(copy)
    assert "\n" not in str(err.value)


def test_symlinks_leading_out_are_refused_inside_ones_allowed(art, tmp_path):
    outside = tmp_path / "outside.onnx"
    shutil.copy(art / "encoder.onnx", outside)  # same bytes: only the symlink check can catch it
    copy = Path(shutil.copytree(art, tmp_path / "a"))
    (copy / "encoder.onnx").unlink()
    (copy / "encoder.onnx").symlink_to(outside)
    with pytest.raises(RuntimeInputError, match="symlink leading out"):
        rt.load(copy)
    (copy / "encoder.onnx").unlink()
    (copy / "encoder.onnx").symlink_to(Path("..") / "outside.onnx")  # relative, same escape
    with pytest.raises(RuntimeInputError, match="symlink leading out"):
        rt.load(copy)
    # the manifest itself may not lead out either
    shutil.copy(copy / "manifest.json", tmp_path / "outside.json")
    (copy / "manifest.json").unlink()
    (copy / "manifest.json").symlink_to(tmp_path / "outside.json")
    with pytest.raises(RuntimeInputError, match="symlink leading out"):
        rt.load(copy)
    # a symlink that stays inside the folder is fine
    inside = Path(shutil.copytree(art, tmp_path / "b"))
    os.replace(inside / "encoder.onnx", inside / "real.onnx")
    (inside / "encoder.onnx").symlink_to("real.onnx")
    with rt.load(inside) as enc:
        assert enc(np.zeros((32, 32, 3), np.uint8)).patches.shape == (1, 2, 2, 32)


@pytest.mark.parametrize("cut", [0.0, 0.3, 0.9, 0.999])
def test_truncated_manifest_is_one_line(art, tmp_path, cut, capsys):
    copy = Path(shutil.copytree(art, tmp_path / "a"))
    raw = (copy / "manifest.json").read_bytes()
    (copy / "manifest.json").write_bytes(raw[: int(len(raw) * cut)])
    out = tmp_path / "f.npz"
    capsys.readouterr()
    assert main(["extract", str(tmp_path), "--artifact", str(copy), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "manifest.json" in err[0] and "Traceback" not in err[0], err
    assert not out.exists()


def test_hand_edited_manifest_is_caught_and_writer_restores_it(art, tmp_path):
    copy = Path(shutil.copytree(art, tmp_path / "a"))
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["input"]["mean"] = [0.5, 0.5, 0.5]  # valid, but not what was exported
    (copy / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    with pytest.raises(RuntimeInputError, match=DIGEST_KEY):
        rt.load(copy)
    write_manifest(copy, manifest)  # the writer re-signs what it validates
    assert read_manifest(copy)["input"]["mean"] == [0.5, 0.5, 0.5]
    reformatted = json.loads((copy / "manifest.json").read_text())
    (copy / "manifest.json").write_text(json.dumps(reformatted, indent=4))  # same content, other bytes
    with pytest.raises(RuntimeInputError, match="canonical"):
        rt.load(copy)


def test_export_records_names_and_digests_not_paths(tmp_path, synthetic_video):
    folder = tmp_path / "home" / "someone" / "frames"
    folder.mkdir(parents=True)
    for i in range(3):
        (folder / f"{i}.png").write_bytes(bytes([i]) * 10)
    records = source_records([str(synthetic_video), str(folder), "synthetic"])
    assert records[0] == {"name": synthetic_video.name, "kind": "file", **file_entry(synthetic_video)}
    assert records[1]["name"] == "frames" and records[1]["files"] == 3 and len(records[1]["sha256"]) == 64
    assert records[2] == {"name": "synthetic", "kind": "synthetic"}
    cfg = ExportConfig(
        checkpoint=str(tmp_path / "home" / "ckpt.pt"), calib=[str(folder)], out=str(tmp_path / "o")
    )
    text = json.dumps({"sources": records, "config": config_record(cfg)})
    assert str(tmp_path) not in text and "/home/" not in text


def test_bench_report_records_names_and_digests_not_paths(art, tmp_path, synthetic_video):
    report = tmp_path / "rep"
    argv = ["bench", str(art), "--data", str(synthetic_video), "--report", str(report)]
    assert main([*argv, "--iters", "2", "--warmup", "0", "--frames", "4", "--corr-pairs", "2"]) == 0
    text = (report / "results.json").read_text()
    for folder in (art.parent, synthetic_video.parent, tmp_path):
        assert str(folder) not in text, folder
    data = json.loads(text)["settings"]["data"]
    assert data["source"] == synthetic_video.name and data["sha256"] == file_entry(synthetic_video)["sha256"]
    # and an existing report is not replaced without --force
    assert main([*argv, "--iters", "2"]) == 2
    assert (report / "results.json").read_text() == text

"""`edge-vsd bench` end to end on real toy ONNX artifacts: statuses, reports, input errors, --compare."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import opencv_sample
from edge_vsd.runtimes.manifest import file_entry, read_manifest, sha256_file, write_manifest
from test_bench_support import smooth_frames, toy, truncated_video

from edge_vsd.cli import main

FAST = ["--iters", "3", "--warmup", "1", "--frames", "6", "--corr-pairs", "3"]


def _broken(path: Path) -> Path:
    """An artifact folder whose ONNX file is garbage (with a matching hash): fails in the engine."""
    toy(path)
    (path / "encoder.onnx").write_bytes(b"this is not an onnx model")
    manifest = read_manifest(path)
    manifest["files"]["encoder.onnx"] = file_entry(path / "encoder.onnx")
    write_manifest(path, manifest)
    return path


@pytest.fixture(scope="module")
def arts(tmp_path_factory):
    root = tmp_path_factory.mktemp("artifacts")
    return {
        "fp32": toy(root / "fp32"),
        "noisy": toy(root / "noisy", noise=0.3),
        "broken": _broken(root / "broken"),
    }


@pytest.fixture(scope="module")
def bench_run(arts, tmp_path_factory):
    """One benchmark of all three artifacts; (exit status, report folder, stdout)."""
    report = tmp_path_factory.mktemp("report") / "rep"
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(
            [
                "bench",
                str(arts["fp32"]),
                str(arts["noisy"]),
                str(arts["broken"]),
                "--report",
                str(report),
                *FAST,
            ]
        )
    return rc, report, out.getvalue()


def test_broken_artifact_is_reported_not_fatal(bench_run):
    rc, report, stdout = bench_run
    assert rc == 1  # one artifact failed
    results = json.loads((report / "results.json").read_text())
    rows = {r["name"]: r for r in results["artifacts"]}
    assert [r["name"] for r in results["artifacts"]] == ["fp32", "noisy", "broken"]
    assert rows["fp32"]["status"] == "ok"
    assert rows["noisy"]["status"] == "fails-gate" and "cos" in rows["noisy"]["reason"]
    assert rows["broken"]["status"] == "failed" and rows["broken"]["reason"].startswith("load:")
    assert rows["broken"]["latency"] is None
    # the artifacts after and before the broken one were fully measured
    for name in ("fp32", "noisy"):
        lat = rows[name]["latency"]
        assert (
            lat["iters"] == 3
            and len(lat["times_ms"]) == 3
            and lat["p10_ms"] <= lat["p50_ms"] <= lat["p99_ms"]
        )
        assert rows[name]["memory"]["peak_rss_mb"] > 0 and rows[name]["load_s"] >= 0
        assert rows[name]["size_mb"] > 0 and rows[name]["backend"].startswith("onnxruntime")
        assert 0 <= rows[name]["accuracy"]["corr_acc"] <= 1
    assert rows["fp32"]["accuracy"]["cls_cosine"] == pytest.approx(1.0)
    assert rows["noisy"]["accuracy"]["patch_cosine"] < 0.98
    assert rows["noisy"]["accuracy"]["knn_agreement"] is not None
    assert results["reference"]["name"] == "fp32" and results["reference"]["kind"] == "artifact"
    assert results["schema"] == "edge-vsd-bench" and results["schema_version"] == 1
    assert results["fingerprint"]["cpu"]["isa"] and results["settings"]["data"]["kind"] == "synthetic"
    # the table went to stdout and to report.md, one row per artifact
    for text in (stdout, (report / "report.md").read_text()):
        assert "| artifact | backend | precision | size MB | p50 ms |" in text
        assert (
            text.count("\n| fp32 | onnxruntime") == 1
            and "\n| noisy | onnxruntime" in text
            and "failed (load:" in text
        )
    for png in ("latency.png", "accuracy_vs_latency.png"):
        img = cv2.imread(str(report / png))
        assert img is not None and img.std() > 5
    assert not [p for p in report.iterdir() if p.name.startswith(".")]  # no temp files left


def test_all_good_exits_zero(arts, tmp_path, capsys):
    rc = main(["bench", str(arts["fp32"]), "--report", str(tmp_path / "r"), *FAST])
    assert rc == 0
    assert "| fp32 |" in capsys.readouterr().out


@pytest.mark.parametrize("kind", ["missing", "empty-dir", "file"])
def test_not_an_artifact_is_an_input_error_before_any_work(arts, tmp_path, capsys, kind):
    bad = tmp_path / "x"
    if kind == "empty-dir":
        bad.mkdir()
    elif kind == "file":
        bad.write_text("hello")
    report = tmp_path / "report"
    rc = main(["bench", str(arts["fp32"]), str(bad), "--report", str(report), *FAST])
    err = capsys.readouterr().err
    assert rc == 2
    assert len(err.strip().splitlines()) == 1 and str(bad) in err
    assert not report.exists()


def test_missing_data_is_an_input_error(arts, tmp_path, capsys):
    rc = main(
        ["bench", str(arts["fp32"]), "--data", str(tmp_path / "nope.mp4"), "--report", str(tmp_path / "r")]
    )
    assert rc == 2 and "nope.mp4" in capsys.readouterr().err


def test_image_folder_as_data(arts, tmp_path):
    frames = smooth_frames(5, 96, 160)
    (tmp_path / "imgs").mkdir()
    for i, f in enumerate(frames):
        cv2.imwrite(str(tmp_path / "imgs" / f"{i}.png"), f)
    (tmp_path / "imgs" / "notes.txt").write_text("not an image")
    rc = main(
        ["bench", str(arts["fp32"]), "--data", str(tmp_path / "imgs"), "--report", str(tmp_path / "r"), *FAST]
    )
    assert rc == 0
    data = json.loads((tmp_path / "r" / "results.json").read_text())["settings"]["data"]
    assert data["kind"] == "images" and data["frames"] == 5 and data["size"] == [96, 160]


@pytest.mark.realdata
def test_real_video_as_data(arts, tmp_path, vtest):
    rc = main(["bench", str(arts["fp32"]), "--data", str(vtest), "--report", str(tmp_path / "r"), *FAST])
    assert rc == 0
    results = json.loads((tmp_path / "r" / "results.json").read_text())
    assert results["settings"]["data"] == {
        "kind": "video",
        "source": vtest.name,
        "sha256": sha256_file(vtest),
        "frames": 6,
        "size": [576, 768],
    }
    assert results["artifacts"][0]["accuracy"]["corr_acc"] > 0


@pytest.mark.realdata
def test_broken_video_as_data_is_an_input_error_or_works(arts, tmp_path, capsys):
    # Megamind_bugy.avi is damaged on purpose: either some frames decode (and the run works) or none do
    # (a one-line input error); never a traceback.
    bugy = opencv_sample("Megamind_bugy.avi")
    rc = main(["bench", str(arts["fp32"]), "--data", str(bugy), "--report", str(tmp_path / "r"), *FAST])
    assert rc in (0, 2)
    if rc == 2:
        assert str(bugy) in capsys.readouterr().err


# --- --compare -----------------------------------------------------------------------------------


def _write(path: Path, data: dict) -> str:
    path.write_text(json.dumps(data))
    return str(path)


def test_compare_passes_unchanged_results(bench_run, tmp_path, capsys):
    old = bench_run[1] / "results.json"
    rc = main(["bench", "--compare", str(old), str(old)])
    assert rc == 0
    assert "0 regression(s)" in capsys.readouterr().out


def test_compare_catches_an_injected_slowdown(bench_run, tmp_path, capsys):
    old = json.loads((bench_run[1] / "results.json").read_text())
    new = copy.deepcopy(old)
    new["artifacts"][1]["latency"]["p50_ms"] *= 1.25
    rc = main(["bench", "--compare", _write(tmp_path / "old.json", old), _write(tmp_path / "new.json", new)])
    out = capsys.readouterr().out
    assert rc == 1 and "FAIL noisy: p50" in out and "1 regression(s)" in out
    # a looser limit lets the same change through
    assert (
        main(
            [
                "bench",
                "--compare",
                str(tmp_path / "old.json"),
                str(tmp_path / "new.json"),
                "--max-slowdown",
                "1.3",
            ]
        )
        == 0
    )


def test_compare_catches_an_accuracy_drop_and_a_new_failure(bench_run, tmp_path, capsys):
    old = json.loads((bench_run[1] / "results.json").read_text())
    new = copy.deepcopy(old)
    new["artifacts"][0]["accuracy"]["corr_acc"] -= 0.02
    new["artifacts"][1].update(status="failed", reason="load: boom", latency=None, accuracy=None)
    rc = main(["bench", "--compare", _write(tmp_path / "old.json", old), _write(tmp_path / "new.json", new)])
    out = capsys.readouterr().out
    assert rc == 1
    assert "FAIL fp32: corr_acc" in out and "FAIL noisy: now failed (load: boom)" in out
    small = copy.deepcopy(old)
    small["artifacts"][0]["accuracy"]["corr_acc"] -= 0.001  # within --max-accuracy-drop 0.005
    assert main(["bench", "--compare", str(tmp_path / "old.json"), _write(tmp_path / "s.json", small)]) == 0


def test_compare_rejects_files_that_are_not_results(bench_run, tmp_path, capsys):
    (tmp_path / "junk.json").write_text("{not json")
    rc = main(["bench", "--compare", str(bench_run[1] / "results.json"), str(tmp_path / "junk.json")])
    assert rc == 2 and "junk.json" in capsys.readouterr().err
    rc = main(
        ["bench", "--compare", str(bench_run[1] / "results.json"), _write(tmp_path / "o.json", {"a": 1})]
    )
    assert rc == 2


# --- torch stays out ------------------------------------------------------------------------------


def test_bench_runs_without_importing_torch(arts, tmp_path):
    code = (
        "import sys\nfrom edge_vsd.cli import main\n"
        f"rc = main(['bench', {str(arts['fp32'])!r}, '--report', {str(tmp_path / 'r')!r}, *{FAST!r}])\n"
        "assert 'torch' not in sys.modules, 'bench imported torch'\nsys.exit(rc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_checkpoint_reference(arts, tmp_path):
    torch = pytest.importorskip("torch")
    from edge_vsd.checkpoint import save_atomic
    from edge_vsd.model import VisionTransformer, ViTConfig

    torch.manual_seed(0)
    cfg = ViTConfig(embed_dim=64, depth=1, num_heads=1, patch_size=8, img_size=(128, 128))
    save_atomic({"teacher": VisionTransformer(cfg).state_dict()}, tmp_path / "ref.pt")
    rc = main(
        [
            "bench",
            str(arts["fp32"]),
            "--reference",
            str(tmp_path / "ref.pt"),
            "--report",
            str(tmp_path / "r"),
            *FAST,
        ]
    )
    results = json.loads((tmp_path / "r" / "results.json").read_text())
    assert results["reference"]["kind"] == "checkpoint" and results["reference"]["error"] is None
    assert 0 < results["reference"]["corr_acc"] <= 1
    acc = results["artifacts"][0]["accuracy"]
    # an unrelated random ViT: measured, and far from the toy encoder, so the gate flags it
    assert acc["cls_cosine"] is not None and acc["patch_cosine"] is not None
    assert results["artifacts"][0]["status"] == "fails-gate" and rc == 0
    assert np.isfinite(acc["max_abs_error"])


def test_broken_reference_leaves_the_others_measured(arts, tmp_path, capsys):
    # "broken" is the first fp32 artifact, so it becomes the default reference and fails to load.
    rc = main(["bench", str(arts["broken"]), str(arts["fp32"]), "--report", str(tmp_path / "r"), *FAST])
    assert rc == 1
    results = json.loads((tmp_path / "r" / "results.json").read_text())
    assert results["reference"]["name"] == "broken" and results["reference"]["error"].startswith("load:")
    row = results["artifacts"][1]
    assert row["status"] == "ok" and row["latency"]["iters"] == 3
    assert row["accuracy"]["cls_cosine"] is None and row["accuracy"]["corr_acc"] is not None


# --- checks before any work, and what the run says about its inputs ------------------------------


def _save_tiny_vit(path: Path, size: tuple[int, int] = (32, 32)) -> Path:
    torch = pytest.importorskip("torch")
    from edge_vsd.checkpoint import save_atomic
    from edge_vsd.model import VisionTransformer, ViTConfig

    torch.manual_seed(0)
    cfg = ViTConfig(embed_dim=64, depth=1, num_heads=1, patch_size=8, img_size=size)
    save_atomic({"teacher": VisionTransformer(cfg).state_dict()}, path)
    return path


@pytest.mark.slow
def test_checkpoint_reference_runs_at_each_artifacts_own_size(tmp_path):
    pytest.importorskip("torch")
    from edge_vsd.export import ExportConfig, export_artifact

    ckpt = _save_tiny_vit(tmp_path / "vit.pt")
    fast = dict(calib_frames=4, heldout_frames=4, latency_runs=1, quiet=True)
    for name, size in (("square", (32, 32)), ("wide", (24, 40))):
        export_artifact(ExportConfig(checkpoint=str(ckpt), out=str(tmp_path / name), img_size=size, **fast))
    for order in (["square", "wide"], ["wide", "square"]):
        report = tmp_path / f"r-{order[0]}"
        arts = [str(tmp_path / n) for n in order]
        rc = main(["bench", *arts, "--reference", str(ckpt), "--report", str(report), *FAST])
        results = json.loads((report / "results.json").read_text())
        assert rc == 0
        # exact fp32 exports of the checkpoint: both match it at their own resolution, whatever the order
        for row in results["artifacts"]:
            assert row["status"] == "ok", row
            assert row["accuracy"]["cls_cosine"] > 0.9999 and row["accuracy"]["patch_cosine"] > 0.9999
        assert sorted(results["reference"]["input_sizes"]) == [[24, 40], [32, 32]]
        assert "passing the fidelity gate" in results["ship"]["why"]


def test_a_file_that_is_no_checkpoint_as_reference_is_refused_before_any_work(arts, tmp_path, capsys):
    pytest.importorskip("torch")
    bad = tmp_path / "notackpt.pt"
    bad.write_text("not a checkpoint\n")
    report = tmp_path / "r"
    rc = main(["bench", str(arts["fp32"]), "--reference", str(bad), "--report", str(report), *FAST])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and str(bad) in err[0] and "Traceback" not in err[0]
    assert not report.exists()


def test_ship_line_without_reference_reads_as_a_sentence():
    from edge_vsd.benchmarks.verdicts import ship

    rows = [
        {"name": n, "status": "ok", "latency": {"p50_ms": ms}, "accuracy": {"cls_cosine": 1.0}}
        for n, ms in (("a", 2.0), ("b", 1.0))
    ]
    why = ship(rows, has_reference=False)["why"]
    assert why == "fastest of 2 artifacts; no reference: fidelity not checked"
    assert ship(rows[:1], has_reference=True)["why"] == "fastest of 1 artifact passing the fidelity gate"


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc (nobody can write there)")
def test_unwritable_report_folder_is_refused_before_any_work(arts, capsys):
    # /proc refuses new entries even to root, for whom os.access says yes
    rc = main(["bench", str(arts["fp32"]), "--report", "/proc/edge-vsd-report", *FAST])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert "/proc/edge-vsd-report: cannot write here (--report)" in err[0]


def test_report_folder_check_creates_nothing(tmp_path):
    from edge_vsd.benchmarks.report import check_report_dir
    from edge_vsd.runtimes.errors import RuntimeInputError

    check_report_dir(tmp_path / "new" / "deeper", force=False)
    assert list(tmp_path.iterdir()) == []  # the probe folder is gone, and no report folder was made
    (tmp_path / "file").write_text("x")
    with pytest.raises(RuntimeInputError, match="cannot write here"):
        check_report_dir(tmp_path / "file" / "sub", force=False)


def test_truncated_video_as_data_warns_with_frames_read_and_asked(arts, tmp_path, caplog):
    video = truncated_video(tmp_path / "trunc.avi")
    rc = main(["bench", str(arts["fp32"]), "--data", str(video), "--report", str(tmp_path / "r"), *FAST])
    assert rc == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    read = json.loads((tmp_path / "r" / "results.json").read_text())["settings"]["data"]["frames"]
    assert read < 6
    assert any(
        m.startswith(f"{video}: decoding stopped after") and f"using {read} of the 6 frames asked" in m
        for m in warnings
    ), warnings


def test_compare_warns_when_the_runs_measured_different_things(bench_run, tmp_path, caplog):
    old = json.loads((bench_run[1] / "results.json").read_text())
    new = copy.deepcopy(old)
    new["artifacts"][0]["model"]["image_size"] = [224, 224]
    new["settings"]["data"].update(kind="video", source="other.avi")
    new["settings"]["threads"] = 1
    rc = main(["bench", "--compare", _write(tmp_path / "old.json", old), _write(tmp_path / "new.json", new)])
    assert rc == 0  # the numbers themselves did not regress
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "compare unlike runs" in warnings[0]
    for part in ("fp32: model", "[224, 224]", "data source: none -> other.avi", "threads: none -> 1"):
        assert part in warnings[0], warnings[0]
    caplog.clear()
    assert main(["bench", "--compare", str(tmp_path / "old.json"), str(tmp_path / "old.json")]) == 0
    assert not [r for r in caplog.records if r.levelname == "WARNING"]

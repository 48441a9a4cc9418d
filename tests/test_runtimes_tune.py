"""`edge-vsd tune` and how `load` honours it: the manifest's engine runs, a missing engine falls back with
one warning line, tuning keeps every hash valid, another CPU's tuning is flagged. Real ONNX Runtime and
OpenVINO on the toy artifact (tests/toy_artifact.py)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from edge_vsd.runtimes import backend as backend_mod
from edge_vsd.runtimes import load
from edge_vsd.runtimes.cpuinfo import cpu_fingerprint
from edge_vsd.runtimes.manifest import read_manifest, verify_files, write_manifest
from edge_vsd.runtimes.timing import Protocol
from edge_vsd.runtimes.tune import camera_frame, tune
from toy_artifact import make_toy_artifact, toy_reference

from edge_vsd.cli import main

pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install edge-vsd[openvino])")

QUICK = Protocol(warmup=1, iters=3, rounds=2, park_s=0.01)


@pytest.fixture(autouse=True)
def _fresh_warnings():
    backend_mod._warned.clear()
    yield
    backend_mod._warned.clear()


@pytest.fixture
def tuned(tmp_path) -> Path:
    art = make_toy_artifact(tmp_path / "art")
    tune(art, protocol=QUICK)
    return art


def _set(art: Path, **changes) -> dict:
    manifest = read_manifest(art)
    for path, value in changes.items():
        node = manifest
        *parents, leaf = path.split("__")
        for key in parents:
            node = node[key]
        node[leaf] = value
    write_manifest(art, manifest)
    return manifest


def test_auto_runs_the_engine_the_manifest_names(tmp_path):
    art = make_toy_artifact(tmp_path / "art")
    assert load(art).backend_name == "onnxruntime-cpu"
    _set(art, backend="openvino")
    enc = load(art)
    assert enc.backend_name == "openvino-cpu"
    frame = camera_frame()
    cls, patches = toy_reference(art, enc.preprocess(frame))
    np.testing.assert_allclose(enc(frame).patches, patches, atol=1e-4)


def test_tune_writes_a_manifest_that_still_verifies(tuned):
    manifest = read_manifest(tuned)
    verify_files(tuned, manifest)  # every sha256 still matches
    rec = manifest["tuning"]
    assert set(rec["results"]) == {"fp32_onnxruntime", "fp32_openvino"}
    fastest = min(rec["results"], key=lambda n: rec["results"][n]["median_ms"])
    assert rec["chosen"] == fastest and manifest["backend"] == rec["engine"]
    assert rec["cpu"]["id"] == cpu_fingerprint()["id"] and rec["protocol"]["rounds"] == QUICK.rounds
    assert all(len(r["round_ms"]) == QUICK.rounds for r in rec["results"].values())
    engine = "onnxruntime-cpu" if rec["engine"] == "onnxruntime" else "openvino-cpu"
    assert load(tuned).backend_name == f"{engine}/{fastest}"


@pytest.mark.parametrize("pick", ["fp32_onnxruntime", "fp32_openvino"])
def test_load_runs_the_tuned_choice(tuned, pick):
    _set(tuned, tuning__chosen=pick)
    assert load(tuned).backend_name.endswith(f"/{pick}")
    # an explicit backend still wins, and gets its own candidate
    assert load(tuned, backend="onnxruntime-cpu").backend_name == "onnxruntime-cpu/fp32_onnxruntime"


FALLBACK_CHILD = """
import sys
sys.modules["openvino"] = None  # as on a board where OpenVINO was never installed
import edge_vsd.runtimes as rt
import numpy as np
for _ in range(2):
    enc = rt.load(sys.argv[1])
    enc(np.zeros((48, 64, 3), np.uint8))
print("RAN", enc.backend_name)
"""


def test_missing_engine_falls_back_with_one_warning_line(tuned):
    manifest = _set(tuned, tuning__chosen="fp32_openvino", backend="openvino")
    ms = {n: r["median_ms"] for n, r in manifest["tuning"]["results"].items()}
    proc = subprocess.run(
        [sys.executable, "-c", FALLBACK_CHILD, str(tuned)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "RAN onnxruntime-cpu/fp32_onnxruntime" in proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr  # one line, once, though loaded twice
    assert "pip install openvino" in lines[0] and "as measured at tuning" in lines[0]
    assert f"{ms['fp32_onnxruntime'] / ms['fp32_openvino']:.2f}x" in lines[0]


def test_another_cpus_tuning_warns_once_and_retune_fixes_it(tuned, caplog):
    _set(tuned, tuning__cpu__id="0123456789abcdef", tuning__cpu__model="Some Other CPU")
    with caplog.at_level(logging.WARNING, logger="edge_vsd.runtimes"):
        load(tuned)
        load(tuned)
    msgs = [r.getMessage() for r in caplog.records]
    assert len(msgs) == 1 and "Some Other CPU" in msgs[0] and f"edge-vsd tune {tuned}" in msgs[0]
    caplog.clear()
    backend_mod._warned.clear()
    rec = tune(tuned, protocol=QUICK)
    assert rec["chosen"] == min(rec["results"], key=lambda n: rec["results"][n]["median_ms"])
    with caplog.at_level(logging.WARNING, logger="edge_vsd.runtimes"):
        load(tuned)
    assert not caplog.records


def test_tune_cli_prints_the_choice_and_dry_run_writes_nothing(tmp_path, capsys):
    art = make_toy_artifact(tmp_path / "art")
    before = (art / "manifest.json").read_bytes()
    assert main(["tune", str(art), "--rounds", "1", "--iters", "2", "--warmup", "1", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "<- chosen" in out and "fp32_openvino" in out and "fp32_onnxruntime" in out
    assert (art / "manifest.json").read_bytes() == before
    assert main(["tune", str(art), "--rounds", "1", "--iters", "2"]) == 0
    assert "tuning" in json.loads((art / "manifest.json").read_text())


def test_tune_refuses_bad_input_in_one_line(tmp_path, capsys):
    art = make_toy_artifact(tmp_path / "art")
    _set(art, target="jetson")
    assert main(["tune", str(art)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cpu artifacts" in err[0], err
    assert main(["tune", str(tmp_path / "nope")]) == 2
    assert main(["tune", str(art), "--rounds", "0"]) == 2


def test_unknown_candidate_is_a_one_line_error(tuned):
    from edge_vsd.runtimes.errors import RuntimeInputError

    with pytest.raises(RuntimeInputError, match="no candidate 'int4'"):
        load(tuned, candidate="int4")


TORCH_FREE_CHILD = """
import sys
from edge_vsd.cli import main
rc = main(["tune", sys.argv[1], "--rounds", "1", "--iters", "2", "--warmup", "1"])
bad = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "onnx", "nncf"))
print("RC", rc, "BAD", bad)
"""


def test_tune_runs_where_torch_cannot_be_imported(tmp_path):
    from test_runtimes_cli import BLOCKER

    art = make_toy_artifact(tmp_path / "art")
    proc = subprocess.run(
        [sys.executable, "-c", BLOCKER + TORCH_FREE_CHILD, str(art)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "RC 0 BAD []" in proc.stdout, proc.stderr[-2000:]
    assert read_manifest(art)["tuning"]["chosen"]


def test_tune_keep_chosen_removes_the_other_graphs_and_still_verifies(tmp_path, capsys):
    art = make_toy_artifact(tmp_path / "art")
    manifest = read_manifest(art)
    # a second graph file (an IR-style pair too) carried as candidates, as a cpu-int8 export does
    (art / "encoder.other.onnx").write_bytes((art / "encoder.onnx").read_bytes())
    import openvino as ov

    ov.save_model(ov.Core().read_model(str(art / "encoder.onnx")), str(art / "encoder.ir.xml"))
    from edge_vsd.runtimes.manifest import file_entry

    for name in ("encoder.other.onnx", "encoder.ir.xml", "encoder.ir.bin"):
        manifest["files"][name] = file_entry(art / name)
    manifest["candidates"] = [
        {"name": "main_ort", "file": "encoder.onnx", "engine": "onnxruntime", "precision": "fp32"},
        {"name": "other_ort", "file": "encoder.other.onnx", "engine": "onnxruntime", "precision": "fp32"},
        # one file serving two engines, as the fp32 reference does
        {"name": "other_ov", "file": "encoder.other.onnx", "engine": "openvino", "precision": "fp32"},
        {"name": "ir_ov", "file": "encoder.ir.xml", "engine": "openvino", "precision": "fp32"},
    ]
    write_manifest(art, manifest)
    assert main(["tune", str(art), "--keep", "chosen", "--rounds", "1", "--iters", "2", "--warmup", "0"]) == 0
    tuned = read_manifest(art)
    verify_files(art, tuned)  # every listed file present with its hash
    chosen = {c["name"]: c for c in manifest["candidates"]}[tuned["tuning"]["chosen"]]
    kept_files = {"encoder.onnx", chosen["file"]} | (
        {"encoder.ir.bin"} if chosen["name"] == "ir_ov" else set()
    )
    on_disk = {p.name for p in art.iterdir()} - {"manifest.json"}
    assert on_disk == set(tuned["files"]) == kept_files
    assert (
        set(tuned["tuning"]["pruned"])
        == {"encoder.other.onnx", "encoder.ir.xml", "encoder.ir.bin"} - kept_files
    )
    assert {c["file"] for c in tuned["candidates"]} <= kept_files
    assert load(art).backend_name.endswith(chosen["name"])  # the chosen graph still runs
    assert "removed" in capsys.readouterr().err


def test_a_bf16_hint_is_timed_only_where_the_cpu_computes_in_bf16(tmp_path):
    from edge_vsd.runtimes.openvino import cpu_has_bf16

    art = make_toy_artifact(tmp_path / "art")
    plain = {"file": "encoder.onnx", "engine": "openvino", "precision": "fp32"}
    hinted = {**plain, "name": "ov_bf16", "options": {"precision_hint": "bf16"}}
    _set(art, candidates=[{**plain, "name": "ov"}, hinted])
    rec = tune(art, protocol=QUICK)
    if cpu_has_bf16():  # AVX-512 BF16 / AMX: the hint changes the kernels, so it is a real candidate
        assert set(rec["results"]) == {"ov", "ov_bf16"} and not rec["skipped"]
    else:  # elsewhere OpenVINO runs it in f32: the same graph twice, so it is not timed
        assert set(rec["results"]) == {"ov"} and rec["chosen"] == "ov"
        assert "no bf16" in rec["skipped"]["ov_bf16"]
    assert load(art).backend_name == f"openvino-cpu/{rec['chosen']}"  # what tune chose, load runs


def test_the_fp32_note_says_ship_fp32_only_when_every_round_agrees():
    from edge_vsd.runtimes.timing import Timing
    from edge_vsd.runtimes.tune import reference_note

    def timed(*rounds: float) -> Timing:
        return Timing(sorted(rounds)[len(rounds) // 2], list(rounds), list(rounds))

    assert reference_note("int8", timed(5.0, 5.1, 5.2), "fp32", timed(6.0, 6.1, 6.2)) is None
    clear = reference_note("int8", timed(8.0, 8.1, 8.3), "fp32", timed(6.0, 6.1, 6.2))
    assert clear is not None and clear.endswith("ship the fp32 artifact here")
    # the last quickstart on a 2-core AMD: 6.93 ms (13% between rounds) against 6.39 ms (61%)
    close = reference_note("int8", timed(6.6, 6.93, 7.48), "fp32", timed(5.9, 6.39, 9.8))
    assert close is not None and "too close to call" in close and "ship the fp32" not in close

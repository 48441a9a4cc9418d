"""cpu exports carry their gated candidate graphs and end tuned: the manifest names the engine that measured
fastest here, `load` runs it, and every file the candidates use is hashed. A tiny ViT, real NNCF/ORT/OV."""

from __future__ import annotations

import pytest
import torch
from edge_vsd.export import ExportConfig, export_artifact
from edge_vsd.runtimes import load
from edge_vsd.runtimes.cpuinfo import cpu_fingerprint
from edge_vsd.runtimes.manifest import read_manifest, verify_files

from edge_vsd.model import build_vit

pytestmark = pytest.mark.slow
pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install edge-vsd[openvino])")

SIZE = 32
FAST = dict(calib_frames=8, heldout_frames=4, latency_runs=2, quiet=True, img_size=(SIZE, SIZE))


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    sd = {f"backbone.{k}": v for k, v in build_vit("vit_tiny", SIZE).state_dict().items()}
    path = tmp_path_factory.mktemp("ckpt") / "vsd.pt"
    torch.save({"teacher": sd, "edge_vsd": {"img_size": [SIZE, SIZE]}}, path)
    return path


def _check_tuned(art):
    manifest = read_manifest(art)
    verify_files(art, manifest)
    cands = {c["name"]: c for c in manifest["candidates"]}
    tuning = manifest["tuning"]
    assert set(tuning["results"]) == set(cands) and tuning["cpu"]["id"] == cpu_fingerprint()["id"]
    assert {c["file"] for c in cands.values()} <= set(manifest["files"])
    choosable = [n for n, c in cands.items() if c.get("choosable", True)]
    assert tuning["chosen"] == min(choosable, key=lambda n: tuning["results"][n]["median_ms"])
    assert manifest["backend"] == cands[tuning["chosen"]]["engine"]
    for c in cands.values():  # each was gated through the runtime against PyTorch
        assert min(c["runtime_vs_torch"]["cls_cosine"], c["runtime_vs_torch"]["patch_cosine"]) >= 0.99
    assert load(art).backend_name.endswith("/" + tuning["chosen"])
    return manifest, cands


def test_cpu_fp32_export_tunes_onnxruntime_against_openvino(ckpt, tmp_path):
    art = export_artifact(
        ExportConfig(checkpoint=str(ckpt), target="cpu", out=str(tmp_path / "fp32"), **FAST)
    )
    manifest, cands = _check_tuned(art)
    assert set(cands) == {"fp32_onnxruntime", "fp32_openvino"}
    assert {c["file"] for c in cands.values()} == {"encoder.onnx"} and manifest["precision"] == "fp32"


def test_cpu_int8_export_carries_int8_candidates_and_an_fp32_reference(ckpt, tmp_path):
    art = export_artifact(
        ExportConfig(checkpoint=str(ckpt), target="cpu", int8=True, out=str(tmp_path / "int8"), **FAST)
    )
    manifest, cands = _check_tuned(art)
    refs = {n for n, c in cands.items() if not c.get("choosable", True)}
    assert refs == {"fp32_reference", "fp32_reference_openvino"}
    assert all(cands[n]["file"] == "encoder.fp32.onnx" for n in refs)
    assert {"nncf_static_qdq", "ort_dynamic_int8"} & set(cands)
    assert manifest["cpu_int8"]["chosen"] == manifest["tuning"]["chosen"]
    # an explicit engine runs its own fastest INT8 candidate, never the fp32 reference
    ort = load(art, backend="onnxruntime-cpu").backend_name
    assert ort.startswith("onnxruntime-cpu/") and "fp32" not in ort

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
    # every candidate is timed, or skipped with its reason (a bf16 hint where the CPU has no bf16)
    assert set(tuning["results"]) | set(tuning["skipped"]) == set(cands)
    assert all("no bf16" in why for why in tuning["skipped"].values())
    assert tuning["cpu"]["id"] == cpu_fingerprint()["id"]
    assert {c["file"] for c in cands.values()} <= set(manifest["files"])
    choosable = [n for n, c in cands.items() if c.get("choosable", True) and n in tuning["results"]]
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


@pytest.mark.realdata
def test_cpu_int8_export_measures_every_engine_and_carries_an_fp32_reference(vtest, tmp_path):
    """One cpu INT8 export (the slowest thing CI does, so it is done once): the gated INT8 candidates of
    both engines, NNCF on OpenVINO's own IR with and without a float attention core, fp32 references that
    are never chosen, and a tuned choice that `load` runs."""
    import numpy as np
    import openvino
    from edge_vsd.export.calibration import load_frames

    # at 64 px and 16 calibration frames, as the jetson tests: at 32 px a per-frame INT8 cosine sits at 0.99
    torch.manual_seed(0)
    sd = {f"backbone.{k}": v for k, v in build_vit("vit_tiny", 64).state_dict().items()}
    torch.save({"teacher": sd, "edge_vsd": {"img_size": [64, 64]}}, tmp_path / "vsd64.pt")
    settings = {**FAST, "img_size": (64, 64), "calib_frames": 16, "heldout_frames": 8}
    art = export_artifact(
        ExportConfig(
            checkpoint=str(tmp_path / "vsd64.pt"),
            target="cpu",
            int8=True,
            calib=[str(vtest)],
            out=str(tmp_path / "int8"),
            **settings,
        )
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

    names = {c["name"]: c for c in manifest["cpu_int8"]["candidates"]}
    # Q/DQ ONNX, and NNCF on OpenVINO's own IR: asymmetric; symmetric with a float attention core, with and
    # without SmoothQuant
    irs = ("openvino_ir_int8", "openvino_ir_int8_symmetric", "openvino_ir_int8_symmetric_nosq")
    for name in ("openvino_nncf_qdq", *irs):
        ov = names[name]
        assert ov["backend"] == "openvino" and ov["latency_ms"] > 0 and ov["fidelity"]["cls_cosine"] >= 0.99
    # the IR candidate is an .xml graph whose weights are the .bin beside it; both are hashed
    assert cands["openvino_ir_int8"]["file"] == "encoder.ov_int8.xml"
    assert {"encoder.ov_int8.xml", "encoder.ov_int8.bin"} <= set(manifest["files"])
    fake_quantize = {
        n: sum(
            op.get_type_name() == "FakeQuantize"
            for op in openvino.Core().read_model(str(art / cands[n]["file"])).get_ops()
        )
        for n in irs
    }
    assert fake_quantize["openvino_ir_int8"] > 0  # an INT8 graph
    # the float attention core: no quantizer on the inputs of q@k^T and softmax@V (2 a block)
    assert fake_quantize["openvino_ir_int8_symmetric"] < fake_quantize["openvino_ir_int8"]
    frames = load_frames([vtest], (64, 64), 4, 4).heldout
    with load(art, candidate="openvino_ir_int8") as enc, load(art, candidate="fp32_reference") as ref:
        ours, want = enc(list(frames)), ref(list(frames))
    cos = (ours.cls * want.cls).sum(1) / np.linalg.norm(ours.cls, axis=1) / np.linalg.norm(want.cls, axis=1)
    assert cos.min() > 0.99

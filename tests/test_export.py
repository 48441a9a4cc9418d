"""Export pipeline end to end on tiny ViTs: fp32 parity, INT8 for jetson and cpu on real frames, fp16,
dynamic batch, non-square sizes, manifests. Real components throughout (torch, ONNX Runtime, NNCF)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from edge_vsd.export import ExportConfig, export_artifact
from edge_vsd.export.calibration import load_frames, tensor_sha256, to_tensor
from edge_vsd.export.quantize import LADDER, sensitive_nodes
from edge_vsd.export.trt_lint import lint_file
from edge_vsd.runtimes.manifest import file_entry
from onnx import TensorProto, numpy_helper

from edge_vsd.model import build_vit

pytestmark = pytest.mark.slow

SIZE = 64  # vit_tiny at 64 px: 4x4 patches, fast enough for CI yet the full 12-block graph
FAST = dict(calib_frames=16, heldout_frames=8, latency_runs=3, quiet=True)


def save_edge_vsd(path: Path, size=(SIZE, SIZE), seed: int = 0) -> Path:
    """A random-init backbone in the edge-vsd checkpoint layout (teacher/student with heads)."""
    torch.manual_seed(seed)
    sd = {f"backbone.{k}": v for k, v in build_vit("vit_tiny", size).state_dict().items()}
    head = {"head.mlp.0.weight": torch.randn(32, 192), "head.last_layer.weight": torch.randn(64, 32)}
    torch.save(
        {"teacher": {**sd, **head}, "student": {**sd, **head}, "edge_vsd": {"img_size": list(size)}}, path
    )
    return path


def save_dino(path: Path, seed: int = 1) -> Path:
    """A DINO training checkpoint: keys renamed to DINO's layout (`module.backbone.` student, `backbone.`
    teacher, DINOHead keys, optimizer state), no edge-vsd metadata, so the size comes from pos_embed."""
    torch.manual_seed(seed)
    sd = build_vit("vit_tiny", SIZE).state_dict()
    teacher = {f"backbone.{k}": v for k, v in sd.items()}
    teacher["head.mlp.0.weight"] = torch.randn(64, 192)
    teacher["head.last_layer.weight_g"] = torch.ones(128, 1)
    student = {f"module.{k}": v.clone() for k, v in teacher.items()}
    torch.save({"student": student, "teacher": teacher, "epoch": 7, "optimizer": {"state": {}}}, path)
    return path


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return save_edge_vsd(tmp_path_factory.mktemp("ckpt") / "vsd.pt")


@pytest.fixture(scope="module")
def dino_ckpt(tmp_path_factory) -> Path:
    return save_dino(tmp_path_factory.mktemp("dino") / "dino_vits.pth")


@pytest.fixture(scope="module")
def trained_ckpt(tmp_path_factory, synthetic_video) -> Path:
    """An encoder trained a few VSD steps (weights moved away from the random init)."""
    from edge_vsd.config import TrainConfig
    from edge_vsd.train import train

    out = tmp_path_factory.mktemp("train") / "run"
    cfg = TrainConfig(
        video=[str(synthetic_video)],
        out=str(out),
        steps=5,
        lr=5e-3,
        img_size=SIZE,
        batch_size=8,
        out_dim=256,
        head_hidden_dim=128,
        head_bottleneck_dim=64,
        delta=5,
    )
    return Path(train(cfg, show_progress=False))


@pytest.fixture(scope="module")
def fp32_art(ckpt, tmp_path_factory) -> Path:
    return export_artifact(
        ExportConfig(checkpoint=str(ckpt), out=str(tmp_path_factory.mktemp("a") / "fp32"), **FAST)
    )


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_manifest_files_match(art: Path) -> dict:
    manifest = json.loads((art / "manifest.json").read_text())
    on_disk = {p.name for p in art.iterdir()} - {"manifest.json"}
    assert set(manifest["files"]) == on_disk
    for name, entry in manifest["files"].items():
        assert entry["sha256"] == sha256(art / name), name
        assert entry["bytes"] == (art / name).stat().st_size
    return manifest


def ort_outputs(path: Path, x: np.ndarray) -> list[np.ndarray]:
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"image": x})


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
    return float(((a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)).mean())


def test_fp32_parity_manifest_and_runtime(ckpt, fp32_art):
    art = fp32_art
    manifest = assert_manifest_files_match(art)
    assert set(manifest["files"]) == {"encoder.onnx"}
    assert manifest["precision"] == "fp32" and manifest["target"] == "cpu" and manifest["calibration"] is None
    assert manifest["model"]["image_size"] == [SIZE, SIZE] and manifest["input"]["batch"] == 1
    assert manifest["input"]["resize"] == "stretch" and manifest["outputs"]["patches"]["shape"] == [
        1,
        4,
        4,
        192,
    ]
    p = manifest["parity"]["fp32_vs_torch"]
    assert p["cls_cosine_min"] > 0.99999 and p["patch_cosine_min"] > 0.99999 and p["max_abs_error"] < 1e-3
    runtime = manifest["parity"]["runtime_vs_torch"]  # incl. frames the runtime resizes itself
    assert runtime["patch_cosine"] > 0.99999 and runtime["max_abs_error"] < 1e-3
    assert runtime["full_resolution_frames"] == 8 and runtime["frames"] == 8 + 8
    assert manifest["export"]["config"]["gate"] == 0.99 and manifest["versions"]["onnxruntime"]
    model = onnx.load(str(art / "encoder.onnx"))
    assert next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert [i.name for i in model.graph.input] == ["image"]
    assert [o.name for o in model.graph.output] == ["cls", "patches"]
    assert "LayerNormalization" in {n.op_type for n in model.graph.node}
    assert not any("head" in i.name or "predictor" in i.name for i in model.graph.initializer)
    # independent check: the ONNX against the checkpoint's PyTorch backbone on a fresh input
    from edge_vsd import load_encoder

    x = torch.randn(1, 3, SIZE, SIZE)
    with torch.no_grad():
        ref = load_encoder(ckpt)(x)
    cls, patches = ort_outputs(art / "encoder.onnx", x.numpy())
    np.testing.assert_allclose(cls, ref.cls.numpy(), atol=1e-4)
    np.testing.assert_allclose(patches, ref.patches.numpy(), atol=1e-4)


def test_dynamic_batch_and_non_square(ckpt, tmp_path):
    art = export_artifact(
        ExportConfig(
            checkpoint=str(ckpt), out=str(tmp_path / "dyn"), dynamic_batch=True, img_size=(96, 128), **FAST
        )
    )
    manifest = assert_manifest_files_match(art)
    assert manifest["input"]["batch"] is None and manifest["model"]["image_size"] == [96, 128]
    assert manifest["outputs"]["patches"]["shape"] == ["batch", 6, 8, 192]
    from edge_vsd import load_encoder

    enc = load_encoder(ckpt)
    for n in (1, 3):
        x = torch.randn(n, 3, 96, 128)
        with torch.no_grad():
            ref = enc(x)
        cls, patches = ort_outputs(art / "encoder.onnx", x.numpy())
        assert cls.shape == (n, 192) and patches.shape == (n, 6, 8, 192)
        np.testing.assert_allclose(patches, ref.patches.numpy(), atol=1e-4)


def test_force_replaces_artifact_with_fp16_batch_2(ckpt, fp32_art, tmp_path):
    from edge_vsd.errors import InputError

    art = tmp_path / "art"
    shutil.copytree(fp32_art, art)
    with pytest.raises(InputError, match="already exists"):
        export_artifact(ExportConfig(checkpoint=str(ckpt), out=str(art), fp16=True, **FAST))
    assert sha256(art / "manifest.json") == sha256(fp32_art / "manifest.json")
    export_artifact(ExportConfig(checkpoint=str(ckpt), out=str(art), fp16=True, batch=2, force=True, **FAST))
    assert [p.name for p in tmp_path.iterdir()] == ["art"]  # no staging or old folders left behind
    manifest = assert_manifest_files_match(art)
    assert manifest["precision"] == "fp16" and manifest["input"]["batch"] == 2
    assert manifest["parity"]["vs_fp32"]["cls_cosine"] >= 0.99
    model = onnx.load(str(art / "encoder.onnx"))
    floats = {i.data_type for i in model.graph.initializer} & {TensorProto.FLOAT, TensorProto.FLOAT16}
    assert floats == {TensorProto.FLOAT16}
    assert all(
        v.type.tensor_type.elem_type == TensorProto.FLOAT for v in [*model.graph.input, *model.graph.output]
    )
    assert manifest["input"]["dtype"] == "float32"
    cls, patches = ort_outputs(art / "encoder.onnx", np.zeros((2, 3, SIZE, SIZE), np.float32))
    assert cls.dtype == np.float32 and patches.shape == (2, 4, 4, 192)


def qdq_nodes(model: onnx.ModelProto):
    init = {i.name: i for i in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            yield n, init


@pytest.mark.realdata
@pytest.mark.parametrize("which", ["trained", "dino"])
def test_jetson_int8_passes_gate_on_vtest(which, trained_ckpt, dino_ckpt, vtest, tmp_path):
    path = trained_ckpt if which == "trained" else dino_ckpt
    art = export_artifact(
        ExportConfig(
            checkpoint=str(path),
            target="jetson",
            int8=True,
            calib=[str(vtest)],
            out=str(tmp_path / "jetson"),
            **FAST,
        )
    )
    manifest = assert_manifest_files_match(art)
    assert manifest["precision"] == "int8" and manifest["target"] == "jetson"
    for key in ("cls_cosine", "patch_cosine"):
        assert manifest["parity"]["vs_fp32"][key] >= 0.99
        assert manifest["parity"]["runtime_vs_torch"][key] >= 0.99
    # explicit quantization as TensorRT wants it, checked here independently of the linter
    model = onnx.load(str(art / "encoder.onnx"))
    n_weight_dq = 0
    for node, init in qdq_nodes(model):
        zp = init[node.input[2]]
        assert zp.data_type == TensorProto.INT8, node.name
        assert not numpy_helper.to_array(zp).any(), node.name
        if node.op_type == "DequantizeLinear" and node.input[0] in init:
            n_weight_dq += 1
            assert numpy_helper.to_array(init[node.input[1]]).size > 1, f"{node.name} is per-tensor"
    assert n_weight_dq >= 12 * 4  # every block's qkv, proj, fc1, fc2 at least
    assert lint_file(art / "encoder.onnx") == []
    assert manifest["quantization"]["lint"] == []
    trt = manifest["tensorrt"]
    # JetPack's trtexec is not on PATH
    assert trt["trtexec"].startswith("/usr/src/tensorrt/bin/trtexec --onnx=encoder.onnx")
    assert "--int8" in trt["trtexec"]
    assert trt["trtexec"] in (art / "BUILD_ON_DEVICE.txt").read_text()
    assert trt["engine_built"] == (art / "encoder.engine").exists()
    # the calibration hash identifies the frames: recompute them independently
    calib = manifest["calibration"]
    assert (
        calib["frames"] == 16
        and calib["sources"] == [{"name": vtest.name, "kind": "file", **file_entry(vtest)}]
        and calib["source_frames"] == 795
    )
    frames = load_frames([vtest], (SIZE, SIZE), 16, 8)
    assert tensor_sha256(to_tensor(frames.calib)) == calib["sha256"]
    attempts = manifest["quantization"]["attempts"]
    assert attempts[-1]["ignored_scope"] == manifest["quantization"]["ignored_scope"]


@pytest.mark.realdata
@pytest.mark.parametrize("which", ["trained", "dino"])
def test_cpu_int8_candidates_on_vtest(which, trained_ckpt, dino_ckpt, vtest, tmp_path):
    path = trained_ckpt if which == "trained" else dino_ckpt
    size = (SIZE, SIZE) if which == "trained" else (64, 96)  # DINO: non-square, pos_embed interpolated
    art = export_artifact(
        ExportConfig(
            checkpoint=str(path),
            target="cpu",
            int8=True,
            calib=[str(vtest)],
            img_size=size,
            out=str(tmp_path / "cpu"),
            **FAST,
        )
    )
    manifest = assert_manifest_files_match(art)
    assert manifest["model"]["image_size"] == list(size)
    rec = manifest["cpu_int8"]
    names = {c["name"]: c for c in rec["candidates"]}
    assert {"fp32_reference", "nncf_static_qdq", "ort_dynamic_int8"} <= set(names)
    assert isinstance(rec["isa"]["flags"], list) and rec["isa"]["machine"]
    passing = [c for c in rec["candidates"] if c["passed_gate"] and c["name"] != "fp32_reference"]
    timed = [c for c in passing if c["latency_ms"] is not None]
    assert timed, rec
    assert all(c.get("skipped") for c in passing if c["latency_ms"] is None)  # each untimed one says why
    chosen = names[rec["chosen"]]
    assert chosen["latency_ms"] == min(c["latency_ms"] for c in timed)
    for key in ("cls_cosine", "patch_cosine"):
        assert chosen["fidelity"][key] >= 0.99 and manifest["parity"]["runtime_vs_torch"][key] >= 0.99
    assert "tensorrt" not in manifest and not (art / "BUILD_ON_DEVICE.txt").exists()


def save_outlier_vit(path: Path, scale: float = 50.0) -> Path:
    """A ViT with the activation outliers trained ViTs develop: 4 LayerNorm channels per norm scaled up, so
    a few channels of every LayerNorm output dwarf the rest (what SmoothQuant and the ladder are for)."""
    torch.manual_seed(0)
    model = build_vit("vit_tiny", SIZE).eval()
    g = torch.Generator().manual_seed(10)
    with torch.no_grad():
        for blk in model.blocks:
            idx = torch.randperm(192, generator=g)[:4]
            blk.norm1.weight[idx] *= scale
            blk.norm2.weight[idx] *= scale
            blk.mlp.fc2.weight.mul_(3)
            blk.attn.proj.weight.mul_(3)
    sd = {f"backbone.{k}": v for k, v in model.state_dict().items()}
    torch.save({"teacher": sd, "edge_vsd": {"img_size": [SIZE, SIZE]}}, path)
    return path


@pytest.fixture(scope="module")
def outlier_setup(tmp_path_factory):
    """The outlier ViT calibrated on three different opencv-doc videos: plain INT8 misses 0.99."""
    from conftest import opencv_sample

    videos = [str(opencv_sample(n)) for n in ("vtest.avi", "Megamind.avi", "tree.avi")]
    return save_outlier_vit(tmp_path_factory.mktemp("outlier") / "outlier.pt"), videos


@pytest.mark.realdata
def test_ladder_rescues_an_outlier_vit(outlier_setup, tmp_path):
    ckpt, videos = outlier_setup
    art = export_artifact(
        ExportConfig(
            checkpoint=str(ckpt), target="jetson", int8=True, calib=videos, out=str(tmp_path / "j"), **FAST
        )
    )
    q = json.loads((art / "manifest.json").read_text())["quantization"]
    first, last = q["attempts"][0], q["attempts"][-1]
    assert first["ignored_scope"] == "none" and min(first["cls_cosine"], first["patch_cosine"]) < 0.99
    assert len(q["attempts"]) > 1 and last["ignored_scope"] == q["ignored_scope"]
    assert min(last["cls_cosine"], last["patch_cosine"]) >= 0.99 and q["float_nodes"]
    assert q["lint"] == []
    # the nodes kept in float carry no quantizer on their weights
    model = onnx.load(str(art / "encoder.onnx"))
    float_nodes = [n for n in model.graph.node if n.name in set(q["float_nodes"])]
    assert float_nodes and all(n.op_type in ("Conv", "MatMul") for n in float_nodes)
    produced_by = {o: n.op_type for n in model.graph.node for o in n.output}
    weighted = [n for n in float_nodes if n.op_type == "Conv" or n.input[1] not in produced_by]
    assert all(produced_by.get(n.input[1]) != "DequantizeLinear" for n in weighted)


@pytest.mark.realdata
def test_gate_failure_writes_nothing(outlier_setup, tmp_path):
    from edge_vsd.export.gate import GateFailed

    ckpt, videos = outlier_setup
    out = tmp_path / "sub" / "never"
    with pytest.raises(GateFailed) as info:
        export_artifact(
            ExportConfig(
                checkpoint=str(ckpt),
                target="jetson",
                int8=True,
                calib=videos,
                ladder=False,
                out=str(out),
                **FAST,
            )
        )
    msg = str(info.value)
    assert "misses the fidelity gate 0.99" in msg and "CLS cosine 0.9" in msg and "\n" not in msg
    assert list(tmp_path.iterdir()) == []  # not even the parent folder it created


def test_sensitive_nodes_follow_graph_structure(fp32_art):
    model = onnx.load(str(fp32_art / "encoder.onnx"))
    ops = {n.name: n.op_type for n in model.graph.node}
    levels = [sensitive_nodes(model, level) for level in LADDER]
    assert levels[0] == []
    assert [ops[n] for n in levels[1]] == ["Conv"]
    # first and last block: qkv, proj, fc1, fc2 and the two attention MatMuls each
    assert len(levels[2]) - len(levels[1]) == 2 * 6
    assert len(levels[3]) - len(levels[2]) == 2 * (12 - 2)
    assert all(set(a) <= set(b) for a, b in zip(levels, levels[1:]))


@pytest.mark.tensorrt
def test_tensorrt_engine_build(ckpt, tmp_path):
    """Where TensorRT and a GPU exist, the jetson export builds encoder.engine and verifies it through the
    runtime's TensorRT backend against PyTorch."""
    from edge_vsd.export.tensorrt_build import tensorrt_status

    trt, reason = tensorrt_status()
    if trt is None:
        pytest.skip(reason)
    art = export_artifact(
        ExportConfig(
            checkpoint=str(ckpt),
            target="jetson",
            int8=True,
            dynamic_batch=True,
            out=str(tmp_path / "trt"),
            **FAST,
        )
    )
    manifest = assert_manifest_files_match(art)
    assert manifest["tensorrt"]["engine_built"] and manifest["backend"] == "tensorrt"
    assert manifest["tensorrt"]["version"] == trt.__version__
    runtime = manifest["parity"]["runtime_vs_torch"]
    assert runtime["tensorrt"]["cls_cosine"] >= 0.99 and runtime["tensorrt"]["patch_cosine"] >= 0.99

"""Loading artifacts: hashes, manifest validation, backends, batching, against a numpy reference."""

from __future__ import annotations

import json
import shutil
import sys

import edge_vsd.runtimes as rt
import numpy as np
import pytest
from edge_vsd.runtimes.errors import RuntimeInputError
from edge_vsd.runtimes.manifest import file_entry, read_manifest, sha256_file, write_manifest
from toy_artifact import make_toy_artifact, toy_reference


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    root = tmp_path_factory.mktemp("artifacts")
    return {
        "static1": make_toy_artifact(root / "static1", batch=1),
        "dynamic": make_toy_artifact(root / "dynamic", batch=None, image_size=(48, 80), patch=16, dim=24),
        "static4": make_toy_artifact(root / "static4", batch=4, seed=3),
    }


def _frames(n, h=90, w=120, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("kind", ["static1", "dynamic", "static4"])
@pytest.mark.parametrize("n", [1, 5])
def test_onnxruntime_matches_numpy_graph(artifacts, kind, n):
    enc = rt.load(artifacts[kind])
    frames = _frames(n)
    out = enc(frames)
    cls, patches = toy_reference(artifacts[kind], enc.preprocess(frames))
    gh, gw = enc.grid
    assert out.cls.dtype == out.patches.dtype == np.float32
    assert out.cls.shape == (n, enc.embed_dim) and out.patches.shape == (n, gh, gw, enc.embed_dim)
    np.testing.assert_allclose(out.cls, cls, atol=1e-5)
    np.testing.assert_allclose(out.patches, patches, atol=1e-5)
    assert enc.backend_name == "onnxruntime-cpu"
    assert enc.manifest["schema_version"] == 1


def test_single_frame_list_and_batch_agree(artifacts):
    enc = rt.load(artifacts["dynamic"], threads=1)
    frames = _frames(3, seed=1)
    batch = enc(frames)
    listed = enc(list(frames))
    single = enc(frames[2])
    np.testing.assert_allclose(batch.patches, listed.patches, atol=1e-6)
    np.testing.assert_allclose(batch.cls[2:], single.cls, atol=1e-6)
    assert enc.image_size == (48, 80) and enc.grid == (3, 5)


def test_dynamic_batch_is_chunked_for_long_inputs(artifacts):
    enc = rt.load(artifacts["dynamic"])
    enc.max_batch = 4
    frames = _frames(10, seed=2)
    out = enc(frames)
    ref_cls, _ = toy_reference(artifacts["dynamic"], enc.preprocess(frames))
    assert out.cls.shape[0] == 10
    np.testing.assert_allclose(out.cls, ref_cls, atol=1e-5)


def test_damaged_artifact_gives_different_features(tmp_path):
    good = rt.load(make_toy_artifact(tmp_path / "good", seed=0))
    bad = rt.load(make_toy_artifact(tmp_path / "bad", seed=0, noise=0.5))
    frames = _frames(2)
    assert np.abs(good(frames).patches - bad(frames).patches).max() > 1e-2


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_tampered_file_is_rejected(artifacts, tmp_path):
    art = _copy(artifacts["static1"], tmp_path / "a")
    data = bytearray((art / "encoder.onnx").read_bytes())
    data[-5] ^= 0xFF  # same size, different bytes
    (art / "encoder.onnx").write_bytes(bytes(data))
    with pytest.raises(RuntimeInputError, match=r"encoder\.onnx: sha256 does not match") as err:
        rt.load(art)
    assert "\n" not in str(err.value)


def test_truncated_and_missing_files_are_rejected(artifacts, tmp_path):
    art = _copy(artifacts["static1"], tmp_path / "a")
    (art / "encoder.onnx").write_bytes((art / "encoder.onnx").read_bytes()[:100])
    with pytest.raises(RuntimeInputError, match="size"):
        rt.load(art)
    (art / "encoder.onnx").unlink()
    with pytest.raises(RuntimeInputError, match="missing"):
        rt.load(art)


def test_missing_manifest_and_missing_folder(artifacts, tmp_path):
    art = _copy(artifacts["static1"], tmp_path / "a")
    (art / "manifest.json").unlink()
    with pytest.raises(RuntimeInputError, match=r"manifest\.json: missing"):
        rt.load(art)
    with pytest.raises(RuntimeInputError, match="not found"):
        rt.load(tmp_path / "nowhere")
    ckpt = tmp_path / "checkpoint.pt"
    ckpt.write_bytes(b"not read")
    with pytest.raises(RuntimeInputError, match="a file, not an artifact folder; export a checkpoint"):
        rt.load(ckpt)


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda m: m.update(schema_version=2), "schema_version"),
        (lambda m: m["input"].update(resize="crop"), "input.resize"),
        (lambda m: m["model"].update(image_size=[64]), "image_size"),
        (lambda m: m["files"].update({"../evil.onnx": {"sha256": "0"}}), "plain file name"),
        (lambda m: m.pop("outputs"), "outputs"),
    ],
    ids=["schema", "resize", "image-size", "path-escape", "no-outputs"],
)
def test_invalid_manifests_are_rejected(artifacts, tmp_path, edit, message):
    art = _copy(artifacts["static1"], tmp_path / "a")
    manifest = json.loads((art / "manifest.json").read_text())
    edit(manifest)
    (art / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(RuntimeInputError, match=message):
        read_manifest(art)
    with pytest.raises(RuntimeInputError):
        write_manifest(art, manifest)  # the writer validates too


def test_corrupt_manifest_json(artifacts, tmp_path):
    art = _copy(artifacts["static1"], tmp_path / "a")
    (art / "manifest.json").write_text("{not json")
    with pytest.raises(RuntimeInputError, match="unreadable manifest"):
        rt.load(art)


def test_manifest_that_disagrees_with_the_graph_is_caught(artifacts, tmp_path):
    art = _copy(artifacts["dynamic"], tmp_path / "a")
    manifest = json.loads((art / "manifest.json").read_text())
    manifest["model"]["patch_size"] = 8  # graph has 16
    write_manifest(art, manifest)
    enc = rt.load(art)
    with pytest.raises(RuntimeInputError, match="encoder returned"):
        enc(_frames(1))
    manifest["outputs"]["cls"]["name"] = "nope"
    write_manifest(art, manifest)
    with pytest.raises(RuntimeInputError, match="does not match the manifest"):
        rt.load(art)


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_manifest_size_the_graph_cannot_take_is_one_line(artifacts, tmp_path, backend):
    """A manifest rewritten with its digest but a size the static graph refuses: the engine's own multi-line
    error becomes one line naming the artifact and the input."""
    art = _copy(artifacts["static1"], tmp_path / "a")
    manifest = json.loads((art / "manifest.json").read_text())
    manifest["model"]["image_size"] = [48, 48]  # the graph takes 64x64
    write_manifest(art, manifest)
    with pytest.raises(RuntimeInputError, match=r"failed on a .* input of shape") as err:
        rt.load(art, backend=backend)(_frames(1))
    assert str(art) in str(err.value) and "\n" not in str(err.value)


def test_valid_onnx_hash_but_garbage_model(tmp_path, artifacts):
    art = _copy(artifacts["static1"], tmp_path / "a")
    (art / "encoder.onnx").write_bytes(b"not an onnx model at all")
    manifest = json.loads((art / "manifest.json").read_text())
    manifest["files"]["encoder.onnx"] = file_entry(art / "encoder.onnx")
    write_manifest(art, manifest)
    with pytest.raises(RuntimeInputError, match="ONNX Runtime cannot load it") as err:
        rt.load(art)
    assert "\n" not in str(err.value)


def test_backend_selection_errors(artifacts):
    with pytest.raises(RuntimeInputError, match="unknown backend"):
        rt.load(artifacts["static1"], backend="tpu")
    with pytest.raises(RuntimeInputError, match="needs encoder.engine"):
        rt.load(artifacts["static1"], backend="tensorrt")
    with pytest.raises(RuntimeInputError, match="no CUDAExecutionProvider"):
        import onnxruntime

        if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            pytest.skip("this ONNX Runtime has CUDA")
        rt.load(artifacts["static1"], backend="onnxruntime-cuda")


def test_engine_in_manifest_without_tensorrt_falls_back_to_onnxruntime(artifacts, tmp_path):
    try:
        import tensorrt  # noqa: F401

        pytest.skip("TensorRT is installed here, auto selection would pick it")
    except ImportError:
        pass
    art = _copy(artifacts["static1"], tmp_path / "a")
    (art / "encoder.engine").write_bytes(b"plan bytes")
    manifest = json.loads((art / "manifest.json").read_text())
    manifest["files"]["encoder.engine"] = file_entry(art / "encoder.engine")
    write_manifest(art, manifest)
    assert rt.load(art).backend_name == "onnxruntime-cpu"


def test_openvino_backend_matches_reference(artifacts):
    pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install edge-vsd[openvino])")
    for kind in ("static1", "dynamic"):
        enc = rt.load(artifacts[kind], backend="openvino", threads=1)
        frames = _frames(3, seed=4)
        out = enc(frames)
        cls, patches = toy_reference(artifacts[kind], enc.preprocess(frames))
        assert enc.backend_name == "openvino-cpu"
        np.testing.assert_allclose(out.cls, cls, atol=1e-4)
        np.testing.assert_allclose(out.patches, patches, atol=1e-4)
        # by default the graph normalises: it takes the resized uint8 frames, NHWC
        prepared = enc.prepare(frames)
        assert enc.takes_uint8 and prepared.dtype == np.uint8 and prepared.shape == (3, *enc.image_size, 3)
        plain = rt.load(artifacts[kind], backend="openvino", threads=1, fold_preprocessing=False)
        assert not plain.takes_uint8 and plain.prepare(frames).dtype == np.float32
        np.testing.assert_allclose(plain(frames).cls, out.cls, atol=1e-5)


def test_openvino_bf16_outputs_are_decoded_to_float32(artifacts):
    # bf16 float parts come out as bf16 (so OpenVINO need not keep the residual stream in f32); the backend
    # must widen them by their bits, not take OpenVINO's float16-typed view of them as values
    ov = pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install edge-vsd[openvino])")
    if "BF16" not in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        pytest.skip("this CPU has no bf16: OpenVINO runs the bf16 hint in f32, outputs stay f32")
    frames = _frames(3, seed=5)
    exact = rt.load(artifacts["dynamic"], backend="openvino", threads=1)(frames)
    enc = rt.load(artifacts["dynamic"], backend="openvino", threads=1, precision_hint="bf16")
    assert enc.backend.bf16_out
    out = enc(frames)
    assert out.cls.dtype == out.patches.dtype == np.float32
    for a, b in ((out.cls, exact.cls), (out.patches, exact.patches)):
        a, b = a.reshape(len(frames), -1), b.reshape(len(frames), -1)
        cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        assert cos.min() > 0.999, cos
        np.testing.assert_allclose(a, b, rtol=0.05, atol=0.05 * np.abs(b).max())
    pipe = enc.backend.pipeline()
    if pipe is not None:  # the throughput-compiled twin decodes the same way
        pipe.submit(enc.prepare(frames[:1]))
        cls, _, _ = pipe.result()
        assert cls.dtype == np.float32
        np.testing.assert_allclose(cls, out.cls[:1], atol=1e-2 * np.abs(out.cls).max())
        pipe.close()


def test_openvino_missing_is_one_line_error(artifacts, monkeypatch):
    # as on a machine without the package, also where it is installed: a None entry makes the import fail
    monkeypatch.setitem(sys.modules, "openvino", None)
    monkeypatch.delitem(sys.modules, "edge_vsd.runtimes.openvino", raising=False)
    with pytest.raises(RuntimeInputError, match="not installed"):
        rt.load(artifacts["static1"], backend="openvino")


@pytest.mark.tensorrt
def test_tensorrt_engine_matches_numpy_reference(artifacts, tmp_path):
    trt = pytest.importorskip("tensorrt", reason="needs TensorRT and an NVIDIA GPU")
    pytest.importorskip("cuda", reason="needs cuda-python")
    art = _copy(artifacts["dynamic"], tmp_path / "a")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    assert parser.parse((art / "encoder.onnx").read_bytes())
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    profile.set_shape("image", (1, 3, 48, 80), (4, 3, 48, 80), (8, 3, 48, 80))
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    (art / "encoder.engine").write_bytes(bytes(plan))
    manifest = json.loads((art / "manifest.json").read_text())
    manifest["files"]["encoder.engine"] = {"sha256": sha256_file(art / "encoder.engine")}
    manifest["tensorrt"] = {"trtexec": "trtexec ...", "engine_built": True, "version": trt.__version__}
    write_manifest(art, manifest)
    enc = rt.load(art)
    assert enc.backend_name == "tensorrt"
    frames = _frames(5, seed=6)
    out = enc(frames)
    cls, patches = toy_reference(art, enc.preprocess(frames))
    np.testing.assert_allclose(out.cls, cls, atol=1e-2)
    np.testing.assert_allclose(out.patches, patches, atol=1e-2)
    manifest["tensorrt"]["version"] = "0.0.1"
    (art / "encoder.engine").write_bytes(b"\0" * 64)
    manifest["files"]["encoder.engine"] = {"sha256": sha256_file(art / "encoder.engine")}
    write_manifest(art, manifest)
    with pytest.raises(RuntimeInputError, match="cannot load an engine built with TensorRT 0.0.1"):
        rt.load(art)


def test_engine_specific_options_are_checked(artifacts):
    enc = rt.load(artifacts["dynamic"], threads=1, spinning=False)
    frames = _frames(2, seed=7)
    cls, _ = toy_reference(artifacts["dynamic"], enc.preprocess(frames))
    np.testing.assert_allclose(enc(frames).cls, cls, atol=1e-5)
    with pytest.raises(RuntimeInputError, match="has no option warp"):
        rt.load(artifacts["dynamic"], warp=9)

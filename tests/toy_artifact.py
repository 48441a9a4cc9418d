"""A real, tiny ONNX artifact for tests: patchify Conv -> tanh -> linear mix = "patches", their mean = "cls".

Built with onnx.helper and written per docs/ARTIFACT.md (manifest with sha256 of every file), under a
temporary name and renamed when complete.
`toy_reference` recomputes the same graph in numpy from the saved weights.
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnx
from edge_vsd.runtimes.manifest import file_entry, write_manifest
from onnx import TensorProto, helper, numpy_helper

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]
OPSET = 17


def _weights(patch: int, dim: int, seed: int, noise: float) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    fan_in = 3 * patch * patch
    w = {
        "conv_w": rng.normal(0, 1 / np.sqrt(fan_in), (dim, 3, patch, patch)),
        "conv_b": rng.normal(0, 0.1, dim),
        "mix_w": rng.normal(0, 1 / np.sqrt(dim), (dim, dim)),
        "mix_b": rng.normal(0, 0.1, dim),
    }
    if noise > 0:
        damage = np.random.default_rng(seed + 10_000)
        w = {k: v + noise * v.std() * damage.standard_normal(v.shape) for k, v in w.items()}
    return {k: v.astype(np.float32) for k, v in w.items()}


def toy_model(
    image_size: tuple[int, int] = (64, 64),
    patch: int = 16,
    dim: int = 32,
    seed: int = 0,
    noise: float = 0.0,
    batch: int | None = 1,
) -> onnx.ModelProto:
    """The toy encoder graph: image (B, 3, H, W) -> cls (B, D), patches (B, H/p, W/p, D)."""
    h, w = image_size
    gh, gw = h // patch, w // patch
    b: int | str = "batch" if batch is None else batch
    weights = _weights(patch, dim, seed, noise)
    nodes = [
        helper.make_node(
            "Conv",
            ["image", "conv_w", "conv_b"],
            ["grid"],
            kernel_shape=[patch, patch],
            strides=[patch, patch],
        ),
        helper.make_node("Transpose", ["grid"], ["grid_nhwc"], perm=[0, 2, 3, 1]),
        helper.make_node("Tanh", ["grid_nhwc"], ["act"]),
        helper.make_node("MatMul", ["act", "mix_w"], ["mixed"]),
        helper.make_node("Add", ["mixed", "mix_b"], ["patches"]),
        helper.make_node("ReduceMean", ["patches"], ["cls"], axes=[1, 2], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "toy_encoder",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [b, 3, h, w])],
        [
            helper.make_tensor_value_info("cls", TensorProto.FLOAT, [b, dim]),
            helper.make_tensor_value_info("patches", TensorProto.FLOAT, [b, gh, gw, dim]),
        ],
        [numpy_helper.from_array(v, k) for k, v in weights.items()],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="edge-vsd-tests"
    )
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def toy_manifest(image_size: tuple[int, int], patch: int, dim: int, batch: int | None, files: dict) -> dict:
    """A schema-1 manifest for the toy encoder."""
    h, w = image_size
    return {
        "schema_version": 1,
        "model": {
            "arch": "toy_patchify",
            "patch_size": patch,
            "embed_dim": dim,
            "depth": 0,
            "num_heads": 0,
            "image_size": [h, w],
        },
        "input": {
            "name": "image",
            "layout": "NCHW",
            "dtype": "float32",
            "color": "RGB",
            "scale": 1 / 255,
            "mean": MEAN,
            "std": STD,
            "resize": "stretch",
            "interpolation": "area",
            "batch": batch,
        },
        "outputs": {
            "cls": {"name": "cls", "shape": ["batch", dim]},
            "patches": {"name": "patches", "shape": ["batch", h // patch, w // patch, dim]},
        },
        "precision": "fp32",
        "target": "cpu",
        "backend": "onnxruntime",
        "files": files,
        "calibration": None,
        "parity": {},
        "versions": {"onnx": onnx.__version__},
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def make_toy_artifact(
    out_dir: str | Path,
    image_size: tuple[int, int] = (64, 64),
    patch: int = 16,
    dim: int = 32,
    seed: int = 0,
    noise: float = 0.0,
    batch: int | None = 1,
) -> Path:
    """Write a toy artifact folder (encoder.onnx + manifest.json) atomically; replaces `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        onnx.save(toy_model(image_size, patch, dim, seed, noise, batch), tmp / "encoder.onnx")
        write_manifest(
            tmp,
            toy_manifest(image_size, patch, dim, batch, {"encoder.onnx": file_entry(tmp / "encoder.onnx")}),
        )
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def toy_reference(artifact_dir: str | Path, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The toy graph in numpy (float64): normalised NCHW input -> (cls, patches)."""
    model = onnx.load(Path(artifact_dir) / "encoder.onnx")
    w = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in model.graph.initializer}
    dim, _, p, _ = w["conv_w"].shape
    n, c, h, wd = x.shape
    tiles = x.astype(np.float64).reshape(n, c, h // p, p, wd // p, p).transpose(0, 2, 4, 1, 3, 5)
    grid = tiles.reshape(n, h // p, wd // p, c * p * p) @ w["conv_w"].reshape(dim, -1).T + w["conv_b"]
    patches = np.tanh(grid) @ w["mix_w"] + w["mix_b"]
    return patches.mean(axis=(1, 2)), patches

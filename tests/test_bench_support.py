"""Helpers shared by the benchmark tests: real ONNX artifacts, generated frames and datasets."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx
from edge_vsd.runtimes.manifest import file_entry, read_manifest, write_manifest
from onnx import helper, numpy_helper
from toy_artifact import make_toy_artifact

SIZE = (128, 128)
PATCH = 8
DIM = 64


def smooth_frames(n: int, h: int = 128, w: int = 128, cell: int = 32, seed: int = 0) -> np.ndarray:
    """Smooth random colour fields (BGR uint8): every region distinct, structure larger than a patch."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        small = rng.random((h // cell, w // cell, 3)).astype(np.float32)
        out.append(np.clip(cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC) * 255, 0, 255))
    return np.stack(out).astype(np.uint8)


def toy(path: Path, noise: float = 0.0, seed: int = 0) -> Path:
    """The runtimes' toy artifact (patchify conv -> tanh -> linear) at 128x128, patch 8, dynamic batch."""
    return make_toy_artifact(path, image_size=SIZE, patch=PATCH, dim=DIM, seed=seed, noise=noise, batch=None)


def truncated_video(path: Path, frames: int = 40, keep: float = 0.1) -> Path:
    """A synthetic MJPG AVI cut short: the header still claims `frames`, only the first few decode."""
    from edge_vsd.data.synthetic import write_video

    full = write_video(path.with_name(f"full-{path.name}"), n_frames=frames, seed=0)
    data = full.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def add_output_noise(artifact: Path, sigma: float, seed: int = 0) -> Path:
    """Damage an artifact the way a broken quantization would: Gaussian noise on every patch token (a
    RandomNormalLike node in the graph), CLS recomputed from the noisy tokens; manifest hashes updated."""
    path = artifact / "encoder.onnx"
    model = onnx.load(path)
    graph = model.graph
    nodes = list(graph.node)
    for node in nodes:
        for i, name in enumerate(node.output):
            if name == "patches":
                node.output[i] = "clean_patches"
    reduce = [n for n in nodes if n.op_type == "ReduceMean"]
    for n in reduce:
        n.input[0] = "patches"
    graph.initializer.append(numpy_helper.from_array(np.array(sigma, np.float32), "noise_sigma"))
    noise = [
        helper.make_node("RandomNormalLike", ["clean_patches"], ["unit_noise"], seed=float(seed)),
        helper.make_node("Mul", ["unit_noise", "noise_sigma"], ["scaled_noise"]),
        helper.make_node("Add", ["clean_patches", "scaled_noise"], ["patches"]),
    ]
    del graph.node[:]
    graph.node.extend([n for n in nodes if n.op_type != "ReduceMean"] + noise + reduce)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, path)
    manifest = read_manifest(artifact)
    manifest["files"]["encoder.onnx"] = file_entry(path)
    write_manifest(artifact, manifest)
    return artifact


COLOURS = {2: (40, 40, 220), 3: (40, 200, 40), 4: (220, 60, 40)}  # class -> BGR (red, green, blue shapes)


def make_seg_dataset(root: Path, n: int = 16, size: int = 128, seed: int = 0) -> Path:
    """ADE20K layout: images/*.jpg with coloured shapes on a grey textured background, annotations/*.png
    with class = shape colour (1 = background, 0 = ignore along shape borders)."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    for k in range(n):
        img = (110 + rng.normal(0, 12, (size, size, 1)) * np.ones((1, 1, 3))).clip(0, 255).astype(np.uint8)
        ann = np.ones((size, size), np.uint8)
        for _ in range(3):
            cls = int(rng.integers(2, 5))
            x, y = (int(v) for v in rng.integers(0, size - 40, 2))
            w, h = (int(v) for v in rng.integers(28, 56, 2))
            if rng.random() < 0.5:
                cv2.rectangle(img, (x, y), (x + w, y + h), COLOURS[cls], -1)
                cv2.rectangle(ann, (x, y), (x + w, y + h), cls, -1)
            else:
                cv2.circle(img, (x + w // 2, y + w // 2), w // 2, COLOURS[cls], -1)
                cv2.circle(ann, (x + w // 2, y + w // 2), w // 2, cls, -1)
        edges = cv2.Canny(ann * 40, 1, 1) > 0
        ann[cv2.dilate(edges.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0] = 0
        cv2.imwrite(str(root / "images" / f"img_{k:03d}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
        cv2.imwrite(str(root / "annotations" / f"img_{k:03d}.png"), ann)
    return root


def test_output_noise_damages_a_valid_artifact(tmp_path):
    from edge_vsd import runtimes

    clean = runtimes.load(toy(tmp_path / "clean"))
    noisy = runtimes.load(add_output_noise(toy(tmp_path / "noisy"), 0.5))
    frames = smooth_frames(2)
    a, b = clean(frames), noisy(frames)
    assert b.patches.shape == a.patches.shape == (2, 16, 16, DIM)
    assert np.allclose(b.cls, b.patches.mean(axis=(1, 2)), atol=1e-5)
    assert 0.3 < np.abs(b.patches - a.patches).std() < 0.7

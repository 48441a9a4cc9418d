"""The artifact's manifest.json content (schema: docs/ARTIFACT.md), written by the pipeline."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import importlib.metadata as md
import sys
from pathlib import Path

import numpy as np
from edge_vsd.export.calibration import FrameSet, tensor_sha256
from edge_vsd.export.onnx_export import INPUT_NAME, OUTPUT_NAMES
from edge_vsd.runtimes.manifest import file_entry, sha256_file

from edge_vsd.data import preprocess as pp


def source_sha256(path: Path) -> str:
    """sha256 of the checkpoint file, or of a Hugging Face folder's weights (model.safetensors)."""
    return sha256_file(path / "model.safetensors" if path.is_dir() else path)


def build_manifest(
    cfg,
    backbone,
    size: tuple[int, int],
    folder: Path,
    *,
    backend: str,
    frames: FrameSet,
    calib_x: np.ndarray,
    fp32_parity: dict,
    record: dict,
    trt_info: dict | None,
    simplify_stats: dict,
    seconds: dict[str, float],
) -> dict:
    """The manifest (docs/ARTIFACT.md) for the files already in `folder`, plus how they were made."""
    h, w = size
    grid = (h // backbone.cfg.patch_size, w // backbone.cfg.patch_size)
    dim = backbone.cfg.embed_dim
    batch_dim = "batch" if cfg.dynamic_batch else cfg.batch
    files = {
        p.name: file_entry(p) for p in sorted(folder.iterdir()) if p.is_file() and p.name != "manifest.json"
    }
    sources = source_records(frames.sources)
    manifest = {
        "schema_version": 1,
        "model": {
            "arch": backbone.arch,
            "patch_size": backbone.cfg.patch_size,
            "embed_dim": dim,
            "depth": backbone.cfg.depth,
            "num_heads": backbone.cfg.num_heads,
            "image_size": [h, w],
            "trained_image_size": list(getattr(backbone, "trained_size", backbone.cfg.img_size)),
            # DINOv2 register tokens (DINOv3 storage tokens) run inside the encoder, not among the outputs
            "registers": int(getattr(backbone.cfg, "registers", 0)),
        },
        "input": {
            "name": INPUT_NAME,
            "layout": "NCHW",
            "dtype": "float32",
            "color": "RGB",
            "scale": 1.0 / 255.0,
            "mean": list(pp.MEAN),
            "std": list(pp.STD),
            "resize": pp.RESIZE,
            "interpolation": pp.INTERPOLATION,
            "batch": None if cfg.dynamic_batch else cfg.batch,
        },
        "outputs": {
            "cls": {"name": OUTPUT_NAMES[0], "shape": [batch_dim, dim]},
            "patches": {"name": OUTPUT_NAMES[1], "shape": [batch_dim, grid[0], grid[1], dim]},
        },
        "precision": cfg.precision,
        "target": cfg.target,
        "backend": "tensorrt" if trt_info and trt_info["engine_built"] else backend,
        "files": files,
        "calibration": None
        if not cfg.int8
        else {
            "frames": int(len(calib_x)),
            "sources": sources,
            "sha256": tensor_sha256(calib_x),
            "sampling": "equal share per source, evenly spaced within each",
            "source_frames": frames.total_frames,
            "heldout_frames": int(len(frames.heldout)),
        },
        "parity": {
            "fp32_vs_torch": fp32_parity,
            **({"vs_fp32": record["vs_fp32"]} if "vs_fp32" in record else {}),
            "gate": cfg.gate,
            "frames_source": sources,
        },
        "versions": versions(),
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "export": {
            "config": config_record(cfg),
            "checkpoint_sha256": source_sha256(Path(cfg.checkpoint)),
            "simplify": simplify_stats,
            "seconds": {k: round(v, 2) for k, v in seconds.items()},
        },
    }
    if cfg.int8 and cfg.target == "jetson":
        manifest["quantization"] = {
            k: record[k] for k in ("scheme", "ignored_scope", "float_nodes", "attempts", "lint")
        }
    if "cpu_int8" in record:
        manifest["cpu_int8"] = record["cpu_int8"]
    if trt_info is not None:
        manifest["tensorrt"] = trt_info
    return manifest


def config_record(cfg) -> dict:
    """The resolved ExportConfig as JSON, paths reduced to file names: an artifact travels to other machines
    and must not carry the export machine's folders (the files themselves are identified by sha256)."""
    rec = dataclasses.asdict(cfg)
    rec["img_size"] = list(rec["img_size"]) if rec["img_size"] else None
    rec["checkpoint"] = Path(cfg.checkpoint).name
    rec["calib"] = [Path(c).name for c in cfg.calib]
    rec["out"] = cfg.resolved_out().name
    rec["precision"] = cfg.precision
    return rec


def source_records(sources: list[str]) -> list[dict]:
    """Calibration sources as {name, kind, sha256}: a file's digest, or for an image folder the digest of
    its images' names and digests. Never the path, which would leak the export machine's folders."""
    out: list[dict] = []
    for src in sources:
        path = Path(src)
        if src == "synthetic" and not path.exists():
            out.append({"name": "synthetic", "kind": "synthetic"})
        elif path.is_dir():
            digest = hashlib.sha256()
            images = sorted(p for p in path.iterdir() if p.is_file())
            for img in images:
                digest.update(f"{img.name}\0{sha256_file(img)}\n".encode())
            entry = {"name": path.name, "kind": "folder", "files": len(images), "sha256": digest.hexdigest()}
            out.append(entry)
        else:
            out.append({"name": path.name, "kind": "file", **file_entry(path)})
    return out


def versions() -> dict:
    """Versions of the tools that made the artifact (those installed)."""

    out = {"python": sys.version.split()[0]}
    for dist in (
        "edge-vsd",
        "torch",
        "onnx",
        "onnxruntime",
        "onnxsim",
        "nncf",
        "numpy",
        "opencv-python-headless",
        "openvino",
        "tensorrt",
    ):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            continue
    return out

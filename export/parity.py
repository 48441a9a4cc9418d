"""Feature agreement between two encoders: cosine of CLS, cosine of patch tokens, max abs error."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _rowwise_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.reshape(-1, a.shape[-1]).astype(np.float64)
    b = b.reshape(-1, b.shape[-1]).astype(np.float64)
    num = (a * b).sum(-1)
    den = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    return num / np.maximum(den, 1e-12)


def compare(ref: tuple[np.ndarray, np.ndarray], out: tuple[np.ndarray, np.ndarray]) -> dict[str, float]:
    """Mean and worst cosine of CLS rows and of patch tokens, max abs error over both outputs."""
    cls_cos = _rowwise_cosine(ref[0], out[0])
    patch_cos = _rowwise_cosine(ref[1], out[1])
    err = max(float(np.abs(ref[0] - out[0]).max()), float(np.abs(ref[1] - out[1]).max()))
    return {
        "cls_cosine": round(float(cls_cos.mean()), 6),
        "cls_cosine_min": round(float(cls_cos.min()), 6),
        "patch_cosine": round(float(patch_cos.mean()), 6),
        "patch_cosine_min": round(float(patch_cos.min()), 6),
        "max_abs_error": float(f"{err:.6g}"),
        "frames": int(ref[0].shape[0]),
    }


def ort_session(model: str | Path | bytes, threads: int | None = None):
    """A CPU ONNX Runtime session for a path or serialized model."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    src = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])


def run_session(session, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run (N, 3, H, W) through a session in chunks of its batch size (padding a static last chunk)."""
    inp = session.get_inputs()[0]
    static = inp.shape[0] if isinstance(inp.shape[0], int) else None
    step = static or 8
    cls_parts, patch_parts = [], []
    for start in range(0, len(x), step):
        chunk = x[start : start + step]
        real = len(chunk)
        if static and real < static:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], static - real, axis=0)])
        cls, patches = session.run(["cls", "patches"], {inp.name: np.ascontiguousarray(chunk, np.float32)})
        cls_parts.append(cls[:real])
        patch_parts.append(patches[:real])
    return np.concatenate(cls_parts).astype(np.float32), np.concatenate(patch_parts).astype(np.float32)


def torch_reference(backbone, x: np.ndarray, step: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch features for (N, 3, H, W) float32 input."""
    import torch

    cls_parts, patch_parts = [], []
    with torch.no_grad():
        for start in range(0, len(x), step):
            feats = backbone(torch.from_numpy(np.ascontiguousarray(x[start : start + step])))
            cls_parts.append(feats.cls.numpy())
            patch_parts.append(feats.patches.numpy())
    return np.concatenate(cls_parts), np.concatenate(patch_parts)

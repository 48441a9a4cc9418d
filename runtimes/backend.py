"""The backend protocol every engine implements, and how `load` picks one."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from edge_vsd.runtimes.errors import RuntimeInputError

ENGINE_FILE = "encoder.engine"
ONNX_FILE = "encoder.onnx"

# name -> (module, class, keyword arguments)
BACKENDS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "onnxruntime": ("edge_vsd.runtimes.onnxruntime", "OnnxRuntimeBackend", {"device": "auto"}),
    "onnxruntime-cpu": ("edge_vsd.runtimes.onnxruntime", "OnnxRuntimeBackend", {"device": "cpu"}),
    "onnxruntime-cuda": ("edge_vsd.runtimes.onnxruntime", "OnnxRuntimeBackend", {"device": "cuda"}),
    "onnxruntime-tensorrt": ("edge_vsd.runtimes.onnxruntime", "OnnxRuntimeBackend", {"device": "tensorrt"}),
    "tensorrt": ("edge_vsd.runtimes.tensorrt", "TensorRTBackend", {}),
    "openvino": ("edge_vsd.runtimes.openvino", "OpenVINOBackend", {}),
}
BACKEND_CHOICES = ("auto", *BACKENDS)


class Backend(Protocol):
    """One inference engine bound to one artifact."""

    name: str

    def run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Normalised (B, 3, H, W) input -> (cls (B, D), patches (B, h, w, D)) numpy arrays."""
        ...

    def close(self) -> None:
        """Release engine resources (device memory, sessions)."""
        ...


def _tensorrt_importable() -> bool:
    try:
        import tensorrt  # noqa: F401
    except Exception:  # a broken CUDA install raises more than ImportError
        return False
    return True


def auto_backend(manifest: dict[str, Any]) -> str:
    """TensorRT when the artifact has an engine and TensorRT imports, ONNX Runtime otherwise."""
    if ENGINE_FILE in manifest["files"] and _tensorrt_importable():
        return "tensorrt"
    return "onnxruntime"


def create_backend(
    artifact_dir: str | Path,
    manifest: dict[str, Any],
    backend: str | None = None,
    threads: int | None = None,
    **options: Any,
) -> Backend:
    """Instantiate the requested (or automatically chosen) backend for a verified artifact; `options` are
    engine-specific keywords (e.g. `spinning=False` for ONNX Runtime)."""
    name = auto_backend(manifest) if backend in (None, "auto") else backend
    if name not in BACKENDS:
        raise RuntimeInputError(f"unknown backend {name!r} (choose from {', '.join(BACKEND_CHOICES)})")
    needed = ENGINE_FILE if name == "tensorrt" else ONNX_FILE
    if needed not in manifest["files"]:
        raise RuntimeInputError(
            f"{Path(artifact_dir)}: backend {name!r} needs {needed}, not in this artifact"
        )
    module_name, class_name, kwargs = BACKENDS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise RuntimeInputError(f"backend {name!r} is not installed ({exc})") from None
    cls = getattr(module, class_name)
    accepted = inspect.signature(cls).parameters
    unknown = sorted(set(options) - set(accepted) | set(options) & {"device"})
    if unknown:
        raise RuntimeInputError(f"backend {name!r} has no option {', '.join(unknown)}")
    return cls(Path(artifact_dir), manifest, threads=threads, **kwargs, **options)

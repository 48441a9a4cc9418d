"""ONNX Runtime backend: CPU, plus the CUDA and TensorRT execution providers where the install has them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from edge_vsd.runtimes.backend import ONNX_FILE
from edge_vsd.runtimes.errors import RuntimeInputError

_CPU, _CUDA, _TRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"
_SHORT = {_CPU: "cpu", _CUDA: "cuda", _TRT: "tensorrt"}


def providers_for(device: str, available: list[str]) -> list[str]:
    """Execution providers for "auto" (CUDA when present, else CPU), "cpu", "cuda" or "tensorrt"."""
    wanted = {"auto": [_CUDA, _CPU], "cpu": [_CPU], "cuda": [_CUDA, _CPU], "tensorrt": [_TRT, _CUDA, _CPU]}
    if device not in wanted:
        raise RuntimeInputError(f"unknown ONNX Runtime device {device!r}")
    if device != "auto" and wanted[device][0] not in available:
        raise RuntimeInputError(
            f"ONNX Runtime here has no {wanted[device][0]} (available: {', '.join(available)})"
        )
    return [p for p in wanted[device] if p in available]


class OnnxRuntimeBackend:
    """Runs `encoder.onnx` (or another of the artifact's ONNX candidates) in an InferenceSession."""

    def __init__(
        self,
        artifact_dir: Path,
        manifest: dict[str, Any],
        threads: int | None = None,
        device: str = "auto",
        spinning: bool | None = None,
        onnx_file: str = ONNX_FILE,
    ) -> None:
        path = Path(artifact_dir) / onnx_file
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        if spinning is not None:
            options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        providers = providers_for(device, ort.get_available_providers())
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # ORT raises its own exception types for invalid/unsupported models
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise RuntimeInputError(f"{path}: ONNX Runtime cannot load it ({first})") from None
        self.input_name = manifest["input"]["name"]
        self.output_names = [manifest["outputs"]["cls"]["name"], manifest["outputs"]["patches"]["name"]]
        inputs = [i.name for i in self.session.get_inputs()]
        outputs = [o.name for o in self.session.get_outputs()]
        if self.input_name not in inputs or not set(self.output_names) <= set(outputs):
            raise RuntimeInputError(
                f"{path}: graph I/O {inputs} -> {outputs} does not match the manifest "
                f"({self.input_name} -> {self.output_names})"
            )
        self.providers = self.session.get_providers()
        self.name = f"onnxruntime-{_SHORT.get(self.providers[0], self.providers[0])}"

    def run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, 3, H, W) -> (cls, patches)."""
        cls, patches = self.session.run(self.output_names, {self.input_name: x})
        return cls, patches

    def close(self) -> None:
        """Drop the session."""
        self.session = None

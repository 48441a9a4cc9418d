"""OpenVINO backend: compiles the artifact's ONNX file for the CPU with openvino.Core."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
from edge_vsd.runtimes.backend import ONNX_FILE
from edge_vsd.runtimes.errors import RuntimeInputError


class OpenVINOBackend:
    """Runs `encoder.onnx` (or another of the artifact's ONNX candidates) through OpenVINO's CPU plugin."""

    name = "openvino-cpu"

    def __init__(
        self,
        artifact_dir: Path,
        manifest: dict[str, Any],
        threads: int | None = None,
        device: str = "CPU",
        onnx_file: str = ONNX_FILE,
        precision_hint: str | None = None,
    ) -> None:
        path = Path(artifact_dir) / onnx_file
        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
        if precision_hint:  # a candidate gated with this hint at export (e.g. bf16 float parts on AMX CPUs)
            config["INFERENCE_PRECISION_HINT"] = precision_hint
        elif manifest.get("precision") != "fp16":  # else OpenVINO may pick bf16 on CPUs that have it
            config["INFERENCE_PRECISION_HINT"] = "f32"
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        core = ov.Core()
        try:
            self.compiled = core.compile_model(core.read_model(str(path)), device, config)
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses with multi-line messages
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise RuntimeInputError(f"{path}: OpenVINO cannot compile it ({first})") from None
        self.input_name = manifest["input"]["name"]
        names = {n for port in self.compiled.outputs for n in port.get_names()}
        wanted = [manifest["outputs"]["cls"]["name"], manifest["outputs"]["patches"]["name"]]
        if not set(wanted) <= names:
            raise RuntimeInputError(f"{path}: outputs {sorted(names)} do not include {wanted}")
        self.cls_port, self.patches_port = (self.compiled.output(n) for n in wanted)
        self.request = self.compiled.create_infer_request()
        self.name = f"openvino-{device.lower()}"

    def run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, 3, H, W) -> (cls, patches); copies, because the request reuses its output buffers."""
        result = self.request.infer({self.input_name: x})
        return np.array(result[self.cls_port]), np.array(result[self.patches_port])

    def close(self) -> None:
        """Drop the compiled model."""
        self.request = None
        self.compiled = None

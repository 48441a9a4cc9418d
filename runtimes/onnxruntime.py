"""ONNX Runtime backend: CPU, plus the CUDA and TensorRT execution providers where the install has them."""

from __future__ import annotations

import contextlib
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from edge_vsd.runtimes.backend import ONNX_FILE
from edge_vsd.runtimes.cpuinfo import usable_cores
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
        self._path, self._threads, self._spinning = path, threads, spinning
        providers = providers_for(device, ort.get_available_providers())
        # A jetson graph is TensorRT's to run; on a CPU, ONNX Runtime only simulates it. Its fused integer
        # kernels accumulate u8 x s8 products in saturating 16-bit pairs on CPUs without VNNI (AVX2), which
        # the board's int32 accumulation does not do: keep the Q/DQ pairs as float fake-quant there instead.
        self._fake_quant = manifest.get("target") == "jetson" and providers[:1] == ["CPUExecutionProvider"]
        self.session = self._open(threads, providers)
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

        self._side_sessions: list[Any] = []  # the pipeline's, made on its first use

    def _open(self, threads: int | None, providers: list[str]) -> Any:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        if self._spinning is not None:
            spin = "1" if self._spinning else "0"
            options.add_session_config_entry("session.intra_op.allow_spinning", spin)
        if self._fake_quant:
            options.add_session_config_entry("session.disable_quant_qdq", "1")
        try:
            return ort.InferenceSession(str(self._path), options, providers=providers)
        except Exception as exc:  # ORT raises its own exception types for invalid/unsupported models
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise RuntimeInputError(f"{self._path}: ONNX Runtime cannot load it ({first})") from None

    def run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, 3, H, W) -> (cls, patches)."""
        cls, patches = self.session.run(self.output_names, {self.input_name: x})
        return cls, patches

    def pipeline(self) -> OnnxRuntimePipeline | None:
        """On the CPU, two sessions with half the threads each, run side by side (for files): on 2 cores two
        single-thread sessions ran ViT-S/16 1.77x (dynamic INT8) and 1.25x (fp32) as fast as one session
        with both threads. None on one core or another provider."""
        threads = self._threads or usable_cores()
        if self.providers[0] != _CPU or threads < 2:
            return None
        if not self._side_sessions:
            self._side_sessions = [self._open(threads // 2, [_CPU]) for _ in range(2)]
        return OnnxRuntimePipeline(self._side_sessions, self.input_name, self.output_names)

    def close(self) -> None:
        """Drop the sessions."""
        self.session = None
        self._side_sessions = []


class OnnxRuntimePipeline:
    """One request in flight per session, each on its own thread (ONNX Runtime releases the GIL while it
    runs): `submit` starts one (take the oldest `result` first when all are busy), `result` returns the
    oldest's (cls, patches, milliseconds), in submission order."""

    def __init__(self, sessions: list[Any], input_name: str, output_names: list[str]) -> None:
        self.depth, self.sessions = len(sessions), sessions
        self.input_name, self.output_names = input_name, output_names
        self._pool = ThreadPoolExecutor(self.depth, thread_name_prefix="edge-vsd-ort")
        self._busy: deque = deque()
        self._next = 0

    def _run(self, session: Any, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        start = time.perf_counter()
        cls, patches = session.run(self.output_names, {self.input_name: x})
        return cls, patches, (time.perf_counter() - start) * 1e3

    def submit(self, x: np.ndarray) -> None:
        """Start an inference on `x`; requests take the sessions in turn, so within one pipeline none runs
        two at once."""
        if len(self._busy) == self.depth:
            raise RuntimeError(f"all {self.depth} sessions are busy: take a result first")
        self._busy.append(self._pool.submit(self._run, self.sessions[self._next], x))
        self._next = (self._next + 1) % self.depth

    def result(self) -> tuple[np.ndarray, np.ndarray, float]:
        """Wait for the oldest inference in flight."""
        return self._busy.popleft().result()

    def close(self) -> None:
        """Wait for what is still in flight and stop the threads (the sessions stay with the backend)."""
        for future in self._busy:
            with contextlib.suppress(Exception):  # its error was the stream's to report, not close's
                future.result()
        self._busy.clear()
        self._pool.shutdown(wait=True)

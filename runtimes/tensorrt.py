"""Native TensorRT backend (TensorRT 10 Python API + cuda-python): deserialize the engine, bind I/O by tensor
name, run with `execute_async_v3` on a CUDA stream.

Engines are not portable: a plan only deserializes under the TensorRT version (and GPU) it was built with.
Any mismatch is reported in one line with the rebuild command from the manifest.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import tensorrt as trt

try:  # cuda-python >= 12.6 moved the runtime API here; older releases export `cuda.cudart`
    from cuda.bindings import runtime as cudart
except ImportError:  # pragma: no cover - depends on the installed cuda-python
    from cuda import cudart

from edge_vsd.runtimes.backend import ENGINE_FILE
from edge_vsd.runtimes.errors import RuntimeInputError

log = logging.getLogger("edge_vsd.runtimes")


def _cuda(result: Any) -> Any:
    """Unwrap a cuda-python `(err, value...)` tuple, raising on an error code."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if err != cudart.cudaError_t.cudaSuccess:
        _, name = cudart.cudaGetErrorName(err)
        raise RuntimeError(f"CUDA error {name.decode() if isinstance(name, bytes) else name}")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


class _Logger(trt.ILogger):
    """Collects TensorRT errors (for a one-line message) and forwards warnings to logging."""

    def __init__(self) -> None:
        trt.ILogger.__init__(self)
        self.errors: list[str] = []

    def log(self, severity: trt.ILogger.Severity, msg: str) -> None:
        if int(severity) <= int(trt.ILogger.Severity.ERROR):
            self.errors.append(msg)
        elif int(severity) <= int(trt.ILogger.Severity.WARNING):
            log.warning("TensorRT: %s", msg)


def _device_capability() -> str:
    device = _cuda(cudart.cudaGetDevice())
    props = _cuda(cudart.cudaGetDeviceProperties(device))
    return f"{props.major}.{props.minor}"


class TensorRTBackend:
    """Runs `encoder.engine` (a serialized TensorRT plan) on the current CUDA device."""

    name = "tensorrt"

    def __init__(self, artifact_dir: Path, manifest: dict[str, Any], threads: int | None = None) -> None:
        path = Path(artifact_dir) / ENGINE_FILE
        info = manifest.get("tensorrt") or {}
        rebuild = f"; rebuild it on this device: {info['trtexec']}" if info.get("trtexec") else ""
        built_cc = info.get("compute_capability")
        if built_cc and str(built_cc) != _device_capability():
            raise RuntimeInputError(
                f"{path}: engine built for GPU compute capability {built_cc}, "
                f"this GPU is {_device_capability()}{rebuild}"
            )
        self._logger = _Logger()
        self._runtime = trt.Runtime(self._logger)
        engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            built = info.get("version") or "an unknown version"
            why = (
                self._logger.errors[-1].strip().splitlines()[0]
                if self._logger.errors
                else "deserialization failed"
            )
            raise RuntimeInputError(
                f"{path}: TensorRT {trt.__version__} cannot load an engine built with TensorRT {built} "
                f"or for another GPU ({why}){rebuild}"
            )
        self.engine = engine
        self.context = engine.create_execution_context()
        self.input_name = manifest["input"]["name"]
        self.output_names = [manifest["outputs"]["cls"]["name"], manifest["outputs"]["patches"]["name"]]
        io = {engine.get_tensor_name(i) for i in range(engine.num_io_tensors)}
        if not {self.input_name, *self.output_names} <= io:
            raise RuntimeInputError(f"{path}: engine tensors {sorted(io)} do not match the manifest")
        if engine.get_tensor_mode(self.input_name) != trt.TensorIOMode.INPUT:
            raise RuntimeInputError(f"{path}: {self.input_name!r} is not an input of the engine")
        self._dtypes = {n: np.dtype(trt.nptype(engine.get_tensor_dtype(n))) for n in io}
        self._input_shape = tuple(engine.get_tensor_shape(self.input_name))
        self._buffers: dict[str, tuple[int, int]] = {}  # name -> (device pointer, capacity in bytes)
        self.stream = _cuda(cudart.cudaStreamCreate())

    def _device_buffer(self, name: str, nbytes: int) -> int:
        ptr, capacity = self._buffers.get(name, (0, 0))
        if capacity < nbytes:
            if ptr:
                _cuda(cudart.cudaFree(ptr))
            ptr = _cuda(cudart.cudaMalloc(nbytes))
            self._buffers[name] = (ptr, nbytes)
            self.context.set_tensor_address(name, ptr)
        return ptr

    def run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, 3, H, W) -> (cls, patches): host -> device, execute_async_v3, device -> host, synchronize."""
        x = np.ascontiguousarray(x, dtype=self._dtypes[self.input_name])
        if -1 in self._input_shape:
            if not self.context.set_input_shape(self.input_name, x.shape):
                raise RuntimeInputError(f"input shape {x.shape} is outside the engine's optimization profile")
        elif x.shape != self._input_shape:
            raise RuntimeInputError(f"input shape {x.shape} != the engine's static shape {self._input_shape}")
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        src = self._device_buffer(self.input_name, x.nbytes)
        _cuda(cudart.cudaMemcpyAsync(src, x.ctypes.data, x.nbytes, h2d, self.stream))
        outputs = []
        for name in self.output_names:
            host = np.empty(tuple(self.context.get_tensor_shape(name)), self._dtypes[name])
            outputs.append((host, self._device_buffer(name, max(host.nbytes, 1))))
        if not self.context.execute_async_v3(int(self.stream)):
            raise RuntimeError("TensorRT execute_async_v3 failed: " + "; ".join(self._logger.errors[-1:]))
        for host, ptr in outputs:
            _cuda(cudart.cudaMemcpyAsync(host.ctypes.data, ptr, host.nbytes, d2h, self.stream))
        _cuda(cudart.cudaStreamSynchronize(self.stream))
        return outputs[0][0], outputs[1][0]

    def close(self) -> None:
        """Free device buffers and the stream."""
        for ptr, _ in self._buffers.values():
            cudart.cudaFree(ptr)
        self._buffers = {}
        if self.stream is not None:
            cudart.cudaStreamDestroy(self.stream)
            self.stream = None
        self.context = None
        self.engine = None

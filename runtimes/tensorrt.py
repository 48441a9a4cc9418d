"""Native TensorRT backend (TensorRT 10 Python API + cuda-python): deserialize the engine, bind I/O by tensor
name, run with `execute_async_v3` on a CUDA stream, staging through pinned host memory.

Engines are not portable: a plan only deserializes under the TensorRT version (and GPU) it was built with.
Any mismatch is reported in one line with the rebuild command from the manifest.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import tensorrt as trt
from edge_vsd.runtimes import trt_support
from edge_vsd.runtimes.backend import ENGINE_FILE
from edge_vsd.runtimes.cuda_device import CudaStream, DeviceBuffer, PinnedBuffer, device_gpu
from edge_vsd.runtimes.errors import RuntimeInputError

trt_support.check_tensorrt(trt.__version__)  # TensorRT 8.x: refuse in one line
log = logging.getLogger("edge_vsd.runtimes")


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


def batch_range(engine: Any, name: str) -> tuple[int, int]:
    """(min, max) batch of input `name` in optimisation profile 0 (static engines: its fixed batch)."""
    shape = tuple(engine.get_tensor_shape(name))
    if shape[0] != -1:
        return int(shape[0]), int(shape[0])
    lo, _opt, hi = engine.get_tensor_profile_shape(name, 0)
    return int(lo[0]), int(hi[0])


class TensorRTBackend:
    """Runs `encoder.engine` (a serialized TensorRT plan) on the current CUDA device."""

    name = "tensorrt"

    def __init__(self, artifact_dir: Path, manifest: dict[str, Any], threads: int | None = None) -> None:
        path = Path(artifact_dir) / ENGINE_FILE
        info = manifest.get("tensorrt") or {}
        rebuild = f"; rebuild it on this device: {info['trtexec']}" if info.get("trtexec") else ""
        why_not = trt_support.engine_gpu_mismatch(info, device_gpu())
        if why_not:
            raise RuntimeInputError(f"{path}: {why_not}{rebuild}")
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
        self.batch_range = batch_range(engine, self.input_name)
        names = (self.input_name, *self.output_names)
        self._buffers = {n: DeviceBuffer() for n in names}
        # Pinned host staging: DMA straight from/to it (pageable memory costs an extra staging copy, which on
        # Jetson's shared DRAM is pure overhead).
        self._host = {n: PinnedBuffer() for n in names}
        self.stream = CudaStream()

    def _bind(self, name: str, nbytes: int) -> DeviceBuffer:
        buf = self._buffers[name]
        if buf.ensure(nbytes) and not self.context.set_tensor_address(name, buf.ptr):
            raise RuntimeError(f"TensorRT refused the device address of {name!r}")
        return buf

    def run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, 3, H, W) -> (cls, patches): host -> device, execute_async_v3, device -> host, synchronize."""
        lo, hi = self.batch_range
        if not lo <= x.shape[0] <= hi:
            raise RuntimeInputError(
                f"batch {x.shape[0]} is outside the engine's optimization profile [{lo}, {hi}]"
            )
        if -1 in self._input_shape:
            if not self.context.set_input_shape(self.input_name, tuple(x.shape)):
                raise RuntimeInputError(f"input shape {x.shape} is outside the engine's optimization profile")
        elif x.shape != self._input_shape:
            raise RuntimeInputError(f"input shape {x.shape} != the engine's static shape {self._input_shape}")
        staged = self._host[self.input_name].view(x.shape, self._dtypes[self.input_name])
        staged[...] = x
        self._bind(self.input_name, staged.nbytes).upload(staged, self.stream)
        outputs = []
        for name in self.output_names:
            shape = tuple(self.context.get_tensor_shape(name))
            if min(shape) < 0:
                raise RuntimeInputError(f"output {name!r} shape {shape} unresolved for input {x.shape}")
            host = self._host[name].view(shape, self._dtypes[name])
            outputs.append((host, self._bind(name, host.nbytes)))
        if not self.context.execute_async_v3(int(self.stream)):
            raise RuntimeError("TensorRT execute_async_v3 failed: " + "; ".join(self._logger.errors[-1:]))
        for host, buf in outputs:
            buf.download(host, self.stream)
        self.stream.synchronize()
        # copies: the pinned buffers are reused by the next call
        return outputs[0][0].copy(), outputs[1][0].copy()

    def close(self) -> None:
        """Free device and pinned buffers and the stream."""
        for buf in self._buffers.values():
            buf.free()
        for pinned in self._host.values():
            pinned.free()
        self.stream.close()
        # drop the context before the engine (TensorRT frees them in that order)
        self.__dict__.pop("context", None)
        self.__dict__.pop("engine", None)

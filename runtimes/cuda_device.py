"""Minimal CUDA runtime helpers over cuda-python: a stream, growable device and pinned host buffers, async
copies. Importing this module checks that cuda-python is installed and that its major matches the driver's
(RuntimeInputError, one line saying what to install)."""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np
from edge_vsd.runtimes import trt_support
from edge_vsd.runtimes.errors import RuntimeInputError

try:  # cuda-python >= 12.6 layout; older releases export `cuda.cudart`
    from cuda.bindings import runtime as cudart
except ImportError:  # pragma: no cover - depends on the installed cuda-python
    try:
        from cuda import cudart  # type: ignore[no-redef]
    except ImportError:
        raise RuntimeInputError(trt_support.CUDA_PYTHON_MISSING) from None
trt_support.check_cuda_driver(cudart)


def check(result: Any) -> Any:
    """Unwrap a cuda-python `(err, value...)` result, raising RuntimeError on an error code."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if err != cudart.cudaError_t.cudaSuccess:
        _, name = cudart.cudaGetErrorName(err)
        raise RuntimeError(f"CUDA error {name.decode() if isinstance(name, bytes) else name}")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def device_count() -> int:
    """Number of CUDA devices (0 when the driver or a GPU is missing)."""
    err, count = cudart.cudaGetDeviceCount()
    return int(count) if err == cudart.cudaError_t.cudaSuccess else 0


def device_capability() -> str:
    """Compute capability of the current device, e.g. "8.7" (Jetson Orin)."""
    return device_gpu()["compute_capability"]


def device_gpu() -> dict[str, str]:
    """{gpu, compute_capability} of the current device, as manifests record it."""
    props = check(cudart.cudaGetDeviceProperties(int(check(cudart.cudaGetDevice()))))
    return trt_support.gpu_record(props.name, props.major, props.minor)


class CudaStream:
    """An owned CUDA stream; `int(stream)` is the raw handle TensorRT's execute_async_v3 takes."""

    def __init__(self) -> None:
        self.handle: Any = check(cudart.cudaStreamCreate())

    def __int__(self) -> int:
        return int(self.handle)

    def synchronize(self) -> None:
        check(cudart.cudaStreamSynchronize(self.handle))

    def close(self) -> None:
        if self.handle is not None:
            cudart.cudaStreamDestroy(self.handle)
            self.handle = None


class DeviceBuffer:
    """Device memory that grows on demand and is reused between calls."""

    def __init__(self) -> None:
        self.ptr = 0
        self.capacity = 0

    def ensure(self, nbytes: int) -> bool:
        """Make room for `nbytes`; True when the pointer changed (re-bind it)."""
        if nbytes <= self.capacity:
            return False
        self.free()
        self.ptr = int(check(cudart.cudaMalloc(max(int(nbytes), 1))))
        self.capacity = max(int(nbytes), 1)
        return True

    def upload(self, host: np.ndarray, stream: CudaStream) -> None:
        """Async host -> device copy of a C-contiguous array (grows the buffer first)."""
        self.ensure(host.nbytes)
        kind = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        check(cudart.cudaMemcpyAsync(self.ptr, host.ctypes.data, host.nbytes, kind, stream.handle))

    def download(self, host: np.ndarray, stream: CudaStream) -> None:
        """Async device -> host copy into a C-contiguous array; synchronize the stream before reading it."""
        kind = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        check(cudart.cudaMemcpyAsync(host.ctypes.data, self.ptr, host.nbytes, kind, stream.handle))

    def free(self) -> None:
        if self.ptr:
            cudart.cudaFree(self.ptr)
        self.ptr, self.capacity = 0, 0


class PinnedBuffer:
    """Page-locked host memory (cudaMallocHost) that grows on demand; `view` gives a numpy array over it."""

    def __init__(self) -> None:
        self.ptr = 0
        self.capacity = 0

    def view(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """A C-contiguous array of `shape`/`dtype` over the pinned memory (valid until the next view)."""
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        if nbytes > self.capacity:
            self.free()
            self.ptr = int(check(cudart.cudaMallocHost(max(nbytes, 1))))
            self.capacity = max(nbytes, 1)
        raw = (ctypes.c_byte * self.capacity).from_address(self.ptr)
        return np.frombuffer(memoryview(raw), dtype=dtype, count=int(np.prod(shape))).reshape(shape)

    def free(self) -> None:
        if self.ptr:
            cudart.cudaFreeHost(self.ptr)
        self.ptr, self.capacity = 0, 0

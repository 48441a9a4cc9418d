"""TensorRT GPU time with CUDA events: compute only (enqueue), and host->device + compute + device->host.

Real code against TensorRT 10's tensor API and cuda-python's runtime bindings; used only when an artifact
runs on the tensorrt backend. Engines are built on the board they run on, so this never runs on a PC.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from edge_vsd.benchmarks.stats import summarize


def _cudart():
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6 layout
    except ImportError:
        from cuda import cudart  # older cuda-python
    return cudart


def _check(result: tuple) -> Any:
    """cuda-python returns (error, *values); raise on any error, return the value(s)."""
    err, *values = result
    if int(err) != 0:
        raise RuntimeError(f"CUDA error {err}")
    return values[0] if len(values) == 1 else (tuple(values) or None)


def gpu_times(
    engine_path: str | Path, input_shape: tuple[int, ...], warmup: int = 10, iters: int = 100
) -> dict[str, Any]:
    """{'compute': summary, 'with_copies': summary} in ms for one engine at `input_shape` (N, 3, H, W)."""
    import tensorrt as trt

    cudart = _cudart()
    logger = trt.Logger(trt.Logger.WARNING)
    engine = trt.Runtime(logger).deserialize_cuda_engine(Path(engine_path).read_bytes())
    if engine is None:
        raise RuntimeError(f"{engine_path}: TensorRT could not deserialize the engine")
    context = engine.create_execution_context()
    stream = _check(cudart.cudaStreamCreate())
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
    for name in inputs:
        context.set_input_shape(name, tuple(input_shape))
    host: dict[str, np.ndarray] = {}
    device: dict[str, int] = {}
    start, end = _check(cudart.cudaEventCreate()), _check(cudart.cudaEventCreate())
    try:
        for name in names:
            shape = tuple(context.get_tensor_shape(name))
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            host[name] = np.random.default_rng(0).standard_normal(shape).astype(dtype)
            device[name] = _check(cudart.cudaMalloc(host[name].nbytes))
            context.set_tensor_address(name, device[name])
        h2d = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        d2h = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost

        def once(copies: bool) -> float:
            _check(cudart.cudaEventRecord(start, stream))
            if copies:
                for n in inputs:
                    _check(
                        cudart.cudaMemcpyAsync(device[n], host[n].ctypes.data, host[n].nbytes, h2d, stream)
                    )
            if not context.execute_async_v3(stream):
                raise RuntimeError("TensorRT enqueue failed")
            if copies:
                for n in names:
                    if n not in inputs:
                        _check(
                            cudart.cudaMemcpyAsync(
                                host[n].ctypes.data, device[n], host[n].nbytes, d2h, stream
                            )
                        )
            _check(cudart.cudaEventRecord(end, stream))
            _check(cudart.cudaEventSynchronize(end))
            return float(_check(cudart.cudaEventElapsedTime(start, end)))

        for _ in range(warmup):
            once(True)
        batch = int(input_shape[0])
        compute = [once(False) for _ in range(iters)]
        with_copies = [once(True) for _ in range(iters)]
        return {
            "compute": summarize(compute, batch),
            "with_copies": summarize(with_copies, batch),
            "tensorrt": trt.__version__,
        }
    finally:
        for ptr in device.values():
            cudart.cudaFree(ptr)
        cudart.cudaEventDestroy(start)
        cudart.cudaEventDestroy(end)
        cudart.cudaStreamDestroy(stream)

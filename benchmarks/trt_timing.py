"""TensorRT GPU time with CUDA events: compute only (enqueue), and host->device + compute + device->host.

Real code against TensorRT 10's tensor API and cuda-python's runtime bindings; used only when an artifact
runs on the tensorrt backend (importing it needs cuda-python matching the CUDA driver). Engines are built on
the board they run on, so this never runs on a PC.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from edge_vsd.benchmarks.stats import summarize
from edge_vsd.runtimes.cuda_device import cudart as rt  # RuntimeInputError without a matching cuda-python
from edge_vsd.runtimes.errors import RuntimeInputError


def cudart() -> Any:
    """cuda-python's runtime module, as the runtime's CUDA helpers import it."""
    return rt


def check(result: Any) -> Any:
    """cuda-python returns (error, *values); raise on any error, return the value (or tuple of values)."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise RuntimeError(f"CUDA error {err!r}")
    return values[0] if len(values) == 1 else (tuple(values) or None)


class EventTimer:
    """Times work enqueued on one CUDA stream with a pair of events: GPU time, not host wall time."""

    def __init__(self) -> None:
        self.stream = check(rt.cudaStreamCreate())
        self.start = check(rt.cudaEventCreate())
        self.end = check(rt.cudaEventCreate())

    def time_ms(self, enqueue: Callable[[Any], None]) -> float:
        """Milliseconds between events recorded before and after `enqueue(stream)`."""
        check(rt.cudaEventRecord(self.start, self.stream))
        enqueue(self.stream)
        check(rt.cudaEventRecord(self.end, self.stream))
        check(rt.cudaEventSynchronize(self.end))
        return float(check(rt.cudaEventElapsedTime(self.start, self.end)))

    def copy_in(self, device_ptr: int, host: np.ndarray) -> None:
        """Enqueue host -> device copy of a contiguous array."""
        kind = rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        check(rt.cudaMemcpyAsync(device_ptr, host.ctypes.data, host.nbytes, kind, self.stream))

    def copy_out(self, host: np.ndarray, device_ptr: int) -> None:
        """Enqueue device -> host copy into a contiguous array."""
        kind = rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        check(rt.cudaMemcpyAsync(host.ctypes.data, device_ptr, host.nbytes, kind, self.stream))

    def close(self) -> None:
        """Destroy the events and the stream."""
        rt.cudaEventDestroy(self.start)
        rt.cudaEventDestroy(self.end)
        rt.cudaStreamDestroy(self.stream)


def check_input_shape(engine: Any, context: Any, name: str, shape: tuple[int, ...]) -> None:
    """Set `shape` on input `name`, refusing (one line) a shape the engine cannot run: a static engine of
    another shape, or a dynamic batch outside the optimisation profile. Without this a batch-1 engine would
    be timed at batch 1 and reported at the asked batch's throughput."""
    fixed = tuple(engine.get_tensor_shape(name))
    if -1 not in fixed:
        if fixed != shape:
            raise RuntimeInputError(f"--batch {shape[0]}: the engine's input {name!r} is static {fixed}")
        return
    lo, _opt, hi = (tuple(s) for s in engine.get_tensor_profile_shape(name, 0))
    if not all(a <= b <= c for a, b, c in zip(lo, shape, hi)):
        raise RuntimeInputError(
            f"--batch {shape[0]}: input shape {shape} is outside the engine's profile {lo}..{hi}"
        )
    if not context.set_input_shape(name, shape):
        raise RuntimeInputError(f"TensorRT refused input shape {shape} for {name!r}")


def gpu_times(
    engine_path: str | Path, input_shape: tuple[int, ...], warmup: int = 10, iters: int = 100
) -> dict[str, Any]:
    """{'compute': summary, 'with_copies': summary} in ms for one engine at `input_shape` (N, 3, H, W)."""
    import tensorrt as trt
    from edge_vsd.runtimes.trt_support import check_tensorrt

    check_tensorrt(trt.__version__)  # refuses TensorRT < 10 in one line

    engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(
        Path(engine_path).read_bytes()
    )
    if engine is None:
        raise RuntimeError(f"{engine_path}: TensorRT could not deserialize the engine")
    context = engine.create_execution_context()
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
    for name in inputs:
        check_input_shape(engine, context, name, tuple(input_shape))
    timer = EventTimer()
    host: dict[str, np.ndarray] = {}
    device: dict[str, int] = {}
    try:
        for name in names:
            shape = tuple(context.get_tensor_shape(name))
            if min(shape) < 0:
                raise RuntimeInputError(f"output {name!r} shape {shape} unresolved for input {input_shape}")
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            host[name] = np.random.default_rng(0).standard_normal(shape).astype(dtype)
            device[name] = check(rt.cudaMalloc(host[name].nbytes))
            context.set_tensor_address(name, device[name])

        def compute(stream: Any) -> None:
            if not context.execute_async_v3(int(stream)):
                raise RuntimeError("TensorRT enqueue failed")

        def with_copies(stream: Any) -> None:
            for n in inputs:
                timer.copy_in(device[n], host[n])
            compute(stream)
            for n in names:
                if n not in inputs:
                    timer.copy_out(host[n], device[n])

        for _ in range(warmup):
            timer.time_ms(with_copies)
        batch = int(input_shape[0])
        return {
            "compute": summarize([timer.time_ms(compute) for _ in range(iters)], batch),
            "with_copies": summarize([timer.time_ms(with_copies) for _ in range(iters)], batch),
            "tensorrt": trt.__version__,
        }
    finally:
        for ptr in device.values():
            rt.cudaFree(ptr)
        timer.close()

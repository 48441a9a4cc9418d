"""CUDA-event timing (needs a CUDA GPU and cuda-python) and TensorRT GPU time (needs TensorRT too)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_bench_support import SIZE
from toy_artifact import make_toy_artifact


def _cuda_or_skip():
    from edge_vsd.runtimes.errors import RuntimeInputError

    try:
        from edge_vsd.benchmarks.trt_timing import check, cudart
    except RuntimeInputError as exc:  # cuda-python absent, or its major does not match the driver's
        pytest.skip(str(exc))
    rt = cudart()
    err, count = rt.cudaGetDeviceCount()
    if int(err) != 0 or count == 0:
        pytest.skip("needs a CUDA GPU (none visible)")
    return rt, check


@pytest.mark.cuda
def test_event_timer_times_device_work_and_copies_round_trip():
    rt, check = _cuda_or_skip()
    from edge_vsd.benchmarks.trt_timing import EventTimer

    timer = EventTimer()
    host = np.arange(1 << 20, dtype=np.float32)
    back = np.zeros_like(host)
    ptr = check(rt.cudaMalloc(host.nbytes))
    try:
        ms = timer.time_ms(lambda s: check(rt.cudaMemsetAsync(ptr, 0, host.nbytes, s)))
        assert math.isfinite(ms) and ms >= 0
        ms = timer.time_ms(lambda s: (timer.copy_in(ptr, host), timer.copy_out(back, ptr)))
        assert math.isfinite(ms) and ms > 0
        np.testing.assert_array_equal(back, host)  # the copies really went through the device
    finally:
        rt.cudaFree(ptr)
        timer.close()


def _build_engine(onnx_path, engine_path):
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    assert parser.parse(onnx_path.read_bytes()), parser.get_error(0)
    plan = builder.build_serialized_network(network, builder.create_builder_config())
    assert plan is not None
    engine_path.write_bytes(bytes(plan))
    return engine_path


@pytest.mark.tensorrt
def test_gpu_times_on_a_toy_engine(tmp_path):
    pytest.importorskip("tensorrt", reason="needs TensorRT (pip install tensorrt) and a GPU")
    _cuda_or_skip()
    from edge_vsd.benchmarks.trt_timing import gpu_times

    art = make_toy_artifact(tmp_path / "toy", image_size=SIZE, patch=8, dim=64, batch=1)
    engine = _build_engine(art / "encoder.onnx", tmp_path / "encoder.engine")
    out = gpu_times(engine, (1, 3, *SIZE), warmup=2, iters=5)
    for key in ("compute", "with_copies"):
        assert out[key]["iters"] == 5 and out[key]["p50_ms"] > 0 and out[key]["batch"] == 1
    assert out["tensorrt"]

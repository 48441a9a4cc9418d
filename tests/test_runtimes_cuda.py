"""CUDA helpers used by the TensorRT backend (cuda-python), on a real GPU; skipped without one."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.cuda


@pytest.fixture(scope="module")
def cuda():
    from edge_vsd.runtimes.errors import RuntimeInputError

    try:
        from edge_vsd.runtimes import cuda_device
    except RuntimeInputError as exc:  # cuda-python absent, or no driver / a driver of another major
        pytest.skip(str(exc))

    if cuda_device.device_count() == 0:
        pytest.skip("needs a CUDA GPU")
    return cuda_device


def test_round_trip_through_device_memory_on_a_stream(cuda):
    stream = cuda.CudaStream()
    buf = cuda.DeviceBuffer()
    try:
        # grows for the first two, reuses the bigger buffer for the third
        for shape, grows in [((2, 3, 8, 8), True), ((5, 3, 16, 16), True), ((1, 3, 4, 4), False)]:
            host = np.random.default_rng(sum(shape)).standard_normal(shape).astype(np.float32)
            assert buf.ensure(host.nbytes) == grows
            buf.upload(host, stream)
            back = np.empty_like(host)
            buf.download(back, stream)
            stream.synchronize()
            np.testing.assert_array_equal(back, host)
        assert buf.capacity == 5 * 3 * 16 * 16 * 4
        assert int(stream) != 0
        assert cuda.device_capability().count(".") == 1
    finally:
        buf.free()
        stream.close()


def test_cuda_errors_are_raised(cuda):
    with pytest.raises(RuntimeError, match="CUDA error"):
        cuda.check(cuda.cudart.cudaMalloc(1 << 60))  # more memory than any GPU has


def test_pinned_host_buffer_round_trip(cuda):
    """Page-locked staging (what the TensorRT backend copies through): grows, reuses, DMA both ways."""
    stream, dev, pinned = cuda.CudaStream(), cuda.DeviceBuffer(), cuda.PinnedBuffer()
    try:
        src = np.random.default_rng(1).standard_normal((4, 3, 8, 8)).astype(np.float32)
        staged = pinned.view(src.shape, src.dtype)
        staged[...] = src
        dev.upload(staged, stream)
        back = cuda.PinnedBuffer()
        out = back.view(src.shape, src.dtype)
        dev.download(out, stream)
        stream.synchronize()
        np.testing.assert_array_equal(out, src)
        assert pinned.view((1, 3, 8, 8), np.float32).ctypes.data == pinned.ptr  # smaller view reuses it
        back.free()
    finally:
        pinned.free()
        dev.free()
        stream.close()

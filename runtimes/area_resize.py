"""OpenCV's area resize (`INTER_AREA`, downscaling) as two small matrix products, for engines that can run
it inside their graph.

Output pixel i of an axis averages the source interval [i * s, (i + 1) * s), s = src / dst, each source
pixel weighted by its overlap. With g = gcd(src, dst) the pattern repeats every p = src / g source and
q = dst / g output pixels, so one (q, p) block of weights resizes the whole axis: reshape it into g runs of
p pixels and multiply. 640 -> 224 is 32 runs of 20 -> 7, 480 -> 224 32 runs of 15 -> 7. Rounded to
integers, the result is OpenCV's at all but 0.05-0.2% of the pixels, which are one grey level off (its
float sums run in another order).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

MAX_BLOCK_OUT = 32  # q: the work per source pixel grows with it; sizes sharing few factors stay with OpenCV


def block_weights(src: int, dst: int) -> np.ndarray:
    """The (q, p) area weights of one run: row i holds the overlap of output pixel i with each source pixel,
    divided by the scale, so each row sums to 1."""
    g = math.gcd(src, dst)
    p, q = src // g, dst // g
    scale = src / dst
    weights = np.zeros((q, p))
    for i in range(q):
        lo, hi = i * scale, (i + 1) * scale
        for j in range(math.floor(lo), min(p, math.ceil(hi))):
            weights[i, j] = max(0.0, min(hi, j + 1) - max(lo, j))
    return (weights / scale).astype(np.float32)


def foldable(src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> bool:
    """Whether frames of `src_hw` resize to `dst_hw` by this path: a downscale (no axis grows) with short
    runs."""
    if tuple(src_hw) == tuple(dst_hw) or any(s < d for s, d in zip(src_hw, dst_hw, strict=True)):
        return False
    return all(d // math.gcd(s, d) <= MAX_BLOCK_OUT for s, d in zip(src_hw, dst_hw, strict=True))


def openvino_graph(
    src_hw: tuple[int, int], dst_hw: tuple[int, int], batch: Any, reverse_channels: bool = False
) -> tuple[Any, Any]:
    """OpenVINO ops: a uint8 (batch, H, W, 3) parameter (`batch` an openvino.Dimension) and its float
    (batch, h, w, 3) area resize, with the channel order reversed (BGR to RGB) if asked."""
    import openvino as ov
    import openvino.opset13 as ops

    (sh, sw), (dh, dw) = src_hw, dst_hw
    wy, wx = block_weights(sh, dh), block_weights(sw, dw)
    frames = ops.parameter(ov.PartialShape([batch, sh, sw, 3]), ov.Type.u8, name="frames")
    x = ops.convert(frames, ov.Type.f32)
    # rows: (B, runs, p, W*3) -> (q, p) @ -> (B, runs, q, W*3)
    x = ops.reshape(x, _shape(-1, sh // wy.shape[1], wy.shape[1], sw * 3), False)
    x = ops.matmul(ops.constant(wy), x, False, False)
    # columns: pixel and channel together, (p*3) -> (q*3); the weights spread over the channels, which
    # the same product can reorder
    channels = np.eye(3, dtype=np.float32)[::-1] if reverse_channels else np.eye(3, dtype=np.float32)
    x = ops.reshape(x, _shape(-1, dh, sw // wx.shape[1], wx.shape[1] * 3), False)
    x = ops.matmul(x, ops.constant(np.kron(wx.T, channels)), False, False)
    return frames, ops.reshape(x, _shape(-1, dh, dw, 3), False)


def _shape(*dims: int) -> Any:
    import openvino.opset13 as ops

    return ops.constant(np.array(dims, np.int64))

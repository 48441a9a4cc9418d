"""fp16 conversion keeps float32 graph inputs/outputs and the tensors ONNX requires in float32."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from edge_vsd.export.fp16 import convert_to_fp16
from onnx import TensorProto, helper, numpy_helper


def test_fp16_graph_runs_with_float32_io():
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((4, 4)).astype(np.float32), "w"),
        numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
        numpy_helper.from_array(np.array([1e6], np.float32), "huge"),  # beyond fp16: clipped, not inf
    ]
    nodes = [
        helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(np.array(0.5, np.float32))),
        helper.make_node("MatMul", ["image", "w"], ["m"]),
        helper.make_node("Mul", ["m", "c"], ["h"]),
        helper.make_node("Resize", ["h", "", "scales"], ["r"], mode="nearest"),
        helper.make_node("Min", ["r", "huge"], ["cls"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 1, 4, 4])],
        [helper.make_tensor_value_info("cls", TensorProto.FLOAT, [1, 1, 8, 8])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    half = convert_to_fp16(model)
    onnx.checker.check_model(half, full_check=True)
    types = {i.name: i.data_type for i in half.graph.initializer}
    assert types["w"] == TensorProto.FLOAT16 and types["scales"] == TensorProto.FLOAT
    assert np.isfinite(
        numpy_helper.to_array(next(i for i in half.graph.initializer if i.name == "huge"))
    ).all()
    assert half.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert half.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    x = rng.standard_normal((1, 1, 4, 4)).astype(np.float32)
    ref = ort.InferenceSession(model.SerializeToString()).run(None, {"image": x})[0]
    out = ort.InferenceSession(half.SerializeToString()).run(None, {"image": x})[0]
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, ref, atol=1e-2, rtol=1e-2)

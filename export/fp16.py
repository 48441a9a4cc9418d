"""fp32 -> fp16 ONNX conversion that keeps float32 inputs and outputs (casts at the graph boundary)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FLOAT, HALF = TensorProto.FLOAT, TensorProto.FLOAT16
_FP16_MAX = float(np.finfo(np.float16).max)


def _half_tensor(t: onnx.TensorProto) -> onnx.TensorProto:
    # Clip before casting: an fp32 value beyond fp16's range would otherwise become inf.
    arr = np.clip(numpy_helper.to_array(t), -_FP16_MAX, _FP16_MAX).astype(np.float16)
    return numpy_helper.from_array(arr, t.name)


def _retype(value_infos) -> None:
    for vi in value_infos:
        tt = vi.type.tensor_type
        if tt.elem_type == FLOAT:
            tt.elem_type = HALF


def convert_to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """Every float32 initializer, constant, cast and intermediate becomes float16; `image` stays float32 in
    and `cls`/`patches` stay float32 out (keep_io_types), so callers and preprocessing do not change."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    # Inputs that ONNX requires in float32 whatever the data type (Resize's roi and scales).
    keep_fp32 = {n.input[k] for n in graph.node if n.op_type == "Resize" for k in (1, 2) if len(n.input) > k}
    for i, init in enumerate(graph.initializer):
        if init.data_type == FLOAT and init.name not in keep_fp32:
            graph.initializer[i].CopyFrom(_half_tensor(init))
    for node in graph.node:
        for attr in node.attribute:
            # Constant / ConstantOfShape values
            if attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type == FLOAT:
                attr.t.CopyFrom(_half_tensor(attr.t))
            if node.op_type == "Cast" and attr.name == "to" and attr.i == FLOAT:
                attr.i = HALF
    _retype(graph.value_info)
    inputs = [i for i in graph.input if i.type.tensor_type.elem_type == FLOAT]
    outputs = [o for o in graph.output if o.type.tensor_type.elem_type == FLOAT]
    rename = {i.name: f"{i.name}_fp16" for i in inputs}
    for node in graph.node:
        for k, name in enumerate(node.input):
            if name in rename:
                node.input[k] = rename[name]
    casts_in = [
        helper.make_node("Cast", [i.name], [rename[i.name]], name=f"cast_in_{i.name}", to=HALF)
        for i in inputs
    ]
    casts_out = []
    for out in outputs:
        inner = f"{out.name}_fp16"
        for node in graph.node:
            for k, name in enumerate(node.output):
                if name == out.name:
                    node.output[k] = inner
            for k, name in enumerate(node.input):
                if name == out.name:
                    node.input[k] = inner
        casts_out.append(helper.make_node("Cast", [inner], [out.name], name=f"cast_out_{out.name}", to=FLOAT))
    nodes = casts_in + list(graph.node) + casts_out
    del graph.node[:]
    graph.node.extend(nodes)
    return model

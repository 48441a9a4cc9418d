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


QDQ_FP16_OPSET = 19  # QuantizeLinear/DequantizeLinear take float16 inputs and scales from opset 19
_FP16_TINY = float(np.finfo(np.float16).tiny)


def convert_qdq_to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """An INT8 Q/DQ graph with every float tensor in float16, Q/DQ scales included (so at opset >= 19), and
    float32 graph inputs/outputs. This is what TensorRT runs: with the FP16 builder flag (TensorRT 10) the
    layers left in float may run in half, and a strongly typed build (TensorRT 11) runs exactly these types,
    so this graph is both the TensorRT 11 input and the fp16 simulation the fidelity gate scores."""
    from onnx import version_converter

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < QDQ_FP16_OPSET:
        model = version_converter.convert_version(model, QDQ_FP16_OPSET)
    else:
        model = onnx.ModelProto.FromString(model.SerializeToString())
    inits = {i.name: i for i in model.graph.initializer}
    scales = {n.input[1] for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")}
    for name in scales & set(inits):
        # a scale below fp16's smallest normal would lose precision or round to 0 (an invalid scale)
        arr = numpy_helper.to_array(inits[name])
        inits[name].CopyFrom(numpy_helper.from_array(np.maximum(arr, _FP16_TINY).astype(arr.dtype), name))
    return convert_to_fp16(model)

"""Checks a Q/DQ ONNX graph against TensorRT's explicit-quantization rules; every finding names its node."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

MIN_OPSET = 17  # LayerNormalization; TensorRT 10 parses opsets 9-20 (Q/DQ per-channel needs >= 13)
QDQ = ("QuantizeLinear", "DequantizeLinear")
# Zero-point element types TensorRT's explicit quantization accepts: INT8 (and FP8 E4M3 / INT4 weights).
ALLOWED_QTYPES = {TensorProto.INT8: "int8", TensorProto.FLOAT8E4M3FN: "fp8e4m3", TensorProto.INT4: "int4"}
# Operator-format (QOperator) and integer ops that ONNX Runtime's quantizer emits; TensorRT cannot parse them.
QOPERATOR_OPS = {
    "QLinearConv",
    "QLinearMatMul",
    "MatMulInteger",
    "ConvInteger",
    "DynamicQuantizeLinear",
    "QLinearAdd",
    "QLinearMul",
    "QGemm",
    "MatMulIntegerToFloat",
    "DynamicQuantizeMatMul",
}
# Which input of each op is the weight, and the weight axis that holds output channels.
WEIGHT_INPUT = {"Conv": 1, "ConvTranspose": 1, "MatMul": 1, "Gemm": 1}


@dataclass(frozen=True)
class Finding:
    """One rule broken by one node (or the model, when `node` is empty)."""

    rule: str
    node: str
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        where = f"node {self.node!r}" if self.node else "model"
        return f"{self.severity}: [{self.rule}] {where}: {self.message}"


def _type_name(t: int) -> str:
    return TensorProto.DataType.Name(t).lower()


class _Graph:
    def __init__(self, model: onnx.ModelProto):
        self.model = model
        self.nodes = list(model.graph.node)
        self.init = {i.name: i for i in model.graph.initializer}
        self.const = {n.output[0]: n for n in self.nodes if n.op_type == "Constant" and n.output}
        self.producer = {o: n for n in self.nodes for o in n.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for n in self.nodes:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)

    def array(self, name: str) -> np.ndarray | None:
        if name in self.init:
            return numpy_helper.to_array(self.init[name])
        if name in self.const:
            for a in self.const[name].attribute:
                if a.name == "value":
                    return numpy_helper.to_array(a.t)
        return None

    def elem_type(self, name: str) -> int | None:
        if name in self.init:
            return self.init[name].data_type
        if name in self.const:
            return next((a.t.data_type for a in self.const[name].attribute if a.name == "value"), None)
        return None

    def is_constant(self, name: str) -> bool:
        return name in self.init or name in self.const


def _axis(node: onnx.NodeProto) -> int | None:
    """The explicit `axis` attribute, None when absent (ONNX then means 1, TensorRT's parser uses 0)."""
    return next((a.i for a in node.attribute if a.name == "axis"), None)


def _label(node: onnx.NodeProto) -> str:
    return node.name or f"{node.op_type}->{node.output[0] if node.output else '?'}"


def lint_model(model: onnx.ModelProto) -> list[Finding]:
    """Every violation of TensorRT's explicit-quantization rules in `model`."""
    g = _Graph(model)
    out: list[Finding] = []
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < MIN_OPSET:
        out.append(Finding("opset", "", f"opset {opset} < {MIN_OPSET} (LayerNormalization needs 17)"))
    for node in g.nodes:
        name = _label(node)
        if node.domain not in ("", "ai.onnx"):
            out.append(
                Finding(
                    "domain",
                    name,
                    f"op {node.domain}.{node.op_type} is not a standard ONNX op; "
                    "TensorRT's parser does not know it",
                )
            )
        if node.op_type in QOPERATOR_OPS:
            out.append(
                Finding(
                    "qoperator",
                    name,
                    f"{node.op_type} (operator-format quantization); TensorRT "
                    "needs QuantizeLinear/DequantizeLinear pairs instead",
                )
            )
        if node.op_type in QDQ and node.domain in ("", "ai.onnx"):
            out.extend(_check_qdq(g, node, name))
    out.extend(_check_placement(g))
    return out


# Ops that move or reshape data without arithmetic: a Q/DQ above them still quantizes the op below.
PASS_THROUGH = {
    "Reshape",
    "Transpose",
    "Squeeze",
    "Unsqueeze",
    "Gather",
    "Slice",
    "Split",
    "Flatten",
    "Identity",
}
# Elementwise ops between q@k^T and Softmax (scale, mask) and between Softmax and @V (cast, dropout).
SCORE_OPS = {"Mul", "Div", "Add", "Sub", "Where", "Cast"}
PROB_OPS = {"Cast", "Dropout", "Identity", "QuantizeLinear", "DequantizeLinear"}


def _upstream(g: _Graph, tensor: str) -> onnx.NodeProto | None:
    """The first producer of `tensor` that is not a pass-through op."""
    node = g.producer.get(tensor)
    while node is not None and node.op_type in PASS_THROUGH and node.input:
        node = g.producer.get(node.input[0])
    return node


def _dequantized(g: _Graph, tensor: str) -> bool:
    node = _upstream(g, tensor)
    return node is not None and node.op_type == "DequantizeLinear"


def _is_weight(g: _Graph, tensor: str) -> bool:
    """A constant, or a DequantizeLinear of a constant (possibly through pass-through ops)."""
    if g.is_constant(tensor):
        return True
    node = _upstream(g, tensor)
    if node is None:
        return False
    if node.op_type == "DequantizeLinear":
        return _weight_source(g, node) is not None
    return all(g.is_constant(i) for i in node.input if i) and node.op_type in PASS_THROUGH


def _check_placement(g: _Graph) -> list[Finding]:
    """TensorRT runs a layer in int8 only when all its inputs are quantized: a weighted op with only its
    weight (or only its input) quantized runs in float, and so does an activation x activation MatMul
    (attention) with one quantized input. Attention cores must be quantized both MatMuls or neither
    (NVIDIA's placement: half quantized, the fused attention kernels do not apply)."""
    out: list[Finding] = []
    matmul_state: dict[str, bool] = {}
    for node in g.nodes:
        if node.op_type not in ("MatMul", "Gemm", "Conv", "ConvTranspose") or len(node.input) < 2:
            continue
        a, b = node.input[0], node.input[1]
        weighted = _is_weight(g, b)
        qa, qb = _dequantized(g, a), _dequantized(g, b)
        if qa == qb:
            if not weighted and node.op_type == "MatMul":
                matmul_state[node.output[0]] = qa
            continue
        if weighted:
            which = "weight" if qb else "input"
            out.append(
                Finding(
                    "partial-qdq",
                    _label(node),
                    f"{node.op_type} with only its {which} quantized: TensorRT runs it in float; quantize "
                    "both its input and its weight, or neither",
                )
            )
        else:
            out.append(
                Finding(
                    "attention-qdq",
                    _label(node),
                    f"activation x activation MatMul with only input {0 if qa else 1} quantized: "
                    "TensorRT runs it in float; quantize both inputs or neither",
                )
            )
    out.extend(_check_attention_cores(g, matmul_state))
    return out


def _check_attention_cores(g: _Graph, matmul_state: dict[str, bool]) -> list[Finding]:
    """MatMul (scores) -> Softmax -> MatMul (@V): both quantized or both float."""
    out: list[Finding] = []
    for sm in (n for n in g.nodes if n.op_type == "Softmax"):
        up = g.producer.get(sm.input[0])
        while up is not None and up.op_type in SCORE_OPS:
            up = g.producer.get(up.input[0])
        if up is None or up.op_type != "MatMul" or up.output[0] not in matmul_state:
            continue
        frontier, pv = [sm.output[0]], None
        while frontier and pv is None:
            t = frontier.pop()
            for c in g.consumers.get(t, []):
                if c.op_type == "MatMul" and c.output[0] in matmul_state:
                    pv = c
                elif c.op_type in PROB_OPS:
                    frontier.extend(c.output)
        if pv is None:
            continue
        scores_q, pv_q = matmul_state[up.output[0]], matmul_state[pv.output[0]]
        if scores_q != pv_q:
            quantized, fp = (up, pv) if scores_q else (pv, up)
            out.append(
                Finding(
                    "attention-qdq",
                    _label(quantized),
                    f"half-quantized attention: {_label(quantized)!r} is int8 but {_label(fp)!r} after "
                    "the same Softmax is float; quantize both attention MatMuls or leave "
                    "MatMul-Softmax-MatMul in float",
                )
            )
    return out


def _check_qdq(g: _Graph, node: onnx.NodeProto, name: str) -> list[Finding]:
    out: list[Finding] = []
    scale_name = node.input[1] if len(node.input) > 1 else ""
    scale = g.array(scale_name)
    if scale is None:
        out.append(
            Finding(
                "scale-constant",
                name,
                f"scale {scale_name!r} is computed at run time; TensorRT "
                "needs a constant (initializer) scale",
            )
        )
    else:
        if not np.all(np.isfinite(scale)):
            out.append(Finding("scale-finite", name, f"scale {scale_name!r} holds NaN or Inf"))
        elif not np.all(scale > 0):
            out.append(
                Finding(
                    "scale-positive",
                    name,
                    f"scale {scale_name!r} has values <= 0 (min {float(scale.min()):.3g})",
                )
            )
    zp_name = node.input[2] if len(node.input) > 2 and node.input[2] else ""
    if not zp_name:
        out.extend(_check_no_zero_point(g, node, name))
    else:
        zp_type = g.elem_type(zp_name)
        zp = g.array(zp_name)
        if zp_type is None or zp is None:
            out.append(Finding("zero-point-constant", name, f"zero point {zp_name!r} is not a constant"))
        else:
            if zp_type not in ALLOWED_QTYPES:
                out.append(
                    Finding(
                        "int8-not-uint8",
                        name,
                        f"quantized type {_type_name(zp_type)}; TensorRT needs signed int8 (never uint8)",
                    )
                )
            if np.any(zp.astype(np.float64) != 0):
                out.append(
                    Finding(
                        "zero-point-zero",
                        name,
                        f"zero point {zp_name!r} is not 0 "
                        f"(max |zp| {float(np.abs(zp).max()):g}); TensorRT "
                        "only supports symmetric quantization",
                    )
                )
    if node.op_type == "QuantizeLinear":
        consumers = g.consumers.get(node.output[0], [])
        bad = [c for c in consumers if c.op_type != "DequantizeLinear"]
        if not consumers or bad:
            what = f"feeds {bad[0].op_type} {_label(bad[0])!r}" if bad else "has no consumer"
            out.append(
                Finding(
                    "q-dq-pair",
                    name,
                    f"QuantizeLinear output {what}; TensorRT needs every Q followed by a DequantizeLinear",
                )
            )
    if node.op_type == "DequantizeLinear" and scale is not None:
        out.extend(_check_granularity(g, node, name, scale))
    return out


def _check_no_zero_point(g: _Graph, node: onnx.NodeProto, name: str) -> list[Finding]:
    """Without a zero point a QuantizeLinear outputs uint8 (ONNX's default), which TensorRT rejects; a
    DequantizeLinear takes its type from its input, so an int8 initializer (or a checked Q) is fine."""
    if node.op_type == "QuantizeLinear":
        return [
            Finding(
                "zero-point-type",
                name,
                "no zero point: ONNX then means uint8; TensorRT needs an explicit int8 zero point of 0",
            )
        ]
    x_type = g.elem_type(node.input[0])
    if x_type is not None and x_type not in ALLOWED_QTYPES:
        return [
            Finding(
                "int8-not-uint8",
                name,
                f"dequantizes {_type_name(x_type)} {node.input[0]!r}; "
                "TensorRT needs signed int8 (never uint8)",
            )
        ]
    return []


def _weight_source(g: _Graph, dq: onnx.NodeProto) -> str | None:
    """The constant a weight DQ dequantizes: directly (int8 initializer) or through Q(constant)."""
    x = dq.input[0]
    if g.is_constant(x):
        return x
    q = g.producer.get(x)
    if q is not None and q.op_type == "QuantizeLinear" and g.is_constant(q.input[0]):
        return q.input[0]
    return None


def _check_granularity(g: _Graph, dq: onnx.NodeProto, name: str, scale: np.ndarray) -> list[Finding]:
    out: list[Finding] = []
    weight = _weight_source(g, dq)
    uses = [
        (c, k) for c in g.consumers.get(dq.output[0], []) for k, i in enumerate(c.input) if i == dq.output[0]
    ]
    weight_uses = [(c, k) for c, k in uses if WEIGHT_INPUT.get(c.op_type) == k]
    if weight is None or not weight_uses:
        if scale.size > 1:
            out.append(
                Finding(
                    "activation-per-tensor",
                    name,
                    f"activation quantized with {scale.size} scales; "
                    "TensorRT needs one scale per activation tensor",
                )
            )
        return out
    w = g.array(weight)
    rank = w.ndim if w is not None else None
    for consumer, _ in weight_uses:
        if scale.size == 1:
            # Valid for TensorRT, only less accurate than one scale per output channel.
            out.append(
                Finding(
                    "per-channel-weights",
                    name,
                    f"weight {weight!r} of {consumer.op_type} "
                    f"{_label(consumer)!r} is quantized per tensor (valid; per-channel scales along the "
                    "output channels are more accurate)",
                    severity="warning",
                )
            )
            continue
        axis = _axis(dq)
        if axis is None:
            out.append(
                Finding(
                    "per-channel-axis",
                    name,
                    f"per-channel scales of weight {weight!r} without an axis attribute: ONNX means axis 1, "
                    "TensorRT's parser uses axis 0; set axis explicitly",
                )
            )
            continue
        if rank is not None:
            axis = axis + rank if axis < 0 else axis
            expected = _output_channel_axis(consumer, rank)
            if axis != expected:
                out.append(
                    Finding(
                        "per-channel-axis",
                        name,
                        f"weight {weight!r} of {consumer.op_type} is "
                        f"quantized along axis {axis}; output channels are "
                        f"axis {expected}",
                    )
                )
            elif w is not None and scale.shape != (w.shape[axis],):
                out.append(
                    Finding(
                        "per-channel-axis",
                        name,
                        f"{scale.size} scales for {w.shape[axis]} output channels of weight {weight!r}",
                    )
                )
    return out


def _output_channel_axis(consumer: onnx.NodeProto, rank: int) -> int:
    if consumer.op_type == "Conv":
        return 0
    if consumer.op_type == "ConvTranspose":
        return 1
    if consumer.op_type == "Gemm":
        trans_b = next((a.i for a in consumer.attribute if a.name == "transB"), 0)
        return 0 if trans_b else 1
    return rank - 1  # MatMul: (..., K, N)


def lint_file(path: str | Path) -> list[Finding]:
    """Load `path` and lint it; InputError if it is not a readable ONNX model."""
    from edge_vsd.errors import InputError

    path = Path(path)
    if path.is_dir() and (path / "encoder.onnx").is_file():  # an artifact folder: its graph
        path = path / "encoder.onnx"
    if not path.is_file():
        raise InputError(f"{path}: {'a folder without encoder.onnx' if path.is_dir() else 'no such file'}")
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # noqa: BLE001 - any parse failure means not an ONNX file
        raise InputError(f"{path}: not a readable ONNX model ({str(exc).splitlines()[0][:120]})") from None
    if not model.graph.node:
        raise InputError(f"{path}: not an ONNX model (empty graph)")
    return lint_model(model)


def errors(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity == "error"]

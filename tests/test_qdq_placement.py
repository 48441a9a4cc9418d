"""Q/DQ placement on the exported ViT (real exporter, onnxsim, NNCF, ONNX Runtime): the jetson scheme leaves
the MatMul -> Softmax -> MatMul attention core in float (NNCF's default half-quantizes it), every quantized
layer has all its inputs quantized, and the fidelity gate scores the fp16 graph TensorRT runs."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import pytest
import torch
from edge_vsd.export import parity, quantize
from edge_vsd.export.fp16 import convert_qdq_to_fp16
from edge_vsd.export.onnx_export import DEFAULT_OPSET, export_onnx
from edge_vsd.export.simplify import simplify_onnx
from edge_vsd.export.trt_lint import errors, lint_model
from onnx import TensorProto

from edge_vsd.model import build_vit

pytestmark = pytest.mark.slow
SIZE = 64


@pytest.fixture(scope="module")
def vit(tmp_path_factory):
    """fp32 ViT-Tiny ONNX, calibration and held-out inputs, and the fp32 reference features."""
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("vit")
    export_onnx(
        build_vit("vit_tiny", (SIZE, SIZE)).eval(), d / "raw.onnx", (SIZE, SIZE), 1, False, DEFAULT_OPSET
    )
    simplify_onnx(d / "raw.onnx", d / "fp32.onnx")
    model = onnx.load(str(d / "fp32.onnx"))
    rng = np.random.default_rng(0)
    calib = rng.standard_normal((8, 3, SIZE, SIZE)).astype(np.float32)
    held = rng.standard_normal((4, 3, SIZE, SIZE)).astype(np.float32)
    ref = parity.run_session(parity.ort_session(model.SerializeToString()), held)
    return model, calib, held, ref


def _dequantized_inputs(model: onnx.ModelProto, node: onnx.NodeProto) -> list[bool]:
    """For each input: does a DequantizeLinear reach it through data-movement ops only?"""
    producer = {o: n for n in model.graph.node for o in n.output}
    moves = {"Reshape", "Transpose", "Gather", "Squeeze", "Unsqueeze", "Slice", "Split", "Identity"}
    out = []
    for t in node.input[:2]:
        p = producer.get(t)
        while p is not None and p.op_type in moves:
            p = producer.get(p.input[0])
        out.append(p is not None and p.op_type == "DequantizeLinear")
    return out


def test_nncf_default_half_quantizes_attention_and_the_linter_says_so(vit):
    model, calib, _, _ = vit
    nncf_default = dataclasses.replace(quantize.JETSON, float_attention=False)
    q = quantize.quantize_int8(model, calib, nncf_default)
    attn = [n for n in q.graph.node if n.name in set(quantize.attention_matmuls(model))]
    states = [tuple(_dequantized_inputs(q, n)) for n in attn]
    assert len(attn) == 2 * 12 and len(set(states)) > 1  # q@k^T quantized, softmax@V not
    assert {f.rule for f in errors(lint_model(q))} == {"attention-qdq"}


def test_jetson_scheme_placement_and_fp16_gate(vit):
    model, calib, held, ref = vit
    q, attempts = quantize.quantize_gated(model, calib, held, ref, quantize.JETSON, 0.99, ladder=("none",))
    assert q is not None
    attn = set(quantize.attention_matmuls(model))
    weighted = 0
    for node in q.graph.node:
        if node.op_type not in ("MatMul", "Conv"):
            continue
        state = _dequantized_inputs(q, node)
        if node.name in attn:
            assert state == [False, False], node.name  # the attention core stays float (fp16 in TensorRT)
        else:
            assert state == [True, True], node.name  # input and weight both int8, never weight-only
            weighted += 1
    assert weighted == 1 + 12 * 4  # patch embedding, then qkv, proj, fc1, fc2 per block
    assert lint_model(q) == []

    # the gate scored the fp16 variant (what TensorRT runs), not only the float32-float-layers graph
    a = attempts[0]
    assert a.qdq_fp32 is not None and a.metrics != a.qdq_fp32
    half = convert_qdq_to_fp16(q)
    assert errors(lint_model(half)) == []
    floats = [i for i in half.graph.initializer if i.data_type in (TensorProto.FLOAT, TensorProto.FLOAT16)]
    assert floats and all(i.data_type == TensorProto.FLOAT16 for i in floats)
    assert [i.type.tensor_type.elem_type for i in half.graph.input] == [TensorProto.FLOAT]
    sim = parity.compare(ref, parity.run_session(parity.ort_session(half.SerializeToString()), held))
    assert sim["cls_cosine"] == pytest.approx(a.metrics["cls_cosine"], abs=1e-6)
    assert min(sim["cls_cosine"], sim["patch_cosine"]) >= 0.99

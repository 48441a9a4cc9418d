"""TensorRT explicit-quantization linter on hand-built Q/DQ graphs (good and broken on purpose), on real
NNCF/ONNX Runtime outputs, and through `edge-vsd lint-trt`."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from edge_vsd.export.trt_lint import errors, lint_file, lint_model
from onnx import TensorProto, helper, numpy_helper

from edge_vsd.cli import main

K, N = 8, 4


def qdq_graph(
    *,
    zp_type=TensorProto.INT8,
    act_zp=0,
    weight_scales=N,
    weight_axis=1,
    opset=17,
    scale=0.02,
    weight_zp=0,
    drop_act_dq=False,
    omit_act_zp=False,
) -> onnx.ModelProto:
    """x -> Q -> DQ -> MatMul(W: int8 initializer -> DQ) -> y, with one knob per TensorRT rule."""
    np_type = {TensorProto.INT8: np.int8, TensorProto.UINT8: np.uint8}[zp_type]
    rng = np.random.default_rng(0)
    w_scale = np.full(weight_scales, 0.01, np.float32) if weight_scales > 1 else np.float32(0.01)
    inits = [
        numpy_helper.from_array(np.array(scale, np.float32), "x_scale"),
        numpy_helper.from_array(np.array(act_zp, np_type), "x_zp"),
        numpy_helper.from_array(rng.integers(-127, 127, (K, N)).astype(np.int8), "w_q"),
        numpy_helper.from_array(np.asarray(w_scale, np.float32), "w_scale"),
        numpy_helper.from_array(np.full(np.shape(w_scale), weight_zp, np.int8), "w_zp"),
    ]
    q_inputs = ["x", "x_scale"] if omit_act_zp else ["x", "x_scale", "x_zp"]
    nodes = [helper.make_node("QuantizeLinear", q_inputs, ["x_q"], name="act_q")]
    if drop_act_dq:
        nodes.append(helper.make_node("Cast", ["x_q"], ["x_dq"], name="bad_cast", to=TensorProto.FLOAT))
    else:
        nodes.append(
            helper.make_node(
                "DequantizeLinear",
                ["x_q", "x_scale", "x_zp"] if not omit_act_zp else ["x_q", "x_scale"],
                ["x_dq"],
                name="act_dq",
            )
        )
    nodes += [
        helper.make_node(
            "DequantizeLinear", ["w_q", "w_scale", "w_zp"], ["w"], name="weight_dq", axis=weight_axis
        ),
        helper.make_node("MatMul", ["x_dq", "w"], ["y"], name="proj"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, K])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, N])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def rules(model: onnx.ModelProto) -> set[tuple[str, str]]:
    return {(f.rule, f.node) for f in lint_model(model)}


def test_good_graph_is_clean_and_runs():
    import onnxruntime as ort

    model = qdq_graph()
    onnx.checker.check_model(model, full_check=True)
    assert lint_model(model) == []
    ort.InferenceSession(model.SerializeToString()).run(None, {"x": np.ones((1, K), np.float32)})


@pytest.mark.parametrize(
    "knobs, rule, node",
    [
        (dict(zp_type=TensorProto.UINT8), "int8-not-uint8", "act_q"),
        (dict(act_zp=3), "zero-point-zero", "act_q"),
        (dict(weight_zp=1), "zero-point-zero", "weight_dq"),
        (dict(weight_scales=1), "per-channel-weights", "weight_dq"),
        (dict(weight_axis=0, weight_scales=K), "per-channel-axis", "weight_dq"),
        (dict(opset=13), "opset", ""),
        (dict(scale=-0.5), "scale-positive", "act_q"),
        (dict(scale=float("nan")), "scale-finite", "act_q"),
        (dict(drop_act_dq=True), "q-dq-pair", "act_q"),
        (dict(omit_act_zp=True), "zero-point-type", "act_q"),
    ],
)
def test_each_broken_rule_names_its_node(knobs, rule, node):
    found = rules(qdq_graph(**knobs))
    assert (rule, node) in found, found


def test_non_zero_zero_point_also_named_on_dequantize():
    found = [(f.rule, f.node) for f in lint_model(qdq_graph(act_zp=5))]
    assert ("zero-point-zero", "act_q") in found and ("zero-point-zero", "act_dq") in found


def _drop_attr(model: onnx.ModelProto, node_name: str, attr: str) -> onnx.ModelProto:
    node = next(n for n in model.graph.node if n.name == node_name)
    keep = [a for a in node.attribute if a.name != attr]
    del node.attribute[:]
    node.attribute.extend(keep)
    return model


def test_per_channel_without_axis_is_an_error():
    """ONNX's default axis is 1 but TensorRT's parser uses 0: a per-channel Q/DQ must say its axis."""
    model = _drop_attr(qdq_graph(), "weight_dq", "axis")
    assert ("per-channel-axis", "weight_dq") in rules(model)
    assert "axis" in str(next(f for f in lint_model(model) if f.rule == "per-channel-axis"))


def test_int8_dequantize_without_zero_point_is_valid():
    model = qdq_graph()
    dq = next(n for n in model.graph.node if n.name == "weight_dq")
    del dq.input[2:]  # the int8 initializer gives the type; zero point 0 by default
    onnx.checker.check_model(model, full_check=True)
    assert errors(lint_model(model)) == []


def test_per_tensor_weight_scales_are_valid():
    found = lint_model(qdq_graph(weight_scales=1))
    assert errors(found) == [] and [f.severity for f in found] == ["warning"]


def _weighted(op: str, quantize_input: bool, quantize_weight: bool = True) -> onnx.ModelProto:
    """x (-> Q -> DQ) -> op(W (int8 -> DQ, per channel) or float W) -> y, for MatMul, Gemm and Conv."""
    rng = np.random.default_rng(1)
    shape_w, axis, x_shape = {
        "MatMul": ((K, N), 1, [1, K]),
        "Gemm": ((N, K), 0, [1, K]),
        "Conv": ((N, 3, 3, 3), 0, [1, 3, 8, 8]),
    }[op]
    n_out = shape_w[axis]
    inits = [
        numpy_helper.from_array(np.array(0.02, np.float32), "x_scale"),
        numpy_helper.from_array(np.array(0, np.int8), "x_zp"),
        numpy_helper.from_array(np.full(n_out, 0.01, np.float32), "w_scale"),
        numpy_helper.from_array(np.zeros(n_out, np.int8), "w_zp"),
    ]
    nodes = []
    x = "x"
    if quantize_input:
        nodes += [
            helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zp"], ["x_q"], name="act_q"),
            helper.make_node("DequantizeLinear", ["x_q", "x_scale", "x_zp"], ["x_dq"], name="act_dq"),
        ]
        x = "x_dq"
    if quantize_weight:
        inits.append(numpy_helper.from_array(rng.integers(-127, 127, shape_w).astype(np.int8), "w_q"))
        nodes.append(
            helper.make_node(
                "DequantizeLinear", ["w_q", "w_scale", "w_zp"], ["w"], name="weight_dq", axis=axis
            )
        )
    else:
        inits.append(numpy_helper.from_array(rng.standard_normal(shape_w).astype(np.float32), "w"))
    attrs = {"transB": 1} if op == "Gemm" else {}
    nodes.append(helper.make_node(op, [x, "w"], ["y"], name="layer", **attrs))
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("op", ["MatMul", "Gemm", "Conv"])
def test_only_the_weight_quantized_runs_in_float(op):
    import onnxruntime as ort

    weight_only = _weighted(op, quantize_input=False)
    assert ("partial-qdq", "layer") in rules(weight_only)
    assert ("partial-qdq", "layer") in rules(_weighted(op, quantize_input=True, quantize_weight=False))
    both = _weighted(op, quantize_input=True)
    assert errors(lint_model(both)) == []
    x = np.ones([1, 3, 8, 8] if op == "Conv" else [1, K], np.float32)
    ort.InferenceSession(both.SerializeToString()).run(None, {"x": x})  # a real, runnable graph


def _attention(scores_q: tuple[bool, bool], pv_q: tuple[bool, bool]) -> onnx.ModelProto:
    """q, k, v -> MatMul(q, k^T) -> Mul -> Softmax -> MatMul(., v); each MatMul input optionally Q/DQ."""
    inits = [
        numpy_helper.from_array(np.array(0.05, np.float32), "s"),
        numpy_helper.from_array(np.array(0, np.int8), "zp"),
        numpy_helper.from_array(np.array(0.125, np.float32), "scale"),
    ]
    nodes = [helper.make_node("Transpose", ["k"], ["kt"], name="kt", perm=[0, 2, 1])]

    def maybe_q(t: str, on: bool) -> str:
        if not on:
            return t
        nodes.append(helper.make_node("QuantizeLinear", [t, "s", "zp"], [f"{t}_q"], name=f"q_{t}"))
        nodes.append(helper.make_node("DequantizeLinear", [f"{t}_q", "s", "zp"], [f"{t}_dq"], name=f"dq_{t}"))
        return f"{t}_dq"

    a, b = maybe_q("q", scores_q[0]), maybe_q("kt", scores_q[1])
    nodes += [
        helper.make_node("MatMul", [a, b], ["scores"], name="qk"),
        helper.make_node("Mul", ["scores", "scale"], ["scaled"], name="scale_mul"),
        helper.make_node("Softmax", ["scaled"], ["probs"], name="softmax", axis=-1),
    ]
    c, d = maybe_q("probs", pv_q[0]), maybe_q("v", pv_q[1])
    nodes.append(helper.make_node("MatMul", [c, d], ["out"], name="pv"))
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4, 8]) for n in ("q", "k", "v")]
    graph = helper.make_graph(
        nodes, "attn", io, [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4, 8])], inits
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize(
    "scores_q, pv_q, expected",
    [
        ((False, False), (False, False), set()),  # float core: fp16 fused attention
        ((True, True), (True, True), set()),  # fully quantized core
        ((True, True), (False, False), {("attention-qdq", "qk")}),  # the half-quantized core the review found
        ((False, True), (False, False), {("attention-qdq", "qk")}),  # K only (quantized before Transpose)
        ((True, True), (True, False), {("attention-qdq", "pv")}),
    ],
)
def test_attention_core_both_or_neither(scores_q, pv_q, expected):
    found = {(f.rule, f.node) for f in errors(lint_model(_attention(scores_q, pv_q)))}
    assert found == expected


def test_negative_axis_is_normalised_for_matmul_weights():
    assert lint_model(qdq_graph(weight_axis=-1)) == []


def test_onnxruntime_dynamic_quantization_is_rejected(tmp_path):
    """ORT's dynamic INT8 (a real CPU scheme) uses operator-format integer ops TensorRT cannot parse."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((16, 16)).astype(np.float32), "w")
    model = helper.make_model(
        helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "g", [x], [y], [w]),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    onnx.save(model, tmp_path / "fp32.onnx")
    quantize_dynamic(tmp_path / "fp32.onnx", tmp_path / "dyn.onnx", weight_type=QuantType.QInt8)
    found = {f.rule for f in lint_file(tmp_path / "dyn.onnx")}
    assert "qoperator" in found


def test_cli(tmp_path, capsys):
    good, bad = tmp_path / "good.onnx", tmp_path / "bad.onnx"
    onnx.save(qdq_graph(), good)
    onnx.save(qdq_graph(zp_type=TensorProto.UINT8, act_zp=128), bad)
    assert main(["lint-trt", str(good)]) == 0
    assert "OK (0 errors" in capsys.readouterr().out
    assert main(["lint-trt", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "node 'act_q'" in out and "int8-not-uint8" in out and "zero-point-zero" in out and "FAIL" in out
    assert main(["lint-trt", str(tmp_path / "missing.onnx")]) == 2
    (tmp_path / "junk.onnx").write_bytes(b"not a protobuf at all \x00\xff")
    assert main(["lint-trt", str(tmp_path / "junk.onnx")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(str(tmp_path) in line for line in err)


def _mlp(rng: np.random.Generator) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])
    w1, w2 = (
        numpy_helper.from_array(rng.standard_normal((16, 16)).astype(np.float32), n) for n in ("w1", "w2")
    )
    nodes = [
        helper.make_node("MatMul", ["image", "w1"], ["h"], name="fc1"),
        helper.make_node("Relu", ["h"], ["r"], name="act"),
        helper.make_node("MatMul", ["r", "w2"], ["y"], name="fc2"),
    ]
    return helper.make_model(
        helper.make_graph(nodes, "mlp", [x], [y], [w1, w2]), opset_imports=[helper.make_opsetid("", 17)]
    )


@pytest.mark.parametrize("symmetric", [True, False])
def test_real_nncf_output(symmetric):
    """NNCF's symmetric scheme (what jetson exports use; one-sided activations rewritten from uint8 to int8)
    is clean and still accurate; its asymmetric CPU scheme breaks TensorRT's rules."""
    import onnxruntime as ort
    from edge_vsd.export.quantize import CPU, JETSON, quantize_int8

    rng = np.random.default_rng(0)
    fp32 = _mlp(rng)
    calib = np.abs(rng.standard_normal((8, 16))).astype(np.float32)  # one-sided input: NNCF picks uint8
    q = quantize_int8(fp32, calib, JETSON if symmetric else CPU)
    found = {f.rule for f in lint_model(q)}
    if symmetric:
        assert found == set()
        x = np.abs(rng.standard_normal((1, 16))).astype(np.float32)
        # as the runtime simulates a jetson graph on a CPU: Q/DQ as float fake-quant, not ORT's fused
        # integer kernels, which saturate on CPUs without VNNI (TensorRT accumulates in int32)
        options = ort.SessionOptions()
        options.add_session_config_entry("session.disable_quant_qdq", "1")
        ref, out = (
            ort.InferenceSession(m.SerializeToString(), options).run(None, {"image": x})[0] for m in (fp32, q)
        )
        assert float((ref * out).sum() / np.linalg.norm(ref) / np.linalg.norm(out)) > 0.99
    else:
        assert found & {"zero-point-zero", "int8-not-uint8"}, found


def test_an_artifact_folder_is_linted_through_its_encoder_onnx(tmp_path, capsys):
    art = tmp_path / "art"
    art.mkdir()
    onnx.save(qdq_graph(), str(art / "encoder.onnx"))
    assert main(["lint-trt", str(art)]) == 0
    assert "OK (0 errors" in capsys.readouterr().out
    (art / "encoder.onnx").unlink()
    assert main(["lint-trt", str(art)]) == 2
    assert "a folder without encoder.onnx" in capsys.readouterr().err

"""TensorRT explicit-quantization linter on hand-built Q/DQ graphs (good and broken on purpose), on real
NNCF/ONNX Runtime outputs, and through `edge-vsd lint-trt`."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from edge_vsd.export.trt_lint import lint_file, lint_model
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
        ref, out = (ort.InferenceSession(m.SerializeToString()).run(None, {"image": x})[0] for m in (fp32, q))
        assert float((ref * out).sum() / np.linalg.norm(ref) / np.linalg.norm(out)) > 0.99
    else:
        assert found & {"zero-point-zero", "int8-not-uint8"}, found

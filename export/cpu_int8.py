"""CPU INT8: build candidate schemes and gate their fidelity; `edge-vsd tune` (run by export as its last
step, and again on the robot) times them. Which wins depends on the ISA (AVX2 vs AVX-512 VNNI/AMX vs ARM
dot-product) and the engine, so the artifact carries every graph that passed."""

from __future__ import annotations

import math
import platform
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from edge_vsd.export import gate, parity
from edge_vsd.runtimes.cpuinfo import ISA_FLAGS, read_cpuinfo

# Where each graph lives in a cpu-int8 artifact (encoder.onnx holds the default graph until tune decides).
GRAPH_FILES = {
    "nncf_static_qdq": "encoder.nncf_qdq.onnx",
    "openvino_nncf_qdq": "encoder.nncf_qdq.onnx",
    "ort_dynamic_int8": "encoder.ort_dynamic.onnx",
    "openvino_ir_int8": "encoder.ov_int8.xml",  # OpenVINO IR: the .xml graph and its .bin weights
    "openvino_ir_int8_symmetric": "encoder.ov_int8_sym.xml",
    "openvino_ir_int8_symmetric_nosq": "encoder.ov_int8_sym_nosq.xml",
}
FP32_FILE = "encoder.fp32.onnx"
FP32_REFERENCE_NAMES = {"onnxruntime": "fp32_reference", "openvino": "fp32_reference_openvino"}
FP32_NAMES = {"onnxruntime": "fp32_onnxruntime", "openvino": "fp32_openvino"}


@dataclass
class Candidate:
    """One INT8 scheme: its model, the backend that runs it, and what it measured."""

    name: str
    backend: str  # "onnxruntime" or "openvino"
    model: Any = None  # onnx.ModelProto, or an openvino.Model for the IR candidate
    error: str | None = None
    latency_ms: float | None = None
    fidelity: dict[str, float] = field(default_factory=dict)
    passed: bool = False
    notes: dict = field(default_factory=dict)

    def record(self) -> dict:
        return {
            "name": self.name,
            "backend": self.backend,
            "latency_ms": self.latency_ms,
            "fidelity": self.fidelity,
            "passed_gate": self.passed,
            "error": self.error,
            **self.notes,
        }


def cpu_isa() -> dict:
    """CPU model and the SIMD flags that decide INT8 speed, from /proc/cpuinfo (Linux)."""
    cpu = read_cpuinfo()
    return {
        "model": cpu["model"] or platform.processor() or platform.machine(),
        "machine": platform.machine(),
        "flags": [f for f, present in cpu["isa"].items() if present and f in ISA_FLAGS],
    }


def ort_dynamic_int8(fp32: onnx.ModelProto) -> onnx.ModelProto:
    """ONNX Runtime dynamic quantization: int8 weights (per channel), activation ranges computed per call.
    Only MatMuls: ConvInteger (the patch embedding) has no fast fused kernel and is one layer of ~50."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # it logs a pre-processing suggestion on the root logger
    try:
        with tempfile.TemporaryDirectory() as tmp:
            src, dst = Path(tmp, "fp32.onnx"), Path(tmp, "int8.onnx")
            onnx.save(fp32, str(src))
            quantize_dynamic(
                src, dst, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"], per_channel=True
            )
            return onnx.load(str(dst))
    finally:
        root.setLevel(level)


def ir_schemes(scheme: Any) -> dict[str, Any]:
    """The IR candidates: the ONNX candidate's scheme; symmetric int8 activations with the attention core in
    float (OpenVINO ran symmetric in 9.8-10.2 against 10.8-11.2 ms asymmetric, ViT-S/16 on a 2-core AMX
    Xeon, and the float core in bf16 ties the int8 one at better fidelity; README); and that without
    SmoothQuant, faster (fewer scaling nodes) but only where the gate says the weights have no outlier
    channels that need it. Tune picks."""
    symmetric = replace(scheme, name=f"{scheme.name}_symmetric", symmetric=True, float_attention=True)
    schemes = {"openvino_ir_int8": scheme, "openvino_ir_int8_symmetric": symmetric}
    if scheme.smooth_quant_alpha >= 0:
        schemes["openvino_ir_int8_symmetric_nosq"] = replace(
            symmetric, name=f"{symmetric.name}_nosq", smooth_quant_alpha=-1.0
        )
    return schemes


def openvino_ir_int8(fp32: onnx.ModelProto, calib: np.ndarray, scheme: Any) -> Any:
    """NNCF on the OpenVINO model itself (read from the fp32 ONNX) with `scheme` (TRANSFORMER placement,
    SmoothQuant, per-channel weights). OpenVINO ran this IR faster than the same scheme's Q/DQ ONNX graph
    in one tune of ViT-S/16 on an AMX Xeon: 12.0 against 13.0 ms (11.5 against 12.1 with bf16 float parts;
    README)."""
    from edge_vsd.export import quantize

    # OpenVINO keeps the ONNX node names, so the attention MatMuls are found on the ONNX graph
    ignored = quantize.attention_matmuls(fp32) if scheme.float_attention else None
    return quantize.quantize_int8(_openvino_model(fp32), calib, scheme, ignored=ignored)


def _openvino_model(model: onnx.ModelProto) -> Any:
    """The ONNX graph as an openvino.Model (read through a temporary file)."""
    import openvino as ov

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "model.onnx")
        onnx.save(model, str(path))
        return ov.Core().read_model(str(path))


def save_graph(model: Any, path: Path) -> None:
    """An ONNX graph with onnx.save, an OpenVINO model as IR (.xml + .bin beside it, float weights kept)."""
    if isinstance(model, onnx.ModelProto):
        onnx.save(model, str(path))
    else:
        import openvino as ov

        ov.save_model(model, str(path), compress_to_fp16=False)


def _openvino_runner(model: Any):
    """OpenVINO compiles the NNCF Q/DQ graph (or IR model) into its own INT8 kernels (FakeQuantize fusion)."""
    import openvino as ov

    if isinstance(model, onnx.ModelProto):
        model = _openvino_model(model)
    compiled = ov.Core().compile_model(model, "CPU")

    def run(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        res = compiled(x)
        return res[compiled.output("cls")], res[compiled.output("patches")]

    return run


def score(cand: Candidate, heldout: np.ndarray, ref: tuple[np.ndarray, np.ndarray], threshold: float) -> None:
    """Fidelity of `cand` against the fp32 reference on held-out frames, and whether it passes the gate.
    (Speed is measured later, through the runtime, by `edge-vsd tune`.)"""
    if cand.backend == "openvino":
        run = _openvino_runner(cand.model)
        outs = [run(heldout[i : i + 1]) for i in range(len(heldout))]
        out = (np.concatenate([o[0] for o in outs]), np.concatenate([o[1] for o in outs]))
    else:
        out = parity.run_session(parity.ort_session(cand.model.SerializeToString()), heldout)
    cand.fidelity = parity.compare(ref, out)
    cand.passed = gate.passes(cand.fidelity, threshold)


def bf16_variant(cand: dict) -> dict:
    """The same OpenVINO INT8 graph with its float parts (softmax, LayerNorm, GELU, unquantized MatMuls) in
    bf16: AMX/AVX-512 BF16 CPUs run them faster, others run f32. Gated and timed like any candidate."""
    return {**cand, "name": f"{cand['name']}_bf16", "options": {"precision_hint": "bf16"}}


def fp32_candidates(file: str, names: dict[str, str], choosable: bool) -> list[dict]:
    """The fp32 graph on ONNX Runtime and, where installed, OpenVINO (1.65x faster on some CPUs).
    In an INT8 artifact they are references (`choosable` False): tune times them, never picks them."""
    engines = ["onnxruntime"] + (["openvino"] if openvino_available() else [])
    return [
        {"name": names[e], "file": file, "engine": e, "precision": "fp32", "choosable": choosable}
        for e in engines
    ]


def openvino_available() -> bool:
    try:
        import openvino  # noqa: F401
    except Exception:  # noqa: BLE001
        return False
    return True


def pick(candidates: list[Candidate]) -> Candidate | None:
    """The fastest candidate that passed the gate."""
    ok = [c for c in candidates if c.passed and c.latency_ms is not None]
    return min(ok, key=lambda c: c.latency_ms if c.latency_ms is not None else math.inf) if ok else None

"""CPU INT8: build candidate schemes, measure latency and fidelity on this machine, keep the fastest that
passes the gate. Which wins depends on the ISA (AVX2 vs AVX-512 VNNI/AMX vs ARM dot-product)."""

from __future__ import annotations

import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from edge_vsd.export import gate, parity
from edge_vsd.runtimes.cpuinfo import ISA_FLAGS, read_cpuinfo


@dataclass
class Candidate:
    """One INT8 scheme: its model, the backend that runs it, and what it measured."""

    name: str
    backend: str  # "onnxruntime" or "openvino"
    model: onnx.ModelProto | None = None
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


def time_interleaved(
    runners: dict[str, Callable[[], object]], runs: int, warmup: int = 3
) -> dict[str, float]:
    """Median wall time (ms) of each runner, measured round-robin so that load from other processes on a
    shared machine hits every candidate alike."""
    for run in runners.values():
        for _ in range(warmup):
            run()
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(runs):
        for name, run in runners.items():
            t = time.perf_counter()
            run()
            times[name].append((time.perf_counter() - t) * 1e3)
    return {name: round(statistics.median(ts), 3) for name, ts in times.items()}


def _openvino_runner(model: onnx.ModelProto):
    """OpenVINO compiles the NNCF Q/DQ graph into its own INT8 kernels (FakeQuantize fusion)."""
    import openvino as ov

    core = ov.Core()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "model.onnx")
        onnx.save(model, str(path))
        compiled = core.compile_model(core.read_model(str(path)), "CPU")

    def run(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        res = compiled(x)
        return res[compiled.output("cls")], res[compiled.output("patches")]

    return run


def prepare(cand: Candidate, heldout: np.ndarray, ref: tuple[np.ndarray, np.ndarray], threshold: float):
    """Score `cand` against the fp32 reference on held-out frames; return a no-argument runner on one
    static-batch input for timing."""
    if cand.backend == "openvino":
        run = _openvino_runner(cand.model)
        outs = [run(heldout[i : i + 1]) for i in range(len(heldout))]
        out = (np.concatenate([o[0] for o in outs]), np.concatenate([o[1] for o in outs]))
        one = np.ascontiguousarray(heldout[:1])
        runner = lambda: run(one)  # noqa: E731
    else:
        session = parity.ort_session(cand.model.SerializeToString())
        out = parity.run_session(session, heldout)
        inp = session.get_inputs()[0]
        batch = inp.shape[0] if isinstance(inp.shape[0], int) else 1
        one = np.ascontiguousarray(np.repeat(heldout[:1], batch, axis=0))
        runner = lambda: session.run(None, {inp.name: one})  # noqa: E731
    cand.fidelity = parity.compare(ref, out)
    cand.passed = gate.passes(cand.fidelity, threshold)
    return runner


def openvino_available() -> bool:
    try:
        import openvino  # noqa: F401
    except Exception:  # noqa: BLE001
        return False
    return True


def pick(candidates: list[Candidate]) -> Candidate | None:
    """The fastest candidate that passed the gate."""
    ok = [c for c in candidates if c.passed and c.latency_ms is not None]
    return min(ok, key=lambda c: c.latency_ms) if ok else None

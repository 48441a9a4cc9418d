"""onnxsim pass (constant folding, shape inference, dead-node removal), checked by loading it in ORT."""

from __future__ import annotations

from pathlib import Path

import onnx


def simplify_onnx(src: str | Path, dst: str | Path) -> dict[str, int]:
    """Simplify `src` into `dst`; raise RuntimeError if onnxsim cannot prove the result equivalent or ONNX
    Runtime cannot load it. Returns node counts before and after."""
    import onnxruntime as ort
    import onnxsim

    model = onnx.load(str(src))
    simplified, ok = onnxsim.simplify(model)
    if not ok:
        raise RuntimeError(f"onnxsim could not validate the simplified graph of {src}")
    onnx.checker.check_model(simplified)
    onnx.save(simplified, str(dst))
    ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"])
    return {"nodes_before": len(model.graph.node), "nodes_after": len(simplified.graph.node)}

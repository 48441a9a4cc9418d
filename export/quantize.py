"""NNCF post-training INT8 quantization of the ONNX encoder, with an ignored-scope ladder for retries."""

from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

# What was measured (vit_tiny@112, 32 vtest calibration frames, 16 held-out, mean CLS / patch cosine vs fp32).
# A random-init ViT passes easily (0.9996 / 0.9999 with every setting), so the settings were chosen on ViTs
# with the LayerNorm outlier channels trained ViTs have (4 channels per LayerNorm scaled x40):
#   SmoothQuant off 0.990 / 0.987 (misses the gate) | alpha 0.95: 0.996 / 0.994 | alpha 0.5: 0.998 / 0.997
#   fast bias correction: +0.0002..0.0006 CLS cosine, one cheap pass -> kept
#   ladder at alpha 0.5: none 0.9982 -> +patch_embed 0.9988 -> +first/last block 0.9997 -> +attention
#   MatMuls 0.9997 (+0.0003 on another seed); first/last block is the step that matters.
# Ignored-scope ladder, tried in order until the fidelity gate passes. Each level keeps more of the layers a
# ViT is most sensitive to in float: the patch embedding (sees raw pixels, errors reach every token), the
# first and last blocks (the first sets the residual stream, the last writes the output features directly),
# then the activation x activation attention MatMuls (q@k^T feeds a softmax whose peaks int8 clips).
LADDER = ("none", "patch_embed", "patch_embed+first_last_block", "patch_embed+first_last_block+attn_matmul")


@dataclass(frozen=True)
class Scheme:
    """NNCF settings for one target."""

    name: str
    symmetric: bool  # True: symmetric signed int8 activations (TensorRT); False: asymmetric (x86 U8S8)
    smooth_quant_alpha: float  # < 0 disables SmoothQuant
    fast_bias_correction: bool
    float_attention: bool = False  # keep the MatMul -> Softmax -> MatMul attention core in float
    fp16_simulation: bool = False  # gate the fp16 variant (float layers in half, as TensorRT runs them)


# Jetson/TensorRT: explicit quantization only accepts symmetric int8 (zero point 0) Q/DQ.
# Attention placement: NNCF's transformer patterns quantize q@k^T (K even on the packed qkv tensor, before
# Gather/Transpose) but not softmax@V, a half-quantized core for which TensorRT's fused attention does not
# apply. NVIDIA's placement (TensorRT-Model-Optimizer) is both MatMuls fully quantized (softmax output too)
# or the whole core in float (its disable_mha_qdq; its int8 default for sequences > 512 tokens). We take the
# float core: TensorRT 10 then fuses MatMul-Softmax-MatMul into its fp16 attention kernel (the FP16 builder
# flag, or fp16 tensors when strongly typed); those two MatMuls are ~10% of a ViT-S/16@224's FLOPs (2*N^2*d
# vs 12*N*d^2 for N=197, d=384), most of the int8 gain is in the projections and MLP, and int8 softmax
# probabilities (range [0, 1], 1/127 steps) cost accuracy the gate would have to absorb. lint-trt checks it.
JETSON = Scheme(
    "nncf_static_qdq_symmetric",
    symmetric=True,
    smooth_quant_alpha=0.5,
    fast_bias_correction=True,
    float_attention=True,
    fp16_simulation=True,
)
# CPU: asymmetric uint8 activations use all 256 levels on one-sided tensors (post-GELU) and map onto ONNX
# Runtime's U8S8 x86 kernels; fidelity was within +-0.002 of symmetric in the runs above (either direction).
CPU = Scheme("nncf_static_qdq", symmetric=False, smooth_quant_alpha=0.5, fast_bias_correction=True)


def sensitive_nodes(model: onnx.ModelProto, level: str) -> list[str]:
    """Node names to keep in float for a ladder level, found from the graph's structure (not from exporter
    names): blocks are delimited by LayerNormalization nodes in topological order (2 per block + final)."""
    if level not in LADDER:
        raise ValueError(f"unknown ignored-scope level {level!r}")
    nodes = list(model.graph.node)
    names: list[str] = []
    if "patch_embed" in level:
        names += [n.name for n in nodes if n.op_type == "Conv"][:1]
    if "first_last_block" in level:
        ln = [i for i, n in enumerate(nodes) if n.op_type == "LayerNormalization"]
        if len(ln) >= 5:
            ranges = [(ln[0], ln[2]), (ln[-3], ln[-1])]
            names += [
                nodes[i].name
                for a, b in ranges
                for i in range(a, b)
                if nodes[i].op_type in ("MatMul", "Gemm")
            ]
    if "attn_matmul" in level:
        names += attention_matmuls(model)
    return sorted(set(names))


def attention_matmuls(model: onnx.ModelProto) -> list[str]:
    """Names of the activation x activation MatMuls (q@k^T and softmax@V): neither input is a constant."""
    nodes = list(model.graph.node)
    consts = {i.name for i in model.graph.initializer} | {
        o for n in nodes if n.op_type == "Constant" for o in n.output
    }
    return [n.name for n in nodes if n.op_type == "MatMul" and not (set(n.input) & consts)]


def quantize_int8(
    model: Any,
    calib: np.ndarray,
    scheme: Scheme,
    batch: int = 1,
    ignored: list[str] | None = None,
) -> Any:
    """Q/DQ INT8 model calibrated on normalised NCHW frames `calib` (fed `batch` at a time). `model` is an
    onnx.ModelProto (returns Q/DQ ONNX) or an openvino.Model (returns it with FakeQuantize nodes)."""
    import nncf
    from nncf.common.quantization.structs import QuantizationScheme
    from nncf.quantization.advanced_parameters import (
        AdvancedQuantizationParameters,
        AdvancedSmoothQuantParameters,
        QuantizationParameters,
    )

    items = [calib[i : i + batch] for i in range(0, len(calib) - batch + 1, batch)]
    if isinstance(model, onnx.ModelProto):
        dataset = nncf.Dataset(items, lambda x: {"image": np.ascontiguousarray(x, np.float32)})
    else:  # an OpenVINO model takes its one input positionally
        dataset = nncf.Dataset(items, lambda x: np.ascontiguousarray(x, np.float32))
    advanced = AdvancedQuantizationParameters(
        # SmoothQuant moves per-channel activation outliers (the LayerNorm outputs of ViTs have a few huge
        # channels) into the following MatMul's weights, which per-channel weight scales absorb. Only MatMul
        # inputs are smoothed; the Conv patch embedding sees pixels without outliers. alpha 0.5 (the
        # SmoothQuant paper's default) beat NNCF's transformer default 0.95 in the measurements above.
        smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=scheme.smooth_quant_alpha, convolution=-1),
        # Weights: symmetric signed int8, one scale per output channel (TensorRT's requirement; also more
        # accurate than per-tensor for ViT projections whose rows differ in scale by >10x).
        weights_quantization_params=QuantizationParameters(
            mode=QuantizationScheme.SYMMETRIC, per_channel=True
        ),
    )
    with _quiet():
        quantized = nncf.quantize(
            model,
            dataset,
            subset_size=len(items),
            # TRANSFORMER: NNCF's transformer patterns (fused LayerNorm, GELU, attention) decide where
            # quantizers go; e.g. it leaves softmax outputs and the residual adds unquantized.
            model_type=nncf.ModelType.TRANSFORMER,
            # PERFORMANCE = symmetric int8 activations and weights (NNCF's ONNX backend emits int8 zero
            # points for them; forcing signedness conflicts with its HW config, so the TensorRT linter checks
            # it instead); MIXED = asymmetric activations.
            preset=nncf.QuantizationPreset.PERFORMANCE if scheme.symmetric else nncf.QuantizationPreset.MIXED,
            # Fast bias correction shifts each quantized layer's bias by the mean output error on the
            # calibration set; cheap (one pass) and it removes the systematic offset INT8 adds to features.
            fast_bias_correction=scheme.fast_bias_correction,
            ignored_scope=nncf.IgnoredScope(names=list(ignored or []), validate=False),
            advanced_parameters=advanced,
        )
    if scheme.symmetric and isinstance(model, onnx.ModelProto):
        return canonicalize_axes(to_signed_symmetric(quantized))
    return quantized


def to_signed_symmetric(model: onnx.ModelProto) -> onnx.ModelProto:
    """NNCF gives one-sided activations (ReLU outputs, non-negative inputs) uint8 quantizers even in its
    symmetric preset, and forcing signedness conflicts with its HW config. TensorRT needs int8 with zero
    point 0, so rewrite each uint8 quantizer to the int8 one covering the same range: scale * max(zp,
    255 - zp) / 127 (one bit less resolution there; the gate then scores what TensorRT will run)."""
    from onnx import TensorProto, numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    done: set[str] = set()
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear") or len(node.input) < 3:
            continue
        scale_name, zp_name = node.input[1], node.input[2]
        zp_init = inits.get(zp_name)
        if (
            zp_name in done
            or zp_init is None
            or zp_init.data_type != TensorProto.UINT8
            or scale_name not in inits
        ):
            continue
        zp = numpy_helper.to_array(zp_init).astype(np.float32)
        scale = numpy_helper.to_array(inits[scale_name]).astype(np.float32)
        new_scale = (scale * np.maximum(zp, 255.0 - zp) / 127.0).astype(np.float32)
        inits[scale_name].CopyFrom(numpy_helper.from_array(new_scale, scale_name))
        inits[zp_name].CopyFrom(numpy_helper.from_array(np.zeros(zp.shape, np.int8), zp_name))
        done.add(zp_name)
    signed_outputs = {
        n.output[0]
        for n in model.graph.node
        if n.op_type == "QuantizeLinear" and len(n.input) > 2 and n.input[2] in done
    }
    for vi in model.graph.value_info:
        if vi.name in signed_outputs:
            vi.type.tensor_type.elem_type = TensorProto.INT8
    return model


def canonicalize_axes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Rewrite negative per-channel `axis` attributes of Q/DQ nodes on constants to non-negative ones."""
    ranks = {i.name: len(i.dims) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and node.input[0] in ranks:
            for attr in node.attribute:
                if attr.name == "axis" and attr.i < 0:
                    attr.i += ranks[node.input[0]]
    return model


@contextlib.contextmanager
def _quiet():
    """NNCF prints progress bars and INFO lines; the export CLI prints its own stage lines."""
    logger = logging.getLogger("nncf")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)


@dataclass
class Attempt:
    """One ladder level: what stayed in float and how close the result came to fp32."""

    level: str
    ignored: list[str]
    metrics: dict  # what the gate scored: the fp16 simulation when the scheme asks for it
    qdq_fp32: dict | None = None  # the same Q/DQ graph with its float layers in float32 (fp16 simulation on)


def quantize_gated(
    model: onnx.ModelProto,
    calib: np.ndarray,
    heldout: np.ndarray,
    ref: tuple[np.ndarray, np.ndarray],
    scheme: Scheme,
    threshold: float,
    batch: int = 1,
    ladder: tuple[str, ...] = LADDER,
) -> tuple[onnx.ModelProto | None, list[Attempt]]:
    """Quantize, score against `ref` (fp32 features of `heldout`), and climb the ignored-scope ladder until
    the gate passes. Returns (model or None when every level missed, attempts)."""
    from edge_vsd.export import gate, parity

    attempts: list[Attempt] = []
    always = attention_matmuls(model) if scheme.float_attention else []
    for level in ladder:
        ignored = sorted(set(sensitive_nodes(model, level)) | set(always))
        q = quantize_int8(model, calib, scheme, batch, ignored)
        metrics = parity.compare(ref, parity.run_session(parity.ort_session(q.SerializeToString()), heldout))
        attempt = Attempt(level, ignored, metrics)
        if scheme.fp16_simulation:
            # TensorRT runs the layers left in float in half precision (--fp16, or fp16 tensors when strongly
            # typed): score that graph, whose every float tensor is rounded to fp16 between ops in ORT.
            from edge_vsd.export.fp16 import convert_qdq_to_fp16

            half = convert_qdq_to_fp16(q).SerializeToString()
            attempt.qdq_fp32 = metrics
            attempt.metrics = parity.compare(ref, parity.run_session(parity.ort_session(half), heldout))
        attempts.append(attempt)
        metrics = attempt.metrics
        if gate.passes(metrics, threshold):
            return q, attempts
    return None, attempts

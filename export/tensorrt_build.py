"""TensorRT engine build (only where `tensorrt` imports and a GPU exists) and the trtexec command for
building on the board, where engines must be built (plans are tied to the TensorRT version and GPU)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edge_vsd.runtimes import trt_support
from edge_vsd.runtimes.encoder import DEFAULT_MAX_BATCH
from edge_vsd.runtimes.errors import RuntimeInputError

WORKSPACE_BYTES = 1 << 30
# Dynamic-batch profile: edge_vsd.runtimes feeds dynamic engines chunks of DEFAULT_MAX_BATCH frames, so that
# is both the largest shape and the one TensorRT tunes its tactics for (opt). Smaller batches still run.
DYNAMIC_MAX_BATCH = DEFAULT_MAX_BATCH
DYNAMIC_OPT_BATCH = DEFAULT_MAX_BATCH
INPUT_NAME = "image"
# The strongly typed (TensorRT >= 11) build reads this fp16 Q/DQ variant of encoder.onnx: types come from
# the graph there, so float layers only run in half precision when their tensors are float16.
STRONGLY_TYPED_ONNX = "encoder.fp16.onnx"


def default_timing_cache(version: str) -> Path:
    """Per-user timing cache, one per TensorRT version: repeated exports skip re-timing known tactics."""
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "edge-vsd" / f"tensorrt-{version}-timing.cache"


def tensorrt_status() -> tuple[Any | None, str]:
    """(tensorrt module, "") when an engine can be built here, else (None, reason)."""
    try:
        trt = trt_support.import_tensorrt()
    except RuntimeInputError as exc:
        return None, str(exc)
    try:
        builder = trt.Builder(trt.Logger(trt.Logger.ERROR))
        if builder is None:
            return None, "no usable CUDA GPU for TensorRT"
    except Exception as exc:  # noqa: BLE001 - no GPU/driver: TensorRT raises at builder creation
        first = str(exc).splitlines()[0][:80] if str(exc) else type(exc).__name__
        return None, f"no CUDA GPU for TensorRT ({first})"
    return trt, ""


def profile_shapes(
    image_size: tuple[int, int],
) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int], tuple[int, int, int, int]]:
    """(min, opt, max) input shapes of the dynamic-batch optimisation profile."""
    h, w = image_size
    return (1, 3, h, w), (DYNAMIC_OPT_BATCH, 3, h, w), (DYNAMIC_MAX_BATCH, 3, h, w)


def _shapes(image_size: tuple[int, int], batch: int | None) -> str:
    if batch is not None:
        return ""
    lo, opt, hi = ("x".join(map(str, s)) for s in profile_shapes(image_size))
    return f" --minShapes={INPUT_NAME}:{lo} --optShapes={INPUT_NAME}:{opt} --maxShapes={INPUT_NAME}:{hi}"


def trtexec_command(
    precision: str,
    image_size: tuple[int, int],
    batch: int | None,
    onnx_name: str = "encoder.onnx",
    engine_name: str = "encoder.engine",
) -> str:
    """trtexec for TensorRT 10 (JetPack 6): --int8 lets the Q/DQ layers run int8 and --fp16 the layers
    left in float; fp16 artifacts are already fp16 in the graph."""
    flags = {"int8": " --int8 --fp16", "fp16": " --fp16", "fp32": ""}[precision]
    return (
        f"{trt_support.JETPACK_TRTEXEC} --onnx={onnx_name} --saveEngine={engine_name}{flags}"
        f"{_shapes(image_size, batch)} --timingCacheFile=timing.cache --skipInference"
    )


def strongly_typed_onnx(precision: str) -> str:
    """The file a strongly typed build reads: int8 artifacts carry an fp16 Q/DQ variant; fp16 artifacts are
    fp16 already and fp32 ones are meant to run in fp32."""
    return STRONGLY_TYPED_ONNX if precision == "int8" else "encoder.onnx"


def trtexec_command_strongly_typed(
    precision: str,
    image_size: tuple[int, int],
    batch: int | None,
    engine_name: str = "encoder.engine",
) -> str:
    """TensorRT >= 11 builds strongly typed networks: precisions come from the graph (Q/DQ, fp16 tensors),
    so int8 reads the fp16 variant. TensorRT 11 is not available for JetPack; this is for discrete GPUs."""
    onnx_name = strongly_typed_onnx(precision)
    return (
        f"trtexec --onnx={onnx_name} --saveEngine={engine_name} --stronglyTyped{_shapes(image_size, batch)}"
        " --timingCacheFile=timing.cache --skipInference"
    )


def build_on_device_text(precision: str, image_size: tuple[int, int], batch: int | None) -> str:
    """Contents of BUILD_ON_DEVICE.txt."""
    return (
        "# Build the TensorRT engine on the target board (engines are not portable across GPUs or\n"
        "# TensorRT versions). Run inside this artifact folder, then `edge-vsd register-engine .` to add\n"
        "# encoder.engine to manifest.json, `edge-vsd doctor .` to check the board, and `edge-vsd bench .`.\n"
        f"# Written for {trt_support.TARGET_JETPACK}; trtexec is not on PATH there:\n"
        f"{trtexec_command(precision, image_size, batch)}\n"
        "# TensorRT 11 and later (discrete GPUs only: no JetPack ships TensorRT 11). Strongly typed,\n"
        "# no --int8/--fp16 flags; the graph's types decide (int8 artifacts: the fp16 Q/DQ variant):\n"
        f"{trtexec_command_strongly_typed(precision, image_size, batch)}\n"
    )


def strongly_typed(major: int, precision: str) -> bool:
    """TensorRT 11 only builds strongly typed networks; on 10 fp32 is built strongly typed too (no flag lets a
    layer drop to half), int8/fp16 use the builder flags."""
    return major >= 11 or precision == "fp32"


def build_engine(
    onnx_path: str | Path,
    engine_path: str | Path,
    precision: str,
    image_size: tuple[int, int],
    batch: int | None,
    timing_cache: str | Path | None = None,
    typed_onnx_path: str | Path | None = None,
) -> dict[str, str]:
    """Parse the ONNX, build a serialized engine into `engine_path`, update the timing cache (default: one per
    TensorRT version under ~/.cache); returns {version, gpu, compute_capability} for the manifest.
    Raises RuntimeError when TensorRT or a GPU is missing or the build fails. TensorRT >= 11 parses
    `typed_onnx_path` instead when given (the fp16 Q/DQ variant of an int8 artifact)."""
    found, reason = tensorrt_status()
    if found is None:
        raise RuntimeError(reason)
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    major = int(trt.__version__.split(".")[0])
    flags = 0
    if strongly_typed(major, precision):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    if major >= 11 and typed_onnx_path is not None:
        onnx_path = typed_onnx_path
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errs}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    if not strongly_typed(major, precision):
        # TensorRT 10 with explicit Q/DQ: INT8 enables the quantized layers, FP16 lets the rest run in half.
        config.set_flag(trt.BuilderFlag.FP16)
        if precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)
    cache_path = Path(timing_cache) if timing_cache else default_timing_cache(trt.__version__)
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    if batch is None:
        profile = builder.create_optimization_profile()
        profile.set_shape(INPUT_NAME, *profile_shapes(image_size))
        config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path}")
    Path(engine_path).write_bytes(bytes(plan))
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    cache_path.write_bytes(bytes(config.get_timing_cache().serialize()))
    info = {"version": str(trt.__version__)}
    try:
        from edge_vsd.runtimes.cuda_device import device_gpu

        info.update(device_gpu())
    except RuntimeInputError as exc:  # the engine is built; the GPU record is what the runtime checks
        raise RuntimeError(f"engine built but the GPU could not be recorded: {exc}") from None
    return info

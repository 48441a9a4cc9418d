"""TensorRT engine build (only where `tensorrt` imports and a GPU exists) and the trtexec command for
building on the board, where engines must be built (plans are tied to the TensorRT version and GPU)."""

from __future__ import annotations

import os
from pathlib import Path

from edge_vsd.runtimes.encoder import DEFAULT_MAX_BATCH

WORKSPACE_BYTES = 1 << 30
# Optimisation-profile upper bound for --dynamic-batch artifacts: the chunk size edge_vsd.runtimes feeds.
DYNAMIC_MAX_BATCH = DEFAULT_MAX_BATCH


def default_timing_cache(version: str) -> Path:
    """Per-user timing cache, one per TensorRT version: repeated exports skip re-timing known tactics."""
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "edge-vsd" / f"tensorrt-{version}-timing.cache"


def tensorrt_status() -> tuple[object | None, str]:
    """(tensorrt module, "") when an engine can be built here, else (None, reason)."""
    try:
        import tensorrt as trt
    except Exception as exc:  # a broken CUDA install raises more than ImportError
        return None, f"tensorrt not importable ({type(exc).__name__})"
    try:
        builder = trt.Builder(trt.Logger(trt.Logger.ERROR))
        if builder is None:
            return None, "no usable CUDA GPU for TensorRT"
    except Exception as exc:  # noqa: BLE001 - no GPU/driver: TensorRT raises at builder creation
        return (
            None,
            f"no CUDA GPU for TensorRT ({str(exc).splitlines()[0][:80] if str(exc) else type(exc).__name__})",
        )
    return trt, ""


def _shapes(image_size: tuple[int, int], batch: int | None) -> str:
    h, w = image_size
    if batch is not None:
        return ""
    return (
        f" --minShapes=image:1x3x{h}x{w} --optShapes=image:1x3x{h}x{w}"
        f" --maxShapes=image:{DYNAMIC_MAX_BATCH}x3x{h}x{w}"
    )


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
        f"trtexec --onnx={onnx_name} --saveEngine={engine_name}{flags}{_shapes(image_size, batch)}"
        " --timingCacheFile=timing.cache --skipInference"
    )


def trtexec_command_strongly_typed(
    image_size: tuple[int, int],
    batch: int | None,
    onnx_name: str = "encoder.onnx",
    engine_name: str = "encoder.engine",
) -> str:
    """TensorRT >= 11 builds strongly typed networks: precisions come from the graph (Q/DQ, fp16 tensors)."""
    return (
        f"trtexec --onnx={onnx_name} --saveEngine={engine_name} --stronglyTyped{_shapes(image_size, batch)}"
        " --timingCacheFile=timing.cache --skipInference"
    )


def build_on_device_text(precision: str, image_size: tuple[int, int], batch: int | None) -> str:
    """Contents of BUILD_ON_DEVICE.txt."""
    return (
        "# Build the TensorRT engine on the target board (engines are not portable across GPUs or\n"
        "# TensorRT versions). Run inside this artifact folder, then `edge-vsd register-engine .` to add\n"
        "# encoder.engine to manifest.json, and `edge-vsd bench .` to check it. TensorRT 10.x (JetPack 6):\n"
        f"{trtexec_command(precision, image_size, batch)}\n"
        "# TensorRT 11 and later (strongly typed networks; no --int8/--fp16 flags):\n"
        f"{trtexec_command_strongly_typed(image_size, batch)}\n"
    )


def build_engine(
    onnx_path: str | Path,
    engine_path: str | Path,
    precision: str,
    image_size: tuple[int, int],
    batch: int | None,
    timing_cache: str | Path,
) -> str:
    """Parse the ONNX, build a serialized engine into `engine_path`, update `timing_cache`; returns the
    TensorRT version. Raises RuntimeError when TensorRT or a GPU is missing or the build fails."""
    trt, reason = tensorrt_status()
    if trt is None:
        raise RuntimeError(reason)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    major = int(trt.__version__.split(".")[0])
    flags = 0
    if major >= 11 or precision == "fp32":
        # Strongly typed: tensor types come from the graph (Q/DQ for int8, float16 tensors for fp16).
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errs}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    if major < 11 and precision in ("int8", "fp16"):
        # TensorRT 10 with explicit Q/DQ: INT8 enables the quantized layers, FP16 lets the rest run in half.
        config.set_flag(trt.BuilderFlag.FP16)
        if precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)
    cache_path = Path(timing_cache) if timing_cache else default_timing_cache(trt.__version__)
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    h, w = image_size
    if batch is None:
        profile = builder.create_optimization_profile()
        profile.set_shape("image", (1, 3, h, w), (1, 3, h, w), (DYNAMIC_MAX_BATCH, 3, h, w))
        config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path}")
    Path(engine_path).write_bytes(bytes(plan))
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    cache_path.write_bytes(bytes(config.get_timing_cache().serialize()))
    return trt.__version__

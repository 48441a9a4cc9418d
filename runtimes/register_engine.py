"""`edge-vsd register-engine ARTIFACT`: add an engine built on the board (trtexec) to the artifact's manifest.

The runtime only trusts files whose sha256 the manifest lists, so an `encoder.engine` written by trtexec
next to `encoder.onnx` is used once it is registered here. Where TensorRT imports, the engine is
deserialized first and the TensorRT version and GPU are recorded."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from edge_vsd.runtimes.backend import ENGINE_FILE
from edge_vsd.runtimes.errors import RuntimeInputError
from edge_vsd.runtimes.manifest import file_entry, read_manifest, write_manifest


def _check_with_tensorrt(path: Path) -> dict[str, Any]:
    """Deserialize the plan where TensorRT imports; {} where it does not (nothing to check with)."""
    try:
        import tensorrt as trt
    except Exception:  # noqa: BLE001 - absent or a broken CUDA install
        return {}
    runtime = trt.Runtime(trt.Logger(trt.Logger.ERROR))
    if runtime.deserialize_cuda_engine(path.read_bytes()) is None:
        raise RuntimeInputError(
            f"{path}: TensorRT {trt.__version__} cannot load this engine "
            "(built by another TensorRT version or for another GPU?)"
        )
    info: dict[str, Any] = {"version": trt.__version__}
    try:
        from cuda.bindings import runtime as cudart

        err, props = cudart.cudaGetDeviceProperties(0)
        if int(err) == 0:
            info["gpu"] = props.name.decode(errors="replace").rstrip("\x00")
    except Exception:  # noqa: BLE001 - the GPU name is informative only
        pass
    return info


def register_engine(artifact_dir: str | Path, engine: str | Path | None = None) -> Path:
    """Copy-free registration: hash `ARTIFACT/encoder.engine` into manifest.json (written atomically)."""
    artifact_dir = Path(artifact_dir)
    manifest = read_manifest(artifact_dir)
    path = Path(engine) if engine else artifact_dir / ENGINE_FILE
    if path.resolve() != (artifact_dir / ENGINE_FILE).resolve():
        raise RuntimeInputError(
            f"{path}: the engine must be {artifact_dir / ENGINE_FILE} (build it in place)"
        )
    if not path.is_file() or path.stat().st_size == 0:
        raise RuntimeInputError(f"{path}: no engine there; build it with the command in BUILD_ON_DEVICE.txt")
    info = _check_with_tensorrt(path)
    manifest["files"][ENGINE_FILE] = file_entry(path)
    trt_record = dict(manifest.get("tensorrt") or {})
    trt_record.update({"engine_built": True, "built_on_device": True, **info})
    manifest["tensorrt"] = trt_record
    manifest["backend"] = "tensorrt"
    return write_manifest(artifact_dir, manifest)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("artifact", help="artifact folder holding encoder.onnx, manifest.json and the new engine")


def run(args: argparse.Namespace) -> int:
    path = register_engine(args.artifact)
    print(f"{path}: {ENGINE_FILE} registered; edge_vsd.runtimes.load now runs it where TensorRT imports")
    return 0

"""`edge-vsd register-engine ARTIFACT`: add an engine built on the board (trtexec) to the artifact's manifest.

The runtime only trusts files whose sha256 the manifest lists, so an `encoder.engine` written by trtexec
next to `encoder.onnx` is used once it is registered here. Where TensorRT imports, the engine is
deserialized first and the TensorRT version, GPU name and compute capability are recorded."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from edge_vsd.runtimes import trt_support
from edge_vsd.runtimes.backend import ENGINE_FILE
from edge_vsd.runtimes.errors import RuntimeInputError
from edge_vsd.runtimes.manifest import file_entry, read_manifest, write_manifest


def _check_with_tensorrt(path: Path) -> dict[str, Any]:
    """Deserialize the plan where TensorRT imports and record what it was built with (TensorRT version, GPU
    name and compute capability, which the runtime checks); {} where TensorRT is absent."""
    try:
        import tensorrt  # noqa: F401
    except Exception:  # noqa: BLE001 - absent or a broken CUDA install: nothing to check with
        return {}
    trt = trt_support.import_tensorrt()  # refuses TensorRT < 10 in one line
    runtime = trt.Runtime(trt.Logger(trt.Logger.ERROR))
    if runtime.deserialize_cuda_engine(path.read_bytes()) is None:
        raise RuntimeInputError(
            f"{path}: TensorRT {trt.__version__} cannot load this engine "
            "(built by another TensorRT version or for another GPU?)"
        )
    # The plan deserialized, so this GPU is the one it was built for: record it for the runtime's check.
    from edge_vsd.runtimes.cuda_device import device_gpu

    return {"version": str(trt.__version__), **device_gpu()}


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
        if (artifact_dir / "BUILD_ON_DEVICE.txt").is_file():
            how = "with the command in BUILD_ON_DEVICE.txt"
        else:
            how = f"on the board: trtexec --onnx={artifact_dir / 'encoder.onnx'} --saveEngine={path}"
        raise RuntimeInputError(f"{path}: no engine there; build it {how}")
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
    if "version" not in read_manifest(args.artifact)["tensorrt"]:
        print(
            f"WARNING: TensorRT does not import here, so {ENGINE_FILE} was hashed but not deserialized; "
            "run register-engine on the board to check it and record its GPU",
            file=sys.stderr,
        )
    return 0

"""TensorRT / CUDA facts shared by export, the runtime backend, register-engine and `doctor`: version guards
(one-line refusals saying what to install), the trtexec path on JetPack, and the GPU record of an engine.
Torch-free, and importable without TensorRT or cuda-python (they are imported inside the functions)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from edge_vsd.runtimes.errors import RuntimeInputError

# JetPack installs trtexec here, not on PATH (the tensorrt samples package).
JETPACK_TRTEXEC = "/usr/src/tensorrt/bin/trtexec"
MIN_TENSORRT_MAJOR = 10
# What the guide targets: JetPack 6.1/6.2 (L4T 36.4), TensorRT 10.3, CUDA 12.6. TensorRT 11 has no JetPack.
TARGET_JETPACK = "JetPack 6.1/6.2 (L4T r36.4, TensorRT 10.3, CUDA 12.6)"
CUDA_PYTHON_PIN = "cuda-python>=12.2,<13"
CUDA_PYTHON_MISSING = f"cuda-python is not installed: pip install '{CUDA_PYTHON_PIN}'"
INSTALL_TENSORRT = (
    "on a Jetson flash JetPack 6.1 or later (TensorRT 10.3: sudo apt install nvidia-jetpack); "
    "on a PC pip install 'tensorrt>=10,<11'"
)
# Manifest keys the board's GPU is recorded under (written by build/register, read by the backend).
GPU_KEYS = ("gpu", "compute_capability")


def _major(version: str) -> int:
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        return -1


def tensorrt_version_error(version: str) -> str | None:
    """Why TensorRT `version` cannot be used (None when it can)."""
    if _major(version) < MIN_TENSORRT_MAJOR:
        return (
            f"TensorRT {version} found; edge-vsd needs TensorRT >= {MIN_TENSORRT_MAJOR} "
            f"(create_network flags and the tensor API changed): {INSTALL_TENSORRT}"
        )
    return None


def cuda_python_error(binding_version: str, driver_version: int) -> str | None:
    """Why cuda-python `binding_version` cannot drive a CUDA driver reporting `driver_version` (e.g. 12060
    for 12.6); None when the majors match. cuda-python 13 targets CUDA 13 runtimes, JetPack 6 is CUDA 12."""
    driver_major = int(driver_version) // 1000
    if driver_version <= 0:
        return (
            f"no CUDA driver found (cuda-python {binding_version}): "
            "install the NVIDIA driver (Jetson: JetPack 6)"
        )
    if _major(binding_version) != driver_major:
        minor = (int(driver_version) % 1000) // 10
        return (
            f"cuda-python {binding_version} does not match the CUDA {driver_major}.{minor} driver; "
            f"pip install 'cuda-python>={driver_major}.0,<{driver_major + 1}'"
        )
    return None


def check_tensorrt(version: str) -> None:
    """RuntimeInputError (one line, what to install) for TensorRT below 10."""
    why = tensorrt_version_error(version)
    if why:
        raise RuntimeInputError(why)


def import_tensorrt() -> Any:
    """The tensorrt module, or RuntimeInputError (one line) when it is missing or older than 10."""
    try:
        import tensorrt as trt
    except Exception as exc:  # noqa: BLE001 - a broken CUDA install raises more than ImportError
        raise RuntimeInputError(
            f"TensorRT is not importable ({type(exc).__name__}): {INSTALL_TENSORRT}"
        ) from None
    why = tensorrt_version_error(trt.__version__)
    if why:
        raise RuntimeInputError(why)
    return trt


def cuda_python_version() -> str | None:
    """Installed cuda-python (cuda-bindings) version, None when absent."""
    from importlib import metadata

    for dist in ("cuda-bindings", "cuda-python"):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def check_cuda_driver(cudart: Any) -> None:
    """RuntimeInputError (one line, what to install) when cuda-python's major differs from the driver's."""
    err, driver = cudart.cudaDriverGetVersion()
    why = cuda_python_error(cuda_python_version() or "?", int(driver) if int(err) == 0 else 0)
    if why:
        raise RuntimeInputError(why)


def gpu_record(name: bytes | str, major: int, minor: int) -> dict[str, str]:
    """The GPU an engine was built or registered on, as the manifest stores it."""
    text = name.decode(errors="replace") if isinstance(name, bytes) else str(name)
    return {"gpu": text.rstrip("\x00").strip(), "compute_capability": f"{int(major)}.{int(minor)}"}


def engine_gpu_mismatch(recorded: dict[str, Any], current: dict[str, str]) -> str | None:
    """Why an engine recorded for one GPU cannot run on `current` (None when the compute capability matches
    or was not recorded). Plans are compiled per compute capability."""
    built = recorded.get("compute_capability")
    if built and str(built) != current["compute_capability"]:
        where = f" ({recorded['gpu']})" if recorded.get("gpu") else ""
        return (
            f"engine built for GPU compute capability {built}{where}, "
            f"this GPU is {current['compute_capability']} ({current['gpu']})"
        )
    return None


def find_trtexec() -> str | None:
    """JetPack's trtexec, else one on PATH; None when neither exists."""
    if Path(JETPACK_TRTEXEC).is_file():
        return JETPACK_TRTEXEC
    return shutil.which("trtexec")

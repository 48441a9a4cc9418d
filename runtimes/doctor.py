"""`edge-vsd doctor [ARTIFACT]`: one-command self-check of a board before running an artifact on TensorRT.

Reports the TensorRT and CUDA versions, the GPU, the Jetson power mode, whether trtexec is found, and
whether the artifact's engine deserializes. Anything missing is one line saying what to install."""

from __future__ import annotations

import argparse
import subprocess
from dataclasses import dataclass
from pathlib import Path

from edge_vsd.runtimes import trt_support
from edge_vsd.runtimes.backend import ENGINE_FILE
from edge_vsd.runtimes.errors import RuntimeInputError

TEGRA_RELEASE = Path("/etc/nv_tegra_release")


@dataclass(frozen=True)
class Check:
    """One line of the report; `ok` False means the TensorRT path cannot run until it is fixed."""

    name: str
    ok: bool
    detail: str

    def __str__(self) -> str:
        return f"{'ok  ' if self.ok else 'MISS'}  {self.name:<12} {self.detail}"


def _board() -> Check:
    if TEGRA_RELEASE.is_file():
        first = TEGRA_RELEASE.read_text(errors="replace").splitlines()[:1]
        return Check("board", True, f"Jetson, {first[0].lstrip('# ').strip() if first else 'L4T'}")
    return Check(
        "board", True, f"not a Jetson ({TEGRA_RELEASE} absent); guide targets {trt_support.TARGET_JETPACK}"
    )


def _tensorrt() -> tuple[Check, object | None]:
    try:
        trt = trt_support.import_tensorrt()
    except RuntimeInputError as exc:
        return Check("tensorrt", False, str(exc)), None
    return Check("tensorrt", True, f"TensorRT {trt.__version__}"), trt


def _cuda() -> list[Check]:
    try:
        from edge_vsd.runtimes import cuda_device
    except RuntimeInputError as exc:  # cuda-python missing, or its major does not match the driver
        unchecked = Check("gpu", False, "not checked (no usable CUDA binding and driver)")
        return [Check("cuda-python", False, str(exc)), unchecked]
    _, driver = cuda_device.cudart.cudaDriverGetVersion()
    _, runtime = cuda_device.cudart.cudaRuntimeGetVersion()
    out = [
        Check(
            "cuda-python",
            True,
            f"cuda-python {trt_support.cuda_python_version()}, driver CUDA {_version(driver)}, "
            f"runtime {_version(runtime)}",
        )
    ]
    try:
        gpu = cuda_device.device_gpu()
        out.append(Check("gpu", True, f"{gpu['gpu']} (compute capability {gpu['compute_capability']})"))
    except RuntimeError as exc:  # no device visible
        out.append(Check("gpu", False, str(exc)))
    return out


def _version(cuda_int: int) -> str:
    """12060 -> "12.6" (CUDA's integer version)."""
    return f"{int(cuda_int) // 1000}.{int(cuda_int) % 1000 // 10}"


def _power_mode() -> Check:
    if not TEGRA_RELEASE.is_file():
        return Check("power mode", True, "n/a (nvpmodel power modes are a Jetson feature)")
    try:
        res = subprocess.run(["nvpmodel", "-q"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return Check("power mode", False, "nvpmodel not found (sudo apt install nvidia-l4t-tools)")
    mode = " ".join(line.strip() for line in res.stdout.splitlines() if line.strip())
    return Check("power mode", res.returncode == 0, mode or res.stderr.strip()[:120] or "unknown")


def _trtexec() -> Check:
    found = trt_support.find_trtexec()
    if found:
        return Check("trtexec", True, found)
    return Check(
        "trtexec",
        False,
        f"not at {trt_support.JETPACK_TRTEXEC} nor on PATH (JetPack: sudo apt install tensorrt; "
        "needed to build the engine on the board)",
    )


def _engine(artifact: Path, trt: object | None) -> Check:
    from edge_vsd.runtimes.manifest import read_manifest

    manifest = read_manifest(artifact)
    engine = artifact / ENGINE_FILE
    if not engine.is_file():
        return Check(
            "engine", False, f"{engine} absent: build it with BUILD_ON_DEVICE.txt, then register-engine"
        )
    if ENGINE_FILE not in manifest.get("files", {}):
        return Check("engine", False, f"{engine} not registered: edge-vsd register-engine {artifact}")
    if trt is None:
        return Check("engine", False, f"{engine} present; cannot deserialize it without TensorRT")
    runtime = trt.Runtime(trt.Logger(trt.Logger.ERROR))  # type: ignore[attr-defined]
    if runtime.deserialize_cuda_engine(engine.read_bytes()) is None:
        built = (manifest.get("tensorrt") or {}).get("version", "?")
        return Check(
            "engine", False, f"{engine} does not deserialize (built with TensorRT {built}); rebuild it"
        )
    return Check("engine", True, f"{engine} deserializes")


def diagnose(artifact: str | Path | None = None) -> list[Check]:
    """Every check, in report order."""
    trt_check, trt = _tensorrt()
    checks = [_board(), trt_check, *_cuda(), _power_mode(), _trtexec()]
    if artifact is not None:
        checks.append(_engine(Path(artifact), trt))
    return checks


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("artifact", nargs="?", help="artifact folder: also check that its engine deserializes")


def run(args: argparse.Namespace) -> int:
    """Print the report; 0 when the TensorRT path can run here, 1 when something is missing."""
    checks = diagnose(args.artifact)
    for c in checks:
        print(c)
    missing = [c.name for c in checks if not c.ok]
    print(f"TensorRT path: {'ready' if not missing else 'not ready (missing: ' + ', '.join(missing) + ')'}")
    return 1 if missing else 0

"""System fingerprint for every result: CPU and ISA flags, board (Jetson), power mode, library versions.

Parsers take file contents (strings), so tests feed sample Jetson and x86 texts; `collect()` reads the
real files and never fails: anything missing is recorded as null.
"""

from __future__ import annotations

import platform
import re
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from edge_vsd.runtimes.cpuinfo import int8_path, parse_cpuinfo, usable_cores

PACKAGES = {
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino"),
    "tensorrt": ("tensorrt", "tensorrt-cu12", "tensorrt-libs"),
    "openvino": ("openvino",),
    "numpy": ("numpy",),
    "opencv": ("opencv-python-headless", "opencv-python", "opencv-contrib-python"),
}


def parse_device_tree_model(text: str) -> str | None:
    """/proc/device-tree/model is NUL-terminated: 'NVIDIA Jetson AGX Orin Developer Kit\\0'."""
    model = text.replace("\x00", "").strip()
    return model or None


def parse_tegra_release(text: str) -> dict[str, Any] | None:
    """/etc/nv_tegra_release: '# R35 (release), REVISION: 3.1, ...' -> L4T 35.3.1 plus board/date."""
    m = re.search(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
    if not m:
        return None
    out: dict[str, Any] = {"l4t": f"{m.group(1)}.{m.group(2)}"}
    for key in ("GCID", "BOARD", "EABI", "DATE"):
        km = re.search(rf"{key}:\s*([^,]+)", text)
        if km:
            out[key.lower()] = km.group(1).strip()
    return out


def parse_nvpmodel(text: str) -> dict[str, Any] | None:
    """`nvpmodel -q` output ('NV Power Mode: MAXN' then the mode id) -> {'name', 'id'}."""
    m = re.search(r"NV Power Mode:\s*(\S+)", text)
    if not m:
        return None
    ids = re.findall(r"^\s*(\d+)\s*$", text, flags=re.M)
    return {"name": m.group(1), "id": int(ids[0]) if ids else None}


def parse_jetson_clocks_show(text: str) -> bool | None:
    """`jetson_clocks --show`: pinned when every online CPU (and the GPU) runs MinFreq == MaxFreq."""
    pinned: list[bool] = []
    for line in text.splitlines():
        # EMC (memory) keeps a range even with jetson_clocks on; only CPU cores and the GPU count.
        if not re.match(r"\s*(cpu\d+:|GPU\s)", line) or "Online=0" in line:
            continue
        m = re.search(r"MinFreq=(\d+)\s+MaxFreq=(\d+)", line)
        if m:
            pinned.append(m.group(1) == m.group(2))
    return all(pinned) if pinned else None


def clocks_pinned(freqs: list[tuple[int, int]]) -> bool | None:
    """From (scaling_min_freq, scaling_max_freq) per CPU: True when all are pinned at their maximum,
    which is what jetson_clocks does (readable from sysfs without root)."""
    if not freqs:
        return None
    return all(lo == hi for lo, hi in freqs)


def _read(path: str | Path) -> str | None:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return None


def _cpu_freqs(root: Path = Path("/sys/devices/system/cpu")) -> list[tuple[int, int]]:
    out = []
    for d in sorted(root.glob("cpu[0-9]*/cpufreq")):
        lo, hi = _read(d / "scaling_min_freq"), _read(d / "scaling_max_freq")
        if lo and hi and lo.strip().isdigit() and hi.strip().isdigit():
            out.append((int(lo), int(hi)))
    return out


def package_versions() -> dict[str, str | None]:
    """Installed versions of the inference stack, from package metadata (imports nothing heavy)."""
    out: dict[str, str | None] = {}
    for name, dists in PACKAGES.items():
        out[name] = None
        for dist in dists:
            try:
                out[name] = metadata.version(dist)
                break
            except metadata.PackageNotFoundError:
                continue
    if out["tensorrt"] is None and _read("/usr/lib/python3/dist-packages/tensorrt/__init__.py"):
        out["tensorrt"] = "system"  # JetPack installs TensorRT as a Debian package
    return out


def jetson_info() -> dict[str, Any] | None:
    """Board model, L4T release, power mode and clock state on a Jetson; None elsewhere."""
    release = _read("/etc/nv_tegra_release")
    model = parse_device_tree_model(_read("/proc/device-tree/model") or "")
    if release is None and not (model and "jetson" in model.lower()):
        return None
    power = None
    try:
        q = subprocess.run(["nvpmodel", "-q"], capture_output=True, text=True, timeout=10)
        power = parse_nvpmodel(q.stdout)
    except (OSError, subprocess.SubprocessError):
        pass
    return {
        "board": model,
        "release": parse_tegra_release(release or ""),
        "power_mode": power,
        "jetson_clocks": clocks_pinned(_cpu_freqs()),
    }


def collect(threads: int | None = None) -> dict[str, Any]:
    """Fingerprint of this machine for results.json."""
    cpu = parse_cpuinfo(_read("/proc/cpuinfo") or "")
    if not cpu["model"]:
        cpu["model"] = platform.processor() or None
    available = usable_cores()
    return {
        "cpu": {
            **cpu,
            "int8_path": int8_path(cpu["isa"]),
            "cores_available": available,
            "threads_used": threads or available,
        },
        "os": {
            "system": platform.system(),
            "release": platform.release(),
            "machine": platform.machine(),
            "python": platform.python_version(),
        },
        "versions": package_versions(),
        "jetson": jetson_info(),
    }

"""The CPU this runs on, from /proc/cpuinfo: model and the ISA flags that decide INT8 speed.

Shared by `export` (which records why a CPU INT8 scheme won) and `benchmarks` (the system fingerprint)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

# Flags that decide which INT8 kernels are fast (x86: AVX2/AVX-512/VNNI/AMX; ARM: dot-product, i8mm).
ISA_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
    "asimd",
    "asimddp",
    "i8mm",
    "sve",
    "bf16",
)

# A few ARM CPU part numbers (implementer 0x41 = Arm) so Jetson/Pi results name the core.
ARM_PARTS = {
    "0xd03": "Cortex-A53",
    "0xd07": "Cortex-A57",
    "0xd08": "Cortex-A72",
    "0xd0b": "Cortex-A76",
    "0xd42": "Cortex-A78AE",
    "0xd41": "Cortex-A78",
    "0xd0c": "Neoverse-N1",
    "0xd40": "Neoverse-V1",
    "0x004": "NVIDIA Carmel",
}


def parse_cpuinfo(text: str) -> dict[str, Any]:
    """CPU model, logical CPU count and ISA flags from /proc/cpuinfo (x86 `flags`, ARM `Features`)."""
    fields: dict[str, str] = {}
    flags: set[str] = set()
    processors = 0
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip().lower(), value.strip()
        if key == "processor":
            processors += 1
        elif key in ("flags", "features"):
            flags.update(value.split())
        elif key not in fields and value:
            fields[key] = value
    model = fields.get("model name") or fields.get("hardware") or fields.get("cpu model")
    part = fields.get("cpu part", "").lower()
    if fields.get("cpu implementer") in ("0x41", "0x4e") and (part in ARM_PARTS or not model):
        # ARM kernels print a generic "ARMv8 Processor rev 1 (v8l)"; the part number names the core.
        model = ARM_PARTS.get(part, f"ARM part {part}" if part else None)
    arch = (
        "arm64"
        if ("asimd" in flags or "cpu implementer" in fields)
        else ("x86_64" if "sse2" in flags else None)
    )
    isa = {f: f in flags for f in ISA_FLAGS}
    isa["vnni"] = isa["avx512_vnni"] or isa["avx_vnni"]
    return {"model": model, "arch": arch, "logical_cpus": processors or None, "isa": isa}


def int8_path(isa: dict[str, bool]) -> str:
    """Which INT8 dot-product instructions this CPU has, in one word for the report."""
    if isa.get("avx512_vnni"):
        return "avx512-vnni"
    if isa.get("avx_vnni"):
        return "avx-vnni"
    if isa.get("avx512f"):
        return "avx512"
    if isa.get("avx2"):
        return "avx2"
    if isa.get("asimddp"):
        return "arm-dotprod"
    if isa.get("asimd"):
        return "arm-neon"
    return "generic"


def read_cpuinfo(path: str | Path = "/proc/cpuinfo") -> dict[str, Any]:
    """`parse_cpuinfo` of this machine; empty fields where the file is absent (not Linux)."""
    try:
        text = Path(path).read_text()
    except OSError:
        text = ""
    return parse_cpuinfo(text)


def cpu_fingerprint(cpu: dict[str, Any] | None = None) -> dict[str, Any]:
    """What tuning results depend on: model, architecture, ISA flags and logical CPUs, with a short `id`
    that changes when any of them does (a tuned artifact copied to another CPU is then re-tuned)."""
    import hashlib

    cpu = read_cpuinfo() if cpu is None else cpu
    flags = sorted(f for f, present in cpu["isa"].items() if present and f in ISA_FLAGS)
    key = "|".join([str(cpu["model"]), str(cpu["arch"]), ",".join(flags), str(cpu["logical_cpus"])])
    return {
        "id": hashlib.sha256(key.encode()).hexdigest()[:16],
        "model": cpu["model"],
        "arch": cpu["arch"],
        "logical_cpus": cpu["logical_cpus"],
        "int8_path": int8_path(cpu["isa"]),
        "flags": flags,
    }


def usable_cores() -> int:
    """Cores this process may run on: its affinity mask, as `taskset` and cgroups set it."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1

"""Fingerprint parsers on sample files from a Jetson AGX Orin and an x86 server."""

from __future__ import annotations

import json

from edge_vsd.benchmarks import fingerprint as fp

ARM_FLAGS = (
    "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp "
    "uscat ilrcpc flagm paca pacg"
)
X86_FLAGS = (
    "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov sse sse2 ssse3 fma cx16 sse4_1 sse4_2 avx "
    "f16c avx2 avx512f avx512dq avx512cd avx512bw avx512vl avx512_vnni"
)

ORIN_CPUINFO = f"""\
processor	: 0
model name	: ARMv8 Processor rev 1 (v8l)
BogoMIPS	: 62.50
Features	: {ARM_FLAGS}
CPU implementer	: 0x41
CPU architecture: 8
CPU variant	: 0x0
CPU part	: 0xd42
CPU revision	: 1

processor	: 1
model name	: ARMv8 Processor rev 1 (v8l)
BogoMIPS	: 62.50
Features	: {ARM_FLAGS}
CPU implementer	: 0x41
CPU architecture: 8
CPU variant	: 0x0
CPU part	: 0xd42
CPU revision	: 1
"""

PI3_CPUINFO = """\
processor	: 0
BogoMIPS	: 38.40
Features	: fp asimd evtstrm crc32 cpuid
CPU implementer	: 0x41
CPU architecture: 8
CPU variant	: 0x0
CPU part	: 0xd03
CPU revision	: 4
"""

X86_CPUINFO = f"""\
processor	: 0
vendor_id	: GenuineIntel
cpu family	: 6
model		: 106
model name	: Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz
flags		: {X86_FLAGS}
processor	: 1
vendor_id	: GenuineIntel
model name	: Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz
flags		: {X86_FLAGS}
"""

ALDERLAKE_FLAGS = (
    "processor : 0\nmodel name : 12th Gen Intel(R) Core(TM) i7-1265U\nflags : sse2 avx avx2 fma avx_vnni\n"
)

TEGRA_RELEASE = (
    "# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64, "
    "DATE: Tue Aug  1 19:57:35 UTC 2023\n# KERNEL_VARIANT: oot\nTARGET_USERSPACE_LIB_DIR=nvidia\n"
    "TARGET_USERSPACE_LIB_DIR_PATH=usr/lib/aarch64-linux-gnu/nvidia\n"
)

JETSON_CLOCKS_ON = """\
SOC family:tegra234  Machine:NVIDIA Jetson AGX Orin Developer Kit
Online CPUs: 0-11
cpu0: Online=1 Governor=schedutil MinFreq=2201600 MaxFreq=2201600 CurrentFreq=2201600 IdleStates: WFI=0 c7=0
cpu1: Online=1 Governor=schedutil MinFreq=2201600 MaxFreq=2201600 CurrentFreq=2201600 IdleStates: WFI=0 c7=0
cpu11: Online=0 Governor=schedutil MinFreq=729600 MaxFreq=2201600 CurrentFreq=729600 IdleStates: WFI=1 c7=1
GPU MinFreq=1300500000 MaxFreq=1300500000 CurrentFreq=1300500000
EMC MinFreq=204000000 MaxFreq=3199000000 CurrentFreq=3199000000 FreqOverride=1
"""

JETSON_CLOCKS_OFF = JETSON_CLOCKS_ON.replace(
    "cpu1: Online=1 Governor=schedutil MinFreq=2201600", "cpu1: Online=1 Governor=schedutil MinFreq=729600"
)


def test_orin_cpu_is_named_by_part_and_has_dotprod():
    cpu = fp.parse_cpuinfo(ORIN_CPUINFO)
    assert cpu["model"] == "Cortex-A78AE"
    assert cpu["arch"] == "arm64"
    assert cpu["logical_cpus"] == 2
    assert cpu["isa"]["asimddp"] and cpu["isa"]["asimd"]
    assert not cpu["isa"]["avx2"] and not cpu["isa"]["vnni"]
    assert fp.int8_path(cpu["isa"]) == "arm-dotprod"


def test_pi3_has_neon_but_no_dotprod():
    cpu = fp.parse_cpuinfo(PI3_CPUINFO)
    assert cpu["model"] == "Cortex-A53"
    assert cpu["isa"]["asimd"] and not cpu["isa"]["asimddp"]
    assert fp.int8_path(cpu["isa"]) == "arm-neon"


def test_x86_server_flags():
    cpu = fp.parse_cpuinfo(X86_CPUINFO)
    assert cpu["model"] == "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz"
    assert cpu["arch"] == "x86_64" and cpu["logical_cpus"] == 2
    isa = cpu["isa"]
    assert isa["avx2"] and isa["avx512f"] and isa["avx512_vnni"] and isa["vnni"]
    assert not isa["avx_vnni"] and not isa["asimddp"]
    assert fp.int8_path(isa) == "avx512-vnni"


def test_avx_vnni_without_avx512():
    isa = fp.parse_cpuinfo(ALDERLAKE_FLAGS)["isa"]
    assert isa["avx_vnni"] and isa["vnni"] and not isa["avx512f"]
    assert fp.int8_path(isa) == "avx-vnni"
    assert fp.int8_path(fp.parse_cpuinfo("flags : sse2 avx2\n")["isa"]) == "avx2"


def test_device_tree_model_strips_nul():
    assert (
        fp.parse_device_tree_model("NVIDIA Jetson AGX Orin Developer Kit\x00")
        == "NVIDIA Jetson AGX Orin Developer Kit"
    )
    assert fp.parse_device_tree_model("\x00") is None


def test_tegra_release():
    rel = fp.parse_tegra_release(TEGRA_RELEASE)
    assert rel["l4t"] == "35.4.1"
    assert rel["board"] == "t186ref" and rel["eabi"] == "aarch64"
    assert rel["date"].startswith("Tue Aug")
    r36 = fp.parse_tegra_release(
        "# R36 (release), REVISION: 3.0, GCID: 36923193, BOARD: generic, EABI: aarch64"
    )
    assert r36["l4t"] == "36.3.0"
    assert fp.parse_tegra_release("not a release file") is None


def test_nvpmodel_query():
    assert fp.parse_nvpmodel("NV Power Mode: MAXN\n0\n") == {"name": "MAXN", "id": 0}
    assert fp.parse_nvpmodel("NV Fan Mode:quiet\nNV Power Mode: 15W\n2\n") == {"name": "15W", "id": 2}
    assert fp.parse_nvpmodel("nvpmodel: command not found") is None


def test_jetson_clocks_show():
    assert fp.parse_jetson_clocks_show(JETSON_CLOCKS_ON) is True  # offline cpu11 and EMC range ignored
    assert fp.parse_jetson_clocks_show(JETSON_CLOCKS_OFF) is False
    assert fp.parse_jetson_clocks_show("") is None


def test_clocks_pinned_from_sysfs_frequencies():
    assert fp.clocks_pinned([(2201600, 2201600)] * 4) is True
    assert fp.clocks_pinned([(2201600, 2201600), (729600, 2201600)]) is False
    assert fp.clocks_pinned([]) is None


def test_collect_on_this_machine_is_json_and_complete():
    info = fp.collect(threads=3)
    json.dumps(info)
    assert info["cpu"]["threads_used"] == 3
    assert info["cpu"]["cores_available"] >= 1
    assert info["versions"]["numpy"] and info["versions"]["onnxruntime"] and info["versions"]["opencv"]
    assert set(info) >= {"cpu", "os", "versions", "jetson"}

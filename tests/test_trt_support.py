"""Version guards, GPU records and `edge-vsd doctor`: the parts of the TensorRT path that run without it."""

from __future__ import annotations

import pytest
from edge_vsd.runtimes import trt_support
from toy_artifact import make_toy_artifact

from edge_vsd.cli import main


@pytest.mark.parametrize(
    "version, refused", [("8.6.2", True), ("8.6.2.3", True), ("10.3.0", False), ("11.1", False)]
)
def test_tensorrt_below_10_is_refused_saying_what_to_install(version, refused):
    why = trt_support.tensorrt_version_error(version)
    assert (why is not None) == refused
    if refused:
        assert version in why and "JetPack 6.1" in why and "\n" not in why


@pytest.mark.parametrize(
    "binding, driver, pin",
    [
        ("13.0.1", 12060, "cuda-python>=12.0,<13"),
        ("12.9.0", 13000, "cuda-python>=13.0,<14"),
        ("12.6.2", 12020, None),
    ],
)
def test_cuda_python_major_must_match_the_driver(binding, driver, pin):
    why = trt_support.cuda_python_error(binding, driver)
    if pin is None:
        assert why is None
    else:
        assert pin in why and binding in why and "\n" not in why


def test_no_driver_is_reported():
    assert "no CUDA driver" in trt_support.cuda_python_error("12.6.0", 0)


def test_gpu_record_is_what_the_runtime_checks():
    """register-engine/build_engine write gpu_record(...); the backend refuses another compute capability."""
    orin = trt_support.gpu_record(b"Orin\x00\x00", 8, 7)
    assert set(orin) == set(trt_support.GPU_KEYS)
    assert trt_support.engine_gpu_mismatch(orin, orin) is None
    why = trt_support.engine_gpu_mismatch(orin, trt_support.gpu_record("NVIDIA H100", 9, 0))
    assert why and "8.7 (Orin)" in why and "9.0" in why
    assert trt_support.engine_gpu_mismatch({}, orin) is None  # engines registered before the record


def test_doctor_here_says_what_is_missing(tmp_path, capsys):
    art = make_toy_artifact(tmp_path / "art")
    rc = main(["doctor", str(art)])
    out = capsys.readouterr().out
    lines = {line.split()[1]: line for line in out.splitlines() if line[:4] in ("ok  ", "MISS")}
    assert {"board", "tensorrt", "cuda-python", "gpu", "power", "trtexec", "engine"} <= set(lines)
    try:
        import tensorrt  # noqa: F401
    except Exception:
        assert rc == 1 and lines["tensorrt"].startswith("MISS") and "tensorrt>=10" in lines["tensorrt"]
        assert "not ready" in out.splitlines()[-1]
    assert "encoder.engine absent" in lines["engine"] and "BUILD_ON_DEVICE" in lines["engine"]
    if trt_support.find_trtexec() is None:
        assert trt_support.JETPACK_TRTEXEC in lines["trtexec"]


def test_doctor_bad_artifact_is_one_line(tmp_path, capsys):
    assert main(["doctor", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nope" in err


def test_build_commands_use_jetpack_trtexec_and_the_runtime_batch():
    """BUILD_ON_DEVICE: JetPack's trtexec path, the profile tuned (opt) for the chunk size the runtime feeds
    dynamic engines, and the strongly typed command reading the fp16 variant of an int8 artifact."""
    from edge_vsd.export import tensorrt_build as tb
    from edge_vsd.runtimes.encoder import DEFAULT_MAX_BATCH

    lo, opt, hi = tb.profile_shapes((64, 96))
    assert lo == (1, 3, 64, 96) and opt == hi == (DEFAULT_MAX_BATCH, 3, 64, 96)
    text = tb.build_on_device_text("int8", (64, 96), None)
    trt10, trt11 = (line for line in text.splitlines() if not line.startswith("#"))
    assert trt10.startswith("/usr/src/tensorrt/bin/trtexec ") and "--int8 --fp16" in trt10
    assert (
        f"--optShapes=image:{DEFAULT_MAX_BATCH}x3x64x96" in trt10 and "--minShapes=image:1x3x64x96" in trt10
    )
    assert "--stronglyTyped" in trt11 and "--onnx=encoder.fp16.onnx" in trt11 and "--int8" not in trt11
    assert "JetPack 6.1" in text and "no JetPack ships TensorRT 11" in text
    assert "--onnx=encoder.onnx" in tb.trtexec_command_strongly_typed("fp16", (64, 64), 1)
    assert "Shapes" not in tb.trtexec_command("int8", (64, 64), 4)  # static batch: no profile

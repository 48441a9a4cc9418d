"""register-engine: the manifest bookkeeping that lets a board-built engine be trusted (TensorRT absent here:
the plan cannot be deserialized, so these tests check hashing, refusal and fallback, not TensorRT)."""

import json

import pytest
from edge_vsd.runtimes import load
from edge_vsd.runtimes.errors import RuntimeInputError
from edge_vsd.runtimes.manifest import sha256_file
from edge_vsd.runtimes.register_engine import register_engine
from toy_artifact import make_toy_artifact

from edge_vsd.cli import main


def _tensorrt_present() -> bool:
    try:
        import tensorrt  # noqa: F401
    except Exception:
        return False
    return True


@pytest.mark.skipif(
    _tensorrt_present(), reason="with TensorRT present a fake plan is rejected, as it should be"
)
def test_register_then_tamper(tmp_path, capsys):
    art = make_toy_artifact(tmp_path / "art")
    engine = art / "encoder.engine"
    engine.write_bytes(b"plan bytes as trtexec would write them")
    assert main(["register-engine", str(art)]) == 0
    assert "not deserialized" in capsys.readouterr().err  # said, since nothing could check the plan here
    manifest = json.loads((art / "manifest.json").read_text())
    assert manifest["files"]["encoder.engine"]["sha256"] == sha256_file(engine)
    assert manifest["tensorrt"]["engine_built"] is True and manifest["backend"] == "tensorrt"
    # without TensorRT the artifact still runs on ONNX Runtime, hashes of both files checked
    assert load(art).backend_name.startswith("onnxruntime")
    engine.write_bytes(b"swapped")
    with pytest.raises(RuntimeInputError, match="encoder.engine"):
        load(art)


def test_missing_engine_is_one_line_error(tmp_path, capsys):
    art = make_toy_artifact(tmp_path / "art")
    before = (art / "manifest.json").read_text()
    assert main(["register-engine", str(art)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "encoder.engine" in err and "trtexec --onnx=" in err
    assert (art / "manifest.json").read_text() == before
    (art / "BUILD_ON_DEVICE.txt").write_text("trtexec ...\n")  # a jetson artifact's: the command to use
    assert main(["register-engine", str(art)]) == 2
    assert "BUILD_ON_DEVICE.txt" in capsys.readouterr().err
    with pytest.raises(RuntimeInputError, match="build it in place"):
        register_engine(art, tmp_path / "elsewhere.engine")

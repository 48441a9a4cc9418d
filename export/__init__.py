"""Export pipeline: checkpoint -> ONNX -> simplify -> parity -> INT8/fp16 -> TensorRT-ready/CPU artifact.

from edge_vsd.export import ExportConfig, export_artifact
export_artifact(ExportConfig(checkpoint="ckpt.pt", target="jetson", int8=True, calib=["video.mp4"]))
"""

from __future__ import annotations

__all__ = ["ExportConfig", "export_artifact"]


def __getattr__(name: str):
    if name in __all__:
        from edge_vsd.export import pipeline

        return getattr(pipeline, name)
    raise AttributeError(name)

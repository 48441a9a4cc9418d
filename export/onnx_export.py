"""Encoder -> ONNX with PyTorch's torch.export-based exporter: input `image`, outputs `cls`, `patches`."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import torch
from torch import nn

INPUT_NAME = "image"
OUTPUT_NAMES = ("cls", "patches")
# 17 is the first opset with LayerNormalization (one fused node TensorRT and ORT map to a kernel); 18 is
# the exporter's native opset, so no version conversion pass runs after export.
DEFAULT_OPSET = 18


class EncoderOnly(nn.Module):
    """The backbone alone (no projection head, no predictor), returning plain tensors for the exporter."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.backbone(image)
        return feats.cls, feats.patches


def export_onnx(
    backbone: nn.Module,
    path: str | Path,
    image_size: tuple[int, int],
    batch: int = 1,
    dynamic_batch: bool = False,
    opset: int = DEFAULT_OPSET,
) -> Path:
    """Write `path`; static batch `batch`, or a symbolic `batch` axis when `dynamic_batch`."""
    if opset < 17:
        raise ValueError(f"opset {opset} < 17: LayerNormalization needs opset 17")
    module = EncoderOnly(backbone).eval()
    h, w = image_size
    # Trace with batch 2 for a dynamic axis: a size-1 example would be specialised to a constant.
    example = torch.zeros(2 if dynamic_batch else batch, 3, h, w)
    dynamic_shapes = ({0: torch.export.Dim("batch", min=1, max=1024)},) if dynamic_batch else None
    path = Path(path)
    with _quiet(), torch.no_grad():
        program = torch.onnx.export(
            module,
            (example,),
            dynamo=True,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            dynamic_shapes=dynamic_shapes,
            verbose=False,
            optimize=True,
            external_data=False,
        )
        program.save(str(path))
    return path


@contextlib.contextmanager
def _quiet():
    """The exporter logs progress and torchvision notices to stdout/stderr; keep the CLI's output ours."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lv in zip(loggers, levels, strict=True):
            lg.setLevel(lv)

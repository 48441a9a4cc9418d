"""PyTorch encoders callable like a runtimes encoder: an in-memory ViT (`TorchEncoder`), or a checkpoint as
the fidelity reference (`--reference model.pt`, `TorchReference`); torch is imported only here."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".safetensors")


class TorchEncoder:
    """uint8 BGR frames -> object with float32 `.cls` and `.patches`, from a ViT run at `image_size` (which
    callers may change) on `device`."""

    backend_name = "pytorch"

    def __init__(self, model: Any, image_size: tuple[int, int] | None = None, device: str = "cpu") -> None:
        self.model, self.device = model, device
        size = image_size or model.cfg.img_size
        self.image_size: tuple[int, int] = (int(size[0]), int(size[1]))
        self.manifest: dict[str, Any] = {
            "precision": "fp32",
            "backend": "pytorch",
            "model": {"patch_size": model.cfg.patch_size},
        }

    def __call__(self, frames: np.ndarray) -> SimpleNamespace:
        import torch

        from edge_vsd.data.preprocess import preprocess

        with torch.inference_mode():
            out = self.model(preprocess(frames, self.image_size).to(self.device))
        return SimpleNamespace(cls=out.cls.float().cpu().numpy(), patches=out.patches.float().cpu().numpy())


class TorchReference(TorchEncoder):
    """A checkpoint's teacher backbone (or a Hugging Face DINOv2 folder), as a `TorchEncoder` on the CPU."""

    def __init__(self, path: str | Path, image_size: tuple[int, int] | None = None) -> None:
        from edge_vsd import load_encoder

        self.path = Path(path)
        super().__init__(load_encoder(self.path), image_size)

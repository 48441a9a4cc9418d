"""A PyTorch checkpoint as the fidelity reference (`--reference model.pt`); torch is imported only here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".safetensors")


class TorchReference:
    """Callable like a runtimes encoder: uint8 BGR frames -> object with float32 `.cls` and `.patches`."""

    backend_name = "pytorch"

    def __init__(self, path: str | Path, image_size: tuple[int, int] | None = None) -> None:
        import torch

        from edge_vsd import load_encoder

        self.path = Path(path)
        self.model = load_encoder(self.path)
        self.image_size = tuple(image_size or self.model.cfg.img_size)
        self.manifest: dict[str, Any] = {
            "precision": "fp32",
            "backend": "pytorch",
            "model": {"patch_size": self.model.cfg.patch_size},
        }
        self._torch = torch

    def __call__(self, frames: np.ndarray):
        from types import SimpleNamespace

        from edge_vsd.data.preprocess import preprocess

        with self._torch.inference_mode():
            out = self.model(preprocess(frames, self.image_size))
        return SimpleNamespace(cls=out.cls.float().numpy(), patches=out.patches.float().numpy())

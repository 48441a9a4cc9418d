"""edge-vsd: video self-distillation for ViT encoders, exported and run on the edge.

Importing this package must stay torch-free: `edge_vsd.runtimes` lives under it and runs without torch.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__", "load_encoder"]


def __getattr__(name: str):
    if name == "load_encoder":
        from edge_vsd.checkpoint import load_encoder

        return load_encoder
    raise AttributeError(name)

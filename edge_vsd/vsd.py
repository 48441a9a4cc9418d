"""The network trained by VSD: backbone + projection head(s) (+ next-frame predictor for the student)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from edge_vsd.model import DINOHead, Predictor, VisionTransformer


class VSDNet(nn.Module):
    """Student (with predictor) or teacher (without). State-dict keys: backbone.*, head.*, patch_head.*,
    predictor.* -- DINO's wrapper layout, so `load_encoder` reads edge-vsd and DINO checkpoints alike."""

    def __init__(
        self,
        backbone: VisionTransformer,
        head: DINOHead,
        patch_head: DINOHead | None = None,
        predictor: Predictor | None = None,
        dense: bool = True,
        masked: bool = False,
    ):
        super().__init__()
        self.backbone, self.head, self.patch_head, self.predictor = backbone, head, patch_head, predictor
        self.dense = dense  # False (DINO preset): CLS logits only, patches None
        # the learned input of masked patches (`--mask-ratio`); a training-only key, as DINOv2's
        self.mask_token = nn.Parameter(torch.zeros(backbone.embed_dim)) if masked else None

    def forward(
        self,
        globals_: torch.Tensor,
        locals_: torch.Tensor | None = None,
        embed: bool = False,
        mask: torch.Tensor | None = None,
    ) -> tuple[Any, ...]:
        """globals_ (B, 2, 3, S, S): frames t and t+delta. Returns CLS logits per view [t, t+delta, locals...]
        and patch logits (B, N, K): the student's prediction of t+delta from t, or the teacher's t+delta
        (None without the dense term); with `embed`, also the backbone's tokens (2B, 1 + N, D), views
        stacked, for the KoLeo terms. `mask` (B, N): frame t's patches the student sees as the mask token."""
        b = globals_.shape[0]
        if mask is not None:  # frame t only: frame t+delta's CLS stays the unmasked view of the global term
            mask = torch.cat([mask, torch.zeros_like(mask)])
        tokens, grid = self.backbone.tokens(globals_.transpose(0, 1).flatten(0, 1), mask, self.mask_token)
        patches = None
        if self.dense:
            patches = tokens[b:, 1:] if self.predictor is None else self.predictor(tokens[:b, 1:], grid)
        if patches is not None and self.patch_head is None:
            # one head call over CLS and patch rows: larger matmuls, one weight-norm of the last layer
            rows = self.head(torch.cat([tokens[:, 0], patches.flatten(0, 1)]))
            cls, patches = list(rows[: 2 * b].chunk(2)), rows[2 * b :].unflatten(0, patches.shape[:2])
        else:
            cls = list(self.head(tokens[:, 0]).chunk(2))
            if patches is not None and self.patch_head is not None:
                patches = self.patch_head(patches)
        if locals_ is not None:
            n = locals_.shape[1]
            local_tokens, _ = self.backbone.tokens(locals_.transpose(0, 1).flatten(0, 1))
            cls += list(self.head(local_tokens[:, 0]).chunk(n))
        if embed:
            return cls, patches, tokens
        return cls, patches


def build_vsd(
    backbone: VisionTransformer,
    out_dim: int,
    hidden_dim: int,
    bottleneck_dim: int,
    separate_patch_head: bool,
    predictor_depth: int | None,
    dense: bool = True,
    norm_last_layer: bool = True,
    masked: bool = False,
) -> VSDNet:
    """Student layout; without `dense` (DINO preset) no predictor and no patch head are built; `masked`
    adds the mask token."""
    dim = backbone.embed_dim
    head = DINOHead(dim, out_dim, hidden_dim, bottleneck_dim, norm_last_layer)
    patch_head = None
    if dense and separate_patch_head:
        patch_head = DINOHead(dim, out_dim, hidden_dim, bottleneck_dim, norm_last_layer)
    predictor = Predictor(dim, backbone.grid, depth=predictor_depth) if dense and predictor_depth else None
    return VSDNet(backbone, head, patch_head, predictor, dense, masked)

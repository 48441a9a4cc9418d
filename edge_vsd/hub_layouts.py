"""Key layouts of torch-hub DINOv3 and timm DINOv2 files renamed to edge-vsd's (DINOv2's own torch-hub
files already use them). Recognised by their keys; the architecture is inferred afterwards."""

from __future__ import annotations

import math
import re

import torch


def to_edge_vsd(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], str | None]:
    """(state dict in edge-vsd's names, the format's pos_resize or None where `infer_config` decides):
    DINOv3 `storage_tokens` and SwiGLU `w1`/`w2`/`w3`, timm's `reg_token`, a `pos_embed` without the CLS
    slot (timm's `no_embed_class`) and timm's packed SwiGLU `fc1`/`fc2`."""
    sd = dict(sd)
    pos_resize = None
    if "storage_tokens" in sd:  # DINOv3: the same tokens as DINOv2's registers, after CLS, without RoPE
        sd["register_tokens"] = sd.pop("storage_tokens")
    if "reg_token" in sd:  # timm: resamples its grid with timm's bicubic + antialias
        sd["register_tokens"] = sd.pop("reg_token")
        pos_resize = "bicubic-antialias"
        pos = sd.get("pos_embed")
        if pos is not None and pos.ndim == 3 and math.isqrt(pos.shape[1]) ** 2 == pos.shape[1]:
            # no_embed_class (timm's DINOv2 register models): the grid is added to patches only, so a zero
            # slot for CLS adds the same nothing
            sd["pos_embed"] = torch.cat([pos.new_zeros(1, 1, pos.shape[-1]), pos], dim=1)
    for i in sorted({int(m.group(1)) for k in sd if (m := re.match(r"blocks\.(\d+)\.mlp\.", k))}):
        p = f"blocks.{i}.mlp."
        for kind in ("weight", "bias"):
            if p + f"w1.{kind}" in sd and p + f"w2.{kind}" in sd:  # DINOv3 SwiGLU: gate w1, up w2, down w3
                sd[p + f"w12.{kind}"] = torch.cat([sd.pop(p + f"w1.{kind}"), sd.pop(p + f"w2.{kind}")])
            fc1, fc2 = sd.get(p + f"fc1.{kind}"), sd.get(p + "fc2.weight")
            if fc1 is not None and fc2 is not None and fc1.shape[0] == 2 * fc2.shape[1]:  # timm SwiGLUPacked
                sd[p + f"w12.{kind}"] = sd.pop(p + f"fc1.{kind}")
        if p + "w12.weight" in sd and p + "fc2.weight" in sd:
            for kind in ("weight", "bias"):
                sd[p + f"w3.{kind}"] = sd.pop(p + f"fc2.{kind}")
    return sd, pos_resize

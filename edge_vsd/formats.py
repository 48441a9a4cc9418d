"""Hugging Face DINOv2 folders (`Dinov2Model`, `Dinov2WithRegistersModel`: config.json + model.safetensors)
renamed to edge-vsd's DINO-style keys, with the position resampling their reference code uses."""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from edge_vsd.errors import InputError

HF_MODEL_TYPES = {"dinov2": "bicubic", "dinov2_with_registers": "bicubic-antialias"}  # -> POS_RESIZE
RENAMES = [  # (Hugging Face key pattern, edge-vsd key) after the q/k/v merge
    (r"^embeddings\.cls_token$", "cls_token"),
    (r"^embeddings\.mask_token$", "mask_token"),
    (r"^embeddings\.register_tokens$", "register_tokens"),
    (r"^embeddings\.position_embeddings$", "pos_embed"),
    (r"^embeddings\.patch_embeddings\.projection\.", "patch_embed.proj."),
    (r"^encoder\.layer\.(\d+)\.norm([12])\.", r"blocks.\1.norm\2."),
    (r"^encoder\.layer\.(\d+)\.attention\.output\.dense\.", r"blocks.\1.attn.proj."),
    (r"^encoder\.layer\.(\d+)\.layer_scale([12])\.lambda1$", r"blocks.\1.ls\2.gamma"),
    (r"^encoder\.layer\.(\d+)\.mlp\.fc([12])\.", r"blocks.\1.mlp.fc\2."),
    (r"^layernorm\.", "norm."),
]


def is_hf_folder(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file() and (path / "model.safetensors").is_file()


def load_hf_folder(path: Path) -> tuple[dict[str, torch.Tensor], str]:
    """(state dict in edge-vsd's names, pos_resize) of a Hugging Face DINOv2 folder; InputError naming the
    folder for another model type or keys that have no place in the ViT."""
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{path / 'config.json'}: not readable JSON ({exc})") from None
    kind = config.get("model_type")
    if kind not in HF_MODEL_TYPES:
        raise InputError(
            f"{path}: a Hugging Face {kind!r} model; edge-vsd loads {', '.join(HF_MODEL_TYPES)} folders"
        )
    if config.get("use_swiglu_ffn"):
        raise InputError(f"{path}: a SwiGLU MLP (DINOv2 giant) is not supported yet")
    if config.get("hidden_act", "gelu") != "gelu" or config.get("qkv_bias", True) is not True:
        raise InputError(f"{path}: hidden_act gelu and qkv_bias true are what edge-vsd's ViT computes")
    from safetensors.torch import load_file

    try:
        raw = load_file(str(path / "model.safetensors"))
    except Exception as exc:  # noqa: BLE001 - any parse failure is a bad file
        raise InputError(f"{path / 'model.safetensors'}: not a readable safetensors file ({exc})") from None
    raw = {re.sub(r"^(dinov2|dinov2_with_registers|model)\.", "", k): v for k, v in raw.items()}
    sd: dict[str, torch.Tensor] = {}
    for key in sorted(raw):
        m = re.match(r"^encoder\.layer\.(\d+)\.attention\.attention\.(query|key|value)\.(weight|bias)$", key)
        if m:
            if m.group(2) == "query":  # q, k, v stacked as DINO's one qkv projection
                i, kind_ = m.group(1), m.group(3)
                parts = [
                    raw[f"encoder.layer.{i}.attention.attention.{n}.{kind_}"]
                    for n in ("query", "key", "value")
                ]
                sd[f"blocks.{i}.attn.qkv.{kind_}"] = torch.cat(parts)
            continue
        for pattern, new in RENAMES:
            if re.match(pattern, key):
                sd[re.sub(pattern, new, key)] = raw[key]
                break
        else:
            sd[key] = raw[key]  # unknown: reported by the strict load
    eps = config.get("layer_norm_eps", 1e-6)
    if abs(eps - 1e-6) > 1e-12:
        raise InputError(f"{path}: layer_norm_eps {eps}; edge-vsd's ViT uses 1e-6")
    return sd, HF_MODEL_TYPES[kind]

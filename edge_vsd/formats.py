"""Hugging Face DINOv2 and DINOv3 folders (`Dinov2Model`, `Dinov2WithRegistersModel`, `DINOv3ViTModel`:
config.json + model.safetensors) renamed to edge-vsd's DINO-style keys, with the position resampling their
reference code uses (DINOv3: RoPE, nothing to resample)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch

from edge_vsd.errors import InputError

HF_MODEL_TYPES = {"dinov2": "bicubic", "dinov2_with_registers": "bicubic-antialias", "dinov3_vit": None}
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
    (r"^encoder\.layer\.(\d+)\.mlp\.weights_in\.", r"blocks.\1.mlp.w12."),  # SwiGLU (giant)
    (r"^encoder\.layer\.(\d+)\.mlp\.weights_out\.", r"blocks.\1.mlp.w3."),
    (r"^layernorm\.", "norm."),
]
DINOV3_RENAMES = [  # DINOv3ViTModel (no position grid: RoPE)
    (r"^embeddings\.cls_token$", "cls_token"),
    (r"^embeddings\.mask_token$", "mask_token"),
    (r"^embeddings\.register_tokens$", "register_tokens"),
    (r"^embeddings\.patch_embeddings\.", "patch_embed.proj."),
    (r"^layer\.(\d+)\.norm([12])\.", r"blocks.\1.norm\2."),
    (r"^layer\.(\d+)\.attention\.o_proj\.", r"blocks.\1.attn.proj."),
    (r"^layer\.(\d+)\.layer_scale([12])\.lambda1$", r"blocks.\1.ls\2.gamma"),
    (r"^layer\.(\d+)\.mlp\.up_proj\.", r"blocks.\1.mlp.fc1."),
    (r"^layer\.(\d+)\.mlp\.down_proj\.", r"blocks.\1.mlp.fc2."),
    (r"^norm\.", "norm."),
]
QKV = {  # model type -> (layer prefix pattern, names of q, k, v)
    "dinov2": (r"encoder\.layer\.(\d+)\.attention\.attention\.", ("query", "key", "value")),
    "dinov3_vit": (r"layer\.(\d+)\.attention\.", ("q_proj", "k_proj", "v_proj")),
}


def is_hf_folder(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file() and (path / "model.safetensors").is_file()


def load_hf_folder(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state dict in edge-vsd's names, metadata: `pos_resize`, or `img_size` for DINOv3) of a Hugging Face
    DINOv2/DINOv3 folder; InputError naming the folder for another model type or settings the ViT lacks."""
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{path / 'config.json'}: not readable JSON ({exc})") from None
    kind = config.get("model_type")
    if kind not in HF_MODEL_TYPES:
        raise InputError(
            f"{path}: a Hugging Face {kind!r} model; edge-vsd loads {', '.join(HF_MODEL_TYPES)} folders"
        )
    dinov3 = kind == "dinov3_vit"
    gated = config.get("use_gated_mlp" if dinov3 else "use_swiglu_ffn", False)
    act = "silu" if gated and dinov3 else "gelu"  # DINOv2's SwiGLU ignores hidden_act
    if config.get("hidden_act", "gelu") != act and not (gated and not dinov3):
        raise InputError(f"{path}: hidden_act {config.get('hidden_act')!r}; edge-vsd's ViT computes {act}")
    biases = ["query_bias", "value_bias", "proj_bias", "mlp_bias"] if dinov3 else ["qkv_bias"]
    if not all(config.get(b, True) is True for b in biases):
        raise InputError(f"{path}: {', '.join(biases)} true are what edge-vsd's ViT computes")
    eps, want = config.get("layer_norm_eps", 1e-5 if dinov3 else 1e-6), 1e-5 if dinov3 else 1e-6
    if abs(eps - want) > 1e-12:
        raise InputError(f"{path}: layer_norm_eps {eps}; edge-vsd's ViT uses {want} for a {kind} model")
    from safetensors.torch import load_file

    try:
        raw = load_file(str(path / "model.safetensors"))
    except Exception as exc:  # noqa: BLE001 - any parse failure is a bad file
        raise InputError(f"{path / 'model.safetensors'}: not a readable safetensors file ({exc})") from None
    if dinov3:
        raw = {re.sub(r"^model\.(?=layer\.)", "", k): v for k, v in raw.items()}
        return _dinov3(config, raw), {"img_size": _pair(config.get("image_size", 224))}
    raw = {re.sub(r"^(dinov2|dinov2_with_registers|model)\.", "", k): v for k, v in raw.items()}
    return _renamed(raw, "dinov2", RENAMES), {"pos_resize": HF_MODEL_TYPES[kind]}


def _dinov3(config: dict[str, Any], raw: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """DINOv3ViTModel's weights as edge-vsd's: q/k/v stacked (a zero, masked k bias where it has none),
    gate and up stacked as SwiGLU's w12, the RoPE periods from rope_theta and the head width."""
    for i in {m.group(1) for k in raw if (m := re.match(r"layer\.(\d+)\.mlp\.gate_proj\.weight$", k))}:
        p = f"layer.{i}.mlp."
        for kind in ("weight", "bias"):
            raw[f"blocks.{i}.mlp.w12.{kind}"] = torch.cat(
                [raw.pop(p + f"gate_proj.{kind}"), raw.pop(p + f"up_proj.{kind}")]
            )
            raw[f"blocks.{i}.mlp.w3.{kind}"] = raw.pop(p + f"down_proj.{kind}")
    if raw.get("embeddings.register_tokens") is not None and raw["embeddings.register_tokens"].shape[1] == 0:
        del raw["embeddings.register_tokens"]  # num_register_tokens 0: an empty parameter
    sd = _renamed(raw, "dinov3_vit", DINOV3_RENAMES)
    dim, heads = int(config.get("hidden_size", 384)), int(config.get("num_attention_heads", 6))
    if not config.get("key_bias", False):
        mask = torch.ones(3 * dim)
        mask[dim : 2 * dim] = 0
        sd.update({k.replace(".bias", ".bias_mask"): mask.clone() for k in sd if k.endswith("attn.qkv.bias")})
    head = dim // heads
    base = float(config.get("rope_theta", 100.0))
    sd["rope_embed.periods"] = base ** (torch.arange(head // 4, dtype=torch.float32) * 4 / head)
    return sd


def _renamed(
    raw: dict[str, torch.Tensor], kind: str, renames: list[tuple[str, str]]
) -> dict[str, torch.Tensor]:
    """`raw` with q, k, v stacked as DINO's one qkv projection (a zero k bias where there is none) and the
    other keys renamed; keys with no rename are kept, for the strict load to report."""
    prefix, names = QKV[kind]
    sd: dict[str, torch.Tensor] = {}
    for key in sorted(raw):
        m = re.match(rf"^{prefix}({'|'.join(names)})\.(weight|bias)$", key)
        if m:
            if m.group(2) == names[0]:
                i, part = m.group(1), m.group(3)
                q = raw[key]
                parts = [raw.get(f"{key[: m.start(2)]}{n}.{part}", torch.zeros_like(q)) for n in names]
                sd[f"blocks.{i}.attn.qkv.{part}"] = torch.cat(parts)
            continue
        for pattern, new in renames:
            if re.match(pattern, key):
                sd[re.sub(pattern, new, key)] = raw[key]
                break
        else:
            sd[key] = raw[key]  # unknown: reported by the strict load
    return sd


def _pair(size: Any) -> list[int]:
    return [int(size), int(size)] if isinstance(size, (int, float)) else [int(s) for s in size]

"""Checkpoints: atomic saving, safe loading (`weights_only=True`), and `load_encoder` for edge-vsd,
DINO and DoRA files (raw backbone state_dicts or full training checkpoints)."""

from __future__ import annotations

import argparse
import logging
import math
import re
from pathlib import Path
from typing import Any

import torch

from edge_vsd.atomic import remove_stale_temps, write_atomic
from edge_vsd.errors import InputError
from edge_vsd.model import VisionTransformer, ViTConfig

FORMAT = "edge-vsd-checkpoint"
log = logging.getLogger("edge_vsd")


def save_atomic(obj: Any, path: str | Path) -> None:
    """torch.save to a temp file in the same folder, fsync, then rename over `path`: the previous
    checkpoint stays in place, whole, until the new one is complete on disk."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)  # left by a writer killed mid-save
    write_atomic(path, lambda f: torch.save(obj, f))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint without executing pickled code; one-line InputError for anything unusable."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise folder_not_checkpoint(path)
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file, not a checkpoint")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file

            return dict(load_file(str(path)))
        except Exception as exc:  # noqa: BLE001 - any parse failure is a bad file
            raise InputError(f"{path}: not a readable safetensors file ({_short(exc)})") from None
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise _load_error(path, exc) from None
    if not isinstance(obj, dict):
        raise InputError(f"{path}: not a checkpoint (a {type(obj).__name__}, expected a dict of tensors)")
    return obj


def folder_not_checkpoint(path: Path, flag: str = "") -> InputError:
    """The error for a folder given where a checkpoint file belongs (an artifact folder, most likely)."""
    what = "an exported artifact folder" if (path / "manifest.json").is_file() else "a folder"
    return InputError(
        f"{path}: {what}, not a checkpoint file{f' ({flag})' if flag else ''}; expected a training run's "
        "checkpoint.pt, a DINO/DoRA/DINOv2/DINOv3 .pth or a Hugging Face DINOv2/DINOv3 folder (config.json, "
        "model.safetensors)"
    )


def _load_error(path: Path, exc: Exception) -> InputError:
    """Say why torch.load (weights only) refused `path`: not torch data at all, pickled objects other than
    tensors, a pickle the safe loader cannot parse, or a damaged file."""
    with open(path, "rb") as f:
        head = f.read(64)
    if not head.startswith((b"PK\x03\x04", b"\x80")):  # torch.save writes a zip, older ones a pickle
        return InputError(f"{path}: not a PyTorch checkpoint ({_describe_head(head)})")
    text = str(exc)
    found = re.search(r"GLOBAL (\S+) was not an allowed global|Unsupported global: GLOBAL (\S+)", text)
    if found:
        name = found.group(1) or found.group(2)
        return InputError(f"{path}: holds pickled objects other than tensors ({name}); refusing to load it")
    operand = re.search(r"Unsupported operand (\d+)", text)
    if operand:
        return InputError(
            f"{path}: a pickle that the safe (weights-only) loader cannot parse (opcode {operand.group(1)}, "
            "as in a plain pickle.dump file); refusing to load it"
        )
    detail = re.split(r"(?<=[a-z])\. ", _short(exc))[0]  # torch's first sentence says what broke
    if isinstance(exc, (KeyError, IndexError, EOFError)) or not re.search(r"[A-Za-z]{3}", detail):
        detail = "damaged or truncated pickle data"
    return InputError(f"{path}: not a readable PyTorch checkpoint ({detail})")


def _describe_head(head: bytes) -> str:
    """What a file that is not torch.save output looks like, from its first bytes."""
    if b"\0" not in head and all(b >= 32 or b in b"\t\r\n" for b in head):
        first = head.decode("utf-8", errors="replace").strip().splitlines()[0][:30] if head.strip() else ""
        return f"a text file starting {first!r}"
    return "binary data that is neither a torch.save zip archive nor a pickle"


def _short(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__


# Keys of training-only parts that a backbone load leaves out on purpose (reported, never loaded): the
# projection heads and predictor of edge-vsd and DINO, and DINOv2's masked-token embedding.
TRAINING_ONLY = ("head.", "patch_head.", "predictor.", "mask_token", "dino_head.", "ibot_head.")
# Keys that name parts of another architecture: what their presence says about the file
FOREIGN_PARTS = {
    r"^(local_)?cls_norm\.": "DINOv3 7B's separate CLS norms",
}
ROPE_SIZE = (224, 224)  # the default size of a RoPE (DINOv3) model, which stores no grid: the hub's


def split_state_dict(
    ckpt: dict[str, Any], which: str = "teacher"
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """(backbone tensors, ignored training-only keys) from any supported layout: the `which` (else teacher,
    student, state_dict or model) entry, with `module.`/`backbone.` prefixes stripped."""
    sd: Any = ckpt
    for key in (which, "teacher", "student", "state_dict", "model"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
            break
    tensors = {re.sub(r"^module\.", "", k): v for k, v in sd.items() if isinstance(v, torch.Tensor)}
    ignored = []
    if any(k.startswith("backbone.") for k in tensors):  # full wrapper: keep the backbone, drop the heads
        ignored = [k for k in tensors if not k.startswith("backbone.")]
        tensors = {k[len("backbone.") :]: v for k, v in tensors.items() if k.startswith("backbone.")}
    ignored += [k for k in tensors if k.startswith(TRAINING_ONLY)]
    # DINOv2 training checkpoints chunk the blocks: blocks.CHUNK.I.* with I the block's own index
    tensors = {re.sub(r"^blocks\.\d+\.(\d+)\.", r"blocks.\1.", k): v for k, v in tensors.items()}
    return {k: v for k, v in tensors.items() if not k.startswith(TRAINING_ONLY)}, ignored


def backbone_state_dict(ckpt: dict[str, Any], which: str = "teacher") -> dict[str, torch.Tensor]:
    """The backbone tensors of any supported layout (see `split_state_dict`)."""
    return split_state_dict(ckpt, which)[0]


def unexpected_keys_error(path: str | Path, keys: list[str]) -> InputError:
    """One line naming the keys no part of our ViT takes, and which architecture they point to."""
    parts = sorted({name for k in keys for rx, name in FOREIGN_PARTS.items() if re.search(rx, k)})
    what = f" ({', '.join(parts)}: not a format edge-vsd loads)" if parts else ""
    shown = ", ".join(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")
    return InputError(f"{path}: unexpected keys {shown}{what}; nothing was loaded")


def infer_config(
    sd: dict[str, torch.Tensor], img_size: tuple[int, int] | None = None, pos_resize: str | None = None
) -> ViTConfig:
    """Architecture from the tensors: width from cls_token, depth from blocks, patch from the kernel,
    grid from pos_embed (square unless `img_size` says otherwise), heads = width / 64, DINOv2's registers
    and LayerScale where present. `pos_resize` (else inferred, see POS_RESIZE): how the grid resamples.
    DINOv3 (RoPE periods): heads from the periods, LayerNorm eps 1e-5, a masked k bias, no grid."""
    rope = "rope_embed.periods" in sd
    required = ["cls_token", *([] if rope else ["pos_embed"]), "patch_embed.proj.weight", "norm.weight"]
    missing = [k for k in required if k not in sd]
    if missing:
        raise InputError(f"missing backbone weights {', '.join(missing)} (not a ViT checkpoint?)")
    dim = sd["cls_token"].shape[-1]
    depth = len({int(m.group(1)) for k in sd if (m := re.match(r"blocks\.(\d+)\.", k))})
    if depth == 0:
        raise InputError("no transformer blocks (blocks.N.*) in the checkpoint")
    patch = sd["patch_embed.proj.weight"].shape[-1]
    n = 0 if rope else sd["pos_embed"].shape[1] - 1
    if img_size is None and rope:
        img_size = ROPE_SIZE
    if img_size is None:
        side = math.isqrt(n)
        if side * side != n:
            raise InputError(f"pos_embed has {n} patch positions, not a square grid; pass the image size")
        img_size = (side * patch, side * patch)
    swiglu = "blocks.0.mlp.w12.weight" in sd
    hidden = sd.get("blocks.0.mlp.w3.weight" if swiglu else "blocks.0.mlp.fc1.weight")
    mlp_ratio = (hidden.shape[1] if swiglu else hidden.shape[0]) / dim if hidden is not None else 4.0
    registers = int(sd["register_tokens"].shape[1]) if "register_tokens" in sd else 0
    layer_scale = "blocks.0.ls1.gamma" in sd
    if rope:  # RoPE (DINOv3) resamples nothing: its coordinates span [-1, 1] at every size
        pos_resize = "bicubic"
    elif pos_resize is None:  # DINOv2 (LayerScale) hub files: register models antialias, others offset
        pos_resize = "bicubic-antialias" if registers else "bicubic-offset" if layer_scale else "bicubic"
    heads = dim // (4 * sd["rope_embed.periods"].numel()) if rope else max(1, dim // 64)
    return ViTConfig(
        embed_dim=dim,
        depth=depth,
        num_heads=max(1, heads),
        patch_size=patch,
        img_size=(int(img_size[0]), int(img_size[1])),
        mlp_ratio=mlp_ratio,
        registers=registers,
        layer_scale=layer_scale,
        pos_resize=pos_resize,
        norm_eps=1e-5 if rope else 1e-6,
        k_bias="blocks.0.attn.qkv.bias_mask" not in sd,
        ffn="swiglu" if swiglu else "mlp",
        rope=rope,
    )


def load_encoder(path: str | Path, which: str = "teacher") -> VisionTransformer:
    """The backbone (teacher by default) of an edge-vsd, DINO or DoRA checkpoint, in eval mode. Strict: a key
    that no part of the ViT takes is an InputError naming it; training-only keys are logged as ignored."""
    from edge_vsd.formats import is_hf_folder, load_hf_folder
    from edge_vsd.hub_layouts import to_edge_vsd

    meta: dict[str, Any] = {}
    if is_hf_folder(Path(path)):
        ckpt, meta = load_hf_folder(Path(path))
    else:
        ckpt = load_checkpoint(path)
    sd, ignored = split_state_dict(ckpt, which)
    sd, pos_resize = to_edge_vsd(sd)
    saved = ckpt.get("edge_vsd")
    if isinstance(saved, dict):
        meta = saved
    img_size = tuple(meta["img_size"]) if "img_size" in meta else None
    pos_resize = meta.get("pos_resize", pos_resize)
    try:
        cfg = infer_config(sd, img_size, pos_resize)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None
    with torch.device("meta"):  # no random init of weights that are overwritten next
        model = VisionTransformer(cfg)
    expected = model.state_dict()
    unexpected = [k for k in sd if k not in expected]
    if unexpected:
        raise unexpected_keys_error(path, unexpected)
    for k, v in sd.items():
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise InputError(f"{path}: weight {k} contains NaN or Inf")
    missing = [k for k in expected if k not in sd]
    if missing:
        raise InputError(
            f"{path}: missing backbone weights: {', '.join(missing[:5])}"
            + (f" (+{len(missing) - 5} more)" if len(missing) > 5 else "")
        )
    shapes = [(k, tuple(v.shape), tuple(sd[k].shape)) for k, v in expected.items()]
    wrong = [f"{k} {got} (expected {want})" for k, want, got in shapes if want != got]
    if wrong:
        raise InputError(f"{path}: weights of the wrong shape for {cfg_text(cfg)}: {'; '.join(wrong[:3])}")
    model.load_state_dict(sd, strict=True, assign=True)
    if ignored:  # said for foreign formats; an edge-vsd checkpoint's heads are dropped as a matter of course
        level = logging.DEBUG if ckpt.get("format") == FORMAT else logging.INFO
        log.log(level, "%s: ignored training-only weights %s", path, summarize_keys(ignored))
    return model.eval()


def cfg_text(cfg: ViTConfig) -> str:
    return f"a ViT of width {cfg.embed_dim}, depth {cfg.depth}, patch {cfg.patch_size}"


def summarize_keys(keys: list[str]) -> str:
    """`head.* (8), mask_token`: keys grouped by their first name."""
    groups: dict[str, int] = {}
    for k in keys:
        first = k.split(".")[0]
        groups[first] = groups.get(first, 0) + 1
    return ", ".join(f"{g}.* ({n})" if n > 1 or g not in keys else g for g, n in groups.items())

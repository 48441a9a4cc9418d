"""Vision Transformer in DINO's naming, the projection head and the next-frame predictor."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


class Features(NamedTuple):
    cls: torch.Tensor  # (B, D)
    patches: torch.Tensor  # (B, h, w, D)


@dataclass(frozen=True)
class ViTConfig:
    embed_dim: int
    depth: int
    num_heads: int
    patch_size: int = 16
    img_size: tuple[int, int] = (224, 224)  # grid the position embedding is stored at
    mlp_ratio: float = 4.0
    registers: int = 0  # DINOv2 register tokens: after CLS, no position embedding, not in the outputs
    layer_scale: bool = False  # DINOv2 LayerScale: each residual branch scaled per channel (ls1/ls2.gamma)
    pos_resize: str = "bicubic"  # how the position grid is resampled: see POS_RESIZE
    norm_eps: float = 1e-6  # LayerNorm epsilon: 1e-6 (DINO, DINOv2), 1e-5 (DINOv3)
    k_bias: bool = True  # False: the key bias is held at zero by a mask (DINOv3's `attn.qkv.bias_mask`)
    ffn: str = "mlp"  # "mlp" (GELU) or "swiglu" (DINOv2 giant, DINOv3 S+/H+: `mlp.w12`, `mlp.w3`)
    rope: bool = False  # DINOv3: rotary embeddings on patch tokens instead of a learned position grid
    rope_base: float = 100.0  # RoPE period base (the periods are stored, `rope_embed.periods`)


# How each format resamples its stored position grid to another size (what its reference code does):
#   bicubic            size=, no antialias: DINO v1, DoRA, edge-vsd, Hugging Face Dinov2Model
#   bicubic-antialias  size=, antialias: DINOv2 with registers (torch hub and Dinov2WithRegistersModel)
#   bicubic-offset     scale_factor=(n + 0.1) / M, no antialias: DINOv2 torch-hub files without registers
POS_RESIZE = ("bicubic", "bicubic-antialias", "bicubic-offset")

PRESETS: dict[str, dict[str, Any]] = {
    "vit_tiny": dict(embed_dim=192, depth=12, num_heads=3),
    "vit_small": dict(embed_dim=384, depth=12, num_heads=6),
    "vit_base": dict(embed_dim=768, depth=12, num_heads=12),
}


def arch_name(embed_dim: int, depth: int) -> str:
    for name, p in PRESETS.items():
        if p["embed_dim"] == embed_dim and p["depth"] == depth:
            return name
    return f"vit_d{embed_dim}_l{depth}"


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    if p == 0.0 or not training:
        return x
    # scale the (B, 1, ...) mask, not x: one pass over the activations instead of two
    keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1 - p).div_(1 - p)
    return x * keep


class DropPath(nn.Module):
    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.p, self.training)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, out: int | None = None):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, out or dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def swiglu_hidden(dim: int, mlp_ratio: float = 4.0) -> int:
    """DINOv2's SwiGLU width: two thirds of the MLP's hidden size, rounded up to a multiple of 8."""
    return (int(dim * mlp_ratio * 2 / 3) + 7) // 8 * 8


class SwiGLU(nn.Module):
    """Gated MLP: w3(silu(a) * b) with a, b the two halves of the fused projection w12."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.w12 = nn.Linear(dim, 2 * hidden)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(a) * b)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) over the last dimension's halves: the rotation RoPE pairs channels by."""
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


class Attention(nn.Module):
    """Multi-head self-attention. By default explicit matmuls, which export to the plain MatMul/Softmax graph
    that NNCF and TensorRT handle well. With `fused` set (training turns it on, see `use_fused_attention`)
    it calls `scaled_dot_product_attention` (flash/memory-efficient kernels); an ONNX export always takes
    the explicit path."""

    def __init__(self, dim: int, num_heads: int, k_bias: bool = True):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        if not k_bias:  # DINOv3: the k third of the bias multiplied by 0 (its key stays `qkv.bias_mask`)
            mask = torch.ones(dim * 3)
            mask[dim : 2 * dim] = 0
            self.qkv.register_buffer("bias_mask", mask)
        self.proj = nn.Linear(dim, dim)
        self.fused = False

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """`rope`: (cos, sin) tables of shape (n, head dim) rotating q and k (identity rows for CLS and
        registers), or None."""
        b, n, c = x.shape
        mask = getattr(self.qkv, "bias_mask", None)
        qkv = self.qkv(x) if mask is None else F.linear(x, self.qkv.weight, self.qkv.bias * mask)
        qkv = qkv.reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # unbind's backward stacks; indexing would zero-fill and add three times
        if rope is not None:
            cos, sin = rope
            q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        if self.fused and not torch.onnx.is_in_onnx_export():
            out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        else:
            attn = (q * self.scale) @ k.transpose(-2, -1)
            out = attn.softmax(dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


def use_fused_attention(model: nn.Module, on: bool = True) -> nn.Module:
    """Switch every attention layer of `model` to the fused kernel (or back to explicit matmuls)."""
    for m in model.modules():
        if isinstance(m, Attention):
            m.fused = on
    return model


class Block(nn.Module):
    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
        layer_scale: bool = False,
        norm_eps: float = 1e-6,
        k_bias: bool = True,
        ffn: str = "mlp",
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, k_bias)
        self.ls1 = LayerScale(dim) if layer_scale else nn.Identity()
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        hidden = round(dim * mlp_ratio)  # mlp_ratio is hidden / dim, for SwiGLU too
        self.mlp = SwiGLU(dim, hidden) if ffn == "swiglu" else Mlp(dim, hidden)
        self.ls2 = LayerScale(dim) if layer_scale else nn.Identity()

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        x = x + self.drop_path(self.ls1(self.attn(self.norm1(x), rope)))
        return x + self.drop_path(self.ls2(self.mlp(self.norm2(x))))


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)  # (B, D, h, w)


def resize_pos_embed(
    pos: torch.Tensor, src: tuple[int, int], dst: tuple[int, int], mode: str = "bicubic"
) -> torch.Tensor:
    """Bicubic resize of a (1, h*w, D) patch position grid to `dst`, the way `mode` says (see POS_RESIZE),
    in float32."""
    if src == dst:
        return pos
    d = pos.shape[-1]
    grid = pos.reshape(1, src[0], src[1], d).permute(0, 3, 1, 2).float()
    if mode == "bicubic-offset":  # DINOv2's historical offset: the scale, not the size, sets the sampling
        scale = ((dst[0] + 0.1) / src[0], (dst[1] + 0.1) / src[1])
        grid = F.interpolate(grid, scale_factor=scale, mode="bicubic", align_corners=False)
    else:
        antialias = mode == "bicubic-antialias"
        grid = F.interpolate(grid, size=dst, mode="bicubic", align_corners=False, antialias=antialias)
    return grid.to(pos.dtype).permute(0, 2, 3, 1).reshape(1, dst[0] * dst[1], d)


class LayerScale(nn.Module):
    """Per-channel scale of a residual branch (DINOv2's `ls1`/`ls2`, parameter `gamma`)."""

    def __init__(self, dim: int, init: float = 1e-5):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class RopeEmbed(nn.Module):
    """DINOv3's axial RoPE: per-axis patch-centre coordinates in [-1, 1] of the grid at hand (so any size
    is native, nothing is resampled), angles 2 pi * coordinate / period for head_dim / 4 periods per axis."""

    def __init__(self, head_dim: int, base: float = 100.0):
        super().__init__()
        quarter = head_dim // 4
        self.register_buffer("periods", base ** (torch.arange(quarter, dtype=torch.float32) * 4 / head_dim))

    def tables(self, grid: tuple[int, int], prefix: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(cos, sin), each (prefix + h*w, head_dim) in float32; the first `prefix` rows (CLS, registers)
        leave their tokens as they are."""
        dev = self.periods.device
        ys, xs = ((torch.arange(n, dtype=torch.float32, device=dev) + 0.5) / n * 2 - 1 for n in grid)
        coords = torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1).reshape(-1, 2)
        angles = (2 * math.pi * coords[:, :, None] / self.periods.float()).flatten(1)  # (h*w, head_dim / 2)
        angles = torch.cat([angles, angles], dim=-1)
        ident = angles.new_zeros(prefix, angles.shape[-1])
        return torch.cat([ident + 1, angles.cos()]), torch.cat([ident, angles.sin()])


class VisionTransformer(nn.Module):
    """ViT whose forward returns `Features(cls, patches)` after the final norm."""

    def __init__(self, cfg: ViTConfig, drop_path_rate: float = 0.0):
        super().__init__()
        self.cfg = cfg
        self.patch_size = cfg.patch_size
        self.embed_dim = cfg.embed_dim
        self.grid = (cfg.img_size[0] // cfg.patch_size, cfg.img_size[1] // cfg.patch_size)
        self.trained_size = cfg.img_size  # `at_size` copies keep the size the grid was trained at
        self.patch_embed = PatchEmbed(cfg.patch_size, cfg.embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.embed_dim))
        if cfg.rope:
            self.rope_embed = RopeEmbed(cfg.embed_dim // cfg.num_heads, cfg.rope_base)
        else:
            self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.grid[0] * self.grid[1], cfg.embed_dim))
        if cfg.registers:
            self.register_tokens = nn.Parameter(torch.zeros(1, cfg.registers, cfg.embed_dim))
        rates = [drop_path_rate * i / max(1, cfg.depth - 1) for i in range(cfg.depth)]  # stochastic depth
        d = cfg.embed_dim
        self.blocks = nn.ModuleList(
            Block(d, cfg.num_heads, cfg.mlp_ratio, r, cfg.layer_scale, cfg.norm_eps, cfg.k_bias, cfg.ffn)
            for r in rates
        )
        self.norm = nn.LayerNorm(cfg.embed_dim, eps=cfg.norm_eps)
        if not cfg.rope:  # initialised here, after the blocks: a seed gives the weights it always gave
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.apply(_init_weights)

    @property
    def arch(self) -> str:
        return arch_name(self.cfg.embed_dim, self.cfg.depth)

    def all_tokens(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, mask_token: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, tuple[int, int]]:
        """Normalised tokens (B, 1 + registers + h*w, D): CLS, registers, patches; and the grid (h, w).
        Patches where `mask` (B, h*w) is True enter as `mask_token` (D,), before the position embedding."""
        b, _, H, W = x.shape
        if H % self.patch_size or W % self.patch_size:
            raise ValueError(f"image size {H}x{W} is not a multiple of the patch size {self.patch_size}")
        grid = (H // self.patch_size, W // self.patch_size)
        patches = self.patch_embed(x).flatten(2).transpose(1, 2)
        if mask is not None and mask_token is not None:
            patches = torch.where(mask.unsqueeze(-1), mask_token.to(patches.dtype), patches)
        x = torch.cat([self.cls_token.expand(b, -1, -1), patches], 1)
        if not self.cfg.rope:
            pos = self.pos_embed
            x = x + torch.cat(
                [pos[:, :1], resize_pos_embed(pos[:, 1:], self.grid, grid, self.cfg.pos_resize)], dim=1
            )
        r = self.cfg.registers
        if r:
            x = torch.cat([x[:, :1], self.register_tokens.expand(b, -1, -1), x[:, 1:]], dim=1)
        rope = self._rope_tables(grid) if self.cfg.rope else None
        for blk in self.blocks:
            x = blk(x, rope)
        return self.norm(x), grid

    def tokens(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, mask_token: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, tuple[int, int]]:
        """Normalised tokens (B, 1 + h*w, D) (registers dropped) and the patch grid (h, w); `mask` as in
        `all_tokens`."""
        x, grid = self.all_tokens(x, mask, mask_token)
        r = self.cfg.registers
        return (torch.cat([x[:, :1], x[:, 1 + r :]], dim=1) if r else x), grid

    def _rope_tables(self, grid: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """The RoPE (cos, sin) for `grid`: the constants `at_size` stored where they fit, else computed."""
        cos = getattr(self, "rope_cos", None)
        n = 1 + self.cfg.registers + grid[0] * grid[1]
        if cos is not None and grid == self.grid and cos.shape[0] == n:
            return cos, self.rope_sin
        return self.rope_embed.tables(grid, 1 + self.cfg.registers)

    def at_size(self, size: tuple[int, int]) -> VisionTransformer:
        """A copy whose stored position grid is resampled once (in its own mode) for `size`, or whose RoPE
        tables are computed once for it, so an export at that size holds constants and no Resize node."""
        import copy

        out = copy.deepcopy(self)
        grid = (size[0] // self.patch_size, size[1] // self.patch_size)
        if self.cfg.rope:  # the (cos, sin) tables of this grid, computed once: constants in an export
            cos, sin = self.rope_embed.tables(grid, 1 + self.cfg.registers)
            out.register_buffer("rope_cos", cos, persistent=False)
            out.register_buffer("rope_sin", sin, persistent=False)
        else:
            pos = self.pos_embed.detach()
            new = resize_pos_embed(pos[:, 1:], self.grid, grid, self.cfg.pos_resize)
            out.pos_embed = nn.Parameter(
                torch.cat([pos[:, :1], new], 1), requires_grad=self.pos_embed.requires_grad
            )
        out.cfg = replace(self.cfg, img_size=(size[0], size[1]))
        out.grid = grid
        return out

    def forward(self, x: torch.Tensor) -> Features:
        t, (h, w) = self.tokens(x)
        return Features(t[:, 0], t[:, 1:].reshape(t.shape[0], h, w, t.shape[-1]))


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def build_vit(
    arch: str = "vit_tiny",
    img_size: int | tuple[int, int] = 224,
    patch_size: int = 16,
    drop_path_rate: float = 0.0,
) -> VisionTransformer:
    """A preset ViT (`vit_tiny`, `vit_small`, `vit_base`) for images of `img_size` (int or (H, W))."""
    if arch not in PRESETS:
        raise ValueError(f"unknown arch {arch!r}; choose from {', '.join(PRESETS)}")
    if patch_size not in (8, 16):
        raise ValueError(f"patch size must be 8 or 16, got {patch_size}")
    size = (img_size, img_size) if isinstance(img_size, int) else (img_size[0], img_size[1])
    if size[0] % patch_size or size[1] % patch_size:
        raise ValueError(f"image size {size[0]}x{size[1]} is not a multiple of the patch size {patch_size}")
    cfg = ViTConfig(**PRESETS[arch], patch_size=patch_size, img_size=size)
    return VisionTransformer(cfg, drop_path_rate)


class DINOHead(nn.Module):
    """3-layer MLP -> bottleneck -> L2 normalise -> weight-normed linear layer to `out_dim` prototypes."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden_dim: int = 1024,
        bottleneck_dim: int = 256,
        norm_last_layer: bool = True,
    ):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, hidden_dim),
            nn.GELU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.GELU(),
            nn.Linear(hidden_dim, bottleneck_dim),
        )
        self.apply(_init_weights)
        self.last_layer = nn.utils.parametrizations.weight_norm(
            nn.Linear(bottleneck_dim, out_dim, bias=False)
        )
        self.last_layer.parametrizations.weight.original0.data.fill_(1.0)
        if norm_last_layer:  # DINO's default: the gain stays 1, only the direction of each prototype learns
            self.last_layer.parametrizations.weight.original0.requires_grad = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last_layer(F.normalize(self.mlp(x), dim=-1, p=2))


class Predictor(nn.Module):
    """Next-frame predictor: patch tokens of frame t -> predicted patch tokens of frame t+delta."""

    def __init__(
        self,
        dim: int,
        grid: tuple[int, int],
        pred_dim: int | None = None,
        depth: int = 2,
        num_heads: int | None = None,
    ):
        super().__init__()
        pred_dim = pred_dim or dim
        self.grid = grid
        self.embed = nn.Linear(dim, pred_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, grid[0] * grid[1], pred_dim))
        self.blocks = nn.ModuleList(
            Block(pred_dim, num_heads or max(1, pred_dim // 64)) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(pred_dim, eps=1e-6)
        self.out = Mlp(pred_dim, pred_dim * 2, dim)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.apply(_init_weights)

    def forward(self, patches: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        x = self.embed(patches) + resize_pos_embed(self.pos_embed, self.grid, grid)
        for blk in self.blocks:
            x = blk(x)
        return self.out(self.norm(x))


__all__ = [
    "Features",
    "ViTConfig",
    "VisionTransformer",
    "build_vit",
    "DINOHead",
    "Predictor",
    "PRESETS",
    "use_fused_attention",
]

"""High-norm outlier tokens: how far the largest patch token's norm stands above the median, before the final
norm. Trained large ViTs grow a few such tokens (Darcet et al., "Vision Transformers Need Registers"); they
widen the activation range INT8 must cover, and registers are meant to absorb them.

    python -m edge_vsd.benchmarks.token_norms CKPT [CKPT ...] [--data VIDEO] [--frames N] [--img-size N]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np


def token_norms(model: Any, x: Any) -> dict[str, Any]:
    """Norms of the tokens entering `model.norm` for the batch `x` (NCHW): per image, the largest patch
    norm over the median ("ratio"), and the register tokens' mean norm over the median patch norm."""
    import torch

    seen: list[torch.Tensor] = []
    hook = model.norm.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach()))
    try:
        with torch.inference_mode():
            model.all_tokens(x)
    finally:
        hook.remove()
    r = model.cfg.registers
    norms = seen[0].norm(dim=-1)  # (B, 1 + registers + patches)
    patches = norms[:, 1 + r :]
    median = patches.median(dim=1).values
    ratio = (patches.max(dim=1).values / median).numpy()
    out: dict[str, Any] = {
        "images": int(len(ratio)),
        "max_over_median_mean": float(ratio.mean()),
        "max_over_median_max": float(ratio.max()),
        "share_above_10x_median": float((patches > 10 * median[:, None]).float().mean()),
        "registers": r,
    }
    if r:
        out["register_over_median_patch"] = float((norms[:, 1 : 1 + r].mean(dim=1) / median).mean())
    return out


def measure(checkpoint: str | Path, frames: np.ndarray, img_size: int | None = None) -> dict[str, Any]:
    """`token_norms` of a checkpoint's backbone (teacher) on BGR uint8 frames, at its training size."""
    from edge_vsd.checkpoint import load_encoder
    from edge_vsd.data.preprocess import preprocess

    model = load_encoder(checkpoint)
    trained = (int(model.trained_size[0]), int(model.trained_size[1]))
    size = (img_size, img_size) if img_size else trained
    if size != trained:
        model = model.at_size(size)
    norms = token_norms(model, preprocess(frames, size))
    name = "/".join(Path(checkpoint).parts[-2:])  # run/checkpoint.pt: the run tells checkpoints apart
    return {"checkpoint": name, "img_size": list(size), **norms}


def main(argv: list[str] | None = None) -> int:
    from edge_vsd.benchmarks.data import load_frames

    prog = "python -m edge_vsd.benchmarks.token_norms"
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    p.add_argument("checkpoints", nargs="+")
    p.add_argument("--data", help="video or image folder (default: synthetic frames)")
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--img-size", type=int)
    args = p.parse_args(argv)
    frames, source = load_frames(args.data, args.frames)
    rows = [measure(c, frames, args.img_size) for c in args.checkpoints]
    print(json.dumps({"data": source, "models": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

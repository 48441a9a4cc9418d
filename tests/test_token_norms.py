"""The outlier-token measurement: a planted high-norm patch token is found, and its register tokens read."""

from __future__ import annotations

import torch
from edge_vsd.benchmarks.token_norms import main, token_norms

from edge_vsd.model import VisionTransformer, ViTConfig


def tiny(registers: int) -> VisionTransformer:
    torch.manual_seed(0)
    cfg = ViTConfig(embed_dim=64, depth=2, num_heads=2, patch_size=16, img_size=(64, 64), registers=registers)
    return VisionTransformer(cfg).eval()


def test_a_planted_high_norm_patch_token_stands_out_and_random_weights_have_none():
    x = torch.randn(3, 3, 64, 64)
    model = tiny(registers=4)
    calm = token_norms(model, x)
    assert calm["max_over_median_max"] < 3 and calm["share_above_10x_median"] == 0
    assert calm["registers"] == 4 and calm["register_over_median_patch"] > 0
    with torch.no_grad():
        model.pos_embed[0, 1 + 5] += 200.0  # one grid position, every image: an outlier token there
    spiky = token_norms(model, x)
    assert spiky["max_over_median_mean"] > 10
    assert abs(spiky["share_above_10x_median"] - 1 / 16) < 1e-6  # one of the 4 x 4 patches


def test_the_command_measures_a_checkpoint_on_frames(tmp_path, capsys):
    import json

    model = tiny(registers=0)
    path = tmp_path / "enc.pt"
    torch.save({"teacher": model.state_dict(), "edge_vsd": {"img_size": [64, 64]}}, path)
    assert main([str(path), "--frames", "4"]) == 0
    row = json.loads(capsys.readouterr().out)["models"][0]
    assert row["images"] == 4 and row["img_size"] == [64, 64] and "register_over_median_patch" not in row
    assert row["checkpoint"] == f"{tmp_path.name}/enc.pt"

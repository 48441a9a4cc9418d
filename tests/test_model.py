import pytest
import torch

from edge_vsd.model import PRESETS, DINOHead, Predictor, build_vit, resize_pos_embed


@pytest.mark.parametrize("arch", list(PRESETS))
def test_presets_shapes(arch):
    model = build_vit(arch, 64).eval()
    with torch.no_grad():
        f = model(torch.randn(2, 3, 64, 64))
    dim = PRESETS[arch]["embed_dim"]
    assert f.cls.shape == (2, dim) and f.patches.shape == (2, 4, 4, dim)
    assert len(model.blocks) == 12 and model.blocks[0].attn.num_heads == PRESETS[arch]["num_heads"]


def test_non_square_and_patch8():
    model = build_vit("vit_tiny", (96, 128), patch_size=8).eval()
    f = model(torch.randn(1, 3, 96, 128))
    assert f.patches.shape == (1, 12, 16, 192)
    # a size other than the stored grid interpolates the position embedding
    assert model(torch.randn(1, 3, 64, 80)).patches.shape == (1, 8, 10, 192)


def test_bad_sizes_raise():
    with pytest.raises(ValueError, match="multiple of the patch"):
        build_vit("vit_tiny", 100)
    with pytest.raises(ValueError, match="not a multiple"):
        build_vit("vit_tiny", 64)(torch.randn(1, 3, 70, 64))


def test_pos_embed_resize_identity_and_size():
    pos = torch.randn(1, 16, 8)
    assert resize_pos_embed(pos, (4, 4), (4, 4)) is pos
    out = resize_pos_embed(pos, (4, 4), (6, 3))
    assert out.shape == (1, 18, 8)


def test_final_norm_applied():
    model = build_vit("vit_tiny", 32).eval()
    f = model(torch.randn(3, 3, 32, 32))
    # LayerNorm output with unit weight and zero bias: zero mean per token
    assert torch.allclose(f.cls.mean(-1), torch.zeros(3), atol=1e-5)


def test_heads_and_predictor():
    head = DINOHead(192, 256, 128, 64)
    out = head(torch.randn(5, 192))
    assert out.shape == (5, 256)
    # weight-normed last layer with unit norms and L2-normalised input: logits bounded by 1
    assert out.abs().max() <= 1.0 + 1e-5
    pred = Predictor(192, (4, 4))
    assert pred(torch.randn(2, 16, 192), (4, 4)).shape == (2, 16, 192)

import pytest
import torch

from edge_vsd.model import (
    PRESETS,
    DINOHead,
    Predictor,
    build_vit,
    resize_pos_embed,
    use_fused_attention,
)


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


def _onnx_ops(model, tmp_path) -> list[str]:
    onnx = pytest.importorskip("onnx")
    from edge_vsd.export.onnx_export import export_onnx

    path = export_onnx(model, tmp_path / "m.onnx", (32, 32))
    return [n.op_type for n in onnx.load(str(path)).graph.node]


@pytest.mark.parametrize("train_mode", [True, False])
def test_fused_attention_matches_explicit(train_mode):
    torch.manual_seed(0)
    model = build_vit("vit_tiny", 32).train(train_mode)
    x = torch.randn(3, 3, 32, 32)
    outs, grads = [], []
    for fused in (False, True):
        use_fused_attention(model, fused)
        assert all(b.attn.fused is fused for b in model.blocks)
        model.zero_grad()
        f = model(x)
        (f.cls.square().sum() + f.patches.sum()).backward()
        outs.append(torch.cat([f.cls.flatten(), f.patches.flatten()]).detach())
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-5)
    # summation order differs between the kernels: compare the gradient as a whole
    assert (grads[1] - grads[0]).norm() <= 1e-5 * grads[0].norm()


def test_export_of_fused_model_keeps_explicit_attention(tmp_path):
    """A backbone with fused attention switched on still exports the plain MatMul/Softmax graph."""
    model = use_fused_attention(build_vit("vit_tiny", 32), True)
    ops = _onnx_ops(model, tmp_path)
    assert ops.count("Softmax") == len(model.blocks)
    assert not {"Attention", "MultiHeadAttention"} & set(ops)

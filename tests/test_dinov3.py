"""DINOv3 ViT checkpoints as they come: a Hugging Face `DINOv3ViTModel` folder and the torch-hub layout load
with the architecture inferred, match the reference forward (transformers, random weights made offline) at
the native and other sizes, CLS, patches and storage tokens, and export with constant RoPE tables."""

from __future__ import annotations

import json

import pytest
import torch

from edge_vsd import load_encoder
from edge_vsd.formats import load_hf_folder

transformers = pytest.importorskip("transformers", reason="transformers is the DINOv3 reference (dev extra)")

SMALL = dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, num_register_tokens=4)
SIZES = ((64, 64), (96, 96), (48, 80))  # native (image_size 64), larger, non-square


def hf_model(gated: bool = False):
    """A random DINOv3ViTModel; `gated`: the SwiGLU MLP of ViT-S+/H+."""
    torch.manual_seed(0)
    mlp = dict(use_gated_mlp=True, hidden_act="silu", intermediate_size=192) if gated else {}
    cfg = transformers.DINOv3ViTConfig(**{**SMALL, "intermediate_size": 512, **mlp}, image_size=64)
    model = transformers.DINOv3ViTModel(cfg)
    with torch.no_grad():  # LayerScale, biases and tokens away from their constant inits
        for name, p in model.named_parameters():
            if "lambda1" in name or "token" in name or name.endswith("bias"):
                p.copy_(torch.randn_like(p) * (0.5 if "lambda1" in name else 0.1))
    return model.eval()


def reference(model, x):
    """(CLS, storage tokens, patches) of the reference forward, in eval mode (no RoPE augmentation)."""
    with torch.no_grad():
        h = model(pixel_values=x).last_hidden_state
    return h[:, 0], h[:, 1:5], h[:, 5:]


def assert_matches(enc, model, size):
    x = torch.randn(2, 3, *size)
    cls, storage, patches = reference(model, x)
    with torch.no_grad():
        tokens, _ = enc.all_tokens(x)
        out = enc(x)
    assert torch.allclose(tokens[:, 1:5], storage, atol=1e-4), size
    assert torch.allclose(out.cls, cls, atol=1e-4), size
    assert torch.allclose(out.patches.flatten(1, 2), patches, atol=1e-4), size


@pytest.mark.parametrize("gated", [False, True], ids=["mlp", "swiglu"])
def test_hugging_face_folder_matches_the_reference_at_several_sizes(tmp_path, gated):
    model = hf_model(gated)
    model.save_pretrained(tmp_path / "hf")
    enc = load_encoder(tmp_path / "hf")
    c = enc.cfg
    assert (c.embed_dim, c.depth, c.num_heads, c.patch_size, c.registers) == (128, 2, 2, 16, 4)
    assert c.rope and not c.k_bias and c.layer_scale and c.norm_eps == 1e-5 and c.img_size == (64, 64)
    assert c.ffn == ("swiglu" if gated else "mlp") and not hasattr(enc, "pos_embed")
    for size in SIZES:  # RoPE coordinates span [-1, 1] of the grid at hand: no size is resampled
        assert_matches(enc, model, size)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"layer_norm_eps": 1e-6}, "layer_norm_eps 1e-06; edge-vsd's ViT uses 1e-05 for a dinov3_vit model"),
        ({"hidden_act": "relu"}, "hidden_act 'relu'; edge-vsd's ViT computes gelu"),
        ({"query_bias": False}, "query_bias, value_bias, proj_bias, mlp_bias true are what"),
    ],
)
def test_folder_with_settings_the_vit_lacks_fails_in_one_line(tmp_path, capsys, change, message):
    from edge_vsd.cli import main

    hf_model().save_pretrained(tmp_path / "hf")
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    (tmp_path / "hf" / "config.json").write_text(json.dumps(config | change))
    out = tmp_path / "art"
    capsys.readouterr()
    assert main(["export", str(tmp_path / "hf"), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and str(tmp_path / "hf") in err and "\n" not in err and not out.exists()


def test_rope_augmentation_is_train_time_only_and_never_ours(tmp_path):
    """The reference jitters RoPE coordinates (pos_embed_rescale) in train mode; edge-vsd never does, so
    a backbone fine-tuned from DINOv3 sees the coordinates it is exported with."""
    model = hf_model()
    model.save_pretrained(tmp_path / "hf")
    enc = load_encoder(tmp_path / "hf").train()
    x = torch.randn(1, 3, 64, 64)
    cls, _, _ = reference(model, x)
    with torch.no_grad():
        trained_mode = model.train()(pixel_values=x).last_hidden_state[:, 0]
        assert torch.allclose(enc(x).cls, cls, atol=1e-4)
    assert not torch.allclose(trained_mode, cls, atol=1e-3)


def hub_layout(model) -> dict[str, torch.Tensor]:
    """The torch-hub layout (dinov3_vits16_pretrain_*.pth) of a Hugging Face model's weights: storage
    tokens, RoPE periods, the full qkv bias with its k third masked out (and not zero), w1/w2/w3."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        model.save_pretrained(d)
        sd, _ = load_hf_folder(Path(d))
    hub: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        if k.endswith("attn.qkv.bias"):
            v = v.clone()
            v[128:256] = torch.randn(128)  # what the mask removes: must not reach the keys
        elif k.endswith("mlp.w12.weight") or k.endswith("mlp.w12.bias"):
            w1, w2 = v.chunk(2)
            hub[k.replace("w12", "w1")], hub[k.replace("w12", "w2")] = w1, w2
            continue
        hub[{"register_tokens": "storage_tokens", "mask_token": "mask_token"}.get(k, k)] = v
    hub["mask_token"] = torch.zeros(1, 128)
    head = 64  # the hub's periods: base ** (2 i / (head / 2)), i < head / 4
    hub["rope_embed.periods"] = 100.0 ** (2 * torch.arange(head // 4, dtype=torch.float32) / (head // 2))
    return hub


@pytest.mark.parametrize("gated", [False, True], ids=["mlp", "swiglu"])
def test_torch_hub_file_loads_to_the_same_outputs(tmp_path, gated):
    model = hf_model(gated)
    hub = hub_layout(model)
    assert {
        "storage_tokens",
        "rope_embed.periods",
        "blocks.1.attn.qkv.bias_mask",
        "blocks.0.ls1.gamma",
    } <= set(hub)
    assert ("blocks.0.mlp.w1.weight" in hub) == gated and "register_tokens" not in hub
    torch.save(hub, tmp_path / "dinov3_vits16_pretrain.pth")
    enc = load_encoder(tmp_path / "dinov3_vits16_pretrain.pth")
    assert enc.cfg.rope and enc.cfg.registers == 4 and not enc.cfg.k_bias and enc.cfg.img_size == (224, 224)
    for size in SIZES[:2]:
        assert_matches(enc, model, size)


@pytest.mark.slow
def test_storage_tokens_exported_as_documented_and_rope_as_constants(tmp_path, synthetic_video):
    """Jetson INT8 at a size other than the config's: the RoPE tables are constants (no Resize, Tile, If,
    Sin or Cos), the INT8 gate passes, `lint-trt` finds nothing, the manifest names the 4 storage tokens
    (run inside, not among the outputs), and `extract` runs the artifact."""
    import onnx

    from edge_vsd.cli import main

    hf_model().save_pretrained(tmp_path / "hf")
    art = tmp_path / "jetson-int8"
    args = ["export", str(tmp_path / "hf"), "--target", "jetson", "--int8", "--img-size", "96", "128"]
    calib = ["--calib", str(synthetic_video), "--calib-frames", "16", "--quiet"]
    assert main([*args, "--out", str(art), *calib]) == 0
    ops = {n.op_type for n in onnx.load(str(art / "encoder.onnx")).graph.node}
    assert not ops & {"Resize", "Tile", "If", "Sin", "Cos", "Range"} and "QuantizeLinear" in ops
    assert main(["lint-trt", str(art / "encoder.onnx")]) == 0
    manifest = json.loads((art / "manifest.json").read_text())
    assert manifest["model"]["registers"] == 4 and manifest["model"]["image_size"] == [96, 128]
    assert manifest["outputs"]["patches"]["shape"][1:] == [6, 8, 128]
    assert manifest["parity"]["vs_fp32"]["cls_cosine_min"] >= manifest["parity"]["gate"]
    assert manifest["parity"]["fp32_vs_torch"]["max_abs_error"] < 1e-3
    out = tmp_path / "f.npz"
    assert (
        main(
            ["extract", str(synthetic_video), "--artifact", str(art), "--out", str(out), "--max-frames", "4"]
        )
        == 0
    )


@pytest.mark.slow
def test_fine_tune_from_a_dinov3_folder_and_compare_with_the_start(tmp_path, synthetic_video, capsys):
    """`train --init` a DINOv3 folder (patch 16, RoPE, storage tokens): 20 steps; the checkpoint keeps the
    format's parts and reloads as DINOv3; `eval` scores it beside its start."""
    from edge_vsd.cli import main

    hf_model().save_pretrained(tmp_path / "hf")
    run = tmp_path / "ft"
    args = ["train", "--init", str(tmp_path / "hf"), "--out", str(run), "--steps", "20", "--batch-size", "4"]
    video = ["--video", str(synthetic_video)]
    assert main([*args, "--img-size", "64", "--out-dim", "64", "--delta", "5", *video]) == 0
    enc = load_encoder(run / "checkpoint.pt")
    c = enc.cfg
    assert c.rope and c.registers == 4 and not c.k_bias and c.norm_eps == 1e-5 and c.patch_size == 16
    start = load_encoder(tmp_path / "hf")
    assert torch.equal(enc.rope_embed.periods, start.rope_embed.periods)  # buffers, not trained
    assert torch.equal(enc.blocks[0].attn.qkv.bias_mask, start.blocks[0].attn.qkv.bias_mask)
    assert not torch.equal(enc.blocks[0].attn.qkv.weight, start.blocks[0].attn.qkv.weight)
    capsys.readouterr()
    models = [str(run / "checkpoint.pt"), str(tmp_path / "hf")]
    report = ["--report", str(tmp_path / "r"), "--no-floors"]
    assert main(["eval", *models, "--data", str(synthetic_video), *report]) == 0
    out = capsys.readouterr().out
    assert "| checkpoint.pt | checkpoint |" in out and "| hf | checkpoint |" in out


@pytest.mark.slow
def test_cpu_int8_export_passes_its_gate_through_the_runtime(tmp_path, synthetic_video):
    """`export --target cpu --int8` of a DINOv3 folder: the CPU candidates are gated against fp32, the
    chosen one, loaded through edge_vsd.runtimes, matches PyTorch, and `extract` runs it."""
    from edge_vsd.export.pipeline import ExportConfig, export_artifact

    hf_model().save_pretrained(tmp_path / "hf")
    cfg = ExportConfig(
        checkpoint=str(tmp_path / "hf"),
        target="cpu",
        int8=True,
        calib=[str(synthetic_video)],
        img_size=(64, 96),
        out=str(tmp_path / "cpu"),
        calib_frames=16,
        heldout_frames=8,
        latency_runs=3,
        quiet=True,
    )
    manifest = json.loads((export_artifact(cfg) / "manifest.json").read_text())
    rec = manifest["cpu_int8"]
    chosen = next(c for c in rec["candidates"] if c["name"] == rec["chosen"])
    assert chosen["passed_gate"] and chosen["name"] != "fp32_reference"
    assert manifest["model"]["registers"] == 4 and manifest["outputs"]["patches"]["shape"][1:] == [4, 6, 128]
    for key in ("cls_cosine", "patch_cosine"):
        assert chosen["fidelity"][key] >= 0.99 and manifest["parity"]["runtime_vs_torch"][key] >= 0.99
    from edge_vsd.cli import main

    out = tmp_path / "f.npz"
    extract = ["extract", str(synthetic_video), "--artifact", str(tmp_path / "cpu"), "--out", str(out)]
    assert main([*extract, "--max-frames", "4"]) == 0 and out.stat().st_size > 0

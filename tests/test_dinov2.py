"""DINOv2 checkpoints as they come: Hugging Face folders and torch-hub files load with the architecture
inferred and match the reference forward (transformers, random weights made offline) at two sizes."""

from __future__ import annotations

import json
import re

import pytest
import torch
import torch.nn.functional as F

from edge_vsd import load_encoder
from edge_vsd.model import resize_pos_embed, swiglu_hidden

transformers = pytest.importorskip("transformers", reason="transformers is the DINOv2 reference (dev extra)")

SMALL = dict(
    hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512, patch_size=14
)


def hf_model(registers: int, image_size: int = 70, swiglu: bool = False):
    torch.manual_seed(0)
    if registers:
        cfg = transformers.Dinov2WithRegistersConfig(
            **SMALL, image_size=image_size, num_register_tokens=registers
        )
        model = transformers.Dinov2WithRegistersModel(cfg)
    else:
        cfg = transformers.Dinov2Config(**SMALL, image_size=image_size, use_swiglu_ffn=swiglu)
        model = transformers.Dinov2Model(cfg)
    with torch.no_grad():  # LayerScale, tokens and position grid away from their constant inits
        for name, p in model.named_parameters():
            if "lambda1" in name or "token" in name or "position" in name:
                p.copy_(torch.randn_like(p) * (0.5 if "lambda1" in name else 0.1))
    return model.eval()


def reference(model, x, registers):
    with torch.no_grad():
        h = model(pixel_values=x).last_hidden_state
    return h[:, 0], h[:, 1 + registers :]


@pytest.mark.parametrize("registers", [0, 4])
def test_hugging_face_folder_matches_the_reference_at_two_sizes(tmp_path, registers):
    model = hf_model(registers)
    model.save_pretrained(tmp_path / "hf")
    enc = load_encoder(tmp_path / "hf")
    assert (enc.cfg.embed_dim, enc.cfg.depth, enc.cfg.num_heads, enc.cfg.patch_size) == (128, 2, 2, 14)
    assert enc.cfg.registers == registers and enc.cfg.layer_scale and enc.cfg.img_size == (70, 70)
    assert enc.cfg.pos_resize == ("bicubic-antialias" if registers else "bicubic")
    for size in ((70, 70), (98, 98), (56, 84)):  # native, larger, non-square
        x = torch.randn(2, 3, *size)
        cls, patches = reference(model, x, registers)
        with torch.no_grad():
            out = enc(x)
        assert torch.allclose(out.cls, cls, atol=1e-4), size
        assert torch.allclose(out.patches.flatten(1, 2), patches, atol=1e-4), size


def _hub(model) -> dict[str, torch.Tensor]:
    """The torch-hub layout (dinov2_vits14[_reg4]_pretrain.pth) of a Hugging Face model's weights."""
    import tempfile
    from pathlib import Path

    from edge_vsd.formats import load_hf_folder

    with tempfile.TemporaryDirectory() as d:
        model.save_pretrained(d)
        sd, _ = load_hf_folder(Path(d))
    return sd


def reg4_source(tmp_path, source: str):
    """The same random 4-register DINOv2 as a Hugging Face folder or as a torch-hub file."""
    model = hf_model(4)
    if source == "hf":
        model.save_pretrained(tmp_path / "hf")
        return tmp_path / "hf"
    torch.save(_hub(model), tmp_path / "dinov2_vits14_reg4_pretrain.pth")
    return tmp_path / "dinov2_vits14_reg4_pretrain.pth"


@pytest.mark.parametrize("registers", [0, 4])
def test_torch_hub_file_loads_with_its_own_resampling(tmp_path, registers):
    model = hf_model(registers)
    sd = _hub(model)
    assert "mask_token" in sd and ("register_tokens" in sd) == bool(registers) and "blocks.1.ls2.gamma" in sd
    torch.save(sd, tmp_path / f"dinov2_vits14{'_reg4' if registers else ''}_pretrain.pth")
    enc = load_encoder(tmp_path / f"dinov2_vits14{'_reg4' if registers else ''}_pretrain.pth")
    assert enc.cfg.pos_resize == ("bicubic-antialias" if registers else "bicubic-offset")
    x = torch.randn(1, 3, 70, 70)  # native: no resampling, so the hub file equals the reference exactly
    cls, patches = reference(model, x, registers)
    with torch.no_grad():
        out = enc(x)
    assert torch.allclose(out.cls, cls, atol=1e-4) and torch.allclose(
        out.patches.flatten(1, 2), patches, atol=1e-4
    )
    if registers:  # the hub's register models resample as Dinov2WithRegistersModel does
        x = torch.randn(1, 3, 98, 98)
        cls, _ = reference(model, x, registers)
        assert torch.allclose(enc(x).cls, cls, atol=1e-4)


def test_each_resampling_is_the_one_applied():
    pos = torch.randn(1, 25, 8)
    grid = pos.reshape(1, 5, 5, 8).permute(0, 3, 1, 2)
    expect = {
        "bicubic": F.interpolate(grid, size=(7, 9), mode="bicubic", align_corners=False),
        "bicubic-antialias": F.interpolate(
            grid, size=(7, 9), mode="bicubic", align_corners=False, antialias=True
        ),
        "bicubic-offset": F.interpolate(
            grid, scale_factor=(7.1 / 5, 9.1 / 5), mode="bicubic", align_corners=False
        ),
    }
    outs = {m: resize_pos_embed(pos, (5, 5), (7, 9), m) for m in expect}
    for mode, ref in expect.items():
        assert torch.equal(outs[mode], ref.permute(0, 2, 3, 1).reshape(1, 63, 8)), mode
    assert not torch.allclose(outs["bicubic"], outs["bicubic-antialias"])
    assert not torch.allclose(outs["bicubic"], outs["bicubic-offset"])


def test_chunked_training_checkpoint_loads_as_the_full_depth(tmp_path):
    """DINOv2's teacher_checkpoint.pth: {"teacher": backbone.blocks.CHUNK.I.*, dino_head.*, ibot_head.*}."""
    model = hf_model(0)
    sd = _hub(model)
    chunked = {}
    for k, v in sd.items():
        if k.startswith("blocks."):
            i, rest = k.split(".", 2)[1:]
            k = f"blocks.{int(i)}.{i}.{rest}"  # DINOv2 pads each chunk, so I is the global index
        chunked[f"backbone.{k}"] = v
    chunked["dino_head.mlp.0.weight"] = torch.zeros(4, 128)
    chunked["ibot_head.mlp.0.weight"] = torch.zeros(4, 128)
    torch.save({"teacher": chunked}, tmp_path / "teacher_checkpoint.pth")
    enc = load_encoder(tmp_path / "teacher_checkpoint.pth")
    assert enc.cfg.depth == 2
    x = torch.randn(1, 3, 70, 70)
    assert torch.allclose(enc(x).cls, reference(model, x, 0)[0], atol=1e-4)


@pytest.mark.parametrize("source", ["hf", "hub"])
def test_register_model_exports_to_jetson_int8_without_resize_and_passes_lint(
    tmp_path, synthetic_video, source
):
    """Exported at a size other than its grid's: the resampled grid is a constant (no Resize, Tile or If),
    the INT8 gate passes, `lint-trt` finds nothing, and `extract` runs the artifact."""
    import onnx

    from edge_vsd.cli import main

    src = reg4_source(tmp_path, source)
    art = tmp_path / "jetson-int8"
    args = ["export", str(src), "--target", "jetson", "--int8", "--img-size", "112", "112"]
    assert (
        main([*args, "--out", str(art), "--calib", str(synthetic_video), "--calib-frames", "16", "--quiet"])
        == 0
    )
    ops = {n.op_type for n in onnx.load(str(art / "encoder.onnx")).graph.node}
    assert not ops & {"Resize", "Tile", "If"} and "QuantizeLinear" in ops
    assert main(["lint-trt", str(art / "encoder.onnx")]) == 0
    manifest = json.loads((art / "manifest.json").read_text())
    assert manifest["model"]["registers"] == 4 and manifest["model"]["trained_image_size"] == [70, 70]
    assert manifest["parity"]["vs_fp32"]["cls_cosine_min"] >= manifest["parity"]["gate"]
    assert manifest["parity"]["fp32_vs_torch"]["max_abs_error"] < 1e-3
    assert (
        main(
            [
                "extract",
                str(synthetic_video),
                "--artifact",
                str(art),
                "--out",
                str(tmp_path / "f.npz"),
                "--max-frames",
                "4",
            ]
        )
        == 0
    )


@pytest.mark.parametrize("source", ["hf", "hub"])
def test_fine_tune_from_dinov2_and_compare_with_the_start(tmp_path, synthetic_video, capsys, source):
    """`train --init` a DINOv2 folder or hub file (patch 14, registers): 20 steps, the teacher starts from
    the same weights, the checkpoint keeps the format's parts, and `eval` scores it beside its start."""
    from edge_vsd.cli import main

    src = reg4_source(tmp_path, source)
    run = tmp_path / "ft"
    args = ["train", "--init", str(src), "--out", str(run), "--steps", "20", "--batch-size", "4"]
    assert (
        main([*args, "--img-size", "56", "--out-dim", "64", "--delta", "5", "--video", str(synthetic_video)])
        == 0
    )
    enc = load_encoder(run / "checkpoint.pt")
    assert enc.cfg.registers == 4 and enc.cfg.layer_scale and enc.cfg.pos_resize == "bicubic-antialias"
    assert enc.cfg.patch_size == 14 and enc.cfg.img_size == (56, 56)
    saved = json.loads((run / "config.json").read_text())
    assert saved["lr"] == 2e-4  # the fine-tuning recipe of --init
    capsys.readouterr()
    models = [str(run / "checkpoint.pt"), str(src)]
    assert (
        main(
            ["eval", *models, "--data", str(synthetic_video), "--report", str(tmp_path / "r"), "--no-floors"]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "| checkpoint.pt | checkpoint |" in out and f"| {src.name} | checkpoint |" in out
    bad = ["train", "--init", str(src), "--out", str(tmp_path / "bad"), "--img-size", "64"]
    assert main([*bad, "--video", str(synthetic_video)]) == 2
    assert "patch size 14; --img-size 64 must be a multiple of it" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("source", ["hf", "hub"])
def test_register_model_exports_to_cpu_int8_and_runs_through_extract(tmp_path, synthetic_video, source):
    """`export --target cpu --int8` of a DINOv2 folder or hub file: the chosen INT8 candidate passed its
    gate against fp32, and `extract` runs the artifact with the default engine."""
    import numpy as np
    from edge_vsd.export.pipeline import ExportConfig, export_artifact

    from edge_vsd.cli import main

    src, art = reg4_source(tmp_path, source), tmp_path / "cpu-int8"
    cfg = ExportConfig(checkpoint=str(src), target="cpu", int8=True, calib=[str(synthetic_video)], quiet=True)
    cfg.img_size, cfg.out, cfg.calib_frames = (70, 70), str(art), 16
    cfg.heldout_frames, cfg.latency_runs = 8, 3
    rec = json.loads((export_artifact(cfg) / "manifest.json").read_text())["cpu_int8"]
    chosen = next(c for c in rec["candidates"] if c["name"] == rec["chosen"])
    assert chosen["passed_gate"] and chosen["name"] != "fp32_reference"
    out = tmp_path / "f.npz"
    extract = ["extract", str(synthetic_video), "--artifact", str(art), "--out", str(out)]
    assert main([*extract, "--max-frames", "4"]) == 0
    with np.load(out) as feats:
        assert feats["cls"].shape == (4, 128) and np.isfinite(feats["cls"]).all()


def timm_layout(hub: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm's names for DINOv2 torch-hub weights, converted as timm converts them: no mask_token; for the
    register models `reg_token` and no_embed_class (the CLS position folded into cls_token, pos_embed
    without its CLS slot); the giant's SwiGLU packed as fc1/fc2."""
    sd = {k: v for k, v in hub.items() if k != "mask_token"}
    if "register_tokens" in sd:
        sd["reg_token"] = sd.pop("register_tokens")
        sd["cls_token"] = sd["cls_token"] + sd["pos_embed"][:, :1]
        sd["pos_embed"] = sd["pos_embed"][:, 1:]
    return {
        re.sub(r"\.mlp\.w12\.", ".mlp.fc1.", re.sub(r"\.mlp\.w3\.", ".mlp.fc2.", k)): v for k, v in sd.items()
    }


def _same_outputs(a, b, sizes) -> None:
    for size in sizes:
        x = torch.randn(1, 3, *size)
        with torch.no_grad():
            out_a, out_b = a(x), b(x)
        assert torch.allclose(out_a.cls, out_b.cls, atol=1e-5), size
        assert torch.allclose(out_a.patches, out_b.patches, atol=1e-5), size


def test_timm_register_names_load_as_the_hub_file_does(tmp_path):
    """timm's vit_*_reg4_dinov2 layout: reg_token, no_embed_class; resampled as timm does (antialias)."""
    hub = _hub(hf_model(4))
    timm = timm_layout(hub)
    assert "reg_token" in timm and timm["pos_embed"].shape[1] == 25 and "mask_token" not in timm
    torch.save(hub, tmp_path / "hub.pth")
    torch.save(timm, tmp_path / "timm.pth")
    enc = load_encoder(tmp_path / "timm.pth")
    assert (
        enc.cfg.registers == 4 and enc.cfg.img_size == (70, 70) and enc.cfg.pos_resize == "bicubic-antialias"
    )
    _same_outputs(enc, load_encoder(tmp_path / "hub.pth"), [(70, 70), (98, 84)])


def test_swiglu_giant_ffn_matches_the_reference_in_every_layout(tmp_path):
    """DINOv2 giant's SwiGLU FFN (Dinov2Config.use_swiglu_ffn) at a small width: the Hugging Face folder
    matches the reference at two sizes; the hub's w12/w3 and timm's packed fc1/fc2 load to the same."""
    model = hf_model(0, swiglu=True)
    model.save_pretrained(tmp_path / "hf")
    enc = load_encoder(tmp_path / "hf")
    assert enc.cfg.ffn == "swiglu" and enc.blocks[0].mlp.w3.in_features == swiglu_hidden(128, 4.0) == 344
    for size in ((70, 70), (98, 84)):
        x = torch.randn(2, 3, *size)
        cls, patches = reference(model, x, 0)
        with torch.no_grad():
            out = enc(x)
        assert torch.allclose(out.cls, cls, atol=1e-4) and torch.allclose(
            out.patches.flatten(1, 2), patches, atol=1e-4
        ), size
    hub = _hub(model)
    assert "blocks.0.mlp.w12.weight" in hub and "blocks.1.mlp.w3.bias" in hub
    torch.save(hub, tmp_path / "dinov2_vitg14_pretrain.pth")
    torch.save(timm_layout(hub), tmp_path / "timm_giant.pth")
    assert "blocks.0.mlp.fc1.weight" in timm_layout(hub)
    for name in ("dinov2_vitg14_pretrain.pth", "timm_giant.pth"):
        other = load_encoder(tmp_path / name)
        assert other.cfg.ffn == "swiglu"
        _same_outputs(other, enc, [(70, 70)])

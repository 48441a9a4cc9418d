import argparse
import pickle

import pytest
import torch

from edge_vsd import load_encoder
from edge_vsd.errors import InputError
from edge_vsd.model import build_vit


@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    return build_vit("vit_small", 64).eval()


def _same_outputs(path, ref):
    enc = load_encoder(path)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        a, b = enc(x), ref(x)
    assert torch.equal(a.cls, b.cls) and torch.equal(a.patches, b.patches)
    return enc


def test_raw_dino_backbone_state_dict(vit, tmp_path):
    torch.save(vit.state_dict(), tmp_path / "dino_deitsmall.pth")
    enc = _same_outputs(tmp_path / "dino_deitsmall.pth", vit)
    assert enc.cfg.embed_dim == 384 and enc.cfg.num_heads == 6 and enc.cfg.depth == 12
    assert enc.cfg.patch_size == 16 and enc.cfg.img_size == (64, 64) and not enc.training


def test_dino_full_training_checkpoint(vit, tmp_path):
    """DINO's main_dino.py layout: teacher without DDP prefix, student with `module.`, heads, args."""
    sd = vit.state_dict()
    ckpt = {
        "student": {f"module.backbone.{k}": v + 1 for k, v in sd.items()}
        | {"module.head.mlp.0.weight": torch.zeros(4, 4)},
        "teacher": {f"backbone.{k}": v for k, v in sd.items()} | {"head.last_layer.weight_g": torch.ones(3)},
        "optimizer": {"state": {}, "param_groups": []},
        "epoch": 100,
        "args": argparse.Namespace(arch="vit_small", patch_size=16),
        "dino_loss": {"center": torch.zeros(1, 8)},
    }
    torch.save(ckpt, tmp_path / "checkpoint.pth")
    _same_outputs(tmp_path / "checkpoint.pth", vit)
    student = load_encoder(tmp_path / "checkpoint.pth", which="student")
    assert torch.equal(student.cls_token, vit.cls_token + 1)


def test_safetensors(vit, tmp_path):
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, tmp_path / "vit.safetensors")
    _same_outputs(tmp_path / "vit.safetensors", vit)


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickled_code_refused(tmp_path):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"teacher": Evil()}, f)
    with pytest.raises(InputError, match="evil.pt"):
        load_encoder(path)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty"),
        (b"hello\n", r"bad.pt: not a PyTorch checkpoint \(a text file starting 'hello'\)$"),
        (b'{"a":1}\n', r"bad.pt: not a PyTorch checkpoint \(a text file starting '\{\"a\":1\}'\)$"),
        (bytes(range(64)), "not a PyTorch checkpoint .binary data"),
        (None, "no such file"),
    ],
)
def test_bad_files(tmp_path, content, message):
    path = tmp_path / "bad.pt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError, match=message) as err:
        load_encoder(path)
    assert "pickled" not in str(err.value)


class Settings:
    pass


def test_pickled_objects_are_named_and_damage_is_said_in_words(vit, tmp_path):
    torch.save({"teacher": vit.state_dict(), "extra": Settings()}, tmp_path / "obj.pt")
    with pytest.raises(InputError, match=r"pickled objects other than tensors \(.*Settings\); refusing"):
        load_encoder(tmp_path / "obj.pt")
    # a pickle that refers to a memo entry it never stored: torch says only KeyError('101')
    (tmp_path / "memo.pt").write_bytes(b"\x80\x02h\x65.")
    with pytest.raises(InputError, match=r"memo.pt: not a readable PyTorch checkpoint \(damaged"):
        load_encoder(tmp_path / "memo.pt")


def test_a_folder_is_not_a_checkpoint(tmp_path):
    (tmp_path / "art").mkdir()
    (tmp_path / "art" / "manifest.json").write_text("{}")
    with pytest.raises(InputError, match="art: an exported artifact folder, not a checkpoint file"):
        load_encoder(tmp_path / "art")
    with pytest.raises(InputError, match=f"{tmp_path}: a folder, not a checkpoint file"):
        load_encoder(tmp_path)


def test_truncated_and_nan_and_not_vit(vit, tmp_path):
    good = tmp_path / "good.pt"
    torch.save(vit.state_dict(), good)
    (tmp_path / "trunc.pt").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(InputError, match="trunc.pt"):
        load_encoder(tmp_path / "trunc.pt")
    sd = vit.state_dict()
    sd["blocks.3.mlp.fc1.weight"] = sd["blocks.3.mlp.fc1.weight"].clone()
    sd["blocks.3.mlp.fc1.weight"][0, 0] = float("nan")
    torch.save(sd, tmp_path / "nan.pt")
    with pytest.raises(InputError, match="blocks.3.mlp.fc1.weight contains NaN"):
        load_encoder(tmp_path / "nan.pt")
    torch.save({"weight": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(InputError, match="missing backbone weights"):
        load_encoder(tmp_path / "other.pt")
    sd = vit.state_dict()
    del sd["blocks.11.attn.proj.bias"]
    torch.save(sd, tmp_path / "missing.pt")
    with pytest.raises(InputError, match="blocks.11.attn.proj.bias"):
        load_encoder(tmp_path / "missing.pt")


def test_unexpected_keys_fail_with_one_line_naming_them(vit, tmp_path):
    """Strict loading: a key no part of the ViT takes stops the load; DINOv2's parts are named as such."""
    sd = vit.state_dict() | {"blocks.0.extra_scale": torch.ones(384)}
    torch.save(sd, tmp_path / "one.pt")
    message = r"one.pt: unexpected keys blocks.0.extra_scale; nothing was loaded$"
    with pytest.raises(InputError, match=message):
        load_encoder(tmp_path / "one.pt")
    # DINOv3 7B's untied CLS norms: a part edge-vsd's ViT does not have, named as such
    untied = vit.state_dict() | {"cls_norm.weight": torch.ones(384), "local_cls_norm.weight": torch.ones(384)}
    untied |= {f"blocks.{i}.extra.weight": torch.ones(1) for i in range(12)}
    torch.save(untied, tmp_path / "dinov3_vit7b16.pth")
    with pytest.raises(InputError) as err:
        load_encoder(tmp_path / "dinov3_vit7b16.pth")
    text = str(err.value)
    assert "\n" not in text and "cls_norm.weight" in text and "(+9 more)" in text
    assert "DINOv3 7B's separate CLS norms: not a format edge-vsd loads" in text


def test_training_only_keys_are_reported_as_ignored(vit, tmp_path, caplog):
    sd = vit.state_dict() | {"mask_token": torch.zeros(1, 384), "head.mlp.0.weight": torch.zeros(4, 384)}
    torch.save(sd, tmp_path / "with_heads.pth")
    with caplog.at_level("INFO", logger="edge_vsd"):
        _same_outputs(tmp_path / "with_heads.pth", vit)
    assert "with_heads.pth: ignored training-only weights mask_token, head.* (1)" in caplog.text


def test_wrong_shapes_are_named(vit, tmp_path):
    sd = vit.state_dict()
    sd["blocks.2.attn.qkv.bias"] = torch.zeros(100)
    torch.save(sd, tmp_path / "shape.pt")
    with pytest.raises(InputError, match=r"shape.pt: weights of the wrong shape .*blocks.2.attn.qkv.bias"):
        load_encoder(tmp_path / "shape.pt")

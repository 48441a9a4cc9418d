"""`--mask-ratio`: iBOT-style masked patches in the student's frame t, the dense term scored on those."""

import json

import pytest
import torch

from edge_vsd import load_encoder
from edge_vsd.checkpoint import load_checkpoint
from edge_vsd.cli import main
from edge_vsd.config import TrainConfig
from edge_vsd.losses import VSDLoss
from edge_vsd.model import build_vit
from edge_vsd.step import random_patch_mask
from edge_vsd.train import train
from edge_vsd.vsd import build_vsd

SMALL = dict(img_size=32, batch_size=8, out_dim=256, head_hidden_dim=128, head_bottleneck_dim=64, delta=5)


def test_masked_patches_enter_as_the_mask_token():
    torch.manual_seed(0)
    vit = build_vit("vit_tiny", 32).eval()
    a, b = torch.randn(1, 3, 32, 32), torch.randn(1, 3, 32, 32)
    token = torch.randn(vit.embed_dim)
    every = torch.ones(1, 4, dtype=torch.bool)
    # every patch masked: two different images give the same tokens; unmasked they differ
    assert torch.equal(vit.tokens(a, every, token)[0], vit.tokens(b, every, token)[0])
    assert not torch.allclose(vit.tokens(a)[0], vit.tokens(b)[0])
    # one masked patch: the image with that patch replaced gives the same tokens
    one = torch.tensor([[False, True, False, False]])
    c = a.clone()
    c[..., :16, 16:] = b[..., :16, 16:]  # patch 1 of a 2x2 grid
    assert torch.allclose(vit.tokens(a, one, token)[0], vit.tokens(c, one, token)[0])
    assert not torch.allclose(vit.tokens(a)[0], vit.tokens(c)[0])


def test_random_patch_mask_draws_the_ratio_per_image():
    torch.manual_seed(0)
    mask = random_patch_mask(64, 49, 0.5, torch.device("cpu"))
    assert mask.shape == (64, 49) and mask.dtype == torch.bool
    assert (mask.sum(1) == 24).all()  # round(0.5 * 49)
    assert len({tuple(r.tolist()) for r in mask}) == 64  # each image its own draw
    assert (random_patch_mask(2, 49, 0.001, torch.device("cpu")).sum(1) == 1).all()  # at least one


def test_dense_term_scores_only_the_masked_patches():
    torch.manual_seed(0)
    b, n, k = 3, 6, 32
    s_cls, t_cls = [torch.randn(b, k) for _ in range(2)], [torch.randn(b, k) for _ in range(2)]
    s_p, t_p = torch.randn(b, n, k), torch.randn(b, n, k)
    mask = torch.zeros(b, n, dtype=torch.bool)
    mask[:, [1, 4]] = True
    _, full = VSDLoss(k)(s_cls, t_cls, s_p, t_p, 0.04, mask)
    _, other = VSDLoss(k)(s_cls, t_cls, s_p, t_p, 0.04)
    # the same centred teacher rows at positions 1 and 4, so the masked loss equals that of those rows
    ref = VSDLoss(k)
    ref.patch_center.copy_(t_p.flatten(0, 1).mean(0, keepdim=True))
    ref.center.copy_(torch.cat(t_cls).mean(0, keepdim=True))
    ref.centers_ready.fill_(True)
    _, want = ref(s_cls, t_cls, s_p[:, [1, 4]], t_p[:, [1, 4]], 0.04)
    assert full["loss_dense"] == pytest.approx(want["loss_dense"].item(), rel=1e-6)
    assert full["loss_dense"] != pytest.approx(other["loss_dense"].item(), rel=1e-3)
    assert full["loss_global"] == other["loss_global"]  # the global term sees no mask


def test_masked_training_resumes_exactly_and_exports_without_the_token(synthetic_video, tmp_path):
    cfg = dict(video=[str(synthetic_video)], steps=6, save_every=100, mask_ratio=0.5, **SMALL)
    straight = train(TrainConfig(out=str(tmp_path / "a"), **cfg), show_progress=False)
    train(TrainConfig(out=str(tmp_path / "b"), **cfg), show_progress=False, stop_after=3)
    resumed = train(TrainConfig(out=str(tmp_path / "b"), **cfg), resume=True, show_progress=False)
    a, b = load_checkpoint(straight), load_checkpoint(resumed)
    assert all(torch.equal(a["teacher"][k], b["teacher"][k]) for k in a["teacher"])
    assert torch.equal(a["student"]["mask_token"], b["student"]["mask_token"])
    assert a["student"]["mask_token"].abs().sum() > 0  # the token learned
    assert "mask_token" not in a["teacher"]  # the teacher sees whole frames
    assert json.loads((tmp_path / "a" / "config.json").read_text())["mask_ratio"] == 0.5
    for which in ("teacher", "student"):
        assert "mask_token" not in load_encoder(straight, which=which).state_dict()
    # unmasked, the same seed trains other weights: the mask reached the step
    plain = train(TrainConfig(out=str(tmp_path / "c"), **{**cfg, "mask_ratio": 0.0}), show_progress=False)
    c = load_checkpoint(plain)["teacher"]
    assert not torch.equal(a["teacher"]["backbone.cls_token"], c["backbone.cls_token"])


@pytest.mark.parametrize(
    ("flags", "message"),
    [(["--mask-ratio", "1"], "must be in [0, 1)"), (["--mask-ratio", "0.5", "--dense-weight", "0"], "dense")],
)
def test_mask_ratio_refuses_what_it_cannot_train(synthetic_video, tmp_path, capsys, flags, message):
    out = tmp_path / "r"
    code = main(["train", "--video", str(synthetic_video), "--out", str(out), "--steps", "1", *flags])
    assert code == 2 and message in capsys.readouterr().err
    assert not (out / "checkpoint.pt").exists()


def test_the_student_builds_the_token_only_when_asked():
    assert build_vsd(build_vit("vit_tiny", 32), 64, 32, 16, False, 1).mask_token is None
    net = build_vsd(build_vit("vit_tiny", 32), 64, 32, 16, False, 1, masked=True)
    assert net.mask_token is not None and "mask_token" in net.state_dict()

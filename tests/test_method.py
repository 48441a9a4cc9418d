"""Method fidelity: a deterministic teacher, comparable ablation arms, DINO's recipe behind recorded flags."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edge_vsd.checkpoint import load_checkpoint
from edge_vsd.cli import main
from edge_vsd.config import TrainConfig, resolve_config
from edge_vsd.data.augment import PHOTO_FIELDS, AugmentConfig, apply_photometric, augment_pair
from edge_vsd.data.cache import CachedVideo
from edge_vsd.data.cuts import detect_cuts
from edge_vsd.data.pairs import FramePairs, StepBatches
from edge_vsd.data.synthetic import make_frames
from edge_vsd.errors import InputError
from edge_vsd.losses import VSDLoss, read_stats
from edge_vsd.nets import build_nets, param_groups
from edge_vsd.step import clip_gradients
from edge_vsd.train import train

TINY = dict(img_size=32, batch_size=4, out_dim=64, head_hidden_dim=32, head_bottleneck_dim=16)


def videos(*lengths: int) -> list[CachedVideo]:
    return [
        CachedVideo(f"v{i}", make_frames(n, 48, 64, seed=i)[..., ::-1].copy(), 30.0)
        for i, n in enumerate(lengths)
    ]


def test_teacher_is_deterministic_while_training():
    torch.manual_seed(0)
    student, teacher, _, _ = build_nets(TrainConfig(drop_path=0.3, **TINY), torch.device("cpu"))
    x = torch.randn(2, 2, 3, 32, 32)
    with torch.no_grad():
        a, b = teacher(x), teacher(x)
        s1, s2 = student(x), student(x)
    assert all(torch.equal(p, q) for p, q in zip(a[0], b[0])) and torch.equal(a[1], b[1])
    assert not torch.equal(s1[0][0], s2[0][0])  # the student keeps its stochastic depth


def test_arms_that_differ_in_delta_see_the_same_anchor_frames():
    vids = videos(40, 25)
    arms = {d: FramePairs(vids, 32, delta=d) for d in (0, 5, 20)}
    assert len({len(p) for p in arms.values()}) == 1  # so --epochs gives the same run length too
    batches = list(StepBatches(len(arms[0]), 8, seed=3, start_step=0, total_steps=5))
    for batch in batches:
        for i, _ in batch:
            anchors = {arms[d].anchor(i) for d in arms}
            assert len(anchors) == 1
            v, a = anchors.pop()
            for d, pairs in arms.items():
                pv, t0, t1 = pairs.pair(i)
                assert pv == v and t1 - t0 == d
                assert a in (t0, t1) or vids[v].frames.shape[0] < 2 * d  # else the shot's last pair
                assert 0 <= t0 and t1 < vids[v].frames.shape[0]


def test_scene_cuts_are_found_and_never_spanned():
    a, b = make_frames(30, 48, 64, seed=1), make_frames(30, 48, 64, seed=7)
    joined = CachedVideo("joined", np.concatenate([a, b]), 30.0)
    assert detect_cuts(joined.frames) == [30]
    assert detect_cuts(a) == []
    pairs = FramePairs([joined], 32, delta=10, skip_cuts=True)
    assert pairs.cuts == 1
    for i in range(len(pairs)):
        _, t0, t1 = pairs.pair(i)
        assert (t0 < 30) == (t1 < 30)
    plain = FramePairs([joined], 32, delta=10)
    assert any((t0 < 30) != (t1 < 30) for _, t0, t1 in map(plain.pair, range(len(plain))))


def test_delta_validation():
    with pytest.raises(InputError, match="--delta -3"):
        FramePairs(videos(20), 32, delta=-3)
    with pytest.raises(InputError, match="--delta-seconds 0"):
        FramePairs(videos(20), 32, delta=None, delta_seconds=0.0)
    with pytest.raises(InputError, match="not shorter than every video"):
        FramePairs(videos(20), 32, delta=20)


def test_cli_rejects_bad_delta(tmp_path, capsys):
    for flags in (["--delta", "-1"], ["--delta-seconds", "0"]):
        code = main(["train", "--video", str(tmp_path / "x.avi"), "--out", str(tmp_path / "r"), *flags])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and "delta" in err[0] and "Traceback" not in err[0]
        assert not (tmp_path / "r").exists()


def test_dense_weight_zero_is_the_global_term_only():
    torch.manual_seed(0)
    cls = [torch.randn(4, 16) for _ in range(2)]
    t_cls = [torch.randn(4, 16) for _ in range(2)]
    s_p, t_p = torch.randn(4, 9, 16), torch.randn(4, 9, 16)
    mean_loss, raw = VSDLoss(16)(cls, t_cls, s_p, t_p, 0.04)
    stats = read_stats(mean_loss, raw)
    assert stats["loss"] == pytest.approx(mean_loss.item()) and stats["kl"] >= -1e-5
    assert mean_loss.item() == pytest.approx(0.5 * (stats["loss_global"] + stats["loss_dense"]), rel=1e-5)
    assert {"patch_entropy", "kl_dense"} <= set(stats)
    cls_only, raw0 = VSDLoss(16, dense_weight=0.0)(cls, t_cls, s_p, t_p, 0.04)
    stats0 = read_stats(cls_only, raw0)
    assert cls_only.item() == pytest.approx(stats0["loss_global"]) and "loss_dense" not in stats0


def test_dot_product_loss_terms_equal_their_textbook_forms():
    from edge_vsd.losses import _cross_entropy, _softmax_entropy

    torch.manual_seed(1)
    for sharpness in (1.0, 25.0):  # 25: a teacher at temperature 0.04, nearly one-hot
        z = torch.randn(3, 7, 64) * sharpness
        p, logq = F.softmax(z, -1), F.log_softmax(torch.randn(3, 7, 64), -1)
        assert _cross_entropy(p, logq).item() == pytest.approx(-(p * logq).sum(-1).mean().item(), rel=1e-5)
        textbook = -(p * p.clamp_min(1e-30).log()).sum(-1).mean().item()
        assert _softmax_entropy(z, p).item() == pytest.approx(textbook, abs=1e-4)


def test_dino_preset_resolves_and_is_recorded(synthetic_video, tmp_path):
    cfg = resolve_config(None, {"method": "dino"})
    assert (cfg.delta, cfg.dense_weight, cfg.independent_crops, cfg.dense) == (0, 0.0, True, False)
    assert resolve_config(None, {"method": "dino", "delta": 4}).delta == 4  # a flag beats the preset
    student, *_ = build_nets(TrainConfig(**{**TINY, "dense_weight": 0.0}), torch.device("cpu"))
    assert student.predictor is None and student.patch_head is None
    run = tmp_path / "dino"
    cfg = resolve_config(None, {"method": "dino", "video": [str(synthetic_video)], "out": str(run), **TINY})
    cfg.steps = 3
    ckpt = load_checkpoint(train(cfg, show_progress=False))
    assert ckpt["config"]["method"] == "dino" and ckpt["edge_vsd"]["method"] == "dino"
    assert ckpt["predictor"] == {} and ckpt["config"]["dense_weight"] == 0.0
    with pytest.raises(InputError, match="--independent-crops needs --dense-weight 0"):
        TrainConfig(independent_crops=True).validate()


def test_independent_crops_differ_shared_crops_match():
    frame = make_frames(1, 96, 128, seed=1)[0][..., ::-1].copy()
    pair = np.stack([frame, frame])
    plain = AugmentConfig(blur_prob=(0.0, 0.0), solarize_prob=0.0, hue=0.0)
    indep = AugmentConfig(blur_prob=(0.0, 0.0), solarize_prob=0.0, hue=0.0, independent_crops=True)

    def corr(cfg: AugmentConfig, seed: int) -> float:
        views = augment_pair(pair, torch.Generator().manual_seed(seed), 48, cfg=cfg)["globals"]
        return torch.corrcoef(views.mean(1).flatten(1))[0, 1].item()

    shared = [corr(plain, s) for s in range(6)]
    separate = [corr(indep, s) for s in range(6)]
    assert min(shared) > 0.8 and np.mean(separate) < min(shared) - 0.2


def test_augmentation_pieces():
    red = torch.zeros(3, 4, 4)
    red[0] = 0.8

    def shift_hue(x: torch.Tensor, turns: float) -> torch.Tensor:  # a jitter row that only turns the hue
        row = dict.fromkeys(PHOTO_FIELDS, 0.0)
        row.update(jitter=1.0, brightness=1.0, contrast=1.0, saturation=1.0, hue=turns)
        return apply_photometric(x[None], torch.tensor([[row[k] for k in PHOTO_FIELDS]]))[0]

    assert torch.allclose(shift_hue(red, 0.0), red, atol=1e-5)
    green_ish = shift_hue(red, 1 / 3)
    assert green_ish[1].mean() > green_ish[0].mean()  # a third of the circle takes red towards green
    frame = make_frames(1, 96, 128, seed=2)[0][..., ::-1].copy()
    pair = np.stack([frame, frame])
    sharp = dict(blur_prob=(1.0, 0.0), solarize_prob=0.0, hue=0.0)

    def roughness(cfg: AugmentConfig) -> float:
        views = augment_pair(pair, torch.Generator().manual_seed(5), 32, cfg=cfg)["globals"]
        return views[0].diff(dim=-1).abs().mean().item()

    # at a 32-pixel crop, DINO's sigma scaled to the crop blurs far less than the same sigma in pixels
    assert roughness(AugmentConfig(**sharp, blur_sigma="relative")) > roughness(
        AugmentConfig(**sharp, blur_sigma="pixels")
    )


def test_per_parameter_clipping_and_frozen_gain():
    a, b = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(3))
    model = torch.nn.ParameterList([a, b])
    a.grad, b.grad = torch.tensor([3.0, 4.0, 0.0]), torch.tensor([0.6, 0.8, 0.0])
    clip_gradients(model, 3.0, "per-param")
    assert a.grad.norm().item() == pytest.approx(3.0, rel=1e-4) and b.grad.norm().item() == pytest.approx(1.0)
    a.grad, b.grad = torch.tensor([3.0, 4.0, 0.0]), torch.tensor([0.6, 0.8, 0.0])
    clip_gradients(model, 3.0, "global")
    assert b.grad.norm().item() < 0.99  # the global norm shrinks the small gradient too
    student, *_ = build_nets(TrainConfig(**TINY), torch.device("cpu"))
    gain = student.head.last_layer.parametrizations.weight.original0
    in_opt = {id(p) for g in param_groups(student) for p in g["params"]}
    assert not gain.requires_grad and id(gain) not in in_opt
    free, *_ = build_nets(TrainConfig(**TINY, norm_last_layer=False), torch.device("cpu"))
    assert free.head.last_layer.parametrizations.weight.original0.requires_grad

"""Training that learns: schedules fitted to the run's length, and the health checks that watch it."""

import json
import math

import numpy as np
import pytest
import torch

from edge_vsd.config import TrainConfig
from edge_vsd.errors import InputError
from edge_vsd.health import COLLAPSE_STREAK, STREAK, Health
from edge_vsd.losses import koleo, koleo_sets
from edge_vsd.step import schedules
from edge_vsd.train import train

SMALL = dict(img_size=32, batch_size=8, out_dim=256, head_hidden_dim=128, head_bottleneck_dim=64, delta=5)


@pytest.mark.parametrize("steps", [200, 300, 600, 2000, 20000, 300000])
def test_fit_schedule_leaves_the_teachers_random_start(steps):
    """The rule: any run of 200+ steps ends with under 1% of the teacher still its initialisation."""
    sched = schedules(TrainConfig(), steps)
    left = sched["teacher_init_weight"]
    assert left[-1] < 0.01 and np.all(np.diff(left) <= 0)
    assert left[-1] == pytest.approx(np.prod(sched["momentum"]))
    assert np.all(sched["teacher_temp"] == 0.04)  # DINO's advice for a loss that does not fall
    resolved = TrainConfig().resolve_schedule(steps)
    assert resolved.momentum_teacher <= 0.996 and resolved.freeze_last_layer_steps == min(steps // 10, 1250)


def test_dino_schedule_is_kept_as_a_preset():
    sched = schedules(TrainConfig(schedule="dino"), 300)
    assert sched["momentum"][0] == 0.996 and sched["teacher_temp"][-1] == 0.07
    assert sched["teacher_init_weight"][-1] > 0.4  # why it is not the default for short runs
    explicit = schedules(TrainConfig(momentum_teacher=0.99, teacher_temp=0.05), 300)
    assert explicit["momentum"][0] == 0.99 and explicit["teacher_temp"][-1] == 0.05
    held = schedules(TrainConfig(momentum_teacher=0.99, momentum_teacher_end=0.99), 300)
    assert np.all(held["momentum"] == 0.99) and held["teacher_init_weight"][-1] == pytest.approx(0.99**300)


def test_fit_holds_a_short_runs_momentum_and_a_resumed_older_run_keeps_its_cosine_to_1():
    short = schedules(TrainConfig(), 600)
    assert np.all(short["momentum"] == short["momentum"][0]) and short["momentum"][0] < 0.99
    assert short["teacher_init_weight"][-1] < 1e-4
    long = schedules(TrainConfig(), 5000)  # long enough for DINO's 0.996: DINO's cosine to 1
    assert long["momentum"][0] == 0.996 and long["momentum"][-1] == pytest.approx(1.0, abs=1e-6)
    assert TrainConfig(schedule="dino").resolve_schedule(600).momentum_teacher_end == 1.0
    older = TrainConfig()  # saved before --momentum-teacher-end existed: its cosine ended at 1
    assert older.resume_mismatches({"momentum_teacher": 0.98, "steps": 600}) == []
    assert older.momentum_teacher == 0.98 and older.momentum_teacher_end == 1.0
    newer = TrainConfig()
    assert newer.resume_mismatches({"momentum_teacher": 0.98, "momentum_teacher_end": 0.98}) == []
    assert newer.momentum_teacher_end == 0.98
    with pytest.raises(InputError, match="--momentum-teacher-end 1.5"):
        TrainConfig(momentum_teacher_end=1.5).validate_settings()


def test_init_gets_the_fine_tuning_recipe():
    scratch = TrainConfig().resolve_schedule(1000)
    tuned = TrainConfig(init="dinov2.pth").resolve_schedule(1000)
    assert tuned.lr == scratch.lr / 10 and tuned.warmup_steps == scratch.warmup_steps // 2
    assert tuned.momentum_teacher == scratch.momentum_teacher  # the heads still start random
    assert TrainConfig(init="dinov2.pth", lr=1e-3).resolve_schedule(1000).lr == 1e-3  # a flag wins
    assert TrainConfig(init="dinov2.pth", schedule="dino").resolve_schedule(1000).lr == 5e-4


def test_koleo_is_on_in_the_fit_recipe_and_off_where_dinos_values_are_asked_for():
    assert TrainConfig().resolve_schedule(300).koleo == 1.0
    assert TrainConfig(schedule="dino").resolve_schedule(300).koleo == 0.0
    assert TrainConfig(method="dino").resolve_schedule(300).koleo == 0.0
    assert TrainConfig(koleo=0.0).resolve_schedule(300).koleo == 0.0  # a flag wins


def test_layer_decay_scales_each_blocks_lr_and_leaves_the_heads_at_full_lr():
    from edge_vsd.model import build_vit
    from edge_vsd.nets import param_groups
    from edge_vsd.vsd import build_vsd

    net = build_vsd(build_vit("vit_tiny", 32), 64, 32, 16, False, 1)
    depth = len(net.backbone.blocks)
    assert [g["lr_scale"] for g in param_groups(net)] == [1.0, 1.0]  # off: one decayed, one plain group
    scale = {id(p): g["lr_scale"] for g in param_groups(net, 0.5) for p in g["params"]}
    params = dict(net.named_parameters())
    assert scale[id(params["backbone.blocks.11.attn.qkv.weight"])] == 0.5
    assert scale[id(params["backbone.blocks.0.mlp.fc1.bias"])] == 0.5**depth
    assert scale[id(params["backbone.patch_embed.proj.weight"])] == 0.5 ** (depth + 1)
    for name in ("backbone.norm.weight", "head.last_layer", "predictor.pos_embed"):
        matches = [scale[id(p)] for n, p in params.items() if n.startswith(name) and p.requires_grad]
        assert matches and set(matches) == {1.0}, name
    decayed = {id(p) for g in param_groups(net, 0.5) if g["apply_wd"] for p in g["params"]}
    assert id(params["backbone.blocks.3.attn.qkv.weight"]) in decayed
    assert id(params["backbone.blocks.3.attn.qkv.bias"]) not in decayed


def test_koleo_pushes_collapsed_features_apart():
    torch.manual_seed(0)
    near = (torch.ones(16, 32) + 1e-3 * torch.randn(16, 32)).requires_grad_()
    spread = torch.randn(16, 32)
    assert koleo(torch.cat([near, near]), 2) > koleo(torch.cat([spread, spread]), 2) + 3
    koleo(torch.cat([near, near]), 2).backward()
    with torch.no_grad():  # one small step down the gradient moves the nearest neighbours apart
        moved = near - 1e-4 * near.grad / near.grad.norm()
    assert koleo(torch.cat([moved, moved]), 2) < koleo(torch.cat([near, near]), 2)


def test_patch_koleo_looks_for_neighbours_within_each_frame_only():
    torch.manual_seed(0)
    spread = torch.randn(1, 9, 32)
    # nine patches that differ within each frame, repeated in four frames: apart, although every patch
    # has an exact twin in another frame
    assert koleo_sets(spread.expand(4, -1, -1)) == pytest.approx(koleo_sets(spread).item(), rel=1e-5)
    flat = (torch.ones(4, 9, 32) + 1e-3 * torch.randn(4, 9, 32)).requires_grad_()  # a flat frame's patches
    assert koleo_sets(flat) > koleo_sets(spread) + 3
    koleo_sets(flat).backward()
    with torch.no_grad():
        moved = flat - 1e-4 * flat.grad / flat.grad.norm()
    assert koleo_sets(moved) < koleo_sets(flat)


def _stats(loss, entropy, spread=0.9):
    return {
        "loss": loss,
        "teacher_entropy": entropy,
        "patch_entropy": entropy,
        "teacher_batch_spread": spread,
    }


def test_health_warns_once_on_a_uniform_teacher_and_not_on_a_healthy_one():
    k = math.log(1024)
    h = Health(k, warmup_end=5, teacher=torch.nn.Linear(2, 2))
    healthy = [h.check(s, _stats(0.7 * k, 0.5 * k), 0.1) for s in range(100)]
    assert healthy == [None] * 100
    h = Health(k, warmup_end=5, teacher=torch.nn.Linear(2, 2))
    uniform = [h.check(s, _stats(0.995 * k, 0.999 * k), 0.6) for s in range(100)]
    fired = [i for i, w in enumerate(uniform) if w]
    assert fired == [5 + STREAK]  # after warm-up, after STREAK steps in a row, once
    # the schedule would move it off its start (end weight 0 by default): the temperature is named
    assert "uniform" in uniform[fired[0]] and "holds 60% of its random start" in uniform[fired[0]]
    assert "--teacher-temp 0.025" in uniform[fired[0]] and "--momentum-teacher" not in uniform[fired[0]]
    h = Health(k, warmup_end=5, teacher=torch.nn.Linear(2, 2), end_init_weight=0.3)
    stuck = next(w for w in (h.check(s, _stats(0.995 * k, 0.999 * k), 0.6) for s in range(100)) if w)
    assert "leaves it 30% at the end" in stuck and "lower --momentum-teacher" in stuck
    h = Health(k, warmup_end=5, teacher=torch.nn.Linear(2, 2))
    left = next(w for w in (h.check(s, _stats(0.995 * k, 0.999 * k), 0.01) for s in range(100)) if w)
    assert "has left its random start" in left and "--teacher-temp" in left
    # a run already at 0.025 with KoLeo (the hard set v2 at 112 px still went uniform) is not told to use them
    h = Health(k, warmup_end=5, teacher=torch.nn.Linear(2, 2), teacher_temp=0.025, koleo=1.0)
    pulled = next(w for w in (h.check(s, _stats(0.995 * k, 0.999 * k), 0.01) for s in range(100)) if w)
    assert "--teacher-temp" not in pulled and "--koleo" not in pulled and "--out-dim" in pulled
    h = Health(k, warmup_end=5, teacher=torch.nn.Linear(2, 2), teacher_temp=0.025)
    no_koleo = next(w for w in (h.check(s, _stats(0.995 * k, 0.999 * k), 0.01) for s in range(100)) if w)
    assert "--teacher-temp" not in no_koleo and "--koleo 1" in no_koleo
    h = Health(k, warmup_end=0, teacher=torch.nn.Linear(2, 2))
    passing = [h.check(s, _stats(0.3 * k, 0.1, spread=0.2), 0.0) for s in range(1, 21)]
    passing += [h.check(s, _stats(0.3 * k, 0.5 * k), 0.0) for s in range(21, 40)]
    assert passing == [None] * 39  # a 20-step few-prototype phase that passes is not warned about
    one = [h.check(s, _stats(0.1, 0.01, spread=0.2), 0.0) for s in range(40, 100)]
    fired = [i for i, w in enumerate(one) if w]
    assert fired == [COLLAPSE_STREAK - 1] and "same few prototypes" in one[fired[0]]


def test_health_drift_measures_the_teacher_leaving_its_start():
    lin = torch.nn.Linear(4, 4)
    h = Health(1.0, 0, lin)
    assert h.drift(lin) == 0.0
    with torch.no_grad():
        for p in lin.parameters():
            p.mul_(2)
    assert h.drift(lin) == pytest.approx(1.0)


def test_forced_uniform_teacher_warns_in_a_real_run(synthetic_video, tmp_path, caplog):
    """A teacher at temperature 100 is uniform: the run says so, naming the cause and the flags."""
    cfg = TrainConfig(
        video=[str(synthetic_video)], out=str(tmp_path / "run"), steps=25, teacher_temp=100.0, **SMALL
    )
    with caplog.at_level("WARNING", logger="edge_vsd"):
        train(cfg, show_progress=False)
    assert "the teacher is uniform" in caplog.text and "--teacher-temp" in caplog.text
    rows = [json.loads(r) for r in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    last = rows[-1]
    assert last["teacher_entropy_frac"] > 0.98 and "teacher_drift" in last and last["teacher_drift"] > 0
    assert last["teacher_init_weight"] < 0.01
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["schedule"] == "fit" and isinstance(saved["momentum_teacher"], float) and saved["lr"] == 2e-3


def test_eval_every_writes_student_and_teacher_rows_and_a_curve(tmp_path):
    """`train --eval-every` scores both nets at step 0 (the random start), every N steps and at the end."""
    from edge_vsd.cli import main
    from edge_vsd.data.make_data import DataConfig, make_data

    data = make_data(
        DataConfig(
            out=str(tmp_path / "data"),
            sequences=1,
            frames=6,
            height=64,
            width=96,
            ade_images=6,
            videos=1,
            video_frames=40,
        )
    )
    run = tmp_path / "run"
    args = [
        "train",
        "--out",
        str(run),
        "--video",
        str(data / "videos" / "train-00.avi"),
        "--steps",
        "6",
        "--batch-size",
        "4",
        "--img-size",
        "32",
        "--out-dim",
        "64",
        "--delta",
        "3",
        "--eval-every",
        "3",
        "--eval-data",
        str(data),
    ]
    assert main(args) == 0
    rows = [json.loads(r) for r in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "eval" in r]
    assert [r["step"] for r in evals] == [0, 3, 6]
    for r in evals:
        for net in ("student", "teacher"):
            assert 0 <= r["eval"][net]["JF"] <= 1 and 0 <= r["eval"][net]["miou"] <= 1
    # at step 0 the teacher is the student's copy: the same scores
    assert evals[0]["eval"]["student"] == evals[0]["eval"]["teacher"]
    assert evals[-1]["eval"]["teacher"] != evals[0]["eval"]["teacher"]
    assert (run / "learning_curve.png").stat().st_size > 1000
    assert json.loads((run / "config.json").read_text())["eval_every"] == 3


def test_batch_spread_is_low_for_one_prototype_and_high_for_diverse_frames():
    from edge_vsd.losses import VSDLoss

    loss = VSDLoss(64)
    loss(*[[torch.zeros(16, 64)] * 2] * 2, None, None, 0.04)  # centers start at a flat first batch
    one = [torch.zeros(16, 64).index_fill_(1, torch.tensor([3]), 10.0) for _ in range(2)]
    _, stats = loss(one, one, None, None, 0.04)
    assert stats["teacher_batch_spread"] < 0.05
    diverse = [torch.eye(64)[:16] * 10, torch.eye(64)[16:32] * 10]
    _, stats = VSDLoss(64)(diverse, diverse, None, None, 0.04)
    assert stats["teacher_batch_spread"] > 0.95


@pytest.mark.slow
def test_a_short_run_improves_the_correspondence_probe_over_its_step_0(tmp_path):
    """The quickstart's recipe (fit schedule, its TRAIN_DEFAULTS) on its embedded scenes: 40 steps of 8 pairs
    at 64 px move held-out warp + lighting correspondence above the random start both nets began from."""
    from edge_vsd.cli import main
    from edge_vsd.data.synthetic import write_scenes, write_video
    from edge_vsd.quickstart import TRAIN_DEFAULTS

    scenes = write_scenes(tmp_path / "train", scenes=6, n_frames=50)
    heldout = write_video(tmp_path / "heldout.avi", n_frames=90, height=180, width=240, seed=2)
    run = tmp_path / "run"
    args = ["train", "--video", str(scenes), "--out", str(run), "--img-size", "64", "--steps", "40"]
    args += ["--batch-size", "8"]
    for key, value in TRAIN_DEFAULTS.items():
        args += ["--" + key.replace("_", "-"), str(value)]
    assert main([*args, "--eval-every", "40", "--eval-data", str(heldout)]) == 0
    rows = [json.loads(r) for r in (run / "metrics.jsonl").read_text().splitlines()]
    start, end = [r["eval"] for r in rows if "eval" in r]
    assert start["student"]["corr"] == start["teacher"]["corr"]
    for net in ("student", "teacher"):
        assert end[net]["corr"] > start[net]["corr"] + 0.01, (net, start, end)

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import child_env

from edge_vsd import load_encoder
from edge_vsd.checkpoint import load_checkpoint
from edge_vsd.cli import main
from edge_vsd.config import TrainConfig
from edge_vsd.model import build_vit
from edge_vsd.schedules import cosine, linear_then_constant
from edge_vsd.step import ema_update
from edge_vsd.train import train
from edge_vsd.vsd import build_vsd

SMALL = dict(img_size=32, batch_size=8, out_dim=256, head_hidden_dim=128, head_bottleneck_dim=64, delta=5)


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_schedules():
    lr = cosine(1.0, 0.0, 100, warmup_steps=10)
    assert len(lr) == 100 and lr[0] == 0.0 and lr[10] == 1.0 and np.all(np.diff(lr[10:]) <= 0)
    assert lr[-1] == pytest.approx(0.0, abs=1e-3) and lr[5] == pytest.approx(0.5)
    m = cosine(0.996, 1.0, 50)
    assert m[0] == 0.996 and m[-1] == pytest.approx(1.0, abs=1e-5) and np.all(np.diff(m) >= 0)
    t = linear_then_constant(0.04, 0.07, 10, 30)
    assert t[0] == 0.04 and t[9] == pytest.approx(0.07) and np.all(t[10:] == 0.07)


def test_ema_update_math():
    torch.manual_seed(0)
    s = build_vsd(build_vit("vit_tiny", 32), 64, 32, 16, False, 1)
    t = build_vsd(build_vit("vit_tiny", 32), 64, 32, 16, False, None)
    before = t.backbone.cls_token.clone()
    ema_update(s, t, 0.9)
    assert torch.allclose(t.backbone.cls_token, 0.9 * before + 0.1 * s.backbone.cls_token)
    ema_update(s, t, 1.0)  # momentum 1 freezes the teacher
    assert torch.allclose(t.backbone.cls_token, 0.9 * before + 0.1 * s.backbone.cls_token)


def test_outputs_and_the_teacher_leaves_its_start(synthetic_video, tmp_path):
    run = tmp_path / "run"
    ckpt = train(
        TrainConfig(video=[str(synthetic_video)], out=str(run), steps=30, lr=5e-3, **SMALL),
        show_progress=False,
    )
    rows = metrics(run)
    assert [r["step"] for r in rows] == list(range(1, 31))
    for key in ("loss", "loss_global", "loss_dense", "lr", "wd", "momentum", "teacher_entropy", "kl"):
        assert all(np.isfinite(r[key]) for r in rows), key
    # the fit schedule: even 30 steps end with a teacher that is no longer its random start (a falling
    # loss is no test of that: a short run's loss dips through a collapse phase and rises again)
    assert rows[-1]["teacher_init_weight"] < 0.01 and rows[-1]["teacher_drift"] > 0.01
    assert rows[-1]["momentum"] == rows[0]["momentum"] < 0.99  # fit holds a short run's momentum
    assert rows[-1]["wd"] > rows[0]["wd"]
    assert json.loads((run / "config.json").read_text())["steps"] == 30
    state = load_checkpoint(ckpt)
    assert state["step"] == 30 and set(state) >= {
        "student",
        "teacher",
        "predictor",
        "optimizer",
        "rng",
        "config",
    }
    enc = load_encoder(ckpt)
    assert enc(torch.randn(1, 3, 32, 48)).patches.shape == (1, 2, 3, 192)
    # refuses to overwrite an existing run without --resume
    code = main(["train", "--video", str(synthetic_video), "--out", str(run), "--steps", "2"])
    assert code == 2 and load_checkpoint(ckpt)["step"] == 30


def test_resume_is_bit_exact(synthetic_video, tmp_path):
    cfg = dict(video=[str(synthetic_video)], steps=12, save_every=100, accum=2, **SMALL)
    straight = train(TrainConfig(out=str(tmp_path / "a"), **cfg), show_progress=False)
    train(TrainConfig(out=str(tmp_path / "b"), **cfg), show_progress=False, stop_after=5)
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pt")["step"] == 5
    resumed = train(TrainConfig(out=str(tmp_path / "b"), **cfg), resume=True, show_progress=False)
    a, b = load_checkpoint(straight)["teacher"], load_checkpoint(resumed)["teacher"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [r["loss"] for r in metrics(tmp_path / "a")] == [r["loss"] for r in metrics(tmp_path / "b")]


def test_init_from_dino_checkpoint(synthetic_video, tmp_path):
    torch.manual_seed(1)
    dino = build_vit("vit_tiny", 64)  # stored at another grid: resampled to the training size
    torch.save({"teacher": {f"backbone.{k}": v for k, v in dino.state_dict().items()}}, tmp_path / "dino.pth")
    ckpt = train(
        TrainConfig(
            video=[str(synthetic_video)],
            out=str(tmp_path / "r"),
            steps=1,
            lr=0.0,
            init=str(tmp_path / "dino.pth"),
            **SMALL,
        ),
        show_progress=False,
    )
    enc = load_encoder(ckpt)
    assert torch.allclose(enc.blocks[5].attn.qkv.weight, dino.blocks[5].attn.qkv.weight, atol=1e-6)


@pytest.mark.slow
def test_ddp_two_processes_match_single(synthetic_video, tmp_path):
    cfg = tmp_path / "cfg.json"
    # KoLeo looks for neighbours within each process's batch (as DINOv2's does), so it is off where the two
    # processes must match one process over the whole batch
    settings = dict(video=[str(synthetic_video)], steps=3, drop_path=0.0, koleo=0.0, **SMALL)
    cfg.write_text(json.dumps(settings))
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-port",
        "29517",
        "-m",
        "edge_vsd.cli",
        "train",
        "--config",
        str(cfg),
        "--out",
        str(tmp_path / "ddp"),
    ]
    subprocess.run(cmd, check=True, env=child_env(), capture_output=True, timeout=300)
    single = train(TrainConfig(**json.loads(cfg.read_text()), out=str(tmp_path / "one")), show_progress=False)
    start = train(TrainConfig(**{**settings, "lr": 0.0}, out=str(tmp_path / "zero")), show_progress=False)
    a, b, c = (load_checkpoint(p) for p in (tmp_path / "ddp" / "checkpoint.pt", single, start))

    def norm(x: dict, y: dict) -> float:
        return float(sum(((x[k] - y[k]).double() ** 2).sum() for k in x) ** 0.5)

    # Two half-batches all-reduced sum in another order than one batch, and Adam magnifies that in weights
    # whose gradient is near zero: single weights differ by up to 1.5e-5 on AVX-512 kernels. So the check is
    # on the whole update: DDP's must match one process's to 0.1% (measured 0.01%); a missing all-reduce or a
    # sampler that gives both processes the same pairs moves it by far more.
    for part in ("student", "teacher"):
        assert norm(a[part], b[part]) < 1e-3 * norm(b[part], c[part]), part
    ca, cb, cc = (ckpt["loss"]["center"].double() for ckpt in (a, b, c))
    assert (ca - cb).norm() < 1e-3 * (cb - cc).norm()


@pytest.mark.slow
def test_ctrl_c_saves_and_exits_cleanly(synthetic_video, tmp_path):
    run = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "edge_vsd.cli",
        "train",
        "--video",
        str(synthetic_video),
        "--out",
        str(run),
        "--steps",
        "100000",
        "--img-size",
        "32",
        "--batch-size",
        "4",
        "--out-dim",
        "256",
    ]
    # a shell that starts jobs in the background sets SIGINT to "ignore", and children inherit that;
    # restore the default so the child's Python turns Ctrl-C into KeyboardInterrupt as a terminal would
    proc = subprocess.Popen(
        cmd,
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        rows, deadline = run / "metrics.jsonl", time.time() + 120
        while time.time() < deadline and not (rows.exists() and rows.stat().st_size > 0):
            time.sleep(0.5)  # wait for the first logged step: the loop is running
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130 and "Traceback" not in err and "--resume" in err
    step = load_checkpoint(run / "checkpoint.pt")["step"]
    assert step >= 1 and len(metrics(run)) == step


@pytest.mark.realdata
@pytest.mark.slow
def test_cli_train_on_vtest(vtest, tmp_path):
    run = tmp_path / "run"
    code = main(
        [
            "train",
            "--video",
            str(vtest),
            "--out",
            str(run),
            "--arch",
            "vit_tiny",
            "--img-size",
            "64",
            "--batch-size",
            "8",
            "--steps",
            "30",
            "--delta-seconds",
            "1",
            "--seed",
            "0",
            "--lr",
            "0.005",
            "--out-dim",
            "512",
        ]
    )
    assert code == 0
    rows = metrics(run)
    assert len(rows) == 30 and all(np.isfinite(r["loss"]) for r in rows)
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["delta_seconds"] == 1 and cfg["video"] == [str(vtest)]
    assert (run / "frame_cache" / "index.json").exists()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none visible to PyTorch)")
def test_train_on_cuda_bf16(synthetic_video, tmp_path):
    cfg = TrainConfig(
        video=[str(synthetic_video)],
        out=str(tmp_path / "gpu"),
        steps=20,
        lr=5e-3,
        device="cuda",
        bf16=True,
        **SMALL,
    )
    ckpt = train(cfg, show_progress=False)
    rows = metrics(tmp_path / "gpu")
    assert all(np.isfinite(r["loss"]) for r in rows)
    enc = load_encoder(ckpt)  # saved from the GPU, loads on the CPU
    assert enc(torch.randn(1, 3, 32, 32)).cls.shape == (1, 192)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none visible to PyTorch)")
def test_cuda_graphs_compile_mode_trains_like_eager(synthetic_video, tmp_path):
    """`--compile-mode reduce-overhead` (CUDA graphs) runs the same steps: the losses of a few steps match
    an eager run's from the same seed."""
    losses = {}
    for mode in ("eager", "reduce-overhead"):
        cfg = TrainConfig(
            video=[str(synthetic_video)],
            out=str(tmp_path / mode),
            steps=4,
            device="cuda",
            seed=3,
            drop_path=0.0,  # compiled graphs draw their own random numbers: no stochastic depth here
            **SMALL,
        )
        if mode != "eager":
            cfg.compile, cfg.compile_mode = True, mode
        train(cfg, show_progress=False)
        losses[mode] = [r["loss"] for r in metrics(tmp_path / mode)]
    np.testing.assert_allclose(losses["reduce-overhead"], losses["eager"], rtol=2e-3)


def test_config_file_and_flags(tmp_path):
    import argparse

    from edge_vsd.train_cli import add_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    cfg_file = tmp_path / "c.json"
    cfg_file.write_text(json.dumps({"steps": 50, "delta_seconds": 2.0, "img_size": 96, "lr": 1e-3}))
    cfg = config_from_args(parser.parse_args(["--config", str(cfg_file), "--img-size", "64", "--delta", "7"]))
    assert (cfg.img_size, cfg.steps, cfg.delta, cfg.delta_seconds, cfg.lr) == (64, 50, 7, None, 1e-3)
    cfg = config_from_args(parser.parse_args(["--config", str(cfg_file), "--epochs", "3"]))
    assert (cfg.steps, cfg.epochs, cfg.delta_seconds) == (None, 3, 2.0)
    cfg_file.write_text(json.dumps({"nonsense": 1}))
    from edge_vsd.errors import InputError

    with pytest.raises(InputError, match="unknown config keys nonsense"):
        config_from_args(parser.parse_args(["--config", str(cfg_file)]))


def test_resume_after_init_with_another_arch(synthetic_video, tmp_path):
    """--init from a vit_small while --arch says vit_tiny: the run is a vit_small, and resuming keeps it."""
    torch.manual_seed(2)
    torch.save(build_vit("vit_small", 32).state_dict(), tmp_path / "small.pth")
    cfg = dict(
        video=[str(synthetic_video)],
        out=str(tmp_path / "r"),
        steps=3,
        init=str(tmp_path / "small.pth"),
        **SMALL,
    )
    train(TrainConfig(**cfg), show_progress=False, stop_after=2)
    ckpt = train(TrainConfig(**cfg), resume=True, show_progress=False)
    assert load_checkpoint(ckpt)["step"] == 3 and load_encoder(ckpt).cfg.embed_dim == 384


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none visible to PyTorch)")
def test_device_batches_prefetch_on_a_side_stream_gives_the_same_views(synthetic_video, tmp_path):
    from torch.utils.data import DataLoader

    from edge_vsd.data.cache import build_cache, open_cache
    from edge_vsd.data.pairs import FramePairs, StepBatches
    from edge_vsd.device import DeviceBatches, to_device

    cache = build_cache([synthetic_video], tmp_path / "cache", 72, show_progress=False)
    data = FramePairs(open_cache(cache), 64, 2, defer_photometric=True)

    def loader():
        return iter(DataLoader(data, batch_sampler=StepBatches(len(data), 4, 0, 0, 5), pin_memory=True))

    device = torch.device("cuda")
    plain = [to_device(b, device) for b in loader()]
    ahead = list(DeviceBatches(loader(), device))
    assert len(ahead) == len(plain) == 5
    for a, b in zip(ahead, plain):
        assert torch.equal(a["globals"], b["globals"])


def test_loader_workers_default_by_device(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    assert TrainConfig(device="cpu").loader_workers == 0  # workers fight the step on a small CPU
    assert TrainConfig(device="cuda").loader_workers == 4
    assert TrainConfig(device="cuda", workers=9).loader_workers == 9
    monkeypatch.setattr("os.cpu_count", lambda: 3)
    assert TrainConfig(device="cuda").loader_workers == 1  # two cores stay with the training process

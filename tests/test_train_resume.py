"""`train --resume` keeps the run's model and method, SIGTERM saves like Ctrl-C, and what training writes
is readable by others under the usual umask."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import child_env

from edge_vsd.checkpoint import load_checkpoint
from edge_vsd.cli import main
from edge_vsd.config import TrainConfig
from edge_vsd.errors import InputError
from edge_vsd.train import train

SMALL = dict(img_size=32, batch_size=4, out_dim=256, head_hidden_dim=128, head_bottleneck_dim=64, delta=5)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def run_dir(synthetic_video, tmp_path_factory) -> Path:
    """A one-step run, made through the CLI from a config file (as a user would)."""
    root = tmp_path_factory.mktemp("resume")
    cfg = root / "small.json"
    cfg.write_text(json.dumps({"video": [str(synthetic_video)], "steps": 1, **SMALL}))
    assert main(["train", "--config", str(cfg), "--out", str(root / "run")]) == 0
    return root / "run"


@pytest.mark.parametrize(
    "flags, shown",
    [
        (["--img-size", "64"], "--img-size 64 (run: 32)"),
        (["--out-dim", "512"], "--out-dim 512 (run: 256)"),
        (["--arch", "vit_small", "--steps", "3"], "--arch vit_small (run: vit_tiny)"),
        (["--batch-size", "8"], "--batch-size 8 (run: 4)"),
        (["--method", "dino"], "--method dino (run: vsd)"),
    ],
)
def test_resume_with_other_model_settings_is_one_line_and_writes_nothing(run_dir, capsys, flags, shown):
    before = {p.name: _digest(p) for p in run_dir.iterdir() if p.is_file()}
    capsys.readouterr()
    code = main(["train", "--out", str(run_dir), "--resume", *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("edge-vsd train: error: ") and str(run_dir / "config.json") in err[0]
    assert shown in err[0] and "Traceback" not in err[0]
    assert {p.name: _digest(p) for p in run_dir.iterdir() if p.is_file()} == before


def test_resume_api_refuses_a_changed_head_and_names_the_config_key(run_dir, synthetic_video):
    saved = json.loads((run_dir / "config.json").read_text())
    with pytest.raises(InputError, match=r"head_hidden_dim 256 \(run: 128\)"):
        train(TrainConfig(**{**saved, "head_hidden_dim": 256}), resume=True, show_progress=False)


def test_resume_may_lengthen_the_run(synthetic_video, tmp_path):
    cfg = dict(video=[str(synthetic_video)], out=str(tmp_path / "r"), **SMALL)
    train(TrainConfig(steps=1, **cfg), show_progress=False)
    ckpt = train(TrainConfig(steps=2, save_every=7, **cfg), resume=True, show_progress=False)
    assert load_checkpoint(ckpt)["step"] == 2
    assert json.loads((tmp_path / "r" / "config.json").read_text())["steps"] == 2


@pytest.mark.slow
def test_sigterm_saves_at_a_step_boundary_and_exits_143(synthetic_video, tmp_path):
    """As a scheduler stops a job; with a loader worker, which must not die before the last batch."""
    run = tmp_path / "run"
    cfg = tmp_path / "small.json"
    cfg.write_text(json.dumps(SMALL))
    cmd = [sys.executable, "-m", "edge_vsd.cli", "train", "--config", str(cfg), "--video"]
    cmd += [str(synthetic_video), "--out", str(run), "--steps", "100000", "--save-every", "1000"]
    proc = subprocess.Popen(
        [*cmd, "--workers", "1"], env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        rows, deadline = run / "metrics.jsonl", time.time() + 120
        while time.time() < deadline and not (rows.exists() and rows.stat().st_size > 0):
            time.sleep(0.2)  # the first logged step: the loop is running
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    assert "Traceback" not in err and "SIGTERM at step" in err and "--resume" in err
    step = load_checkpoint(run / "checkpoint.pt")["step"]
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert step >= 1 and [json.loads(r)["step"] for r in lines] == list(range(1, step + 1))


def test_outputs_follow_the_umask(synthetic_video, tmp_path):
    old = os.umask(0o022)
    try:
        cfg = TrainConfig(video=[str(synthetic_video)], out=str(tmp_path / "r"), steps=1, **SMALL)
        train(cfg, show_progress=False)
    finally:
        os.umask(old)
    run = tmp_path / "r"
    cache = run / "frame_cache"
    assert stat.S_IMODE(cache.stat().st_mode) == 0o755
    for path in [run / "checkpoint.pt", run / "config.json", run / "metrics.jsonl", *cache.iterdir()]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path

"""`kill -9` at arbitrary moments: training resumes to weights bit-identical to an uninterrupted run, and an
export leaves nothing under its final name and reruns cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import edge_vsd.runtimes as rt
import pytest
import torch
from conftest import child_env
from edge_vsd.export.artifact import Staging

from edge_vsd.checkpoint import load_checkpoint
from edge_vsd.cli import main
from edge_vsd.config import TrainConfig
from edge_vsd.model import build_vit
from edge_vsd.train import train

STEPS = 12
KILL_AFTER_ROWS = (4, 7, 10)  # metrics rows seen before each kill: a checkpoint (every 3 steps) exists
CONFIG = dict(
    steps=STEPS,
    save_every=3,
    img_size=32,
    batch_size=8,
    out_dim=256,
    head_hidden_dim=128,
    head_bottleneck_dim=64,
    delta=5,
    seed=3,
)


def _train_cmd(cfg: Path, out: Path, resume: bool) -> list[str]:
    cmd = [sys.executable, "-m", "edge_vsd.cli", "train", "--config", str(cfg), "--out", str(out)]
    return cmd + (["--resume"] if resume else [])


def _rows(out: Path) -> int:
    path = out / "metrics.jsonl"
    return path.read_text().count("\n") if path.exists() else 0


def _kill_when(proc: subprocess.Popen, ready, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, "finished before the kill point"
        assert time.monotonic() < deadline, "kill point never reached"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL


@contextmanager
def one_thread():
    """In-process runs use one intra-op thread, as the subprocesses do (OMP_NUM_THREADS=1)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.mark.slow
def test_training_killed_three_times_resumes_bit_identical(synthetic_video, tmp_path):
    settings = {"video": [str(synthetic_video)], **CONFIG}
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(settings))
    with one_thread():  # the uninterrupted run; saving once changes nothing but the disk traffic
        train(TrainConfig(**{**settings, "save_every": 1000}, out=str(tmp_path / "a")), show_progress=False)

    out = tmp_path / "b"
    steps_at_kill = []
    for i, rows in enumerate(KILL_AFTER_ROWS):  # the CLI, killed mid-step or mid-save, then --resume
        proc = subprocess.Popen(
            _train_cmd(cfg, out, resume=i > 0),
            env=child_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _kill_when(proc, lambda rows=rows: _rows(out) >= rows)
        finally:
            proc.kill()
        steps_at_kill.append(load_checkpoint(out / "checkpoint.pt")["step"])
    assert steps_at_kill == sorted(steps_at_kill) and steps_at_kill[-1] < STEPS
    with one_thread():
        train(TrainConfig(**settings, out=str(out)), resume=True, show_progress=False)

    a, b = load_checkpoint(tmp_path / "a" / "checkpoint.pt"), load_checkpoint(out / "checkpoint.pt")
    assert a["step"] == b["step"] == STEPS
    for part in ("student", "teacher", "predictor"):
        assert a[part].keys() == b[part].keys()
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part]), part
    assert torch.equal(a["loss"]["center"], b["loss"]["center"])
    rows_a = [json.loads(r) for r in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    rows_b = [json.loads(r) for r in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows_b] == list(range(1, STEPS + 1))
    assert [r["loss"] for r in rows_a] == [r["loss"] for r in rows_b]
    assert not list(out.glob(".checkpoint.pt.*.tmp")), "temp files of killed saves left behind"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "vit.pt"
    torch.manual_seed(0)
    torch.save(build_vit("vit_tiny", 32).state_dict(), path)
    return path


@pytest.mark.slow
def test_export_killed_leaves_nothing_and_reruns(ckpt, tmp_path, capsys):
    out = tmp_path / "art"
    cmd = [sys.executable, "-m", "edge_vsd.cli", "export", str(ckpt), "--out", str(out)]
    proc = subprocess.Popen(
        cmd, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    seen = []
    try:
        for line in proc.stderr:  # stage lines: "[N] name ..."
            seen.append(line)
            if line.startswith("[") and "manifest" in line:  # everything staged, nothing renamed yet
                proc.send_signal(signal.SIGKILL)
                break
        proc.wait(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL, "".join(seen)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")], "expected a killed staging"
    assert main(["export", str(ckpt), "--out", str(out), "--quiet"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]  # the dead export's staging is gone
    with rt.load(out) as enc:
        assert enc(torch.zeros(32, 32, 3, dtype=torch.uint8).numpy()).cls.shape == (1, 192)
    text = (out / "manifest.json").read_text()  # names and digests travel, this machine's folders do not
    assert str(tmp_path) not in text and str(ckpt.parent) not in text and ckpt.name in text


def test_old_artifact_set_aside_by_a_killed_force_export_comes_back(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    old = tmp_path / f".art.{dead.pid}.old"
    old.mkdir()
    (old / "manifest.json").write_text("{}")
    (tmp_path / f".art.{dead.pid}.abc123.partial").mkdir()
    live = tmp_path / f".art.{os.getpid()}.xyz.partial"  # a running export's staging is left alone
    live.mkdir()
    staging = Staging(tmp_path / "art", force=True)
    staging.abort()
    assert (tmp_path / "art" / "manifest.json").read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["art", live.name])

"""Progress off a terminal: plain lines now and then, not a carriage-return redraw per step."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import time

import pytest
from conftest import child_env

from edge_vsd.progress import progress


def records(text: str) -> list[str]:
    """What a log viewer shows as separate updates: pieces between newlines and carriage returns."""
    return [r for r in re.split(r"[\r\n]+", text) if r.strip()]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_off_a_terminal_a_bar_writes_plain_lines_and_a_last_one():
    out = io.StringIO()
    bar = progress(total=500, desc="train", unit="step", stream=out)
    for i in range(500):
        bar.update(1)
        bar.set_postfix({"loss": f"{i:.3f}"}, refresh=False)
    bar.close()
    text = out.getvalue()
    assert "\r" not in text and text.endswith("\n")
    lines = text.splitlines()
    assert len(lines) <= 3, lines  # the start, the end, and at most one in between (a stalled machine)
    assert lines[-1].startswith("train: 100% 500/500") and "loss=499.000" in lines[-1]


def test_lines_come_at_most_once_per_interval():
    out, every = io.StringIO(), 0.1
    start = time.perf_counter()
    with progress(desc="decoding", unit="frame", stream=out, every_s=every) as bar:
        for _ in range(50):
            time.sleep(0.01)
            bar.update(1)
    elapsed = time.perf_counter() - start
    lines = out.getvalue().splitlines()
    assert 4 <= len(lines) <= elapsed / every + 2, (elapsed, lines)
    assert all(line.startswith("decoding: ") for line in lines) and lines[-1].startswith("decoding: 50 ")
    counts = [line.split(" [")[0] for line in lines]
    assert len(counts) == len(set(counts)), lines  # no line repeats the one before it


def test_on_a_terminal_it_is_tqdms_live_bar():
    out = Terminal()
    with progress(total=10, desc="train", stream=out) as bar:
        bar.update(10)
    assert "\r" in out.getvalue() and "10/10" in out.getvalue()


def test_runtimes_twin_behaves_the_same():
    from edge_vsd.runtimes.progress import progress as runtimes_progress

    ours, theirs = io.StringIO(), io.StringIO()
    for make, out in ((progress, ours), (runtimes_progress, theirs)):
        with make(total=20, desc="extract", unit="frame", stream=out) as bar:
            bar.update(20)
    assert [line.split(" [")[0] for line in ours.getvalue().splitlines()] == [
        line.split(" [")[0] for line in theirs.getvalue().splitlines()
    ]


@pytest.mark.slow
def test_cli_training_logged_to_a_file_writes_few_progress_lines(synthetic_video, tmp_path):
    steps, run = 120, tmp_path / "run"
    config = tmp_path / "small.json"
    config.write_text(json.dumps({"head_hidden_dim": 128, "head_bottleneck_dim": 64}))
    cmd = [sys.executable, "-m", "edge_vsd.cli", "train", "--video", str(synthetic_video), "--out", str(run)]
    cmd += ["--config", str(config), "--steps", str(steps), "--img-size", "32", "--batch-size", "4"]
    cmd += ["--out-dim", "256", "--delta", "5", "--save-every", "1000"]
    with open(tmp_path / "stderr.log", "w") as log:  # a file, as a service's or a CI job's log
        proc = subprocess.run(cmd, env=child_env(), stdout=subprocess.PIPE, stderr=log, timeout=600)
    err = (tmp_path / "stderr.log").read_text()
    assert proc.returncode == 0, err
    assert len((run / "metrics.jsonl").read_text().splitlines()) == steps  # more steps than the bound
    progress_lines = [r for r in records(err) if r.startswith(("train:", "decoding:"))]
    assert len(records(err)) < 100 and "\r" not in err, err
    assert progress_lines[-1].startswith(f"train: 100% {steps}/{steps}"), progress_lines

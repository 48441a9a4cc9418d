"""Report pieces: Pareto front, Markdown table, and the HTML rendered by headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import cv2
import pytest
from edge_vsd.benchmarks import report
from edge_vsd.benchmarks.plots import pareto_front
from test_bench_support import toy

from edge_vsd.cli import main

CHROMIUM = Path("/usr/bin/chromium")


def test_pareto_front():
    # (latency, accuracy): b dominates d (faster and better); a is fastest; c is most accurate.
    pts = [(1.0, 0.90), (2.0, 0.97), (5.0, 0.999), (3.0, 0.95), (2.0, 0.97)]
    assert pareto_front(pts[:4]) == [0, 1, 2]
    assert 3 not in pareto_front(pts)  # duplicates of a front point both stay, the dominated one does not


def _row(name, status="ok", reason=None):
    return {
        "name": name,
        "backend": "onnxruntime-cpu",
        "precision": "int8",
        "size_mb": 5.25,
        "status": status,
        "reason": reason,
        "latency": {"p50_ms": 1.5, "p90_ms": 2.0, "p99_ms": 3.0, "fps": 666.7},
        "accuracy": {"cls_cosine": 0.99912, "patch_cosine": 0.98765, "corr_acc": 0.8},
    }


def test_markdown_table_columns_and_escaping():
    results = {"artifacts": [_row("cpu-int8"), _row("odd|name", "failed", "load: x|y")]}
    lines = report.markdown_table(results).strip().splitlines()
    assert lines[0] == (
        "| artifact | backend | precision | size MB | p50 ms | p90 | p99 | FPS | CLS cos | "
        "patch cos | corr. acc | status |"
    )
    assert lines[2] == (
        "| cpu-int8 | onnxruntime-cpu | int8 | 5.25 | 1.50 | 2.00 | 3.00 | 666.7 | 0.9991 | "
        "0.9877 | 0.800 | ok |"
    )
    assert lines[3].startswith("| odd\\|name |") and lines[3].endswith("failed (load: x\\|y) |")
    assert all(len(re.findall(r"(?<!\\)\|", line)) == 13 for line in lines)  # 12 columns, escapes ignored


@pytest.fixture(scope="module")
def html_report(tmp_path_factory):
    root = tmp_path_factory.mktemp("html")
    arts = [toy(root / "fp32"), toy(root / "int8-ish", noise=0.05), toy(root / "fp16-ish", noise=0.01)]
    rc = main(
        [
            "bench",
            *map(str, arts),
            "--report",
            str(root / "rep"),
            "--iters",
            "5",
            "--warmup",
            "1",
            "--frames",
            "6",
            "--corr-pairs",
            "3",
        ]
    )
    assert rc == 0
    return root / "rep" / "report.html"


def test_html_is_self_contained(html_report):
    text = html_report.read_text()
    srcs = re.findall(r'src="([^"]*)"', text)
    assert len(srcs) == 2 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "http://" not in text and "https://" not in text and "<link" not in text
    results = json.loads((html_report.parent / "results.json").read_text())
    for a in results["artifacts"]:
        assert f"<td>{a['name']}</td>" in text


def test_html_renders_in_headless_chromium(html_report, tmp_path):
    if not CHROMIUM.exists() or shutil.which(str(CHROMIUM)) is None:
        pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium)")
    shot = tmp_path / "shot.png"
    cmd = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--screenshot={shot}",
        "--window-size=1200,900",
        html_report.as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert shot.exists(), proc.stderr[-2000:]
    img = cv2.imread(str(shot))
    assert img is not None and img.shape[:2] == (900, 1200)
    gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    assert gray.var() > 200, "screenshot is (nearly) blank"
    # the plots sit below the table: the lower half must carry content too, not just the upper text block
    assert gray[450:].var() > 100
    assert (gray < 128).mean() > 0.01  # dark pixels: text and plot lines were drawn

"""Shared test fixtures: real sample videos from Debian's opencv-doc, synthetic videos made on the fly."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Under pytest-xdist (`-n 2`, the README's test command) each worker is one of two processes sharing the
# cores: PyTorch's intra-op pool of two threads in each would oversubscribe them, and a thread that waits for
# a descheduled sibling turns a second's step into ten. One thread per worker; engines keep their settings.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")

try:  # before any torch op, so the intra-op threads inherit it (see edge_vsd.device.fast_math)
    import torch

    torch.set_flush_denormal(True)
except ImportError:
    pass

OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
NEEDS_OPENCV_DOC = "needs Debian's opencv-doc sample data (apt-get install -y opencv-doc)"


def child_env() -> dict[str, str]:
    """Environment for a training subprocess: one intra-op thread each, and no torchrun variables."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("WORLD_SIZE", None)
    return env


def opencv_sample(name: str) -> Path:
    """Path of a file from opencv-doc's sample data, or skip the test with the reason."""
    path = OPENCV_DATA / name
    if not path.exists():
        pytest.skip(f"{NEEDS_OPENCV_DOC}: {path} is missing")
    return path


@pytest.fixture(scope="session")
def vtest() -> Path:
    """768x576 street scene, 795 frames."""
    return opencv_sample("vtest.avi")


@pytest.fixture(scope="session")
def synthetic_video(tmp_path_factory) -> Path:
    from edge_vsd.data.synthetic import write_video

    return write_video(tmp_path_factory.mktemp("video") / "synthetic.avi", n_frames=90, seed=0)

"""Atomic writes: files and artifact folders get the permissions the umask allows, like open() and mkdir()."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from edge_vsd.export.artifact import Staging
from edge_vsd.runtimes import atomic as runtime_atomic
from edge_vsd.runtimes.atomic import can_create_in, unwritable_at

from edge_vsd import atomic as core_atomic
from edge_vsd.errors import InputError


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield
    os.umask(old)


@pytest.mark.parametrize("module", [core_atomic, runtime_atomic], ids=["core", "runtimes"])
def test_atomic_files_follow_the_umask(module, tmp_path, umask_027):
    path = module.write_atomic(tmp_path / "manifest.json", lambda f: f.write(b"{}"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o640  # 0o666 less 0o027, not mkstemp's 0o600
    assert path.read_bytes() == b"{}"


def test_staged_artifact_folder_follows_the_umask(tmp_path, umask_027):
    staging = Staging(tmp_path / "art", force=False)
    (staging.dir / "manifest.json").write_text("{}")
    out = staging.commit()
    assert stat.S_IMODE(out.stat().st_mode) == 0o750  # 0o777 less 0o027, not mkdtemp's 0o700


def test_can_create_in(tmp_path):
    assert can_create_in(tmp_path) and list(tmp_path.iterdir()) == []  # the probe file is removed
    assert not can_create_in(tmp_path / "missing")
    if os.path.isdir("/proc/self"):  # writable by permission bits for root, yet nothing can be created
        assert not can_create_in("/proc")


def test_unwritable_at_names_the_nearest_existing_path(tmp_path):
    assert unwritable_at(tmp_path / "new" / "deeper") is None  # made later, in a writable folder
    (tmp_path / "a_file").write_text("x")
    assert unwritable_at(tmp_path / "a_file" / "inside") == tmp_path / "a_file"  # a file is in the way
    if os.path.isdir("/proc/self"):
        assert unwritable_at("/proc/new-report") == Path("/proc")


def test_staging_refuses_a_file_in_the_way(tmp_path):
    (tmp_path / "art").write_text("x")
    with pytest.raises(InputError, match="a file, not an artifact folder"):
        Staging(tmp_path / "art", force=True)

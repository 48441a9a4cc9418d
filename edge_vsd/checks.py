"""Input checks shared by commands, torch-free (prepare runs without torch)."""

from __future__ import annotations

from pathlib import Path

from edge_vsd.atomic import can_create_in
from edge_vsd.errors import InputError


def at_least(flag: str, value: int | None, low: int) -> None:
    """`value` is None or an integer (not a bool) >= `low`."""
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < low):
        raise InputError(f"{flag} {value!r}: must be an integer >= {low}")


def check_img_size(img_size: int, patch_size: int, flag: str = "--img-size") -> None:
    """The training size must tile into whole patches."""
    if img_size <= 0 or img_size % patch_size:
        raise InputError(f"{flag} {img_size}: must be a positive multiple of the patch size {patch_size}")


def check_writable_dir(path: Path, flag: str) -> None:
    """`path` is (or can be made) a folder we may write in; nothing is left behind by the check."""
    if path.exists() and not path.is_dir():
        raise InputError(f"{path}: exists and is not a folder ({flag})")
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir() or not can_create_in(probe):
        raise InputError(f"{path}: cannot write here ({probe} is not a writable folder) ({flag})")

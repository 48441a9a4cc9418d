"""Read, validate and write an artifact's `manifest.json` (schema version 1, see docs/ARTIFACT.md)."""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_vsd.runtimes.atomic import write_bytes_atomic
from edge_vsd.runtimes.errors import RuntimeInputError

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
RESIZE_RULES = ("stretch",)
INTERPOLATIONS = ("area", "linear")
COLORS = ("RGB", "BGR")
INPUT_DTYPES = ("float32", "float16")
# sha256 of the manifest's own canonical JSON without this key: any byte changed in manifest.json is caught
DIGEST_KEY = "manifest_sha256"
_HEX64 = re.compile(r"[0-9a-f]{64}")
# sections other tools add: their type is checked here, their content where it is read
OPTIONAL_SECTIONS = [
    *((k, dict, "an object") for k in ("tuning", "tensorrt", "calibration", "parity", "versions", "export")),
    *((k, dict, "an object") for k in ("cpu_int8", "quantization")),
    ("candidates", list, "a list"),
    *((k, str, "a string") for k in ("precision", "target", "backend", "created_at")),
]


@dataclass(frozen=True)
class InputSpec:
    """What the encoder's input tensor expects: everything preprocessing needs, from `manifest["input"]`."""

    name: str
    image_size: tuple[int, int]
    color: str
    scale: float
    mean: tuple[float, ...]
    std: tuple[float, ...]
    resize: str
    interpolation: str
    dtype: str
    batch: int | None


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def file_entry(path: str | Path) -> dict[str, Any]:
    """The manifest's `files` entry for one file: sha256 and size in bytes."""
    path = Path(path)
    return {"sha256": sha256_file(path), "bytes": path.stat().st_size}


def _require(cond: bool, where: Path, message: str) -> None:
    if not cond:
        raise RuntimeInputError(f"{where}: {message}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) != float("inf")


def plain_file_name(name: Any) -> bool:
    """A file directly inside the artifact folder: no folders, no `..`, not absolute, no odd characters."""
    return (
        isinstance(name, str)
        and name not in ("", ".", "..")
        and not any(c in name for c in "/\\\0")
        and not os.path.isabs(name)
        and Path(name).name == name
    )


def canonical_bytes(manifest: dict[str, Any]) -> bytes:
    """The one byte form a manifest is written in (2-space JSON, ASCII, trailing newline)."""
    return (json.dumps(manifest, indent=2, ensure_ascii=True) + "\n").encode("ascii")


def manifest_digest(manifest: dict[str, Any]) -> str:
    """sha256 of the manifest's canonical bytes without its own digest."""
    body = {k: v for k, v in manifest.items() if k != DIGEST_KEY}
    return hashlib.sha256(canonical_bytes(body)).hexdigest()


def validate_manifest(manifest: Any, where: str | Path = MANIFEST_NAME) -> dict[str, Any]:
    """Check the fields runtimes rely on; raise RuntimeInputError naming the first problem."""
    where = Path(where)
    _require(isinstance(manifest, dict), where, "is not a JSON object")
    version = manifest.get("schema_version")
    _require(
        _is_int(version) and version == SCHEMA_VERSION,
        where,
        f"schema_version {version!r} is not supported (expected 1)",
    )
    for key in ("model", "input", "outputs", "files"):
        _require(isinstance(manifest.get(key), dict), where, f"missing or invalid {key!r} section")
    model, inp, outputs, files = (manifest[k] for k in ("model", "input", "outputs", "files"))
    size = model.get("image_size")
    _require(
        isinstance(size, list) and len(size) == 2 and all(_is_int(v) and v > 0 for v in size),
        where,
        f"model.image_size must be [H, W] positive ints, got {size!r}",
    )
    patch = model.get("patch_size")
    _require(_is_int(patch) and patch > 0, where, f"model.patch_size must be a positive int, got {patch!r}")
    _require(isinstance(inp.get("name"), str) and inp["name"], where, "input.name must be a non-empty string")
    _require(
        inp.get("layout") == "NCHW", where, f"input.layout {inp.get('layout')!r} is not supported (NCHW)"
    )
    _require(
        inp.get("dtype") in INPUT_DTYPES, where, f"input.dtype {inp.get('dtype')!r} not in {INPUT_DTYPES}"
    )
    _require(inp.get("color") in COLORS, where, f"input.color {inp.get('color')!r} not in {COLORS}")
    _require(
        inp.get("resize") in RESIZE_RULES, where, f"input.resize {inp.get('resize')!r} not in {RESIZE_RULES}"
    )
    _require(
        inp.get("interpolation") in INTERPOLATIONS,
        where,
        f"input.interpolation {inp.get('interpolation')!r} not in {INTERPOLATIONS}",
    )
    scale = inp.get("scale")
    _require(_is_number(scale) and scale > 0, where, f"input.scale must be > 0, got {scale!r}")
    for key in ("mean", "std"):
        val = inp.get(key)
        _require(
            isinstance(val, list) and len(val) == 3 and all(_is_number(v) for v in val),
            where,
            f"input.{key} must be 3 numbers, got {val!r}",
        )
    _require(all(v > 0 for v in inp["std"]), where, "input.std must be positive")
    batch = inp.get("batch")
    _require(
        batch is None or (_is_int(batch) and batch > 0),
        where,
        f"input.batch must be null or > 0, got {batch!r}",
    )
    for key in ("cls", "patches"):
        out = outputs.get(key)
        _require(
            isinstance(out, dict) and isinstance(out.get("name"), str) and out["name"],
            where,
            f"outputs.{key}.name is missing",
        )
    _require(bool(files), where, "lists no files")
    for key, kinds, what in OPTIONAL_SECTIONS:
        value = manifest.get(key)
        _require(
            value is None or isinstance(value, kinds),
            where,
            f"{key!r} must be {what} when present, got {type(value).__name__}",
        )
    for name, entry in files.items():
        _require(
            plain_file_name(name),
            where,
            f"files[{name!r}] must be a plain file name in the artifact folder",
        )
        _require(
            isinstance(entry, dict)
            and isinstance(entry.get("sha256"), str)
            and _HEX64.fullmatch(entry["sha256"]) is not None,
            where,
            f"files[{name!r}] has no sha256 (64 hex digits)",
        )
        size_ = entry.get("bytes")
        _require(
            size_ is None or (_is_int(size_) and size_ >= 0),
            where,
            f"files[{name!r}].bytes must be a size in bytes, got {size_!r}",
        )
    return manifest


def check_digest(raw: bytes, manifest: dict[str, Any], where: Path) -> None:
    """The manifest is exactly as written: digest matches content, bytes match the canonical form."""
    digest = manifest.get(DIGEST_KEY)
    _require(
        isinstance(digest, str) and _HEX64.fullmatch(digest) is not None,
        where,
        f"has no {DIGEST_KEY} (edited by hand, or written by an older edge-vsd; re-export it)",
    )
    _require(
        manifest_digest(manifest) == digest,
        where,
        f"{DIGEST_KEY} does not match the manifest's content (tampered or corrupt)",
    )
    _require(
        canonical_bytes(manifest) == raw,
        where,
        "bytes differ from the canonical form its digest covers (tampered or corrupt)",
    )


def _inside(root: Path, path: Path) -> bool:
    """`path` (symlinks followed) lies inside `root`."""
    try:
        path.resolve().relative_to(root.resolve())
    except (ValueError, OSError, RuntimeError):
        return False
    return True


def read_manifest(artifact_dir: str | Path) -> dict[str, Any]:
    """Load and validate `ARTIFACT/manifest.json`."""
    artifact_dir = Path(artifact_dir)
    if artifact_dir.is_file():
        checkpoint = artifact_dir.suffix in (".pt", ".pth")
        hint = "; export a checkpoint with `edge-vsd export` first" if checkpoint else ""
        raise RuntimeInputError(f"{artifact_dir}: a file, not an artifact folder{hint}")
    if not artifact_dir.is_dir():
        raise RuntimeInputError(f"{artifact_dir}: artifact folder not found")
    path = artifact_dir / MANIFEST_NAME
    if not path.is_file():
        raise RuntimeInputError(f"{path}: missing (not an artifact folder?)")
    if not _inside(artifact_dir, path):
        raise RuntimeInputError(f"{path}: a symlink leading out of the artifact folder; refusing it")
    try:
        raw = path.read_bytes()
        manifest = json.loads(raw.decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        reason = " ".join(str(exc).split())[:160]
        raise RuntimeInputError(f"{path}: unreadable manifest (truncated or not JSON: {reason})") from None
    validate_manifest(manifest, path)
    check_digest(raw, manifest, path)
    return manifest


def verify_files(artifact_dir: str | Path, manifest: dict[str, Any]) -> None:
    """Check every file listed in the manifest exists with the recorded size and sha256."""
    artifact_dir = Path(artifact_dir)
    for name, entry in manifest["files"].items():
        path = artifact_dir / name
        if not plain_file_name(name):
            raise RuntimeInputError(f"{path}: not a plain file name in the artifact folder; refusing it")
        if (path.is_symlink() or path.exists()) and not _inside(artifact_dir, path):
            raise RuntimeInputError(f"{path}: a symlink leading out of the artifact folder; refusing it")
        if not path.is_file():
            raise RuntimeInputError(f"{path}: listed in the manifest but missing")
        size = entry.get("bytes")
        if size is not None and path.stat().st_size != size:
            raise RuntimeInputError(
                f"{path}: size {path.stat().st_size} != {size} in the manifest (tampered?)"
            )
        if sha256_file(path) != entry["sha256"]:
            raise RuntimeInputError(f"{path}: sha256 does not match the manifest (tampered or corrupt)")


def input_spec(manifest: dict[str, Any]) -> InputSpec:
    """The preprocessing/input contract of a validated manifest."""
    inp = manifest["input"]
    h, w = manifest["model"]["image_size"]
    return InputSpec(
        name=inp["name"],
        image_size=(h, w),
        color=inp["color"],
        scale=float(inp["scale"]),
        mean=tuple(float(v) for v in inp["mean"]),
        std=tuple(float(v) for v in inp["std"]),
        resize=inp["resize"],
        interpolation=inp["interpolation"],
        dtype=inp["dtype"],
        batch=inp.get("batch"),
    )


def write_manifest(artifact_dir: str | Path, manifest: dict[str, Any]) -> Path:
    """Validate and write `manifest.json` atomically (temp file + rename) with its digest; return the path."""
    artifact_dir = Path(artifact_dir)
    path = artifact_dir / MANIFEST_NAME
    validate_manifest(manifest, path)
    body = {k: v for k, v in manifest.items() if k != DIGEST_KEY}
    body[DIGEST_KEY] = manifest_digest(body)
    return write_bytes_atomic(path, canonical_bytes(body))

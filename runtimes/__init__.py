"""Torch-free on-device inference: load an artifact folder, run frames or streams through it.

Imports numpy, OpenCV and the inference engines only (never torch, never the `edge_vsd` core).

    enc = edge_vsd.runtimes.load("artifacts/cpu-int8")
    feats = enc(frame_bgr)                 # feats.cls (1, D), feats.patches (1, h, w, D)
    for index, t, f in enc.stream("video.mp4", stride=2): ...
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge_vsd.runtimes.backend import BACKEND_CHOICES, create_backend, warn_once
from edge_vsd.runtimes.encoder import Encoder, Features
from edge_vsd.runtimes.errors import RuntimeInputError
from edge_vsd.runtimes.manifest import read_manifest, verify_files

__all__ = ["BACKEND_CHOICES", "Encoder", "Features", "RuntimeInputError", "load"]


def load(
    artifact_dir: str | Path,
    backend: str | None = None,
    threads: int | None = None,
    candidate: str | None = None,
    **backend_options: Any,
) -> Encoder:
    """Read and validate the manifest, verify every file's sha256, pick the backend, return an Encoder.

    backend: None/"auto" (TensorRT when the artifact has an engine and TensorRT imports, else the engine
    and graph `edge-vsd tune` chose, else the manifest's backend; ONNX Runtime with one warning line when
    that engine is not installed), or one of BACKEND_CHOICES (its fastest candidate graph).
    candidate: run one named candidate of a cpu artifact (what `edge-vsd tune` times).
    threads: CPU threads for ONNX Runtime / OpenVINO (default: theirs).
    backend_options: engine-specific, e.g. `spinning=False` (ONNX Runtime: idle worker threads sleep
    instead of spinning, which leaves the CPU to the decode thread when streaming on few cores).
    """
    manifest = read_manifest(artifact_dir)
    verify_files(artifact_dir, manifest)
    _check_tuned_here(artifact_dir, manifest)
    return Encoder(
        artifact_dir,
        manifest,
        create_backend(artifact_dir, manifest, backend, threads, candidate, **backend_options),
    )


def _check_tuned_here(artifact_dir: str | Path, manifest: dict[str, Any]) -> None:
    """One warning line when the artifact was tuned on another CPU: its choice may not be this one's best."""
    tuned = (manifest.get("tuning") or {}).get("cpu") or {}
    if not tuned.get("id"):
        return
    from edge_vsd.runtimes.cpuinfo import cpu_fingerprint

    here = cpu_fingerprint()
    if here["id"] != tuned["id"]:
        warn_once(
            f"{Path(artifact_dir).resolve()}:fingerprint",
            f"{artifact_dir} was tuned on another CPU ({tuned.get('model')}, {tuned.get('logical_cpus')} "
            f"CPUs; this is {here['model']}, {here['logical_cpus']} CPUs): "
            f"run `edge-vsd tune {artifact_dir}` to pick this machine's fastest engine",
        )

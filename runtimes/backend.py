"""The backend protocol every engine implements, and how `load` picks one."""

from __future__ import annotations

import importlib
import inspect
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from edge_vsd.runtimes.errors import RuntimeInputError

ENGINE_FILE = "encoder.engine"
ONNX_FILE = "encoder.onnx"

# name -> (module, class, keyword arguments)
BACKENDS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "onnxruntime": ("edge_vsd.runtimes.onnxruntime", "OnnxRuntimeBackend", {"device": "auto"}),
    "onnxruntime-cpu": ("edge_vsd.runtimes.onnxruntime", "OnnxRuntimeBackend", {"device": "cpu"}),
    "onnxruntime-cuda": ("edge_vsd.runtimes.onnxruntime", "OnnxRuntimeBackend", {"device": "cuda"}),
    "onnxruntime-tensorrt": ("edge_vsd.runtimes.onnxruntime", "OnnxRuntimeBackend", {"device": "tensorrt"}),
    "tensorrt": ("edge_vsd.runtimes.tensorrt", "TensorRTBackend", {}),
    "openvino": ("edge_vsd.runtimes.openvino", "OpenVINOBackend", {}),
}
BACKEND_CHOICES = ("auto", *BACKENDS)
PIP_PACKAGES = {"openvino": "openvino", "onnxruntime": "onnxruntime", "tensorrt": "tensorrt"}

log = logging.getLogger("edge_vsd.runtimes")


def graph_files(name: str) -> list[str]:
    """The files one candidate graph occupies: an OpenVINO IR .xml has its weights in the .bin beside it."""
    return [name, name[: -len(".xml")] + ".bin"] if name.endswith(".xml") else [name]


class Backend(Protocol):
    """One inference engine bound to one artifact."""

    name: str
    # optional `takes_uint8 = True`: the engine normalises in its graph and `run` gets the resized uint8
    # (B, H, W, 3) frames in the manifest's colour order (see `Encoder.prepare`)

    def run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Normalised (B, 3, H, W) input -> (cls (B, D), patches (B, h, w, D)) numpy arrays."""
        ...

    def close(self) -> None:
        """Release engine resources (device memory, sessions)."""
        ...


def _tensorrt_importable() -> bool:
    try:
        import tensorrt  # noqa: F401
    except Exception:  # a broken CUDA install raises more than ImportError
        return False
    return True


def engine_importable(engine: str) -> bool:
    """Whether the Python package of `engine` ("onnxruntime", "openvino", "tensorrt") imports here."""
    if engine == "tensorrt":
        return _tensorrt_importable()
    try:
        importlib.import_module(engine)
    except Exception:  # noqa: BLE001 - a broken install is as good as none
        return False
    return True


@dataclass(frozen=True)
class Choice:
    """What `load` runs: a BACKENDS key, the ONNX file, the candidate's name and why (fallback note)."""

    backend: str
    file: str = ONNX_FILE
    candidate: str | None = None
    fallback: str | None = None  # the one warning line when the artifact's engine is not installed
    options: tuple[tuple[str, Any], ...] = ()  # the candidate's engine settings, e.g. a precision hint


def engine_of(backend: str) -> str:
    """ "onnxruntime-cpu" -> "onnxruntime"; "openvino" -> "openvino"."""
    return "onnxruntime" if backend.startswith("onnxruntime") else backend


def candidates(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The artifact's gated candidates ({name, file, engine, ...}); [] for artifacts from before tuning."""
    cands = manifest.get("candidates")
    return [c for c in cands if isinstance(c, dict) and "name" in c] if isinstance(cands, list) else []


def tuned_ms(manifest: dict[str, Any]) -> dict[str, float]:
    """Candidate name -> median ms measured by `edge-vsd tune` (empty when never tuned)."""
    results = (manifest.get("tuning") or {}).get("results") or {}
    return {n: r["median_ms"] for n, r in results.items() if isinstance(r, dict) and r.get("median_ms")}


def _fastest_for(manifest: dict[str, Any], engine: str) -> dict[str, Any] | None:
    """The candidate of `engine` that tuned fastest; else the first one of that engine; None if none."""
    mine = [c for c in candidates(manifest) if c.get("engine") == engine and c.get("choosable", True)]
    ms = tuned_ms(manifest)
    timed = [c for c in mine if c["name"] in ms]
    if timed:
        return min(timed, key=lambda c: ms[c["name"]])
    return mine[0] if mine else None


def _choice_for(manifest: dict[str, Any], backend: str) -> Choice:
    cand = _fastest_for(manifest, engine_of(backend))
    return Choice(backend, cand["file"], cand["name"], options=_options(cand)) if cand else Choice(backend)


def _options(cand: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    opts = cand.get("options")
    return tuple(sorted(opts.items())) if isinstance(opts, dict) else ()


def _fallback_note(manifest: dict[str, Any], engine: str, chosen: str | None, fb: Choice) -> str:
    ms = tuned_ms(manifest)
    if chosen in ms and fb.candidate in ms:
        ratio = ms[fb.candidate] / ms[chosen]
        slow = (
            f"{ratio:.2f}x {'slower' if ratio >= 1 else 'the time'} as measured at tuning "
            f"({fb.candidate} {ms[fb.candidate]:.2f} ms vs {chosen} {ms[chosen]:.2f} ms)"
        )
    else:
        slow = "slowdown not measured" + (" (run `edge-vsd tune`)" if manifest.get("target") == "cpu" else "")
    return (
        f"{engine} is not installed: running in ONNX Runtime instead, {slow} "
        f"(pip install {PIP_PACKAGES.get(engine, engine)})"
    )


def resolve(manifest: dict[str, Any], backend: str | None = None, candidate: str | None = None) -> Choice:
    """Which engine and graph run: a named candidate; else for None/"auto" TensorRT where the artifact has an
    engine and TensorRT imports, else the tuned choice, else the manifest's backend; an explicit backend
    gets its fastest candidate. A missing engine falls back to ONNX Runtime with a `fallback` note."""
    if candidate is not None:
        found = [c for c in candidates(manifest) if c["name"] == candidate]
        if not found:
            names = ", ".join(c["name"] for c in candidates(manifest)) or "none"
            raise RuntimeInputError(f"no candidate {candidate!r} in this artifact (candidates: {names})")
        name = found[0]["engine"] if backend in (None, "auto") else backend
        if engine_of(name) != found[0]["engine"]:
            raise RuntimeInputError(f"candidate {candidate!r} runs on {found[0]['engine']}, not {name}")
        return Choice(name, found[0]["file"], candidate, options=_options(found[0]))
    if backend not in (None, "auto"):
        return _choice_for(manifest, backend)
    if ENGINE_FILE in manifest["files"] and _tensorrt_importable():
        return Choice("tensorrt", ENGINE_FILE)
    chosen = (manifest.get("tuning") or {}).get("chosen")
    by_name = {c["name"]: c for c in candidates(manifest)}
    if chosen in by_name:
        c = by_name[chosen]
        engine, want = c["engine"], Choice(c["engine"], c["file"], chosen, options=_options(c))
    else:
        engine = manifest.get("backend") or "onnxruntime"
        engine = engine if engine in BACKENDS else "onnxruntime"
        want = _choice_for(manifest, engine) if engine != "tensorrt" else Choice("tensorrt", ENGINE_FILE)
    if engine == "onnxruntime" or engine_importable(engine):
        return want
    fb = _choice_for(manifest, "onnxruntime")
    return Choice(fb.backend, fb.file, fb.candidate, _fallback_note(manifest, engine, want.candidate, fb))


def auto_backend(manifest: dict[str, Any]) -> str:
    """The BACKENDS key `load(..., backend="auto")` runs for this manifest on this machine."""
    return resolve(manifest).backend


_warned: set[str] = set()


def warn_once(key: str, message: str) -> None:
    """Log `message` as one warning line, once per process and key."""
    if key not in _warned:
        _warned.add(key)
        log.warning("edge-vsd: %s", message)


def create_backend(
    artifact_dir: str | Path,
    manifest: dict[str, Any],
    backend: str | None = None,
    threads: int | None = None,
    candidate: str | None = None,
    **options: Any,
) -> Backend:
    """Instantiate the requested (or automatically chosen, see `resolve`) backend for a verified artifact;
    `options` are engine-specific keywords (e.g. `spinning=False` for ONNX Runtime)."""
    if backend not in (None, "auto") and backend not in BACKENDS:
        raise RuntimeInputError(f"unknown backend {backend!r} (choose from {', '.join(BACKEND_CHOICES)})")
    choice = resolve(manifest, backend, candidate)
    if choice.fallback:
        warn_once(f"{Path(artifact_dir).resolve()}:fallback", f"{Path(artifact_dir)}: {choice.fallback}")
    name = choice.backend
    if name not in BACKENDS:
        raise RuntimeInputError(f"unknown backend {name!r} (choose from {', '.join(BACKEND_CHOICES)})")
    needed = ENGINE_FILE if name == "tensorrt" else choice.file
    if needed not in manifest["files"]:
        raise RuntimeInputError(
            f"{Path(artifact_dir)}: backend {name!r} needs {needed}, not in this artifact"
        )
    module_name, class_name, kwargs = BACKENDS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        package = PIP_PACKAGES.get(engine_of(name), name)
        raise RuntimeInputError(f"backend {name!r} is not installed ({exc}; pip install {package})") from None
    cls = getattr(module, class_name)
    accepted = inspect.signature(cls).parameters
    unknown = sorted(set(options) - set(accepted) | set(options) & {"device", "onnx_file"})
    if unknown:
        raise RuntimeInputError(f"backend {name!r} has no option {', '.join(unknown)}")
    if "onnx_file" in accepted:
        kwargs = {**kwargs, "onnx_file": choice.file}
    kwargs = {**kwargs, **{k: v for k, v in choice.options if k in accepted and k not in options}}
    engine = cls(Path(artifact_dir), manifest, threads=threads, **kwargs, **options)
    engine.candidate = choice.candidate
    if choice.candidate and candidates(manifest):
        engine.name = f"{engine.name}/{choice.candidate}"
    return engine

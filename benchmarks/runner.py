"""Benchmark a list of artifacts against one reference: every stage guarded, so one broken artifact never
stops the others; the result is the results.json dictionary."""

from __future__ import annotations

import datetime as _dt
import importlib.util
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from edge_vsd.benchmarks import SCHEMA, SCHEMA_VERSION, accuracy, fingerprint, latency, verdicts
from edge_vsd.runtimes.errors import RuntimeInputError

MANIFEST = "manifest.json"
MODEL_KEYS = ("arch", "patch_size", "embed_dim", "image_size")  # same values: siblings of one model


@dataclass
class Settings:
    """Everything a run depends on, recorded in results.json."""

    warmup: int = 10  # untimed calls at the start of every timing block
    iters: int = 48  # timed calls per artifact, split over `rounds` blocks
    rounds: int = 3
    threads: int | None = None
    batch: int = 1
    backend: str | None = None
    frames: int = 32
    corr_pairs: int = 16
    homography_strength: float = 0.12
    knn_k: int = 5
    seg_epochs: int = 30
    min_cls_cosine: float = 0.99
    min_patch_cosine: float = 0.99
    seed: int = 0


@dataclass
class Reference:
    """Where reference features come from: an input artifact (index), another folder, or a checkpoint."""

    kind: str  # "artifact" | "checkpoint" | "none"
    path: Path | None = None
    index: int | None = None
    encoder: Any = None  # the loaded checkpoint (a TorchReference), checked before any work


def check_artifact_dir(path: str | Path) -> Path:
    """A folder with manifest.json; anything else is an input error, raised before any work."""
    p = Path(path)
    if not p.exists():
        raise RuntimeInputError(f"{p}: no such artifact folder")
    if not p.is_dir() or not (p / MANIFEST).is_file():
        raise RuntimeInputError(f"{p}: not an artifact folder (no {MANIFEST})")
    return p


def _manifest_loose(path: Path) -> dict[str, Any]:
    # Read without validation: a broken manifest must still show up as a failed row with what we know.
    try:
        data = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}


def unique_names(paths: list[Path]) -> list[str]:
    """Folder names, prefixed with their parent where two artifacts share a name."""
    names = [p.name for p in paths]
    return [f"{p.parent.name}/{p.name}" if names.count(p.name) > 1 else p.name for p in paths]


def resolve_reference(arg: str | None, artifacts: list[Path]) -> Reference:
    """--reference (artifact folder or checkpoint file), else the first fp32 input artifact, else none."""
    if arg is None:
        for i, p in enumerate(artifacts):
            if _manifest_loose(p).get("precision") == "fp32":
                return Reference("artifact", p, i)
        return Reference("none")
    ref = Path(arg)
    if ref.is_dir():
        ref = check_artifact_dir(ref)
        same = [i for i, p in enumerate(artifacts) if p.resolve() == ref.resolve()]
        return Reference("artifact", ref, same[0] if same else None)
    from edge_vsd.benchmarks.torch_reference import CHECKPOINT_SUFFIXES

    if not ref.is_file():
        raise RuntimeInputError(f"{ref}: --reference is neither an artifact folder nor a checkpoint file")
    if ref.suffix.lower() not in CHECKPOINT_SUFFIXES:
        raise RuntimeInputError(
            f"{ref}: --reference file must be a checkpoint ({', '.join(CHECKPOINT_SUFFIXES)})"
        )
    if importlib.util.find_spec("torch") is None:
        raise RuntimeInputError(f"{ref}: a checkpoint reference needs PyTorch, which is not installed")
    from edge_vsd.benchmarks.torch_reference import TorchReference

    # Loaded now, so a file that is not a checkpoint is refused in one line before any timing.
    return Reference("checkpoint", ref, encoder=TorchReference(ref))


def _size_mb(path: Path, manifest: dict[str, Any]) -> float | None:
    files = manifest.get("files") if isinstance(manifest.get("files"), dict) else None
    names = list(files) if files else [p.name for p in path.iterdir() if p.is_file()]
    total = sum((path / n).stat().st_size for n in names if (path / n).is_file())
    return round(total / 2**20, 3)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:240]


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _gate(acc: dict[str, Any], s: Settings) -> str | None:
    problems = []
    if acc.get("cls_cosine") is not None and acc["cls_cosine"] < s.min_cls_cosine:
        problems.append(f"CLS cos {acc['cls_cosine']:.4f} < {s.min_cls_cosine}")
    if acc.get("patch_cosine") is not None and acc["patch_cosine"] < s.min_patch_cosine:
        problems.append(f"patch cos {acc['patch_cosine']:.4f} < {s.min_patch_cosine}")
    return "; ".join(problems) or None


def bench_one(
    path: Path,
    name: str,
    s: Settings,
    frames: np.ndarray,
    ref: tuple[np.ndarray, np.ndarray] | None,
    seg_data: Any = None,
) -> tuple[dict[str, Any], Any]:
    """Benchmark one artifact. Returns (row, (cls, patches) or None); never raises for a broken artifact."""
    from edge_vsd import runtimes

    manifest = _manifest_loose(path)
    row: dict[str, Any] = {
        "name": name,
        "folder": path.name,  # the name only: reports must not carry this machine's paths
        "backend": None,
        "precision": manifest.get("precision"),
        "target": manifest.get("target"),
        "size_mb": _size_mb(path, manifest),
        "status": "ok",
        "reason": None,
        "load_s": None,
        "latency": None,
        "model": {k: (manifest.get("model") or {}).get(k) for k in MODEL_KEYS},
        "notes": [],
        "gpu": None,
        "memory": None,
        "accuracy": None,
        "correspondence": None,
        "seg": None,
    }
    feats = None
    stage = "load"
    enc = None
    try:
        latency.reset_peak_rss()
        t0 = time.perf_counter()
        enc = runtimes.load(path, backend=s.backend, threads=s.threads)
        row["load_s"] = round(time.perf_counter() - t0, 4)
        row["backend"] = enc.backend_name
        row["precision"] = enc.manifest.get("precision", row["precision"])
        _log(f"  {name}: {enc.backend_name}, loaded in {row['load_s']:.2f} s")
        if enc.backend_name == "tensorrt":
            stage = "gpu timing"
            from edge_vsd.benchmarks.trt_timing import gpu_times

            h, w = enc.image_size
            row["gpu"] = gpu_times(path / "encoder.engine", (s.batch, 3, h, w), s.warmup, s.iters)
        stage = "features"
        cls, patches = accuracy.encode_all(enc, frames, max(s.batch, 8))
        feats = (cls, patches)
        acc: dict[str, Any] = {}
        if ref is not None:
            stage = "fidelity"
            acc.update(accuracy.fidelity(cls, patches, *ref))
            acc["knn_agreement"] = accuracy.knn_agreement(cls, ref[0], s.knn_k)
        stage = "correspondence"
        corr = accuracy.correspondence(
            enc, frames, enc.image_size, s.corr_pairs, s.homography_strength, s.seed, max(s.batch, 8)
        )
        acc["corr_acc"] = corr["corr_acc"]
        row["correspondence"] = corr
        row["accuracy"] = acc
        if seg_data is not None:
            stage = "seg probe"
            from edge_vsd.benchmarks.seg_probe import seg_probe

            row["seg"] = seg_probe(enc, seg_data, enc.image_size, epochs=s.seg_epochs, seed=s.seed)
        row["memory"] = {"peak_rss_mb": round(latency.peak_rss_mb(), 1)}
        reason = _gate(acc, s)
        if reason:
            row["status"], row["reason"] = "fails-gate", reason
    except Exception as exc:  # noqa: BLE001 - any failure of one artifact is reported in its row
        # The row already names the artifact: drop its folder from the message to keep the table readable.
        message = _short(exc).replace(f"{path}/", "").replace(str(path), name)
        row["status"], row["reason"] = "failed", f"{stage}: {message}"
        feats = None
    finally:
        if enc is not None:
            try:
                enc.close()
            except Exception:  # noqa: BLE001
                pass
    _log(f"  {name}: {row['status']}" + (f" ({row['reason']})" if row["reason"] else ""))
    return row, feats


def _image_size(path: Path) -> tuple[int, int] | None:
    size: Any = (_manifest_loose(path).get("model") or {}).get("image_size")
    try:
        return int(size[0]), int(size[1])
    except (TypeError, ValueError, IndexError, KeyError):
        return None


class ReferenceFeatures:
    """Features of a reference that is not one of the benchmarked artifacts. A checkpoint runs at each
    artifact's own input size (computed once per size), so every artifact is compared at its resolution;
    an artifact folder runs at its exported size."""

    def __init__(self, ref: Reference, s: Settings, frames: np.ndarray) -> None:
        self.ref, self.s, self.frames = ref, s, frames
        assert ref.path is not None  # only kind "none" has no path, and it has no features
        self.path: Path = ref.path
        self.encoder: Any = ref.encoder
        self.default_size = tuple(ref.encoder.image_size) if ref.encoder is not None else None
        self.cache: dict[tuple[int, int] | None, tuple[np.ndarray, np.ndarray] | None] = {}
        self.errors: list[str] = []
        self.corr_acc: float | None = None

    def _open(self) -> Any:
        if self.encoder is None:  # an artifact folder (a checkpoint was loaded by resolve_reference)
            from edge_vsd import runtimes

            self.encoder = runtimes.load(self.path, backend=self.s.backend, threads=self.s.threads)
        return self.encoder

    def at(self, size: tuple[int, int] | None) -> tuple[np.ndarray, np.ndarray] | None:
        """(cls, patches) for an artifact of input `size`; None (error recorded) when the reference fails."""
        if self.ref.kind != "checkpoint":
            size = None  # an artifact folder only runs at its own size
        elif size is None:
            size = self.default_size  # an artifact whose manifest does not say: the checkpoint's own size
        if size in self.cache:
            return self.cache[size]
        feats = None
        where = f" at {size[0]}x{size[1]}" if size else ""
        try:
            enc = self._open()
            if size is not None:
                enc.image_size = size
            feats = accuracy.encode_all(enc, self.frames, 8)
            if self.corr_acc is None:
                s = self.s
                corr = accuracy.correspondence(
                    enc, self.frames, tuple(enc.image_size), s.corr_pairs, s.homography_strength, s.seed
                )
                self.corr_acc = corr["corr_acc"]
            _log(f"[reference] {self.path.name}{where}: features of {len(self.frames)} frames")
        except Exception as exc:  # noqa: BLE001 - artifacts are still benchmarked, without fidelity numbers
            self.errors.append(_short(exc) + where)
            _log(f"[reference] {self.path}{where}: failed ({_short(exc)}); no fidelity numbers")
        self.cache[size] = feats
        return feats

    def close(self) -> None:
        """Release an artifact reference's engine."""
        close = getattr(self.encoder, "close", None)
        if close is not None:
            close()

    def sizes(self) -> list[list[int]]:
        """Input sizes the reference features were computed at."""
        return [list(k) for k, v in self.cache.items() if k is not None and v is not None]


def run_benchmark(
    artifacts: list[Path],
    s: Settings,
    frames: np.ndarray,
    data_info: dict[str, Any],
    reference: Reference,
    seg_data: Any = None,
) -> dict[str, Any]:
    """Benchmark every artifact (the reference artifact first, so the others can be compared with it)."""
    names = unique_names(artifacts)
    rows: list[dict[str, Any] | None] = [None] * len(artifacts)
    ref_feats = None
    external = None
    checked = False  # some artifact's fidelity was measured against the reference
    ref_info: dict[str, Any] = {
        "kind": reference.kind,
        "file": reference.path.name if reference.path else None,
        "name": None,
        "error": None,
        "corr_acc": None,
    }
    ref_size = None
    if reference.kind == "artifact" and reference.index is not None:
        i = reference.index
        _log(f"[reference] {names[i]}")
        row, ref_feats = bench_one(artifacts[i], names[i], s, frames, None, seg_data)
        rows[i] = row
        ref_info["name"] = names[i]
        ref_size = _image_size(artifacts[i])
        if ref_feats is not None:
            row["accuracy"].update(accuracy.fidelity(*ref_feats, *ref_feats))
            row["accuracy"]["knn_agreement"] = 1.0
            ref_info["corr_acc"] = row["accuracy"]["corr_acc"]
            checked = True
        else:
            ref_info["error"] = row["reason"]
    elif reference.kind != "none":
        assert reference.path is not None  # every other kind has one
        ref_info["name"] = reference.path.name
        external = ReferenceFeatures(reference, s, frames)
        if reference.kind == "artifact":
            ref_size = _image_size(reference.path)
    for i, path in enumerate(artifacts):
        if rows[i] is None:
            _log(f"[{i + 1}/{len(artifacts)}] {names[i]}")
            size = _image_size(path)
            feats = external.at(size) if external is not None else ref_feats
            row, _ = bench_one(path, names[i], s, frames, feats, seg_data)
            rows[i] = row
            if row["accuracy"] is not None and feats is None:
                row["accuracy"].update(cls_cosine=None, patch_cosine=None, knn_agreement=None)
            checked = checked or feats is not None
            if feats is not None and ref_size and size and ref_size != size:
                row["notes"].append(
                    f"reference {ref_info['name']} runs at {ref_size[0]}x{ref_size[1]}, this artifact at "
                    f"{size[0]}x{size[1]}: compared across resolutions"
                )
    if external is not None:
        external.close()
        ref_info["corr_acc"] = external.corr_acc
        ref_info["error"] = "; ".join(external.errors) or None
        if reference.kind == "checkpoint":
            ref_info["input_sizes"] = external.sizes()
    benched = [r for r in rows if r is not None]  # every artifact's row, by now
    time_artifacts(artifacts, benched, s, frames)
    ship = verdicts.apply(benched, has_reference=checked)
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "fingerprint": fingerprint.collect(s.threads),
        "settings": {
            **asdict(s),
            "data": data_info,
            "gate": {"min_cls_cosine": s.min_cls_cosine, "min_patch_cosine": s.min_patch_cosine},
        },
        "reference": ref_info,
        "ship": ship,
        "artifacts": benched,
    }


def time_artifacts(
    artifacts: list[Path], rows: list[dict[str, Any]], s: Settings, frames: np.ndarray
) -> None:
    """Latency of every artifact that loaded, with the fair protocol: all loaded at once, each timed in its
    own block after warm-up, worker pools parked between blocks, rounds rotate the order, median of rounds."""
    from edge_vsd.runtimes.timing import Protocol, time_candidates

    from edge_vsd import runtimes

    rounds = max(1, min(s.rounds, s.iters))
    protocol = Protocol(warmup=s.warmup, iters=max(1, s.iters // rounds), rounds=rounds)
    idx = np.arange(s.batch) % len(frames)
    x = np.ascontiguousarray(frames[idx])
    encoders: dict[int, Any] = {}
    try:
        for i, (path, row) in enumerate(zip(artifacts, rows, strict=True)):
            if row["status"] == "failed":
                continue
            try:
                encoders[i] = runtimes.load(path, backend=s.backend, threads=s.threads)
            except Exception as exc:  # noqa: BLE001 - reported in the row like any other stage
                row["status"], row["reason"] = "failed", f"latency: {_short(exc)}"
        _log(
            f"[latency] {len(encoders)} artifacts, {protocol.rounds} rounds of {protocol.iters} calls "
            f"after {protocol.warmup} warm-up, each in its own block"
        )
        runners = {str(i): (lambda enc=enc: enc(x)) for i, enc in encoders.items()}
        for key, t in time_candidates(runners, protocol).items():
            summary = latency.summarize(t.times_ms, s.batch)
            # The protocol's number: median of the rounds' medians (robust to one disturbed block).
            summary["p50_ms"] = t.median_ms
            summary["fps"] = s.batch * 1000.0 / t.median_ms if t.median_ms > 0 else None
            rows[int(key)]["latency"] = {
                **summary,
                "warmup": s.warmup,
                "round_ms": [round(v, 4) for v in t.round_ms],
                "spread": round(t.spread, 4),
                "protocol": protocol.record(),
                "times_ms": [round(v, 4) for v in t.times_ms],
            }
    finally:
        for enc in encoders.values():
            enc.close()

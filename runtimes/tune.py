"""`edge-vsd tune ARTIFACT`: time a cpu artifact's candidate graphs on this machine, record the fastest.

Torch-free. Each candidate (a gated graph on one engine) is loaded exactly as `edge_vsd.runtimes.load` loads
it and timed on a 640x480 BGR frame, preprocessing included, with the fair protocol of
`edge_vsd.runtimes.timing`. The choice, every number and this CPU's fingerprint go into manifest.json
(rewritten atomically; the files it lists are untouched, so every sha256 stays valid)."""

from __future__ import annotations

import argparse
import datetime as _dt
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from edge_vsd.runtimes.backend import (
    ONNX_FILE,
    PIP_PACKAGES,
    candidates,
    create_backend,
    engine_importable,
    graph_files,
)
from edge_vsd.runtimes.cpuinfo import cpu_fingerprint
from edge_vsd.runtimes.encoder import Encoder
from edge_vsd.runtimes.errors import RuntimeInputError
from edge_vsd.runtimes.manifest import read_manifest, verify_files, write_manifest
from edge_vsd.runtimes.timing import Protocol, Timing, clearly_faster, time_candidates

ENGINES = ("onnxruntime", "openvino")
FRAME_SHAPE = (480, 640, 3)  # what a robot's camera gives: timing includes resizing it


def camera_frame(seed: int = 0) -> np.ndarray:
    """A deterministic 640x480 uint8 BGR frame with structure (gradients + noise), like a camera's."""
    rng = np.random.default_rng(seed)
    h, w, _ = FRAME_SHAPE
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) * 255 // (w + h)], axis=-1)
    noise = rng.integers(0, 40, FRAME_SHAPE)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def legacy_candidates(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """Candidates of an artifact exported before tuning: its encoder.onnx on each CPU engine where that is
    safe without a new fidelity gate (fp32: same graph, same math); fp16/INT8 keep their own engine."""
    precision = manifest.get("precision")
    engines = ENGINES if precision == "fp32" else (manifest.get("backend") or "onnxruntime",)
    return [
        {"name": f"{precision}_{e}", "file": ONNX_FILE, "engine": e, "precision": precision, "gated": False}
        for e in engines
        if e in ENGINES
    ]


def tune(
    artifact_dir: str | Path,
    threads: int | None = None,
    protocol: Protocol | None = None,
    frame: np.ndarray | None = None,
    write: bool = True,
    log: Callable[[str], None] | None = None,
    keep_chosen: bool = False,
) -> dict[str, Any]:
    """Time every candidate through the runtime's own load path; record and return the tuning section.
    `keep_chosen`: then drop every other candidate's graph files (encoder.onnx, the fallback, stays)."""
    artifact_dir = Path(artifact_dir)
    protocol = protocol or Protocol()
    manifest = read_manifest(artifact_dir)
    verify_files(artifact_dir, manifest)
    if manifest.get("target") != "cpu":
        raise RuntimeInputError(
            f"{artifact_dir}: target {manifest.get('target')!r}; tune is for cpu artifacts "
            "(a jetson artifact runs its TensorRT engine: see register-engine)"
        )
    cands = candidates(manifest) or legacy_candidates(manifest)
    frame = camera_frame() if frame is None else frame
    encoders: dict[str, Encoder] = {}
    skipped: dict[str, str] = {}
    try:
        for c in cands:
            if not engine_importable(c["engine"]):
                skipped[c["name"]] = f"{c['engine']} not installed (pip install {PIP_PACKAGES[c['engine']]})"
                continue
            if _hint_is_a_no_op(c):
                skipped[c["name"]] = "bf16 hint: this CPU has no bf16, so OpenVINO would run its f32 twin"
                continue
            try:
                probe = dict(manifest, candidates=cands)
                backend = create_backend(artifact_dir, probe, None, threads, c["name"])
                encoders[c["name"]] = Encoder(artifact_dir, manifest, backend)
                encoders[c["name"]](frame)  # first call: shapes checked, lazy init done before timing
            except RuntimeInputError as exc:
                skipped[c["name"]] = str(exc)
        if not encoders:
            why = "; ".join(f"{k}: {v}" for k, v in skipped.items())
            raise RuntimeInputError(f"{artifact_dir}: no candidate runs here ({why})")
        runners = {name: (lambda enc=enc: enc(frame)) for name, enc in encoders.items()}
        progress = (lambda n, r, ms: log(f"  round {r + 1}: {n:<28} {ms:8.2f} ms")) if log else None
        timings = time_candidates(runners, protocol, progress)
    finally:
        for enc in encoders.values():
            enc.close()
    by_name = {c["name"]: c for c in cands}
    choosable = [n for n in timings if by_name[n].get("choosable", True)]
    if not choosable:
        raise RuntimeInputError(f"{artifact_dir}: only reference candidates run here; nothing to choose")
    chosen = min(choosable, key=lambda n: timings[n].median_ms)
    record: dict[str, Any] = {
        "chosen": chosen,
        "engine": by_name[chosen]["engine"],
        "file": by_name[chosen]["file"],
        "results": {
            n: {"engine": by_name[n]["engine"], "precision": by_name[n].get("precision"), **t.record()}
            for n, t in timings.items()
        },
        "skipped": skipped,
        "cpu": cpu_fingerprint(),
        "threads": threads,
        "protocol": protocol.record(),
        "input": f"{FRAME_SHAPE[1]}x{FRAME_SHAPE[0]} uint8 BGR frame, preprocessing included",
        "versions": _versions(),
        "tuned_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    refs = [n for n in timings if not by_name[n].get("choosable", True)]
    if refs:
        ref = min(refs, key=lambda n: timings[n].median_ms)
        note = reference_note(chosen, timings[chosen], ref, timings[ref])
        if note:
            record["note"] = note
    if write:
        manifest["candidates"] = cands
        manifest["tuning"] = record
        manifest["backend"] = record["engine"]
        drop = prune(manifest, chosen) if keep_chosen else []
        write_manifest(artifact_dir, manifest)
        for name in drop:  # after the manifest stops listing them: a kill here leaves extra files, not gaps
            (artifact_dir / name).unlink(missing_ok=True)
    return record


def reference_note(chosen: str, mine: Timing, ref: str, theirs: Timing) -> str | None:
    """What to say when an fp32 reference timed faster than the chosen INT8 candidate: ship fp32 only when
    every round of the reference beat every round of the choice; when their rounds overlap, that it is
    too close to call here (an idle 2-core AMD showed 13-61% between rounds)."""
    if theirs.median_ms >= mine.median_ms:
        return None
    times = (
        f"{chosen} ({mine.median_ms:.2f} ms) is slower than the {ref} reference ({theirs.median_ms:.2f} ms)"
    )
    if clearly_faster(theirs.round_ms, mine.round_ms):
        return f"{times} on this CPU: ship the fp32 artifact here"
    return (
        f"{times}, but their rounds overlap: too close to call here; re-run tune or bench on the idle target"
    )


def _hint_is_a_no_op(cand: dict[str, Any]) -> bool:
    """True for an OpenVINO bf16-hint candidate on a CPU whose OpenVINO plugin lists no BF16 capability."""
    opts = cand.get("options")
    if cand.get("engine") != "openvino" or not isinstance(opts, dict) or opts.get("precision_hint") != "bf16":
        return False
    from edge_vsd.runtimes.openvino import cpu_has_bf16

    return not cpu_has_bf16()


def prune(manifest: dict[str, Any], chosen: str) -> list[str]:
    """Keep the chosen candidate's graph and encoder.onnx (what ONNX Runtime falls back to) with the
    candidates they serve; drop the other graph files from `manifest`. Returns the file names dropped."""
    by_name = {c["name"]: c for c in manifest["candidates"]}
    keep = {ONNX_FILE, *graph_files(by_name[chosen]["file"])}
    listed = {f for c in manifest["candidates"] for f in graph_files(c["file"])}  # a file may serve several
    drop = sorted(f for f in listed - keep if f in manifest["files"])
    manifest["candidates"] = [c for c in manifest["candidates"] if set(graph_files(c["file"])) <= keep]
    for name in drop:
        del manifest["files"][name]
    manifest["tuning"]["pruned"] = drop
    return drop


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in ENGINES:
        try:
            out[name] = __import__(name).__version__
        except Exception:  # noqa: BLE001 - absent engines have no version
            out[name] = None
    return out


def summary_lines(record: dict[str, Any]) -> list[str]:
    """The tuning table as text: candidate, engine, median ms, round spread, and the choice."""
    lines = [f"{'candidate':<28} {'engine':<12} {'median ms':>10} {'spread':>7}"]
    for name, r in sorted(record["results"].items(), key=lambda kv: kv[1]["median_ms"]):
        mark = "  <- chosen" if name == record["chosen"] else ""
        lines.append(f"{name:<28} {r['engine']:<12} {r['median_ms']:>10.2f} {r['spread']:>6.1%}{mark}")
    lines += [f"{name:<28} skipped: {why}" for name, why in record["skipped"].items()]
    if record.get("note"):
        lines.append(f"note: {record['note']}")
    return lines


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("artifact", help="cpu artifact folder (manifest.json + candidate ONNX graphs)")
    p.add_argument("--threads", type=int, help="CPU threads per engine, as you will run it (default: theirs)")
    p.add_argument(
        "--rounds", type=int, default=Protocol.rounds, help="blocks per candidate (default: %(default)s)"
    )
    p.add_argument(
        "--iters", type=int, default=Protocol.iters, help="timed calls per block (default: %(default)s)"
    )
    p.add_argument(
        "--warmup", type=int, default=Protocol.warmup, help="untimed calls per block (default: %(default)s)"
    )
    p.add_argument("--dry-run", action="store_true", help="print the timings, leave manifest.json as it is")
    p.add_argument(
        "--keep",
        choices=["all", "chosen"],
        default="all",
        help="chosen: delete the other candidates' graphs after choosing (smaller artifact for the device "
        "it was tuned on; encoder.onnx stays as the ONNX Runtime fallback; no re-tuning among them later)",
    )


def run(args: argparse.Namespace) -> int:
    for flag, low in (("threads", 1), ("rounds", 1), ("iters", 1), ("warmup", 0)):
        value = getattr(args, flag)
        if value is not None and value < low:
            raise RuntimeInputError(f"--{flag} must be >= {low}, got {value}")
    protocol = Protocol(warmup=args.warmup, iters=args.iters, rounds=args.rounds)
    record = tune(
        args.artifact,
        args.threads,
        protocol,
        write=not args.dry_run,
        log=lambda line: print(line, file=sys.stderr, flush=True),
        keep_chosen=args.keep == "chosen",
    )
    print("\n".join(summary_lines(record)))
    where = "not written (--dry-run)" if args.dry_run else "recorded in manifest.json"
    if record.get("pruned"):
        where += f"; removed {len(record['pruned'])} other graph file(s): {', '.join(record['pruned'])}"
    print(
        f"{args.artifact}: {record['chosen']} on {record['engine']} for {record['cpu']['model']} "
        f"({record['cpu']['int8_path']}); {where}",
        file=sys.stderr,
    )
    return 0

"""The export pipeline: one function, one stage per step (see `export_artifact`)."""

from __future__ import annotations

import dataclasses
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from edge_vsd.export import calibration, cpu_int8, fp16, gate, parity, quantize, tensorrt_build, trt_lint
from edge_vsd.export.artifact import Staging
from edge_vsd.export.manifest import build_manifest
from edge_vsd.export.onnx_export import DEFAULT_OPSET, export_onnx
from edge_vsd.export.simplify import simplify_onnx

from edge_vsd.errors import InputError

TARGETS = ("cpu", "jetson")
ONNX_FILE = "encoder.onnx"
ENGINE_FILE = "encoder.engine"
BUILD_TXT = "BUILD_ON_DEVICE.txt"
# fp32 ONNX vs PyTorch: same math in a different kernel order, so only float rounding may differ.
FP32_MIN_COSINE = 0.9999
FP32_MAX_ABS_ERROR = 1e-2


@dataclass
class ExportConfig:
    """Every export setting with its default; the CLI overrides fields, the artifact records them all."""

    checkpoint: str
    target: str = "cpu"
    int8: bool = False
    fp16: bool = False
    calib: list[str] = field(default_factory=list)
    calib_topic: str | None = None  # ROS 2 bags in --calib: the image topic (None: each bag's only one)
    calib_frames: int = calibration.DEFAULT_CALIB_FRAMES
    heldout_frames: int = calibration.DEFAULT_HELDOUT_FRAMES
    img_size: tuple[int, int] | None = None  # None: the size the checkpoint was trained at
    batch: int = 1
    dynamic_batch: bool = False
    out: str | None = None  # None: artifacts/<target>-<precision>
    force: bool = False
    gate: float = 0.99
    opset: int = DEFAULT_OPSET
    smooth_quant_alpha: float | None = None  # None: the target scheme's default
    ladder: bool = True  # retry with sensitive layers in float when INT8 misses the gate
    build_engine: bool = True  # build encoder.engine where TensorRT and a GPU are present
    latency_runs: int = 10  # timed runs per CPU INT8 candidate
    quiet: bool = False

    @property
    def precision(self) -> str:
        return "int8" if self.int8 else "fp16" if self.fp16 else "fp32"

    def resolved_out(self) -> Path:
        return Path(self.out) if self.out else Path("artifacts") / f"{self.target}-{self.precision}"


def export_artifact(cfg: ExportConfig) -> Path:
    """Checkpoint -> verified artifact folder; returns its path. Raises InputError (nothing written) for bad
    input or when a model misses its parity or fidelity gate."""
    _validate(cfg)
    log = _Stages(cfg.quiet)
    out = cfg.resolved_out()
    staging = Staging(out, cfg.force)  # fails now, before any work, if the output is taken or unwritable
    work = Path(tempfile.mkdtemp(prefix="edge-vsd-export-"))
    try:
        with log.stage("load checkpoint (teacher backbone; heads and predictor dropped)"):
            from edge_vsd.checkpoint import load_encoder

            backbone = load_encoder(cfg.checkpoint)
            size = _image_size(cfg, backbone)
            # the position grid resampled once, in the format's own mode, and exported as a constant:
            # no (antialiased) Resize in the graph, which TensorRT 10.3 on JetPack 6 would refuse
            backbone = backbone.at_size(size)
        with log.stage("frames (calibration + held-out)"):
            frames = _frames(cfg, size)
            calib_x = calibration.to_tensor(frames.calib)
            held_x = calibration.to_tensor(frames.heldout)
            for note in frames.notes:
                log.note(note)
        with log.stage(
            f"ONNX export (opset {cfg.opset}, {'dynamic' if cfg.dynamic_batch else cfg.batch} batch)"
        ):
            export_onnx(backbone, work / "raw.onnx", size, cfg.batch, cfg.dynamic_batch, cfg.opset)
        with log.stage("simplify (onnxsim)"):
            simplify_stats = simplify_onnx(work / "raw.onnx", work / "fp32.onnx")
            fp32_model = onnx.load(str(work / "fp32.onnx"))
        with log.stage("parity: ONNX Runtime fp32 vs PyTorch"):
            torch_ref = parity.torch_reference(backbone, held_x)
            fp32_out = parity.run_session(parity.ort_session(work / "fp32.onnx"), held_x)
            fp32_parity = parity.compare(torch_ref, fp32_out)
            _check_fp32(fp32_parity)
            log.note(gate.summary(fp32_parity))
        record: dict = {}
        backend = "onnxruntime"
        cpu_graphs: dict[str, Any] = {}  # extra candidate graphs of a cpu artifact (ONNX or OpenVINO IR)
        cpu_cands: list[dict] = []
        if cfg.int8 and cfg.target == "jetson":
            with log.stage("NNCF INT8 (symmetric Q/DQ for TensorRT) + fidelity gate"):
                final, record = _jetson_int8(cfg, fp32_model, calib_x, held_x, fp32_out, log)
            with log.stage("TensorRT lint"):
                findings = trt_lint.lint_model(final)
                record["lint"] = [str(f) for f in findings]
                if trt_lint.errors(findings):
                    raise InputError(f"INT8 graph breaks TensorRT rules: {findings[0]}; nothing written")
        elif cfg.int8:
            with log.stage("CPU INT8 candidates: build, gate (tune times them last)"):
                final, backend, record, cpu_graphs, cpu_cands = _cpu_int8(
                    cfg, fp32_model, calib_x, held_x, fp32_out, log
                )
        elif cfg.fp16:
            with log.stage("fp16 conversion (fp32 inputs/outputs kept) + fidelity gate"):
                final = fp16.convert_to_fp16(fp32_model)
                metrics = parity.compare(
                    fp32_out, parity.run_session(parity.ort_session(final.SerializeToString()), held_x)
                )
                gate.check(metrics, cfg.gate, "fp16 model")
                log.note(gate.summary(metrics))
                record = {"vs_fp32": metrics}
        else:
            final, record = fp32_model, {}
            if cfg.target == "cpu":
                cpu_cands = cpu_int8.fp32_candidates(ONNX_FILE, cpu_int8.FP32_NAMES, choosable=True)
        onnx.save(final, str(staging.dir / ONNX_FILE))
        for name, model in cpu_graphs.items():
            cpu_int8.save_graph(model, staging.dir / name)
        trt_info = None
        if cfg.target == "jetson":
            with log.stage(f"TensorRT: {BUILD_TXT}, engine where TensorRT and a GPU are present"):
                trt_info = _tensorrt_finish(cfg, staging.dir, size, log)
        with log.stage("manifest (sha256 of every file, parity, calibration, config, versions)"):
            manifest = build_manifest(
                cfg,
                backbone,
                size,
                staging.dir,
                backend=backend,
                frames=frames,
                calib_x=calib_x,
                fp32_parity=fp32_parity,
                record=record,
                trt_info=trt_info,
                simplify_stats=simplify_stats,
                seconds=log.seconds,
            )
            from edge_vsd.runtimes.manifest import write_manifest

            write_manifest(staging.dir, manifest)
        if cpu_cands:
            with log.stage("verify every candidate: load through edge_vsd.runtimes, compare to PyTorch"):
                _verify_cpu_candidates(
                    staging.dir, manifest, cpu_cands, frames, torch_ref, backbone, cfg, log
                )
            with log.stage("tune: time the candidates through edge_vsd.runtimes.load on this CPU"):
                _tune_cpu(staging.dir, cfg, log)
        else:
            with log.stage("verify: load through edge_vsd.runtimes (hashes, backend) and compare to PyTorch"):
                manifest["parity"]["runtime_vs_torch"] = _verify_runtime(
                    staging.dir, manifest, frames, torch_ref, backbone, cfg.gate, log
                )
                write_manifest(staging.dir, manifest)
        staging.commit()
    except BaseException:
        staging.abort()
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if cpu_cands:
        from edge_vsd.runtimes.manifest import read_manifest

        backend = read_manifest(out)["backend"]
    log.note(
        f"artifact written: {out} ({cfg.target}, {cfg.precision}, {backend}) "
        f"in {sum(log.seconds.values()):.1f} s"
    )
    return out


# -- stage helpers --------------------------------------------------------------------------------


def _validate(cfg: ExportConfig) -> None:
    for path, what in [(cfg.checkpoint, "checkpoint"), *((c, "--calib") for c in cfg.calib)]:
        if not Path(path).exists():
            raise InputError(f"{path}: no such file or folder ({what})")
    if cfg.heldout_frames < 1 or cfg.calib_frames < 1:
        raise InputError(
            f"--calib-frames {cfg.calib_frames} / --heldout-frames {cfg.heldout_frames}: must be >= 1"
        )
    if cfg.target not in TARGETS:
        raise InputError(f"unknown target {cfg.target!r} (choose from {', '.join(TARGETS)})")
    if cfg.int8 and cfg.fp16:
        raise InputError("--int8 and --fp16 are exclusive")
    if cfg.batch < 1:
        raise InputError(f"--batch {cfg.batch}: must be >= 1")
    if not 0.0 < cfg.gate <= 1.0:
        raise InputError(f"--gate {cfg.gate}: must be in (0, 1]")
    if cfg.opset < 17:
        raise InputError(f"opset {cfg.opset}: needs >= 17 (LayerNormalization)")
    if cfg.int8 and not cfg.dynamic_batch and cfg.batch > cfg.calib_frames:
        raise InputError(f"--batch {cfg.batch} is larger than --calib-frames {cfg.calib_frames}")
    if cfg.int8 and cfg.calib_frames < calibration.MIN_CALIB_FRAMES:
        raise InputError(f"--calib-frames {cfg.calib_frames}: need at least {calibration.MIN_CALIB_FRAMES}")


def _image_size(cfg: ExportConfig, backbone) -> tuple[int, int]:
    size = tuple(cfg.img_size) if cfg.img_size else tuple(backbone.cfg.img_size)
    patch = backbone.cfg.patch_size
    if len(size) != 2 or min(size) <= 0 or size[0] % patch or size[1] % patch:
        raise InputError(f"--img-size {size}: H and W must be positive multiples of the patch size {patch}")
    return int(size[0]), int(size[1])


def _frames(cfg: ExportConfig, size: tuple[int, int]) -> calibration.FrameSet:
    # fp32/fp16 exports only need held-out frames for parity; calibration frames matter for INT8.
    n_calib = cfg.calib_frames if cfg.int8 else calibration.MIN_CALIB_FRAMES
    if cfg.calib:
        return calibration.load_frames(
            [*cfg.calib], size, n_calib, cfg.heldout_frames, cfg.calib_topic
        )  # list[str | Path]
    return calibration.synthetic_frames(size, n_calib, cfg.heldout_frames)


def _check_fp32(metrics: dict) -> None:
    if (
        metrics["cls_cosine_min"] < FP32_MIN_COSINE
        or metrics["patch_cosine_min"] < FP32_MIN_COSINE
        or metrics["max_abs_error"] > FP32_MAX_ABS_ERROR
    ):
        raise InputError(f"fp32 ONNX disagrees with PyTorch: {gate.summary(metrics)}; nothing written")


def _scheme(cfg: ExportConfig, base: quantize.Scheme) -> quantize.Scheme:
    if cfg.smooth_quant_alpha is None:
        return base
    return dataclasses.replace(base, smooth_quant_alpha=cfg.smooth_quant_alpha)


def _ladder(cfg: ExportConfig) -> tuple[str, ...]:
    return quantize.LADDER if cfg.ladder else quantize.LADDER[:1]


def _attempts_record(attempts: list[quantize.Attempt]) -> list[dict]:
    return [{"ignored_scope": a.level, "float_nodes": len(a.ignored), **a.metrics} for a in attempts]


def _jetson_int8(cfg, fp32_model, calib_x, held_x, fp32_out, log) -> tuple[onnx.ModelProto, dict]:
    scheme = _scheme(cfg, quantize.JETSON)
    batch = 1 if cfg.dynamic_batch else cfg.batch
    model, attempts = quantize.quantize_gated(
        fp32_model, calib_x, held_x, fp32_out, scheme, cfg.gate, batch, _ladder(cfg)
    )
    for a in attempts:
        log.note(f"ignored scope {a.level!r}: {gate.summary(a.metrics)}")
    if model is None:
        where = "at every ignored-scope level" if len(attempts) > 1 else "(ignored-scope ladder off)"
        raise gate.GateFailed(
            f"INT8 misses the fidelity gate {cfg.gate} {where} "
            f"(best: {gate.summary(_best(attempts))}); nothing written"
        )
    return model, {
        "scheme": dataclasses.asdict(scheme),
        "vs_fp32": attempts[-1].metrics,
        "gate_simulates": "fp16 float layers" if scheme.fp16_simulation else "float32 float layers",
        "vs_fp32_float32_layers": attempts[-1].qdq_fp32,
        "ignored_scope": attempts[-1].level,
        "float_nodes": attempts[-1].ignored,
        "attempts": _attempts_record(attempts),
    }


def _best(attempts: list[quantize.Attempt]) -> dict:
    return max((a.metrics for a in attempts), key=lambda m: min(m["cls_cosine"], m["patch_cosine"]))


def _cpu_int8(cfg, fp32_model, calib_x, held_x, fp32_out, log):
    """Build the INT8 graphs, gate each against the fp32 ONNX output; returns the default graph
    (encoder.onnx), its engine, the record, the other graph files and the candidate list for tuning."""
    scheme = _scheme(cfg, quantize.CPU)
    batch = 1 if cfg.dynamic_batch else cfg.batch
    fp32 = cpu_int8.Candidate("fp32_reference", "onnxruntime", fp32_model)
    nncf_model, attempts = quantize.quantize_gated(
        fp32_model, calib_x, held_x, fp32_out, scheme, cfg.gate, batch, _ladder(cfg)
    )
    nncf_cand = cpu_int8.Candidate(
        scheme.name,
        "onnxruntime",
        nncf_model,
        notes={"ignored_scope": attempts[-1].level, "attempts": _attempts_record(attempts)},
    )
    if nncf_model is None:
        nncf_cand.error = "missed the gate at every ignored-scope level"
        nncf_cand.fidelity = _best(attempts)
    candidates = [
        nncf_cand,
        cpu_int8.Candidate("ort_dynamic_int8", "onnxruntime", cpu_int8.ort_dynamic_int8(fp32_model)),
    ]
    if nncf_model is not None and cpu_int8.openvino_available():
        candidates.append(cpu_int8.Candidate("openvino_nncf_qdq", "openvino", nncf_model))
        for name, ir_scheme in cpu_int8.ir_schemes(scheme).items():
            ir = cpu_int8.Candidate(name, "openvino")
            try:  # quantized on OpenVINO's own graph (no Q/DQ round trip through ONNX)
                ir.model = cpu_int8.openvino_ir_int8(fp32_model, calib_x, ir_scheme)
            except Exception as exc:  # noqa: BLE001 - a candidate that cannot be built is recorded, not fatal
                ir.error = _error_line(exc)
            candidates.append(ir)
    for cand in candidates:
        if cand.model is None:
            continue
        try:
            cpu_int8.score(cand, held_x, fp32_out, cfg.gate)
        except Exception as exc:  # noqa: BLE001 - a candidate that cannot run is recorded, not fatal
            cand.error = _error_line(exc)
        log.note(f"{cand.name:<18} {gate.summary(cand.fidelity) if cand.fidelity else cand.error}")
    record = {
        "isa": cpu_int8.cpu_isa(),
        "candidates": [c.record() for c in [fp32, *candidates]],
        "gate": cfg.gate,
    }
    passing = [c for c in candidates if c.passed]
    if not passing:
        raise gate.GateFailed(
            f"no CPU INT8 scheme passes the fidelity gate {cfg.gate}: "
            + "; ".join(
                f"{c.name}: {gate.summary(c.fidelity) if c.fidelity else c.error}" for c in candidates
            )
            + "; nothing written"
        )
    # NNCF Q/DQ when it passed, else ORT dynamic: encoder.onnx (an ONNX graph) until tuning decides
    default = next((c for c in passing if isinstance(c.model, onnx.ModelProto)), None)
    if default is None:
        raise gate.GateFailed("only the OpenVINO IR candidate passed the fidelity gate; nothing written")
    files = {id(default.model): ONNX_FILE}
    graphs: dict[str, Any] = {}
    for c in passing:
        if id(c.model) not in files:
            files[id(c.model)] = cpu_int8.GRAPH_FILES[c.name]
            graphs[files[id(c.model)]] = c.model
    graphs[cpu_int8.FP32_FILE] = fp32_model
    cands = [
        {"name": c.name, "file": files[id(c.model)], "engine": c.backend, "precision": "int8"}
        for c in passing
    ]
    cands += [cpu_int8.bf16_variant(c) for c in cands if c["engine"] == "openvino"]
    cands += cpu_int8.fp32_candidates(cpu_int8.FP32_FILE, cpu_int8.FP32_REFERENCE_NAMES, choosable=False)
    on_default = [c.backend for c in passing if c.model is default.model]
    backend = "openvino" if "openvino" in on_default else "onnxruntime"
    return default.model, backend, {"cpu_int8": record, "vs_fp32": default.fidelity}, graphs, cands


def _error_line(exc: Exception) -> str:
    """A candidate's failure as one line: the exception type and the first line of its message."""
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"


def _runtime_inputs(frames: calibration.FrameSet, manifest: dict, torch_ref, backbone):
    """Held-out frames as the device sees them (uint8 BGR, full-resolution ones too) and PyTorch's features
    of the same frames on the reference preprocessing."""
    from edge_vsd.data.preprocess import preprocess

    inputs = list(frames.heldout) + frames.raw_heldout
    if frames.raw_heldout:
        size = tuple(manifest["model"]["image_size"])
        raw_x = np.concatenate([preprocess(f, size).numpy() for f in frames.raw_heldout])
        raw_ref = parity.torch_reference(backbone, raw_x)
        torch_ref = tuple(np.concatenate([a, b]) for a, b in zip(torch_ref, raw_ref, strict=True))
    return inputs, torch_ref


def _frame_by_frame(enc: Any, frames: list[np.ndarray]) -> Any:
    """Features of `frames` from one call each, as a camera loop runs: an engine that resizes in its graph
    once a frame size repeats (OpenVINO) is then gated on that path too."""
    from edge_vsd.runtimes.encoder import Features

    feats = [enc(f) for f in frames]
    return Features(np.concatenate([f.cls for f in feats]), np.concatenate([f.patches for f in feats]))


def _verify_cpu_candidates(
    folder: Path, manifest: dict, cands: list[dict], frames, torch_ref, backbone, cfg, log
) -> None:
    """Gate every candidate (graph on an engine) through edge_vsd.runtimes.load against PyTorch; drop the
    ones that miss the gate or whose engine is absent here, and their files when nothing else uses them."""
    import edge_vsd.runtimes as rt
    from edge_vsd.runtimes.backend import engine_importable, graph_files
    from edge_vsd.runtimes.manifest import write_manifest

    inputs, ref = _runtime_inputs(frames, manifest, torch_ref, backbone)
    manifest["candidates"] = cands
    write_manifest(folder, manifest)
    kept = []
    for c in cands:
        if not engine_importable(c["engine"]):
            log.note(f"{c['name']}: {c['engine']} not installed here, not carried (cannot be gated)")
            continue
        with rt.load(folder, candidate=c["name"]) as enc:
            feats = _frame_by_frame(enc, inputs)
        metrics = parity.compare(ref, (feats.cls, feats.patches))
        metrics["full_resolution_frames"] = len(frames.raw_heldout)
        c["runtime_vs_torch"] = metrics
        ok = gate.passes(metrics, cfg.gate)
        log.note(f"{c['name']:<24} {c['engine']:<12} {gate.summary(metrics)}{'' if ok else '  (dropped)'}")
        if ok:
            kept.append(c)
    if not any(c.get("choosable", True) for c in kept):
        raise gate.GateFailed(
            f"no candidate passes the fidelity gate {cfg.gate} through edge_vsd.runtimes; nothing written"
        )
    used = {ONNX_FILE} | {f for c in kept for f in graph_files(c["file"])}
    graphs = [n for n in manifest["files"] if n.endswith((".onnx", ".xml", ".bin"))]
    for name in [n for n in graphs if n not in used]:
        (folder / name).unlink()
        del manifest["files"][name]
    manifest["candidates"] = kept
    write_manifest(folder, manifest)


def _tune_cpu(folder: Path, cfg: ExportConfig, log) -> None:
    """`edge-vsd tune` on the staged artifact: the timing the robot will run, recorded in the manifest."""
    from edge_vsd.runtimes.manifest import read_manifest, write_manifest
    from edge_vsd.runtimes.timing import Protocol
    from edge_vsd.runtimes.tune import summary_lines, tune

    rec = tune(folder, protocol=Protocol(iters=cfg.latency_runs))
    for line in summary_lines(rec):
        log.note(line)
    manifest = read_manifest(folder)
    by_name = {c["name"]: c for c in manifest["candidates"]}
    manifest["parity"]["runtime_vs_torch"] = by_name[rec["chosen"]]["runtime_vs_torch"]
    record = manifest.get("cpu_int8")
    if record:
        known = {c["name"] for c in record["candidates"]}
        for c in manifest["candidates"]:  # engine-setting variants (bf16 hint) exist only as candidates
            if c["name"] not in known and c.get("choosable", True):
                record["candidates"].append(
                    {
                        "name": c["name"],
                        "backend": c["engine"],
                        "fidelity": c["runtime_vs_torch"],
                        "passed_gate": True,
                        "options": c.get("options"),
                    }
                )
        for c in record["candidates"]:
            result = rec["results"].get(c["name"])
            c["latency_ms"] = result["median_ms"] if result else None
            if c["name"] in rec["skipped"]:  # e.g. a bf16 hint on a CPU without bf16: not timed here
                c["skipped"] = rec["skipped"][c["name"]]
        record["chosen"] = rec["chosen"]
        ref = rec["results"].get("fp32_reference", {}).get("median_ms")
        n = sum(c["name"] in rec["results"] and c.get("choosable", True) for c in manifest["candidates"])
        record["why"] = (
            f"fastest of {n} INT8 candidates passing the gate, timed end to end by edge-vsd tune on this CPU "
            f"({rec['results'][rec['chosen']]['median_ms']} ms vs fp32 {ref} ms)"
        )
    write_manifest(folder, manifest)


def _tensorrt_finish(cfg: ExportConfig, folder: Path, size: tuple[int, int], log) -> dict:
    batch = None if cfg.dynamic_batch else cfg.batch
    (folder / BUILD_TXT).write_text(tensorrt_build.build_on_device_text(cfg.precision, size, batch))
    info = {
        "trtexec": tensorrt_build.trtexec_command(cfg.precision, size, batch),
        "trtexec_strongly_typed": tensorrt_build.trtexec_command_strongly_typed(cfg.precision, size, batch),
        "engine_built": False,
        "version": None,
    }
    if cfg.precision == "int8":
        # the graph the fidelity gate's fp16 simulation scored, for strongly typed (TensorRT 11) builds
        typed_model = fp16.convert_qdq_to_fp16(onnx.load(str(folder / ONNX_FILE)))
        broken = trt_lint.errors(trt_lint.lint_model(typed_model))
        if broken:
            raise InputError(f"fp16 Q/DQ variant breaks TensorRT rules: {broken[0]}; nothing written")
        onnx.save(typed_model, str(folder / tensorrt_build.STRONGLY_TYPED_ONNX))
        info["strongly_typed_onnx"] = tensorrt_build.STRONGLY_TYPED_ONNX
    trt, reason = tensorrt_build.tensorrt_status() if cfg.build_engine else (None, "engine build disabled")
    if trt is None:
        info["skipped"] = reason
        log.note(f"no engine built here ({reason}); see {BUILD_TXT}")
        return info
    typed = folder / tensorrt_build.STRONGLY_TYPED_ONNX
    try:
        info.update(
            tensorrt_build.build_engine(
                folder / ONNX_FILE,
                folder / ENGINE_FILE,
                cfg.precision,
                size,
                batch,
                timing_cache=None,
                typed_onnx_path=typed if typed.is_file() else None,
            )
        )
    except RuntimeError as exc:
        raise InputError(
            f"TensorRT engine build failed ({exc}); --no-engine writes the artifact without one"
        ) from None
    info["engine_built"] = True
    return info


def _verify_runtime(
    folder: Path, manifest: dict, frames: calibration.FrameSet, torch_ref, backbone, threshold: float, log
) -> dict:
    """What the device will see: load the staged artifact with edge_vsd.runtimes (manifest validation, sha256
    check, backend, its own preprocessing of uint8 BGR frames, including resizing the full-resolution ones)
    and compare its features to PyTorch's on the reference preprocessing."""
    import edge_vsd.runtimes as rt

    inputs, torch_ref = _runtime_inputs(frames, manifest, torch_ref, backbone)
    backend = "openvino" if manifest["backend"] == "openvino" else "onnxruntime-cpu"
    backends = [backend] + (["tensorrt"] if manifest.get("tensorrt", {}).get("engine_built") else [])
    out = {}
    for name in backends:
        with rt.load(folder, backend=name) as enc:
            feats = _frame_by_frame(enc, inputs)
        metrics = parity.compare(torch_ref, (feats.cls, feats.patches))
        metrics["full_resolution_frames"] = len(frames.raw_heldout)
        gate.check(metrics, threshold, f"artifact run through edge_vsd.runtimes ({name})")
        out[name] = metrics
        log.note(f"{name}: {gate.summary(metrics)}")
    return out[backend] if len(out) == 1 else out


class _Stages:
    """Prints one line per stage with its wall time, and keeps the timings for the manifest."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self._print(f"[{len(self.seconds) + 1}] {name} ...")
        t = time.perf_counter()
        yield
        self.seconds[name] = time.perf_counter() - t
        self._print(f"    done in {self.seconds[name]:.1f} s")

    def note(self, text: str) -> None:
        self._print(f"    {text}")

    def _print(self, text: str) -> None:
        if not self.quiet:
            print(text, file=sys.stderr, flush=True)

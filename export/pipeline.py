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
        if cfg.int8 and cfg.target == "jetson":
            with log.stage("NNCF INT8 (symmetric Q/DQ for TensorRT) + fidelity gate"):
                final, record = _jetson_int8(cfg, fp32_model, calib_x, held_x, fp32_out, log)
            with log.stage("TensorRT lint"):
                findings = trt_lint.lint_model(final)
                record["lint"] = [str(f) for f in findings]
                if trt_lint.errors(findings):
                    raise InputError(f"INT8 graph breaks TensorRT rules: {findings[0]}; nothing written")
        elif cfg.int8:
            with log.stage("CPU INT8 candidates: build, time, gate"):
                final, backend, record = _cpu_int8(cfg, fp32_model, calib_x, held_x, fp32_out, log)
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
        onnx.save(final, str(staging.dir / ONNX_FILE))
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
    log.note(
        f"artifact written: {out} ({cfg.target}, {cfg.precision}, {backend}) "
        f"in {sum(log.seconds.values()):.1f} s"
    )
    return out


# -- stage helpers --------------------------------------------------------------------------------


def _validate(cfg: ExportConfig) -> None:
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
        return calibration.load_frames(cfg.calib, size, n_calib, cfg.heldout_frames)
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
        "ignored_scope": attempts[-1].level,
        "float_nodes": attempts[-1].ignored,
        "attempts": _attempts_record(attempts),
    }


def _best(attempts: list[quantize.Attempt]) -> dict:
    return max((a.metrics for a in attempts), key=lambda m: min(m["cls_cosine"], m["patch_cosine"]))


def _cpu_int8(cfg, fp32_model, calib_x, held_x, fp32_out, log) -> tuple[onnx.ModelProto, str, dict]:
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
    runners = {}
    for cand in [fp32, *candidates]:
        if cand.model is None:
            continue
        try:
            runners[cand.name] = cpu_int8.prepare(cand, held_x, fp32_out, cfg.gate)
        except Exception as exc:  # noqa: BLE001 - a candidate that cannot run is recorded, not fatal
            cand.error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
    latencies = cpu_int8.time_interleaved(runners, cfg.latency_runs)
    for cand in [fp32, *candidates]:
        cand.latency_ms = latencies.get(cand.name)
        log.note(
            f"{cand.name:<18} {'-' if cand.latency_ms is None else f'{cand.latency_ms:7.2f} ms'}  "
            f"{gate.summary(cand.fidelity) if cand.fidelity else cand.error}"
        )
    chosen = cpu_int8.pick(candidates)
    record = {
        "isa": cpu_int8.cpu_isa(),
        "candidates": [c.record() for c in [fp32, *candidates]],
        "gate": cfg.gate,
    }
    if chosen is None:
        raise gate.GateFailed(
            f"no CPU INT8 scheme passes the fidelity gate {cfg.gate}: "
            + "; ".join(
                f"{c.name}: {gate.summary(c.fidelity) if c.fidelity else c.error}" for c in candidates
            )
            + "; nothing written"
        )
    record["chosen"] = chosen.name
    record["why"] = (
        f"fastest of {sum(c.passed for c in candidates)} candidates passing the gate on this CPU "
        f"({chosen.latency_ms} ms vs fp32 {fp32.latency_ms} ms)"
    )
    return chosen.model, chosen.backend, {"cpu_int8": record, "vs_fp32": chosen.fidelity}


def _tensorrt_finish(cfg: ExportConfig, folder: Path, size: tuple[int, int], log) -> dict:
    batch = None if cfg.dynamic_batch else cfg.batch
    (folder / BUILD_TXT).write_text(tensorrt_build.build_on_device_text(cfg.precision, size, batch))
    info = {
        "trtexec": tensorrt_build.trtexec_command(cfg.precision, size, batch),
        "trtexec_strongly_typed": tensorrt_build.trtexec_command_strongly_typed(size, batch),
        "engine_built": False,
        "version": None,
    }
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

    from edge_vsd.data.preprocess import preprocess

    inputs = list(frames.heldout) + frames.raw_heldout
    if frames.raw_heldout:
        size = tuple(manifest["model"]["image_size"])
        raw_x = np.concatenate([preprocess(f, size).numpy() for f in frames.raw_heldout])
        raw_ref = parity.torch_reference(backbone, raw_x)
        torch_ref = tuple(np.concatenate([a, b]) for a, b in zip(torch_ref, raw_ref, strict=True))
    backend = "openvino" if manifest["backend"] == "openvino" else "onnxruntime-cpu"
    backends = [backend] + (["tensorrt"] if manifest.get("tensorrt", {}).get("engine_built") else [])
    out = {}
    for name in backends:
        with rt.load(folder, backend=name) as enc:
            feats = enc(inputs)
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

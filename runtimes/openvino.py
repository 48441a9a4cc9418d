"""OpenVINO backend: compiles the artifact's ONNX file for the CPU with openvino.Core."""

from __future__ import annotations

import contextlib
import logging
from collections import OrderedDict, deque
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
from edge_vsd.runtimes import area_resize
from edge_vsd.runtimes.backend import ONNX_FILE
from edge_vsd.runtimes.errors import RuntimeInputError

log = logging.getLogger("edge_vsd.runtimes")

RESIZING_MODELS = 2  # frame sizes with a model that resizes in its graph, the most recently used kept


class OpenVINOBackend:
    """Runs `encoder.onnx` (or another of the artifact's graphs) through OpenVINO's CPU plugin. With
    `fold_preprocessing` (default) the compiled model takes the resized uint8 frames (B, H, W, 3) in the
    manifest's colour order and does the rest itself: to float, mean and std, HWC to CHW. With
    `fold_resize` too (default: yes, except for an fp32 artifact run in f32, whose features match PyTorch's
    to 1e-5), frames that come at one larger size call after call are taken as they are (uint8 BGR) by a
    second model that also does the area resize (`run_frames`)."""

    name = "openvino-cpu"

    def __init__(
        self,
        artifact_dir: Path,
        manifest: dict[str, Any],
        threads: int | None = None,
        device: str = "CPU",
        onnx_file: str = ONNX_FILE,
        precision_hint: str | None = None,
        fold_preprocessing: bool = True,
        fold_resize: bool | None = None,
    ) -> None:
        path = Path(artifact_dir) / onnx_file
        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
        if precision_hint:  # a candidate gated with this hint at export (e.g. bf16 float parts on AMX CPUs)
            config["INFERENCE_PRECISION_HINT"] = precision_hint
        elif manifest.get("precision") != "fp16":  # else OpenVINO may pick bf16 on CPUs that have it
            config["INFERENCE_PRECISION_HINT"] = "f32"
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        core = ov.Core()
        self.input_name = manifest["input"]["name"]
        self.takes_uint8 = fold_preprocessing and _foldable(manifest["input"])
        try:
            model = core.read_model(str(path))
            if self.takes_uint8:
                model = _with_preprocessing(model, manifest["input"])
            if precision_hint == "bf16" and cpu_has_bf16(core, device):
                model = _with_bf16_outputs(model)
            self.compiled = core.compile_model(model, device, config)
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses with multi-line messages
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise RuntimeInputError(f"{path}: OpenVINO cannot compile it ({first})") from None
        names = {n for port in self.compiled.outputs for n in port.get_names()}
        wanted = [manifest["outputs"]["cls"]["name"], manifest["outputs"]["patches"]["name"]]
        if not set(wanted) <= names:
            raise RuntimeInputError(f"{path}: outputs {sorted(names)} do not include {wanted}")
        self.cls_port, self.patches_port = (self.compiled.output(n) for n in wanted)
        self.bf16_out = self.cls_port.get_element_type() == ov.Type.bf16
        self.request = self.compiled.create_infer_request()
        self.name = f"openvino-{device.lower()}"
        self._core, self._model, self._device, self._config = core, model, device, config
        self._outputs = wanted
        self._throughput: Any = None  # the same graph compiled for throughput, on the first `pipeline`
        self._path, self._spec = path, manifest["input"]
        self._image_size = tuple(manifest["model"]["image_size"])
        if fold_resize is None:  # an fp32 artifact run in f32 is the exact reference: OpenCV's resize stays
            fold_resize = manifest.get("precision") != "fp32" or self.bf16_out
        self._resizes = self.takes_uint8 and fold_resize and _resizable(self._spec)
        # frame size -> (infer request, cls port, patches port) of the model that resizes
        self._resizing: OrderedDict[tuple[int, int], tuple[Any, Any, Any]] = OrderedDict()
        self._last_size: tuple[int, int] | None = None
        self._not_resizing: set[tuple[int, int]] = set()  # sizes whose model failed to compile

    def run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, 3, H, W) normalised, or (B, H, W, 3) uint8 when `takes_uint8` -> (cls, patches); copies,
        because the request reuses its output buffers."""
        result = self.request.infer({self.input_name: x})
        return _float32(result[self.cls_port], self.bf16_out), _float32(
            result[self.patches_port], self.bf16_out
        )

    def resizes(self, size: tuple[int, int]) -> bool:
        """Whether `run_frames` takes uint8 BGR frames of `size` (H, W) as they are. ViT-S/16 from a
        640x480 frame: 8.5-8.9 ms a call with the resize in the graph, 9.6 ms with OpenCV's (1.0 ms of it).
        A model for a new size compiles in 0.4 s, so it is built when a size comes a second time in a row:
        a camera pays it once, one-off sizes never."""
        size = (int(size[0]), int(size[1]))
        if size in self._resizing:
            self._resizing.move_to_end(size)
            return True
        if not self._resizes or size in self._not_resizing:
            return False
        if not area_resize.foldable(size, self._image_size):
            return False
        if size != self._last_size:
            self._last_size = size
            return False
        try:
            model = _with_resize(self._model.clone(), size, self._image_size, self._spec["color"] == "RGB")
            compiled = self._core.compile_model(model, self._device, self._config)
        except Exception as exc:  # noqa: BLE001 - the OpenCV resize still works
            log.info("%s: no in-graph resize for %dx%d frames (%s)", self._path, size[1], size[0], exc)
            self._not_resizing.add(size)
            return False
        ports = tuple(compiled.output(n) for n in self._outputs)
        self._resizing[size] = (compiled.create_infer_request(), *ports)
        while len(self._resizing) > RESIZING_MODELS:
            self._resizing.popitem(last=False)
        return True

    def run_frames(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, H, W, 3) uint8 BGR frames of a size `resizes` said yes to -> (cls, patches)."""
        request, cls, patches = self._resizing[(x.shape[1], x.shape[2])]
        result = request.infer({0: x})
        return _float32(result[cls], self.bf16_out), _float32(result[patches], self.bf16_out)

    def pipeline(self) -> OpenVINOPipeline | None:
        """The same graph compiled for throughput (OpenVINO's THROUGHPUT hint: several single- or few-thread
        streams), for files where frames need not wait for each other; None when it picks one stream."""
        if self._throughput is None:
            config = {**self._config, "PERFORMANCE_HINT": "THROUGHPUT"}
            self._throughput = self._core.compile_model(self._model, self._device, config)
        depth = int(self._throughput.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        if depth < 2:
            return None
        return OpenVINOPipeline(self._throughput, self._outputs, self.input_name, depth, self.bf16_out)

    def close(self) -> None:
        """Drop the compiled model."""
        self.request = None
        self.compiled = None
        self._throughput = None
        self._resizing.clear()


class OpenVINOPipeline:
    """`depth` inferences in flight on a throughput-compiled model: `submit` starts one (waiting for the
    oldest when all are busy is the caller's job: take `result` first), `result` returns the oldest's
    (cls, patches, milliseconds), in submission order."""

    def __init__(
        self, compiled: Any, outputs: list[str], input_name: str, depth: int, bf16_out: bool
    ) -> None:
        self.depth, self.input_name, self.bf16_out = depth, input_name, bf16_out
        self.ports = [compiled.output(n) for n in outputs]
        self._idle = deque(compiled.create_infer_request() for _ in range(depth))
        self._busy: deque = deque()

    def submit(self, x: np.ndarray) -> None:
        """Start an inference on `x` (as `OpenVINOBackend.run` takes it)."""
        if not self._idle:
            raise RuntimeError(f"all {self.depth} requests are in flight: take a result first")
        request = self._idle.popleft()
        request.start_async({self.input_name: x})
        self._busy.append(request)

    def result(self) -> tuple[np.ndarray, np.ndarray, float]:
        """Wait for the oldest inference in flight: copies of (cls, patches) and its milliseconds."""
        request = self._busy.popleft()
        try:
            request.wait()
            cls, patches = (_float32(request.get_tensor(port).data, self.bf16_out) for port in self.ports)
            return cls, patches, float(request.latency)
        finally:
            self._idle.append(request)

    def close(self) -> None:
        """Wait for what is still in flight (its buffers belong to the requests); the throughput model
        stays with the backend for the next stream."""
        for request in self._busy:
            with contextlib.suppress(Exception):  # its error was the stream's to report, not close's
                request.wait()
        self._busy.clear()
        self._idle.clear()


def cpu_has_bf16(core: ov.Core | None = None, device: str = "CPU") -> bool:
    """Whether OpenVINO's `device` plugin computes in bf16 (AVX-512 BF16, AMX); elsewhere bf16 runs f32."""
    return "BF16" in (core or ov.Core()).get_property(device, "OPTIMIZATION_CAPABILITIES")


def _with_bf16_outputs(model: ov.Model) -> ov.Model:
    """`model` with bf16 outputs. OpenVINO's CPU plugin keeps in f32 every op between a float32 output and
    the nearest MatMul or convolution; in a ViT that is the whole residual stream, with a bf16<->f32 reorder
    around each residual Add. bf16 outputs lift that: ViT-S/16 INT8 9.76 against 10.48 ms (2-core AMX Xeon;
    README)."""
    from openvino.preprocess import PrePostProcessor

    ppp = PrePostProcessor(model)
    for i in range(len(model.outputs)):
        ppp.output(i).tensor().set_element_type(ov.Type.bf16)
    return ppp.build()


def _float32(data: np.ndarray, bf16: bool) -> np.ndarray:
    """An output as a new float32 array. OpenVINO hands bf16 data out as numpy float16 (the bits, not the
    values), so bf16 is widened by its bits: a bf16 number is the upper half of a float32."""
    if bf16:
        return (np.asarray(data).view(np.uint16).astype(np.uint32) << 16).view(np.float32)
    return np.array(data, dtype=np.float32)


def _resizable(spec: dict[str, Any]) -> bool:
    """Whether the manifest's resize is the whole frame stretched with the area filter (what
    `area_resize` computes)."""
    return spec.get("resize", "stretch") == "stretch" and spec.get("interpolation") == "area"


def _with_resize(model: ov.Model, size: tuple[int, int], image_size: tuple[int, int], rgb: bool) -> ov.Model:
    """`model` (taking resized uint8 frames, see `_with_preprocessing`) fed by a uint8 BGR frame of `size`
    (B, H, W, 3): area resize and colour order in the graph, rounded to uint8 as OpenCV's resize is."""
    import openvino.opset13 as ops

    image = model.inputs[0]
    frames, x = area_resize.openvino_graph(size, image_size, image.get_partial_shape()[0], rgb)
    x = ops.convert(ops.round(x, "half_to_even"), ov.Type.u8)  # OpenCV's value at 99.8-99.95% of pixels
    for consumer in list(image.get_target_inputs()):
        consumer.replace_source_output(x.output(0))
    return ov.Model(model.get_results(), [frames], f"{model.get_friendly_name()}_resizing")


def _foldable(spec: dict[str, Any]) -> bool:
    """Whether the graph's input is float32 (the manifest's layout is always NCHW)."""
    return spec["dtype"] == "float32"


def _with_preprocessing(model: ov.Model, spec: dict[str, Any]) -> ov.Model:
    """`model` with a uint8 NHWC input whose conversion, normalisation and transpose run in the graph
    ((x * scale - mean) / std = (x - mean / scale) / (std / scale)), where OpenVINO fuses them."""
    from openvino.preprocess import PrePostProcessor

    scale = float(spec["scale"])
    ppp = PrePostProcessor(model)
    inp = ppp.input(spec["name"])
    inp.tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC"))
    inp.model().set_layout(ov.Layout("NCHW"))
    inp.preprocess().convert_element_type(ov.Type.f32).mean([m / scale for m in spec["mean"]]).scale(
        [s / scale for s in spec["std"]]
    )
    return ppp.build()

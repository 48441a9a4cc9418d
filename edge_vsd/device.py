"""Where the training step runs: CPU math settings, loader batches moved to the device, compile policy."""

from __future__ import annotations

import contextlib
import ctypes
from collections.abc import Iterator

import torch

from edge_vsd.data.augment import finish_views
from edge_vsd.vsd import VSDNet

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters


def keep_freed_memory() -> None:
    """Have glibc serve large blocks from the heap and keep freed ones, instead of mapping fresh zeroed
    pages for each: every op over the dense term's (B, N, K) tensors paid for them (on the dev CPU a
    (32, 49, 4096) division took 2.4 ms with fresh pages, 0.9 ms with kept ones). No-op off glibc."""
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return
    if not mallopt(M_MMAP_THRESHOLD, 1 << 30):  # older glibc caps the threshold at 32 MiB
        mallopt(M_MMAP_THRESHOLD, 32 << 20)
    mallopt(M_TRIM_THRESHOLD, 1 << 31)


BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")  # x86 AVX-512 BF16 and AMX; ARM's bf16 feature


def native_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool | None:
    """Whether this CPU has bfloat16 instructions (flags in /proc/cpuinfo); None where it cannot tell."""
    from pathlib import Path

    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return None
    flags = {
        f
        for line in text.splitlines()
        if line.lower().startswith(("flags", "features"))
        for f in line.split()
    }
    return any(f in flags for f in BF16_FLAGS)


def fast_math(device: torch.device | None = None) -> None:
    """Flush denormals to zero: the sharp teacher softmax (temperature 0.04) and Adam's second moments make
    denormal floats early in training, and x86 CPUs process those ~20x slower. Call it before the first
    parallel op: the intra-op threads inherit the setting when they are created. Keep freed memory (see
    `keep_freed_memory`). On CUDA, let cuDNN time its algorithms for the step's fixed shapes (as DINO
    does): the patch embedding's default took 0.8 ms."""
    torch.set_flush_denormal(True)
    keep_freed_memory()
    if device is not None and device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def compile_nets(student: VSDNet, teacher: VSDNet, mode: str = "default") -> None:
    """torch.compile the student and teacher forwards in place with `mode` (state-dict keys unchanged)."""
    student.compile(mode=mode)
    teacher.compile(mode=mode)


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """Copy a loader batch to `device` (non-blocking from pinned memory) and, when the loader deferred the
    photometric augmentation (uint8 crops + drawn rows), apply it there (the rows stay on the CPU)."""
    batch = {k: v if k.endswith("_photo") else v.to(device, non_blocking=True) for k, v in batch.items()}
    return finish_views(batch) if batch["globals"].dtype == torch.uint8 else batch


class DeviceBatches:
    """Loader batches copied to `device` and finished there (`to_device`). On CUDA the next batch is
    prepared on a side stream as soon as one is handed out, so its copy and photometric kernels run beside
    the step that uses the current one instead of in front of the next."""

    def __init__(self, batches: Iterator[dict[str, torch.Tensor]], device: torch.device):
        self.batches, self.device = batches, device
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        self.ready: dict[str, torch.Tensor] | None = None

    def __iter__(self) -> DeviceBatches:
        return self

    def _prepare(self) -> None:
        with torch.cuda.stream(self.stream):
            self.ready = to_device(next(self.batches), self.device)

    def __next__(self) -> dict[str, torch.Tensor]:
        if self.stream is None:
            return to_device(next(self.batches), self.device)
        if self.ready is None:
            self._prepare()
        current = torch.cuda.current_stream(self.device)
        current.wait_stream(self.stream)
        batch, self.ready = self.ready, None
        assert batch is not None  # set by _prepare
        for t in batch.values():
            t.record_stream(current)  # made on the side stream: keep its memory until the step is done
        with contextlib.suppress(StopIteration):
            self._prepare()
        return batch

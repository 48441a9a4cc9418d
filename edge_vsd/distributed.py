"""torchrun support: process group setup (gloo on CPU, NCCL on GPU), rank helpers."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def init_distributed(device: str) -> tuple[int, int, torch.device]:
    """(rank, world size, device); starts a process group when launched by torchrun with >1 processes."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if device == "cuda" and not torch.cuda.is_available():
        from edge_vsd.errors import InputError

        raise InputError("--device cuda: no CUDA GPU is visible to PyTorch")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = torch.device("cuda", local_rank) if device == "cuda" else torch.device("cpu")
    if device == "cuda":
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device == "cuda" else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    return rank, world, dev


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def any_process(value: int, device: torch.device) -> int:
    """The largest `value` over all processes (`value` itself outside torchrun)."""
    if not dist.is_initialized():
        return value
    t = torch.tensor([value], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()

"""Distributed training under ``torchrun`` (notebook 05): the process group, and collectives on the
training device.

Launched by ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) a process joins the group (NCCL for
CUDA devices, gloo for CPU). Each of the ``W`` processes gets its own shard of every epoch
(``DistributedSampler``) and ``batch_size / W`` images per step, so ``train.batch_size`` is the
*global* batch and a config trains the same way on any number of processes. NCCL only takes tensors
on the process's CUDA device: every collective here builds its tensor on ``device``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

import torch
import torch.distributed as dist

from ..env import resolve_device


@dataclass
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size`` (``local_rank`` on its node)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_distributed() -> bool:
    """True when started by ``torchrun`` (or similar) with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(device: Optional[str | torch.device] = None) -> tuple[DistInfo, torch.device]:
    """Join the process group if launched by ``torchrun``; return (DistInfo, this process's device).

    Device: ``resolve_device(device)``; under torchrun a CUDA device without an index becomes
    ``cuda:LOCAL_RANK``. Without torchrun: ``DistInfo()`` (rank 0 of 1) and the device.
    """
    device = resolve_device(device)
    if not launched_distributed():
        return DistInfo(), device
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if device.index is None:
            device = torch.device(f"cuda:{local}")
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), local), device


def shutdown_distributed() -> None:
    """Leave the process group (if any)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_max(value: float, info: DistInfo, device: torch.device) -> float:
    """The largest ``value`` over all processes (the value itself without DDP)."""
    if not info.enabled:
        return value
    t = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def all_mean_(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """``t`` (a tensor on the training device) averaged over all processes, in place: one
    all-reduce, no host sync (``t`` itself without DDP). Returns ``t``."""
    if info.enabled:
        dist.all_reduce(t)
        t /= info.world_size
    return t


def all_mean(value: float, info: DistInfo, device: torch.device) -> float:
    """The mean of ``value`` over all processes (the value itself without DDP)."""
    if not info.enabled:
        return value
    t = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item()) / info.world_size


def broadcast_flag(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """Rank 0's ``flag``, on every process (the flag itself without DDP)."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.broadcast(t, src=0)
    return bool(t.item())

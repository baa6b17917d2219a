"""The pieces of one training step (notebook 05), each small enough to derive and test on its own.

    g      = step_generator(seed, s, rank)          # all randomness of step s
    lr     = lr_at(s, lr, warmup_steps)             # linear warm-up, then constant
    y'     = drop_labels(y, p=label_dropout, null)  # classifier-free guidance: sometimes "no label"
    loss   = diffusion_loss(model, schedule, x, y', generator=g)   # t ~ U{0..T-1}, eps ~ N(0, I)
    loss.backward(); clip the gradient norm to grad_clip; AdamW step; ema.update(model)

Nothing random is carried from one step to the next: step ``s`` draws from a generator seeded with
``(seed, s, rank)``, and epoch ``e`` visits the data in the order of
``DistributedSampler(seed=seed).set_epoch(e)``, so a run resumed from a checkpoint continues exactly.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, List

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler


class NonFiniteLossError(RuntimeError):
    """The loss (or gradient norm) became NaN or infinite; training stopped before that update."""


def lr_at(step: int, base_lr: float, warmup_steps: int) -> float:
    """Learning rate for update number ``step`` (0-based): linear warm-up over ``warmup_steps``
    updates, ``base_lr * (step + 1) / warmup_steps``, then constant ``base_lr``."""
    if warmup_steps <= 0:
        return base_lr
    return base_lr * min(1.0, (step + 1) / warmup_steps)


def step_seed(seed: int, step: int, rank: int = 0) -> int:
    """A well-mixed 63-bit seed for (run seed, step, rank) (numpy's SeedSequence hashing)."""
    return int(np.random.SeedSequence([int(seed), int(step), int(rank)]).generate_state(1, np.uint64)[0] >> 1)


def step_generator(seed: int, step: int, rank: int = 0, device: str | torch.device = "cpu") -> torch.Generator:
    """The ``torch.Generator`` (on ``device``) that step ``step`` of process ``rank`` draws from."""
    g = torch.Generator(device=device)
    g.manual_seed(step_seed(seed, step, rank))
    return g


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, rank: int = 0,
                  world_size: int = 1) -> List[List[int]]:
    """The index batches (each of ``batch_size`` = per-process batch) of ``epoch`` for ``rank``:
    ``DistributedSampler(shuffle=True, seed=seed, drop_last=True)`` at ``set_epoch(epoch)``, cut
    into full batches (the incomplete last one is dropped)."""
    sampler = DistributedSampler(range(n), num_replicas=world_size, rank=rank, shuffle=True, seed=seed,
                                 drop_last=True)
    sampler.set_epoch(epoch)
    idx = list(sampler)
    nb = len(idx) // batch_size
    return [idx[i * batch_size:(i + 1) * batch_size] for i in range(nb)]


def step_batches(dataset: Dataset, batch_size: int, seed: int, start_step: int, rank: int = 0, world_size: int = 1,
                 num_workers: int = 0) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """(epoch, x (b, C, H, W), y (b,)) for steps start_step, start_step + 1, ... with b =
    ``batch_size`` per process: step s takes batch ``s % steps_per_epoch`` of ``epoch_batches`` at
    epoch ``s // steps_per_epoch``, so the data position follows from the step alone."""
    n = len(dataset)
    spe = (n // world_size) // batch_size
    if spe < 1:
        raise ValueError(f"the dataset ({n} images) is too small for a batch of {batch_size} per process")
    epoch, offset = divmod(start_step, spe)
    direct = isinstance(getattr(dataset, "x", None), torch.Tensor) and isinstance(getattr(dataset, "y", None),
                                                                                   torch.Tensor)
    while True:
        batches = epoch_batches(n, batch_size, seed, epoch, rank, world_size)[offset:]
        if direct:
            for b in batches:
                idx = torch.tensor(b)
                yield epoch, dataset.x[idx], dataset.y[idx]
        else:
            for x, y in DataLoader(dataset, batch_sampler=batches, num_workers=num_workers):
                yield epoch, x, y
        epoch, offset = epoch + 1, 0


def autocast_context(device: torch.device, precision: str):
    """``torch.autocast`` to bfloat16 for ``precision="bf16"``, a no-op for "fp32"."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    raise ValueError(f"train.precision must be 'fp32' or 'bf16', got {precision!r}")


def make_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW over all trainable parameters (DiT's optimiser: betas (0.9, 0.999), constant lr)."""
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr,
                             weight_decay=weight_decay, betas=(0.9, 0.999))

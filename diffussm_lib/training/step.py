"""The pieces of one training step (notebook 05), each small enough to derive and test on its own.

    g      = step_generator(seed, s, rank)          # all randomness of step s
    lr     = lr_at(s, lr, warmup_steps, lr_schedule, progress)   # warm-up, then constant or decaying
    y'     = drop_labels(y, p=label_dropout, null)  # classifier-free guidance: sometimes "no label"
    t      = sample_timesteps(B, T, g, timestep_sampling)        # uniform, or logit-normal
    loss   = diffusion_loss(model, schedule, x, y', t=t, generator=g, weighting=loss_weighting)
    loss.backward(); clip the gradient norm to grad_clip; AdamW step; ema.update(model)

Nothing random is carried from one step to the next: step ``s`` draws from a generator seeded with
``(seed, s, rank)``, and epoch ``e`` visits the data in the order of
``DistributedSampler(seed=seed).set_epoch(e)``, so a run resumed from a checkpoint continues exactly.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from typing import Callable, Dict, Iterator, List, Optional, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ..errors import UserError


class NonFiniteLossError(RuntimeError):
    """The loss (or gradient norm) became NaN or infinite; training stopped at the next log record
    or checkpoint, before either could hold it (``Trainer``: one host sync per log interval)."""


LR_SCHEDULES = ("constant", "cosine", "linear")
TIMESTEP_SAMPLINGS = ("uniform", "logit_normal")


def lr_at(
    step: int, base_lr: float, warmup_steps: int, schedule: str = "constant", progress: float = 0.0
) -> float:
    """Learning rate for update number ``step`` (0-based): linear warm-up over ``warmup_steps``
    updates, ``base_lr * (step + 1) / warmup_steps``; after it ``base_lr`` times

        constant: 1        cosine: (1 + cos(pi p)) / 2        linear: 1 - p

    where ``progress`` p in [0, 1] is how much of the run is done (the trainer passes the larger of
    step / max_steps and, with a time budget, train_seconds / budget: the budget is known in
    advance, the number of steps it buys is not). The warm-up multiplies the decay."""
    if schedule not in LR_SCHEDULES:
        raise UserError(f"train.lr_schedule must be one of {LR_SCHEDULES}, got {schedule!r}")
    p = min(max(float(progress), 0.0), 1.0)
    decay = {"constant": 1.0, "cosine": 0.5 * (1.0 + math.cos(math.pi * p)), "linear": 1.0 - p}[
        schedule
    ]
    warm = 1.0 if warmup_steps <= 0 else min(1.0, (step + 1) / warmup_steps)
    return base_lr * warm * decay


def sample_timesteps(
    batch: int,
    T: int,
    generator: Optional[torch.Generator] = None,
    method: str = "uniform",
    mean: float = 0.0,
    std: float = 1.0,
    device=None,
) -> torch.Tensor:
    """Training timesteps t (batch,) long in {0..T-1}.

    uniform:       t ~ U{0..T-1} (DDPM).
    logit_normal:  u ~ N(mean, std), t = floor(sigmoid(u) * T) (SD3's density over the noise level,
                   mapped onto the discrete steps): more updates at middle noise, fewer at both ends.
    """
    if method == "uniform":
        return torch.randint(0, T, (batch,), generator=generator, device=device)
    if method == "logit_normal":
        u = mean + std * torch.randn(batch, generator=generator, device=device)
        return (torch.sigmoid(u) * T).long().clamp_(0, T - 1)
    raise UserError(f"train.timestep_sampling must be one of {TIMESTEP_SAMPLINGS}, got {method!r}")


def step_seed(seed: int, step: int, rank: int = 0) -> int:
    """A well-mixed 63-bit seed for (run seed, step, rank) (numpy's SeedSequence hashing)."""
    return int(
        np.random.SeedSequence([int(seed), int(step), int(rank)]).generate_state(1, np.uint64)[0]
        >> 1
    )


def step_generator(
    seed: int, step: int, rank: int = 0, device: str | torch.device = "cpu"
) -> torch.Generator:
    """The ``torch.Generator`` (on ``device``) that step ``step`` of process ``rank`` draws from."""
    g = torch.Generator(device=device)
    g.manual_seed(step_seed(seed, step, rank))
    return g


def epoch_batches(
    n: int, batch_size: int, seed: int, epoch: int, rank: int = 0, world_size: int = 1
) -> List[List[int]]:
    """The index batches (each of ``batch_size`` = per-process batch) of ``epoch`` for ``rank``:
    ``DistributedSampler(shuffle=True, seed=seed, drop_last=True)`` at ``set_epoch(epoch)``, cut
    into full batches (the incomplete last one is dropped)."""
    sampler = DistributedSampler(
        range(n), num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=True
    )
    sampler.set_epoch(epoch)
    idx = list(sampler)
    nb = len(idx) // batch_size
    return [idx[i * batch_size : (i + 1) * batch_size] for i in range(nb)]


def step_batches(
    dataset: Dataset,
    batch_size: int,
    seed: int,
    start_step: int,
    rank: int = 0,
    world_size: int = 1,
    num_workers: int = 0,
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """(epoch, x (b, C, H, W), y (b,)) for steps start_step, start_step + 1, ... with b =
    ``batch_size`` per process: step s takes batch ``s % steps_per_epoch`` of ``epoch_batches`` at
    epoch ``s // steps_per_epoch``, so the data position follows from the step alone."""
    n = len(dataset)
    spe = (n // world_size) // batch_size
    if spe < 1:
        raise UserError(
            f"the dataset ({n} images) is too small for a batch of {batch_size} per process"
        )
    epoch, offset = divmod(start_step, spe)
    direct = isinstance(getattr(dataset, "x", None), torch.Tensor) and isinstance(
        getattr(dataset, "y", None), torch.Tensor
    )
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
    """``torch.autocast`` to bfloat16 for ``precision="bf16"``, a no-op for "fp32" (the trainer
    resolves "auto" to one of them first: ``Trainer.pick_precision``)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    raise UserError(f"train.precision must be 'fp32' or 'bf16', got {precision!r}")


def faster_precision(
    forward_backward: Callable[[str], None],
    candidates: Sequence[str] = ("fp32", "bf16"),
    rounds: int = 3,
    sync: Optional[Callable[[], None]] = None,
    margin: float = 0.95,
) -> tuple[str, Dict[str, float]]:
    """Which precision trains faster here: ``forward_backward(precision)`` is timed for each candidate
    in turn (fp32, bf16, fp32, bf16, ...: a noisy machine drifts, interleaving spreads the drift over
    both), one warm-up round then ``rounds`` timed rounds; the median seconds decide. The first
    candidate (full precision) is kept unless another is faster than ``margin`` times its median.
    ``sync`` (e.g. ``torch.cuda.synchronize``) runs before each clock read, so queued work is counted.
    Returns (the pick, {precision: median seconds})."""
    times: Dict[str, List[float]] = {c: [] for c in candidates}
    for r in range(rounds + 1):
        for c in candidates:
            if sync is not None:
                sync()
            t0 = time.perf_counter()
            forward_backward(c)
            if sync is not None:
                sync()
            if r:  # round 0 warms up
                times[c].append(time.perf_counter() - t0)
    med = {c: statistics.median(v) for c, v in times.items()}
    return pick_faster(med, margin), med


def pick_faster(seconds: Dict[str, float], margin: float = 0.95) -> str:
    """The rule of ``faster_precision``: ``seconds`` {precision: median seconds}, full precision
    first; the first is kept unless another takes less than ``margin`` times its seconds."""
    first, *others = seconds
    pick = min(others, key=seconds.__getitem__, default=first)
    return pick if seconds[pick] < margin * seconds[first] else first


def make_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW over all trainable parameters (DiT's optimiser, betas (0.9, 0.999); the trainer sets each
    update's learning rate with ``lr_at``)."""
    return torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=lr,
        weight_decay=weight_decay,
        betas=(0.9, 0.999),
    )

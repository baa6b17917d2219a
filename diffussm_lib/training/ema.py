"""Exponential moving average (EMA) of a model's weights, the weights diffusion models sample with.

After every optimiser step, each EMA weight moves a small step towards the live weight:

    ema <- decay * ema + (1 - decay) * w          (decay = 0.999: an average over ~1000 steps)

The live weights jitter with every minibatch; their average is smoother (DDPM, DiT and the DiffuSSM
paper all sample from the EMA, after long runs). Whether it samples better than the live weights
after a short run is a measurement: ``benchmarks/bench_speedrun.py`` evaluates both. Buffers
(non-trainable state) are copied as they are.

Warm-up
-------
With decay 0.999 the EMA needs a few thousand steps to forget its random initialisation, which
makes the samples of a short run (a notebook, a test) look worse than the live model's. With
``warmup=True`` the decay used at update number n (0-based) is ``min(decay, (1 + n) / (10 + n))``
(0.1, 0.18, 0.25, ... rising towards ``decay``), as in several public DDPM / DiT codebases; after
about 10 / (1 - decay) updates it equals ``decay`` (9,000 for 0.999; ``train.ema_warmup: false``
turns the ramp off). ``EMA.num_updates`` counts updates so that a
resumed run continues the same sequence.
"""

from __future__ import annotations

import copy
from typing import Dict

import torch
from torch import nn

from ..errors import UserError


def ema_decay_at(num_updates: int, decay: float, warmup: bool = True) -> float:
    """The decay used for update number ``num_updates`` (0-based): ``decay``, or with ``warmup``
    ``min(decay, (1 + n) / (10 + n))``."""
    if warmup:
        return min(decay, (1.0 + num_updates) / (10.0 + num_updates))
    return decay


class EMA:
    """An EMA copy of ``model``: ``ema.module`` is a frozen ``nn.Module`` of the same class.

    ``ema.update(model)`` after each optimiser step; sample with ``ema.module``. ``model`` may be
    wrapped in DistributedDataParallel (its ``.module`` is used). The EMA module lives on the
    model's device and keeps its parameters in float32 (whatever autocast does in the forward).
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: bool = True):
        if not 0.0 <= decay < 1.0:
            raise UserError(f"EMA decay must be in [0, 1) (train.ema_decay), got {decay}")
        self.decay = float(decay)
        self.warmup = bool(warmup)
        self.num_updates = 0
        self.last_decay: float | None = None  # the decay of the last update (logged by the trainer)
        self.module = copy.deepcopy(unwrap(model)).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> float:
        """One EMA step towards the weights of ``model``; returns the decay that was used."""
        d = ema_decay_at(self.num_updates, self.decay, self.warmup)
        src = unwrap(model)
        ema_params = list(self.module.parameters())
        params = list(src.parameters())
        if len(ema_params) != len(params):
            raise ValueError("EMA.update: the model's parameters do not match the EMA copy's")
        torch._foreach_lerp_(ema_params, [p.detach() for p in params], 1.0 - d)
        for eb, b in zip(self.module.buffers(), src.buffers()):
            eb.copy_(b)
        self.num_updates += 1
        self.last_decay = d
        return d

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Overwrite the weights of ``model`` with the EMA weights."""
        unwrap(model).load_state_dict(self.module.state_dict())

    def state_dict(self) -> Dict[str, torch.Tensor]:
        """The EMA module's state dict (tensors only; ``num_updates`` is saved by the checkpoint)."""
        return self.module.state_dict()

    def load_state_dict(self, state: Dict[str, torch.Tensor], num_updates: int = 0) -> None:
        self.module.load_state_dict(state)
        self.num_updates = int(num_updates)

    def to(self, device) -> "EMA":
        self.module.to(device)
        return self


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside a DistributedDataParallel / DataParallel wrapper (else ``model``)."""
    return (
        model.module
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel))
        else model
    )

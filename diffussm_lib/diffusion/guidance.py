"""Classifier-free guidance (Ho & Salimans 2021): one network, conditional and unconditional.

Training: with probability p (``TrainConfig.label_dropout``, 0.1) each label is replaced by the
"null" class (index ``num_classes``: 10 for MNIST, so the denoiser has 11 label embeddings), so
the same network learns eps(x_t, t, y) and eps(x_t, t, null).

Sampling with guidance scale w:

    eps = eps_uncond + w (eps_cond - eps_uncond)

w = 1 is the plain conditional model, w = 0 the unconditional one, w > 1 pushes samples towards
what distinguishes class y (sharper, less diverse). Because x_0, eps and v are linear in each
other at a fixed x_t, combining v predictions the same way is the same guidance; the functions
below combine whatever the model outputs.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

DEFAULT_NULL_CLASS = 10  # MNIST: classes 0..9, index 10 = "no label"


def null_class_of(model) -> int:
    """The model's "no label" class: its ``null_class`` attribute (inside a DDP / DataParallel
    wrapper too), else ``DEFAULT_NULL_CLASS``. The one place that falls back to the default."""
    return int(getattr(getattr(model, "module", model), "null_class", DEFAULT_NULL_CLASS))


def cfg_combine(out_cond: Tensor, out_uncond: Tensor, w: float) -> Tensor:
    """out_uncond + w (out_cond - out_uncond). Both (B, C, H, W); returns (B, C, H, W)."""
    return out_uncond + w * (out_cond - out_uncond)


def drop_labels(y: Tensor, p: float, null_class: int = DEFAULT_NULL_CLASS,
                generator: Optional[torch.Generator] = None) -> Tensor:
    """Replace each label by ``null_class`` with probability ``p`` (for CFG training).

    y: long (B,). The coin flips are drawn from ``generator`` on y's device. Returns a new (B,).
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"label dropout probability must be in [0, 1], got {p}")
    if p == 0.0:
        return y.clone()
    drop = torch.rand(y.shape, generator=generator, device=y.device) < p
    return torch.where(drop, torch.full_like(y, null_class), y)


def guided_eps(model, x: Tensor, t: Tensor, y: Optional[Tensor], w: float,
               null_class: int = DEFAULT_NULL_CLASS) -> Tensor:
    """The guided model output at (x, t) for labels y and guidance scale w.

    model: model(x (B, C, H, W), t long (B,), y long (B,) or None) -> (B, C or 2C, H, W).
    x: (B, C, H, W); t: long (B,); y: long (B,) or None. Returns (B, C or 2C, H, W).

    For w not in {0, 1} the conditional and unconditional outputs come from ONE forward pass on a
    batch of 2B (x twice; y, then ``null_class``). Shortcuts, exact and half the cost: w = 1 is
    one conditional pass, w = 0 one pass with the null label; y = None (an unconditional model)
    is one pass with y = None and needs w = 1. With a learned variance (2C channels) only the
    first C channels are guided; the variance channels are the conditional ones.
    """
    if y is None:
        if w != 1.0:
            raise ValueError(f"guidance scale {w} needs labels y; with y=None only w=1 (no guidance) makes sense")
        return model(x, t, None)
    if w == 1.0:
        return model(x, t, y)
    null = torch.full_like(y, null_class)
    if w == 0.0:
        return model(x, t, null)
    out = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null]))
    out_cond, out_uncond = out.chunk(2, dim=0)
    C = x.shape[1]
    guided = cfg_combine(out_cond[:, :C], out_uncond[:, :C], w)
    if out_cond.shape[1] == C:
        return guided
    return torch.cat([guided, out_cond[:, C:]], dim=1)

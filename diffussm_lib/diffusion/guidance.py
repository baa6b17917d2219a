"""Classifier-free guidance (Ho & Salimans 2021): one network, conditional and unconditional.

Training: with probability p (``TrainConfig.label_dropout``, 0.1) each label is replaced by the
"null" class (index ``num_classes``: 10 for MNIST, so the denoiser has 11 label embeddings), so
the same network learns eps(x_t, t, y) and eps(x_t, t, null).

Sampling with guidance w (the argument ``guidance`` everywhere):

    eps = eps_null + w (eps_y - eps_null)                 (Ho & Salimans eq. 6, their w + 1 = our w)

w = 1 is the plain conditional model, w = 0 the unconditional one, w > 1 pushes samples towards
what distinguishes class y (sharper, less diverse). Because x_0, eps and v are linear in each
other at a fixed x_t, combining v predictions the same way is the same guidance: ``cfg_combine``
combines whatever the model outputs, and ``guided_output`` is the one place the samplers call it.
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


def cfg_combine(out_cond: Tensor, out_uncond: Tensor, guidance: float) -> Tensor:
    """out_null + w (out_y - out_null) with w = ``guidance``: out_cond = out_y (the labels'),
    out_uncond = out_null (the null class's), both (B, C, H, W); returns (B, C, H, W)."""
    return out_uncond + guidance * (out_cond - out_uncond)


def drop_labels(
    y: Tensor,
    p: float,
    null_class: int = DEFAULT_NULL_CLASS,
    generator: Optional[torch.Generator] = None,
) -> Tensor:
    """Replace each label by ``null_class`` with probability ``p`` (for CFG training).

    y: long (B,). The coin flips are drawn from ``generator`` on y's device. Returns a new (B,).
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"label dropout probability must be in [0, 1], got {p}")
    if p == 0.0:
        return y.clone()
    drop = torch.rand(y.shape, generator=generator, device=y.device) < p
    return torch.where(drop, torch.full_like(y, null_class), y)


def guided_output(
    model,
    x: Tensor,
    t: Tensor,
    y: Optional[Tensor],
    guidance: float,
    null_class: int = DEFAULT_NULL_CLASS,
) -> Tensor:
    """The model output under guidance at (x, t): the guided eps or v, (B, C or 2C, H, W).

    model: model(x (B, C, H, W), t long (B,), y long (B,) or None) -> (B, C or 2C, H, W).
    x: (B, C, H, W); t: long (B,); y: long (B,), or None for an unconditional model (one pass with
    y = None; guidance does not apply, and the sampler entries allow only guidance 1 then).

    For guidance not in {0, 1} the conditional and unconditional outputs come from ONE forward pass
    on a batch of 2B (x twice; y, then ``null_class``). Shortcuts, exact and half the cost: 1 is one
    conditional pass, 0 one pass with the null label. With a learned variance (2C channels) only the
    first C channels are guided; the variance channels are the conditional ones.
    """
    if y is None or guidance == 1.0:
        return model(x, t, y)
    null = torch.full_like(y, null_class)
    if guidance == 0.0:
        return model(x, t, null)
    both = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null]))  # one pass on 2B
    out_y, out_null = both.chunk(2, dim=0)
    C = x.shape[1]
    guided = cfg_combine(out_y[:, :C], out_null[:, :C], guidance)
    return guided if out_y.shape[1] == C else torch.cat([guided, out_y[:, C:]], dim=1)


guided_eps = guided_output  # the old name (it returns v too), kept for the oracle test

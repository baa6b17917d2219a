"""Keeping the predicted x_0 inside the data range during sampling.

Early in sampling the predicted x_0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t) divides
by a tiny sqrt(alpha_bar_t), so it can land far outside the data range [-1, 1]; large guidance
makes this worse. Two fixes, both applied to x_0 before it is used to form x_{t-1}:

* static clipping: clamp x_0 to [-1, 1];
* dynamic thresholding (Imagen, Saharia et al. 2022): per image, s = the p-th quantile of |x_0|
  (p = 0.995 in Imagen); if s > 1, clamp x_0 to [-s, s] and divide by s. With s <= 1 (s is
  floored at 1) this is plain clipping; otherwise saturated pixels are pushed inwards rather than
  piled up at +-1.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor


def clip_x0(x0: Tensor, limit: float = 1.0) -> Tensor:
    """Static clipping: clamp every entry to [-limit, limit]. x0: (B, ...). Same shape."""
    return x0.clamp(-limit, limit)


def dynamic_threshold(x0: Tensor, percentile: float = 0.995) -> Tensor:
    """Imagen's dynamic thresholding. x0: (B, C, H, W) (any (B, ...)); returns the same shape.

    s_b = max(1, quantile_p |x0_b|) for each image b; x0_b -> clamp(x0_b, -s_b, s_b) / s_b.
    ``percentile`` p in (0, 1] (the sampler entries check it, ``check_x0_options``).
    """
    flat = x0.reshape(x0.shape[0], -1)
    work = flat.float() if flat.dtype not in (torch.float32, torch.float64) else flat
    s = torch.quantile(work.abs(), percentile, dim=1).clamp(min=1.0).unsqueeze(1)
    return (torch.maximum(torch.minimum(work, s), -s) / s).to(x0.dtype).reshape(x0.shape)


def check_x0_options(clip: bool = False, percentile: Optional[float] = None) -> None:
    """Raise if the samplers' x_0 options ask for both clipping and dynamic thresholding, or for a
    percentile outside (0, 1]. Checked once, where a sampling run starts."""
    if clip and percentile is not None:
        raise ValueError(
            "pass either clip_x0=True or dynamic_threshold=p, not both "
            "(dynamic thresholding already clips to [-1, 1] after rescaling)"
        )
    if percentile is not None and not 0.0 < percentile <= 1.0:
        raise ValueError(f"dynamic threshold percentile must be in (0, 1], got {percentile}")


def constrain_x0(x0: Tensor, clip: bool = False, percentile: Optional[float] = None) -> Tensor:
    """The samplers' option: nothing, clipping (``clip=True``) or dynamic thresholding
    (``percentile=p``; it wins if both are given, which ``check_x0_options`` forbids).
    x0: (B, C, H, W); the same tensor (unchanged) or a new one of its shape."""
    if percentile is not None:
        return dynamic_threshold(x0, percentile)
    if clip:
        return clip_x0(x0)
    return x0

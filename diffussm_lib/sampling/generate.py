"""Generating images from a trained model (notebook 06): which labels, then batched sampling.

``generate`` runs any sampler of the registry (``diffussm_lib.diffusion.registry``) batch after
batch from one seeded generator; ``images.py`` turns the result into files.

Labels
------
``parse_labels(spec, n, num_classes)``: ``None`` -> unconditional (the model gets the null class);
``"all"`` -> every class in equal numbers, ``0, 1, ..., 9, 0, 1, ...`` (n must be a multiple of
the number of classes); ``"3,1,4"`` -> that list repeated cyclically to n labels.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import torch
from torch import nn
from tqdm.auto import tqdm

from ..diffusion import NoiseSchedule, check_sampler, null_class_of, run_sampler
from ..env import model_device


def parse_labels(spec: Union[None, str, Sequence[int]], n: int, num_classes: int) -> Optional[torch.Tensor]:
    """The labels for ``n`` samples: None (unconditional) or long (n,). See the module docstring."""
    if n < 1:
        raise ValueError(f"the number of samples must be >= 1, got {n}")
    if spec is None:
        return None
    if isinstance(spec, str):
        s = spec.strip().lower()
        if s == "all":
            if n % num_classes:
                raise ValueError(f"--labels all asks for every one of the {num_classes} classes in equal numbers: "
                                 f"the number of samples ({n}) must be a multiple of {num_classes}")
            return torch.arange(n, dtype=torch.long) % num_classes
        items = [p.strip() for p in s.split(",") if p.strip()]
        if not items:
            raise ValueError(f"--labels: expected 'all' or a comma-separated list of classes, got {spec!r}")
        values = []
        for it in items:
            try:
                values.append(int(it))
            except ValueError:
                raise ValueError(f"--labels: {it!r} is not an integer class (expected 'all' or e.g. '0,1,7')") from None
    else:
        values = [int(v) for v in spec]
        if not values:
            raise ValueError("labels: empty list")
    bad = [v for v in values if not 0 <= v < num_classes]
    if bad:
        raise ValueError(f"--labels: class {bad[0]} is outside [0, {num_classes - 1}] (the model has {num_classes} classes)")
    base = torch.tensor(values, dtype=torch.long)
    return base.repeat(math.ceil(n / len(values)))[:n]


@torch.no_grad()
def generate(model: nn.Module, schedule: NoiseSchedule, n: int, labels: Optional[torch.Tensor] = None, *,
             image_size: int, channels: int, sampler: str = "ddim", steps: Optional[int] = None,
             guidance: float = 1.0, seed: int = 0, prediction: str = "eps", eta: float = 0.0,
             clip_x0: bool = True, batch_size: int = 64, device: Union[str, torch.device, None] = None,
             progress: bool = False, variance: Optional[str] = None) -> torch.Tensor:
    """``n`` samples from ``model`` as float (n, C, H, W) in [-1, 1] (clipped), on CPU.

    labels: long (n,) or None (unconditional; then ``guidance`` must be 1). sampler "ddim" (default
    50 steps, deterministic with eta = 0) or "ddpm" (default all T steps; fewer = respaced).
    variance: DDPM's reverse variance (default: "learned_range" for a ``learn_sigma`` model, else
    "fixed_small"). All randomness comes from one ``torch.Generator`` seeded with ``seed`` on the
    sampling device, consumed batch after batch: the same seed (and batch size, device) gives the
    same images.
    """
    check_sampler(sampler)
    if guidance < 0:
        raise ValueError(f"guidance scale must be >= 0 (0 = unconditional, 1 = plain conditional, > 1 = "
                         f"guided), got {guidance}")
    if labels is not None and labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), got {tuple(labels.shape)}")
    if labels is None and guidance != 1.0:
        raise ValueError(f"guidance scale {guidance} needs class labels (pass --labels); unconditional "
                         "sampling uses no guidance (scale 1)")
    device = torch.device(device) if device is not None else model_device(model)
    null_class = null_class_of(model)
    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    sched = schedule.to(device)
    was_training = model.training
    model.eval()
    out = []
    starts = range(0, n, batch_size)
    if progress:
        starts = tqdm(starts, desc=f"sampling ({sampler})", unit="batch")
    try:
        for s in starts:
            b = min(batch_size, n - s)
            y = None if labels is None else labels[s:s + b].to(device)
            x = run_sampler(sampler, model, sched, (b, channels, image_size, image_size), y, steps=steps, eta=eta,
                            guidance_scale=guidance, null_class=null_class, prediction=prediction,
                            clip_x0=clip_x0, generator=g, device=device, variance=variance)
            out.append(x.float().clamp(-1, 1).cpu())
    finally:
        model.train(was_training)
    return torch.cat(out)

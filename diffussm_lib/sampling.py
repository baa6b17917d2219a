"""Generating images from a trained model: label parsing, batched sampling, image grids, files.

What ``diffussm sample`` writes into its output folder:

* ``samples.npz`` with ``images`` uint8 (N, H, W, C) in [0, 255] and ``labels`` int64 (N,): the
  class each image was asked for, or -1 for unconditional samples;
* ``grid.png``: all samples in one image (one column per class for ``--labels all``).

Labels
------
``parse_labels(spec, n, num_classes)``: ``None`` -> unconditional (the model gets the null class);
``"all"`` -> every class in equal numbers, ``0, 1, ..., 9, 0, 1, ...`` (n must be a multiple of
the number of classes); ``"3,1,4"`` -> that list repeated cyclically to n labels.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from .data import to_uint8
from .diffusion import NoiseSchedule, ddim_sample, ddpm_sample

SAMPLERS = ("ddpm", "ddim")
DDIM_DEFAULT_STEPS = 50            # ``generate``'s DDIM steps when none are given (DDPM: all T)


def steps_label(sampler: str, steps: Optional[int]) -> str:
    """How many sampling steps ``generate(sampler=..., steps=...)`` takes, as text for reports."""
    if steps:
        return str(steps)
    return str(DDIM_DEFAULT_STEPS) if sampler == "ddim" else "all"

UNCONDITIONAL_LABEL = -1   # the value stored in samples.npz for an image sampled without a label


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
             progress: bool = False) -> torch.Tensor:
    """``n`` samples from ``model`` as float (n, C, H, W) in [-1, 1] (clipped), on CPU.

    labels: long (n,) or None (unconditional; then ``guidance`` must be 1). sampler "ddim" (default
    50 steps, deterministic with eta = 0) or "ddpm" (default all T steps; fewer = respaced).
    All randomness comes from one ``torch.Generator`` seeded with ``seed`` on the sampling device,
    consumed batch after batch: the same seed (and batch size, device) gives the same images.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    if labels is not None and labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), got {tuple(labels.shape)}")
    if labels is None and guidance != 1.0:
        raise ValueError(f"guidance scale {guidance} needs class labels (pass --labels); unconditional "
                         "sampling uses no guidance (scale 1)")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    null_class = getattr(model, "null_class", getattr(model, "num_classes", 10))
    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    sched = schedule.to(device)
    was_training = model.training
    model.eval()
    out = []
    starts = range(0, n, batch_size)
    if progress:
        from tqdm.auto import tqdm
        starts = tqdm(starts, desc=f"sampling ({sampler})", unit="batch")
    try:
        for s in starts:
            b = min(batch_size, n - s)
            y = None if labels is None else labels[s:s + b].to(device)
            common = dict(guidance_scale=guidance, null_class=null_class, prediction=prediction, clip_x0=clip_x0,
                          generator=g, device=device)
            shape = (b, channels, image_size, image_size)
            if sampler == "ddim":
                x = ddim_sample(model, sched, shape, y, steps=DDIM_DEFAULT_STEPS if steps is None else steps, eta=eta, **common)
            else:
                x = ddpm_sample(model, sched, shape, y, steps=steps, **common)
            out.append(x.float().clamp(-1, 1).cpu())
    finally:
        model.train(was_training)
    return torch.cat(out)


# --------------------------------------------------------------------------------------------
# Images: uint8, grids, files
# --------------------------------------------------------------------------------------------
def to_uint8_nhwc(images: torch.Tensor) -> np.ndarray:
    """float (N, C, H, W) in [-1, 1] -> uint8 numpy (N, H, W, C)."""
    if images.dim() != 4:
        raise ValueError(f"images must have shape (N, C, H, W), got {tuple(images.shape)}")
    return to_uint8(images.detach().cpu()).permute(0, 2, 3, 1).contiguous().numpy()


def make_grid(images: Union[torch.Tensor, np.ndarray], ncol: Optional[int] = None, pad: int = 2,
              pad_value: int = 255) -> np.ndarray:
    """Tile images into one picture: uint8 (N, H, W, C) numpy or float (N, C, H, W) tensor in
    [-1, 1] -> uint8 (rows (H + pad) + pad, ncol (W + pad) + pad, C). ``ncol`` default: ceil(sqrt N)."""
    if isinstance(images, torch.Tensor):
        images = to_uint8_nhwc(images)
    images = np.asarray(images)
    if images.ndim != 4 or images.dtype != np.uint8:
        raise ValueError(f"make_grid expects uint8 (N, H, W, C) or float (N, C, H, W), got {images.dtype} {images.shape}")
    N, H, W, C = images.shape
    ncol = ncol or max(1, math.ceil(math.sqrt(N)))
    nrow = math.ceil(N / ncol)
    grid = np.full((nrow * (H + pad) + pad, ncol * (W + pad) + pad, C), pad_value, dtype=np.uint8)
    for i in range(N):
        r, c = divmod(i, ncol)
        grid[pad + r * (H + pad): pad + r * (H + pad) + H, pad + c * (W + pad): pad + c * (W + pad) + W] = images[i]
    return grid


def save_png(array: np.ndarray, path: Union[str, os.PathLike], scale: int = 1) -> Path:
    """Save uint8 (H, W, C) with C in {1, 3} as a PNG (nearest-neighbour upscaled by ``scale``)."""
    from PIL import Image

    from .checkpoint import atomic_write

    a = np.asarray(array)
    if scale > 1:
        a = a.repeat(scale, axis=0).repeat(scale, axis=1)
    img = Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a)
    return atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))


def save_samples(out_dir: Union[str, os.PathLike], images: torch.Tensor, labels: Optional[torch.Tensor],
                 ncol: Optional[int] = None) -> tuple[Path, Path]:
    """Write ``samples.npz`` (images uint8 (N, H, W, C), labels int64 (N,), -1 = unconditional)
    and ``grid.png`` into ``out_dir``. images: float (N, C, H, W) in [-1, 1]. Returns both paths."""
    from .checkpoint import atomic_write

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    arr = to_uint8_nhwc(images)
    lab = (np.full(len(arr), UNCONDITIONAL_LABEL, dtype=np.int64) if labels is None
           else labels.cpu().numpy().astype(np.int64))

    def write_npz(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, images=arr, labels=lab)

    npz = atomic_write(out / "samples.npz", write_npz)
    grid = save_png(make_grid(arr, ncol=ncol), out / "grid.png", scale=2)
    return npz, grid


def grid_columns(labels: Optional[torch.Tensor], num_classes: int, n: int) -> Optional[int]:
    """One column per class when the labels cycle through all classes (``--labels all``)."""
    if labels is not None and n % num_classes == 0 and torch.equal(labels, torch.arange(n) % num_classes):
        return num_classes
    return None

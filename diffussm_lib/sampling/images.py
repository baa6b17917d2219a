"""Images out of the samplers: uint8 arrays, grids, PNG files and what ``diffussm sample`` writes.

Its output folder gets:

* ``samples.npz`` with ``images`` uint8 (N, H, W, C) in [0, 255] and ``labels`` int64 (N,): the
  class each image was asked for, or -1 for unconditional samples;
* ``grid.png``: all samples in one image (one column per class for ``--labels all``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
from PIL import Image

from ..atomic import atomic_write
from ..data import to_uint8

UNCONDITIONAL_LABEL = -1  # the value stored in samples.npz for an image sampled without a label


# --------------------------------------------------------------------------------------------
def to_uint8_nhwc(images: torch.Tensor) -> np.ndarray:
    """float (N, C, H, W) in [-1, 1] -> uint8 numpy (N, H, W, C)."""
    if images.dim() != 4:
        raise ValueError(f"images must have shape (N, C, H, W), got {tuple(images.shape)}")
    return to_uint8(images.detach().cpu()).permute(0, 2, 3, 1).contiguous().numpy()


def make_grid(
    images: Union[torch.Tensor, np.ndarray],
    ncol: Optional[int] = None,
    pad: int = 2,
    pad_value: int = 255,
) -> np.ndarray:
    """Tile images into one picture: uint8 (N, H, W, C) numpy or float (N, C, H, W) tensor in
    [-1, 1] -> uint8 (rows (H + pad) + pad, ncol (W + pad) + pad, C). ``ncol`` default: ceil(sqrt N)."""
    if isinstance(images, torch.Tensor):
        images = to_uint8_nhwc(images)
    images = np.asarray(images)
    if images.ndim != 4 or images.dtype != np.uint8:
        raise ValueError(
            f"make_grid expects uint8 (N, H, W, C) or float (N, C, H, W), got {images.dtype} {images.shape}"
        )
    N, H, W, C = images.shape
    ncol = ncol or max(1, math.ceil(math.sqrt(N)))
    nrow = math.ceil(N / ncol)
    grid = np.full((nrow * (H + pad) + pad, ncol * (W + pad) + pad, C), pad_value, dtype=np.uint8)
    for i in range(N):
        r, c = divmod(i, ncol)
        grid[
            pad + r * (H + pad) : pad + r * (H + pad) + H,
            pad + c * (W + pad) : pad + c * (W + pad) + W,
        ] = images[i]
    return grid


def save_png(array: np.ndarray, path: Union[str, os.PathLike], scale: int = 1) -> Path:
    """Save uint8 (H, W, C) with C in {1, 3} as a PNG (nearest-neighbour upscaled by ``scale``)."""
    a = np.asarray(array)
    if scale > 1:
        a = a.repeat(scale, axis=0).repeat(scale, axis=1)
    img = Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a)
    return atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))


def save_samples(
    out_dir: Union[str, os.PathLike],
    images: torch.Tensor,
    labels: Optional[torch.Tensor],
    ncol: Optional[int] = None,
) -> tuple[Path, Path]:
    """Write ``samples.npz`` (images uint8 (N, H, W, C), labels int64 (N,), -1 = unconditional)
    and ``grid.png`` into ``out_dir``. images: float (N, C, H, W) in [-1, 1]. Returns both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    arr = to_uint8_nhwc(images)
    lab = (
        np.full(len(arr), UNCONDITIONAL_LABEL, dtype=np.int64)
        if labels is None
        else labels.cpu().numpy().astype(np.int64)
    )

    def write_npz(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, images=arr, labels=lab)

    npz = atomic_write(out / "samples.npz", write_npz)
    grid = save_png(make_grid(arr, ncol=ncol), out / "grid.png", scale=2)
    return npz, grid


def grid_columns(labels: Optional[torch.Tensor], num_classes: int, n: int) -> Optional[int]:
    """One column per class when the labels cycle through all classes (``--labels all``)."""
    if (
        labels is not None
        and n % num_classes == 0
        and torch.equal(labels, torch.arange(n) % num_classes)
    ):
        return num_classes
    return None

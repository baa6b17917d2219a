"""Drawing the denoising viewer's frames (notebook 06): pictures, PNG bytes, a GIF and a static strip.

``render_frame`` puts the grid of x_t beside the grid of predicted x_0 with a one-line header; the
static fallbacks, for readers on GitHub or without a widget frontend, are ``save_gif`` (an animated
GIF, Pillow) and ``strip_figure`` (a few frames in a row, matplotlib).
"""
from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..atomic import atomic_write
from ..diffusion import NoiseSchedule
from .frames import ViewerFrames
from .images import make_grid, to_uint8_nhwc


# --------------------------------------------------------------------------------------------
def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: a fixed bitmap font
        return ImageFont.load_default()


def render_frame(frames: ViewerFrames, k: int, *, ncol: Optional[int] = None, scale: int = 3,
                 header: bool = True) -> np.ndarray:
    """Frame ``k`` as one picture: the grid of x_t (left) beside the grid of predicted x_0 (right),
    each image clipped to [-1, 1], upscaled ``scale`` times (nearest neighbour), with a one-line
    header naming the panels and the timestep. Returns uint8 (H', W') (grey) or (H', W', 3) (RGB)."""
    if not -len(frames) <= k < len(frames):
        raise IndexError(f"frame {k} out of range: there are {len(frames)} frames")
    B = frames.xs.shape[1]
    ncol = ncol or min(B, 5)
    left = make_grid(to_uint8_nhwc(frames.xs[k]), ncol=ncol)
    right = make_grid(to_uint8_nhwc(frames.x0_preds[k]), ncol=ncol)
    gap = np.full((left.shape[0], 6, left.shape[2]), 255, dtype=np.uint8)
    body = np.concatenate([left, gap, right], axis=1)
    if scale > 1:
        body = body.repeat(scale, axis=0).repeat(scale, axis=1)
    body = body[..., 0] if body.shape[-1] == 1 else body
    if not header:
        return body
    fsize = max(10, 4 * scale)
    h = fsize + 8
    mode = "L" if body.ndim == 2 else "RGB"
    canvas = Image.new(mode, (body.shape[1], body.shape[0] + h), 255 if mode == "L" else (255, 255, 255))
    canvas.paste(Image.fromarray(body), (0, h))
    draw = ImageDraw.Draw(canvas)
    t = int(frames.timesteps[k])
    black = 0 if mode == "L" else (0, 0, 0)
    font = _font(fsize)
    draw.text((4, 3), "x_t, t = %d" % t if t >= 0 else "final sample", fill=black, font=font)
    draw.text((left.shape[1] * scale + 6 * scale + 4, 3), "predicted x_0", fill=black, font=font)
    return np.asarray(canvas)


def render_frames(frames: ViewerFrames, **kw) -> list:
    """All frames as PIL images (see ``render_frame`` for the keyword arguments)."""
    return [Image.fromarray(render_frame(frames, k, **kw)) for k in range(len(frames))]


def frame_png(frames: ViewerFrames, k: int, **kw) -> bytes:
    """Frame ``k`` (see ``render_frame``) encoded as PNG bytes, what the viewer's image displays."""
    buf = io.BytesIO()
    Image.fromarray(render_frame(frames, k, **kw)).save(buf, format="PNG")
    return buf.getvalue()


def save_gif(frames: Union[ViewerFrames, Sequence], path: Union[str, os.PathLike], *, fps: float = 8.0,
             hold_last: float = 1.5, loop: int = 0, **render_kw) -> Path:
    """Write the frames as an animated GIF with exactly one GIF frame per frame; returns the path.

    frames: ``ViewerFrames`` (rendered with ``render_frame(**render_kw)``) or a sequence of pictures
    (PIL images or uint8 arrays (H, W) / (H, W, 3), all the same size). Each frame shows for
    1 / ``fps`` seconds, the last one for ``hold_last`` seconds more; ``loop=0`` loops forever.
    The file is written atomically (a temporary file, then a rename).
    """
    if isinstance(frames, ViewerFrames):
        images = render_frames(frames, **render_kw)
    else:
        images = [f if isinstance(f, Image.Image) else Image.fromarray(np.asarray(f)) for f in frames]
    if not images:
        raise ValueError("save_gif: no frames")
    if len({im.size for im in images}) > 1:
        raise ValueError(f"save_gif: frames have different sizes {sorted({im.size for im in images})}")
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    ms = max(20, int(round(1000 / fps)))
    durations = [ms] * len(images)
    durations[-1] = ms + int(round(1000 * hold_last))
    # Pillow merges a frame identical to the one before it into one GIF frame (adding up their
    # durations); a one-pixel marker that differs between neighbours keeps one GIF frame per frame.
    images = [im.convert("L") if im.mode not in ("L", "RGB", "P") else im for im in images]
    marked = []
    for i, im in enumerate(images):
        im = im.copy()
        im.putpixel((im.size[0] - 1, im.size[1] - 1), (254 if i % 2 else 255) if im.mode != "RGB"
                    else ((254, 254, 254) if i % 2 else (255, 255, 255)))
        marked.append(im)
    first, rest = marked[0], marked[1:]
    return atomic_write(path, lambda tmp: first.save(tmp, format="GIF", save_all=True, append_images=rest,
                                                     duration=durations, loop=loop, optimize=False))


def strip_figure(frames: ViewerFrames, num: int = 8, digits: Optional[Sequence[int]] = None, *,
                 schedule: Optional[NoiseSchedule] = None, title: Optional[str] = None, cell: float = 1.3):
    """A static strip of ``num`` evenly spaced frames (always the first and the last): top row x_t,
    bottom row predicted x_0, each cell a small grid of the batch entries ``digits`` (default: up
    to 4). Returns the matplotlib Figure (2 x num axes)."""
    import matplotlib.pyplot as plt

    F = len(frames)
    num = max(1, min(num, F))
    idx = sorted({int(round(i)) for i in np.linspace(0, F - 1, num)})
    B = frames.xs.shape[1]
    digits = list(range(min(B, 4))) if digits is None else list(digits)
    ncol = max(1, math.ceil(math.sqrt(len(digits))))
    fig, axes = plt.subplots(2, len(idx), figsize=(cell * len(idx), 2 * cell + 0.4), squeeze=False)
    for j, k in enumerate(idx):
        for row, data in enumerate((frames.xs, frames.x0_preds)):
            grid = make_grid(to_uint8_nhwc(data[k][digits]), ncol=ncol, pad=1)
            ax = axes[row, j]
            ax.imshow(grid[..., 0] if grid.shape[-1] == 1 else grid, cmap="gray", vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
        t = int(frames.timesteps[k])
        axes[0, j].set_title(f"t = {t}" if t >= 0 else "final", fontsize=9)
    axes[0, 0].set_ylabel("x_t", fontsize=9)
    axes[1, 0].set_ylabel("pred. x_0", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig

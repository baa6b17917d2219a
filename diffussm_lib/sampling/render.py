"""Drawing the denoising viewer's frames (notebook 06): pictures, PNG bytes, a GIF and a static strip.

``render_frame`` draws one frame as one picture, top to bottom:

* a caption line (``ViewerFrames.caption``: "step 7/10, t = 420, log-SNR = -1.3");
* the panels side by side, each a grid of the B images: the sample x_t, the predicted x_0 and, when
  the frames carry it, the guidance direction (``guidance_panel``);
* given the schedule, the noise-level timeline (``noise_timeline``): log-SNR against t, a dot for
  every frame of the run and a cursor at this one.

The static fallbacks, for readers on GitHub or without a widget frontend, are ``save_gif`` (an
animated GIF, Pillow) and ``strip_figure`` (a few frames in a row, matplotlib).
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from ..atomic import atomic_write
from ..diffusion import NoiseSchedule
from .frames import ViewerFrames, log_snr
from .images import make_grid, to_uint8_nhwc

PANEL_GAP = 6  # white pixels between two panels (before scaling)
LOG_SNR_RANGE = (
    -15.0,
    15.0,
)  # the timeline's vertical axis at most; values outside are drawn at its edge


# --------------------------------------------------------------------------------------------
def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: a fixed bitmap font
        return ImageFont.load_default()


def guidance_panel(direction: torch.Tensor) -> torch.Tensor:
    """The guidance direction eps_y - eps_null (B, C, H, W) as images in [-1, 1] (B, C, H, W) for
    display: each image divided by its largest absolute value, with the sign flipped so that white
    marks where guidance adds ink to the predicted x_0 (x_0 = (x_t - sqrt(1 - alpha_bar) eps) /
    sqrt(alpha_bar) falls where eps rises), black where it removes ink, mid-grey no change."""
    d = -direction.float()
    scale = d.flatten(1).abs().amax(dim=1).clamp(min=1e-12).view(-1, *[1] * (d.dim() - 1))
    return d / scale


def frame_panels(frames: ViewerFrames, k: int) -> list:
    """The panels of frame ``k`` as (title, images (B, C, H, W) in [-1, 1]): x_t, the predicted x_0
    and, when ``frames.guidance_dirs`` is set, the guidance direction (``guidance_panel``)."""
    t = int(frames.timesteps[k])
    panels = [
        ("x_t" if t >= 0 else "final sample", frames.xs[k]),
        ("predicted x_0", frames.x0_preds[k]),
    ]
    if frames.guidance_dirs is not None:
        panels.append(("guidance direction", guidance_panel(frames.guidance_dirs[k])))
    return panels


def noise_timeline(
    schedule: NoiseSchedule,
    timesteps: torch.Tensor,
    k: int,
    width: int,
    height: int = 48,
    font_size: int = 10,
) -> np.ndarray:
    """A small plot of the noise level against t: the log-SNR curve of ``schedule`` from t = T-1
    (left, pure noise) to t = 0 (right, clean), a dashed line at log-SNR 0 (signal = noise), a grey
    dot at each frame's timestep (``timesteps`` (F,), -1 = the final sample, drawn at the right
    edge) and a black cursor at frame ``k``. Returns uint8 (height, width), grey on white."""
    T = schedule.T
    im = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(im)
    font = _font(font_size)
    left, right, top, bottom = 4, width - 5, 3, height - font_size - 5
    ends = log_snr(schedule, torch.tensor([T - 1, 0])).tolist()  # the curve's own range, clipped
    lo, hi = max(ends[0], LOG_SNR_RANGE[0]), min(ends[1], LOG_SNR_RANGE[1])

    def x_of(t: int) -> float:
        return left + (right - left) * (T - 1 - max(t, 0)) / max(T - 1, 1)

    def y_of(v: float) -> float:
        v = min(max(v, lo), hi)
        return bottom - (bottom - top) * (v - lo) / (hi - lo)

    ts = torch.linspace(T - 1, 0, min(T, 200)).round().long()
    curve = log_snr(schedule, ts).tolist()
    draw.line([(x_of(int(t)), y_of(v)) for t, v in zip(ts.tolist(), curve)], fill=150, width=1)
    for x in range(left, right, 6):  # log-SNR = 0: signal = noise
        draw.line([(x, y_of(0.0)), (x + 2, y_of(0.0))], fill=190)
    levels = log_snr(schedule, timesteps).tolist()
    for t, v in zip(timesteps.tolist(), levels):
        x, y = x_of(t), y_of(v)
        draw.ellipse([x - 1.5, y - 1.5, x + 1.5, y + 1.5], fill=120)
    t_k, v_k = int(timesteps[k]), levels[k]
    x, y = x_of(t_k), y_of(v_k)
    draw.line([(x, top), (x, bottom)], fill=0, width=1)
    draw.ellipse([x - 3.5, y - 3.5, x + 3.5, y + 3.5], fill=0)
    label_y = bottom + 3
    draw.text((left, label_y), f"t = {T - 1}: noise", fill=0, font=font)
    mid = "log-SNR = log(alpha_bar / (1 - alpha_bar)) against t; dashes: signal = noise"
    if draw.textlength(mid, font=font) < (right - left) * 0.6:
        draw.text(
            ((left + right - draw.textlength(mid, font=font)) / 2, label_y), mid, fill=90, font=font
        )
    end = "t = 0: clean"
    draw.text((right - draw.textlength(end, font=font), label_y), end, fill=0, font=font)
    return np.asarray(im)


def render_frame(
    frames: ViewerFrames,
    k: int,
    *,
    ncol: Optional[int] = None,
    scale: int = 3,
    header: bool = True,
    schedule: Optional[NoiseSchedule] = None,
) -> np.ndarray:
    """Frame ``k`` as one picture: the panels of ``frame_panels`` side by side, each a grid of the B
    images (``ncol`` columns, default min(B, 5)) clipped to [-1, 1] and upscaled ``scale`` times
    (nearest neighbour); with ``header``, a caption line and the panel titles above them and, given
    ``schedule``, the noise timeline below. Returns uint8 (H', W') (grey) or (H', W', 3) (RGB)."""
    if not -len(frames) <= k < len(frames):
        raise IndexError(f"frame {k} out of range: there are {len(frames)} frames")
    k = range(len(frames))[k]
    B = frames.xs.shape[1]
    ncol = ncol or min(B, 5)
    panels = frame_panels(frames, k)
    grids = [make_grid(to_uint8_nhwc(images.clamp(-1, 1)), ncol=ncol) for _, images in panels]
    gap = np.full((grids[0].shape[0], PANEL_GAP, grids[0].shape[2]), 255, dtype=np.uint8)
    body = np.concatenate([part for g in grids for part in (g, gap)][:-1], axis=1)
    if scale > 1:
        body = body.repeat(scale, axis=0).repeat(scale, axis=1)
    body = body[..., 0] if body.shape[-1] == 1 else body
    if not header:
        return body
    fsize = max(10, 4 * scale)
    line = fsize + 6
    timeline = None
    if schedule is not None:
        timeline = noise_timeline(
            schedule,
            frames.timesteps,
            k,
            body.shape[1],
            height=20 * scale + fsize + 12,
            font_size=max(10, 3 * scale),
        )
    mode = "L" if body.ndim == 2 else "RGB"
    white = 255 if mode == "L" else (255, 255, 255)
    black = 0 if mode == "L" else (0, 0, 0)
    extra = 0 if timeline is None else timeline.shape[0] + 4
    canvas = Image.new(mode, (body.shape[1], body.shape[0] + 2 * line + extra), white)
    canvas.paste(Image.fromarray(body), (0, 2 * line))
    draw = ImageDraw.Draw(canvas)
    font = _font(fsize)
    draw.text((4, 3), frames.caption(k, schedule), fill=black, font=font)
    panel_w = grids[0].shape[1] * scale + PANEL_GAP * scale
    for i, (title, _) in enumerate(panels):
        draw.text((i * panel_w + 4, line + 3), title, fill=black, font=font)
    if timeline is not None:
        canvas.paste(Image.fromarray(timeline).convert(mode), (0, 2 * line + body.shape[0] + 4))
    return np.asarray(canvas)


def render_frames(frames: ViewerFrames, **kw) -> list:
    """All frames as PIL images (see ``render_frame`` for the keyword arguments)."""
    return [Image.fromarray(render_frame(frames, k, **kw)) for k in range(len(frames))]


def frame_png(frames: ViewerFrames, k: int, **kw) -> bytes:
    """Frame ``k`` (see ``render_frame``) encoded as PNG bytes, what the viewer's image displays."""
    buf = io.BytesIO()
    Image.fromarray(render_frame(frames, k, **kw)).save(buf, format="PNG")
    return buf.getvalue()


def save_gif(
    frames: Union[ViewerFrames, Sequence],
    path: Union[str, os.PathLike],
    *,
    fps: float = 8.0,
    hold_last: float = 1.5,
    loop: int = 0,
    **render_kw,
) -> Path:
    """Write the frames as an animated GIF with exactly one GIF frame per frame; returns the path.

    frames: ``ViewerFrames`` (rendered with ``render_frame(**render_kw)``) or a sequence of pictures
    (PIL images or uint8 arrays (H, W) / (H, W, 3), all the same size). Each frame shows for
    1 / ``fps`` seconds, the last one for ``hold_last`` seconds more; ``loop=0`` loops forever.
    The file is written atomically (a temporary file, then a rename).
    """
    if isinstance(frames, ViewerFrames):
        images = render_frames(frames, **render_kw)
    else:
        images = [
            f if isinstance(f, Image.Image) else Image.fromarray(np.asarray(f)) for f in frames
        ]
    if not images:
        raise ValueError("save_gif: no frames")
    if len({im.size for im in images}) > 1:
        raise ValueError(
            f"save_gif: frames have different sizes {sorted({im.size for im in images})}"
        )
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
        im.putpixel(
            (im.size[0] - 1, im.size[1] - 1),
            (254 if i % 2 else 255)
            if im.mode != "RGB"
            else ((254, 254, 254) if i % 2 else (255, 255, 255)),
        )
        marked.append(im)
    first, rest = marked[0], marked[1:]
    return atomic_write(
        path,
        lambda tmp: first.save(
            tmp,
            format="GIF",
            save_all=True,
            append_images=rest,
            duration=durations,
            loop=loop,
            optimize=False,
        ),
    )


def strip_figure(
    frames: ViewerFrames,
    num: int = 8,
    digits: Optional[Sequence[int]] = None,
    *,
    schedule: Optional[NoiseSchedule] = None,
    title: Optional[str] = None,
    cell: float = 1.3,
):
    """A static strip of ``num`` evenly spaced frames (always the first and the last): top row x_t,
    bottom row predicted x_0, each cell a small grid of the batch entries ``digits`` (default: up
    to 4), titled with its timestep (and, given ``schedule``, its log-SNR). Returns the matplotlib
    Figure (2 x num axes)."""
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
        title_k = f"t = {t}" if t >= 0 else "final"
        if schedule is not None and t >= 0:
            title_k += f"\nlog-SNR {float(log_snr(schedule, frames.timesteps[k : k + 1])[0]):.1f}"
        axes[0, j].set_title(title_k, fontsize=9)
    axes[0, 0].set_ylabel("x_t", fontsize=9)
    axes[1, 0].set_ylabel("pred. x_0", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig

"""The denoising viewer (notebook 06): watch a batch of digits emerge from noise, step by step.

What it shows
-------------
A sampler walks x_T -> x_{t_1} -> ... -> x_0. At every step the model also predicts the clean image
x_0 it is aiming at. The viewer shows, for a batch of B digits, the current sample x_t (left) and
the predicted x_0 (right) side by side, with

* a **step slider** and a **Play** button linked to it (the animation runs in the browser);
* a **class selector** (all digits 0-9, or one class for the whole batch) and a
  **guidance-scale slider** (classifier-free guidance w).

Frames are computed once per (class, guidance) setting, from the sampler's own trajectory
(``return_trajectory=True``, see ``diffussm_lib.diffusion.SampleResult``), and encoded as PNGs once;
the step slider only selects among them, so it is instant. Changing the class or the guidance scale
samples again from the *same* initial noise (and the same per-step noise for DDPM), so what changes
is the effect of the setting alone; settings already seen come from a small cache.

Frames
------
``ViewerFrames`` holds F = R + 1 frames for R recorded sampler steps: frame k < R is (x_t, predicted
x_0) at the recorded timestep t_k (frame 0: t = T - 1 and x_T, pure noise); the last frame, at
"t = -1", is (final sample, final sample), exactly the tensor the sampler returns. For long runs
(DDPM with T = 1000 steps) every ``stride``-th step is recorded so that F stays near ``max_frames``.

Static fallbacks, for readers on GitHub or without a widget frontend: ``save_gif`` writes the same
frames as an animated GIF (Pillow), ``strip_figure`` draws a few of them in a row (matplotlib).

The model is any denoiser ``model(x (B, C, H, W), t long (B,), y long (B,) or None) -> (B, C or 2C,
H, W)`` (eps or v prediction); its ``null_class`` attribute (default 10) is the "no label" class
used for guidance.
"""
from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from .diffusion import DEFAULT_NULL_CLASS, NoiseSchedule, SampleResult, ddim_sample, ddpm_sample
from .sampling import make_grid, to_uint8_nhwc

SAMPLERS = ("ddim", "ddpm")
ALL_CLASSES = -1   # class-selector value meaning "labels 0, 1, ..., 9, 0, 1, ..."


# --------------------------------------------------------------------------------------------
# Frames
# --------------------------------------------------------------------------------------------
@dataclass
class ViewerFrames:
    """The F frames of one sampling run (all tensors float32 / long on CPU).

    timesteps: (F,) long, decreasing: the recorded timesteps, then -1 for the final frame.
    xs:        (F, B, C, H, W): xs[k] the sample x_t at timesteps[k]; xs[0] is the initial noise x_T,
               xs[-1] the sampler's output.
    x0_preds:  (F, B, C, H, W): the model's predicted x_0 at timesteps[k] (after clipping, as the
               sampler used it); x0_preds[-1] is the sampler's output.
    labels:    (B,) long, or None (unconditional).
    sampler, guidance, steps: how the frames were made (steps = the sampler's number of steps S).
    """

    timesteps: Tensor
    xs: Tensor
    x0_preds: Tensor
    labels: Optional[Tensor] = None
    sampler: str = "ddim"
    guidance: float = 1.0
    steps: int = 0

    def __len__(self) -> int:
        return int(self.timesteps.shape[0])

    @property
    def final(self) -> Tensor:
        """The sampler's output (B, C, H, W)."""
        return self.xs[-1]

    def caption(self, k: int, schedule: Optional[NoiseSchedule] = None) -> str:
        """One line describing frame ``k`` (its timestep and, given the schedule, the noise level)."""
        t = int(self.timesteps[k])
        if t < 0:
            return f"frame {k}/{len(self) - 1}: final sample (t = -1, clean)"
        s = f"frame {k}/{len(self) - 1}: t = {t}"
        if schedule is not None:
            ab = float(schedule.alpha_bar[t])
            s += f", signal sqrt(alpha_bar) = {math.sqrt(ab):.3f}, noise sqrt(1 - alpha_bar) = {math.sqrt(1 - ab):.3f}"
        return s


def frames_from_result(result: SampleResult, *, sampler: str = "ddim", guidance: float = 1.0,
                       steps: int = 0) -> ViewerFrames:
    """``ViewerFrames`` from a sampler's ``SampleResult`` (``return_trajectory=True``): the R recorded
    steps (xs, x0_preds (R, B, C, H, W)) plus a final frame holding ``result.images`` (B, C, H, W)."""
    final = result.images.detach().float().cpu()
    if result.xs.dim() != 5 or result.xs.shape[1:] != final.shape:
        raise ValueError(f"trajectory xs of shape {tuple(result.xs.shape)} does not fit images of shape "
                         f"{tuple(final.shape)}: expected (R, B, C, H, W)")
    ts = torch.cat([result.timesteps.long().cpu(), torch.tensor([-1])])
    xs = torch.cat([result.xs.float().cpu(), final[None]])
    x0 = torch.cat([result.x0_preds.float().cpu(), final[None]])
    return ViewerFrames(timesteps=ts, xs=xs, x0_preds=x0, labels=result.y, sampler=sampler,
                        guidance=float(guidance), steps=int(steps))


def _model_device(model) -> torch.device:
    try:
        return next(model.parameters()).device
    except (AttributeError, StopIteration):
        return torch.device("cpu")


@torch.no_grad()
def compute_frames(model, schedule: NoiseSchedule, labels: Optional[Tensor], *, image_size: int = 28,
                   channels: Optional[int] = None, sampler: str = "ddim", steps: Optional[int] = None,
                   guidance: float = 1.0, seed: int = 0, x_T: Optional[Tensor] = None, eta: float = 0.0,
                   prediction: str = "eps", clip_x0: bool = True, max_frames: int = 100,
                   device: Union[str, torch.device, None] = None) -> ViewerFrames:
    """Sample once with the trajectory recorded and return its frames.

    labels: long (B,) or None (unconditional: then ``guidance`` must be 1). The batch is
    (B, C, image_size, image_size) with C = ``channels`` (default ``model.in_channels``, else 1);
    with labels None, B = 1 unless ``x_T`` (B, C, H, W) is given. sampler "ddim" (default 50
    steps, ``eta`` 0 = deterministic) or "ddpm" (default all T steps; fewer = respaced).
    All randomness comes from a ``torch.Generator`` seeded with ``seed`` on the sampling device and
    is consumed exactly as ``ddim_sample`` / ``ddpm_sample`` called with that generator consume it,
    so the last frame equals their output. At most about ``max_frames`` steps are recorded (every
    ``ceil(S / max_frames)``-th, plus the last). Returns ``ViewerFrames`` on CPU.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    if max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    device = torch.device(device) if device is not None else _model_device(model)
    if x_T is not None:
        x_T = x_T.to(device)
        shape = None
        B = x_T.shape[0]
    else:
        C = channels if channels is not None else int(getattr(model, "in_channels", 1))
        B = 1 if labels is None else int(labels.shape[0])
        shape = (B, C, image_size, image_size)
    if labels is not None:
        labels = torch.as_tensor(labels).long()
        if labels.shape != (B,):
            raise ValueError(f"labels must have shape (B,) = ({B},), got {tuple(labels.shape)}")
        labels = labels.to(device)
    S = (50 if steps is None else steps) if sampler == "ddim" else (schedule.T if steps is None else steps)
    stride = max(1, math.ceil(S / max_frames))
    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    null_class = int(getattr(model, "null_class", DEFAULT_NULL_CLASS))
    common = dict(guidance_scale=float(guidance), null_class=null_class, prediction=prediction, clip_x0=clip_x0,
                  generator=g, x_T=x_T, device=device, return_trajectory=True, trajectory_stride=stride)
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    try:
        sched = schedule.to(device)
        if sampler == "ddim":
            res = ddim_sample(model, sched, shape, labels, steps=S, eta=eta, **common)
        else:
            res = ddpm_sample(model, sched, shape, labels, steps=S, **common)
    finally:
        if was_training:
            model.train()
    return frames_from_result(res, sampler=sampler, guidance=guidance, steps=S)


def viewer_labels(choice: int, n: int, num_classes: int = 10) -> Tensor:
    """The batch labels for a class-selector value: ``ALL_CLASSES`` (-1) -> 0, 1, ..., num_classes-1,
    0, 1, ... (n of them); a class c -> n copies of c. Returns long (n,)."""
    if choice == ALL_CLASSES:
        return torch.arange(n, dtype=torch.long) % num_classes
    if not 0 <= choice < num_classes:
        raise ValueError(f"class must be {ALL_CLASSES} (all) or in [0, {num_classes - 1}], got {choice}")
    return torch.full((n,), int(choice), dtype=torch.long)


# --------------------------------------------------------------------------------------------
# Rendering frames as pictures
# --------------------------------------------------------------------------------------------
def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: a fixed bitmap font
        return ImageFont.load_default()


def render_frame(frames: ViewerFrames, k: int, *, ncol: Optional[int] = None, scale: int = 3,
                 header: bool = True) -> np.ndarray:
    """Frame ``k`` as one picture: the grid of x_t (left) beside the grid of predicted x_0 (right),
    each image clipped to [-1, 1], upscaled ``scale`` times (nearest neighbour), with a one-line
    header naming the panels and the timestep. Returns uint8 (H', W') (grey) or (H', W', 3) (RGB)."""
    from PIL import Image, ImageDraw

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
    from PIL import Image

    return [Image.fromarray(render_frame(frames, k, **kw)) for k in range(len(frames))]


def frame_png(frames: ViewerFrames, k: int, **kw) -> bytes:
    """Frame ``k`` (see ``render_frame``) encoded as PNG bytes, what the viewer's image displays."""
    from PIL import Image

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
    from PIL import Image

    from .checkpoint import atomic_write

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


# --------------------------------------------------------------------------------------------
# The widget
# --------------------------------------------------------------------------------------------
def _widgets():
    try:
        import ipywidgets
    except ImportError as e:  # pragma: no cover - ipywidgets is in the notebooks/test extras
        raise ImportError("the denoising viewer needs ipywidgets: pip install -e '.[notebooks]'") from e
    return ipywidgets


class DenoisingViewer:
    """The viewer's state and controls; ``.widget`` is the ipywidgets box to display.

    Built by ``denoising_viewer``. Controls (ipywidgets): ``step`` (IntSlider over the frames),
    ``play`` (Play, linked to ``step`` in the browser), ``class_select`` (Dropdown: all digits or one
    class), ``guidance`` (FloatSlider, w), ``image`` (Image, PNG bytes of the current frame),
    ``status`` (HTML caption). ``frames`` / ``pngs`` hold the current setting's frames and their PNGs.
    The CSS classes ``diffussm-viewer``, ``diffussm-viewer-step`` and ``diffussm-viewer-image`` name
    the box, the step slider and the image in the page (the browser test finds them by these).
    """

    def __init__(self, model, schedule: NoiseSchedule, *, n: int = 10, class_choice: int = ALL_CLASSES,
                 guidance: float = 2.0, guidance_max: float = 6.0, sampler: str = "ddim",
                 steps: Optional[int] = None, image_size: int = 28, channels: Optional[int] = None,
                 prediction: str = "eps", clip_x0: bool = True, seed: int = 0, max_frames: int = 100,
                 ncol: Optional[int] = None, scale: int = 3, fps: float = 8.0, cache_size: int = 12,
                 device: Union[str, torch.device, None] = None):
        w = _widgets()
        if n < 1:
            raise ValueError(f"n (digits per batch) must be >= 1, got {n}")
        self.model, self.schedule = model, schedule
        self.num_classes = int(getattr(model, "num_classes", 10))
        self.n = n
        self.device = torch.device(device) if device is not None else _model_device(model)
        C = channels if channels is not None else int(getattr(model, "in_channels", 1))
        # One initial noise for every setting, so that a setting's effect is seen on the same x_T.
        g = torch.Generator(device=self.device)
        g.manual_seed(int(seed))
        self.x_T = torch.randn((n, C, image_size, image_size), generator=g, device=self.device)
        self.sample_kw = dict(sampler=sampler, steps=steps, prediction=prediction, clip_x0=clip_x0,
                              seed=seed + 1, max_frames=max_frames, device=self.device)
        self.render_kw = dict(ncol=ncol, scale=scale)
        self.cache_size = cache_size
        self._cache: dict = {}

        options = [("all digits 0-9", ALL_CLASSES)] + [(str(c), c) for c in range(self.num_classes)]
        self.class_select = w.Dropdown(options=options, value=class_choice, description="class")
        self.guidance = w.FloatSlider(value=float(guidance), min=0.0, max=float(guidance_max), step=0.5,
                                      description="guidance w", continuous_update=False,
                                      style={"description_width": "initial"})
        self.step = w.IntSlider(value=0, min=0, max=1, step=1, description="step", continuous_update=True,
                                layout=w.Layout(width="60%"))
        self.step.add_class("diffussm-viewer-step")
        self.play = w.Play(value=0, min=0, max=1, step=1, interval=max(20, int(1000 / fps)),
                           description="play", show_repeat=False)
        self.link = w.jslink((self.play, "value"), (self.step, "value"))
        self.image = w.Image(format="png")
        self.image.add_class("diffussm-viewer-image")
        self.status = w.HTML()
        self.widget = w.VBox([
            w.HBox([self.class_select, self.guidance]),
            w.HBox([self.play, self.step]),
            self.status,
            self.image,
        ])
        self.widget.add_class("diffussm-viewer")
        self.frames: Optional[ViewerFrames] = None
        self.pngs: list = []
        self._compute(class_choice, float(guidance))
        self.step.observe(self._on_step, names="value")
        self.class_select.observe(self._on_setting, names="value")
        self.guidance.observe(self._on_setting, names="value")

    # ------------------------------------------------------------------ frames
    def frames_for(self, class_choice: int, guidance: float) -> tuple:
        """(ViewerFrames, [PNG bytes]) for a setting: computed once, then cached."""
        key = (int(class_choice), float(guidance))
        if key not in self._cache:
            labels = viewer_labels(class_choice, self.n, self.num_classes)
            frames = compute_frames(self.model, self.schedule, labels, guidance=guidance, x_T=self.x_T,
                                    **self.sample_kw)
            pngs = [frame_png(frames, k, **self.render_kw) for k in range(len(frames))]
            while len(self._cache) >= max(1, self.cache_size):
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = (frames, pngs)
        return self._cache[key]

    def _compute(self, class_choice: int, guidance: float) -> None:
        self.frames, self.pngs = self.frames_for(class_choice, guidance)
        last = len(self.frames) - 1
        k = min(self.step.value, last)
        self.step.max = self.play.max = last
        self.show(k)

    def show(self, k: int) -> None:
        """Display frame ``k`` (also moves the slider there)."""
        k = int(k)
        if self.step.value != k:
            self.step.value = k          # calls back into show() through the observer
            return
        self.image.value = self.pngs[k]
        f = self.frames
        what = "all digits" if self.class_select.value == ALL_CLASSES else f"class {self.class_select.value}"
        self.status.value = (f"<code>{f.caption(k, self.schedule)}</code><br>{f.sampler.upper()} with "
                             f"{f.steps} steps, {what}, guidance w = {f.guidance:g}. "
                             "Left: the sample x_t. Right: the model's prediction of x_0.")

    # ------------------------------------------------------------------ callbacks
    def _on_step(self, change) -> None:
        self.show(change["new"])

    def _on_setting(self, change) -> None:
        controls = (self.class_select, self.guidance, self.step, self.play)
        for c in controls:
            c.disabled = True
        self.status.value = "<i>sampling the frames for this setting ...</i>"
        try:
            self._compute(self.class_select.value, self.guidance.value)
        finally:
            for c in controls:
                c.disabled = False

    def _repr_mimebundle_(self, **kwargs):
        """Displaying the viewer displays its widget."""
        return self.widget._repr_mimebundle_(**kwargs)


def denoising_viewer(model, schedule: NoiseSchedule, **kwargs):
    """The denoising viewer's widget (an ipywidgets VBox) for ``model`` under ``schedule``.

    Keyword arguments as ``DenoisingViewer`` (n digits, class_choice, guidance, sampler, steps,
    image_size, prediction, seed, ...). The returned box carries its ``DenoisingViewer`` as
    ``.viewer`` (for its controls and frames): ``denoising_viewer(...).viewer.step.value = 5``.
    """
    v = DenoisingViewer(model, schedule, **kwargs)
    v.widget.viewer = v
    return v.widget

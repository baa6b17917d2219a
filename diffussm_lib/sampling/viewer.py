"""The denoising viewer (notebook 06): watch a batch of digits emerge from noise, step by step.

What it shows
-------------
A sampler walks x_T -> x_{t_1} -> ... -> x_0. At every step the model also predicts the clean image
x_0 it is aiming at. The viewer shows, for a batch of B digits, the current sample x_t (left) and
the predicted x_0 (right) side by side, with

* a **step slider** and a **Play** button linked to it (the animation runs in the browser);
* a **class selector** (all digits 0-9, or one class for the whole batch) and a
  **guidance-scale slider** (classifier-free guidance w).

Frames (``frames.py``) are computed once per (class, guidance) setting, from the sampler's own
trajectory, and encoded as PNGs once (``render.py``);
the step slider only selects among them, so it is instant. Changing the class or the guidance scale
samples again from the *same* initial noise (and the same per-step noise for DDPM), so what changes
is the effect of the setting alone; settings already seen come from a small cache.
"""
from __future__ import annotations

from typing import Optional, Union

import torch

from ..diffusion import NoiseSchedule
from ..env import model_device
from .frames import ALL_CLASSES, ViewerFrames, compute_frames, viewer_labels
from .render import frame_png


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
        self.device = torch.device(device) if device is not None else model_device(model)
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

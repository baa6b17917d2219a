"""The denoising viewer (notebook 06): watch a batch of digits emerge from noise, step by step.

What it shows
-------------
A sampler walks x_T -> x_{t_1} -> ... -> x_0. At every step the model also predicts the clean image
x_0 it is aiming at. For a batch of B digits, each frame shows (``render.render_frame``)

* the current sample x_t, the predicted x_0 and the **guidance direction** eps_y - eps_null (what
  the label adds to the model's prediction, normalised for display), side by side;
* a caption in the sampler's terms ("step 7/10, t = 420, log-SNR = -1.3") and a **noise-level
  timeline** (log-SNR against t, a cursor at this frame).

Controls: a **t slider** and a **Play** button over the frames; the **sampler** (DDIM, DPM-Solver++,
DDPM) and its number of **steps**; the **class** (all digits 0-9, or one class for the whole
batch); the **guidance scale** w; **new noise** (a different x_T).

How it plays without Python
---------------------------
All frames of the current setting are in the page: one ipywidgets ``Image`` per frame (PNG bytes,
encoded once) in a ``Stack``, which shows one child at a time. The Stack's ``selected_index``, the
slider's index and the Play button's value are linked in the browser (``jslink``), so moving the
slider or playing only switches pictures in the page: it is smooth, and it keeps working after the
kernel has stopped, and in a saved notebook whose widget state is rendered. Changing the sampler,
steps, class, guidance or noise needs the kernel: the frames are sampled again and the Stack's
children replaced. Settings already seen come from a small cache. A setting's effect is seen on the
same initial noise (and the same per-step noise for DDPM) until **new noise** draws another.
"""

from __future__ import annotations

import html
from typing import Optional, Union

import torch

from ..diffusion import DEFAULT_SAMPLER, SAMPLERS, NoiseSchedule, default_steps
from ..env import model_device
from .frames import (
    ALL_CLASSES,
    ViewerFrames,
    check_frames_args,
    compute_frames,
    log_snr,
    viewer_labels,
)
from .render import frame_png

SAMPLER_TITLES = {"ddim": "DDIM", "dpm_solver++": "DPM-Solver++", "ddpm": "DDPM"}
DEFAULT_GUIDANCE = 2.0  # the viewer's w for a class-conditional model (an unconditional one: 1)


# --------------------------------------------------------------------------------------------
def _widgets():
    try:
        import ipywidgets
    except ImportError as e:  # pragma: no cover - ipywidgets is in the notebooks/test extras
        raise ImportError(
            "the denoising viewer needs ipywidgets: pip install -e '.[notebooks]'"
        ) from e
    return ipywidgets


def num_classes_of(model) -> int:
    """The model's number of classes (inside a DDP wrapper too); 10 (MNIST) when it does not say."""
    return int(getattr(getattr(model, "module", model), "num_classes", 10))


def frame_labels(frames: ViewerFrames) -> list:
    """The slider's label for each frame: "t = 420", ..., "final" (list of F strings)."""
    return [f"t = {int(t)}" if t >= 0 else "final" for t in frames.timesteps.tolist()]


def informative_frame(frames: ViewerFrames, schedule: NoiseSchedule) -> int:
    """The first frame whose x_t holds at least as much signal as noise (log-SNR >= 0), where the
    predicted x_0 already shows digits and x_t still shows noise; the last frame if none is."""
    levels = log_snr(schedule, frames.timesteps)
    return int(torch.nonzero(levels >= 0)[0]) if bool((levels >= 0).any()) else len(frames) - 1


def nearest_frame(frames: ViewerFrames, t: int) -> int:
    """The frame whose timestep is closest to ``t`` (-1, the final sample, maps to the last frame)."""
    if t < 0:
        return len(frames) - 1
    return int((frames.timesteps - t).abs().argmin())


class DenoisingViewer:
    """The viewer's state and controls; ``.widget`` is the ipywidgets box to display.

    Built by ``denoising_viewer``. Controls (ipywidgets): ``sampler`` (Dropdown), ``steps``
    (BoundedIntText), ``class_select`` (Dropdown: all digits or one class), ``guidance``
    (FloatSlider, w), ``new_noise`` (Button), ``play`` (Play), ``step`` (SelectionSlider over the
    frames, labelled by t; its ``value`` is the frame number), ``stack`` (Stack of ``images``, one
    Image per frame), ``status`` (HTML: the setting). ``frames`` / ``pngs`` hold the current
    setting's frames and their PNGs. The CSS classes ``diffussm-viewer`` (the box) and
    ``diffussm-viewer-{step, play, sampler, noise, stack, image, status}`` name the parts in the page
    (the browser test finds them by these).

    Bad input raises one ``ValueError`` naming the argument: an unknown ``sampler``, ``steps`` < 1,
    ``guidance`` < 0, a ``class_choice`` out of range, or a class for a model without classes.
    """

    def __init__(
        self,
        model,
        schedule: NoiseSchedule,
        *,
        n: int = 10,
        class_choice: Optional[int] = None,
        guidance: Optional[float] = None,
        guidance_max: float = 6.0,
        sampler: str = DEFAULT_SAMPLER,
        steps: Optional[int] = None,
        image_size: int = 28,
        channels: Optional[int] = None,
        prediction: str = "eps",
        clip_x0: bool = True,
        seed: int = 0,
        max_frames: int = 100,
        frame: Optional[int] = None,
        ncol: Optional[int] = None,
        scale: int = 2,
        fps: float = 8.0,
        cache_size: int = 12,
        device: Union[str, torch.device, None] = None,
    ):
        w = _widgets()
        if n < 1:
            raise ValueError(f"n (digits per batch) must be >= 1, got {n}")
        self.model, self.schedule = model, schedule
        self.num_classes = num_classes_of(model)
        self.conditional = self.num_classes > 0
        if class_choice is None:
            class_choice = ALL_CLASSES if self.conditional else None
        else:
            viewer_labels(class_choice, n, self.num_classes)  # raises for a bad class_choice
        if guidance is None:
            guidance = DEFAULT_GUIDANCE if self.conditional else 1.0
        check_frames_args(sampler, steps, guidance)
        if not self.conditional and guidance != 1.0:
            raise ValueError(
                f"guidance={guidance} needs class labels, but this model has no class conditioning "
                "(num_classes = 0): use guidance=1"
            )
        self.n, self.seed = n, int(seed)
        self.device = torch.device(device) if device is not None else model_device(model)
        self.shape = (
            n,
            channels if channels is not None else int(getattr(model, "in_channels", 1)),
            image_size,
            image_size,
        )
        self.x_T = self._noise(self.seed)
        self.sample_kw = dict(
            prediction=prediction, clip_x0=clip_x0, max_frames=max_frames, device=self.device
        )
        self.render_kw = dict(ncol=ncol, scale=scale, schedule=schedule)
        self.cache_size = cache_size
        self._cache: dict = {}

        self.sampler = w.Dropdown(
            options=[(SAMPLER_TITLES.get(s, s), s) for s in SAMPLERS],
            value=sampler,
            description="sampler",
        )
        self.steps = w.BoundedIntText(
            value=default_steps(sampler, schedule.T, steps),
            min=1,
            max=schedule.T,
            description="steps",
            layout=w.Layout(width="150px"),
        )
        classes = [(f"all classes 0-{self.num_classes - 1}", ALL_CLASSES)] + [
            (str(c), c) for c in range(self.num_classes)
        ]
        self.class_select = w.Dropdown(
            options=classes if self.conditional else [("none (no classes)", None)],
            value=class_choice,
            description="class",
            disabled=not self.conditional,
        )
        self.guidance = w.FloatSlider(
            value=float(guidance),
            min=0.0,
            max=max(float(guidance_max), guidance),
            step=0.5,
            description="guidance w",
            continuous_update=False,
            disabled=not self.conditional,
            style={"description_width": "initial"},
        )
        self.new_noise = w.Button(
            description="new noise", tooltip="sample again from a different x_T"
        )
        self.play = w.Play(
            value=0, min=0, max=1, step=1, interval=max(20, int(1000 / fps)), show_repeat=False
        )
        self.step = w.SelectionSlider(
            options=[("t", 0)],
            description="t",
            continuous_update=True,
            layout=w.Layout(width="60%"),
        )
        self.stack = w.Stack([])
        self.status = w.HTML()
        self.images: list = []
        for part, name in (
            (self.step, "step"),
            (self.play, "play"),
            (self.sampler, "sampler"),
            (self.new_noise, "noise"),
            (self.stack, "stack"),
            (self.status, "status"),
        ):
            part.add_class(f"diffussm-viewer-{name}")
        self.widget = w.VBox(
            [
                w.HBox(
                    [self.sampler, self.steps, self.class_select, self.guidance, self.new_noise]
                ),
                w.HBox([self.play, self.step]),
                self.status,
                self.stack,
            ]
        )
        self.widget.add_class("diffussm-viewer")
        self.frames: Optional[ViewerFrames] = None
        self.pngs: list = []
        self._set_frames(*self.frames_for(self.setting()), frame=frame)
        # The links that make playing work in the page alone: Play -> slider -> the Stack's picture.
        # Made after the first frames are in, so that the page links Play, slider and Stack at that frame.
        self.links = [
            w.jslink((self.play, "value"), (self.step, "index")),
            w.jslink((self.step, "index"), (self.stack, "selected_index")),
        ]
        for control in (self.sampler, self.steps, self.class_select, self.guidance):
            control.observe(self._on_setting, names="value")
        self.new_noise.on_click(self._on_new_noise)

    # ------------------------------------------------------------------ frames
    def _noise(self, seed: int) -> torch.Tensor:
        """The initial noise x_T (n, C, H, W) for ``seed``."""
        g = torch.Generator(device=self.device)
        g.manual_seed(seed)
        return torch.randn(self.shape, generator=g, device=self.device)

    def setting(self) -> tuple:
        """The controls' current setting: (sampler, steps, class_choice, guidance, seed)."""
        return (
            self.sampler.value,
            int(self.steps.value),
            self.class_select.value,
            float(self.guidance.value),
            self.seed,
        )

    def frames_for(self, setting: tuple) -> tuple:
        """(ViewerFrames, [PNG bytes]) for a ``setting()``: computed once, then cached."""
        if setting not in self._cache:
            sampler, steps, class_choice, guidance, seed = setting
            labels = (
                None
                if class_choice is None
                else viewer_labels(class_choice, self.n, self.num_classes)
            )
            frames = compute_frames(
                self.model,
                self.schedule,
                labels,
                sampler=sampler,
                steps=steps,
                guidance=guidance,
                x_T=self._noise(seed),
                seed=seed + 1,
                with_guidance_dirs=labels is not None,
                **self.sample_kw,
            )
            pngs = [frame_png(frames, k, **self.render_kw) for k in range(len(frames))]
            while len(self._cache) >= max(1, self.cache_size):
                self._cache.pop(next(iter(self._cache)))
            self._cache[setting] = (frames, pngs)
        return self._cache[setting]

    def _set_frames(self, frames: ViewerFrames, pngs: list, frame: Optional[int] = None) -> None:
        """Put a setting's frames into the page: one Image per frame in the Stack (reusing the Image
        widgets there, closing those left over), the slider's labels, Play's range; then show
        ``frame`` (default: the frame nearest the timestep shown before, or ``informative_frame``)."""
        w = _widgets()
        if frame is None:
            frame = (
                informative_frame(frames, self.schedule)
                if self.frames is None
                else nearest_frame(frames, int(self.frames.timesteps[self.step.index]))
            )
        while len(self.images) < len(pngs):
            image = w.Image(format="png")
            image.add_class("diffussm-viewer-image")
            self.images.append(image)
        for image in self.images[len(pngs) :]:
            image.close()
        del self.images[len(pngs) :]
        for image, png in zip(self.images, pngs):
            if image.value != png:
                image.value = png
        self.frames, self.pngs = frames, pngs
        k = range(len(frames))[frame]
        with self.stack.hold_sync():  # each widget's changes reach the page as one message
            self.stack.selected_index = None
            self.stack.children = tuple(self.images)
            self.stack.selected_index = k
        with self.step.hold_sync():
            self.step.options = [(label, i) for i, label in enumerate(frame_labels(frames))]
            self.step.index = k
        with self.play.hold_sync():
            self.play.max = len(frames) - 1
            self.play.value = k
        self.status.value = self._describe()

    def show(self, k: int) -> None:
        """Show frame ``k``: the slider, Play and the Stack all at k (in the page, the links keep them
        together; setting all three here also keeps the saved widget state consistent)."""
        k = range(len(self.frames))[k]
        self.step.index = k
        self.play.value = k
        self.stack.selected_index = k

    def _describe(self) -> str:
        f = self.frames
        what = {None: "unconditional", ALL_CLASSES: "all classes"}.get(
            self.class_select.value, f"class {self.class_select.value}"
        )
        panels = (
            "x_t (the sample), the predicted x_0 and the guidance direction eps_y - eps_null "
            "(normalised; white: the label adds ink)"
            if f.guidance_dirs is not None
            else "x_t (the sample) and the predicted x_0"
        )
        return (
            f"<b>{SAMPLER_TITLES.get(f.sampler, f.sampler)}</b>, {f.steps} steps ({len(f)} frames), {what}, "
            f"guidance w = {f.guidance:g}, noise seed {self.seed}.<br>Panels: {panels}. Below them: "
            "log-SNR against t, the dot at this frame."
        )

    # ------------------------------------------------------------------ callbacks
    def _recompute(self) -> None:
        """Sample the frames of the controls' setting (the controls are disabled meanwhile); a bad
        setting leaves the frames as they were and says why in the status line."""
        controls = (
            self.sampler,
            self.steps,
            self.class_select,
            self.guidance,
            self.new_noise,
            self.step,
            self.play,
        )
        enabled = [c for c in controls if not c.disabled]
        for c in enabled:
            c.disabled = True
        self.status.value = "<i>sampling the frames for this setting ...</i>"
        try:
            self._set_frames(*self.frames_for(self.setting()))
        except ValueError as e:
            self.status.value = f"<b>cannot sample this setting</b>: {html.escape(str(e))}"
        finally:
            for c in enabled:
                c.disabled = False

    def _on_setting(self, change) -> None:
        self._recompute()

    def _on_new_noise(self, button=None) -> None:
        self.seed += 1
        self.x_T = self._noise(self.seed)
        self._recompute()

    def _repr_mimebundle_(self, **kwargs):
        """Displaying the viewer displays its widget."""
        return self.widget._repr_mimebundle_(**kwargs)


def denoising_viewer(model, schedule: NoiseSchedule, **kwargs):
    """The denoising viewer's widget (an ipywidgets VBox) for ``model`` under ``schedule``.

    Keyword arguments as ``DenoisingViewer`` (n digits, class_choice (None: all digits, or
    unconditional for a model without classes), guidance (None: 2, or 1 without classes), sampler,
    steps, image_size, prediction, seed, frame (None: ``informative_frame``), scale, ...). The
    returned box carries its ``DenoisingViewer`` as ``.viewer``: ``box.viewer.show(5)``.
    """
    v = DenoisingViewer(model, schedule, **kwargs)
    v.widget.viewer = v
    return v.widget

"""The denoising viewer's frames (notebook 06): one sampling run with its trajectory recorded.

A sampler walks x_T -> x_{t_1} -> ... -> x_0 and, at every step, predicts the clean image x_0 it is
aiming at. ``ViewerFrames`` holds F = R + 1 frames for R recorded sampler steps: frame k < R is
(x_t, predicted x_0) at the recorded timestep t_k (frame 0: t = T - 1 and x_T, pure noise); the
last frame, at "t = -1", is (final sample, final sample), exactly the tensor the sampler returns.
For long runs (DDPM with T = 1000 steps) every ``stride``-th step is recorded so that F stays near
``max_frames``. The model is any denoiser ``model(x, t, y)`` (eps or v prediction); its
``null_class`` is the "no label" class used for guidance.

Two more things the viewer shows are computed here:

* the **guidance direction** eps_y - eps_null at each frame (``guidance_directions``): what the
  label adds to the model's noise prediction; guided sampling uses eps_null + w (eps_y - eps_null);
* the **noise level** of each frame (``log_snr``): log(alpha_bar_t / (1 - alpha_bar_t)), the
  log signal-to-noise ratio of x_t; it rises from about -20 (pure noise) through 0 (signal = noise)
  to +inf at the clean final sample.

Dimension letters: the glossary in diffussm_lib/__init__.py (F = frames here, as in the text above).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Optional, Union

import torch
from torch import Tensor

from ..diffusion import (
    DEFAULT_SAMPLER,
    NoiseSchedule,
    SampleResult,
    check_sampler,
    default_steps,
    null_class_of,
    predict_x0_eps,
    run_sampler,
    split_channels,
)
from ..env import model_device

ALL_CLASSES = -1  # class-selector value meaning "labels 0, 1, ..., 9, 0, 1, ..."


# --------------------------------------------------------------------------------------------
@dataclass
class ViewerFrames:
    """The F frames of one sampling run (all tensors float32 / long on CPU).

    timesteps:     (F,) long, decreasing: the recorded timesteps, then -1 for the final frame.
    xs:            (F, B, C, H, W): xs[k] the sample x_t at timesteps[k]; xs[0] is the initial noise
                   x_T, xs[-1] the sampler's output.
    x0_preds:      (F, B, C, H, W): the model's predicted x_0 at timesteps[k] (after clipping, as the
                   sampler used it); x0_preds[-1] is the sampler's output.
    labels:        (B,) long, or None (unconditional).
    sampler, guidance, steps: how the frames were made (steps = the sampler's number of steps S).
    step_index:    (F,) long or None: how many of the S sampler steps were done before frame k
                   (0 for x_T, S for the final sample); None = not known (frame numbers are shown).
    guidance_dirs: (F, B, C, H, W) or None: eps_y - eps_null at frame k (``guidance_directions``;
                   zeros at the final frame); None when not computed or unconditional.
    """

    timesteps: Tensor
    xs: Tensor
    x0_preds: Tensor
    labels: Optional[Tensor] = None
    sampler: str = DEFAULT_SAMPLER
    guidance: float = 1.0
    steps: int = 0
    step_index: Optional[Tensor] = None
    guidance_dirs: Optional[Tensor] = None

    def __len__(self) -> int:
        return int(self.timesteps.shape[0])

    @property
    def final(self) -> Tensor:
        """The sampler's output (B, C, H, W)."""
        return self.xs[-1]

    def caption(self, k: int, schedule: Optional[NoiseSchedule] = None) -> str:
        """One line describing frame ``k``: the sampler step, the timestep and, given the schedule, the
        noise level, e.g. "step 7/10, t = 420, log-SNR = -1.3"."""
        k = range(len(self))[k]
        t = int(self.timesteps[k])
        if self.step_index is not None and self.steps:
            where = f"step {int(self.step_index[k])}/{self.steps}"
        else:
            where = f"frame {k}/{len(self) - 1}"
        if t < 0:
            return f"{where}, final sample (t = -1, clean)"
        s = f"{where}, t = {t}"
        if schedule is not None:
            s += f", log-SNR = {round(float(log_snr(schedule, torch.tensor([t]))[0]), 1) + 0.0:.1f}"  # + 0.0: no "-0.0"
        return s


def log_snr(schedule: NoiseSchedule, timesteps: Tensor) -> Tensor:
    """log(alpha_bar_t / (1 - alpha_bar_t)) at each timestep: long (F,) -> float64 (F,) on CPU,
    +inf where t = -1 (the clean final sample)."""
    ts = torch.as_tensor(timesteps).long().cpu()
    ab = schedule.alpha_bar.detach().double().cpu()[ts.clamp(min=0)]
    out = torch.log(ab) - torch.log1p(-ab)
    return torch.where(ts < 0, torch.full_like(out, math.inf), out)


def recorded_steps(S: int, stride: int) -> Tensor:
    """The indices of the sampler steps a run of S steps records with ``trajectory_stride`` stride
    (every stride-th step and the last, as the samplers do): long (R,)."""
    return torch.tensor([i for i in range(S) if i % stride == 0 or i == S - 1], dtype=torch.long)


def check_frames_args(sampler: str, steps: Optional[int], guidance: float) -> None:
    """Raise a ``ValueError`` naming the argument when ``sampler`` is unknown, ``steps`` is not an
    integer >= 1 (None = the sampler's default) or ``guidance`` is negative."""
    check_sampler(sampler)
    if steps is not None and (
        isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1
    ):
        raise ValueError(
            f"steps must be an integer >= 1 (or None for the sampler's default), got {steps!r}"
        )
    if not guidance >= 0:
        raise ValueError(
            f"guidance must be >= 0 (0 = unconditional, 1 = plain conditional, > 1 = guided), "
            f"got {guidance}"
        )


def frames_from_result(
    result: SampleResult,
    *,
    sampler: str = DEFAULT_SAMPLER,
    guidance: float = 1.0,
    steps: int = 0,
    stride: Optional[int] = None,
) -> ViewerFrames:
    """``ViewerFrames`` from a sampler's ``SampleResult`` (``return_trajectory=True``): the R recorded
    steps (xs, x0_preds (R, B, C, H, W)) plus a final frame holding ``result.images`` (B, C, H, W).
    Given ``steps`` (S) and the ``stride`` the run recorded with, the frames know their step numbers."""
    final = result.images.detach().float().cpu()
    if result.xs.dim() != 5 or result.xs.shape[1:] != final.shape:
        raise ValueError(
            f"trajectory xs of shape {tuple(result.xs.shape)} does not fit images of shape "
            f"{tuple(final.shape)}: expected (R, B, C, H, W)"
        )
    ts = torch.cat([result.step_times.long().cpu(), torch.tensor([-1])])
    xs = torch.cat([result.xs.float().cpu(), final[None]])
    x0 = torch.cat([result.x0_preds.float().cpu(), final[None]])
    step_index = None
    if stride is not None and steps:
        rec = recorded_steps(int(steps), int(stride))
        if rec.numel() != result.step_times.numel():
            raise ValueError(
                f"{result.step_times.numel()} recorded steps, but a run of {steps} steps with "
                f"stride {stride} records {rec.numel()}"
            )
        step_index = torch.cat([rec, torch.tensor([int(steps)])])
    return ViewerFrames(
        timesteps=ts,
        xs=xs,
        x0_preds=x0,
        labels=result.y,
        sampler=sampler,
        guidance=float(guidance),
        steps=int(steps),
        step_index=step_index,
    )


@torch.no_grad()
def guidance_directions(
    model,
    schedule: NoiseSchedule,
    frames: ViewerFrames,
    *,
    prediction: str = "eps",
    device: Union[str, torch.device, None] = None,
) -> Tensor:
    """eps_y - eps_null at every frame of ``frames`` (which must have labels): float (F, B, C, H, W)
    on CPU, zeros at the final frame (t = -1, no model call).

    One forward pass per frame on a batch of 2B (x_t twice; the labels, then the null class), as a
    guided sampler step makes it. For a v-prediction model the outputs are turned into eps first:
    eps_y - eps_null = sqrt(alpha_bar_t) (v_y - v_null), the v analogue up to a positive factor.
    """
    if frames.labels is None:
        raise ValueError("guidance directions need labels: these frames are unconditional")
    device = torch.device(device) if device is not None else model_device(model)
    sched = schedule.to(device)
    y = frames.labels.to(device)
    null = torch.full_like(y, null_class_of(model))
    out = torch.zeros_like(frames.xs)
    for k, t in enumerate(frames.timesteps.tolist()):
        if t < 0:
            continue
        x = frames.xs[k].to(device)
        x2 = torch.cat([x, x])
        t2 = torch.full((x2.shape[0],), t, dtype=torch.long, device=device)
        pred, _ = split_channels(model(x2, t2, torch.cat([y, null])), x.shape[1])
        _, eps = predict_x0_eps(sched, pred, x2, t2, prediction)
        eps_y, eps_null = eps.chunk(2)
        out[k] = (eps_y - eps_null).float().cpu()
    return out


@torch.no_grad()
def compute_frames(
    model,
    schedule: NoiseSchedule,
    labels: Optional[Tensor],
    *,
    image_size: int = 28,
    channels: Optional[int] = None,
    sampler: str = DEFAULT_SAMPLER,
    steps: Optional[int] = None,
    guidance: float = 1.0,
    seed: int = 0,
    x_T: Optional[Tensor] = None,
    eta: float = 0.0,
    prediction: str = "eps",
    clip_x0: bool = True,
    max_frames: int = 100,
    with_guidance_dirs: bool = False,
    device: Union[str, torch.device, None] = None,
) -> ViewerFrames:
    """Sample once with the trajectory recorded and return its frames.

    labels: long (B,) or None (unconditional: then ``guidance`` must be 1). The batch is
    (B, C, image_size, image_size) with C = ``channels`` (default ``model.in_channels``, else 1);
    with labels None, B = 1 unless ``x_T`` (B, C, H, W) is given. sampler "ddim" (default 50
    steps, ``eta`` 0 = deterministic), "dpm_solver++" (default 15 steps, deterministic) or "ddpm"
    (default all T steps; fewer = respaced). All randomness comes from a ``torch.Generator`` seeded
    with ``seed`` on the sampling device and is consumed exactly as the sampling function called with
    that generator consumes it, so the last frame equals its output. At most about ``max_frames`` steps
    are recorded (every ``ceil(S / max_frames)``-th, plus the last). ``with_guidance_dirs`` (labels
    needed) also fills ``guidance_dirs`` (``guidance_directions``: one more forward pass per frame).
    Returns ``ViewerFrames`` on CPU.
    """
    check_frames_args(sampler, steps, guidance)
    if max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    device = torch.device(device) if device is not None else model_device(model)
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
    if with_guidance_dirs and labels is None:
        raise ValueError(
            "with_guidance_dirs=True needs labels: an unconditional run has no guidance direction"
        )
    S = default_steps(sampler, schedule.T, steps)
    stride = max(1, math.ceil(S / max_frames))
    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    null_class = null_class_of(model)
    common = dict(
        guidance=float(guidance),
        null_class=null_class,
        prediction=prediction,
        clip_x0=clip_x0,
        generator=g,
        x_T=x_T,
        device=device,
        return_trajectory=True,
        trajectory_stride=stride,
    )
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    try:
        res = run_sampler(
            sampler, model, schedule.to(device), shape, labels, steps=S, eta=eta, **common
        )
        frames = frames_from_result(res, sampler=sampler, guidance=guidance, steps=S, stride=stride)
        if with_guidance_dirs:
            frames.guidance_dirs = guidance_directions(
                model, schedule, frames, prediction=prediction, device=device
            )
    finally:
        if was_training:
            model.train()
    return frames


def viewer_labels(choice: int, n: int, num_classes: int = 10) -> Tensor:
    """The batch labels for a class-selector value ``choice``: ``ALL_CLASSES`` (-1) -> 0, 1, ...,
    num_classes-1, 0, 1, ... (n of them); a class c -> n copies of c. Returns long (n,)."""
    if num_classes < 1:
        raise ValueError(
            f"class_choice={choice}: the class selector needs a class-conditional model, and this "
            "one has no class conditioning (num_classes = 0): use class_choice=None (unconditional)"
        )
    if isinstance(choice, bool) or not isinstance(choice, numbers.Integral):
        raise ValueError(
            f"class_choice must be an integer class or {ALL_CLASSES} (all), got {choice!r}"
        )
    if choice == ALL_CLASSES:
        return torch.arange(n, dtype=torch.long) % num_classes
    if not 0 <= choice < num_classes:
        raise ValueError(
            f"class_choice must be {ALL_CLASSES} (all) or a class in [0, {num_classes - 1}], got {choice}"
        )
    return torch.full((n,), int(choice), dtype=torch.long)

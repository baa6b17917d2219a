"""The denoising viewer's frames (notebook 06): one sampling run with its trajectory recorded.

A sampler walks x_T -> x_{t_1} -> ... -> x_0 and, at every step, predicts the clean image x_0 it is
aiming at. ``ViewerFrames`` holds F = R + 1 frames for R recorded sampler steps: frame k < R is
(x_t, predicted x_0) at the recorded timestep t_k (frame 0: t = T - 1 and x_T, pure noise); the
last frame, at "t = -1", is (final sample, final sample), exactly the tensor the sampler returns.
For long runs (DDPM with T = 1000 steps) every ``stride``-th step is recorded so that F stays near
``max_frames``. The model is any denoiser ``model(x, t, y)`` (eps or v prediction); its
``null_class`` is the "no label" class used for guidance.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Union

import torch
from torch import Tensor

from ..diffusion import NoiseSchedule, SampleResult, check_sampler, default_steps, null_class_of, run_sampler
from ..env import model_device

ALL_CLASSES = -1   # class-selector value meaning "labels 0, 1, ..., 9, 0, 1, ..."


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
    steps, ``eta`` 0 = deterministic), "dpm_solver++" (default 20 steps, deterministic) or "ddpm"
    (default all T steps; fewer = respaced). All randomness comes from a ``torch.Generator`` seeded
    with ``seed`` on the sampling device and is consumed exactly as the sampling function called with
    that generator consumes it, so the last frame equals its output. At most about ``max_frames`` steps
    are recorded (every ``ceil(S / max_frames)``-th, plus the last). Returns ``ViewerFrames`` on CPU.
    """
    check_sampler(sampler)
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
    S = default_steps(sampler, schedule.T, steps)
    stride = max(1, math.ceil(S / max_frames))
    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    null_class = null_class_of(model)
    common = dict(guidance_scale=float(guidance), null_class=null_class, prediction=prediction, clip_x0=clip_x0,
                  generator=g, x_T=x_T, device=device, return_trajectory=True, trajectory_stride=stride)
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    try:
        res = run_sampler(sampler, model, schedule.to(device), shape, labels, steps=S, eta=eta, **common)
    finally:
        if was_training:
            model.train()
    return frames_from_result(res, sampler=sampler, guidance=guidance, steps=S)


def viewer_labels(choice: int, n: int, num_classes: int = 10) -> Tensor:
    """The batch labels for a class-selector value: ``ALL_CLASSES`` (-1) -> 0, 1, ..., num_classes-1,
    0, 1, ... (n of them); a class c -> n copies of c. Returns long (n,)."""
    if num_classes < 1:
        raise ValueError("the class selector needs a class-conditional model; this one has num_classes = 0")
    if choice == ALL_CLASSES:
        return torch.arange(n, dtype=torch.long) % num_classes
    if not 0 <= choice < num_classes:
        raise ValueError(f"class must be {ALL_CLASSES} (all) or in [0, {num_classes - 1}], got {choice}")
    return torch.full((n,), int(choice), dtype=torch.long)

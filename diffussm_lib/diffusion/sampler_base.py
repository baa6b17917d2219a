"""What the three samplers share, so that each sampler's file holds only its step and its loop.

* ``spaced_step_times`` / ``check_step_times``: the decreasing step times t_1 > ... > t_S a sampler
  walks (schedule indices, ``schedule.py``), before the last step into t = -1, the clean image;
* ``start``: the checks every sampler entry makes, once per run, and the starting noise x_T;
* ``step_pairs``: the (t, t_prev) of each step;
* ``Trajectory``: what ``return_trajectory=True`` records (a ``SampleResult``);
* ``StepOutput``: what a step returns;
* ``accepts_old_keywords``: the entries' old keyword names (``guidance_scale``, ``timesteps``).

Randomness: x_T is the first draw from ``generator`` (on the device of x), unless given.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .parameterization import check_prediction
from .schedule import NoiseSchedule
from .thresholding import check_x0_options
from ..errors import UserError


@dataclass
class StepOutput:
    """One reverse step. x_prev: the sample at t_prev (B, C, H, W); x0_pred: the predicted clean
    image used for it, after clipping / thresholding (B, C, H, W)."""

    x_prev: Tensor
    x0_pred: Tensor


@dataclass
class SampleResult:
    """A sampling run with its trajectory (``return_trajectory=True``), for viewers (notebook 06).

    images:     (B, C, H, W) the final samples, on the sampling device.
    step_times: (R,) long, the recorded step times, decreasing (all S of them with stride 1).
    xs:         (R, B, C, H, W) float32 on CPU: xs[k] is the noisy sample x_t fed to the model at
                t = step_times[k] (xs[0] is the initial noise x_T).
    x0_preds:   (R, B, C, H, W) float32 on CPU: the predicted clean image at t = step_times[k]
                (after clipping / thresholding, as used by the step).
    y:          (B,) long labels on CPU, or None.
    """

    images: Tensor
    step_times: Tensor
    xs: Tensor
    x0_preds: Tensor
    y: Optional[Tensor] = None

    @property
    def timesteps(self) -> Tensor:
        """The old name of ``step_times`` (the viewer's frames read it)."""
        return self.step_times


# ------------------------------------------------------------------------------ step times
def spaced_step_times(T: int, steps: int) -> Tensor:
    """``steps`` step times evenly spread from T-1 down to 0 (rounded): long (steps,), decreasing.

    Starting at T-1 means the first model call sees (almost) pure noise, as x_T is drawn;
    ending at 0 means the last step predicts x_0 from the least-noised level. steps = T gives
    every timestep; steps = 1 gives [T-1] (one jump from noise to the predicted x_0).
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= T:
        raise UserError(f"number of sampling steps must be an integer in [1, T={T}], got {steps!r}")
    if steps == 1:
        return torch.tensor([T - 1], dtype=torch.long)
    return torch.linspace(T - 1, 0, steps, dtype=torch.float64).round().long()


def check_step_times(schedule: NoiseSchedule, step_times) -> Tensor:
    """Given step times (a sequence or 1-D tensor of ints) as long (S,) on CPU, or a clear error
    unless they are strictly decreasing integers in [0, T)."""
    if not isinstance(step_times, Tensor):
        step_times = list(step_times)
    ts = torch.as_tensor(step_times).long().cpu()
    if ts.dim() != 1 or ts.numel() == 0:
        raise UserError("step_times must be a non-empty 1-D sequence of integers")
    if (ts[1:] >= ts[:-1]).any() or ts.min() < 0 or ts.max() >= schedule.T:
        raise UserError(
            f"step_times must be strictly decreasing integers in [0, {schedule.T}), "
            f"got {ts.tolist()}"
        )
    return ts


def step_pairs(step_times: Tensor, progress: bool = False):
    """(t, t_prev) as python ints for each step: t_prev is the next step time, -1 after the last."""
    ts = step_times.tolist()
    pairs = list(zip(ts, ts[1:] + [-1]))
    return tqdm(pairs, desc="sampling") if progress else pairs


# ------------------------------------------------------------------------------ entry checks
def start(
    shape: Optional[Sequence[int]],
    y,
    *,
    x_T: Optional[Tensor],
    guidance: float,
    prediction: str,
    clip_x0: bool,
    dynamic_threshold: Optional[float],
    generator: Optional[torch.Generator],
    device,
    trajectory_stride: int,
) -> tuple[Tensor, Optional[Tensor]]:
    """The checks every sampler entry makes, once per run, then its starting point: x_T (B, C, H, W)
    (``x_T`` as given, else drawn from ``generator`` with ``shape`` on ``device``, default the
    generator's) and the labels y as long (B,) on x's device (or None)."""
    check_prediction(prediction)
    check_x0_options(clip_x0, dynamic_threshold)
    if guidance < 0:
        raise UserError(
            "guidance must be >= 0 (0 = unconditional, 1 = plain conditional, "
            f"> 1 = guided), got {guidance}"
        )
    if y is None and guidance != 1.0:
        raise UserError(
            f"guidance {guidance} needs class labels y (--labels on the command "
            "line); without labels sampling is unconditional, with guidance 1"
        )
    if trajectory_stride < 1:
        raise UserError(f"trajectory_stride must be >= 1, got {trajectory_stride}")
    if x_T is None:
        if shape is None or len(shape) != 4:
            raise UserError(f"shape must be (B, C, H, W), got {shape!r}")
        if device is None:
            device = generator.device if generator is not None else torch.device("cpu")
        x_T = torch.randn(tuple(shape), generator=generator, device=device)
    elif shape is not None and tuple(shape) != tuple(x_T.shape):
        raise UserError(f"shape {tuple(shape)} disagrees with x_T of shape {tuple(x_T.shape)}")
    if generator is not None and generator.device.type != x_T.device.type:
        raise UserError(
            f"the generator lives on {generator.device} but sampling runs on "
            f"{x_T.device}: create the torch.Generator on the sampling device"
        )
    B = x_T.shape[0]
    if y is not None:
        y = torch.as_tensor(y, device=x_T.device).long()
        if y.shape != (B,):
            raise UserError(f"labels y must have shape (B,) = ({B},), got {tuple(y.shape)}")
    return x_T, y


OLD_KEYWORDS = {"guidance_scale": "guidance", "timesteps": "step_times"}


def accepts_old_keywords(entry):
    """Let a sampler entry take its keywords' old names too (``OLD_KEYWORDS``: guidance_scale= for
    guidance=, timesteps= for step_times=), as the committed diffusers oracle test and the viewer's
    frames still spell them."""

    @functools.wraps(entry)
    def wrapper(*args, **kwargs):
        for old, new in OLD_KEYWORDS.items():
            if old in kwargs:
                if new in kwargs:
                    raise TypeError(f"{entry.__name__}() got both {new}= and its old name {old}=")
                kwargs[new] = kwargs.pop(old)
        return entry(*args, **kwargs)

    return wrapper


# ------------------------------------------------------------------------------ trajectory
class Trajectory:
    """Records (t, x_t, predicted x_0) every ``stride``-th of ``n_steps`` steps and at the last,
    when ``on``; ``result`` then gives a ``SampleResult``, else the final samples alone. Recording
    copies to the CPU (a device sync per recorded step: viewers only)."""

    def __init__(self, on: bool, stride: int, n_steps: int):
        self.on, self.stride, self.n_steps = on, stride, n_steps
        self.i, self.ts, self.xs, self.x0s = 0, [], [], []

    def add(self, t: int, x: Tensor, x0_pred: Tensor) -> None:
        if self.on and (self.i % self.stride == 0 or self.i == self.n_steps - 1):
            self.ts.append(t)
            self.xs.append(x.detach().float().cpu())
            self.x0s.append(x0_pred.detach().float().cpu())
        self.i += 1

    def result(self, images: Tensor, y: Optional[Tensor]):
        if not self.on:
            return images
        return SampleResult(
            images=images,
            step_times=torch.tensor(self.ts, dtype=torch.long),
            xs=torch.stack(self.xs),
            x0_preds=torch.stack(self.x0s),
            y=None if y is None else y.cpu(),
        )

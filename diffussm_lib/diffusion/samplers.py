"""Reverse-process samplers: DDPM (ancestral) and DDIM, with guidance and x_0 clipping.

Every sampler takes any denoiser with the interface

    model(x (B, C, H, W), t long (B,), y long (B,) or None) -> (B, C, H, W) or (B, 2C, H, W)

whose output is an eps or v prediction (``prediction="eps" | "v"``). With 2C output channels
(a learned variance, ``learn_sigma``) the first C channels are the eps / v prediction; the last C
are ignored except by ``variance="learned_range"`` in DDPM.

A sampler walks a decreasing list of timesteps t_0 > t_1 > ... > t_{S-1} (indices into the
schedule, see ``schedule.py``) and finally to ``t_prev = -1`` (the clean image, alpha_bar = 1).
Both step rules below are written for an arbitrary pair (t, t_prev), so any subsequence of
timesteps works ("respacing"); with t_prev = t - 1 they are the textbook rules.

For one step from t to s = t_prev, write ab_t = alpha_bar_t, ab_s = alpha_bar_s (1 for s = -1),
and x0, eps the model's prediction (after optional clipping of x0):

* DDPM: x_s = mu + sigma z, with the posterior of q(x_s | x_t, x0) for the effective
  beta = 1 - ab_t / ab_s:  mu = sqrt(ab_s) beta / (1 - ab_t) x0 + sqrt(1 - beta) (1 - ab_s) / (1 - ab_t) x_t;
  sigma^2 = beta (1 - ab_s) / (1 - ab_t) ("fixed_small", beta tilde) or beta ("fixed_large").
* DDIM: x_s = sqrt(ab_s) x0 + sqrt(1 - ab_s - sigma^2) eps + sigma z with
  sigma = eta sqrt((1 - ab_s) / (1 - ab_t) (1 - ab_t / ab_s)). eta = 0 is deterministic;
  eta = 1 is exactly DDPM with "fixed_small".

Randomness: every random draw (the initial x_T and each z) comes from ``generator`` on the device
of x, so a seeded ``torch.Generator`` makes sampling reproducible. No noise is drawn for the step
into t_prev = -1 (the last step), nor for eta = 0.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .guidance import DEFAULT_NULL_CLASS, guided_eps
from .losses import check_prediction, eps_from_x0, predict_x0_eps, split_channels
from .schedule import NoiseSchedule
from .thresholding import apply_x0_constraint, check_x0_constraint

VARIANCES = ("fixed_small", "fixed_large", "learned_range")
DDIM_DEFAULT_STEPS = 50   # DDIM's number of steps when none are given (DDPM: all T)


@dataclass
class StepOutput:
    """One reverse step. x_prev: the sample at t_prev (B, C, H, W); x0_pred: the predicted clean
    image used for it, after clipping / thresholding (B, C, H, W)."""

    x_prev: Tensor
    x0_pred: Tensor


@dataclass
class SampleResult:
    """A sampling run with its trajectory (``return_trajectory=True``), for viewers such as notebook 06.

    images:    (B, C, H, W) the final samples, on the sampling device.
    timesteps: (R,) long, the recorded timesteps, decreasing (all S of them with stride 1).
    xs:        (R, B, C, H, W) float32 on CPU: xs[k] is the noisy sample x_t fed to the model at
               t = timesteps[k] (xs[0] is the initial noise x_T).
    x0_preds:  (R, B, C, H, W) float32 on CPU: the predicted clean image at t = timesteps[k]
               (after clipping / thresholding, as used by the step).
    y:         (B,) long labels on CPU, or None.
    """

    images: Tensor
    timesteps: Tensor
    xs: Tensor
    x0_preds: Tensor
    y: Optional[Tensor] = None


def _randn_like(x: Tensor, generator: Optional[torch.Generator]) -> Tensor:
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def _check_pair(schedule: NoiseSchedule, t: int, t_prev: Optional[int]) -> int:
    t = int(t)
    t_prev = t - 1 if t_prev is None else int(t_prev)
    if not 0 <= t < schedule.T:
        raise ValueError(f"timestep t={t} outside [0, {schedule.T})")
    if not -1 <= t_prev < t:
        raise ValueError(f"t_prev={t_prev} must satisfy -1 <= t_prev < t={t}")
    return t_prev


def sampling_timesteps(T: int, steps: int) -> Tensor:
    """``steps`` timesteps evenly spread from T-1 down to 0 (rounded): long (steps,), decreasing.

    Starting at T-1 means the first model call sees (almost) pure noise, as x_T is drawn;
    ending at 0 means the last step predicts x_0 from the least-noised level. steps = T gives
    every timestep; steps = 1 gives [T-1] (one jump from noise to the predicted x_0).
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= T:
        raise ValueError(f"number of sampling steps must be an integer in [1, T={T}], got {steps!r}")
    if steps == 1:
        return torch.tensor([T - 1], dtype=torch.long)
    return torch.linspace(T - 1, 0, steps, dtype=torch.float64).round().long()


def _prepare(schedule, model_output, x, t, prediction, clip_x0, dynamic_threshold, eps_from_clipped):
    check_prediction(prediction)
    pred, var_channels = split_channels(model_output, x.shape[1])
    x0, eps = predict_x0_eps(schedule, pred, x, t, prediction)
    x0c = apply_x0_constraint(x0, clip_x0, dynamic_threshold)
    if eps_from_clipped and x0c is not x0:
        eps = eps_from_x0(schedule, x, t, x0c)
    return x0c, eps, var_channels


def ddpm_step(schedule: NoiseSchedule, model_output: Tensor, t: int, x: Tensor, *,
              t_prev: Optional[int] = None, prediction: str = "eps", variance: str = "fixed_small",
              clip_x0: bool = False, dynamic_threshold: Optional[float] = None,
              generator: Optional[torch.Generator] = None, noise: Optional[Tensor] = None) -> StepOutput:
    """One ancestral step x_t -> x_{t_prev} (default t_prev = t - 1), see the module docstring.

    model_output: (B, C or 2C, H, W) eps or v at (x, t). x: x_t (B, C, H, W). t, t_prev: ints.
    variance: "fixed_small" (beta tilde, the posterior variance), "fixed_large" (beta) or
    "learned_range" (needs 2C channels: v in [-1, 1] interpolates log beta tilde .. log beta,
    Improved DDPM). clip_x0 / dynamic_threshold (percentile p): constrain the predicted x0.
    noise (B, C, H, W): the z to use; otherwise drawn from ``generator`` when t_prev >= 0.
    """
    t_prev = _check_pair(schedule, t, t_prev)
    if variance not in VARIANCES:
        raise ValueError(f"variance must be one of {VARIANCES}, got {variance!r}")
    x0, _, var_channels = _prepare(schedule, model_output, x, t, prediction, clip_x0, dynamic_threshold, False)
    ab_t = float(schedule.alpha_bar_at(t))
    ab_s = float(schedule.alpha_bar_at(t_prev))
    beta = 1.0 - ab_t / ab_s
    c_x0 = math.sqrt(ab_s) * beta / (1.0 - ab_t)
    c_xt = math.sqrt(1.0 - beta) * (1.0 - ab_s) / (1.0 - ab_t)
    x_prev = c_x0 * x0 + c_xt * x
    if t_prev >= 0:
        z = _randn_like(x, generator) if noise is None else noise
        small = max(beta * (1.0 - ab_s) / (1.0 - ab_t), 1e-20)
        if variance == "fixed_small":
            std = math.sqrt(small)
        elif variance == "fixed_large":
            std = math.sqrt(beta)
        else:
            if var_channels is None:
                raise ValueError("variance='learned_range' needs a model output with 2C channels "
                                 f"(got {model_output.shape[1]} for C = {x.shape[1]})")
            frac = (var_channels + 1.0) / 2.0
            std = torch.exp(0.5 * (frac * math.log(beta) + (1.0 - frac) * math.log(small)))
        x_prev = x_prev + std * z
    return StepOutput(x_prev=x_prev, x0_pred=x0)


def ddim_step(schedule: NoiseSchedule, model_output: Tensor, t: int, x: Tensor, *,
              t_prev: Optional[int] = None, eta: float = 0.0, prediction: str = "eps",
              clip_x0: bool = False, dynamic_threshold: Optional[float] = None,
              eps_from_clipped_x0: bool = True, generator: Optional[torch.Generator] = None,
              noise: Optional[Tensor] = None) -> StepOutput:
    """One DDIM step x_t -> x_{t_prev} (default t_prev = t - 1), see the module docstring.

    model_output: (B, C or 2C, H, W) eps or v at (x, t). x: x_t (B, C, H, W). t, t_prev: ints
    (t_prev = -1 jumps to the predicted x0). eta >= 0 scales the fresh noise (0: deterministic).
    eps_from_clipped_x0: after clipping x0, recompute eps from it so that (x0, eps) stay
    consistent with x_t (as guided-diffusion does); False keeps the model's eps.
    noise (B, C, H, W): the z to use; otherwise drawn from ``generator`` when eta > 0 and t_prev >= 0.
    """
    t_prev = _check_pair(schedule, t, t_prev)
    if eta < 0:
        raise ValueError(f"eta must be >= 0, got {eta}")
    x0, eps, _ = _prepare(schedule, model_output, x, t, prediction, clip_x0, dynamic_threshold,
                          eps_from_clipped_x0)
    ab_t = float(schedule.alpha_bar_at(t))
    ab_s = float(schedule.alpha_bar_at(t_prev))
    sigma = eta * math.sqrt((1.0 - ab_s) / (1.0 - ab_t) * (1.0 - ab_t / ab_s))
    x_prev = math.sqrt(ab_s) * x0 + math.sqrt(max(1.0 - ab_s - sigma ** 2, 0.0)) * eps
    if sigma > 0 and t_prev >= 0:
        z = _randn_like(x, generator) if noise is None else noise
        x_prev = x_prev + sigma * z
    return StepOutput(x_prev=x_prev, x0_pred=x0)


# ------------------------------------------------------------------------------------ loops
def _resolve_timesteps(schedule: NoiseSchedule, steps: Optional[int], timesteps) -> Tensor:
    if timesteps is not None:
        ts = torch.as_tensor(list(timesteps) if not isinstance(timesteps, Tensor) else timesteps).long().cpu()
        if ts.dim() != 1 or ts.numel() == 0:
            raise ValueError("timesteps must be a non-empty 1-D sequence of integers")
        if (ts[1:] >= ts[:-1]).any() or ts.min() < 0 or ts.max() >= schedule.T:
            raise ValueError(f"timesteps must be strictly decreasing integers in [0, {schedule.T}), got {ts.tolist()}")
        return ts
    return sampling_timesteps(schedule.T, schedule.T if steps is None else steps)


@torch.no_grad()
def _run(model, schedule, shape, y, step: Callable, ts: Tensor, *, guidance_scale, null_class,
         generator, x_T, device, return_trajectory, trajectory_stride, progress):
    if x_T is None:
        if shape is None or len(shape) != 4:
            raise ValueError(f"shape must be (B, C, H, W), got {shape!r}")
        if device is None:
            device = generator.device if generator is not None else torch.device("cpu")
        x = torch.randn(tuple(shape), generator=generator, device=device)
    else:
        if shape is not None and tuple(shape) != tuple(x_T.shape):
            raise ValueError(f"shape {tuple(shape)} disagrees with x_T of shape {tuple(x_T.shape)}")
        x = x_T
    if generator is not None and generator.device.type != x.device.type:
        raise ValueError(f"the generator lives on {generator.device} but sampling runs on {x.device}: "
                         "create the torch.Generator on the sampling device")
    B = x.shape[0]
    if y is not None:
        y = torch.as_tensor(y, device=x.device).long()
        if y.shape != (B,):
            raise ValueError(f"labels y must have shape (B,) = ({B},), got {tuple(y.shape)}")
    if trajectory_stride < 1:
        raise ValueError(f"trajectory_stride must be >= 1, got {trajectory_stride}")
    steps = ts.tolist()
    rec_t, rec_x, rec_x0 = [], [], []
    it = range(len(steps))
    if progress:
        it = tqdm(it, desc="sampling")
    for i in it:
        t = steps[i]
        t_prev = steps[i + 1] if i + 1 < len(steps) else -1
        tb = torch.full((B,), t, dtype=torch.long, device=x.device)
        out = guided_eps(model, x, tb, y, guidance_scale, null_class)
        res = step(out, t, x, t_prev)
        if return_trajectory and (i % trajectory_stride == 0 or i == len(steps) - 1):
            rec_t.append(t)
            rec_x.append(x.detach().float().cpu())
            rec_x0.append(res.x0_pred.detach().float().cpu())
        x = res.x_prev
    if not return_trajectory:
        return x
    return SampleResult(images=x, timesteps=torch.tensor(rec_t, dtype=torch.long), xs=torch.stack(rec_x),
                        x0_preds=torch.stack(rec_x0), y=None if y is None else y.cpu())


def ddpm_sample(model, schedule: NoiseSchedule, shape: Optional[Sequence[int]], y: Optional[Tensor] = None, *,
                guidance_scale: float = 1.0, null_class: int = DEFAULT_NULL_CLASS, prediction: str = "eps",
                variance: str = "fixed_small", steps: Optional[int] = None, timesteps=None,
                clip_x0: bool = False, dynamic_threshold: Optional[float] = None,
                generator: Optional[torch.Generator] = None, x_T: Optional[Tensor] = None, device=None,
                return_trajectory: bool = False, trajectory_stride: int = 1, progress: bool = False):
    """DDPM ancestral sampling (Ho et al. 2020): x_T ~ N(0, I), then ``ddpm_step`` down to x_0.

    model: model(x, t, y) as in the module docstring. shape: (B, C, H, W) (or None when x_T
    (B, C, H, W) is given). y: long (B,) labels or None (unconditional model).
    guidance_scale w: eps = eps_uncond + w (eps_cond - eps_uncond) with the label ``null_class``
    for eps_uncond (w = 1: plain conditional). steps: None = all T timesteps; fewer = an evenly
    respaced subsequence (``sampling_timesteps``); or give ``timesteps`` explicitly.
    All noise comes from ``generator`` on ``device`` (default: the generator's device).
    Returns the samples (B, C, H, W), or a ``SampleResult`` with ``return_trajectory=True``
    (recording every ``trajectory_stride``-th step and the last).
    """
    if variance not in VARIANCES:
        raise ValueError(f"variance must be one of {VARIANCES}, got {variance!r}")
    check_prediction(prediction)
    check_x0_constraint(clip_x0, dynamic_threshold)
    ts = _resolve_timesteps(schedule, steps, timesteps)

    def step(out, t, x, t_prev):
        return ddpm_step(schedule, out, t, x, t_prev=t_prev, prediction=prediction, variance=variance,
                         clip_x0=clip_x0, dynamic_threshold=dynamic_threshold, generator=generator)

    return _run(model, schedule, shape, y, step, ts, guidance_scale=guidance_scale, null_class=null_class,
                generator=generator, x_T=x_T, device=device, return_trajectory=return_trajectory,
                trajectory_stride=trajectory_stride, progress=progress)


def ddim_sample(model, schedule: NoiseSchedule, shape: Optional[Sequence[int]], y: Optional[Tensor] = None, *,
                steps: int = DDIM_DEFAULT_STEPS, eta: float = 0.0, timesteps=None, guidance_scale: float = 1.0,
                null_class: int = DEFAULT_NULL_CLASS, prediction: str = "eps", clip_x0: bool = False,
                dynamic_threshold: Optional[float] = None, eps_from_clipped_x0: bool = True,
                generator: Optional[torch.Generator] = None, x_T: Optional[Tensor] = None, device=None,
                return_trajectory: bool = False, trajectory_stride: int = 1, progress: bool = False):
    """DDIM sampling (Song et al. 2021) with ``steps`` evenly spaced timesteps (any 1 <= steps <= T).

    Arguments as ``ddpm_sample``, plus eta (0 = deterministic DDIM; 1 = DDPM's fixed_small noise)
    and eps_from_clipped_x0 (see ``ddim_step``). Returns (B, C, H, W) or a ``SampleResult``.
    """
    if eta < 0:
        raise ValueError(f"eta must be >= 0, got {eta}")
    check_prediction(prediction)
    check_x0_constraint(clip_x0, dynamic_threshold)
    ts = _resolve_timesteps(schedule, steps, timesteps)

    def step(out, t, x, t_prev):
        return ddim_step(schedule, out, t, x, t_prev=t_prev, eta=eta, prediction=prediction, clip_x0=clip_x0,
                         dynamic_threshold=dynamic_threshold, eps_from_clipped_x0=eps_from_clipped_x0,
                         generator=generator)

    return _run(model, schedule, shape, y, step, ts, guidance_scale=guidance_scale, null_class=null_class,
                generator=generator, x_T=x_T, device=device, return_trajectory=return_trajectory,
                trajectory_stride=trajectory_stride, progress=progress)

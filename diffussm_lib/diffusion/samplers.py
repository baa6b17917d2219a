"""DDPM and DDIM: one ``step`` each, written as the papers write it, and one short loop each.

Reading order: ``ddim_sample`` (the loop) -> ``ddim_step`` (one step), the same for DDPM, then
``dpm_solver.py``. A step needs, beside the schedule, the conversions between eps, v and x_0
(``parameterization.py``) and the x_0 clipping (``thresholding.py``); the loop gets the model output
under guidance from ``guidance.guided_output``.

The denoiser: model(x (B, C, H, W), t long (B,), y long (B,) or None) -> (B, C or 2C, H, W), an eps
or v prediction (``prediction="eps" | "v"``); with 2C channels (a learned variance, ``learn_sigma``)
the last C are used only by DDPM's ``variance="learned_range"``.

A sampler walks decreasing step times t_1 > t_2 > ... > t_S (schedule indices, see ``schedule.py``;
``spaced_step_times`` spreads S of them from T-1 to 0) and then to t_prev = -1, the clean image
(alpha_bar = 1). A step goes from t to s = t_prev. Both steps are written for any pair (t, s), so
any subsequence of timesteps works ("respacing", Improved DDPM Sec. 4); with s = t - 1 they are the
textbook rules. ab_t = alpha_bar_t (DDIM's alpha_t), ab_s = alpha_bar_s (1 at s = -1).

Checks: the entries (``ddpm_sample``, ``ddim_sample``) check their arguments once (``start``); a
step checks nothing and costs no host-device sync (its coefficients are python floats from the
schedule's host copy), so on a GPU the loop runs at the model's pace. A step called by hand must
get T > t > t_prev >= -1.

Randomness: every draw (x_T, each z) comes from ``generator`` on the device of x, so a seeded
``torch.Generator`` makes sampling reproducible; no noise for the last step nor for eta = 0.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import Tensor

from .guidance import DEFAULT_NULL_CLASS, guided_output
from .parameterization import eps_from_x0, predict_x0_eps, split_channels
from .sampler_base import (
    StepOutput,
    Trajectory,
    accepts_old_keywords,  # noqa: F401
    check_step_times,
    spaced_step_times,
    start,
    step_pairs,
)
from .schedule import NoiseSchedule
from .thresholding import constrain_x0

VARIANCES = ("fixed_small", "fixed_large", "learned_range")
DDIM_DEFAULT_STEPS = 50  # DDIM's number of steps when none are given (DDPM: all T)
sampling_timesteps = spaced_step_times  # its old name, kept for committed code and the oracle test


def _noise(x: Tensor, generator: Optional[torch.Generator], noise: Optional[Tensor]) -> Tensor:
    """z ~ N(0, I) like x (B, C, H, W), from ``generator``; or ``noise`` when given."""
    if noise is not None:
        return noise
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


# ------------------------------------------------------------------------------------ DDPM
def ddpm_step(
    schedule: NoiseSchedule,
    model_output: Tensor,
    t: int,
    x: Tensor,
    *,
    t_prev: Optional[int] = None,
    prediction: str = "eps",
    variance: str = "fixed_small",
    clip_x0: bool = False,
    dynamic_threshold: Optional[float] = None,
    generator: Optional[torch.Generator] = None,
    noise: Optional[Tensor] = None,
) -> StepOutput:
    """One ancestral step x_t -> x_s, s = t_prev (default t - 1): DDPM's Algorithm 2 (Ho et al.
    2020), through the predicted x_0 and the posterior q(x_s | x_t, x_0) (eqs. 6-7), whose mean is
    eq. 11's when x_0 is not clipped.

    model_output: (B, C or 2C, H, W) eps or v at (x_t, t), guided already. x: x_t (B, C, H, W).
    variance: "fixed_small" (beta tilde, the posterior variance), "fixed_large" (beta) or
    "learned_range" (2C channels: nu in [-1, 1] interpolates log beta tilde .. log beta, Improved
    DDPM). clip_x0 / dynamic_threshold (percentile p): constrain the predicted x_0.
    noise (B, C, H, W): the z to use; otherwise drawn from ``generator`` (none for s = -1).
    Returns x_s (B, C, H, W) and the x_0 used.
    """
    s = t - 1 if t_prev is None else t_prev
    # (1) The prediction, and with 2C channels Improved DDPM's variance channels nu.
    pred, nu = split_channels(model_output, x.shape[1])
    # (2) x_0 = (x_t - sqrt(1 - ab_t) eps) / sqrt(ab_t) (eq. 15; from v: parameterization.py),
    #     clipped or thresholded if asked.
    x0, _ = predict_x0_eps(schedule, pred, x, t, prediction)
    x0 = constrain_x0(x0, clip_x0, dynamic_threshold)
    # (3) The forward steps from s to t as one: beta = 1 - ab_t / ab_s (beta_t when s = t - 1).
    ab_t, ab_s = schedule.alpha_bar_float(t), schedule.alpha_bar_float(s)
    beta = 1.0 - ab_t / ab_s
    # (4) The posterior mean (eq. 7):
    #     mu = sqrt(ab_s) beta / (1 - ab_t) x_0 + sqrt(1 - beta) (1 - ab_s) / (1 - ab_t) x_t
    c_x0 = math.sqrt(ab_s) * beta / (1.0 - ab_t)
    c_xt = math.sqrt(1.0 - beta) * (1.0 - ab_s) / (1.0 - ab_t)
    mean = c_x0 * x0 + c_xt * x
    if s < 0:  # the last step: ab_s = 1, so mu = x_0, and no noise is added
        return StepOutput(x_prev=mean, x0_pred=x0)
    # (5) The standard deviation: sigma^2 = beta tilde = beta (1 - ab_s) / (1 - ab_t) (eq. 7) or
    #     beta (Sec. 3.2: both are optimal for some data), or learned between their logs (Improved
    #     DDPM eq. 15: log sigma^2 = f log beta + (1 - f) log beta tilde, f = (nu + 1) / 2).
    beta_tilde = max(beta * (1.0 - ab_s) / (1.0 - ab_t), 1e-20)
    if variance == "fixed_small":
        std = math.sqrt(beta_tilde)
    elif variance == "fixed_large":
        std = math.sqrt(beta)
    elif variance == "learned_range":
        if nu is None:
            raise ValueError(
                "variance='learned_range' needs a model output with 2C channels "
                f"(got {model_output.shape[1]} for C = {x.shape[1]})"
            )
        f = (nu + 1.0) / 2.0
        std = torch.exp(0.5 * (f * math.log(beta) + (1.0 - f) * math.log(beta_tilde)))
    else:
        raise ValueError(f"variance must be one of {VARIANCES}, got {variance!r}")
    # (6) x_s = mu + sigma z, z ~ N(0, I) (Algorithm 2, line 4).
    return StepOutput(x_prev=mean + std * _noise(x, generator, noise), x0_pred=x0)


@accepts_old_keywords
@torch.no_grad()
def ddpm_sample(
    model,
    schedule: NoiseSchedule,
    shape: Optional[Sequence[int]],
    y: Optional[Tensor] = None,
    *,
    guidance: float = 1.0,
    null_class: int = DEFAULT_NULL_CLASS,
    prediction: str = "eps",
    variance: str = "fixed_small",
    steps: Optional[int] = None,
    step_times=None,
    clip_x0: bool = False,
    dynamic_threshold: Optional[float] = None,
    generator: Optional[torch.Generator] = None,
    x_T: Optional[Tensor] = None,
    device=None,
    return_trajectory: bool = False,
    trajectory_stride: int = 1,
    progress: bool = False,
):
    """DDPM ancestral sampling (Ho et al. 2020, Algorithm 2): x_T ~ N(0, I), then ``ddpm_step``
    down to x_0.

    model: model(x, t, y) as in the module docstring. shape: (B, C, H, W) (or None when x_T
    (B, C, H, W) is given). y: long (B,) labels or None (an unconditional model).
    guidance w >= 0: eps = eps_null + w (eps_y - eps_null), eps_null from the label ``null_class``
    (w = 1: plain conditional; without labels only w = 1). steps: None = all T timesteps; fewer = an
    evenly respaced subsequence (``spaced_step_times``); or give ``step_times`` (decreasing).
    All noise comes from ``generator`` on ``device`` (default: the generator's device).
    Returns the samples (B, C, H, W), or a ``SampleResult`` with ``return_trajectory=True``
    (recording every ``trajectory_stride``-th step and the last).
    """
    if variance not in VARIANCES:
        raise ValueError(f"variance must be one of {VARIANCES}, got {variance!r}")
    x, y = start(
        shape,
        y,
        x_T=x_T,
        guidance=guidance,
        prediction=prediction,
        clip_x0=clip_x0,
        dynamic_threshold=dynamic_threshold,
        generator=generator,
        device=device,
        trajectory_stride=trajectory_stride,
    )
    if step_times is None:
        ts = spaced_step_times(schedule.T, schedule.T if steps is None else steps)
    else:
        ts = check_step_times(schedule, step_times)
    trajectory = Trajectory(return_trajectory, trajectory_stride, len(ts))
    for t, t_prev in step_pairs(ts, progress):
        t_batch = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
        out = guided_output(model, x, t_batch, y, guidance, null_class)  # eps or v at (x_t, t)
        step = ddpm_step(
            schedule,
            out,
            t,
            x,
            t_prev=t_prev,
            prediction=prediction,
            variance=variance,
            clip_x0=clip_x0,
            dynamic_threshold=dynamic_threshold,
            generator=generator,
        )
        trajectory.add(t, x, step.x0_pred)
        x = step.x_prev
    return trajectory.result(x, y)


# ------------------------------------------------------------------------------------ DDIM
def ddim_step(
    schedule: NoiseSchedule,
    model_output: Tensor,
    t: int,
    x: Tensor,
    *,
    t_prev: Optional[int] = None,
    eta: float = 0.0,
    prediction: str = "eps",
    clip_x0: bool = False,
    dynamic_threshold: Optional[float] = None,
    eps_from_clipped_x0: bool = True,
    generator: Optional[torch.Generator] = None,
    noise: Optional[Tensor] = None,
) -> StepOutput:
    """One DDIM step x_t -> x_s, s = t_prev (default t - 1): eq. 12 of Song et al. 2021, with the
    noise level sigma of eq. 16 (eta = 0: deterministic; eta = 1: DDPM's ancestral step with beta
    tilde, exactly).

    model_output: (B, C or 2C, H, W) eps or v at (x_t, t), guided already. x: x_t (B, C, H, W).
    eps_from_clipped_x0: after clipping x_0, recompute eps from it so that (x_0, eps) still explain
    x_t (as guided-diffusion does; diffusers' use_clipped_model_output); False keeps the model's
    eps.
    noise (B, C, H, W): the z to use; otherwise drawn from ``generator`` when eta > 0 and s >= 0.
    Returns x_s (B, C, H, W) and the x_0 used.
    """
    s = t - 1 if t_prev is None else t_prev
    # (1) The "predicted x_0" of eq. 12, (x_t - sqrt(1 - ab_t) eps) / sqrt(ab_t), and eps (from v:
    #     parameterization.py).
    pred, _ = split_channels(model_output, x.shape[1])
    x0, eps = predict_x0_eps(schedule, pred, x, t, prediction)
    # (2) x_0 clipped or thresholded if asked, and eps made consistent with it.
    x0_clipped = constrain_x0(x0, clip_x0, dynamic_threshold)
    if eps_from_clipped_x0 and x0_clipped is not x0:
        eps = eps_from_x0(schedule, x, t, x0_clipped)
    x0 = x0_clipped
    # (3) sigma = eta sqrt((1 - ab_s) / (1 - ab_t)) sqrt(1 - ab_t / ab_s)   (eq. 16)
    ab_t, ab_s = schedule.alpha_bar_float(t), schedule.alpha_bar_float(s)
    sigma = eta * math.sqrt((1.0 - ab_s) / (1.0 - ab_t) * (1.0 - ab_t / ab_s))
    # (4) x_s = sqrt(ab_s) x_0 + sqrt(1 - ab_s - sigma^2) eps + sigma z   (eq. 12: the predicted
    #     x_0, the "direction pointing to x_t", and fresh noise)
    x_prev = math.sqrt(ab_s) * x0 + math.sqrt(max(1.0 - ab_s - sigma**2, 0.0)) * eps
    if sigma > 0 and s >= 0:
        x_prev = x_prev + sigma * _noise(x, generator, noise)
    return StepOutput(x_prev=x_prev, x0_pred=x0)


@accepts_old_keywords
@torch.no_grad()
def ddim_sample(
    model,
    schedule: NoiseSchedule,
    shape: Optional[Sequence[int]],
    y: Optional[Tensor] = None,
    *,
    steps: int = DDIM_DEFAULT_STEPS,
    eta: float = 0.0,
    step_times=None,
    guidance: float = 1.0,
    null_class: int = DEFAULT_NULL_CLASS,
    prediction: str = "eps",
    clip_x0: bool = False,
    dynamic_threshold: Optional[float] = None,
    eps_from_clipped_x0: bool = True,
    generator: Optional[torch.Generator] = None,
    x_T: Optional[Tensor] = None,
    device=None,
    return_trajectory: bool = False,
    trajectory_stride: int = 1,
    progress: bool = False,
):
    """DDIM sampling (Song et al. 2021) on ``steps`` evenly spaced step times (1 <= steps <= T) or
    the decreasing ``step_times`` given.

    Arguments as ``ddpm_sample``, plus eta >= 0 (0 = deterministic DDIM; 1 = DDPM's fixed_small
    noise) and eps_from_clipped_x0 (see ``ddim_step``). Returns (B, C, H, W) or a ``SampleResult``.
    """
    if eta < 0:
        raise ValueError(f"eta must be >= 0, got {eta}")
    x, y = start(
        shape,
        y,
        x_T=x_T,
        guidance=guidance,
        prediction=prediction,
        clip_x0=clip_x0,
        dynamic_threshold=dynamic_threshold,
        generator=generator,
        device=device,
        trajectory_stride=trajectory_stride,
    )
    if step_times is None:
        ts = spaced_step_times(schedule.T, steps)
    else:
        ts = check_step_times(schedule, step_times)
    trajectory = Trajectory(return_trajectory, trajectory_stride, len(ts))
    for t, t_prev in step_pairs(ts, progress):
        t_batch = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
        out = guided_output(model, x, t_batch, y, guidance, null_class)  # eps or v at (x_t, t)
        step = ddim_step(
            schedule,
            out,
            t,
            x,
            t_prev=t_prev,
            eta=eta,
            prediction=prediction,
            clip_x0=clip_x0,
            dynamic_threshold=dynamic_threshold,
            eps_from_clipped_x0=eps_from_clipped_x0,
            generator=generator,
        )
        trajectory.add(t, x, step.x0_pred)
        x = step.x_prev
    return trajectory.result(x, y)

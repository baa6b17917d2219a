"""DPM-Solver++(2M): a second-order multistep solver of the probability-flow ODE (notebook 06).

C. Lu, Y. Zhou, F. Bao, J. Chen, C. Li, J. Zhu, "DPM-Solver++: Fast Solver for Guided Sampling of
Diffusion Probabilistic Models", arXiv 2211.01095 (2022): Sec. 4.1 (solving with the data
prediction), Algorithm 2 (DPM-Solver++(2M)). The equation numbers below are notebook 06's.

Notation, for a schedule index t (see ``schedule.py``; t = -1 is the clean image):
alpha_t = sqrt(alpha_bar_t), sigma_t = sqrt(1 - alpha_bar_t) (``NoiseSchedule.signal_noise``),
x_t = alpha_t x_0 + sigma_t eps, and the half log-SNR lambda_t = log(alpha_t / sigma_t), which grows
as t falls (+inf at t = -1). x_theta(x_t, t) is the model's *data prediction*, the predicted x_0
(from eps or v, after CFG and optional clipping / thresholding of x_0). A step goes from t to
s = t_prev < t, with h = lambda_s - lambda_t.

(1) The probability-flow ODE, in lambda and divided by sigma:
        d(x / sigma) / dlambda = e^lambda x_theta
(2) Its exact solution from t to s (the linear part integrated exactly, only the network left
    inside):
        x_s = (sigma_s / sigma_t) x_t
              + sigma_s * integral_{lambda_t}^{lambda_s} e^lambda x_theta(x_lambda, lambda) dlambda
(3) Order 1, x_theta frozen at its value at t (sigma_s e^{lambda_s} = alpha_s):
        x_s = (sigma_s / sigma_t) x_t + alpha_s (1 - e^{-h}) x_theta(x_t, t)
    This is DDIM with eta = 0, exactly (DPM-Solver++1).
(4) Order 2, multistep (Algorithm 2): x_theta taken linear in lambda, its slope from the previous
    step's prediction at t_last > t, with h_last = lambda_t - lambda_{t_last} and r = h_last / h:
        D = (1 + 1 / (2r)) x_theta(x_t, t) - 1 / (2r) x_theta(x_{t_last}, t_last)
        x_s = (sigma_s / sigma_t) x_t + alpha_s (1 - e^{-h}) D
    One model evaluation per step, as DDIM; the history is the previous step's x_theta.

The first step has no history and takes (3). The last step, to s = -1 (lambda = +inf: h = inf,
alpha = 1, sigma = 0), takes (3) too, which there returns x_theta itself, as DDIM's last step does
(the slope term of (4) would be 0 * inf). Why data prediction: under guidance the model output
leaves the data range, and x_theta (unlike eps) can be clipped back to it before it enters the
update, whose weight alpha_s (1 - e^{-h}) on it never exceeds 1.

Step times (``dpm_solver_step_times``): S model evaluations at round(k (T-1) / S), k = S, ..., 1,
then the jump (3) to the clean image; diffusers' default grid for this solver (timestep_spacing
"linspace"). DDIM's grid (``spaced_step_times``) ends at t = 0 instead, and its last ODE step, from
about (T-1)/S to 0, spans a long stretch of lambda (lambda_0 is about 5 on the cosine schedule),
where x_theta is far from linear and r is small: (4) extrapolates with weight 1/(2r) there (notebook
06 measures what that costs). Any decreasing list of step times can be given instead.

All coefficients are python floats computed in float64 from the schedule's host copy (no device
sync per step). Reading order as in ``samplers.py``: ``dpm_solver_sample`` (the loop, which keeps
the history) -> ``dpm_solver_step``.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor

from .guidance import DEFAULT_NULL_CLASS, guided_output
from .parameterization import predict_x0_eps, split_channels
from .sampler_base import (
    StepOutput,
    Trajectory,
    accepts_old_keywords,
    check_step_times,
    start,
    step_pairs,
)
from .schedule import NoiseSchedule
from .thresholding import constrain_x0

DPM_SOLVER_DEFAULT_STEPS = 15  # measured on the pretrained model: benchmarks/results/samplers.md
ORDERS = (1, 2)


def dpm_solver_step_times(T: int, steps: int) -> Tensor:
    """The S = ``steps`` step times of DPM-Solver++: round(k (T-1) / S) for k = S, ..., 1, long
    (S,), decreasing from T-1 and leaving out t = 0 (the last step jumps from about (T-1)/S to the
    clean image). Distinct for 1 <= S <= T-1, so that is the range allowed."""
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= T - 1:
        raise ValueError(
            f"number of DPM-Solver++ steps must be an integer in [1, T-1 = {T - 1}] "
            f"(its grid leaves out t = 0), got {steps!r}"
        )
    return torch.linspace(T - 1, 0, steps + 1, dtype=torch.float64)[:-1].round().long()


dpm_solver_timesteps = dpm_solver_step_times  # the old name, kept for the oracle test


def half_log_snr(schedule: NoiseSchedule, t: int) -> float:
    """lambda_t = log(alpha_t / sigma_t) = 0.5 log(alpha_bar_t / (1 - alpha_bar_t)), a python
    float; +inf at t = -1."""
    if t < 0:
        return math.inf
    ab = schedule.alpha_bar_float(int(t))
    return 0.5 * (math.log(ab) - math.log1p(-ab))


def check_order(order) -> int:
    if order not in ORDERS:
        raise ValueError(f"DPM-Solver++ order must be one of {ORDERS}, got {order!r}")
    return order


def dpm_solver_step(
    schedule: NoiseSchedule,
    model_output: Tensor,
    t: int,
    x: Tensor,
    *,
    t_prev: Optional[int] = None,
    last: Optional[Tuple[int, Tensor]] = None,
    order: int = 2,
    prediction: str = "eps",
    clip_x0: bool = False,
    dynamic_threshold: Optional[float] = None,
) -> StepOutput:
    """One DPM-Solver++ step x_t -> x_s, s = t_prev (default t - 1): eq. (3) or (4) of the module
    docstring (Lu et al. 2022, Algorithm 2).

    model_output: (B, C or 2C, H, W) eps or v at (x_t, t), guided already. x: x_t (B, C, H, W).
    last: (t_last, x0_last) from the previous step: its step time t_last > t and its data prediction
    x0_last (B, C, H, W) (that step's ``x0_pred``); None on the first step. order 1: eq. (3) (DDIM);
    order 2: eq. (4) when ``last`` is given and s >= 0, else (3).
    clip_x0 / dynamic_threshold: constrain x_theta before it is used (and kept for the next step).
    Returns x_s and x_theta(x_t, t) (the next step's ``last`` is (t, x0_pred)).
    """
    s = t - 1 if t_prev is None else t_prev
    # (a) The data prediction x_theta(x_t, t): x_0 from eps or v, clipped or thresholded if asked.
    pred, _ = split_channels(model_output, x.shape[1])
    x0, _ = predict_x0_eps(schedule, pred, x, t, prediction)
    x0 = constrain_x0(x0, clip_x0, dynamic_threshold)
    # (b) The step in half log-SNR, h = lambda_s - lambda_t > 0, and the scales at both ends.
    alpha_s, sigma_s = schedule.signal_noise(s)
    _, sigma_t = schedule.signal_noise(t)
    h = half_log_snr(schedule, s) - half_log_snr(schedule, t)
    # (c) Order 1, eq. (3): x_theta frozen at its value at t.
    D = x0
    # (d) Order 2, eq. (4) (Algorithm 2): x_theta linear in lambda, its slope from the previous
    #     step's prediction: r = h_last / h, D = (1 + 1/(2r)) x_theta(t) - 1/(2r) x_theta(t_last).
    #     Not on the last step (s = -1, h = inf): there (3) returns x_theta itself.
    if order == 2 and last is not None and s >= 0:
        t_last, x0_last = last
        r = (half_log_snr(schedule, t) - half_log_snr(schedule, int(t_last))) / h
        D = (1.0 + 0.5 / r) * x0 - (0.5 / r) * x0_last
    # (e) x_s = (sigma_s / sigma_t) x_t + alpha_s (1 - e^{-h}) D: the exact solution (2) with D
    #     for x_theta in the integral. The weight on D lies in [0, 1].
    data_weight = -math.expm1(-h) * alpha_s
    return StepOutput(x_prev=(sigma_s / sigma_t) * x + data_weight * D, x0_pred=x0)


@accepts_old_keywords
@torch.no_grad()
def dpm_solver_sample(
    model,
    schedule: NoiseSchedule,
    shape: Optional[Sequence[int]],
    y: Optional[Tensor] = None,
    *,
    steps: int = DPM_SOLVER_DEFAULT_STEPS,
    order: int = 2,
    step_times=None,
    guidance: float = 1.0,
    null_class: int = DEFAULT_NULL_CLASS,
    prediction: str = "eps",
    clip_x0: bool = False,
    dynamic_threshold: Optional[float] = None,
    generator: Optional[torch.Generator] = None,
    x_T: Optional[Tensor] = None,
    device=None,
    return_trajectory: bool = False,
    trajectory_stride: int = 1,
    progress: bool = False,
):
    """DPM-Solver++(2M) sampling (Algorithm 2) on the ``steps`` step times of
    ``dpm_solver_step_times`` (or the decreasing ``step_times`` given), then one last step to the
    clean image: ``steps`` model evaluations (each a batch of 2B with guidance not in {0, 1}).

    Arguments as ``ddim_sample``; order 1 is DDIM (eta = 0) on the same step times, exactly; order 2
    the multistep solver.
    The sampler is deterministic: ``generator`` only draws x_T. Returns (B, C, H, W) or a
    ``SampleResult`` whose x0_preds are the data predictions x_theta the steps used.
    """
    check_order(order)
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
        ts = dpm_solver_step_times(schedule.T, steps)
    else:
        ts = check_step_times(schedule, step_times)
    trajectory = Trajectory(return_trajectory, trajectory_stride, len(ts))
    last = None  # (t, x_theta) of the previous step: the multistep history
    for t, t_prev in step_pairs(ts, progress):
        t_batch = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
        out = guided_output(model, x, t_batch, y, guidance, null_class)  # eps or v at (x_t, t)
        step = dpm_solver_step(
            schedule,
            out,
            t,
            x,
            t_prev=t_prev,
            last=last,
            order=order,
            prediction=prediction,
            clip_x0=clip_x0,
            dynamic_threshold=dynamic_threshold,
        )
        trajectory.add(t, x, step.x0_pred)
        x, last = step.x_prev, (t, step.x0_pred)
    return trajectory.result(x, y)

"""DPM-Solver++(2M): a second-order multistep solver of the probability-flow ODE (notebook 06).

C. Lu, Y. Zhou, F. Bao, J. Chen, C. Li, J. Zhu, "DPM-Solver++: Fast Solver for Guided Sampling of
Diffusion Probabilistic Models", arXiv 2211.01095 (2022): Sec. 4.1 (solving with the data prediction),
Algorithm 2 (DPM-Solver++(2M)). The equation numbers below are notebook 06's.

Notation, for a schedule index t (see ``schedule.py``; t = -1 is the clean image):
alpha_t = sqrt(alpha_bar_t), sigma_t = sqrt(1 - alpha_bar_t), x_t = alpha_t x_0 + sigma_t eps, and the
half log-SNR lambda_t = log(alpha_t / sigma_t), which grows as t falls (+inf at t = -1).
x_theta(x_t, t) is the model's *data prediction*, the predicted x_0 (from eps or v, after CFG and
optional clipping / thresholding of x_0). A step goes from t to s = t_prev < t, with h = lambda_s - lambda_t.

(1) The probability-flow ODE, in lambda and divided by sigma: d(x / sigma) / dlambda = e^lambda x_theta.
(2) Its exact solution from t to s (the linear part integrated exactly, only the network left inside):
        x_s = (sigma_s / sigma_t) x_t + sigma_s * integral_{lambda_t}^{lambda_s} e^lambda x_theta(x_lambda, lambda) dlambda
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

Timesteps (``dpm_solver_timesteps``): S model evaluations at round(k (T-1) / S), k = S, ..., 1, then
the jump (3) to the clean image; diffusers' default grid for this solver (timestep_spacing
"linspace"). DDIM's grid (``sampling_timesteps``) ends at t = 0 instead, and its last ODE step, from
about (T-1)/S to 0, spans a long stretch of lambda (lambda_0 is about 5 on the cosine schedule), where
x_theta is far from linear and r is small: (4) extrapolates with weight 1/(2r) there (notebook 06
measures what that costs). Any decreasing list of timesteps can be given instead.

All coefficients are computed in float64 from the schedule and applied as python floats.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor

from .guidance import DEFAULT_NULL_CLASS
from .losses import check_prediction
from .samplers import StepOutput, _check_pair, _prepare, _resolve_timesteps, _run
from .schedule import NoiseSchedule
from .thresholding import check_x0_constraint

DPM_SOLVER_DEFAULT_STEPS = 20   # the paper's "15 to 20 steps" for guided sampling (until measured here)
ORDERS = (1, 2)


def dpm_solver_timesteps(T: int, steps: int) -> Tensor:
    """The S = ``steps`` timesteps of DPM-Solver++: round(k (T-1) / S) for k = S, ..., 1, long (S,),
    decreasing from T-1 and leaving out t = 0 (the last step jumps from about (T-1)/S to the clean
    image). Distinct for 1 <= S <= T-1, so that is the range allowed."""
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= T - 1:
        raise ValueError(f"number of DPM-Solver++ steps must be an integer in [1, T-1 = {T - 1}] (its grid "
                         f"leaves out t = 0), got {steps!r}")
    return torch.linspace(T - 1, 0, steps + 1, dtype=torch.float64)[:-1].round().long()


def half_log_snr(schedule: NoiseSchedule, t: int) -> float:
    """lambda_t = log(alpha_t / sigma_t) = 0.5 log(alpha_bar_t / (1 - alpha_bar_t)); +inf for t = -1."""
    if t < 0:
        return math.inf
    ab = float(schedule.alpha_bar[int(t)])
    return 0.5 * (math.log(ab) - math.log1p(-ab))


def _alpha_sigma(schedule: NoiseSchedule, t: int) -> Tuple[float, float]:
    ab = float(schedule.alpha_bar_at(t))
    return math.sqrt(ab), math.sqrt(1.0 - ab)


def check_order(order) -> int:
    if order not in ORDERS:
        raise ValueError(f"DPM-Solver++ order must be one of {ORDERS}, got {order!r}")
    return order


def dpm_solver_step(schedule: NoiseSchedule, model_output: Tensor, t: int, x: Tensor, *,
                    t_prev: Optional[int] = None, last: Optional[Tuple[int, Tensor]] = None, order: int = 2,
                    prediction: str = "eps", clip_x0: bool = False,
                    dynamic_threshold: Optional[float] = None) -> StepOutput:
    """One DPM-Solver++ step x_t -> x_{t_prev} (default t_prev = t - 1), see the module docstring.

    model_output: (B, C or 2C, H, W) eps or v at (x, t) (guided already). x: x_t (B, C, H, W).
    last: (t_last, x0_last) from the previous step: its timestep t_last > t and its data prediction
    x0_last (B, C, H, W) (that step's ``x0_pred``); None on the first step. order 1: eq. (3) (DDIM);
    order 2: eq. (4) when ``last`` is given and t_prev >= 0, else (3).
    clip_x0 / dynamic_threshold: constrain x_theta before it is used (and stored for the next step).
    Returns x_{t_prev} and x_theta(x_t, t) (the next step's ``last`` is (t, x0_pred)).
    """
    t_prev = _check_pair(schedule, t, t_prev)
    check_order(order)
    x0, _, _ = _prepare(schedule, model_output, x, t, prediction, clip_x0, dynamic_threshold, False)
    alpha_s, sigma_s = _alpha_sigma(schedule, t_prev)            # s: where the step lands
    _, sigma_t = _alpha_sigma(schedule, t)
    h = half_log_snr(schedule, t_prev) - half_log_snr(schedule, t)
    data_weight = -math.expm1(-h) * alpha_s                        # alpha_s (1 - e^{-h}), in [0, 1]
    D = x0
    if order == 2 and last is not None and t_prev >= 0:
        t_last, x0_last = last
        if not t_last > t:
            raise ValueError(f"the previous step's timestep t_last={t_last} must be > t={t}")
        r = (half_log_snr(schedule, t) - half_log_snr(schedule, int(t_last))) / h   # (4): r = h_last / h
        D = (1.0 + 0.5 / r) * x0 - (0.5 / r) * x0_last
    x_prev = (sigma_s / sigma_t) * x + data_weight * D                              # (3) or (4)
    return StepOutput(x_prev=x_prev, x0_pred=x0)


def dpm_solver_sample(model, schedule: NoiseSchedule, shape: Optional[Sequence[int]], y: Optional[Tensor] = None, *,
                      steps: int = DPM_SOLVER_DEFAULT_STEPS, order: int = 2, timesteps=None,
                      guidance_scale: float = 1.0, null_class: int = DEFAULT_NULL_CLASS, prediction: str = "eps",
                      clip_x0: bool = False, dynamic_threshold: Optional[float] = None,
                      generator: Optional[torch.Generator] = None, x_T: Optional[Tensor] = None, device=None,
                      return_trajectory: bool = False, trajectory_stride: int = 1, progress: bool = False):
    """DPM-Solver++(2M) sampling (Algorithm 2) on the ``steps`` timesteps of ``dpm_solver_timesteps``
    (or the decreasing ``timesteps`` given), then one last step to the clean image: ``steps`` model
    evaluations (each a batch of 2B with guidance w not in {0, 1}).

    Arguments as ``ddim_sample``; order 1 is DDIM (eta = 0) on the same timesteps, exactly; order 2
    the multistep solver.
    The sampler is deterministic: ``generator`` only draws x_T. Returns (B, C, H, W) or a
    ``SampleResult`` whose x0_preds are the data predictions x_theta the steps used.
    """
    check_order(order)
    check_prediction(prediction)
    check_x0_constraint(clip_x0, dynamic_threshold)
    ts = _resolve_timesteps(schedule, steps, timesteps) if timesteps is not None \
        else dpm_solver_timesteps(schedule.T, steps)
    history = {}

    def step(out, t, x, t_prev):
        res = dpm_solver_step(schedule, out, t, x, t_prev=t_prev, last=history.get("last"), order=order,
                              prediction=prediction, clip_x0=clip_x0, dynamic_threshold=dynamic_threshold)
        history["last"] = (t, res.x0_pred)
        return res

    return _run(model, schedule, shape, y, step, ts, guidance_scale=guidance_scale, null_class=null_class,
                generator=generator, x_T=x_T, device=device, return_trajectory=return_trajectory,
                trajectory_stride=trajectory_stride, progress=progress)

"""A learned variance and the variational bound that trains it (Improved DDPM, Nichol & Dhariwal 2021).

A model with ``learn_sigma`` outputs 2C channels: the eps / v prediction, then nu in the last C
(Improved DDPM's "v"; v here is the v-prediction), which interpolates the reverse-step log variance
between the two natural choices,

    log Sigma_theta(x_t, t) = f log beta_t + (1 - f) log beta_tilde_t,    f = (nu + 1) / 2,

(beta_tilde_t is the posterior variance, its log clipped at t = 0 to its t = 1 value). The simple
loss does not see nu. The hybrid objective of Improved DDPM, which DiT (and so DiffuSSM) trains with,
adds lambda L_vlb with lambda = 0.001 and L_vlb = sum_t L_t = T E_t[L_t]:

    L_t = KL( q(x_{t-1} | x_t, x_0) || p_theta(x_{t-1} | x_t) )       t >= 1 (two Gaussians)
    L_0 = -log p_theta(x_0 | x_1)                                       the discretised Gaussian decoder

in bits per dimension. The model's mean enters L_t with a stop-gradient, so the bound trains only the
variance and the simple loss alone trains the mean. With T = 1000, lambda T E_t[L_t] = E_t[L_t]: the
``mse + vb`` of the DiT code. Shapes: x (B, C, H, W); per-sample terms (B,).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .schedule import NoiseSchedule, Timestep, coef

VLB_WEIGHT = 0.001  # lambda of the hybrid objective (Improved DDPM, Sec. 3.1)


def normal_kl(mean1: Tensor, logvar1: Tensor, mean2: Tensor, logvar2: Tensor) -> Tensor:
    """KL( N(mean1, exp logvar1) || N(mean2, exp logvar2) ) element-wise, in nats (broadcasting)."""
    return 0.5 * (
        -1.0
        + logvar2
        - logvar1
        + torch.exp(logvar1 - logvar2)
        + (mean1 - mean2) ** 2 * torch.exp(-logvar2)
    )


def _standard_normal_cdf(x: Tensor) -> Tensor:
    """A fast approximation of the standard normal CDF (the one the Improved DDPM code uses)."""
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def discretized_gaussian_log_likelihood(x: Tensor, mean: Tensor, log_scale: Tensor) -> Tensor:
    """log P(x) element-wise for data x in [-1, 1] on 256 levels under N(mean, exp(log_scale)^2)
    integrated over each level's bin (of width 2/255; the end bins reach to -inf / +inf), in nats."""
    centered = x - mean
    inv_std = torch.exp(-log_scale)
    cdf_plus = _standard_normal_cdf(inv_std * (centered + 1.0 / 255.0))
    cdf_min = _standard_normal_cdf(inv_std * (centered - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    log_mid = torch.log((cdf_plus - cdf_min).clamp(min=1e-12))
    return torch.where(
        x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_min, log_mid)
    )


def learned_log_variance(schedule: NoiseSchedule, var_channels: Tensor, t: Timestep) -> Tensor:
    """log Sigma_theta: nu (B, C, H, W) -> f log beta_t + (1 - f) log beta_tilde_t (clipped), f = (nu + 1) / 2."""
    frac = (var_channels + 1.0) / 2.0
    max_log = coef(torch.log(schedule.betas), t, var_channels)
    min_log = coef(schedule.posterior_log_variance_clipped, t, var_channels)
    return frac * max_log + (1.0 - frac) * min_log


def vlb_terms(
    schedule: NoiseSchedule,
    x0: Tensor,
    x_t: Tensor,
    t: Tensor,
    x0_pred: Tensor,
    var_channels: Tensor,
) -> Tensor:
    """L_t per sample (B,), in bits per dimension: the KL of the true posterior q(x_{t-1} | x_t, x0)
    from the model's p(x_{t-1} | x_t) = N(posterior mean at ``x0_pred``, Sigma_theta), and at t = 0
    the decoder's negative log-likelihood of x0. Pass ``x0_pred`` detached for the stop-gradient."""
    true_mean, _ = schedule.q_posterior(x0, x_t, t)
    true_logvar = coef(schedule.posterior_log_variance_clipped, t, x0)
    model_mean, _ = schedule.q_posterior(x0_pred, x_t, t)
    model_logvar = learned_log_variance(schedule, var_channels, t)
    dims = tuple(range(1, x0.dim()))
    kl = normal_kl(true_mean, true_logvar, model_mean, model_logvar).mean(dims) / math.log(2.0)
    nll = -discretized_gaussian_log_likelihood(x0, model_mean, 0.5 * model_logvar).mean(
        dims
    ) / math.log(2.0)
    return torch.where(t == 0, nll, kl)

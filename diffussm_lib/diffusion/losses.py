"""What the denoiser predicts, and the training loss.

Three equivalent parameterisations of the denoiser's output, given x_t = a x_0 + b eps with
a = sqrt(alpha_bar_t), b = sqrt(1 - alpha_bar_t) (so a^2 + b^2 = 1):

* ``"eps"``: the noise eps (DDPM). x_0 = (x_t - b eps) / a.
* ``"v"``:   the velocity v = a eps - b x_0 (Salimans & Ho 2022). x_0 = a x_t - b v,
  eps = b x_t + a v. Unlike eps, v stays informative at high noise, where x_0 = (x_t - b eps)/a
  divides by a tiny a.
* ``x0`` itself (used internally by the samplers).

Learned variance: a model whose output has 2C channels (``learn_sigma``) predicts eps (or v) in the
first C channels and a variance in the last C. The simple loss trains the first C; the last C are
trained by ``vlb_weight`` times the variational bound (the hybrid objective, ``vlb.py``).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .schedule import NoiseSchedule, Timestep, coef
from .vlb import VLB_WEIGHT, vlb_terms

PREDICTIONS = ("eps", "v")
WEIGHTINGS = ("none", "min_snr", "min_snr_plus_one")


def check_prediction(prediction: str) -> None:
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction must be one of {PREDICTIONS} (diffusion.prediction), got {prediction!r}")


def _a_b(schedule: NoiseSchedule, t: Timestep, x: Tensor) -> tuple[Tensor, Tensor]:
    return coef(schedule.sqrt_alpha_bar, t, x), coef(schedule.sqrt_one_minus_alpha_bar, t, x)


def x0_from_eps(schedule: NoiseSchedule, x_t: Tensor, t: Timestep, eps: Tensor) -> Tensor:
    """x_0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t). All (B, C, H, W); t long (B,) or int."""
    a, b = _a_b(schedule, t, x_t)
    return (x_t - b * eps) / a


def eps_from_x0(schedule: NoiseSchedule, x_t: Tensor, t: Timestep, x0: Tensor) -> Tensor:
    """eps = (x_t - sqrt(alpha_bar_t) x_0) / sqrt(1 - alpha_bar_t). All (B, C, H, W)."""
    a, b = _a_b(schedule, t, x_t)
    return (x_t - a * x0) / b


def v_from_x0_eps(schedule: NoiseSchedule, x0: Tensor, eps: Tensor, t: Timestep) -> Tensor:
    """The v-prediction target v = sqrt(alpha_bar_t) eps - sqrt(1 - alpha_bar_t) x_0. All (B, C, H, W)."""
    a, b = _a_b(schedule, t, x0)
    return a * eps - b * x0


def x0_from_v(schedule: NoiseSchedule, x_t: Tensor, t: Timestep, v: Tensor) -> Tensor:
    """x_0 = sqrt(alpha_bar_t) x_t - sqrt(1 - alpha_bar_t) v. All (B, C, H, W)."""
    a, b = _a_b(schedule, t, x_t)
    return a * x_t - b * v


def eps_from_v(schedule: NoiseSchedule, x_t: Tensor, t: Timestep, v: Tensor) -> Tensor:
    """eps = sqrt(1 - alpha_bar_t) x_t + sqrt(alpha_bar_t) v. All (B, C, H, W)."""
    a, b = _a_b(schedule, t, x_t)
    return b * x_t + a * v


def split_channels(model_output: Tensor, channels: int) -> tuple[Tensor, Optional[Tensor]]:
    """(prediction (B, C, H, W), variance channels (B, C, H, W) or None) from a model output with
    C or 2C channels (2C = learned variance: the first C are the eps / v prediction)."""
    k = model_output.shape[1]
    if k == channels:
        return model_output, None
    if k == 2 * channels:
        return model_output[:, :channels], model_output[:, channels:]
    raise ValueError(f"model output has {k} channels; expected C = {channels} (or 2C = {2 * channels} "
                     f"with a learned variance), output shape {tuple(model_output.shape)}")


def predict_x0_eps(schedule: NoiseSchedule, model_output: Tensor, x_t: Tensor, t: Timestep,
                   prediction: str = "eps") -> tuple[Tensor, Tensor]:
    """Turn a model output (eps or v, (B, C, H, W)) at x_t (B, C, H, W) into (x0, eps), both (B, C, H, W)."""
    check_prediction(prediction)
    if prediction == "eps":
        return x0_from_eps(schedule, x_t, t, model_output), model_output
    return x0_from_v(schedule, x_t, t, model_output), eps_from_v(schedule, x_t, t, model_output)


def loss_weights(schedule: NoiseSchedule, t: Tensor, prediction: str = "eps", weighting: str = "none",
                 gamma: float = 5.0) -> Tensor:
    """Per-sample weights (B,) of the simple loss at timesteps t (B,).

    ``"none"``: 1. ``"min_snr"`` (Min-SNR-gamma, Hang et al. 2023): weight the x_0 error by
    min(SNR_t, gamma), i.e. no more than gamma for the easy low-noise steps. Written for the target
    the network is trained on, with SNR = a^2 / b^2:

        ||x0 - x0_hat||^2 = ||eps - eps_hat||^2 / SNR = ||v - v_hat||^2 / (SNR + 1)
        eps target: w = min(SNR, gamma) / SNR        v target: w = min(SNR, gamma) / (SNR + 1)

    For v the paper's weight goes to 0 at high noise (SNR -> 0), where the model must draw the digit
    from almost pure noise. ``"min_snr_plus_one"`` is the variant several fine-tuning codebases use for
    v (the SNR of the v target is SNR + 1): w = min(SNR + 1, gamma) / (SNR + 1) = min(1, gamma / (SNR + 1)),
    which caps the low-noise end only and keeps weight 1 at high noise; for eps it is ``"min_snr"``.
    """
    check_prediction(prediction)
    if weighting == "none":
        return torch.ones(t.shape, device=t.device)
    if weighting not in WEIGHTINGS:
        raise ValueError(f"train.loss_weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    snr = schedule.snr.to(t.device)[t]
    if prediction == "eps":
        return snr.clamp(max=gamma) / snr
    if weighting == "min_snr":
        return snr.clamp(max=gamma) / (snr + 1.0)
    return (gamma / (snr + 1.0)).clamp(max=1.0)


def diffusion_loss(model, schedule: NoiseSchedule, x0: Tensor, y: Optional[Tensor],
                   generator: Optional[torch.Generator] = None, prediction: str = "eps",
                   t: Optional[Tensor] = None, noise: Optional[Tensor] = None,
                   vlb_weight: float = VLB_WEIGHT, weighting: str = "none", min_snr_gamma: float = 5.0) -> Tensor:
    """The "simple" loss of DDPM, E_{t, eps} || target - model(x_t, t, y) ||^2 (mean over all
    entries; with ``weighting="min_snr"`` (or its variant) each sample's mean is first multiplied by its
    ``loss_weights``), plus for a learned variance (2C output channels) ``vlb_weight * T * E_t[L_t]``
    (the hybrid objective of Improved DDPM; the bound sees the prediction through a stop-gradient).

    model: callable model(x (B, C, H, W), t long (B,), y long (B,) or None) -> (B, C or 2C, H, W).
    x0: clean images (B, C, H, W). y: labels (B,) or None (apply ``drop_labels`` before, for
    classifier-free guidance). t ~ Uniform{0..T-1} and noise ~ N(0, I) are drawn from ``generator``
    (on x0's device) unless given. target = eps (``prediction="eps"``) or v (``"v"``).
    Returns a scalar tensor.
    """
    check_prediction(prediction)
    if x0.dim() != 4:
        raise ValueError(f"x0 must have shape (B, C, H, W), got {tuple(x0.shape)}")
    B = x0.shape[0]
    if t is None:
        t = torch.randint(0, schedule.T, (B,), generator=generator, device=x0.device)
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    x_t = schedule.q_sample(x0, t, noise)
    out, var = split_channels(model(x_t, t, y), x0.shape[1])
    target = noise if prediction == "eps" else v_from_x0_eps(schedule, x0, noise, t)
    if weighting == "none":
        loss = F.mse_loss(out.float(), target.float())
    else:
        per_sample = (out.float() - target.float()).pow(2).flatten(1).mean(1)                # (B,)
        loss = (loss_weights(schedule, t, prediction, weighting, min_snr_gamma) * per_sample).mean()
    if var is None or vlb_weight == 0:
        return loss
    x0_pred, _ = predict_x0_eps(schedule, out.detach().float(), x_t.float(), t, prediction)   # stop-gradient
    vb = vlb_terms(schedule, x0.float(), x_t.float(), t, x0_pred, var.float())
    return loss + vlb_weight * schedule.T * vb.mean()

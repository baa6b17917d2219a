"""The training loss: DDPM's simple loss on the eps or v target, optionally Min-SNR weighted, plus
the variational bound for a learned variance.

The target and the conversions between eps, v and x_0 are in ``parameterization.py`` (the samplers
use them too). Learned variance: a model whose output has 2C channels (``learn_sigma``) predicts eps
(or v) in the first C channels and a variance in the last C. The simple loss trains the first C;
the last C are trained by ``vlb_weight`` times the variational bound (the hybrid objective,
``vlb.py``).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .parameterization import check_prediction, predict_x0_eps, split_channels, v_from_x0_eps
from .schedule import NoiseSchedule
from .vlb import VLB_WEIGHT, vlb_terms

WEIGHTINGS = ("none", "min_snr", "min_snr_plus_one")


def loss_weights(
    schedule: NoiseSchedule,
    t: Tensor,
    prediction: str = "eps",
    weighting: str = "none",
    gamma: float = 5.0,
) -> Tensor:
    """Per-sample weights (B,) of the simple loss at timesteps t (B,).

    ``"none"``: 1. ``"min_snr"`` (Min-SNR-gamma, Hang et al. 2023): weight the x_0 error by
    min(SNR_t, gamma), i.e. no more than gamma for the easy low-noise steps. Written for the target
    the network is trained on, with SNR = a^2 / b^2:

        ||x0 - x0_hat||^2 = ||eps - eps_hat||^2 / SNR = ||v - v_hat||^2 / (SNR + 1)
        eps target: w = min(SNR, gamma) / SNR        v target: w = min(SNR, gamma) / (SNR + 1)

    For v the paper's weight goes to 0 at high noise (SNR -> 0), where the model must draw the digit
    from almost pure noise. ``"min_snr_plus_one"`` is the variant several fine-tuning codebases use
    for v (the SNR of the v target is SNR + 1): w = min(SNR + 1, gamma) / (SNR + 1)
    = min(1, gamma / (SNR + 1)), which caps the low-noise end only and keeps weight 1 at high
    noise; for eps it is ``"min_snr"``.
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


def diffusion_loss(
    model,
    schedule: NoiseSchedule,
    x0: Tensor,
    y: Optional[Tensor],
    generator: Optional[torch.Generator] = None,
    prediction: str = "eps",
    t: Optional[Tensor] = None,
    noise: Optional[Tensor] = None,
    vlb_weight: float = VLB_WEIGHT,
    weighting: str = "none",
    min_snr_gamma: float = 5.0,
) -> Tensor:
    """The "simple" loss of DDPM, E_{t, eps} || target - model(x_t, t, y) ||^2 (mean over all
    entries; with ``weighting="min_snr"`` (or its variant) each sample's mean is first multiplied by
    its ``loss_weights``), plus for a learned variance (2C output channels)
    ``vlb_weight * T * E_t[L_t]``
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
        per_sample = (out.float() - target.float()).pow(2).flatten(1).mean(1)  # (B,)
        loss = (loss_weights(schedule, t, prediction, weighting, min_snr_gamma) * per_sample).mean()
    if var is None or vlb_weight == 0:
        return loss
    # the bound sees the prediction through a stop-gradient
    x0_pred, _ = predict_x0_eps(schedule, out.detach().float(), x_t.float(), t, prediction)
    vb = vlb_terms(schedule, x0.float(), x_t.float(), t, x0_pred, var.float())
    return loss + vlb_weight * schedule.T * vb.mean()

"""What the denoiser predicts, and the conversions between eps, v and x_0 (used by the loss and the
samplers alike).

With x_t = a x_0 + b eps, a = sqrt(alpha_bar_t), b = sqrt(1 - alpha_bar_t) (DDPM eq. 4;
a^2 + b^2 = 1; ``NoiseSchedule.signal_noise`` gives a and b):

* ``"eps"``: the noise eps (DDPM). x_0 = (x_t - b eps) / a  (DDPM eq. 15).
* ``"v"``:   the velocity v = a eps - b x_0 (Salimans & Ho 2022, Sec. 4). x_0 = a x_t - b v and
  eps = b x_t + a v. Unlike eps, v stays informative at high noise, where (x_t - b eps) / a divides
  by a tiny a.

A model with a learned variance (``learn_sigma``) outputs 2C channels: the eps / v prediction, then
the variance channels (``split_channels``). All tensors are (B, C, H, W); t is a python int (one
timestep for the whole batch: the samplers) or long (B,) (one per image: the loss).
"""

from __future__ import annotations

from typing import Optional

from torch import Tensor

from .schedule import NoiseSchedule, Timestep

PREDICTIONS = ("eps", "v")


def check_prediction(prediction: str) -> None:
    """Raise unless ``prediction`` is one of ``PREDICTIONS`` (checked where a run starts)."""
    if prediction not in PREDICTIONS:
        raise _unknown(prediction)


def _unknown(prediction) -> ValueError:
    return ValueError(
        f"prediction must be one of {PREDICTIONS} (diffusion.prediction), got {prediction!r}"
    )


def x0_from_eps(schedule: NoiseSchedule, x_t: Tensor, t: Timestep, eps: Tensor) -> Tensor:
    """x_0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)."""
    a, b = schedule.signal_noise(t, x_t)
    return (x_t - b * eps) / a


def eps_from_x0(schedule: NoiseSchedule, x_t: Tensor, t: Timestep, x0: Tensor) -> Tensor:
    """eps = (x_t - sqrt(alpha_bar_t) x_0) / sqrt(1 - alpha_bar_t)."""
    a, b = schedule.signal_noise(t, x_t)
    return (x_t - a * x0) / b


def v_from_x0_eps(schedule: NoiseSchedule, x0: Tensor, eps: Tensor, t: Timestep) -> Tensor:
    """The v-prediction target v = sqrt(alpha_bar_t) eps - sqrt(1 - alpha_bar_t) x_0."""
    a, b = schedule.signal_noise(t, x0)
    return a * eps - b * x0


def x0_from_v(schedule: NoiseSchedule, x_t: Tensor, t: Timestep, v: Tensor) -> Tensor:
    """x_0 = sqrt(alpha_bar_t) x_t - sqrt(1 - alpha_bar_t) v."""
    a, b = schedule.signal_noise(t, x_t)
    return a * x_t - b * v


def eps_from_v(schedule: NoiseSchedule, x_t: Tensor, t: Timestep, v: Tensor) -> Tensor:
    """eps = sqrt(1 - alpha_bar_t) x_t + sqrt(alpha_bar_t) v."""
    a, b = schedule.signal_noise(t, x_t)
    return b * x_t + a * v


def predict_x0_eps(
    schedule: NoiseSchedule, model_output: Tensor, x_t: Tensor, t: Timestep, prediction: str = "eps"
) -> tuple[Tensor, Tensor]:
    """(x_0, eps), both (B, C, H, W), from a model output (eps or v, (B, C, H, W)) at x_t."""
    if prediction == "eps":
        return x0_from_eps(schedule, x_t, t, model_output), model_output
    if prediction == "v":
        return x0_from_v(schedule, x_t, t, model_output), eps_from_v(schedule, x_t, t, model_output)
    raise _unknown(prediction)


def split_channels(model_output: Tensor, channels: int) -> tuple[Tensor, Optional[Tensor]]:
    """(prediction (B, C, H, W), variance channels (B, C, H, W) or None) from a model output with
    C or 2C channels (2C = learned variance: the first C are the eps / v prediction)."""
    k = model_output.shape[1]
    if k == channels:
        return model_output, None
    if k == 2 * channels:
        return model_output[:, :channels], model_output[:, channels:]
    raise ValueError(
        f"model output has {k} channels; expected C = {channels} "
        f"(or 2C = {2 * channels} with a learned variance), "
        f"output shape {tuple(model_output.shape)}"
    )

"""The forward (noising) process: a noise schedule of T steps and ``q_sample``.

Conventions
-----------
Timesteps are integer *indices* ``t = 0, ..., T-1`` (as in most code, e.g. DDPM's and diffusers'):
index ``t`` is the paper's step ``t + 1``. So ``x_t`` at index ``t`` has been noised ``t + 1``
times, ``alpha_bar[0] = 1 - beta[0]`` (slightly noised) and ``alpha_bar[T-1]`` is close to 0
(almost pure noise). The clean image ``x_0`` sits at index ``-1``, where ``alpha_bar = 1``:
``alpha_bar_at(-1) == 1``. The samplers use ``t_prev = -1`` for their last step.

With ``beta_t`` the variance added at step ``t``, ``alpha_t = 1 - beta_t`` and
``alpha_bar_t = prod_{s <= t} alpha_s``:

* one step:   q(x_t | x_{t-1}) = N(sqrt(alpha_t) x_{t-1}, beta_t I)
* closed form: q(x_t | x_0)    = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I)
* posterior:  q(x_{t-1} | x_t, x_0) = N(coef_x0_t x_0 + coef_xt_t x_t, beta_tilde_t I) with
  coef_x0_t = beta_t sqrt(alpha_bar_{t-1}) / (1 - alpha_bar_t),
  coef_xt_t = (1 - alpha_bar_{t-1}) sqrt(alpha_t) / (1 - alpha_bar_t),
  beta_tilde_t = beta_t (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t)   (so beta_tilde_0 = 0).

All schedule arrays are float64 tensors of shape (T,) on the schedule's device (CPU unless moved
with ``.to``); coefficients are cast to the dtype and device of the tensor they multiply.
"""

from __future__ import annotations

import math
from typing import Optional, Union

import torch
from torch import Tensor

Timestep = Union[int, Tensor]


def _check_betas(betas: Tensor) -> Tensor:
    if betas.dim() != 1 or betas.numel() < 1:
        raise ValueError(
            f"betas must be a non-empty 1-D tensor (T,), got shape {tuple(betas.shape)}"
        )
    if not torch.isfinite(betas).all() or (betas <= 0).any() or (betas >= 1).any():
        raise ValueError(
            "every beta must lie strictly between 0 and 1 "
            f"(got min {betas.min().item():.3g}, max {betas.max().item():.3g})"
        )
    return betas.to(torch.float64)


def coef(values: Tensor, t: Timestep, like: Tensor) -> Union[Tensor, float]:
    """``values[t]`` shaped to broadcast against ``like`` (B, ...).

    values: (T,). t: a python int or 0-d tensor (-> a python float, exact in float64; multiplying
    by a float is also much faster on CPU than by a 0-d tensor) or a long tensor (B,) (-> a tensor
    (B, 1, ..., 1) with ``like.dim()`` dimensions, dtype and device of ``like``).
    """
    if isinstance(t, Tensor) and t.dim() > 0:
        if t.dim() != 1 or t.shape[0] != like.shape[0]:
            raise ValueError(f"t must have shape (B,) = ({like.shape[0]},), got {tuple(t.shape)}")
        out = values.to(t.device)[t.long()]
        return out.to(device=like.device, dtype=like.dtype).view(-1, *([1] * (like.dim() - 1)))
    return float(values[int(t)])


class NoiseSchedule:
    """Betas and every derived quantity for a T-step forward process (float64 tensors (T,)).

    Attributes (all (T,)):
        betas, alphas, sqrt_alphas, sqrt_betas, alpha_bar,
        alpha_bar_prev (alpha_bar shifted right, with 1 at index 0),
        sqrt_alpha_bar, sqrt_one_minus_alpha_bar, snr (= alpha_bar / (1 - alpha_bar)),
        posterior_coef_x0, posterior_coef_xt, posterior_variance (beta_tilde),
        posterior_log_variance_clipped (log beta_tilde with index 0 replaced by index 1, finite).

    Build one with ``NoiseSchedule.linear``, ``NoiseSchedule.cosine``, ``NoiseSchedule.from_config``
    or directly from betas.
    """

    def __init__(self, betas: Tensor, name: str = "custom"):
        betas = _check_betas(torch.as_tensor(betas))
        self.name = name
        self.betas = betas
        self.alphas = 1.0 - betas
        self.sqrt_alphas = self.alphas.sqrt()
        self.sqrt_betas = betas.sqrt()
        self.alpha_bar = torch.cumprod(self.alphas, dim=0)
        self.alpha_bar_prev = torch.cat([betas.new_ones(1), self.alpha_bar[:-1]])
        self.sqrt_alpha_bar = self.alpha_bar.sqrt()
        self.sqrt_one_minus_alpha_bar = (1.0 - self.alpha_bar).sqrt()
        self.snr = self.alpha_bar / (1.0 - self.alpha_bar)
        one_minus = 1.0 - self.alpha_bar
        self.posterior_coef_x0 = betas * self.alpha_bar_prev.sqrt() / one_minus
        self.posterior_coef_xt = (1.0 - self.alpha_bar_prev) * self.alphas.sqrt() / one_minus
        self.posterior_variance = betas * (1.0 - self.alpha_bar_prev) / one_minus
        pv = self.posterior_variance
        clipped = torch.cat([pv[1:2], pv[1:]]) if len(pv) > 1 else betas
        self.posterior_log_variance_clipped = torch.log(clipped)
        # python floats on the host, kept by ``to``: the samplers' per-step coefficients (no sync)
        self._alpha_bar_host = self.alpha_bar.tolist()

    # ---------------------------------------------------------------- constructors
    @classmethod
    def linear(
        cls, T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02
    ) -> "NoiseSchedule":
        """DDPM's schedule: betas evenly spaced from ``beta_start`` to ``beta_end`` (inclusive).

        The defaults are DDPM's values for T = 1000; for other T they are used as given (not
        rescaled).
        """
        _check_T(T)
        if not 0 < beta_start <= beta_end < 1:
            raise ValueError(
                "linear schedule needs 0 < beta_start <= beta_end < 1, "
                f"got {beta_start}, {beta_end}"
            )
        return cls(torch.linspace(beta_start, beta_end, T, dtype=torch.float64), name="linear")

    @classmethod
    def cosine(cls, T: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> "NoiseSchedule":
        """Improved DDPM's cosine schedule (Nichol & Dhariwal 2021).

        With f(u) = cos((u + s) / (1 + s) * pi / 2)^2, ``alpha_bar[t] = f((t + 1) / T) / f(0)``:
        beta_t = 1 - f((t+1)/T) / f(t/T), clipped at ``max_beta`` (which only bites at the last
        step, where f(1) = 0; there alpha_bar deviates from the formula: it is not exactly 0).
        """
        _check_T(T)
        u = torch.arange(T + 1, dtype=torch.float64) / T
        f = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2
        betas = (1.0 - f[1:] / f[:-1]).clamp(max=max_beta)
        return cls(betas, name="cosine")

    @classmethod
    def from_config(cls, cfg) -> "NoiseSchedule":
        """From a ``diffussm_lib.config.DiffusionConfig`` (``timesteps``, ``schedule``, betas)."""
        if cfg.schedule == "linear":
            return cls.linear(cfg.timesteps, cfg.beta_start, cfg.beta_end)
        if cfg.schedule == "cosine":
            return cls.cosine(cfg.timesteps)
        raise ValueError(f"diffusion.schedule must be 'linear' or 'cosine', got {cfg.schedule!r}")

    # ---------------------------------------------------------------- basics
    @property
    def T(self) -> int:
        """Number of diffusion steps."""
        return self.betas.shape[0]

    def __len__(self) -> int:
        return self.T

    def __repr__(self) -> str:
        ab = self._alpha_bar_host
        return (
            f"NoiseSchedule({self.name}, T={self.T}, alpha_bar[0]={ab[0]:.6f}, "
            f"alpha_bar[T-1]={ab[-1]:.3e})"
        )

    def to(self, device) -> "NoiseSchedule":
        """A copy whose arrays live on ``device`` (saves a host-to-device copy per coefficient)."""
        new = NoiseSchedule.__new__(NoiseSchedule)
        for k, v in self.__dict__.items():
            new.__dict__[k] = v.to(device) if isinstance(v, Tensor) else v
        return new

    def check_t(self, t: Timestep) -> None:
        """Raise a clear error if a python-int timestep is outside [0, T). A tensor t is not
        checked: reading its values would make a GPU wait for the host at every training step (it
        fails in the indexing instead: an IndexError on CPU)."""
        if not isinstance(t, Tensor) and not 0 <= int(t) < self.T:
            raise ValueError(
                f"timestep out of range: expected an integer in [0, {self.T}), got {t}"
            )

    def alpha_bar_at(self, t: Timestep) -> Tensor:
        """alpha_bar at index t, with ``alpha_bar_at(-1) = 1`` (the clean image).

        t: int (-> 0-d float64 tensor) or long (B,) (-> (B,) float64)."""
        if isinstance(t, Tensor) and t.dim() > 0:
            ab = self.alpha_bar.to(t.device)[t.clamp(min=0)]
            return torch.where(t >= 0, ab, torch.ones_like(ab))
        t = int(t)
        return self.alpha_bar[t] if t >= 0 else self.alpha_bar.new_tensor(1.0)

    def alpha_bar_float(self, t: int) -> float:
        """alpha_bar_t as a python float (exact float64), 1.0 at t = -1 (the clean image). Read
        from a host copy, so a schedule moved to a GPU costs the samplers no device sync per
        step."""
        return self._alpha_bar_host[t] if t >= 0 else 1.0

    def signal_noise(self, t: Timestep, like: Optional[Tensor] = None):
        """(a, b) = (sqrt(alpha_bar_t), sqrt(1 - alpha_bar_t)), the scales of x_0 and of the noise
        in x_t = a x_0 + b eps (eq. (4) of DDPM; DPM-Solver's alpha_t and sigma_t).

        t: a python int (-1 allowed: (1.0, 0.0)) -> two python floats (``alpha_bar_float``: no
        device sync); or long (B,) -> two tensors (B, 1, ..., 1) with the dimensions, dtype and
        device of ``like`` (B, ...)."""
        if isinstance(t, Tensor) and t.dim() > 0:
            return coef(self.sqrt_alpha_bar, t, like), coef(self.sqrt_one_minus_alpha_bar, t, like)
        ab = self.alpha_bar_float(int(t))
        return math.sqrt(ab), math.sqrt(1.0 - ab)

    # ---------------------------------------------------------------- the forward process
    def q_sample(self, x0: Tensor, t: Timestep, noise: Tensor) -> Tensor:
        """x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) noise: a draw from q(x_t | x_0).

        x0, noise: (B, C, H, W). t: long (B,) or an int. Returns (B, C, H, W).
        """
        if noise.shape != x0.shape:
            raise ValueError(
                f"noise shape {tuple(noise.shape)} must equal x0 shape {tuple(x0.shape)}"
            )
        self.check_t(t)
        a, b = coef(self.sqrt_alpha_bar, t, x0), coef(self.sqrt_one_minus_alpha_bar, t, x0)
        return a * x0 + b * noise

    def q_step(self, x_prev: Tensor, t: Timestep, noise: Tensor) -> Tensor:
        """One forward step: x_t = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) noise, a draw from
        q(x_t | x_{t-1}).

        x_prev, noise: (B, C, H, W). t: long (B,) or an int (x_prev is x_{t-1}; for t = 0 it is
        x_0).
        """
        self.check_t(t)
        return coef(self.sqrt_alphas, t, x_prev) * x_prev + coef(self.sqrt_betas, t, x_prev) * noise

    def q_posterior(self, x0: Tensor, x_t: Tensor, t: Timestep) -> tuple[Tensor, Tensor]:
        """Mean (B, C, H, W) and variance (a float for an int t, else (B, 1, 1, 1)) of
        q(x_{t-1} | x_t, x_0).

        x0, x_t: (B, C, H, W); t: int or long (B,)."""
        self.check_t(t)
        c_x0, c_xt = coef(self.posterior_coef_x0, t, x_t), coef(self.posterior_coef_xt, t, x_t)
        mean = c_x0 * x0 + c_xt * x_t
        return mean, coef(self.posterior_variance, t, x_t)


def _check_T(T) -> None:
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise ValueError(f"the number of diffusion steps T must be a positive integer, got {T!r}")


def q_sample(
    schedule: NoiseSchedule,
    x0: Tensor,
    t: Timestep,
    noise: Optional[Tensor] = None,
    generator: Optional[torch.Generator] = None,
) -> Tensor:
    """Function form of ``schedule.q_sample``; draws ``noise`` from ``generator`` when not given.

    x0: (B, C, H, W); t: long (B,) or int. Returns x_t (B, C, H, W).
    """
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    return schedule.q_sample(x0, t, noise)

"""Diffusion from scratch (notebook 04): noise schedules, the training loss, DDPM/DDIM samplers (and
DPM-Solver++, notebook 06), classifier-free guidance and x_0 clipping / dynamic thresholding.

Modules
-------
schedule      ``NoiseSchedule`` (linear, cosine, from a DiffusionConfig), ``q_sample``
losses        ``diffusion_loss`` (eps or v target, Min-SNR weights; + the bound for a learned
              variance), eps / v / x_0 conversions
vlb           the variational bound that trains a learned variance (Improved DDPM's hybrid loss)
guidance      ``guided_eps`` (one batched forward), ``drop_labels`` for training, ``cfg_combine``
thresholding  ``clip_x0``, ``dynamic_threshold`` (Imagen)
samplers      ``ddpm_step``, ``ddim_step``, ``ddpm_sample``, ``ddim_sample``, ``SampleResult``
dpm_solver    ``dpm_solver_step``, ``dpm_solver_sample``, ``dpm_solver_timesteps``: DPM-Solver++(2M) (notebook 06)
registry      ``SAMPLERS`` by name, ``default_steps`` (DDIM 50, DPM-Solver++ 20, DDPM all T), ``run_sampler``

The denoiser interface everywhere: ``model(x (B, C, H, W), t long (B,), y long (B,) or None)``
returning an eps or v prediction (B, C, H, W), or (B, 2C, H, W) with a learned variance (the first C
channels are the prediction). The "no label" class for guidance is ``null_class`` (default 10 for
MNIST: the denoiser has 11 label embeddings).
"""
from .dpm_solver import (DPM_SOLVER_DEFAULT_STEPS, dpm_solver_sample, dpm_solver_step, dpm_solver_timesteps,
                         half_log_snr)
from .guidance import DEFAULT_NULL_CLASS, cfg_combine, drop_labels, guided_eps, null_class_of
from .losses import (WEIGHTINGS, diffusion_loss, eps_from_v, eps_from_x0, loss_weights, predict_x0_eps,
                     split_channels, v_from_x0_eps, x0_from_eps, x0_from_v)
from .registry import SAMPLERS, check_sampler, default_steps, run_sampler, steps_label
from .samplers import (DDIM_DEFAULT_STEPS, SampleResult, StepOutput, ddim_sample, ddim_step, ddpm_sample, ddpm_step,
                       sampling_timesteps)
from .schedule import NoiseSchedule, q_sample
from .thresholding import clip_x0, dynamic_threshold
from .vlb import VLB_WEIGHT, discretized_gaussian_log_likelihood, learned_log_variance, normal_kl, vlb_terms

__all__ = [
    "NoiseSchedule", "q_sample",
    "WEIGHTINGS", "diffusion_loss", "loss_weights",
    "x0_from_eps", "eps_from_x0", "v_from_x0_eps", "x0_from_v", "eps_from_v",
    "predict_x0_eps", "split_channels",
    "DEFAULT_NULL_CLASS", "guided_eps", "drop_labels", "cfg_combine", "null_class_of",
    "clip_x0", "dynamic_threshold",
    "VLB_WEIGHT", "discretized_gaussian_log_likelihood", "learned_log_variance", "normal_kl", "vlb_terms",
    "ddpm_step", "ddim_step", "ddpm_sample", "ddim_sample", "sampling_timesteps", "SampleResult", "StepOutput",
    "dpm_solver_step", "dpm_solver_sample", "dpm_solver_timesteps", "half_log_snr", "DPM_SOLVER_DEFAULT_STEPS",
    "DDIM_DEFAULT_STEPS", "SAMPLERS", "check_sampler", "default_steps", "run_sampler", "steps_label",
]

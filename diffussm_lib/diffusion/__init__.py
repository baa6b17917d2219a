"""Diffusion from scratch (notebook 04): noise schedules, the training loss, DDPM/DDIM samplers (and
DPM-Solver++, notebook 06), classifier-free guidance and x_0 clipping / dynamic thresholding.

Reading order for sampling: ``registry.run_sampler`` -> a sampler's loop (``ddim_sample``) -> its
step (``ddim_step``, numbered after the paper's equations) -> ``parameterization`` (eps / v / x_0)
and ``schedule``.

Modules
-------
schedule          ``NoiseSchedule`` (linear, cosine, from a DiffusionConfig; ``signal_noise``),
                  ``q_sample``
parameterization  what the model predicts (eps or v) and the eps / v / x_0 conversions, for the
                  loss and the samplers
losses            ``diffusion_loss`` (eps or v target, Min-SNR weights; + the bound for a learned
                  variance)
vlb               the variational bound that trains a learned variance (Improved DDPM's hybrid loss)
guidance          ``guided_output`` (one batched forward), ``cfg_combine``, ``drop_labels``
thresholding      ``clip_x0``, ``dynamic_threshold`` (Imagen)
samplers          ``ddpm_step`` / ``ddpm_sample``, ``ddim_step`` / ``ddim_sample``
dpm_solver        ``dpm_solver_step`` / ``dpm_solver_sample``, ``dpm_solver_step_times``:
                  DPM-Solver++(2M) (notebook 06)
sampler_base      what the samplers share: step times, the entry checks, ``SampleResult``
registry          ``SAMPLERS`` by name, ``default_steps`` (DDIM 50, DPM-Solver++ 15, DDPM all T),
                  ``step_times`` (the steps a sampler visits; its error when S does not fit T),
                  ``run_sampler``

The denoiser interface everywhere: ``model(x (B, C, H, W), t long (B,), y long (B,) or None)``
returning an eps or v prediction (B, C, H, W), or (B, 2C, H, W) with a learned variance (the first C
channels are the prediction). The "no label" class for guidance is ``null_class`` (default 10 for
MNIST: the denoiser has 11 label embeddings).

Old names, still importable: ``guided_eps`` (= ``guided_output``), ``sampling_timesteps``
(= ``spaced_step_times``), ``dpm_solver_timesteps`` (= ``dpm_solver_step_times``); the sampling
functions take ``guidance_scale=`` for ``guidance=`` and ``timesteps=`` for ``step_times=``.
"""

from .dpm_solver import (
    DPM_SOLVER_DEFAULT_STEPS,
    dpm_solver_sample,
    dpm_solver_step,
    dpm_solver_step_times,
    dpm_solver_timesteps,
    half_log_snr,
)
from .guidance import (
    DEFAULT_NULL_CLASS,
    cfg_combine,
    drop_labels,
    guided_eps,
    guided_output,
    null_class_of,
)
from .losses import WEIGHTINGS, diffusion_loss, loss_weights
from .parameterization import (
    PREDICTIONS,
    eps_from_v,
    eps_from_x0,
    predict_x0_eps,
    split_channels,
    v_from_x0_eps,
    x0_from_eps,
    x0_from_v,
)
from .registry import (
    DEFAULT_SAMPLER,
    DEFAULT_STEPS,
    SAMPLERS,
    check_sampler,
    default_steps,
    run_sampler,
    step_times,
    steps_label,
)
from .sampler_base import SampleResult, StepOutput, check_step_times, spaced_step_times
from .samplers import (
    DDIM_DEFAULT_STEPS,
    ddim_sample,
    ddim_step,
    ddpm_sample,
    ddpm_step,
    sampling_timesteps,
)
from .schedule import NoiseSchedule, q_sample
from .thresholding import clip_x0, dynamic_threshold
from .vlb import (
    VLB_WEIGHT,
    discretized_gaussian_log_likelihood,
    learned_log_variance,
    normal_kl,
    vlb_terms,
)

__all__ = [
    "NoiseSchedule",
    "q_sample",
    "PREDICTIONS",
    "x0_from_eps",
    "eps_from_x0",
    "v_from_x0_eps",
    "x0_from_v",
    "eps_from_v",
    "predict_x0_eps",
    "split_channels",
    "WEIGHTINGS",
    "diffusion_loss",
    "loss_weights",
    "DEFAULT_NULL_CLASS",
    "guided_output",
    "guided_eps",
    "drop_labels",
    "cfg_combine",
    "null_class_of",
    "clip_x0",
    "dynamic_threshold",
    "VLB_WEIGHT",
    "discretized_gaussian_log_likelihood",
    "learned_log_variance",
    "normal_kl",
    "vlb_terms",
    "ddpm_step",
    "ddim_step",
    "ddpm_sample",
    "ddim_sample",
    "SampleResult",
    "StepOutput",
    "spaced_step_times",
    "check_step_times",
    "sampling_timesteps",
    "DDIM_DEFAULT_STEPS",
    "dpm_solver_step",
    "dpm_solver_sample",
    "dpm_solver_step_times",
    "dpm_solver_timesteps",
    "half_log_snr",
    "DPM_SOLVER_DEFAULT_STEPS",
    "DEFAULT_SAMPLER",
    "DEFAULT_STEPS",
    "SAMPLERS",
    "step_times",
    "check_sampler",
    "default_steps",
    "run_sampler",
    "steps_label",
]

"""The one registry of samplers: names, default numbers of steps, one call that runs any of them.

Used by ``sampling.generate``, the denoising viewer, ``evaluation`` and the ``diffussm`` command, so
that "which samplers exist" and "how many steps when none are given" are said once:

* ``SAMPLERS``: name -> sampling function (``ddim_sample``, ``ddpm_sample``, ``dpm_solver_sample``);
* ``default_steps(sampler, T)``: DDIM ``DDIM_DEFAULT_STEPS`` (50), DPM-Solver++
  ``DPM_SOLVER_DEFAULT_STEPS`` (15), DDPM all T;
* ``DEFAULT_SAMPLER`` / ``DEFAULT_STEPS``: the course's sampling where none is asked for;
* ``step_times(sampler, T, steps)``: the step times a sampler takes (its own error when ``steps``
  does not fit T: the range is said once, in each sampler's step-time function);
* ``steps_label(sampler, steps)``: the same as text for reports ("50", "20", "all", or the number);
* ``run_sampler(sampler, model, schedule, shape, y, steps=..., eta=..., variance=..., **options)``.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional

from ..errors import UserError
from torch import Tensor

from .dpm_solver import DPM_SOLVER_DEFAULT_STEPS, dpm_solver_sample, dpm_solver_step_times
from .sampler_base import spaced_step_times
from .samplers import DDIM_DEFAULT_STEPS, ddim_sample, ddpm_sample
from .schedule import NoiseSchedule

SAMPLERS: Dict[str, Callable] = {
    "ddim": ddim_sample,
    "ddpm": ddpm_sample,
    "dpm_solver++": dpm_solver_sample,
}
STEP_TIMES: Dict[str, Callable] = {  # name -> (T, steps) -> its step times, long (steps,)
    "ddim": spaced_step_times,
    "ddpm": spaced_step_times,
    "dpm_solver++": dpm_solver_step_times,
}
FIXED_STEPS = {"ddim": DDIM_DEFAULT_STEPS, "dpm_solver++": DPM_SOLVER_DEFAULT_STEPS}  # DDPM: all T

# The course's sampling setting where none is asked for: the evaluations of the notebooks and the
# benchmarks, ``diffussm sample / evaluate`` and the viewer. Measured (benchmarks/results/samplers.md,
# issue 27): on the pretrained model at w = 1.2, DPM-Solver++(2M) with 15 steps is the cheapest
# setting whose FID-LeNet is within DDIM 25's sampling noise (tests/test_sampler_study.py checks
# that this is the setting the stored runs support).
DEFAULT_SAMPLER = "dpm_solver++"
DEFAULT_STEPS = FIXED_STEPS[DEFAULT_SAMPLER]


def check_sampler(sampler: str) -> str:
    """Return ``sampler`` if it is a known name, else raise a ``ValueError`` listing the names."""
    if sampler not in SAMPLERS:
        raise UserError(f"sampler must be one of {tuple(SAMPLERS)}, got {sampler!r}")
    return sampler


def default_steps(sampler: str, T: int, steps: Optional[int] = None) -> int:
    """The number of sampling steps S: ``steps`` when given, else ``FIXED_STEPS`` (DDIM 50,
    DPM-Solver++ 15) and T for DDPM."""
    check_sampler(sampler)
    if steps is not None:
        return int(steps)
    return FIXED_STEPS.get(sampler, int(T))


def step_times(sampler: str, T: int, steps: int) -> Tensor:
    """The step times ``sampler`` visits with ``steps`` steps on a schedule of T timesteps, long
    (steps,), decreasing; a ``ValueError`` naming the allowed range when ``steps`` does not fit (DDIM
    and DDPM: 1..T; DPM-Solver++: 1..T-1, its grid leaves out t = 0)."""
    return STEP_TIMES[check_sampler(sampler)](T, steps)


def steps_label(sampler: Optional[str], steps: Optional[int]) -> str:
    """How many steps a sampler takes, as text for reports: the number, or its default."""
    if steps:
        return str(steps)
    return str(FIXED_STEPS[sampler]) if sampler in FIXED_STEPS else "all"


def run_sampler(
    sampler: str,
    model,
    schedule: NoiseSchedule,
    shape,
    y=None,
    *,
    steps: Optional[int] = None,
    eta: float = 0.0,
    variance: Optional[str] = None,
    **options,
):
    """Run the sampler ``sampler`` ("ddim", "ddpm" or "dpm_solver++") with ``default_steps`` steps.

    eta: DDIM's noise (DDPM draws its own, DPM-Solver++ none: it must be 0 there). variance: DDPM's
    (default "learned_range" for a model with ``learn_sigma``, else "fixed_small"; the others have
    none and ignore it). options: the keyword arguments every sampler takes (guidance, null_class,
    prediction, clip_x0, generator, x_T, device, return_trajectory, ...). Returns what the sampler
    returns: (B, C, H, W), or a ``SampleResult``.
    """
    S = default_steps(sampler, schedule.T, steps)
    if sampler == "ddim":
        return ddim_sample(model, schedule, shape, y, steps=S, eta=eta, **options)
    if eta:
        why = "draws its own noise" if sampler == "ddpm" else "is a deterministic ODE solver"
        raise UserError(f"eta={eta} is a DDIM option; the {sampler} sampler {why} (use eta=0)")
    if sampler == "dpm_solver++":
        return dpm_solver_sample(model, schedule, shape, y, steps=S, **options)
    if variance is None:  # a model with a learned variance samples with it
        learned = getattr(getattr(model, "module", model), "learn_sigma", False)
        variance = "learned_range" if learned else "fixed_small"
    return ddpm_sample(model, schedule, shape, y, steps=S, variance=variance, **options)

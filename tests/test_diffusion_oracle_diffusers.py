"""Independent oracle: the `diffusers` schedulers (test-only dependency).

Skipped when diffusers is missing, unless DIFFUSSM_REQUIRE_ORACLES=1 (CI), then it fails.
Our schedule and single steps must equal DDPMScheduler / DDIMScheduler given the same model output,
x_t and generator seed; our DPM-Solver++(2M) must take the same steps as DPMSolverMultistepScheduler
driven by the same model function (the option mapping is at ``dpm_solver_reference`` below).

Each step comparison runs twice:
* "float32": diffusers exactly as shipped (float32 alphas_cumprod, float32 inputs). Its
  coefficients such as 1 - alpha_bar_t / alpha_bar_{t-1} cancel catastrophically in float32 at
  small t (about 3e-4 relative at t = 1), while ours are computed in float64; hence atol 5e-4.
* "float64": the same step formulas, in float64, with diffusers' alphas_cumprod set to ours (their
  equality is tested separately above): this checks the step logic to 1e-10.
"""
import pytest
import torch
from oracles import import_oracle

from diffussm_lib.diffusion import (NoiseSchedule, ddim_step, ddpm_sample, ddpm_step, dpm_solver_sample,
                                    dpm_solver_step, dpm_solver_timesteps, eps_from_x0, guided_eps,
                                    sampling_timesteps, v_from_x0_eps)

pytestmark = pytest.mark.oracle

NAMES = {"linear": "linear", "cosine": "squaredcos_cap_v2"}
T = 1000
SHAPE = (2, 1, 6, 6)


@pytest.fixture(scope="module")
def diffusers():
    return import_oracle("diffusers")


def ours(name):
    return NoiseSchedule.linear(T, 1e-4, 0.02) if name == "linear" else NoiseSchedule.cosine(T)


PRECISIONS = {"float32": (torch.float32, 5e-4), "float64": (torch.float64, 1e-10)}


def _inputs(seed, channels=1, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(SHAPE, generator=g, dtype=dtype)
    out = torch.randn(SHAPE[0], channels, *SHAPE[2:], generator=g, dtype=dtype)
    return x, out


def _close(a, b, atol=5e-4):
    torch.testing.assert_close(a, b, atol=atol, rtol=atol)


def _at_precision(ref, s, precision):
    """The reference scheduler as shipped (float32) or computing in float64 on our alpha_bar."""
    dtype, atol = PRECISIONS[precision]
    if dtype == torch.float64:
        ref.alphas_cumprod = s.alpha_bar.clone()
    return dtype, atol


@pytest.mark.parametrize("name", NAMES)
def test_alpha_bar_equals_diffusers(diffusers, name):
    ref = diffusers.DDPMScheduler(num_train_timesteps=T, beta_schedule=NAMES[name]).alphas_cumprod
    torch.testing.assert_close(ours(name).alpha_bar.float(), ref, atol=1e-6, rtol=1e-4)


DDPM_CASES = [  # (variance_type, prediction, x0 handling)
    ("fixed_small", "eps", None), ("fixed_large", "eps", None), ("fixed_small", "v", None),
    ("learned_range", "eps", None), ("fixed_small", "eps", "clip"), ("fixed_small", "eps", "dynamic"),
]


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("variance,prediction,x0_mode", DDPM_CASES)
def test_ddpm_step_equals_diffusers(diffusers, name, variance, prediction, x0_mode, precision):
    s = ours(name)
    ref = diffusers.DDPMScheduler(
        num_train_timesteps=T, beta_schedule=NAMES[name], variance_type=variance,
        prediction_type="epsilon" if prediction == "eps" else "v_prediction",
        clip_sample=x0_mode == "clip", thresholding=x0_mode == "dynamic",
        dynamic_thresholding_ratio=0.9, sample_max_value=1e6)
    dtype, atol = _at_precision(ref, s, precision)
    kw = dict(variance=variance, prediction=prediction, clip_x0=x0_mode == "clip",
              dynamic_threshold=0.9 if x0_mode == "dynamic" else None)
    for t in (999, 600, 50, 1, 0):
        x, out = _inputs(t, channels=2 if variance == "learned_range" else 1, dtype=dtype)
        if variance == "learned_range":
            out[:, 1:] = torch.tanh(out[:, 1:])  # the variance channel lives in [-1, 1]
        r = ref.step(out, t, x, generator=torch.Generator().manual_seed(t))
        o = ddpm_step(s, out, t, x, generator=torch.Generator().manual_seed(t), **kw)
        _close(o.x0_pred, r.pred_original_sample, atol)
        _close(o.x_prev, r.prev_sample, atol)


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("name", NAMES)
def test_respaced_ddpm_step_equals_diffusers(diffusers, name, precision):
    s = ours(name)
    ref = diffusers.DDPMScheduler(num_train_timesteps=T, beta_schedule=NAMES[name], clip_sample=False)
    dtype, atol = _at_precision(ref, s, precision)
    ref.set_timesteps(50)  # "leading" spacing: 980, 960, ..., 0
    ts = ref.timesteps.tolist()
    for i in (0, 17, 48, 49):
        t, t_prev = ts[i], (ts[i + 1] if i + 1 < len(ts) else -1)
        x, out = _inputs(i, dtype=dtype)
        r = ref.step(out, t, x, generator=torch.Generator().manual_seed(i))
        o = ddpm_step(s, out, t, x, t_prev=t_prev, generator=torch.Generator().manual_seed(i))
        _close(o.x_prev, r.prev_sample, atol)


def test_full_ddpm_chain_equals_diffusers(diffusers):
    """A whole respaced 20-step chain with a toy model: same x_T, same generator, same result."""
    s = ours("cosine")
    ref = diffusers.DDPMScheduler(num_train_timesteps=T, beta_schedule="squaredcos_cap_v2", clip_sample=False)
    ts = sampling_timesteps(T, 20)
    ref.set_timesteps(timesteps=ts.tolist())
    model = lambda x, t, y: torch.tanh(1.5 * x) * (1 + t.float().view(-1, 1, 1, 1) / 1000)  # noqa: E731
    x_T = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    x = x_T
    for t in ref.timesteps.tolist():
        x = ref.step(model(x, torch.full((SHAPE[0],), t), None), t, x, generator=g).prev_sample
    mine = ddpm_sample(model, s, None, x_T=x_T, steps=20, generator=torch.Generator().manual_seed(1))
    _close(mine, x, 5e-4)


DDIM_CASES = [  # (prediction, x0 handling, recompute eps from the clipped x0)
    ("eps", None, True), ("v", None, True), ("eps", "clip", True), ("eps", "clip", False), ("eps", "dynamic", True),
]


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("eta", [0.0, 1.0])
@pytest.mark.parametrize("prediction,x0_mode,recompute", DDIM_CASES)
def test_ddim_step_equals_diffusers(diffusers, name, eta, prediction, x0_mode, recompute, precision):
    s = ours(name)
    n = 50
    ref = diffusers.DDIMScheduler(
        num_train_timesteps=T, beta_schedule=NAMES[name], set_alpha_to_one=True,
        prediction_type="epsilon" if prediction == "eps" else "v_prediction",
        clip_sample=x0_mode == "clip", thresholding=x0_mode == "dynamic",
        dynamic_thresholding_ratio=0.9, sample_max_value=1e6)
    ref.set_timesteps(n)
    dtype, atol = _at_precision(ref, s, precision)
    for t in (980, 500, 20, 0):
        t_prev = t - T // n
        x, out = _inputs(t, dtype=dtype)
        r = ref.step(out, t, x, eta=eta, use_clipped_model_output=recompute,
                     generator=torch.Generator().manual_seed(t))
        o = ddim_step(s, out, t, x, t_prev=max(t_prev, -1), eta=eta, prediction=prediction,
                      clip_x0=x0_mode == "clip", dynamic_threshold=0.9 if x0_mode == "dynamic" else None,
                      eps_from_clipped_x0=recompute, generator=torch.Generator().manual_seed(t))
        _close(o.x0_pred, r.pred_original_sample, atol)
        _close(o.x_prev, r.prev_sample, atol)


# ------------------------------------------------------------------------ DPM-Solver++(2M)
def dpm_solver_reference(diffusers, s, steps, prediction, x0_mode, grid="linspace"):
    """diffusers' DPMSolverMultistepScheduler set up to take exactly the course's steps:

    * trained_betas = our betas (for the cosine schedule the same as beta_schedule="squaredcos_cap_v2",
      for the linear one as "linear", see test_alpha_bar_equals_diffusers);
    * algorithm_type="dpmsolver++", solver_order=2, solver_type="midpoint": Algorithm 2 of the paper,
      D = (1 + 1/(2r)) x0_now - 1/(2r) x0_last (solver_type="heun" would be another second-order rule);
    * timesteps: ``dpm_solver_timesteps(T, S)`` = round(k (T-1)/S), k = S..1, are diffusers' default
      timestep_spacing="linspace" with ``set_timesteps(S)`` (and lambda_min_clipped=-inf, the default,
      which leaves the grid alone). grid="ddim" instead passes DDIM's ``sampling_timesteps(T, S)``
      (round(linspace(T-1, 0, S)), which ends at 0 and which no spacing mode of diffusers gives) to
      ``set_timesteps(timesteps=...)``, as our sampler's ``timesteps=`` argument does;
    * final_sigmas_type="zero": after the last timestep the step goes to sigma = 0, the clean image
      (our t_prev = -1), and that step is first order whatever ``lower_order_final`` says (which only
      matters for solver_order=3 below 15 steps); the first step is first order too (no history);
    * clip_x0 = thresholding=True with sample_max_value=1 (s = clamp(quantile, 1, 1) = 1: plain
      clipping); dynamic_threshold=p = thresholding=True, dynamic_thresholding_ratio=p and no cap.
    """
    ref = diffusers.DPMSolverMultistepScheduler(
        num_train_timesteps=T, trained_betas=s.betas.numpy(), algorithm_type="dpmsolver++", solver_order=2,
        solver_type="midpoint", final_sigmas_type="zero", lower_order_final=True, euler_at_final=False,
        timestep_spacing="linspace", prediction_type="epsilon" if prediction == "eps" else "v_prediction",
        thresholding=x0_mode is not None, dynamic_thresholding_ratio=0.9 if x0_mode == "dynamic" else 0.995,
        sample_max_value=1.0 if x0_mode == "clip" else 1e6)
    if grid == "linspace":
        ref.set_timesteps(steps)
        assert ref.timesteps.tolist() == dpm_solver_timesteps(T, steps).tolist()
    else:
        ref.set_timesteps(timesteps=sampling_timesteps(T, steps).tolist())
    return ref


def fixed_model(s, prediction):
    """One fixed, label-dependent model function: its data prediction tanh(1.5 x + y/5) moves with x
    (so the second-order term matters) and, under guidance, leaves [-1, 1] (so clipping matters)."""
    def model(x, t, y):
        x0 = torch.tanh(1.5 * x + y.to(x.dtype).view(-1, 1, 1, 1) / 5)
        eps = eps_from_x0(s, x, t, x0)
        return eps if prediction == "eps" else v_from_x0_eps(s, x0, eps, t)
    return model


DPM_CASES = [  # (prediction, x0 handling, guidance scale w)
    ("eps", None, 1.0), ("v", None, 1.0), ("eps", "clip", 3.0), ("v", "clip", 3.0), ("v", "dynamic", 3.0),
]


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("steps,grid", [(1, "linspace"), (2, "linspace"), (7, "linspace"), (20, "linspace"),
                                        (2, "ddim"), (7, "ddim")])
@pytest.mark.parametrize("prediction,x0_mode,w", DPM_CASES)
def test_dpm_solver_steps_equal_diffusers(diffusers, name, steps, grid, prediction, x0_mode, w, precision):
    """Both solvers run their own chain from the same x_T with the same model function (guided with
    the library's guided_eps); x must agree after every step, and our sampler's output with the last.

    "float32": diffusers' ``step`` as shipped, which computes in float32 (its sigmas too) from its
    float32 cumprod of the betas. At t = 999 of the cosine schedule alpha_t = 5e-5, so x0 = (x - sigma
    eps) / alpha_t carries float32 rounding times 2e4 into the first step: atol = rtol = 5e-3 for eps
    on that schedule (seen: 9e-3 on an entry of 1.25), 1e-3 elsewhere (seen: 4e-4).
    "float64": the same steps with diffusers' sigmas computed in float64 from our alpha_bar, through
    its own update functions (``step`` casts to float32), in the order ``step`` applies them (order 1
    at the first and last step, else order 2): equal to 1e-12."""
    s = ours(name)
    kw = dict(prediction=prediction, clip_x0=x0_mode == "clip", dynamic_threshold=0.9 if x0_mode == "dynamic" else None)
    ref = dpm_solver_reference(diffusers, s, steps, prediction, x0_mode, grid)
    ts = ref.timesteps.tolist()
    assert float(ref.sigmas[-1]) == 0.0
    amplified = name == "cosine" and prediction == "eps"        # x0 from eps divides by alpha_999 = 5e-5
    dtype, atol = (torch.float32, 5e-3 if amplified else 1e-3) if precision == "float32" else (torch.float64, 1e-12)
    if dtype == torch.float64:
        ab = s.alpha_bar
        ref.sigmas = torch.cat([((1 - ab) / ab).sqrt()[ts], ab.new_zeros(1)])   # diffusers' sigma = sqrt((1-ab)/ab)
    model, y = fixed_model(s, prediction), torch.tensor([3, 8])
    x_T = torch.randn(SHAPE, generator=torch.Generator().manual_seed(steps), dtype=dtype)
    mine, theirs, last, their_x0 = x_T, x_T, None, []
    for i, t in enumerate(ts):
        tb = torch.full((SHAPE[0],), t)
        out = guided_eps(model, mine, tb, y, w)
        step = dpm_solver_step(s, out, t, mine, t_prev=ts[i + 1] if i + 1 < len(ts) else -1, last=last, **kw)
        mine, last = step.x_prev, (t, step.x0_pred)
        out = guided_eps(model, theirs, tb, y, w)
        if dtype == torch.float32:
            theirs = ref.step(out, t, theirs).prev_sample
        else:
            ref._step_index = i
            their_x0.append(ref.convert_model_output(out, sample=theirs))
            if i == 0 or i == len(ts) - 1:
                theirs = ref.dpm_solver_first_order_update(their_x0[-1], sample=theirs)
            else:
                theirs = ref.multistep_dpm_solver_second_order_update(their_x0[-2:], sample=theirs)
        _close(mine, theirs, atol)
    grid_kw = dict(steps=steps) if grid == "linspace" else dict(timesteps=ts)
    sampled = dpm_solver_sample(model, s, None, y, x_T=x_T, guidance_scale=w, **grid_kw, **kw)
    _close(sampled, mine, 1e-6 if dtype == torch.float32 else 1e-13)


def test_dpm_solver_grid_is_diffusers_linspace(diffusers):
    ref = diffusers.DPMSolverMultistepScheduler(num_train_timesteps=T)
    for steps in [*range(1, 60), 99, 250, 333, 500, 998, T - 1]:
        ref.set_timesteps(steps)
        assert ref.timesteps.tolist() == dpm_solver_timesteps(T, steps).tolist(), steps

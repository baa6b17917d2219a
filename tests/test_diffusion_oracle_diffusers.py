"""Independent oracle: the `diffusers` schedulers (test-only dependency).

Skipped when diffusers is missing, unless DIFFUSSM_REQUIRE_ORACLES=1 (CI), then it fails.
Our schedule and single steps must equal DDPMScheduler / DDIMScheduler given the same model output,
x_t and generator seed.

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

from diffussm_lib.diffusion import NoiseSchedule, ddim_step, ddpm_sample, ddpm_step, sampling_timesteps

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

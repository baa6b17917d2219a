# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     notebook_metadata_filter: -jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 · Solutions: Diffusion from scratch: schedules, the training objective, DDPM and DDIM samplers, guidance
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/diffussm-course/diffussm-course/blob/main/notebooks/solutions/04_diffusion_schedule_and_samplers_solutions.ipynb)
#
# Solutions to the exercises of notebook 04, each checked with `assert`s, and answers to its
# "Check your understanding" questions.
#
# *Outputs shown: executed in full mode on 2026-12-03, CPU AMD EPYC, 2 torch threads, in 7 s.*

# %%
# Setup (the same in every notebook). In a clone the library is two folders up; in Colab this cell
# clones (or updates) the course and installs the library itself, nothing Colab already has.
import importlib.util, os, subprocess, sys
REPO_URL = os.environ.get("DIFFUSSM_REPO_URL", "https://github.com/diffussm-course/diffussm-course")
try:
    import google.colab  # noqa: F401  (importable only in Colab)
    IN_COLAB = True
except ImportError:
    IN_COLAB = False
if IN_COLAB and importlib.util.find_spec("diffussm_lib") is None:
    CLONE = os.path.join("/content" if os.path.isdir("/content") else os.getcwd(), "diffussm-course")
    if os.path.isdir(os.path.join(CLONE, ".git")):
        subprocess.run(["git", "-C", CLONE, "pull", "-q", "--ff-only"], check=True)
    else:
        subprocess.run(["git", "clone", "-q", "--depth=1", REPO_URL, CLONE], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "-e", CLONE],
                   check=True)
    sys.path.insert(0, CLONE)
    from google.colab import output
    output.enable_custom_widget_manager()          # the viewer's sliders (ipywidgets) in Colab
elif importlib.util.find_spec("diffussm_lib") is None:
    sys.path.insert(0, os.path.abspath(os.path.join("..", "..")))
from diffussm_lib.env import environment_report, by_mode, seed_everything
print(environment_report())

# %%
import math
import time

import torch

from diffussm_lib.diffusion import (NoiseSchedule, ddim_sample, ddim_step, ddpm_sample, ddpm_step, eps_from_v,
                                    spaced_step_times, v_from_x0_eps, x0_from_v)

gen = seed_everything(0)
torch.set_num_threads(by_mode(full=torch.get_num_threads(), fast=1))  # CI shares 2 cores: no OpenMP contention
T = 1000
sched = NoiseSchedule.cosine(T)      # the course's default schedule
START = time.perf_counter()

# %% [markdown]
# ## Solution 1
#
# With $\hat\epsilon = (x_t - \sqrt{\bar\alpha_t}\,\hat x_0)/\sqrt{1 - \bar\alpha_t}$ the DDIM step
# $x_s = \sqrt{\bar\alpha_s}\,\hat x_0 + \sqrt{1 - \bar\alpha_s - \sigma^2}\,\hat\epsilon + \sigma z$ becomes
#
# $$x_s = \underbrace{\Big(\sqrt{\bar\alpha_s} - c_1\sqrt{\bar\alpha_t}\Big)}_{c_0}\hat x_0
#       + \underbrace{\frac{\sqrt{1 - \bar\alpha_s - \sigma^2}}{\sqrt{1 - \bar\alpha_t}}}_{c_1} x_t + \sigma z .$$
#
# For $\eta = 1$, $\sigma^2 = \frac{1-\bar\alpha_s}{1-\bar\alpha_t}\big(1 - \frac{\bar\alpha_t}{\bar\alpha_s}\big) = \frac{1-\bar\alpha_s}{1-\bar\alpha_t}\beta = \tilde\beta$
# with $\beta = 1 - \bar\alpha_t/\bar\alpha_s$, and $1 - \bar\alpha_s - \sigma^2 = (1 - \bar\alpha_s)^2\,(1-\beta) / (1 - \bar\alpha_t)$,
# so $c_1 = \sqrt{1-\beta}\,(1 - \bar\alpha_s)/(1 - \bar\alpha_t)$: DDPM's coefficient of $x_t$. We compute all
# three for every consecutive pair and for a respaced run, and compare with the DDPM posterior.

# %%
def ddim_coefficients(ab_t, ab_s, eta=1.0):
    """DDIM step as c0 * x0_hat + c1 * x_t + sigma * z; ab_t, ab_s float64 tensors (same shape)."""
    sigma = eta * ((1 - ab_s) / (1 - ab_t) * (1 - ab_t / ab_s)).sqrt()
    c1 = (1 - ab_s - sigma ** 2).clamp(min=0).sqrt() / (1 - ab_t).sqrt()
    c0 = ab_s.sqrt() - c1 * ab_t.sqrt()
    return c0, c1, sigma


def ddpm_coefficients(ab_t, ab_s):
    """DDPM posterior step for the effective beta = 1 - ab_t / ab_s (fixed_small variance)."""
    beta = 1 - ab_t / ab_s
    c0 = ab_s.sqrt() * beta / (1 - ab_t)
    c1 = (1 - beta).sqrt() * (1 - ab_s) / (1 - ab_t)
    return c0, c1, (beta * (1 - ab_s) / (1 - ab_t)).sqrt()


ones = torch.ones(1, dtype=torch.float64)
pairs = {
    "consecutive (s = t - 1)": (sched.alpha_bar, sched.alpha_bar_prev),
    "respaced, S = 50": (sched.alpha_bar[spaced_step_times(T, 50)],
                         torch.cat([sched.alpha_bar[spaced_step_times(T, 50)[1:]], ones])),
}
for name, (ab_t, ab_s) in pairs.items():
    worst = max((a - b).abs().max().item() for a, b in zip(ddim_coefficients(ab_t, ab_s), ddpm_coefficients(ab_t, ab_s)))
    print(f"{name:>24}: {len(ab_t)} steps, largest coefficient difference DDIM(eta=1) - DDPM: {worst:.1e}")
    assert worst < 1e-9
# the consecutive DDPM coefficients are the schedule's posterior coefficients
c0, c1, sd = ddpm_coefficients(sched.alpha_bar, sched.alpha_bar_prev)
assert torch.allclose(c0, sched.posterior_coef_x0) and torch.allclose(c1, sched.posterior_coef_xt)
assert torch.allclose(sd ** 2, sched.posterior_variance)

# and the library's two step functions, same model output and same z
xt, out, z = (torch.randn(4, 1, 8, 8, generator=gen, dtype=torch.float64) for _ in range(3))
ts = spaced_step_times(T, 50).tolist()
for t, s in list(zip(ts, ts[1:] + [-1])) + [(500, 499), (1, 0), (0, -1)]:
    for pred in ("eps", "v"):
        a = ddim_step(sched, out, t, xt, t_prev=s, eta=1.0, prediction=pred, noise=z).x_prev
        b = ddpm_step(sched, out, t, xt, t_prev=s, prediction=pred, noise=z).x_prev
        assert torch.allclose(a, b, atol=1e-9), (t, s, pred)
print("library: ddim_step(eta=1) == ddpm_step for", len(ts) + 3, "pairs (t, s), eps and v outputs")

# %% [markdown]
# ## Solution 2
#
# With $a^2 + b^2 = 1$: $a\,x_t - b\,v = a^2 x_0 + ab\,\epsilon - ab\,\epsilon + b^2 x_0 = x_0$ and
# $b\,x_t + a\,v = ab\,x_0 + b^2\epsilon + a^2\epsilon - ab\,x_0 = \epsilon$. So
# $x_0 = a\,x_t - b\,v$ and $\epsilon = b\,x_t + a\,v$ (the inverse rotation). For a prediction $\hat v$ the
# errors are $\epsilon - \hat\epsilon = a\,(v - \hat v)$ and $x_0 - \hat x_0 = -b\,(v - \hat v)$, so
# $\lVert\epsilon - \hat\epsilon\rVert^2 = \bar\alpha_t\lVert v - \hat v\rVert^2$ and
# $\lVert x_0 - \hat x_0\rVert^2 = (1-\bar\alpha_t)\lVert v - \hat v\rVert^2$: the v-loss weights the
# $\epsilon$-error by $1/\bar\alpha_t$ (large at high noise) and the $x_0$-error by $1/(1 - \bar\alpha_t)$
# (large at low noise).

# %%
t_all = torch.arange(T)
x0 = torch.rand(T, 1, 4, 4, generator=gen, dtype=torch.float64) * 2 - 1
eps = torch.randn(T, 1, 4, 4, generator=gen, dtype=torch.float64)
xt = sched.q_sample(x0, t_all, eps)                                    # one x_t per timestep
a, b = sched.sqrt_alpha_bar.view(-1, 1, 1, 1), sched.sqrt_one_minus_alpha_bar.view(-1, 1, 1, 1)
v = v_from_x0_eps(sched, x0, eps, t_all)
x0_mine, eps_mine = a * xt - b * v, b * xt + a * v
assert torch.allclose(x0_mine, x0_from_v(sched, xt, t_all, v), atol=1e-12)
assert torch.allclose(eps_mine, eps_from_v(sched, xt, t_all, v), atol=1e-12)
assert torch.allclose(x0_mine, x0, atol=1e-9) and torch.allclose(eps_mine, eps, atol=1e-9)

v_hat = v + 0.1 * torch.randn(v.shape, generator=gen, dtype=torch.float64)   # an imperfect prediction
err_v = (v - v_hat).square().sum((1, 2, 3))
err_eps = (eps - eps_from_v(sched, xt, t_all, v_hat)).square().sum((1, 2, 3))
err_x0 = (x0 - x0_from_v(sched, xt, t_all, v_hat)).square().sum((1, 2, 3))
assert torch.allclose(err_eps, sched.alpha_bar * err_v, rtol=1e-9, atol=1e-12)
assert torch.allclose(err_x0, (1 - sched.alpha_bar) * err_v, rtol=1e-9, atol=1e-12)
for t in (0, 500, 999):
    print(f"t = {t:>3}: |eps - eps_hat|^2 / |v - v_hat|^2 = {(err_eps[t] / err_v[t]).item():.6f} "
          f"(alpha_bar {sched.alpha_bar[t].item():.6f}); |x0 - x0_hat|^2 / |v - v_hat|^2 = "
          f"{(err_x0[t] / err_v[t]).item():.6f}")

# %% [markdown]
# ## Solution 3
#
# For Gaussian data $\mathcal N(0, \sigma_\text{data}^2)$ the exact denoiser is linear in $x_t$, so every
# sampler step is $x_s = g\,x_t + \sigma z$ with $z$ independent of $x_t$, and
# $\mathrm{Var}(x_s) = g^2\,\mathrm{Var}(x_t) + \sigma^2$. For DDPM $g = c_0 k_t + c_1$ (the posterior
# coefficients for $\beta = 1 - \bar\alpha_t/\bar\alpha_s$); for DDIM with $\eta = 0$,
# $g = \sqrt{\bar\alpha_s}\,k_t + \sqrt{1 - \bar\alpha_s}\,e_t$ with $\hat\epsilon = e_t\,x_t$ and $\sigma = 0$.
# We run the recursion over the sampler's timesteps and compare it with the standard deviation of
# 4,096 sampled 8x8 images (262,144 numbers: a Monte Carlo error of about 0.001).

# %%
STD = 0.5
NUM = by_mode(full=4096, fast=1024)


def cheap(x, t, y, std=STD):
    """The exact denoiser E[eps | x_t] for data N(0, std^2) (notebook 04, section 7)."""
    a2 = sched.alpha_bar[t].float().view(-1, 1, 1, 1)
    return (1 - a2).sqrt() * x / (a2 * std ** 2 + 1 - a2)


def predicted_std(S, sampler):
    """Exact output standard deviation of `sampler` ("ddpm" or "ddim") with S steps on the Gaussian toy data."""
    ts = spaced_step_times(T, S).tolist()
    var = 1.0                                                          # x_T ~ N(0, I)
    for t, s in zip(ts, ts[1:] + [-1]):
        ab_t, ab_s = sched.alpha_bar[t].item(), (sched.alpha_bar[s].item() if s >= 0 else 1.0)
        e = math.sqrt(1 - ab_t) / (ab_t * STD ** 2 + 1 - ab_t)         # eps_hat = e * x_t
        k = (1 - math.sqrt(1 - ab_t) * e) / math.sqrt(ab_t)            # x0_hat = k * x_t
        if sampler == "ddpm":
            beta = 1 - ab_t / ab_s
            c0, c1 = math.sqrt(ab_s) * beta / (1 - ab_t), math.sqrt(1 - beta) * (1 - ab_s) / (1 - ab_t)
            noise_var = beta * (1 - ab_s) / (1 - ab_t) if s >= 0 else 0.0
            var = (c0 * k + c1) ** 2 * var + noise_var
        else:
            var = (math.sqrt(ab_s) * k + math.sqrt(1 - ab_s) * e) ** 2 * var
    return math.sqrt(var)


rows = []
for S in (1000, 50, 10, 5):
    for sampler, fn in (("ddpm", ddpm_sample), ("ddim", ddim_sample)):
        out = fn(cheap, sched, (NUM, 1, 8, 8), steps=S, generator=torch.Generator().manual_seed(S))
        mc, exact = out.double().std().item(), predicted_std(S, sampler)
        tol = 4 * exact / math.sqrt(2 * out.numel()) + 1e-4            # 4 standard errors of a std estimate
        rows.append((sampler, S, mc, exact))
        print(f"{sampler} S = {S:>4}: sampled std {mc:.4f} | predicted {exact:.4f} | target {STD}")
        assert abs(mc - exact) < tol, (sampler, S, mc, exact)
exact = {(sampler, S): e for sampler, S, _, e in rows}
assert all(abs(exact[sampler, 1000] - STD) < 3e-3 for sampler in ("ddpm", "ddim"))     # all steps: the data's std
assert all(exact["ddpm", S] < exact["ddim", S] < STD for S in (50, 10, 5))              # both narrower, DDPM more

# %% [markdown]
# With all 1000 steps both samplers come within 0.002 of $\sigma_\text{data} = 0.5$ (predicted 0.498 for
# DDPM, 0.499 for DDIM). As $S$ shrinks both come out *narrower* than the data, and DDPM loses
# accuracy first: predicted 0.467 / 0.381 / 0.304 for DDPM at $S$ = 50 / 10 / 5, against 0.485 / 0.421 /
# 0.335 for DDIM (the sampled values agree to within their Monte Carlo error). DDPM's "fixed_small"
# variance $\tilde\beta$ is the variance of $q(x_s \mid x_t, x_0)$ for a *known* $x_0$; it leaves out the
# uncertainty about $x_0$, and that missing part grows with the size of the jump from $t$ to $s$.
# (Improved DDPM's learned variance, section 12 of notebook 04, is one answer to this.) With a real
# network the step count also interacts with the network's errors, which is why notebook 06 compares
# samplers on the trained model.

# %%
print(f"solutions ran in {time.perf_counter() - START:.0f} s")

# %% [markdown]
# ## Answers
#
# 1. The forward steps add *Gaussian* noise to a scaled copy of the previous image, and a linear
#    map of a Gaussian plus independent Gaussian noise is again Gaussian, with mean and variance given
#    by a two-line recursion. So $q(x_t \mid x_0) = \mathcal N(\sqrt{\bar\alpha_t}\,x_0, (1 - \bar\alpha_t) I)$ in
#    closed form and $x_t$ is one line of arithmetic. For other noise (say uniform) the sum of $t$
#    independent steps is no longer in the same simple family, so there would be no one-line
#    closed form of that kind (one would have to run the chain or work out a convolution of $t$ densities).
# 2. The training loss only involves the marginals $q(x_t \mid x_0)$, never how consecutive $x_t$
#    are coupled. DDIM uses a different (non-Markovian) process with the *same* marginals, whose reverse
#    step from $t$ to any earlier $s$ needs only $\bar\alpha_t$, $\bar\alpha_s$ and the network's prediction
#    at $t$; so any decreasing subsequence of timesteps can be used with the same network.
#    $\eta$ sets how much fresh noise each step injects: $\eta = 0$ is a deterministic map from
#    $x_T$ to $x_0$ (reproducible, smooth in $x_T$), $\eta = 1$ is the DDPM step, whose randomness
#    can correct errors made along the way but usually needs more steps.
# 3. With $\hat\epsilon = \epsilon_\varnothing + w(\epsilon_y - \epsilon_\varnothing)$: $w = 0$ is the
#    unconditional model (the label is ignored), $w = 1$ the plain conditional model $p(x \mid y)$, and
#    $w = 3$ extrapolates beyond it, towards images that the label explains much better than no label
#    does (roughly $p(x \mid y)\,p(y \mid x)^{w-1}$): more typical of the class, less diverse. Both
#    $\epsilon_y$ and $\epsilon_\varnothing$ come from one network, which learns the unconditional one
#    only if it sometimes sees the null label during training: hence label dropout.

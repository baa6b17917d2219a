# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 · Diffusion from scratch: schedules, the training objective, DDPM and DDIM samplers, guidance
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/diffussm-course/diffussm-course/blob/main/notebooks/04_diffusion_schedule_and_samplers.ipynb)
#
# DiffuSSM changes the *network* of a diffusion model (state-space layers instead of attention);
# everything around the network, the noising process, the loss and the samplers, is standard
# DDPM / DDIM machinery. This notebook builds that machinery from scratch. Each piece is derived,
# written by hand, checked numerically against `diffussm_lib.diffusion`, and then the library
# version is used; notebook 05 trains the real DiffuSSM with it and notebook 06 visualises its samplers.
#
# **Objectives.** By the end of this notebook you can
# 1. write the forward process $q(x_t \mid x_0)$ in closed form and step by step, and show that they agree;
# 2. build the linear and cosine noise schedules and read their $\bar\alpha_t$ and SNR curves;
# 3. derive the posterior $q(x_{t-1} \mid x_t, x_0)$, the noise-prediction loss (and v-prediction),
#    and explain why the "simple" loss works;
# 4. implement the DDPM ancestral sampler and DDIM (deterministic and with $\eta$), and explain why DDIM can skip steps;
# 5. add classifier-free guidance, $x_0$ clipping and dynamic thresholding;
# 6. call `diffussm_lib.diffusion` with any denoiser of the interface `model(x, t, y)`.

# %%
# Setup: in a clone the library is one folder up; in Colab we clone the course and install it.
import importlib.util, os, subprocess, sys
REPO = "https://github.com/diffussm-course/diffussm-course"
if importlib.util.find_spec("diffussm_lib") is None:
    if "google.colab" in sys.modules:
        subprocess.run(["git", "clone", "--depth=1", REPO, "/content/diffussm-course"], check=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", "/content/diffussm-course[notebooks]"], check=True)
        sys.path.insert(0, "/content/diffussm-course")
    else:
        sys.path.insert(0, os.path.abspath(".."))
from diffussm_lib.env import environment_report, by_mode, seed_everything
print(environment_report())

# %%
import io
import math
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from diffussm_lib.config import DiffusionConfig
from diffussm_lib.data import mnist_dataset
from diffussm_lib.diffusion import (NoiseSchedule, cfg_combine, ddim_sample, ddim_step, ddpm_sample, ddpm_step,
                                    diffusion_loss, drop_labels, dynamic_threshold, eps_from_v, eps_from_x0,
                                    guided_eps, sampling_timesteps, v_from_x0_eps, x0_from_eps, x0_from_v)

gen = seed_everything(0)
NOTEBOOK_START = time.perf_counter()


def show(images, titles=None, rows=1, row_labels=None, size=1.1, suptitle=None):
    """Plot images (N, 1, H, W) in [-1, 1] as a grid with `rows` rows."""
    images = images.detach().float().cpu().clamp(-1, 1)
    cols = math.ceil(len(images) / rows)
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols, size * rows + (0.3 if suptitle else 0)), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([]); ax.set_yticks([])
        for side in ax.spines.values():
            side.set_visible(False)
        if i < len(images):
            ax.imshow(images[i, 0], cmap="gray", vmin=-1, vmax=1)
            if titles is not None:
                ax.set_title(titles[i], fontsize=8)
    if row_labels is not None:
        for r, lab in enumerate(row_labels):
            axes[r, 0].set_ylabel(lab, fontsize=8, rotation=0, ha="right", va="center")
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    plt.tight_layout()
    plt.show()

# %% [markdown]
# ## 1. The data
#
# `mnist_dataset` (notebook 00) gives 28x28 digits zero-padded to 32x32 and scaled to $[-1, 1]$
# (background $-1$): `x` has shape (1, 32, 32), `y` is the class.

# %%
train = mnist_dataset("train")
x_data, y_data = train.x, train.y              # (60000, 1, 32, 32) float in [-1, 1], (60000,) int64
print("images", tuple(x_data.shape), "range", (x_data.min().item(), x_data.max().item()))
show(x_data[:10], titles=[str(int(c)) for c in y_data[:10]])

# %% [markdown]
# ## 2. The forward process
#
# Diffusion destroys an image $x_0$ in $T$ small steps of Gaussian noise. With a **variance
# schedule** $\beta_1, \dots, \beta_T \in (0, 1)$ and $\alpha_t = 1 - \beta_t$,
#
# $$q(x_t \mid x_{t-1}) = \mathcal N\big(\sqrt{\alpha_t}\, x_{t-1},\ \beta_t I\big).$$
#
# The factor $\sqrt{\alpha_t}$ shrinks the signal just enough that a unit-variance input keeps unit
# variance: $\alpha_t \cdot 1 + \beta_t = 1$. Composing Gaussians gives a **closed form** for
# any $t$: if $x_{t-1} = m_{t-1} x_0 + \sqrt{v_{t-1}}\,\epsilon$ then
# $x_t = \sqrt{\alpha_t} m_{t-1} x_0 + \sqrt{\alpha_t v_{t-1} + \beta_t}\,\epsilon'$, so
# $m_t = \sqrt{\bar\alpha_t}$ and $v_t = 1 - \bar\alpha_t$ with $\bar\alpha_t = \prod_{s \le t} \alpha_s$:
#
# $$q(x_t \mid x_0) = \mathcal N\big(\sqrt{\bar\alpha_t}\, x_0,\ (1 - \bar\alpha_t) I\big),
# \qquad x_t = \sqrt{\bar\alpha_t}\, x_0 + \sqrt{1 - \bar\alpha_t}\,\epsilon,\quad \epsilon \sim \mathcal N(0, I).$$
#
# Training never runs the chain: it jumps to a random $t$ in one line. **Indexing:** in code the
# timesteps are indices $t = 0, \dots, T-1$ (index $t$ is the paper's step $t+1$), and the clean
# image sits at index $-1$ where $\bar\alpha = 1$. This is also the convention of DDPM's and
# `diffusers`' code.
#
# First DDPM's **linear** schedule ($T = 1000$, $\beta$ from $10^{-4}$ to $0.02$), by hand:

# %%
T = 1000
betas = torch.linspace(1e-4, 0.02, T, dtype=torch.float64)
alphas = 1 - betas
alpha_bar = torch.cumprod(alphas, dim=0)


def q_step_by_hand(x_prev, t, noise):
    """One forward step x_{t-1} -> x_t; x_prev, noise (B, C, H, W), t an int."""
    return alphas[t].sqrt().item() * x_prev + betas[t].sqrt().item() * noise


def q_sample_by_hand(x0, t, noise):
    """The closed form x_0 -> x_t; x0, noise (B, C, H, W), t an int."""
    return alpha_bar[t].sqrt().item() * x0 + (1 - alpha_bar[t]).sqrt().item() * noise


linear = NoiseSchedule.linear(T, 1e-4, 0.02)
assert torch.allclose(linear.alpha_bar, alpha_bar, rtol=1e-12, atol=0)
x0, noise = x_data[:4], torch.randn(4, 1, 32, 32, generator=gen)
assert torch.allclose(q_sample_by_hand(x0, 500, noise), linear.q_sample(x0, 500, noise), atol=1e-6)
assert torch.allclose(q_step_by_hand(x0, 7, noise), linear.q_step(x0, 7, noise), atol=1e-6)
print(linear)

# %% [markdown]
# **Closed form = step by step, in distribution.** The recursion above is exact arithmetic on
# means and variances; let us check it two ways. First run the mean/variance recursion itself for
# all 1000 steps. Then *sample*: start many chains at the same digit, apply `q_step` $K$ times, and
# compare each pixel's empirical mean and variance with $\sqrt{\bar\alpha}\,x_0$ and
# $1 - \bar\alpha$, in units of their standard errors.

# %%
m, v, worst = 1.0, 0.0, 0.0
for t in range(T):
    m, v = math.sqrt(alphas[t]) * m, alphas[t].item() * v + betas[t].item()
    worst = max(worst, abs(m - alpha_bar[t].sqrt().item()), abs(v - (1 - alpha_bar[t]).item()))
print(f"mean/variance recursion vs closed form, all t: max difference {worst:.1e}")
assert worst < 1e-12

N_CHAINS, K = by_mode(full=500, fast=150), by_mode(full=300, fast=100)
digit = x_data[0:1].double()                                            # (1, 1, 32, 32)
chains = digit.expand(N_CHAINS, -1, -1, -1).clone()
for t in range(K):
    chains = q_step_by_hand(chains, t, torch.randn(chains.shape, generator=gen, dtype=torch.float64))
direct = linear.q_sample(digit.expand(N_CHAINS, -1, -1, -1), K - 1,
                         torch.randn(chains.shape, generator=gen, dtype=torch.float64))
mean_true, var_true = alpha_bar[K - 1].sqrt() * digit[0], (1 - alpha_bar[K - 1]).item()
for name, samples in (("iterated q(x_t|x_{t-1})", chains), ("closed-form q(x_t|x_0)", direct)):
    z_mean = (samples.mean(0) - mean_true) / math.sqrt(var_true / N_CHAINS)
    z_var = (samples.var(0) - var_true) / (var_true * math.sqrt(2 / N_CHAINS))
    print(f"{name:>24}: max |z| over 1024 pixels: mean {z_mean.abs().max():.2f}, variance {z_var.abs().max():.2f}")
    assert z_mean.abs().max() < 5.5 and z_var.abs().max() < 5.5   # ~4 is typical for the max of 1024 normals

# %% [markdown]
# Both agree with the formula to within sampling error (for 1024 pixels, the largest of 1024
# standard normal deviations is typically 3-4).
#
# ## 3. Two schedules: linear and cosine
#
# The linear schedule destroys information quickly: $\bar\alpha_t$ is almost 0 well before
# $t = T$, so the last few hundred steps are spent on nearly pure noise. Nichol & Dhariwal (2021)
# instead pick $\bar\alpha$ directly,
#
# $$\bar\alpha_t = \frac{f(t)}{f(0)},\qquad f(t) = \cos^2\!\Big(\frac{t/T + s}{1 + s}\cdot\frac{\pi}{2}\Big),\ s = 0.008,$$
#
# and recover $\beta_t = 1 - \bar\alpha_t / \bar\alpha_{t-1}$, clipped at 0.999 (which bites only
# at the very last step, where $f = 0$). With our index convention $\bar\alpha$ at index $t$ is
# $f((t+1)/T)/f(0)$. The course's default (`DiffusionConfig`) is the cosine schedule.

# %%
s_off = 0.008
f = torch.cos((torch.arange(T + 1, dtype=torch.float64) / T + s_off) / (1 + s_off) * math.pi / 2) ** 2
betas_cos = (1 - f[1:] / f[:-1]).clamp(max=0.999)
cosine = NoiseSchedule.cosine(T)
assert torch.allclose(cosine.betas, betas_cos, rtol=1e-12, atol=0)
assert torch.allclose(cosine.alpha_bar[:-1], (f[1:] / f[0])[:-1], rtol=1e-10)   # the formula, except the clipped last step
sched = NoiseSchedule.from_config(DiffusionConfig())                            # what the course uses
print(sched)

# %%
ts = np.arange(T)
fig, axes = plt.subplots(1, 3, figsize=(13, 3.2))
for s_, style in ((linear, "-"), (cosine, "--")):
    axes[0].plot(ts, s_.alpha_bar, style, label=s_.name)
    axes[1].plot(ts, torch.log(s_.snr), style, label=s_.name)
    axes[2].plot(ts, s_.betas, style, label=s_.name)
axes[0].set(title=r"$\bar\alpha_t$ (signal variance)", xlabel="t")
axes[1].set(title=r"log SNR $= \log \bar\alpha_t / (1 - \bar\alpha_t)$", xlabel="t")
axes[2].set(title=r"$\beta_t$", xlabel="t", yscale="log")
for ax in axes:
    ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# The cosine schedule's log-SNR falls almost linearly in $t$: every step removes a similar
# amount of information. The linear schedule reaches SNR $\approx 10^{-2}$ by $t \approx 600$.
# The same digit and the same noise $\epsilon$ under both schedules:

# %%
show_ts = [0, 50, 100, 200, 300, 400, 500, 600, 800, 999]
eps_demo = torch.randn(1, 1, 32, 32, generator=gen)
rows = [s_.q_sample(x_data[0:1].expand(len(show_ts), -1, -1, -1), torch.tensor(show_ts),
                    eps_demo.expand(len(show_ts), -1, -1, -1)) for s_ in (linear, cosine)]
show(torch.cat(rows), titles=[f"t={t}" for t in show_ts] * 2, rows=2, row_labels=["linear", "cosine"])

# %% [markdown]
# ### Noising one digit, interactively
#
# The slider picks one of 100 frames computed up front (the slider only selects a precomputed
# image; nothing is recomputed). Without a live kernel or without `ipywidgets`, the static strip
# below it shows the same frames.

# %%
from PIL import Image

frame_ts = torch.linspace(0, T - 1, 100).round().long()
digit0 = x_data[1:2]
frames = sched.q_sample(digit0.expand(len(frame_ts), -1, -1, -1), frame_ts, eps_demo.expand(len(frame_ts), -1, -1, -1))


def to_png(img, scale=6):
    """(1, H, W) in [-1, 1] -> PNG bytes, upscaled with nearest neighbours."""
    a = ((img[0].clamp(-1, 1) + 1) * 127.5).round().byte().numpy()
    buf = io.BytesIO()
    Image.fromarray(a).resize((a.shape[1] * scale, a.shape[0] * scale), Image.NEAREST).save(buf, format="png")
    return buf.getvalue()


frame_png = [to_png(fr) for fr in frames]
print(len(frame_png), "frames precomputed")

# %% tags=["nbval-ignore-output"]
try:
    import ipywidgets as widgets
    from IPython.display import display
except ImportError:
    widgets = None
    print("ipywidgets is not installed: see the static strip below.")

if widgets is not None:
    def caption(i):
        t = int(frame_ts[i])
        return (f"t = {t}   alpha_bar = {sched.alpha_bar[t].item():.4f}   "
                f"SNR = {sched.snr[t].item():.3g}   (signal weight {sched.sqrt_alpha_bar[t].item():.3f}, "
                f"noise weight {sched.sqrt_one_minus_alpha_bar[t].item():.3f})")
    slider = widgets.IntSlider(value=0, min=0, max=len(frame_png) - 1, description="frame")
    picture = widgets.Image(value=frame_png[0], format="png")
    label = widgets.Label(caption(0))

    def on_change(change):
        picture.value, label.value = frame_png[change["new"]], caption(change["new"])
    slider.observe(on_change, names="value")
    display(widgets.VBox([slider, label, picture]))

# %%
# Static fallback: every 11th frame of the slider.
pick = list(range(0, len(frame_ts), 11))
show(frames[pick], titles=[f"t={int(frame_ts[i])}" for i in pick], suptitle="one digit, cosine schedule, fixed noise")

# %% [markdown]
# ## 4. The posterior $q(x_{t-1} \mid x_t, x_0)$
#
# Reversing one step is intractable in general ($q(x_{t-1} \mid x_t)$ depends on the whole data
# distribution), but **given $x_0$** it is a Gaussian we can write down. By Bayes,
# $q(x_{t-1} \mid x_t, x_0) \propto q(x_t \mid x_{t-1})\, q(x_{t-1} \mid x_0)$, a product of two
# Gaussians in $x_{t-1}$; completing the square,
#
# $$q(x_{t-1} \mid x_t, x_0) = \mathcal N\big(\tilde\mu_t,\ \tilde\beta_t I\big),\qquad
# \tilde\mu_t = \frac{\sqrt{\bar\alpha_{t-1}}\,\beta_t}{1 - \bar\alpha_t}\, x_0 + \frac{\sqrt{\alpha_t}\,(1 - \bar\alpha_{t-1})}{1 - \bar\alpha_t}\, x_t,
# \qquad \tilde\beta_t = \frac{1 - \bar\alpha_{t-1}}{1 - \bar\alpha_t}\,\beta_t .$$
#
# (Precisions add: $1/\tilde\beta_t = \alpha_t/\beta_t + 1/(1 - \bar\alpha_{t-1})$.) The schedule
# stores these coefficients; we check them, and check Bayes' rule itself numerically for one
# pixel, by normalising the product of the two densities on a fine grid.

# %%
ab_prev = torch.cat([torch.ones(1, dtype=torch.float64), cosine.alpha_bar[:-1]])
coef_x0 = ab_prev.sqrt() * cosine.betas / (1 - cosine.alpha_bar)
coef_xt = cosine.alphas.sqrt() * (1 - ab_prev) / (1 - cosine.alpha_bar)
beta_tilde = (1 - ab_prev) / (1 - cosine.alpha_bar) * cosine.betas
assert torch.allclose(coef_x0, cosine.posterior_coef_x0) and torch.allclose(coef_xt, cosine.posterior_coef_xt)
assert torch.allclose(beta_tilde, cosine.posterior_variance)

t, px0, pxt = 300, 0.7, -0.2                                   # one pixel: x_0 = 0.7, observed x_t = -0.2
grid = torch.linspace(-6, 6, 200_001, dtype=torch.float64)     # candidate values of x_{t-1}
log_p = (-(pxt - cosine.alphas[t].sqrt() * grid) ** 2 / (2 * cosine.betas[t])          # q(x_t | x_{t-1})
         - (grid - ab_prev[t].sqrt() * px0) ** 2 / (2 * (1 - ab_prev[t])))              # q(x_{t-1} | x_0)
w = torch.softmax(log_p, 0)
grid_mean, grid_var = (w * grid).sum().item(), (w * grid ** 2).sum().item() - (w * grid).sum().item() ** 2
formula_mean = (coef_x0[t] * px0 + coef_xt[t] * pxt).item()
print(f"posterior mean: grid {grid_mean:.6f}, formula {formula_mean:.6f}; "
      f"variance: grid {grid_var:.6e}, formula {beta_tilde[t].item():.6e}")
assert abs(grid_mean - formula_mean) < 1e-6 and abs(grid_var / beta_tilde[t].item() - 1) < 1e-4

# %% [markdown]
# ## 5. The training objective
#
# The reverse model is $p_\theta(x_{t-1} \mid x_t) = \mathcal N(\mu_\theta(x_t, t), \sigma_t^2 I)$
# with a fixed $\sigma_t^2$. The variational bound on $-\log p_\theta(x_0)$ is a sum of KL terms
# $L_{t-1} = \mathrm{KL}\big(q(x_{t-1} \mid x_t, x_0)\,\|\,p_\theta(x_{t-1} \mid x_t)\big)
# = \frac{1}{2\sigma_t^2}\lVert\tilde\mu_t - \mu_\theta\rVert^2 + \text{const}$.
# Substitute $x_0 = (x_t - \sqrt{1 - \bar\alpha_t}\,\epsilon)/\sqrt{\bar\alpha_t}$ into $\tilde\mu_t$:
#
# $$\tilde\mu_t = \frac{1}{\sqrt{\alpha_t}}\Big(x_t - \frac{\beta_t}{\sqrt{1 - \bar\alpha_t}}\,\epsilon\Big),$$
#
# so a network that predicts the **noise** $\epsilon_\theta(x_t, t)$ and sets
# $\mu_\theta = \frac{1}{\sqrt{\alpha_t}}\big(x_t - \frac{\beta_t}{\sqrt{1 - \bar\alpha_t}}\epsilon_\theta\big)$ gives
#
# $$L_{t-1} = \underbrace{\frac{\beta_t^2}{2\sigma_t^2\,\alpha_t\,(1 - \bar\alpha_t)}}_{\lambda_t}\ \lVert \epsilon - \epsilon_\theta(x_t, t) \rVert^2 .$$
#
# Let us check the identity $\tilde\mu_t - \mu_\theta = \frac{\beta_t}{\sqrt{\alpha_t}\sqrt{1-\bar\alpha_t}}(\epsilon_\theta - \epsilon)$ numerically:

# %%
t = 400
x0, eps = x_data[:4].double(), torch.randn(4, 1, 32, 32, generator=gen, dtype=torch.float64)
eps_theta = eps + 0.1 * torch.randn(4, 1, 32, 32, generator=gen, dtype=torch.float64)   # an imperfect prediction
xt = cosine.q_sample(x0, t, eps)
mu_tilde, _ = cosine.q_posterior(x0, xt, t)
a_t, b_t, ab_t = cosine.alphas[t].item(), cosine.betas[t].item(), cosine.alpha_bar[t].item()
mu_theta = (xt - b_t / math.sqrt(1 - ab_t) * eps_theta) / math.sqrt(a_t)
assert torch.allclose(mu_tilde - mu_theta, b_t / math.sqrt(a_t * (1 - ab_t)) * (eps_theta - eps), atol=1e-12)

# %% [markdown]
# **Why the simple loss works.** Ho et al. (2020) drop $\lambda_t$ and train
# $L_\text{simple} = \mathbb E_{t, x_0, \epsilon}\lVert\epsilon - \epsilon_\theta(x_t, t)\rVert^2$ with
# $t$ uniform. Three reasons this is sound:
#
# 1. **Same optimum.** Each term is minimised, for every $(x_t, t)$ separately, by the same function,
#    the posterior mean $\mathbb E[\epsilon \mid x_t]$; positive weights per $t$ change how the network
#    spends its capacity, not what a perfect network would output.
# 2. **It is denoising score matching.** $\mathbb E[\epsilon \mid x_t] = -\sqrt{1-\bar\alpha_t}\,\nabla_{x_t}\log q(x_t)$
#    (Tweedie), so $\epsilon_\theta$ learns the score of every noise level; the samplers below only need that.
# 3. **Better weighting for samples.** $\lambda_t$ (plotted below with $\sigma_t^2 = \tilde\beta_t$) is
#    huge at the smallest $t$, where the task is removing imperceptible noise; the uniform weights
#    move the effort to the larger $t$ that decide the digit's shape, which gives better samples
#    (at some cost in likelihood).

# %%
lam = cosine.betas ** 2 / (2 * cosine.posterior_variance * cosine.alphas * (1 - cosine.alpha_bar))
lam_lin = linear.betas ** 2 / (2 * linear.posterior_variance * linear.alphas * (1 - linear.alpha_bar))
plt.figure(figsize=(5, 3))
plt.plot(ts[1:], lam_lin[1:], label="linear")
plt.plot(ts[1:], lam[1:], "--", label="cosine")
plt.axhline(1.0, color="gray", lw=0.8)
plt.yscale("log"); plt.xlabel("t"); plt.title(r"VLB weight $\lambda_t$ (simple loss: 1)"); plt.legend()
plt.tight_layout(); plt.show()

# %% [markdown]
# **v-prediction.** Instead of $\epsilon$ the network can predict the "velocity"
# $v = \sqrt{\bar\alpha_t}\,\epsilon - \sqrt{1 - \bar\alpha_t}\,x_0$ (Salimans & Ho 2022). Writing
# $a = \sqrt{\bar\alpha_t}$, $b = \sqrt{1-\bar\alpha_t}$ ($a^2 + b^2 = 1$), $(x_t, v)$ is $(x_0, \epsilon)$
# rotated by an angle, so everything converts linearly:
# $x_0 = a\,x_t - b\,v$ and $\epsilon = b\,x_t + a\,v$. The benefit is at high noise: from an
# $\epsilon$ prediction, $x_0 = (x_t - b\,\epsilon)/a$ multiplies any error in $\epsilon$ by $b/a$,
# which is about $10^4$ at the last cosine step, while an error in $v$ reaches $x_0$ multiplied by $b \le 1$.

# %%
t_all = torch.arange(T)
x0, eps = x_data[:4].double(), torch.randn(4, 1, 32, 32, generator=gen, dtype=torch.float64)
tb = torch.tensor([10, 300, 700, 999])
xt = cosine.q_sample(x0, tb, eps)
a, b = cosine.sqrt_alpha_bar[tb].view(-1, 1, 1, 1), cosine.sqrt_one_minus_alpha_bar[tb].view(-1, 1, 1, 1)
v_hand = a * eps - b * x0
assert torch.allclose(v_hand, v_from_x0_eps(cosine, x0, eps, tb))
assert torch.allclose(x0_from_v(cosine, xt, tb, v_hand), a * xt - b * v_hand) and torch.allclose(a * xt - b * v_hand, x0)
assert torch.allclose(eps_from_v(cosine, xt, tb, v_hand), eps)
assert torch.allclose(x0_from_eps(cosine, xt, tb, eps), (xt - b * eps) / a, atol=1e-9)
plt.figure(figsize=(5, 3))
plt.plot(t_all, cosine.sqrt_one_minus_alpha_bar / cosine.sqrt_alpha_bar, label=r"$\epsilon$-prediction: $b/a$")
plt.plot(t_all, cosine.sqrt_one_minus_alpha_bar, label=r"v-prediction: $b$")
plt.yscale("log"); plt.xlabel("t"); plt.title(r"error in the output $\to$ error in $x_0$"); plt.legend()
plt.tight_layout(); plt.show()

# %% [markdown]
# The loss, by hand, for a batch: draw $t$ uniformly and $\epsilon$, form $x_t$, regress the target.
# `diffusion_loss` is the same thing (it draws $t$ and $\epsilon$ from a generator unless given):

# %%
def loss_by_hand(model, x0, y, t, eps, prediction="eps"):
    """x0, eps (B, C, H, W); t (B,) long; y (B,) long -> scalar mean squared error."""
    a = cosine.sqrt_alpha_bar[t].float().view(-1, 1, 1, 1)
    b = cosine.sqrt_one_minus_alpha_bar[t].float().view(-1, 1, 1, 1)
    xt = a * x0 + b * eps
    target = eps if prediction == "eps" else a * eps - b * x0
    return ((model(xt, t, y) - target) ** 2).mean()


some_model = lambda x, t, y: 0.5 * torch.tanh(x) + 1e-3 * t.view(-1, 1, 1, 1)   # any function of (x, t, y)
x0, y0 = x_data[:8], y_data[:8]
t8, eps8 = torch.randint(0, T, (8,), generator=gen), torch.randn(8, 1, 32, 32, generator=gen)
for pred in ("eps", "v"):
    ours = diffusion_loss(some_model, cosine, x0, y0, prediction=pred, t=t8, noise=eps8)
    assert torch.allclose(ours, loss_by_hand(some_model, x0, y0, t8, eps8, pred), rtol=1e-5)

# %% [markdown]
# ## 6. A stand-in denoiser, trained for a minute
#
# The samplers need a network $\epsilon_\theta(x, t, y)$. **This is not DiffuSSM**: it is a
# deliberately tiny convolutional net, defined right here only so that the samplers have something
# real to run. Notebook 05 trains the actual DiffuSSM backbone, with the same loss and samplers.
# It has the interface every sampler in the library accepts, `model(x, t, y)`: x (B, 1, 32, 32),
# t (B,) long, y (B,) long or None, and 11 label embeddings, the last one (index 10) meaning
# "no label" for classifier-free guidance (section 9).
#
# We train it with **v-prediction**: on a one-minute budget it produced digit-like strokes
# noticeably sooner than $\epsilon$-prediction did in our trials (the samplers convert either to
# $x_0$ and $\epsilon$, so nothing else changes). Labels are dropped to the null class 10% of the time
# (`drop_labels`), which is what makes guidance possible later. Full mode trains for 60 seconds
# (the number of steps depends on your machine); fast mode (CI) a few steps, so its samples are noise.

# %%
def timestep_embedding(t, dim):
    """Sinusoidal embedding of integer timesteps: t (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([args.sin(), args.cos()], dim=1)


class FiLMBlock(nn.Module):
    """Residual conv block whose normalised features are scaled/shifted by the conditioning vector."""

    def __init__(self, ch, cond_dim):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(8, ch), nn.Conv2d(ch, ch, 3, padding=1)
        self.norm2, self.conv2 = nn.GroupNorm(8, ch), nn.Conv2d(ch, ch, 3, padding=1)
        self.film = nn.Linear(cond_dim, 2 * ch)

    def forward(self, h, c):
        """h (B, ch, H, W), c (B, cond_dim) -> (B, ch, H, W)."""
        scale, shift = self.film(c)[:, :, None, None].chunk(2, dim=1)
        z = self.norm2(self.conv1(F.silu(self.norm1(h)))) * (1 + scale) + shift
        return h + self.conv2(F.silu(z))


class TinyDenoiser(nn.Module):
    """STAND-IN for the samplers of notebook 04 (not DiffuSSM): a two-level conv net, ~0.3 M parameters.

    forward(x (B, C, 32, 32), t (B,) long, y (B,) long or None) -> (B, C, 32, 32). y = None means
    the null class. Works on 2x2-pixel cells (pixel_unshuffle): 16x16 then 8x8 positions.
    """

    def __init__(self, ch=32, cond_dim=128, num_classes=10, in_channels=1):
        super().__init__()
        self.null_class = num_classes
        self.t_mlp = nn.Sequential(nn.Linear(cond_dim, cond_dim), nn.SiLU(), nn.Linear(cond_dim, cond_dim))
        self.y_emb = nn.Embedding(num_classes + 1, cond_dim)           # index num_classes = "no label"
        self.inp = nn.Conv2d(4 * in_channels, ch, 3, padding=1)
        self.block1 = FiLMBlock(ch, cond_dim)
        self.down = nn.Conv2d(ch, 2 * ch, 3, stride=2, padding=1)
        self.block2, self.block3 = FiLMBlock(2 * ch, cond_dim), FiLMBlock(2 * ch, cond_dim)
        self.up = nn.ConvTranspose2d(2 * ch, ch, 2, stride=2)
        self.block4 = FiLMBlock(ch, cond_dim)
        self.out = nn.Conv2d(ch, 4 * in_channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x, t, y):
        if y is None:
            y = torch.full_like(t, self.null_class)
        c = F.silu(self.t_mlp(timestep_embedding(t, self.y_emb.embedding_dim)) + self.y_emb(y))
        h1 = self.block1(self.inp(F.pixel_unshuffle(x, 2)), c)
        h = self.block3(self.block2(self.down(h1), c), c)
        h = self.block4(self.up(h) + h1, c)
        return F.pixel_shuffle(self.out(F.silu(h)), 2)


PREDICTION, NULL_CLASS = "v", 10
torch.manual_seed(0)
model = TinyDenoiser()
print(f"TinyDenoiser (stand-in): {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters")

# %%
TRAIN_SECONDS = by_mode(full=60.0, fast=float("inf"))
MAX_STEPS = by_mode(full=100_000, fast=4)
BATCH, LR = 32, 3e-3

opt = torch.optim.AdamW(model.parameters(), lr=LR)
train_gen = torch.Generator().manual_seed(0)
losses, step, start = [], 0, time.perf_counter()
model.train()
while step < MAX_STEPS and time.perf_counter() - start < TRAIN_SECONDS:
    idx = torch.randint(0, len(x_data), (BATCH,), generator=train_gen)
    y = drop_labels(y_data[idx], p=0.1, null_class=NULL_CLASS, generator=train_gen)
    loss = diffusion_loss(model, sched, x_data[idx], y, generator=train_gen, prediction=PREDICTION)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    losses.append(loss.item())
    step += 1
model.eval()
train_time = time.perf_counter() - start
print(f"{step} steps of batch {BATCH} in {train_time:.0f} s ({train_time / step * 1000:.0f} ms/step); "
      f"last loss {np.mean(losses[-50:]):.3f}")
plt.figure(figsize=(5, 2.5))
plt.plot(losses, lw=0.5, alpha=0.5)
if len(losses) >= 25:   # 25-step moving average, centred
    plt.plot(np.arange(12, len(losses) - 12), np.convolve(losses, np.ones(25) / 25, mode="valid"))
plt.xlabel("step"); plt.ylabel(f"{PREDICTION}-loss"); plt.yscale("log"); plt.tight_layout(); plt.show()

# %% [markdown]
# ## 7. The DDPM ancestral sampler
#
# Start from $x_{T} \sim \mathcal N(0, I)$ and walk down: at each step use the posterior of
# section 4 with the *predicted* $\hat x_0$ in place of $x_0$,
#
# $$x_{t-1} = \tilde\mu_t(x_t, \hat x_0) + \sigma_t z = \frac{1}{\sqrt{\alpha_t}}\Big(x_t - \frac{\beta_t}{\sqrt{1-\bar\alpha_t}}\,\hat\epsilon\Big) + \sigma_t z,
# \qquad z \sim \mathcal N(0, I),$$
#
# with no noise on the final step. DDPM tried two variances, both fine in practice:
# $\sigma_t^2 = \tilde\beta_t$ ("fixed_small", the true posterior variance; the library's default)
# and $\sigma_t^2 = \beta_t$ ("fixed_large"). The library writes the step the second way shown
# above, via $\hat x_0$ (so it can clip $\hat x_0$ and skip steps, later); the two must agree:

# %%
def ddpm_step_by_hand(eps_hat, t, xt, z):
    """Classic DDPM step (eps form, fixed_small): eps_hat, xt, z (B, C, H, W), t an int -> x_{t-1}."""
    a_t, b_t, ab = sched.alphas[t].item(), sched.betas[t].item(), sched.alpha_bar[t].item()
    mean = (xt - b_t / math.sqrt(1 - ab) * eps_hat) / math.sqrt(a_t)
    return mean + (math.sqrt(sched.posterior_variance[t].item()) * z if t > 0 else 0.0)


xt, eps_hat, z = (torch.randn(4, 1, 32, 32, generator=gen, dtype=torch.float64) for _ in range(3))
for t in (999, 500, 1, 0):
    assert torch.allclose(ddpm_step_by_hand(eps_hat, t, xt, z), ddpm_step(sched, eps_hat, t, xt, noise=z).x_prev, atol=1e-9)

# %% [markdown]
# The whole sampler is a loop over that step. Written by hand, with every random number drawn from
# one generator, it reproduces `ddpm_sample` exactly. We check it with a denoiser that needs no
# training: if the "data" were Gaussian, $x_0 \sim \mathcal N(0, s^2 I)$, the best noise prediction
# is known in closed form, $\mathbb E[\epsilon \mid x_t] = \sqrt{1-\bar\alpha_t}\,x_t / (\bar\alpha_t s^2 + 1 - \bar\alpha_t)$,
# and the sampler must turn pure noise into samples of standard deviation $s$:

# %%
def ddpm_sample_by_hand(model, shape, y, generator):
    x = torch.randn(shape, generator=generator)
    for t in range(T - 1, -1, -1):
        eps_hat = model(x, torch.full((shape[0],), t), y)
        z = torch.randn(shape, generator=generator) if t > 0 else None
        x = ddpm_step_by_hand(eps_hat, t, x, z)
    return x


def cheap(x, t, y, s=0.5):
    """The exact denoiser E[eps | x_t] when the data are pure Gaussian noise N(0, s^2): no training needed."""
    a2 = sched.alpha_bar[t].float().view(-1, 1, 1, 1)
    return (1 - a2).sqrt() * x / (a2 * s ** 2 + 1 - a2)


by_hand = ddpm_sample_by_hand(cheap, (16, 1, 8, 8), None, torch.Generator().manual_seed(1))
library = ddpm_sample(cheap, sched, (16, 1, 8, 8), generator=torch.Generator().manual_seed(1))
assert torch.allclose(by_hand, library, atol=1e-4)
print(f"samples of N(0, 0.5^2) data have std {library.std():.3f}")   # the sampler recovers the data distribution
assert abs(library.std().item() - 0.5) < 0.05

# %% [markdown]
# Now with the trained stand-in, one sample per class. DDPM uses all $T = 1000$ steps (fast mode:
# a respaced subset, see section 8). The output is whatever a one-minute model can do:
# digit-like strokes, not yet good digits.

# %%
labels = torch.arange(10)
DDPM_STEPS = by_mode(full=None, fast=10)       # None = all T steps
t0 = time.perf_counter()
ddpm_images = ddpm_sample(model, sched, (10, 1, 32, 32), labels, prediction=PREDICTION, steps=DDPM_STEPS,
                          clip_x0=True, generator=torch.Generator().manual_seed(0))
print(f"DDPM, {DDPM_STEPS or T} steps: {time.perf_counter() - t0:.1f} s")
show(ddpm_images, titles=[str(int(c)) for c in labels])

# %% [markdown]
# ## 8. DDIM: the same model, fewer steps
#
# The loss of section 5 only ever sees the **marginals** $q(x_t \mid x_0)$; it never looks at how
# $x_{t-1}$ and $x_t$ are jointly distributed. Song et al. (2021) exploit this: there is a whole
# family of (non-Markovian) forward processes with exactly these marginals, indexed by $\sigma_t$,
# whose reverse step from $t$ to any earlier $s$ is
#
# $$x_s = \sqrt{\bar\alpha_s}\,\hat x_0 + \sqrt{1 - \bar\alpha_s - \sigma^2}\;\hat\epsilon + \sigma z,
# \qquad \sigma = \eta\,\sqrt{\frac{1 - \bar\alpha_s}{1 - \bar\alpha_t}\Big(1 - \frac{\bar\alpha_t}{\bar\alpha_s}\Big)} .$$
#
# Read it as: predict the clean image, then re-noise it to level $s$, reusing the predicted noise
# direction for the part of the variance that is not fresh. Because it only needs $\bar\alpha$ at
# the two levels, **any decreasing subsequence of timesteps works** (10 steps instead of 1000),
# with the same trained network. $\eta = 0$ is deterministic (an ODE-like map from $x_T$ to $x_0$);
# $\eta = 1$ is exactly the DDPM step with $\tilde\beta$ (for $s = t - 1$, and also for the
# respaced DDPM the library uses in fast mode).

# %%
def ddim_step_by_hand(eps_hat, t, s, xt, eta, z):
    """eps_hat, xt, z (B, C, H, W); t > s >= -1 ints (s = -1: the clean image) -> x_s."""
    ab_t, ab_s = sched.alpha_bar[t].item(), (sched.alpha_bar[s].item() if s >= 0 else 1.0)
    x0_hat = (xt - math.sqrt(1 - ab_t) * eps_hat) / math.sqrt(ab_t)
    sigma = eta * math.sqrt((1 - ab_s) / (1 - ab_t) * (1 - ab_t / ab_s))
    return math.sqrt(ab_s) * x0_hat + math.sqrt(1 - ab_s - sigma ** 2) * eps_hat + sigma * z


for (t, s) in ((999, 899), (500, 250), (40, -1)):
    for eta in (0.0, 0.5, 1.0):
        got = ddim_step(sched, eps_hat, t, xt, t_prev=s, eta=eta, noise=z).x_prev
        assert torch.allclose(ddim_step_by_hand(eps_hat, t, s, xt, eta, z), got, atol=1e-9)
    # eta = 1 is the (respaced) DDPM step
    assert torch.allclose(ddim_step(sched, eps_hat, t, xt, t_prev=s, eta=1.0, noise=z).x_prev,
                          ddpm_step(sched, eps_hat, t, xt, t_prev=s, noise=z).x_prev, atol=1e-9)

# %% [markdown]
# Two sanity checks of "skipping is fine". With an **oracle denoiser** that knows $x_0$ (it
# returns exactly the $\epsilon$ consistent with $x_t$ and $x_0$), DDIM with just 10 steps lands on
# $x_0$. And with a shared generator, DDIM with $\eta = 1$ reproduces DDPM sample for sample:

# %%
targets = x_data[:5]
oracle = lambda x, t, y: eps_from_x0(sched, x, t, targets)   # noqa: E731
landed = ddim_sample(oracle, sched, targets.shape, steps=10, generator=torch.Generator().manual_seed(0))
print("DDIM, 10 steps, oracle denoiser: max |x_0 - result| =", f"{(landed - targets).abs().max():.1e}")
assert torch.allclose(landed, targets, atol=1e-4)

a = ddim_sample(cheap, sched, (2, 1, 8, 8), steps=50, eta=1.0, generator=torch.Generator().manual_seed(3))
b = ddpm_sample(cheap, sched, (2, 1, 8, 8), steps=50, generator=torch.Generator().manual_seed(3))
assert torch.allclose(a, b, atol=1e-5)

# %% [markdown]
# `sampling_timesteps(T, n)` spreads the $n$ steps evenly from $T-1$ down to 0, so the first
# model call sees the pure noise that $x_T$ is, and the last one the least-noised level. With the
# trained stand-in and a fixed $x_T$, deterministic DDIM with more and more steps:

# %%
print("DDIM timesteps for n = 10:", sampling_timesteps(T, 10).tolist())
step_counts = by_mode(full=[5, 10, 25, 100], fast=[2, 4])
x_T = torch.randn(10, 1, 32, 32, generator=torch.Generator().manual_seed(0))
rows, row_names = [], []
for n in step_counts:
    t0 = time.perf_counter()
    rows.append(ddim_sample(model, sched, None, labels, steps=n, prediction=PREDICTION, clip_x0=True, x_T=x_T))
    row_names.append(f"{n} steps\n{time.perf_counter() - t0:.1f} s")
show(torch.cat(rows), rows=len(rows), row_labels=row_names)

# %% [markdown]
# With a deterministic sampler the same $x_T$ gives nearly the same digit at every step count:
# the steps refine rather than re-draw. (DDIM's $\eta$ trades this determinism for the extra
# stochasticity of DDPM, which can correct a model's errors along the way.)
#
# ## 9. Classifier-free guidance
#
# Because 10% of training labels were replaced by the null class, the one network knows both
# $\epsilon_\theta(x_t, t, y)$ and $\epsilon_\theta(x_t, t, \varnothing)$. Guidance with scale $w$
# extrapolates from the unconditional towards the conditional prediction (Ho & Salimans 2021):
#
# $$\hat\epsilon = \epsilon_\theta(x_t, t, \varnothing) + w\,\big(\epsilon_\theta(x_t, t, y) - \epsilon_\theta(x_t, t, \varnothing)\big).$$
#
# $w = 1$ is the plain conditional model, $w = 0$ the unconditional one, $w > 1$ exaggerates what
# distinguishes class $y$: sharper, more typical, less diverse samples. (Since $v$, $\epsilon$ and
# $x_0$ are linear in each other at fixed $x_t$, guiding $v$ the same way is the same thing.) The
# library evaluates both predictions in **one batched forward pass** of size $2B$:

# %%
xt8, t8, y8 = torch.randn(4, 1, 32, 32, generator=gen), torch.tensor([900, 500, 100, 10]), torch.tensor([3, 1, 4, 1])
with torch.no_grad():
    cond, uncond = model(xt8, t8, y8), model(xt8, t8, torch.full_like(y8, NULL_CLASS))
    for w in (0.0, 1.0, 2.5):
        assert torch.allclose(guided_eps(model, xt8, t8, y8, w, NULL_CLASS), uncond + w * (cond - uncond), atol=1e-5)
    assert torch.equal(guided_eps(model, xt8, t8, y8, 0.0, NULL_CLASS), uncond)   # w = 0: unconditional
    assert torch.equal(guided_eps(model, xt8, t8, y8, 1.0, NULL_CLASS), cond)     # w = 1: conditional

# %%
SAMPLE_STEPS = by_mode(full=50, fast=4)
guidance_scales = [0.0, 1.0, 3.0, 6.0]
rows = [ddim_sample(model, sched, None, labels, steps=SAMPLE_STEPS, guidance_scale=w, prediction=PREDICTION,
                    clip_x0=True, x_T=x_T) for w in guidance_scales]
show(torch.cat(rows), rows=len(rows), row_labels=[f"w = {w:g}" for w in guidance_scales],
     suptitle=f"DDIM {SAMPLE_STEPS} steps, same x_T, classes 0-9")

# %% [markdown]
# Row $w = 0$ ignores the label; as $w$ grows the samples follow their class more strongly (for a
# model this young the effect is rough but visible). Guidance doubles the cost of each step.
#
# ## 10. Keeping $\hat x_0$ in range: clipping and dynamic thresholding
#
# At high noise, $\hat x_0 = (x_t - \sqrt{1-\bar\alpha_t}\,\hat\epsilon)/\sqrt{\bar\alpha_t}$ (or
# its v form) can land far outside the data range $[-1, 1]$, and large guidance scales push it
# further. Since the data lives in $[-1, 1]$, the samplers can constrain $\hat x_0$ before using it:
#
# * **static clipping**: clamp $\hat x_0$ to $[-1, 1]$ (DDPM's code did this);
# * **dynamic thresholding** (Imagen, Saharia et al. 2022): per image, let $s$ be the $p$-th
#   percentile of $|\hat x_0|$ ($p = 0.995$), floored at 1; clamp to $[-s, s]$ and divide by $s$.
#   Saturated pixels are pulled inwards instead of piling up at $\pm 1$.
#
# In DDIM, after clipping, $\hat\epsilon$ is recomputed from the clipped $\hat x_0$ so that
# $(\hat x_0, \hat\epsilon)$ stay consistent with $x_t$. By hand, and against the library:

# %%
def dynamic_threshold_by_hand(x0_hat, p=0.995):
    """x0_hat (B, C, H, W) -> same shape, each image rescaled by its own s >= 1."""
    s = torch.quantile(x0_hat.flatten(1).abs(), p, dim=1).clamp(min=1.0).view(-1, 1, 1, 1)
    return torch.maximum(torch.minimum(x0_hat, s), -s) / s


wide = 3 * torch.randn(4, 1, 32, 32, generator=gen)
assert torch.allclose(dynamic_threshold_by_hand(wide), dynamic_threshold(wide, 0.995))
assert torch.equal(dynamic_threshold(x_data[:4], 0.995), x_data[:4])      # already in range: untouched

# %% [markdown]
# With a large guidance scale we sample three times from the same $x_T$: without a constraint,
# with clipping and with dynamic thresholding. The trajectory of the unconstrained run
# (`return_trajectory=True` records every $x_t$ and $\hat x_0$) shows how far $\hat x_0$ leaves
# the data range. Our stand-in predicts $v$, for which $\hat x_0 = a\,x_t - b\,v$ stays moderate;
# an $\epsilon$-predictor divides by $a = \sqrt{\bar\alpha_t}$ and can overshoot by orders of
# magnitude at high noise (section 5), which is where clipping matters most.

# %%
W_BIG = 6.0
options = {"no constraint": {}, "clip to [-1, 1]": {"clip_x0": True}, "dynamic threshold p=0.995": {"dynamic_threshold": 0.995}}
results = {name: ddim_sample(model, sched, None, labels, steps=SAMPLE_STEPS, guidance_scale=W_BIG, prediction=PREDICTION,
                             x_T=x_T, return_trajectory=True, **kw) for name, kw in options.items()}
raw = results["no constraint"]
fig, axes = plt.subplots(1, 2, figsize=(10, 3))
axes[0].plot(raw.timesteps, raw.x0_preds.flatten(1).abs().amax(1))
axes[0].set(title=rf"max $|\hat x_0|$ over the batch, w = {W_BIG:g}", xlabel="t (sampling runs right to left)")
axes[1].plot(raw.timesteps, 100 * (raw.x0_preds.abs() > 1).float().flatten(1).mean(1))
axes[1].set(title=r"% of pixels of $\hat x_0$ outside $[-1, 1]$", xlabel="t (sampling runs right to left)")
for ax in axes:
    ax.invert_xaxis()
plt.tight_layout(); plt.show()
show(torch.cat([r.images for r in results.values()]), rows=3, row_labels=["none", "clip", "dynamic"])

# %% [markdown]
# Clipping changes little once the model is good, and mostly tames the early, noisy steps.
# Dynamic thresholding divides each $\hat x_0$ by its $s > 1$, which pulls *all* pixels inwards:
# on MNIST, whose background really sits at $-1$, that shows up as a grey background. It was
# designed for natural images under very large guidance scales, where saturated colours are the
# failure it fixes. Both are options of every sampler (`clip_x0=True`, `dynamic_threshold=p`).

# %% [markdown]
# ## 11. What a sampler run looks like from the inside
#
# `return_trajectory=True` returns a `SampleResult`: the final `images` (B, C, H, W), the
# `timesteps` (R,), and for each of them the noisy input `xs` (R, B, C, H, W) and the prediction
# `x0_preds` (R, B, C, H, W) (float32 on the CPU). Notebook 06 turns these into an interactive
# denoising viewer; here is one sample, the noisy $x_t$ on top and $\hat x_0$ below:

# %%
res = results["clip to [-1, 1]"]
k = torch.linspace(0, len(res.timesteps) - 1, min(8, len(res.timesteps))).round().long()
show(torch.cat([res.xs[k, 3], res.x0_preds[k, 3]]), rows=2, row_labels=["x_t", "x0_hat"],
     titles=[f"t={int(t)}" for t in res.timesteps[k]] + [""] * len(k))
print("xs", tuple(res.xs.shape), "x0_preds", tuple(res.x0_preds.shape), "timesteps", tuple(res.timesteps.shape))

# %% [markdown]
# ## 12. Learning the variance (Improved DDPM), as DiT and DiffuSSM train it
#
# Section 7 fixed the reverse variance to $\tilde\beta_t$ or $\beta_t$. Nichol & Dhariwal (2021) let the
# model choose, per pixel, between the two: with `learn_sigma` the denoiser outputs $2C$ channels, the
# prediction and a $\nu \in [-1, 1]$ that interpolates the log variance (Improved DDPM calls it $v$;
# here $v$ is already the v-prediction),
#
# $$\log\Sigma_\theta = f \log\beta_t + (1 - f)\log\tilde\beta_t, \qquad f = (\nu + 1)/2 .$$
#
# The simple loss cannot train $\nu$ (it never looks at it). The **hybrid objective** adds the
# variational bound with a small weight, $L = L_\text{simple} + \lambda L_\text{vlb}$, $\lambda = 0.001$,
# $L_\text{vlb} = \sum_t L_t = T\,\mathbb E_t[L_t]$ with
#
# $$L_t = D_\text{KL}\big(q(x_{t-1} \mid x_t, x_0)\,\|\,p_\theta(x_{t-1} \mid x_t)\big) \ (t \ge 1), \qquad
# L_0 = -\log p_\theta(x_0 \mid x_1) \text{ (a Gaussian discretised to 256 levels)},$$
#
# in bits per dimension, and a **stop-gradient on the mean**: $L_t$ sees the predicted $\hat x_0$ only as
# a constant, so the bound trains the variance and the simple loss alone trains the mean. DiT (and
# DiffuSSM, which follows its recipe) trains this way; with $T = 1000$, $\lambda T = 1$. Both
# distributions are Gaussians with diagonal covariance, so $L_t$ is a sum of one-dimensional KLs. By
# hand against `diffussm_lib.diffusion.vlb_terms`:

# %%
from diffussm_lib.diffusion import learned_log_variance, vlb_terms

x0_ = torch.rand(2, 1, 4, 4, generator=gen) * 2 - 1
xt_ = torch.randn(2, 1, 4, 4, generator=gen)
x0_hat, nu = torch.rand(2, 1, 4, 4, generator=gen) * 2 - 1, torch.rand(2, 1, 4, 4, generator=gen) * 2 - 1
t_ = torch.tensor([10, 600])
ours = []
for i, t in enumerate(t_.tolist()):
    q_mean, q_var = sched.q_posterior(x0_[i:i + 1], xt_[i:i + 1], t)          # the truth: N(q_mean, beta_tilde)
    p_mean, _ = sched.q_posterior(x0_hat[i:i + 1], xt_[i:i + 1], t)           # the model's mean, from x0_hat
    f = (nu[i] + 1) / 2
    p_logvar = f * sched.betas[t].log() + (1 - f) * sched.posterior_variance[t].log()
    kl = 0.5 * (p_logvar - math.log(q_var) + (q_var + (q_mean - p_mean) ** 2) / p_logvar.exp() - 1)
    ours.append(kl.mean() / math.log(2))                                       # nats -> bits, mean over pixels
lib = vlb_terms(sched, x0_, xt_, t_, x0_hat, nu)
assert torch.allclose(torch.stack(ours).float(), lib.float(), rtol=1e-4)
print("L_t in bits/dim, by hand:", [round(float(k), 4) for k in ours], "| library:", lib.numpy().round(4))
print("the exact mean with the posterior variance (nu = -1) costs nothing:",
      float(vlb_terms(sched, x0_, xt_, t_, x0_, torch.full_like(nu, -1.0)).abs().max()))

# %% [markdown]
# Does it pay on MNIST? `benchmarks/bench_variance.py` trains the same small DiffuSSM (width 64) twice
# for the same number of steps, once with the fixed variance and the simple loss, once with
# `learn_sigma` and the hybrid loss, then samples both with DDPM at 25 and 100 steps and measures
# FID-LeNet at the same N (notebook 07 builds the metric). It takes about 45 minutes on 2 cores, so
# this notebook reads its stored result; set `RECOMPUTE_VARIANCE = True` to run it again here.

# %%
import json
import subprocess
import sys
from pathlib import Path

import diffussm_lib

RECOMPUTE_VARIANCE = False     # True: run the comparison again (about 45 min on 2 CPU cores)
ROOT = Path(diffussm_lib.__file__).resolve().parents[1]        # the course folder (clone or Colab)
stored = ROOT / "benchmarks" / "results" / "learned_variance.json"
if RECOMPUTE_VARIANCE:
    out = ROOT / "runs" / "learned_variance_nb04.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_variance.py"), "--out", str(out),
                    "--runs", str(ROOT / "runs" / "variance_nb04"), "--resume"], check=True)
    stored = out
if stored.exists():
    result = json.loads(stored.read_text())
    print(f"{result['steps']} training steps per model, width {result['hidden_dim']}, N = {result['num_samples']}, "
          f"{result['hardware']}")
    for name, m in result["models"].items():
        print(f"  {name}: {m['steps']} steps, {m['train_seconds'] / 60:.1f} min, final loss {m['final_loss']:.4f}")
    print(f"\n{'model':<32} {'DDPM steps':>10} {'variance':>14} {'FID-LeNet':>10} {'floor':>7} {'class acc':>9}")
    for r in result["evaluations"]:
        print(f"{r['model']:<32} {r['sample_steps']:>10} {r['variance']:>14} {r['fid']:>10.2f} {r['floor']:>7.2f} "
              f"{100 * r['class_accuracy']:>8.1f}%")
else:
    print(f"no stored result at {stored}: set RECOMPUTE_VARIANCE = True to measure it")
# %% [markdown]
# ## Summary
#
# | piece | library | checked here against |
# |---|---|---|
# | schedules, $\bar\alpha$, SNR, posterior | `NoiseSchedule.linear / .cosine / .from_config` | formulas; Bayes on a grid |
# | forward process | `NoiseSchedule.q_sample`, `q_step` | mean/variance recursion; Monte Carlo |
# | loss (eps or v target) | `diffusion_loss`, `x0_from_eps`, `eps_from_v`, ... | the loss by hand |
# | DDPM | `ddpm_step`, `ddpm_sample` | the classic step and loop by hand |
# | DDIM ($\eta$, any number of steps) | `ddim_step`, `ddim_sample` | the step by hand; oracle lands on $x_0$; $\eta = 1$ = DDPM |
# | guidance | `guided_eps`, `drop_labels` | two separate forwards; $w = 0, 1$ |
# | clipping | `clip_x0=True`, `dynamic_threshold=p` | Imagen's rule by hand |
# | learned variance, hybrid loss | `vlb_terms`, `diffusion_loss` with 2C channels | the KL of two Gaussians by hand |
#
# The unit tests additionally compare the schedules and single DDPM / DDIM steps with the
# independent `diffusers` implementation. Every sampler accepts any `model(x, t, y)`, is
# deterministic given a `torch.Generator`, and can return its whole trajectory.
#
# **Next:** notebook 05 replaces the stand-in by the real DiffuSSM backbone and trains it properly;
# notebook 06 explores the sampler trajectories interactively.

# %%
print(f"notebook ran in {time.perf_counter() - NOTEBOOK_START:.0f} s")

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
#
# *Outputs shown: executed in full mode on 2026-12-03, CPU AMD EPYC, 2 torch threads, in 2.7 min.*

# %%
# Setup (the same in every notebook). In a clone the library is one folder up; in Colab this cell
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
                                    guided_output, spaced_step_times, v_from_x0_eps, x0_from_eps, x0_from_v)

gen = seed_everything(0)
torch.set_num_threads(by_mode(full=torch.get_num_threads(), fast=1))  # CI shares 2 cores: no OpenMP contention
NOTEBOOK_START = time.perf_counter()


def show(images, titles=None, rows=1, row_labels=None, size=1.1, suptitle=None):
    """Plot images (B, 1, H, W) in [-1, 1] as a grid with `rows` rows."""
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
#
# The course's main models train on the 28x28 digits themselves (`data.pad_to: null` in
# `configs/mnist_diffussm.yaml`, notebook 00; the laptop recipe of notebook 05 pads to 32x32 for its
# 4x4 patches). This notebook uses two networks. The samplers (sections 7-11) run on the course's
# **pretrained DiffuSSM**, which works on 28x28 digits and samples in seconds on a CPU, so that every
# sampler picture shows what the sampler does to a good model. Section 6 also trains a small stand-in
# denoiser for a minute, to see the loss of section 5 at work; it keeps the loader's default 32x32
# padding, which suits its two 2x downsamplings (32 -> 16 -> 8), and nothing in the schedules, the
# loss or the samplers depends on the image size.

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
# all 1000 steps. Then *sample*: start many chains at the same digit, apply `q_step` `FWD_STEPS` times
# (300; fast mode 100), and compare each pixel's empirical mean and variance with $\sqrt{\bar\alpha}\,x_0$
# and $1 - \bar\alpha$, in units of their standard errors.

# %%
m, v, worst = 1.0, 0.0, 0.0
for t in range(T):
    m, v = math.sqrt(alphas[t]) * m, alphas[t].item() * v + betas[t].item()
    worst = max(worst, abs(m - alpha_bar[t].sqrt().item()), abs(v - (1 - alpha_bar[t]).item()))
print(f"mean/variance recursion vs closed form, all t: max difference {worst:.1e}")
assert worst < 1e-12

NUM_CHAINS, FWD_STEPS = by_mode(full=500, fast=150), by_mode(full=300, fast=100)
digit = x_data[0:1].double()                                            # (1, 1, 32, 32)
chains = digit.expand(NUM_CHAINS, -1, -1, -1).clone()
for t in range(FWD_STEPS):
    chains = q_step_by_hand(chains, t, torch.randn(chains.shape, generator=gen, dtype=torch.float64))
direct = linear.q_sample(digit.expand(NUM_CHAINS, -1, -1, -1), FWD_STEPS - 1,
                         torch.randn(chains.shape, generator=gen, dtype=torch.float64))
mean_true, var_true = alpha_bar[FWD_STEPS - 1].sqrt() * digit[0], (1 - alpha_bar[FWD_STEPS - 1]).item()
print(f"{NUM_CHAINS} chains, {FWD_STEPS} forward steps")
for name, samples in (("iterated q(x_t|x_{t-1})", chains), ("closed-form q(x_t|x_0)", direct)):
    z_mean = (samples.mean(0) - mean_true) / math.sqrt(var_true / NUM_CHAINS)
    z_var = (samples.var(0) - var_true) / (var_true * math.sqrt(2 / NUM_CHAINS))
    print(f"{name:>24}: max |z| over 1024 pixels: mean {z_mean.abs().max():.2f}, variance {z_var.abs().max():.2f}")
    assert z_mean.abs().max() < 5.5 and z_var.abs().max() < 5.5   # ~4 is typical for the max of 1024 normals

# %% [markdown]
# Both agree with the formula to within sampling error: the largest of 1024 independent standard
# normal deviations is typically between 3 and 4.5 (the variance's z-scores have a slightly heavier
# tail, since a sample variance is skewed), and the assert allows 5.5.
#
# ## 3. Two schedules: linear and cosine
#
# The linear schedule destroys information quickly: $\bar\alpha_t$ is almost 0 well before
# $t = T$, so the last few hundred steps are spent on nearly pure noise (measured below).
# Nichol & Dhariwal (2021) instead pick $\bar\alpha$ directly, as a function of the fraction
# $u \in [0, 1]$ of the way through the process:
#
# $$f(u) = \cos^2\!\Big(\frac{u + s}{1 + s}\cdot\frac{\pi}{2}\Big),\ s = 0.008,\qquad
# \bar\alpha \text{ after } k \text{ noising steps} = \frac{f(k/T)}{f(0)},$$
#
# and recover each step's $\beta = 1 - \bar\alpha_\text{after} / \bar\alpha_\text{before}$, clipped at
# 0.999. With our index convention (index $t$ has been noised $t + 1$ times) that reads
#
# $$\bar\alpha_t = \frac{f\big((t+1)/T\big)}{f(0)},\qquad \beta_t = 1 - \frac{f\big((t+1)/T\big)}{f(t/T)},\qquad t = 0, \dots, T-1,$$
#
# the convention of `NoiseSchedule.cosine`. The clip bites only at the last index, $t = T-1$, where
# $f(1) = 0$ would make $\beta = 1$ (checked below). The course's default (`DiffusionConfig`) is the
# cosine schedule.

# %%
s_off = 0.008


def f(u):
    """Improved DDPM's f(u), u in [0, 1] (a float64 tensor) -> same shape."""
    return torch.cos((u + s_off) / (1 + s_off) * math.pi / 2) ** 2


idx = torch.arange(T, dtype=torch.float64)                            # the indices t = 0 .. T-1
beta_raw = 1 - f((idx + 1) / T) / f(idx / T)                           # before clipping
betas_cos = beta_raw.clamp(max=0.999)
cosine = NoiseSchedule.cosine(T)
assert torch.allclose(cosine.betas, betas_cos, rtol=1e-12, atol=0)
abar_formula = f((idx + 1) / T) / f(torch.zeros(1, dtype=torch.float64))
rel = ((cosine.alpha_bar[:-1] - abar_formula[:-1]) / abar_formula[:-1]).abs().max().item()
assert rel < 1e-10                                                     # the formula, except the clipped last step
clipped = (beta_raw > 0.999).nonzero().flatten().tolist()
assert clipped == [T - 1]
print(f"alpha_bar[t] = f((t+1)/T) / f(0): largest relative difference to the library for t < T-1: {rel:.1e}; "
      f"beta clipped at index {clipped} only (unclipped beta there: {beta_raw[-1].item():.6f})")
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
# Where each schedule spends its steps, in numbers: the SNR at a few timesteps, the first index at
# which the SNR falls below $10^{-2}$ (the signal's variance is then 1% of the noise's), and how many
# steps have an SNR between $10^{-2}$ and $10^{2}$, where the image is neither clean nor gone:

# %%
for s_ in (linear, cosine):
    snr = s_.snr
    below = int((snr < 1e-2).nonzero()[0])
    middle = int(((snr >= 1e-2) & (snr <= 1e2)).sum())
    print(f"{s_.name:>6}: SNR at t = 300 / 600 / 900: {snr[300].item():.3f} / {snr[600].item():.3f} / "
          f"{snr[900].item():.4f} | SNR < 1e-2 from t = {below} on ({T - below} of the {T} steps) | "
          f"{middle} steps with 1e-2 <= SNR <= 1e2")
assert 0.02 < linear.snr[600].item() < 0.03 and int((linear.snr < 1e-2).nonzero()[0]) == 674
assert int((cosine.snr < 1e-2).nonzero()[0]) == 936

# %% [markdown]
# The linear schedule's SNR is already 0.026 at $t = 600$ and below $10^{-2}$ from $t = 674$ on
# (printed above): its last 326 steps see almost pure noise. The cosine schedule's SNR is still 0.514
# at $t = 600$ and drops below $10^{-2}$ only at $t = 936$; 880 of its steps lie between SNR
# $10^{-2}$ and $10^{2}$, against 647 for the linear schedule.
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
# (written $\mathcal L$, since $L$ is the SSM's sequence length in this course)
# $\mathcal L_{t-1} = \mathrm{KL}\big(q(x_{t-1} \mid x_t, x_0)\,\|\,p_\theta(x_{t-1} \mid x_t)\big)
# = \frac{1}{2\sigma_t^2}\lVert\tilde\mu_t - \mu_\theta\rVert^2 + \text{const}$.
# Substitute $x_0 = (x_t - \sqrt{1 - \bar\alpha_t}\,\epsilon)/\sqrt{\bar\alpha_t}$ into $\tilde\mu_t$:
#
# $$\tilde\mu_t = \frac{1}{\sqrt{\alpha_t}}\Big(x_t - \frac{\beta_t}{\sqrt{1 - \bar\alpha_t}}\,\epsilon\Big),$$
#
# so a network that predicts the **noise** $\epsilon_\theta(x_t, t)$ and sets
# $\mu_\theta = \frac{1}{\sqrt{\alpha_t}}\big(x_t - \frac{\beta_t}{\sqrt{1 - \bar\alpha_t}}\epsilon_\theta\big)$ gives
#
# $$\mathcal L_{t-1} = \underbrace{\frac{\beta_t^2}{2\sigma_t^2\,\alpha_t\,(1 - \bar\alpha_t)}}_{\lambda_t}\ \lVert \epsilon - \epsilon_\theta(x_t, t) \rVert^2 .$$
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
# $\mathcal L_\text{simple} = \mathbb E_{t, x_0, \epsilon}\lVert\epsilon - \epsilon_\theta(x_t, t)\rVert^2$ with
# $t$ uniform. Three reasons this is sound:
#
# 1. **Same optimum.** Each term is minimised, for every $(x_t, t)$ separately, by the same function,
#    the posterior mean $\mathbb E[\epsilon \mid x_t]$; positive weights per $t$ change how the network
#    spends its capacity, not what a perfect network would output.
# 2. **It is denoising score matching.** $\mathbb E[\epsilon \mid x_t] = -\sqrt{1-\bar\alpha_t}\,\nabla_{x_t}\log q(x_t)$
#    (Tweedie), so $\epsilon_\theta$ learns the score of every noise level; the samplers below only need that.
# 3. **Better weighting for samples.** $\lambda_t$ (plotted below with $\sigma_t^2 = \tilde\beta_t$) is
#    one to two hundred times larger at $t = 1$ than in the middle of the range (printed below), where
#    the task is removing imperceptible noise; the uniform weights move the effort to the
#    intermediate noise levels that decide the digit's shape, which gives better samples (at some
#    cost in likelihood). (The cosine schedule's $\lambda_t$ also climbs again over its last few
#    steps, where $\beta_t$ approaches the 0.999 clip: steps of almost pure noise.)

# %%
lam = cosine.betas ** 2 / (2 * cosine.posterior_variance * cosine.alphas * (1 - cosine.alpha_bar))
lam_lin = linear.betas ** 2 / (2 * linear.posterior_variance * linear.alphas * (1 - linear.alpha_bar))
plt.figure(figsize=(5, 3))
plt.plot(ts[1:], lam_lin[1:], label="linear")
plt.plot(ts[1:], lam[1:], "--", label="cosine")
plt.axhline(1.0, color="gray", lw=0.8)
plt.yscale("log"); plt.xlabel("t"); plt.title(r"VLB weight $\lambda_t$ (simple loss: 1)"); plt.legend()
plt.tight_layout(); plt.show()
for name_, l_ in (("linear", lam_lin), ("cosine", lam)):
    print(f"{name_:>6}: lambda_t at t = 1 / 10 / 500 / 990 / 998: "
          + " / ".join(f"{l_[t].item():.3g}" for t in (1, 10, 500, 990, 998))
          + f"; lambda_1 / lambda_500 = {(l_[1] / l_[500]).item():.0f}")

# %% [markdown]
# **v-prediction.** Instead of $\epsilon$ the network can predict the "velocity"
# $v = \sqrt{\bar\alpha_t}\,\epsilon - \sqrt{1 - \bar\alpha_t}\,x_0$ (Salimans & Ho 2022). Writing
# $a = \sqrt{\bar\alpha_t}$, $b = \sqrt{1-\bar\alpha_t}$ ($a^2 + b^2 = 1$), $(x_t, v)$ is $(x_0, \epsilon)$
# rotated by an angle, so everything converts linearly:
# $x_0 = a\,x_t - b\,v$ and $\epsilon = b\,x_t + a\,v$. The benefit is at high noise: from an
# $\epsilon$ prediction, $x_0 = (x_t - b\,\epsilon)/a$ multiplies any error in $\epsilon$ by $b/a$,
# which grows without bound as $\bar\alpha_t \to 0$. On the cosine schedule it is about 640 at
# $t = 998$ and about $2 \cdot 10^4$ at the last step, $t = 999$ (both printed below): the jump of about
# 32x in that one step is the clipped $\beta_{999} = 0.999$ of section 3, which divides $\bar\alpha$ by
# 1,000 and so $a$ by $\sqrt{1000} \approx 32$. An error in $v$ reaches $x_0$ multiplied by $b \le 1$.

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
amp = (cosine.sqrt_one_minus_alpha_bar / cosine.sqrt_alpha_bar).double()
print(f"b/a at t = {T - 2}: {amp[-2].item():.3g}; at the last cosine step (t = {T - 1}, beta clipped to "
      f"{cosine.betas[-1].item():.3f}): {amp[-1].item():.3g}, {(amp[-1] / amp[-2]).item():.0f}x in one step; "
      f"b there = {cosine.sqrt_one_minus_alpha_bar[-1].item():.6f}")

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
# We train it with **v-prediction**, the target the course's DiffuSSM config also uses (notebook 05
# gives the reason); the samplers convert either prediction to $x_0$ and $\epsilon$, so nothing else
# changes. Labels are dropped to the null class 10% of the time (`drop_labels`), which is what makes
# guidance possible later. Full mode trains for 60 seconds
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
    """STAND-IN for the samplers of notebook 04 (not DiffuSSM): a two-level conv net (size printed below).

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
# The loss goes down, but a minute on a CPU does not make a good digit model. So the samplers of
# sections 7-11 run on the course's **pretrained DiffuSSM** (`checkpoints/mnist_diffussm/`: notebook
# 05 trains this model, notebook 07 measures it), and the stand-in appears once more in section 7,
# for comparison. The pretrained model uses the same cosine schedule with $T = 1000$, the same $v$
# target, the same null class 10 and the same interface `model(x, t, y)`; its images are 28x28.
# Loading reads a safetensors file and its config; no code from the file runs. In a partial copy
# of the course without the checkpoint, the cells below fall back to the stand-in.

# %%
from pathlib import Path

import diffussm_lib
from diffussm_lib.training import WEIGHTS_NAME, load_model

ROOT = Path(diffussm_lib.__file__).resolve().parents[1]        # the course folder (clone or Colab)
PRETRAINED = ROOT / "checkpoints" / "mnist_diffussm"
if (PRETRAINED / WEIGHTS_NAME).is_file():
    net, net_cfg, ckpt = load_model(PRETRAINED, which="ema")
    assert torch.allclose(NoiseSchedule.from_config(net_cfg.diffusion).alpha_bar, sched.alpha_bar)  # same schedule
    assert net_cfg.diffusion.prediction == PREDICTION and net.null_class == NULL_CLASS
    IMG = net_cfg.model.image_size
    print(f"pretrained DiffuSSM from {PRETRAINED.relative_to(ROOT)} (EMA weights, step {ckpt.step}): "
          f"{sum(p.numel() for p in net.parameters()) / 1e6:.2f} M parameters, {IMG}x{IMG} images")
else:
    net, IMG = model, 32
    print(f"no checkpoint at {PRETRAINED}: sections 7-11 run on the one-minute stand-in")

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
# training: if the "data" were Gaussian, $x_0 \sim \mathcal N(0, \sigma_\text{data}^2 I)$, the best noise
# prediction is known in closed form,
# $\mathbb E[\epsilon \mid x_t] = \sqrt{1-\bar\alpha_t}\,x_t / (\bar\alpha_t \sigma_\text{data}^2 + 1 - \bar\alpha_t)$,
# and the sampler must turn pure noise into samples of standard deviation $\sigma_\text{data}$:

# %%
def ddpm_sample_by_hand(model, shape, y, generator):
    x = torch.randn(shape, generator=generator)
    for t in range(T - 1, -1, -1):
        eps_hat = model(x, torch.full((shape[0],), t), y)
        z = torch.randn(shape, generator=generator) if t > 0 else None
        x = ddpm_step_by_hand(eps_hat, t, x, z)
    return x


def cheap(x, t, y, std=0.5):
    """The exact denoiser E[eps | x_t] when the data are pure Gaussian noise N(0, std^2): no training needed."""
    a2 = sched.alpha_bar[t].float().view(-1, 1, 1, 1)
    return (1 - a2).sqrt() * x / (a2 * std ** 2 + 1 - a2)


by_hand = ddpm_sample_by_hand(cheap, (16, 1, 8, 8), None, torch.Generator().manual_seed(1))
library = ddpm_sample(cheap, sched, (16, 1, 8, 8), generator=torch.Generator().manual_seed(1))
assert torch.allclose(by_hand, library, atol=1e-4)
print(f"samples of N(0, 0.5^2) data have std {library.std():.3f}")   # the sampler recovers the data distribution
assert abs(library.std().item() - 0.5) < 0.05

# %% [markdown]
# Now with real networks, one sample per class: first the pretrained DiffuSSM, then the one-minute
# stand-in of section 6 with the same sampler. DDPM uses all $T = 1000$ steps (fast mode: a respaced
# subset of 10, see section 8, too few for clean digits). Expect digits from the first and rough
# strokes from the second (in fast mode, where the stand-in trained for 4 steps, noise).

# %%
labels = torch.arange(10)
DDPM_STEPS = by_mode(full=None, fast=10)       # None = all T steps
for name, denoiser, size in (("pretrained DiffuSSM", net, IMG), ("stand-in, one minute", model, 32)):
    t0 = time.perf_counter()
    images = ddpm_sample(denoiser, sched, (10, 1, size, size), labels, prediction=PREDICTION, steps=DDPM_STEPS,
                         clip_x0=True, generator=torch.Generator().manual_seed(0))
    print(f"{name}: DDPM, {DDPM_STEPS or T} steps, 10 images in {time.perf_counter() - t0:.1f} s")
    show(images, titles=[str(int(c)) for c in labels], suptitle=name)

# %% [markdown]
# ## 8. DDIM: the same model, fewer steps
#
# The loss of section 5 only ever sees the **marginals** $q(x_t \mid x_0)$; it never looks at how
# $x_{t-1}$ and $x_t$ are jointly distributed. Song, Meng & Ermon (2020) exploit this: there is a whole
# family of (non-Markovian) forward processes with exactly these marginals, indexed by $\sigma_t$,
# whose reverse step from $t$ to any earlier $s$ is
#
# $$x_s = \sqrt{\bar\alpha_s}\,\hat x_0 + \sqrt{1 - \bar\alpha_s - \sigma^2}\;\hat\epsilon + \sigma z,
# \qquad \sigma = \eta\,\sqrt{\frac{1 - \bar\alpha_s}{1 - \bar\alpha_t}\Big(1 - \frac{\bar\alpha_t}{\bar\alpha_s}\Big)} .$$
#
# Read it as: predict the clean image, then re-noise it to level $s$, reusing the predicted noise
# direction for the part of the variance that is not fresh. Because it only needs $\bar\alpha$ at
# the two levels, **any decreasing subsequence of timesteps works** ($S = 10$ sampling steps
# instead of $T = 1000$), with the same trained network. $\eta = 0$ is deterministic (an ODE-like
# map from $x_T$ to $x_0$); $\eta = 1$ is exactly the DDPM step with $\tilde\beta$ (for $s = t - 1$,
# and also for the respaced DDPM the library uses in fast mode).

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
# `spaced_step_times(T, S)` spreads the $S$ sampling steps evenly from $T-1$ down to 0, so the first
# model call sees the pure noise that $x_T$ is, and the last one the least-noised level. With the
# pretrained DiffuSSM and a fixed $x_T$, deterministic DDIM with more and more steps:

# %%
print("DDIM timesteps for S = 10:", spaced_step_times(T, 10).tolist())
step_counts = by_mode(full=[5, 10, 25, 100], fast=[2, 4])
x_T = torch.randn(10, 1, IMG, IMG, generator=torch.Generator().manual_seed(0))
rows, row_names = [], []
for S_ in step_counts:
    t0 = time.perf_counter()
    rows.append(ddim_sample(net, sched, None, labels, steps=S_, prediction=PREDICTION, clip_x0=True, x_T=x_T))
    row_names.append(f"{S_} steps\n{time.perf_counter() - t0:.1f} s")
show(torch.cat(rows), rows=len(rows), row_labels=row_names)
ref = rows[-1]                                    # the run with the most steps
between = (ref[:, None] - ref[None]).abs().mean((2, 3, 4))[~torch.eye(len(ref), dtype=torch.bool)].mean()
print(f"mean |pixel difference| to the {step_counts[-1]}-step images (same x_T): "
      + ", ".join(f"S = {S_}: {(r - ref).abs().mean().item():.3f}" for S_, r in zip(step_counts[:-1], rows[:-1]))
      + f" | between two different images of that row: {between.item():.3f}")

# %% [markdown]
# With a deterministic sampler the same $x_T$ maps to an image that changes only gradually with the
# number of steps: compare the printed distances to the images of the largest $S$ with the distance
# between two different images (the rows show the same digits, refined; fast mode's 2 and 4 steps
# are too few for digits, and its numbers mean little). DDIM's $\eta$ trades
# this determinism for the extra stochasticity of DDPM, which can correct a model's errors along
# the way.
#
# ## 9. Classifier-free guidance
#
# Because 10% of training labels were replaced by the null class, the one network knows both
# $\epsilon_\theta(x_t, t, y)$ and $\epsilon_\theta(x_t, t, \varnothing)$. Guidance with scale $w$
# extrapolates from the unconditional towards the conditional prediction (Ho & Salimans 2022):
#
# $$\hat\epsilon = \epsilon_\theta(x_t, t, \varnothing) + w\,\big(\epsilon_\theta(x_t, t, y) - \epsilon_\theta(x_t, t, \varnothing)\big).$$
#
# $w = 1$ is the plain conditional model, $w = 0$ the unconditional one, $w > 1$ exaggerates what
# distinguishes class $y$: sharper, more typical, less diverse samples. This is DiT's way of writing
# it, which the course follows. Ho & Salimans write the same rule as
# $(1 + w')\,\epsilon_\theta(x_t, t, y) - w'\,\epsilon_\theta(x_t, t, \varnothing)$, so that their
# $w' = 0$ is the conditional model: the course's $w$ is $1 + w'$ (their $w' = 1$ is our $w = 2$).
# (Since $v$, $\epsilon$ and $x_0$ are linear in each other at fixed $x_t$, guiding $v$ the same way
# is the same thing.) The library evaluates both predictions in **one batched forward pass** of size
# $2B$:

# %%
xt8, t8, y8 = torch.randn(4, 1, IMG, IMG, generator=gen), torch.tensor([900, 500, 100, 10]), torch.tensor([3, 1, 4, 1])
with torch.no_grad():
    cond, uncond = net(xt8, t8, y8), net(xt8, t8, torch.full_like(y8, NULL_CLASS))
    for w in (0.0, 1.0, 2.5):
        assert torch.allclose(guided_output(net, xt8, t8, y8, w, NULL_CLASS), uncond + w * (cond - uncond), atol=1e-4)
    assert torch.equal(guided_output(net, xt8, t8, y8, 0.0, NULL_CLASS), uncond)   # w = 0: unconditional
    assert torch.equal(guided_output(net, xt8, t8, y8, 1.0, NULL_CLASS), cond)     # w = 1: conditional

# %%
SAMPLE_STEPS = by_mode(full=50, fast=4)
guidances = [0.0, 1.0, 3.0, 6.0]
rows = [ddim_sample(net, sched, None, labels, steps=SAMPLE_STEPS, guidance=w, prediction=PREDICTION,
                    clip_x0=True, x_T=x_T) for w in guidances]
show(torch.cat(rows), rows=len(rows), row_labels=[f"w = {w:g}" for w in guidances],
     suptitle=f"DDIM {SAMPLE_STEPS} steps, same x_T, classes 0-9")

# %% [markdown]
# Row $w = 0$ ignores the label; a larger $w$ pushes each sample towards its class (in fast mode, with
# 4 sampling steps, there is little to see). Guidance
# doubles the batch of each model call ($2B$ images), so roughly doubles the cost of a step.
#
# ## 10. Keeping $\hat x_0$ in range: clipping and dynamic thresholding
#
# At high noise, $\hat x_0 = (x_t - \sqrt{1-\bar\alpha_t}\,\hat\epsilon)/\sqrt{\bar\alpha_t}$ (or
# its v form) can land far outside the data range $[-1, 1]$, and large guidance scales push it
# further. Since the data lives in $[-1, 1]$, the samplers can constrain $\hat x_0$ before using it:
#
# * **static clipping**: clamp $\hat x_0$ to $[-1, 1]$ (DDPM's code did this);
# * **dynamic thresholding** (Imagen, Saharia et al. 2022): per image, let $s$ be the 99.5th
#   percentile of $|\hat x_0|$ (the quantile 0.995, the library's `dynamic_threshold=0.995`), floored
#   at 1; clamp to $[-s, s]$ and divide by $s$. Saturated pixels are pulled inwards instead of piling
#   up at $\pm 1$.
#
# In DDIM, after clipping, $\hat\epsilon$ is recomputed from the clipped $\hat x_0$ so that
# $(\hat x_0, \hat\epsilon)$ stay consistent with $x_t$. By hand, and against the library:

# %%
def dynamic_threshold_by_hand(x0_hat, quantile=0.995):
    """x0_hat (B, C, H, W) -> same shape, each image rescaled by its own s >= 1."""
    s = torch.quantile(x0_hat.flatten(1).abs(), quantile, dim=1).clamp(min=1.0).view(-1, 1, 1, 1)
    return torch.maximum(torch.minimum(x0_hat, s), -s) / s


wide = 3 * torch.randn(4, 1, 32, 32, generator=gen)
assert torch.allclose(dynamic_threshold_by_hand(wide), dynamic_threshold(wide, 0.995))
assert torch.equal(dynamic_threshold(x_data[:4], 0.995), x_data[:4])      # already in range: untouched

# %% [markdown]
# With a large guidance scale we sample three times from the same $x_T$: without a constraint,
# with clipping and with dynamic thresholding. The trajectory of the unconstrained run
# (`return_trajectory=True` records every $x_t$ and $\hat x_0$) shows how far $\hat x_0$ leaves
# the data range. The pretrained DiffuSSM predicts $v$, for which $\hat x_0 = a\,x_t - b\,v$ has no $1/a$: an
# error in $v$ reaches $\hat x_0$ multiplied by $b \le 1$. It can still leave the range, and guidance
# pushes it further (the cell prints the largest $|\hat x_0|$ of the run); an $\epsilon$-predictor
# divides by $a = \sqrt{\bar\alpha_t}$ and can overshoot by orders of magnitude at high noise
# (section 5), which is where clipping matters most.
#
# A count of pixels outside $[-1, 1]$ would mislead here: the model's background sits a hair below
# $-1$ (the printed background level of the unconstrained run), so such a count flags about half of
# the pixels at every step (printed in brackets), most of them background just below $-1$. The cell reads the range instead through the 1%
# and 99% quantiles of $\hat x_0$ at each step, and counts only the pixels beyond a tolerance,
# $|\hat x_0| > 1.5$.

# %%
GUIDANCE_BIG = 6.0
options = {"no constraint": {}, "clip to [-1, 1]": {"clip_x0": True}, "dynamic threshold 0.995": {"dynamic_threshold": 0.995}}
results = {name: ddim_sample(net, sched, None, labels, steps=SAMPLE_STEPS, guidance=GUIDANCE_BIG,
                             prediction=PREDICTION, x_T=x_T, return_trajectory=True, **kw)
           for name, kw in options.items()}
raw = results["no constraint"]
x0_steps = raw.x0_preds.flatten(1)                  # (R, B*C*H*W): every pixel of the batch, per step
q01, q99 = torch.quantile(x0_steps, 0.01, dim=1), torch.quantile(x0_steps, 0.99, dim=1)
largest = x0_steps.abs().amax(1)
beyond = 100 * (x0_steps.abs() > 1.5).float().mean(1)       # % of pixels beyond the tolerance
outside = 100 * (x0_steps.abs() > 1).float().mean(1)        # % outside [-1, 1], however slightly
fig, axes = plt.subplots(1, 2, figsize=(10, 3))
axes[0].plot(raw.step_times, q99, label="99% quantile")
axes[0].plot(raw.step_times, q01, label="1% quantile")
axes[0].plot(raw.step_times, largest, "k:", label=r"max $|\hat x_0|$")
axes[0].axhspan(-1, 1, color="grey", alpha=0.15, lw=0)
axes[0].set(title=rf"$\hat x_0$ over the batch, w = {GUIDANCE_BIG:g} (grey: $[-1, 1]$)", xlabel="t (sampling runs right to left)")
axes[0].legend(fontsize=8)
axes[1].plot(raw.step_times, beyond)
axes[1].set(title=r"% of pixels with $|\hat x_0| > 1.5$", xlabel="t (sampling runs right to left)")
for ax in axes:
    ax.invert_xaxis()
plt.tight_layout(); plt.show()
show(torch.cat([r.images for r in results.values()]), rows=3, row_labels=["none", "clip", "dynamic"])
print(f"unconstrained run, x0_hat per step (w = {GUIDANCE_BIG:g}):")
for i in sorted({0, len(raw.step_times) // 4, len(raw.step_times) // 2, 3 * len(raw.step_times) // 4, len(raw.step_times) - 1}):
    print(f"  t = {int(raw.step_times[i]):3d}: 1% / 99% quantiles {q01[i]:+.2f} / {q99[i]:+.2f}, "
          f"max |x0_hat| {largest[i]:.2f}, {beyond[i]:.1f}% of pixels beyond 1.5 ({outside[i]:.0f}% outside [-1, 1])")
i_max = int(largest.argmax())
print(f"largest |x0_hat| of the run: {largest[i_max]:.2f} at t = {int(raw.step_times[i_max])}")
shown = {name: r.images.clamp(-1, 1) for name, r in results.items()}   # the images as drawn above
print("mean |pixel difference| to the unconstrained images, as drawn (clamped to [-1, 1]):",
      {name: round((img - shown["no constraint"]).abs().mean().item(), 3) for name, img in shown.items() if name != "no constraint"})
print("background (mean of the darkest 30% of pixels) of the final images:",
      {name: round(r.images.flatten(1).sort(1).values[:, :int(0.3 * r.images[0].numel())].mean().item(), 3)
       for name, r in results.items()})

# %% [markdown]
# What the printed numbers show, for this model and $w = 6$. At the first steps $\hat x_0$ leaves
# the range by a real margin (the 1% and 99% quantiles near $\pm 4$, a quarter of the pixels beyond
# 1.5, the largest value of the run): from almost pure noise, the guided prediction overshoots.
# Within the first few hundred of the 1,000 timesteps it is back in range, and for the rest of the
# run only the background hovers just below $-1$. So clipping acts mostly on the first steps, and
# the final images hardly change: the mean pixel difference between the unconstrained and the
# clipped images, as drawn, is a small fraction of the 2-unit pixel range, and the first two rows
# look nearly the same. Dynamic thresholding differs from both by about three times as much:
# it divides each $\hat x_0$ by its $s$, which (when $s > 1$) pulls *all* pixels inwards, and on
# MNIST, whose background really sits at $-1$, that lifts the background (the printed background
# levels; the data's is $-1$) and leaves speckle in it (third row). It was designed for natural
# images under very large guidance scales, where saturated colours are the failure it fixes. Both
# are options of every sampler (`clip_x0=True`, `dynamic_threshold=0.995`); the course samples with
# clipping.

# %% [markdown]
# ## 11. What a sampler run looks like from the inside
#
# `return_trajectory=True` returns a `SampleResult`: the final `images` (B, C, H, W), the
# `step_times` (R,), and for each of them the noisy input `xs` (R, B, C, H, W) and the prediction
# `x0_preds` (R, B, C, H, W) (float32 on the CPU). Notebook 06 turns these into an interactive
# denoising viewer; here is one sample, the noisy $x_t$ on top and $\hat x_0$ below:

# %%
res = results["clip to [-1, 1]"]
k = torch.linspace(0, len(res.step_times) - 1, min(8, len(res.step_times))).round().long()
show(torch.cat([res.xs[k, 3], res.x0_preds[k, 3]]), rows=2, row_labels=["x_t", "x0_hat"],
     titles=[f"t={int(t)}" for t in res.step_times[k]] + [""] * len(k))
print("xs", tuple(res.xs.shape), "x0_preds", tuple(res.x0_preds.shape), "timesteps", tuple(res.step_times.shape))

# %% [markdown]
# ## 12. Learning the variance (Improved DDPM), as DiT and DiffuSSM train it
#
# Section 7 fixed the reverse variance to $\tilde\beta_t$ or $\beta_t$. Nichol & Dhariwal (2021) let the
# model choose, per pixel, between the two: with `learn_sigma` the denoiser outputs $2C$ channels, the
# prediction and a $\nu \in [-1, 1]$ that interpolates the log variance (Improved DDPM calls it $v$;
# here $v$ is already the v-prediction),
#
# $$\log\Sigma_\theta = \phi \log\beta_t + (1 - \phi)\log\tilde\beta_t, \qquad \phi = (\nu + 1)/2 .$$
#
# The simple loss cannot train $\nu$ (it never looks at it). The **hybrid objective** adds the
# variational bound with a small weight, $\mathcal L = \mathcal L_\text{simple} + \lambda \mathcal L_\text{vlb}$,
# $\lambda = 0.001$, $\mathcal L_\text{vlb} = \sum_t \mathcal L_t = T\,\mathbb E_t[\mathcal L_t]$ with
#
# $$\mathcal L_t = \mathrm{KL}\big(q(x_{t-1} \mid x_t, x_0)\,\|\,p_\theta(x_{t-1} \mid x_t)\big) \ (t \ge 1), \qquad
# \mathcal L_0 = -\log p_\theta(x_0 \mid x_1) \text{ (a Gaussian discretised to 256 levels)},$$
#
# in bits per dimension, and a **stop-gradient on the mean**: $\mathcal L_t$ sees the predicted $\hat x_0$ only as
# a constant, so the bound trains the variance and the simple loss alone trains the mean. DiT (and
# DiffuSSM, which follows its recipe) trains this way; with $T = 1000$, $\lambda T = 1$. Both
# distributions are Gaussians with diagonal covariance, so $\mathcal L_t$ is a sum of one-dimensional KLs. By
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
    phi = (nu[i] + 1) / 2
    p_logvar = phi * sched.betas[t].log() + (1 - phi) * sched.posterior_variance[t].log()
    kl = 0.5 * (p_logvar - math.log(q_var) + (q_var + (q_mean - p_mean) ** 2) / p_logvar.exp() - 1)
    ours.append(kl.mean() / math.log(2))                                       # nats -> bits, mean over pixels
lib = vlb_terms(sched, x0_, xt_, t_, x0_hat, nu)
assert torch.allclose(torch.stack(ours).float(), lib.float(), rtol=1e-4)
print("KL terms in bits/dim, by hand:", [round(float(k), 4) for k in ours], "| library:", lib.numpy().round(4))
print("the exact mean with the posterior variance (nu = -1) costs nothing:",
      float(vlb_terms(sched, x0_, xt_, t_, x0_, torch.full_like(nu, -1.0)).abs().max()))

# %% [markdown]
# Does it pay on MNIST? `benchmarks/bench_variance.py` trains the same small DiffuSSM (width 64) twice
# for the same number of steps, once with the fixed variance and the simple loss, once with
# `learn_sigma` and the hybrid loss, then samples both with DDPM at 25 and 100 steps and measures
# FID-LeNet on the same number of samples (notebook 07 builds the metric). It takes the better part
# of an hour on a CPU (the stored run, printed below, used one torch thread and trained its two
# models for 18.7 and 30.9 minutes before sampling), so this notebook reads its stored result; set
# `RECOMPUTE_VARIANCE = True` to run it again here.

# %%
import json
import subprocess
import sys

RECOMPUTE_VARIANCE = False     # True: run the comparison again (about 45 min on 2 CPU cores)
stored = ROOT / "benchmarks" / "results" / "learned_variance.json"
if RECOMPUTE_VARIANCE:
    out = ROOT / "runs" / "learned_variance_nb04.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_variance.py"), "--out", str(out),
                    "--runs", str(ROOT / "runs" / "variance_nb04"), "--resume"], check=True)
    stored = out
def num(value, spec, scale=1.0):
    """Format a number of the report, or '-' where the (possibly partial) report has none."""
    return "-" if value is None else format(value if scale == 1.0 else scale * value, spec)


if stored.exists():
    result = json.loads(stored.read_text())
    print(f"{result.get('steps')} training steps per model, width {result.get('hidden_dim')}, "
          f"{num(result.get('num_samples'), ',')} samples per evaluation, {result.get('hardware')}")
    for name, m in result.get("models", {}).items():
        print(f"  {name}: {m.get('steps')} steps, {num(m.get('train_seconds'), '.1f', 1 / 60)} min, "
              f"final loss {num(m.get('final_loss'), '.4f')}")
    print(f"\n{'model':<32} {'DDPM steps':>10} {'variance':>14} {'FID-LeNet':>10} {'floor':>7} {'class acc':>9}")
    for r in result.get("evaluations", []):
        print(f"{r.get('model', '?'):<32} {r.get('sample_steps', '?'):>10} {r.get('variance', '?'):>14} "
              f"{num(r.get('fid'), '.2f'):>10} {num(r.get('floor'), '.2f'):>7} "
              f"{num(r.get('class_accuracy'), '.1f', 100):>8}%")
    rows = {(r.get("model", ""), r.get("sample_steps"), r.get("variance")): r for r in result.get("evaluations", [])}
    for S in sorted({k[1] for k in rows if k[1] is not None}):
        fixed = rows.get(("fixed variance (simple loss)", S, "fixed_small"))
        learned = rows.get(("learned variance (hybrid loss)", S, "learned_range"))
        if fixed and learned:
            better = "the learned variance" if learned["fid"] < fixed["fid"] else "the fixed variance"
            print(f"DDPM {S} steps: {better} gives the lower FID-LeNet "
                  f"({learned['fid']:.1f} learned vs {fixed['fid']:.1f} fixed, floor {fixed['floor']:.1f})")
else:
    print(f"no stored result at {stored}: set RECOMPUTE_VARIANCE = True to measure it")

# %% [markdown]
# The printed lines say which variance wins at this budget. Read them with their limits: one seed
# per model, a small model (width 64) trained for 2,000 steps, 1,000 samples; a few FID points are
# within the noise of such a run. The hybrid loss pays off in Improved DDPM mostly for *long* training
# and few sampling steps on large data; the course's shipped configs keep `learn_sigma: false` (the
# fixed variance) because this measurement gives no reason to change them.

# %% [markdown]
# ## Summary
#
# | piece | library | checked here against |
# |---|---|---|
# | schedules, $\bar\alpha$, SNR, posterior | `NoiseSchedule.linear / .cosine / .from_config` | formulas; Bayes on a grid |
# | forward process | `NoiseSchedule.q_sample`, `q_step` | mean/variance recursion; Monte Carlo |
# | loss (eps or v target) | `diffusion_loss`; `x0_from_eps`, `eps_from_v`, ... (`parameterization.py`) | the loss by hand |
# | DDPM | `ddpm_step`, `ddpm_sample` | the classic step and loop by hand |
# | DDIM ($\eta$, any number of steps) | `ddim_step`, `ddim_sample` | the step by hand; oracle lands on $x_0$; $\eta = 1$ = DDPM |
# | guidance | `guided_output`, `drop_labels` | two separate forwards; $w = 0, 1$ |
# | clipping | `clip_x0=True`, `dynamic_threshold=0.995` | Imagen's rule by hand |
# | learned variance, hybrid loss | `vlb_terms`, `diffusion_loss` with 2C channels | the KL of two Gaussians by hand |
#
# The unit tests additionally compare the schedules and single DDPM / DDIM steps with the
# independent `diffusers` implementation. Every sampler accepts any `model(x, t, y)`, is
# deterministic given a `torch.Generator`, and can return its whole trajectory.
#
# **Next:** notebook 05 replaces the stand-in by the real DiffuSSM backbone and trains it properly;
# notebook 06 explores the sampler trajectories interactively.

# %% [markdown]
# ## Exercises
#
# Solutions: `notebooks/solutions/04_diffusion_schedule_and_samplers_solutions.ipynb`.
#
# **Exercise 1.** *DDIM with $\eta = 1$ is the DDPM step.* Section 8 checked this with one call of
# each function; show *why*. Substitute $\hat\epsilon = (x_t - \sqrt{\bar\alpha_t}\,\hat x_0)/\sqrt{1 - \bar\alpha_t}$
# into the DDIM step, so that it reads $x_s = c_0\,\hat x_0 + c_1\,x_t + \sigma z$, and compute the three
# coefficients $c_0, c_1, \sigma$ for $\eta = 1$ for every pair $(t, s = t - 1)$ of the cosine schedule
# and for the pairs of a respaced run with $S = 50$ (`spaced_step_times(T, 50)`). Check that they
# equal the coefficients and standard deviation of the DDPM posterior step (with
# $\beta = 1 - \bar\alpha_t/\bar\alpha_s$). Then confirm with the library that `ddim_step(..., eta=1.0,
# noise=z)` and `ddpm_step(..., noise=z)` give the same $x_s$ for the same $z$.
# *Hint:* $\sigma^2$ for $\eta = 1$ simplifies to $\frac{1 - \bar\alpha_s}{1 - \bar\alpha_t}\,\beta$, which is $\tilde\beta$;
# vectorise over $t$ with the schedule's float64 arrays and `alpha_bar_prev`.
#
# **Exercise 2.** *$x_0$ from $v$.* From $x_t = a\,x_0 + b\,\epsilon$ and $v = a\,\epsilon - b\,x_0$
# ($a = \sqrt{\bar\alpha_t}$, $b = \sqrt{1 - \bar\alpha_t}$), derive $x_0$ and $\epsilon$ in terms of $x_t$ and
# $v$, and check your formulas against `x0_from_v` and `eps_from_v` at every $t$ of the cosine
# schedule. Then show that the v-loss is a reweighted $\epsilon$-loss: for an imperfect $\hat v$ with
# $\hat\epsilon$ = `eps_from_v(` $\hat v$ `)` and $\hat x_0$ = `x0_from_v(` $\hat v$ `)`, check numerically that
# $\lVert \epsilon - \hat\epsilon\rVert^2 = \bar\alpha_t \lVert v - \hat v\rVert^2$ and
# $\lVert x_0 - \hat x_0\rVert^2 = (1 - \bar\alpha_t) \lVert v - \hat v\rVert^2$.
# *Hint:* $a^2 + b^2 = 1$, so $(x_t, v)$ is $(x_0, \epsilon)$ rotated by the angle whose cosine is $a$;
# undo the rotation.
#
# **Exercise 3.** *Respacing, measured exactly.* On the Gaussian toy data of section 7
# ($\sigma_\text{data} = 0.5$, the exact denoiser `cheap`), sample 4,096 images of 8x8 with DDPM with all
# $S = 1000$ steps and with $S = 50$, 10 and 5 (`ddpm_sample(..., steps=S)`), and with DDIM ($\eta = 0$) at
# the same $S$; print the standard deviation of each set. Then predict those standard deviations
# without sampling: every step is linear in $x_t$ plus independent Gaussian noise, so the variance
# obeys a recursion you can run over the sampler's timesteps. Check the Monte Carlo values against
# your prediction. Which sampler loses accuracy first as $S$ shrinks, and in which direction?
# *Hint:* here $\hat x_0 = k_t\,x_t$ with $k_t = \sqrt{\bar\alpha_t}\,\sigma_\text{data}^2 / (\bar\alpha_t \sigma_\text{data}^2 + 1 - \bar\alpha_t)$;
# a DDPM step gives $\mathrm{Var}(x_s) = (c_0 k_t + c_1)^2\,\mathrm{Var}(x_t) + \sigma^2$, starting from
# $\mathrm{Var}(x_T) = 1$, and the last step (to $s = -1$) adds no noise.

# %% [markdown]
# ## Check your understanding
#
# 1. Training draws a random $t$ and forms $x_t$ in one line instead of running $t$ noising steps.
#    Which property of the forward process makes that possible, and would it survive a non-Gaussian
#    noise?
# 2. The network was trained with $T = 1000$ steps. Why can DDIM sample it in 25 steps without any
#    retraining, and what does $\eta$ trade?
# 3. What does classifier-free guidance with $w = 0$, $w = 1$ and $w = 3$ sample from, and why does it
#    need labels to be dropped during training?

# %% [markdown]
# ## References
#
# * J. Ho, A. Jain, P. Abbeel. *Denoising Diffusion Probabilistic Models.* NeurIPS 2020, arXiv 2006.11239
#   (forward process, posterior, simple loss, DDPM sampler).
# * A. Nichol, P. Dhariwal. *Improved Denoising Diffusion Probabilistic Models.* ICML 2021,
#   arXiv 2102.09672 (cosine schedule, learned variance and the hybrid loss).
# * J. Song, C. Meng, S. Ermon. *Denoising Diffusion Implicit Models.* 2020, arXiv 2010.02502 (ICLR 2021)
#   (DDIM, $\eta$, respacing).
# * J. Ho, T. Salimans. *Classifier-Free Diffusion Guidance.* 2022, arXiv 2207.12598.
# * T. Salimans, J. Ho. *Progressive Distillation for Fast Sampling of Diffusion Models.* ICLR 2022,
#   arXiv 2202.00512 (v-prediction).
# * C. Saharia et al. *Photorealistic Text-to-Image Diffusion Models with Deep Language Understanding*
#   (Imagen). 2022, arXiv 2205.11487 (dynamic thresholding).
# * W. Peebles, S. Xie. *Scalable Diffusion Models with Transformers* (DiT). 2022, arXiv 2212.09748
#   (the training recipe DiffuSSM follows: learned variance, hybrid loss).
# * J. N. Yan, J. Gu, A. M. Rush. *Diffusion Models Without Attention* (DiffuSSM). 2023, arXiv 2311.18257
#   (CVPR 2024).
# * M. Heusel et al. *GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash
#   Equilibrium.* NeurIPS 2017, arXiv 1706.08500 (FID, the measure behind FID-LeNet in section 12).

# %%
print(f"notebook ran in {time.perf_counter() - NOTEBOOK_START:.0f} s")

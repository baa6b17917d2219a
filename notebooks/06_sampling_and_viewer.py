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
# # 06 · Sampling and the denoising viewer
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/diffussm-course/diffussm-course/blob/main/notebooks/06_sampling_and_viewer.ipynb)
#
# Notebook 04 wrote the samplers; notebook 05 trained a DiffuSSM. Here we *use* the trained model:
# we sample digits, time the two samplers, and then look inside a sampling run with an interactive
# **denoising viewer** that shows, at every step, both the noisy sample and what the model thinks the
# clean digit will be.
#
# **Objectives.** By the end of this notebook you can
# 1. load the course's pretrained checkpoint (or a quick stand-in) and sample a grid of digits with DDPM and DDIM, and say what their timings mean;
# 2. record a sampler's trajectory (x_t and the predicted x_0 at each step) and check it against a hand-written loop;
# 3. use the denoising viewer: step through a run in t and noise level, see the guidance direction, change the sampler, steps, class, guidance scale and noise, play it as an animation (also without a kernel);
# 4. save the same frames as a GIF and a static strip for readers without widgets;
# 5. explain what classifier-free guidance does as its scale w goes from 0 to 6;
# 6. compare DDPM and DDIM trajectories started from the same noise;
# 7. derive DPM-Solver++(2M) from the probability-flow ODE, check each piece numerically, compare it with DDIM at equal cost, and read the measured quality-against-steps curve that chose the course's default sampler.
#
# *Outputs shown: executed in full mode on 2026-12-04, CPU Intel(R) Xeon(R) Processor, 2 torch threads, in 35 s.*

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
import math
import time
from dataclasses import replace
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

import diffussm_lib
from diffussm_lib.env import default_device, fast_mode
from diffussm_lib.diffusion import NoiseSchedule, ddim_step, guided_output, spaced_step_times
from diffussm_lib.sampling import generate, make_grid

T_START = time.perf_counter()
seed_everything(0)
torch.set_num_threads(by_mode(full=torch.get_num_threads(), fast=1))  # CI shares 2 cores: no OpenMP contention
ROOT = Path(diffussm_lib.__file__).resolve().parents[1]        # the course folder (clone or Colab)
OUT = ROOT / "outputs" / "06"                                   # GIFs and figures of this notebook
OUT.mkdir(parents=True, exist_ok=True)
PRETRAINED = ROOT / "checkpoints" / "mnist_diffussm"
device = default_device()


def show_grid(images, ncol, title=None, ax=None, scale=1.0):
    """Draw float images (B, C, H, W) in [-1, 1] as one grid."""
    grid = make_grid(images.cpu(), ncol=ncol)
    if ax is None:
        _, ax = plt.subplots(figsize=(scale * grid.shape[1] / 40, scale * grid.shape[0] / 40))
    ax.imshow(grid[..., 0], cmap="gray", vmin=0, vmax=255)
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=10)
    return ax

# %% [markdown]
# ## The model: the pretrained checkpoint, or a quick stand-in
#
# The course ships a DiffuSSM trained on MNIST by the `diffussm train` command of notebook 05: the
# model of `configs/mnist_diffussm.yaml` (1.41 M parameters) trained longer with
# `configs/mnist_diffussm_long.yaml` (7.5 minutes on one GPU), exported as `checkpoints/mnist_diffussm/`
# (a safetensors file plus its config: loading it never runs code from the file; its model card has
# the numbers of notebook 07). We load it when it is there.
# Fast mode (`DIFFUSSM_FAST=1`, which CI uses) only takes fewer images and
# sampling steps below; it uses the same checkpoint. When the checkpoint is not there (a partial
# copy of the course) we train the tiny config `configs/tiny.yaml` instead (a few seconds in fast
# mode, a minute or two otherwise), so that every cell below runs; its samples are blobs rather than
# digits, but the viewer, the timings and the comparisons work the same way. The next cell says
# which of the two you have.

# %%
from diffussm_lib.training import WEIGHTS_NAME, load_model

if (PRETRAINED / WEIGHTS_NAME).is_file():
    model, cfg, ckpt = load_model(PRETRAINED, which="ema", device=device)
    SOURCE = f"pretrained checkpoint {ckpt.path.relative_to(ROOT)} (step {ckpt.step})"
else:
    from diffussm_lib.config import load_config
    from diffussm_lib.data import ImageDataset, load_mnist
    from diffussm_lib.training import Trainer

    why = f"no checkpoint in {PRETRAINED.relative_to(ROOT)}"
    cfg = load_config(ROOT / "configs" / "tiny.yaml")
    cfg = replace(cfg, train=replace(cfg.train, max_steps=by_mode(full=500, fast=30), batch_size=32, lr=1e-3,
                                     warmup_steps=20, log_every=10**9, sample_every=0, checkpoint_every=0))
    images, labels = load_mnist("train")
    n_train = by_mode(full=60000, fast=4096)
    trainer = Trainer(cfg, None, dataset=ImageDataset(images[:n_train], labels[:n_train]), device=device,
                      progress=False, log=lambda msg: None)
    result = trainer.train()
    model = trainer.ema.module.eval()
    SOURCE = (f"a tiny stand-in, {cfg.name} trained here for {result.step} steps in {result.train_seconds:.0f} s "
              f"({why})")
schedule = NoiseSchedule.from_config(cfg.diffusion).to(device)
IMAGE, CHANNELS, PRED = cfg.model.image_size, cfg.model.in_channels, cfg.diffusion.prediction
T = schedule.T
print("model:", SOURCE)
print(f"{sum(p.numel() for p in model.parameters()):,} parameters | {IMAGE}x{IMAGE}x{CHANNELS} images | "
      f"T = {T} diffusion steps ({cfg.diffusion.schedule} schedule) | predicts {PRED} | null class {model.null_class}")

# %% [markdown]
# ## A grid of digits, with DDPM and with DDIM
#
# One column per class (labels 0, 1, ..., 9, 0, 1, ...). Both samplers start from the same seed and
# use guidance w = 2 (notebook 04 showed how guidance uses the null class that label dropout taught
# the model during training).
#
# * **DDPM** (ancestral) walks the reverse chain; it adds fresh noise at every step. With a
#   1000-step schedule it is usually *respaced* to fewer steps (the paper's ImageNet FIDs use 250
#   DDPM steps, and so does this cell; 40 in fast mode); every step costs one forward pass (a batch
#   of 2B with guidance, for w other than 0 and 1).
# * **DDIM** (eta = 0) is deterministic and tolerates far fewer steps: 25 here, the setting of the
#   course's stored evaluations (the README's tables, the model cards and notebook 07 name their
#   sampler; most used DDIM with 25 steps). The course's *default* sampling, what `generate`,
#   `diffussm sample / evaluate` and the viewer use when no sampler is named, is chosen at the end of
#   this notebook from a measured study.
#
# The cost of sampling is (number of steps) x (cost of one forward pass), so the ratio of the two
# timings should be close to the ratio of their step counts; the printed milliseconds per step show
# how far it is: on a CPU shared with other work, per-step times of the same forward pass vary by
# tens of percent from one run to the next.

# %%
NUM_GRID = by_mode(full=20, fast=10)
GUIDANCE = 2.0
DDPM_STEPS = by_mode(full=min(250, T), fast=min(40, T))
DDIM_STEPS = by_mode(full=25, fast=10)       # 25: the course's evaluation setting
grid_labels = torch.arange(NUM_GRID) % 10
timings, grids = {}, {}
for name, steps in (("ddpm", DDPM_STEPS), ("ddim", DDIM_STEPS)):
    t0 = time.perf_counter()
    grids[name] = generate(model, schedule, NUM_GRID, grid_labels, image_size=IMAGE, channels=CHANNELS, sampler=name,
                           steps=steps, guidance=GUIDANCE, seed=0, prediction=PRED, device=device)
    timings[name] = time.perf_counter() - t0
    print(f"{name.upper()}: {steps:4d} steps, {NUM_GRID} images in {timings[name]:6.2f} s "
          f"({1000 * timings[name] / steps:.1f} ms per step for the batch)")
print(f"DDPM / DDIM time: {timings['ddpm'] / timings['ddim']:.1f}x for {DDPM_STEPS / DDIM_STEPS:.1f}x the steps")

fig, axes = plt.subplots(1, 2, figsize=(12, 3))
for ax, name in zip(axes, ("ddpm", "ddim")):
    show_grid(grids[name], ncol=10, ax=ax, title=f"{name.upper()}, {DDPM_STEPS if name == 'ddpm' else DDIM_STEPS} steps, w = {GUIDANCE}")
plt.tight_layout(); plt.show()

# %% [markdown]
# ## Recording a trajectory
#
# To look inside a run we keep, at every step $t$, two pictures:
#
# * the sample $x_t$ the model is given (at the first step: pure noise $x_T$);
# * the model's **prediction of the clean image**,
#   $\hat x_0 = (x_t - \sqrt{1-\bar\alpha_t}\,\hat\epsilon)/\sqrt{\bar\alpha_t}$, which DDIM uses to
#   take its step (clipped to $[-1, 1]$). The pretrained model predicts v (the model cell
#   above printed its prediction type); $\hat x_0$ and $\hat\epsilon$ follow from v (notebook 04), and
#   `ddim_step` does that conversion.
#
# Here is that loop written out with the pieces of notebook 04, for DDIM:

# %%
n_demo, w_demo, S_demo = 4, 2.0, DDIM_STEPS
y_demo = torch.tensor([0, 3, 5, 8], device=device)
x_T = torch.randn((n_demo, CHANNELS, IMAGE, IMAGE), generator=torch.Generator(device).manual_seed(1), device=device)

xs, x0s = [], []
x = x_T
ts = spaced_step_times(T, S_demo).tolist()
with torch.no_grad():
    for t, t_prev in zip(ts, ts[1:] + [-1]):                           # the last step goes to the clean image
        tb = torch.full((n_demo,), t, dtype=torch.long, device=device)
        out = guided_output(model, x, tb, y_demo, w_demo, model.null_class)  # one pass on 2B images: v or eps (PRED)
        step = ddim_step(schedule, out, t, x, t_prev=t_prev, prediction=PRED, clip_x0=True)
        xs.append(x.cpu()); x0s.append(step.x0_pred.cpu())
        x = step.x_prev
print(f"{len(xs)} steps recorded; x_T: mean {xs[0].mean():+.3f}, std {xs[0].std():.3f} (pure noise: 0 and 1)")

# %% [markdown]
# The library does exactly this: `ddim_sample` in `diffussm_lib/diffusion/samplers.py` is this loop,
# and `ddim_step` the step, its lines numbered after the paper's equations (the samplers record the
# loop with `return_trajectory=True`). And
# `diffussm_lib.sampling.compute_frames` turns the record into **frames**: one per step, plus a last
# frame holding the final sample. The first frame is pure noise, the last is what the sampler
# returns. We check both against the loop above:

# %%
from diffussm_lib.sampling import compute_frames, denoising_viewer, render_frames, save_gif, strip_figure

frames = compute_frames(model, schedule, y_demo, x_T=x_T, sampler="ddim", steps=S_demo, guidance=w_demo,
                        prediction=PRED, clip_x0=True)
assert torch.allclose(frames.xs[:-1], torch.stack(xs), atol=1e-5)
assert torch.allclose(frames.x0_preds[:-1], torch.stack(x0s), atol=1e-5)
assert torch.allclose(frames.final, x.cpu(), atol=1e-5)
print(f"{len(frames)} frames: timesteps {frames.timesteps[:3].tolist()} ... {frames.timesteps[-3:].tolist()}"
      " (-1 = the final sample)")

# %% [markdown]
# ## The denoising viewer
#
# `denoising_viewer(model, schedule, ...)` returns a widget. For a batch of 10 digits each frame shows
# three panels side by side:
#
# * **x_t**, the sample at this step;
# * the **predicted x_0**, what the model aims at from here;
# * the **guidance direction** $\hat\epsilon_y - \hat\epsilon_\varnothing$, what the label adds to the
#   model's prediction (guided sampling uses $\hat\epsilon_\varnothing + w\,(\hat\epsilon_y - \hat\epsilon_\varnothing)$).
#   Each image is scaled to its largest value and drawn with the sign of its effect on the
#   predicted x_0: white where the label adds ink, black where it removes it, grey no change.
#
# Above the panels a caption says where the frame is in the sampler's terms ("step 6/10, t = 400,
# log-SNR = 0.6"); below them a **noise-level timeline** plots the log signal-to-noise ratio
# $\log(\bar\alpha_t / (1 - \bar\alpha_t))$ against t, with a dot for every step of the run and a
# cursor at this one. The dashes mark log-SNR = 0, where x_t holds as much signal as noise.
#
# * Move the **t** slider, or press **play** (the triangle) to animate the run. All frames were
#   computed once and are in the page, one picture per frame in an ipywidgets `Stack`; the slider
#   and the play button are linked to it in the browser (`jslink`), so the slider only picks a
#   picture there, without asking Python. It responds instantly and keeps playing after the kernel
#   has stopped, or in a saved notebook whose widget state your viewer renders.
# * Pick a **sampler** (DDIM, DPM-Solver++, DDPM) and its number of **steps**, a **class** (or all
#   classes 0-9) and a **guidance** scale w: the viewer samples the frames for that setting (a few
#   seconds; this needs the kernel), always from the same initial noise, so the differences you see
#   come from the setting alone. **new noise** draws a different x_T. Settings you have seen are cached.
#
# Things to look for: how early the predicted x_0 shows a recognisable digit while x_t still looks
# like noise, and after which step it stops changing (Exercise 1 measures that step); where on the
# timeline that happens; how the guidance direction sharpens from a blur into strokes as the noise
# falls; with w = 0 (unconditional: the model is given the null class) the class selector has no
# effect on what is drawn, though the guidance panel still shows what the label *would* add.
#
# The viewer opens with the course's default sampling, DPM-Solver++ with 15 steps (the end of this
# notebook shows the measurement that chose it): 16 frames, which keeps the widget state saved in
# this notebook small (DDIM with 25 steps would be 26 pictures); switch to DDIM 25 in the dropdown to
# compare. It opens at the first frame with log-SNR >= 0 (the caption says which step and t), not
# at the pure noise of the first frame.
#
# *No widgets?* (GitHub's renderer, or a frontend without ipywidgets) The next section shows the
# same frames as a GIF and a static strip.

# %% tags=["nbval-ignore-output"]
viewer = denoising_viewer(model, schedule, n=10, guidance=GUIDANCE, image_size=IMAGE, channels=CHANNELS,
                          prediction=PRED, seed=0, scale=2)      # sampler and steps: the course's default
viewer

# %% [markdown]
# ## The same frames as a GIF and a strip
#
# `save_gif` writes frames as an animated GIF (one GIF frame per picture, the last held a little
# longer), here every other frame of the viewer's run and the final sample, with the same panels,
# caption and timeline (a GIF of all frames is `save_gif(frames_v, path, schedule=schedule)`), and
# `strip_figure` draws a few of them in a row: x_t on top, the predicted x_0 below.

# %%
from IPython.display import Image as ShowImage, display
from PIL import Image as PILImage

frames_v = viewer.viewer.frames
pictures = render_frames(frames_v, scale=1, schedule=schedule)          # 1 pixel per pixel: small
keep = list(range(0, len(pictures) - 1, 2)) + [len(pictures) - 1]     # every other frame, and the sample
gif = save_gif([pictures[k] for k in keep], OUT / "denoising_viewer.gif", fps=3)
print(f"wrote {gif.relative_to(ROOT)} ({gif.stat().st_size / 1024:.0f} KiB, {len(keep)} of the {len(frames_v)} frames)")
display(ShowImage(filename=str(gif), width=2 * PILImage.open(gif).width))       # shown twice as large
fig = strip_figure(frames_v, num=6, digits=range(4), schedule=schedule,
                   title=f"{frames_v.sampler}, {frames_v.steps} steps: x_t (top) and predicted x_0 (bottom)")
plt.show()

# %% [markdown]
# ## What guidance does: one class, w from 0 to 6
#
# Classifier-free guidance mixes the conditional and unconditional predictions,
# $\hat\epsilon = \hat\epsilon_\varnothing + w\,(\hat\epsilon_y - \hat\epsilon_\varnothing)$.
# w = 0 ignores the label, w = 1 is the plain conditional model, and w > 1 pushes each sample towards
# what distinguishes class y from the rest and, for large w, draws bolder strokes. Below: the same
# 8 starting noises (4 in fast mode) for class 3, one row per w. Beside each row: the mean distance
# between the samples (a crude measure of their diversity) and the fraction of pixels that are ink
# (brighter than mid-grey). (With the quick stand-in model the rows look alike: in a few hundred
# steps it has not yet learned to use the label, which reaches the blocks through adaLN-Zero layers
# initialised at zero.)

# %%
CLASS = 3
ws = [0.0, 1.0, 2.0, 4.0, 6.0]
n_w = by_mode(full=8, fast=4)
fig, axes = plt.subplots(len(ws), 1, figsize=(8, 1.2 * len(ws)))
for ax, w in zip(axes, ws):
    imgs = generate(model, schedule, n_w, torch.full((n_w,), CLASS), image_size=IMAGE, channels=CHANNELS,
                    sampler="ddim", steps=DDIM_STEPS, guidance=w, seed=1, prediction=PRED, device=device)
    flat = imgs.flatten(1)
    diversity = torch.cdist(flat, flat).sum() / (n_w * (n_w - 1))
    ink = float((imgs > 0).float().mean())
    show_grid(imgs, ncol=n_w, ax=ax)
    ax.set_title(f"w = {w:g}   (diversity {diversity:.1f}, ink {100 * ink:.1f}% of the pixels)", fontsize=9, loc="left")
    print(f"w = {w:g}: diversity {diversity:.1f}, ink {100 * ink:.1f}% of the pixels")
plt.tight_layout(); plt.show()

# %% [markdown]
# Read the printed numbers with care. The ink fraction grows steadily with w (14.3% at w = 1,
# 19.2% at w = 6): the strokes get bolder. The pixel distance falls from w = 0 (19.4), where the
# label is ignored and the row need not even be 3s, to w = 1 (16.9), and then barely moves (16.3,
# 16.0 and 16.2 at w = 2, 4 and 6): on 8 samples of one class this crude measure does not show
# guidance making the digits less varied. Measures on a classifier's features do: notebook 07
# (section 9) samples this checkpoint at a sweep of w with three seeds each and reports FID-LeNet
# beside recall and coverage (does every kind of real digit appear among the samples?) and
# precision and density (do the samples look like real digits?).
#
# ## The same noise under DDPM and DDIM
#
# Both samplers start from the same $x_T$, with the same number of steps, so that only the update
# rule differs. DDIM (eta = 0) is a deterministic map from $x_T$ to an image; DDPM adds fresh noise
# at every step, so from the same start it may end at a different digit of the same class. One way
# to see the difference: the noise that $x_t$ carries, $\hat\epsilon_t = (x_t - \sqrt{\bar\alpha_t}\,
# \hat x_0)/\sqrt{1-\bar\alpha_t}$. Under DDIM it stays almost exactly the initial noise $x_T$
# until the last step (where hardly any noise is left to measure); under DDPM it is replaced by
# fresh noise from the first step on. The cell prints its cosine
# similarity with $x_T$ at a few steps.

# %%
y_pair = torch.tensor([2, 7, 4, 9], device=device)
x_pair = torch.randn((4, CHANNELS, IMAGE, IMAGE), generator=torch.Generator(device).manual_seed(2), device=device)
runs = {name: compute_frames(model, schedule, y_pair, x_T=x_pair, sampler=name, steps=DDIM_STEPS,
                             guidance=GUIDANCE, prediction=PRED, seed=3)
        for name in ("ddpm", "ddim")}
for name, fr in runs.items():
    strip_figure(fr, num=7, digits=range(4), title=f"{name.upper()} from the same x_T")
    plt.show()


def carried_noise_cosine(fr):
    """Cosine similarity between x_T and the noise each recorded x_t carries (one value per step)."""
    out = []
    for k in range(len(fr) - 1):
        ab = float(schedule.alpha_bar[int(fr.timesteps[k])])
        noise = (fr.xs[k] - math.sqrt(ab) * fr.x0_preds[k]) / math.sqrt(1 - ab)
        out.append(float(torch.nn.functional.cosine_similarity(noise.flatten(1), fr.xs[0].flatten(1)).mean()))
    return out


cos = {name: carried_noise_cosine(fr) for name, fr in runs.items()}
show = sorted({0, 1, len(cos["ddim"]) // 2, len(cos["ddim"]) - 1})
print("cosine(noise carried by x_t, x_T) at steps", show)
for name in ("ddim", "ddpm"):
    print(f"  {name.upper()}: " + "  ".join(f"{cos[name][k]:+.2f}" for k in show))
assert min(cos["ddim"][:-1]) > 0.8 and max(abs(c) for c in cos["ddpm"][1:]) < 0.2
again = compute_frames(model, schedule, y_pair, x_T=x_pair, sampler="ddim", steps=DDIM_STEPS, guidance=GUIDANCE,
                       prediction=PRED, seed=99)
assert torch.equal(again.final, runs["ddim"].final), "DDIM with eta = 0 is deterministic given x_T"
gap = (runs["ddpm"].final - runs["ddim"].final).flatten(1).norm(dim=1)
print("distance between the DDPM and DDIM samples, per digit:", [f"{v:.1f}" for v in gap.tolist()])
print("DDIM from the same x_T with another seed: identical (deterministic);"
      " DDPM depends on the seed of its per-step noise too.")

# %% [markdown]
# ## Fewer steps: DPM-Solver++
#
# Every sample above cost one forward pass per step (a batch of 2B with guidance), so sampling time is
# the number of steps. Deterministic DDIM is a map from $x_T$ to an image; here we read it as the
# simplest solver of an ordinary differential equation, the **probability-flow ODE**, and derive the
# solver the field uses for guided sampling in few steps, **DPM-Solver++(2M)** (Lu et al. 2022): the
# same cost per step as DDIM, but second order.
#
# **Notation.** $\alpha_t = \sqrt{\bar\alpha_t}$ and $\sigma_t = \sqrt{1 - \bar\alpha_t}$, so that
# $x_t = \alpha_t x_0 + \sigma_t \epsilon$; $\lambda_t = \log(\alpha_t / \sigma_t)$ is half the log
# signal-to-noise ratio. It grows as $t$ falls (the next cell prints it at $t = T-1$, $T/2$ and 0) and
# is $+\infty$ for the clean image. $x_\theta(x_t, t) = \hat x_0$ is the model's prediction of the clean
# image, the **data prediction** (from $\hat\epsilon$ or $v$, as in notebook 04, after guidance).
#
# **The ODE.** Take first a data set of a single image $x^*$. Then $\hat x_0 = x^*$ wherever $x_t$ is,
# and the deterministic path from $x_T$ to $x^*$ keeps the noise it started with (as DDIM did in the
# section above): $x_\lambda = \alpha_\lambda x^* + \sigma_\lambda \epsilon$. Divided by $\sigma$,
# $x_\lambda / \sigma_\lambda = e^{\lambda} x^* + \epsilon$, whose derivative is $e^\lambda x^*$. With
# many images the velocity is averaged over the clean images $x_\lambda$ may have come from, which
# replaces $x^*$ by its posterior mean, the data prediction:
#
# $$\frac{d}{d\lambda}\Big(\frac{x_\lambda}{\sigma_\lambda}\Big) = e^{\lambda}\, x_\theta(x_\lambda, \lambda). \tag{1}$$
#
# Multiplied out (with $\alpha^2 + \sigma^2 = 1$), (1) is $dx/d\lambda = \alpha\,(x_\theta - \alpha x)$:
# a **linear** part $-\alpha^2 x$ plus the network. Dividing by $\sigma$ is the integrating factor that
# solves the linear part exactly; integrating (1) from the current timestep $t$ to the next one $s$
# gives the solution in **exponential-integrator** form (the paper's Section 4.1):
#
# $$x_s = \frac{\sigma_s}{\sigma_t}\, x_t + \sigma_s \int_{\lambda_t}^{\lambda_s} e^{\lambda}\, x_\theta(x_\lambda, \lambda)\, d\lambda. \tag{2}$$
#
# Only the network is left under the integral; a solver has to approximate nothing else.
#
# **Order 1 is DDIM.** Freeze $x_\theta$ at its value $\hat x_0$ at $t$. With $h = \lambda_s - \lambda_t$
# and $\sigma_s e^{\lambda_s} = \alpha_s$, the integral is $\alpha_s (1 - e^{-h})\,\hat x_0$:
#
# $$x_s = \frac{\sigma_s}{\sigma_t}\, x_t + \alpha_s \big(1 - e^{-h}\big)\, \hat x_0. \tag{3}$$
#
# Put $\hat\epsilon = (x_t - \alpha_t \hat x_0)/\sigma_t$ into DDIM's $x_s = \alpha_s \hat x_0 + \sigma_s
# \hat\epsilon$ and (3) comes out term for term: deterministic DDIM *is* the first-order exponential
# integrator.
#
# **Order 2, multistep (2M).** Let $x_\theta$ vary linearly in $\lambda$, its slope taken from the
# previous step's prediction $\hat x_0^{\,\rm last}$ (made at $\lambda_{\rm last}$; $h_{\rm last} =
# \lambda_t - \lambda_{\rm last}$, $r = h_{\rm last} / h$). The integral of $e^\lambda (\lambda -
# \lambda_t)$ over the step is $e^{\lambda_s}(h - 1 + e^{-h})$; DPM-Solver++ replaces $h - 1 + e^{-h}$
# by $h (1 - e^{-h})/2$ (both are $h^2/2 + O(h^3)$, so the order stays 2), which turns the correction
# into a change of the data term alone (the paper's Algorithm 2):
#
# $$D = \Big(1 + \frac{1}{2r}\Big)\hat x_0 - \frac{1}{2r}\,\hat x_0^{\,\rm last}, \qquad
# x_s = \frac{\sigma_s}{\sigma_t}\, x_t + \alpha_s \big(1 - e^{-h}\big)\, D. \tag{4}$$
#
# One model call per step, as DDIM: the second point of the line is the previous step's prediction,
# kept rather than recomputed. The first step has no history and takes (3); so does the last one, the
# jump to the clean image ($\lambda = \infty$, $h = \infty$), where (3) returns $\hat x_0$ itself.
#
# **Why the data prediction, with guidance.** DPM-Solver, the same authors' earlier solver, integrates
# the noise prediction: $x_s = (\alpha_s/\alpha_t)\, x_t - \sigma_s (e^{h} - 1)\,\hat\epsilon$. Guidance
# multiplies the difference of two $\hat\epsilon$'s by $w$, a long step multiplies $\hat\epsilon$ by
# $\sigma_s(e^h - 1)$, which grows exponentially with $h$, and higher-order differences of
# $\hat\epsilon$ amplify the result again: at large $w$ those solvers become unstable. In (3)-(4) the
# model enters through $\hat x_0$ with the weight $\alpha_s(1 - e^{-h})$, never above 1, and $\hat x_0$
# has a known range that clipping (or dynamic thresholding, notebook 04) restores before the update
# uses it; $\hat\epsilon$ has no such range.
#
# The library's `dpm_solver_step` is (3)-(4) and `dpm_solver_sample` runs it: the sampler
# `"dpm_solver++"` of `generate`, `compute_frames`, the viewer and `diffussm sample / evaluate --sampler`.
# The cells below check each piece. First: (3) against DDIM, one step at a time from the same $x_t$ and
# the same guided model output (any $x_t$ will do: the identity is algebra), then whole runs.

# %%
from diffussm_lib.diffusion import (ddim_sample, dpm_solver_sample, dpm_solver_step, dpm_solver_step_times,
                                    half_log_snr)

print("lambda_t at t = T-1, T/2, 0:", "  ".join(f"{half_log_snr(schedule, t):+.2f}" for t in (T - 1, T // 2, 0)))
y_ode = torch.tensor([1, 4, 6, 9], device=device)
x_ode = torch.randn((4, CHANNELS, IMAGE, IMAGE), generator=torch.Generator(device).manual_seed(4), device=device)
with torch.no_grad():
    for t, s in ((T - 1, 9 * T // 10), (T // 2, T // 4), (T // 25, -1)):   # same x_t, same guided output
        out = guided_output(model, x_ode, torch.full((4,), t, device=device), y_ode, GUIDANCE, model.null_class)
        ours = dpm_solver_step(schedule, out, t, x_ode, t_prev=s, order=1, prediction=PRED, clip_x0=True).x_prev
        ddim = ddim_step(schedule, out, t, x_ode, t_prev=s, prediction=PRED, clip_x0=True).x_prev
        print(f"step t = {t:4d} -> {s:4d}: max |(3) - DDIM| = {(ours - ddim).abs().max():.1e}")
        assert torch.allclose(ours, ddim, atol=1e-5)
    order1_grid = dpm_solver_step_times(T, by_mode(full=10, fast=4))    # whole runs on the same step times
    kw = dict(step_times=order1_grid, x_T=x_ode, guidance=GUIDANCE, null_class=model.null_class,
              prediction=PRED, clip_x0=True)
    first_order = dpm_solver_sample(model, schedule, None, y_ode, order=1, **kw)
    order1_gap = (first_order - ddim_sample(model, schedule, None, y_ode, **kw)).abs().max()
print(f"whole runs of {len(order1_grid)} steps: max |order-1 DPM-Solver++ - DDIM| = {order1_gap:.1e}")
assert order1_gap < 1e-4

# %% [markdown]
# **The exponential integrator on data with a known answer.** If every pixel of $x_0$ is
# $\mathcal N(\mu, s^2)$, the posterior mean is linear in $x_t$ and the ODE's solution is known: $x_t =
# \alpha_t \mu + \sqrt{\alpha_t^2 s^2 + \sigma_t^2}\, z$, with $z$ fixed by $x_T$ (each sample keeps
# its standardised value). For a single image ($s = 0$), $x_\theta$ is constant, so (3) is exact for a
# step of any length: one step from $t = 999$ to $t = 0$ lands on the solution, while an Euler step of
# the same ODE written as $dx/d\lambda = \alpha(x_\theta - \alpha x)$ does not.

# %%
toy = NoiseSchedule.cosine(1000)          # the pretrained model's schedule, in float64 on the CPU
z = torch.randn((16, 1, 4, 4), generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def posterior_mean(x, t, mu, sd):
    """E[x_0 | x_t] when every pixel of x_0 is N(mu, sd^2): linear in x_t. t: int or long (B,)."""
    ab = toy.alpha_bar[t].view(-1, 1, 1, 1) if torch.is_tensor(t) else float(toy.alpha_bar[t])
    a = ab ** 0.5
    return mu + a * sd ** 2 / (ab * sd ** 2 + 1 - ab) * (x - a * mu)


def gaussian_denoiser(mu, sd):
    """The exact eps-prediction for those data: a model function like the trained one."""
    def denoiser(x, t, y):
        ab = toy.alpha_bar[t].view(-1, 1, 1, 1)
        return (x - ab.sqrt() * posterior_mean(x, t, mu, sd)) / (1 - ab).sqrt()
    return denoiser


def exact_x(t, mu, sd):
    """The ODE's solution at timestep t: alpha_t mu + sqrt(alpha_t^2 sd^2 + sigma_t^2) z, z fixed by x_T."""
    ab = float(toy.alpha_bar[t])
    return math.sqrt(ab) * mu + math.sqrt(ab * sd ** 2 + 1 - ab) * z


# (a) one image (sd = 0): x0_hat = mu wherever x is. One step of (3) from t = 999 to t = 0 is exact; an
# Euler step of the same ODE written as dx/dlambda = alpha (x0_hat - alpha x) is not.
mu, t, s = 0.3, 999, 0
x_t = exact_x(t, mu, 0.0)
eps_hat = gaussian_denoiser(mu, 0.0)(x_t, torch.full((16,), t), None)
one_step = dpm_solver_step(toy, eps_hat, t, x_t, t_prev=s).x_prev
lam_t, lam_s, a_t = half_log_snr(toy, t), half_log_snr(toy, s), math.sqrt(float(toy.alpha_bar[t]))
euler = x_t + (lam_s - lam_t) * a_t * (mu - a_t * x_t)
x_s = exact_x(s, mu, 0.0)
print(f"one step, lambda {lam_t:+.2f} -> {lam_s:+.2f}: max error of (3) {(one_step - x_s).abs().max():.1e}, "
      f"of an Euler step {(euler - x_s).abs().max():.1e}")
assert torch.allclose(one_step, x_s, atol=1e-9)

# %% [markdown]
# With $s > 0$ the data prediction moves with $x$, and the order of a solver shows in how its error
# falls as the steps double: by 2x for order 1, by 4x for order 2.

# %%
# (b) sd = 0.5: x0_hat now moves with x. On DDIM's grid (it ends at t = 0 whatever the number of steps,
# so only the solver changes) the error at the end, against the exact ODE to t = 0 followed by the same
# last step, as the number of steps doubles.
mu, sd = 0.3, 0.5
target = posterior_mean(exact_x(0, mu, sd), 0, mu, sd)
step_list = by_mode(full=[10, 20, 40, 80, 160, 320], fast=[20, 40, 80])
errors = {order: [] for order in (1, 2)}
for n in step_list:
    for order in (1, 2):
        out = dpm_solver_sample(gaussian_denoiser(mu, sd), toy, None, x_T=exact_x(999, mu, sd),
                                step_times=spaced_step_times(1000, n), order=order)
        errors[order].append((out - target).abs().max().item())
slopes = {order: math.log2(e[-2] / e[-1]) for order, e in errors.items()}
for order, name in ((1, "order 1 (DDIM)"), (2, "order 2 (2M)  ")):
    print(f"{name}: " + "  ".join(f"{n}: {e:.1e}" for n, e in zip(step_list, errors[order]))
          + f"  | error halves {2 ** slopes[order]:.1f}x per doubling: order {slopes[order]:.2f}")
assert 0.9 < slopes[1] < 1.1 and 1.8 < slopes[2] < 2.2
fig, ax = plt.subplots(figsize=(4.5, 3))
for order in (1, 2):
    ax.loglog(step_list, errors[order], "o-", label=f"order {order}" + (" (DDIM)" if order == 1 else " (2M)"))
ax.set(xlabel="steps", ylabel="max error at the end", title="Gaussian data, exact solution known")
ax.legend(); plt.tight_layout(); plt.show()

# %% [markdown]
# **Which timesteps.** DDIM's grid (`spaced_step_times`) ends at $t = 0$. Its last ODE step, from
# about $T/S$ down to 0, crosses a long stretch of $\lambda$ ($\lambda$ grows fastest near $t = 0$:
# compare its values printed above at $T/2$ and 0), over which $\hat x_0$ is far from linear; and there
# $r$ is small, so (4) extrapolates the line with the weight $1/(2r)$. DPM-Solver++ therefore uses the
# grid diffusers gives it by default (`dpm_solver_step_times`): $S$ timesteps $\mathrm{round}(k (T-1)/S)$,
# $k = S, \dots, 1$, then the jump (3) to the clean image, so that its last second-order step is about
# as long as the others. The cell prints that last step on both grids, and the error at the clean
# image of the Gaussian data with 10 steps.

# %%
def last_ode_step(ts):
    """(h, r, 1/(2r)) of the last second-order step on the timesteps ts (the one before the jump to x_0)."""
    lam = [half_log_snr(toy, int(t)) for t in ts[-3:]]
    h, h_last = lam[2] - lam[1], lam[1] - lam[0]
    return h, h_last / h, h / (2 * h_last)


TOY_STEPS = 10
toy_grids = {"DDIM's grid": spaced_step_times(1000, TOY_STEPS),
             "DPM-Solver++'s grid": dpm_solver_step_times(1000, TOY_STEPS)}


def rms_error_at_x0(grid_ts, order):
    """RMS distance of the Gaussian data's samples to the ODE's end, the clean mu + sd z."""
    out = dpm_solver_sample(gaussian_denoiser(mu, sd), toy, None, x_T=exact_x(999, mu, sd), step_times=grid_ts,
                            order=order)
    return (out - (mu + sd * z)).pow(2).mean().sqrt().item()


for name, grid_ts in toy_grids.items():
    h, r, w_extra = last_ode_step(grid_ts)
    print(f"{name:<20} ends at t = {int(grid_ts[-1]):3d}; last 2M step: h = {h:.2f}, r = {r:.2f}, "
          f"1/(2r) = {w_extra:.1f} | RMS error at x_0: order 1 {rms_error_at_x0(grid_ts, 1):.3f}, "
          f"order 2 {rms_error_at_x0(grid_ts, 2):.3f}")

# %% [markdown]
# **On the trained model.** The same noise, guidance $w$ as above, through DDIM and DPM-Solver++ with
# few steps, and DDIM with the course's 25 (fewer of each in fast mode). A DPM-Solver++ run with many
# steps stands in for the exact ODE solution; the printed RMS distance to it measures each run's
# solver error, and the time its cost (both samplers make one guided forward pass per step). Sample
# *quality* is a different question, with its own answer: FID-LeNet and class accuracy on 2,000
# samples per setting, from `python benchmarks/bench_samplers.py`, which measures DDIM at 10 / 25 / 50
# steps and DPM-Solver++ at 5 / 8 / 10 / 15 / 20 on this checkpoint (stored in `benchmarks/results/`).

# %%
n_cmp = by_mode(full=10, fast=4)
y_cmp = torch.arange(n_cmp, device=device) % 10
x_cmp = torch.randn((n_cmp, CHANNELS, IMAGE, IMAGE), generator=torch.Generator(device).manual_seed(5),
                    device=device)
common = dict(x_T=x_cmp, guidance=GUIDANCE, null_class=model.null_class, prediction=PRED, clip_x0=True)
REF_STEPS = min(by_mode(full=100, fast=30), T - 1)
few, ddim_steps = by_mode(full=10, fast=5), by_mode(full=25, fast=10)
cmp_runs = {f"DDIM {few}": lambda: ddim_sample(model, schedule, None, y_cmp, steps=few, **common),
        f"DDIM {ddim_steps}": lambda: ddim_sample(model, schedule, None, y_cmp, steps=ddim_steps, **common),
        f"DPM-Solver++ {few}": lambda: dpm_solver_sample(model, schedule, None, y_cmp, steps=few, **common),
        f"DPM-Solver++ {few}, DDIM's grid": lambda: dpm_solver_sample(model, schedule, None, y_cmp, **common,
                                                                      step_times=spaced_step_times(T, few)),
        f"reference: DPM-Solver++ {REF_STEPS}": lambda: dpm_solver_sample(model, schedule, None, y_cmp,
                                                                          steps=REF_STEPS, **common)}
cmp_images, seconds = {}, {}
with torch.no_grad():
    ddim_sample(model, schedule, None, y_cmp, steps=1, **common)           # warm-up, so that no run pays for it
    for name, run in cmp_runs.items():
        t0 = time.perf_counter()
        cmp_images[name] = run().clamp(-1, 1).cpu()
        seconds[name] = time.perf_counter() - t0
reference = cmp_images[f"reference: DPM-Solver++ {REF_STEPS}"]
for name in cmp_runs:
    rms = (cmp_images[name] - reference).pow(2).mean().sqrt().item()
    print(f"{name:<32} {seconds[name]:6.2f} s   RMS pixel distance to the reference {rms:.3f}")
fig, axes = plt.subplots(len(cmp_runs), 1, figsize=(n_cmp * 0.6, 0.8 * len(cmp_runs)))
for ax, name in zip(axes, cmp_runs):
    show_grid(cmp_images[name], ncol=n_cmp, ax=ax)
    ax.set_title(name, fontsize=8, loc="left")
plt.tight_layout(); plt.show()

# %% [markdown]
# Last, the weights of the two forms on DPM-Solver++'s grid with the steps of the cell above: the data
# form's weight on $\hat x_0$ stays at or below 1 at every step, while the noise form's weight on
# $\hat\epsilon$ is far above 1 at the first step, where $h$ is longest (in the thousands on the
# pretrained model's schedule): an error in $\hat\epsilon$, amplified by guidance, would be too.

# %%
dpm_ts = dpm_solver_step_times(T, few).tolist() + [-1]
print(" t -> s     data weight alpha_s (1 - e^-h)   noise weight sigma_s (e^h - 1)")
weights = []
for t, s in zip(dpm_ts[:-1], dpm_ts[1:]):
    h = half_log_snr(schedule, s) - half_log_snr(schedule, t)
    ab_s = float(schedule.alpha_bar_at(s))
    data_w = math.sqrt(ab_s) * -math.expm1(-h)
    noise_w = f"{math.sqrt(1 - ab_s) * math.expm1(h):12.3g}" if s >= 0 else "  (x_0 jump)"
    weights.append(data_w)
    print(f"{t:4d} -> {s:4d}   {data_w:10.3f}                   {noise_w}")
assert max(weights) <= 1.0

# %% [markdown]
# ## How many steps? The measured curve, and the course's default
#
# RMS distances to a reference say how far a few-step run is from the ODE's solution; what a student
# cares about is whether the *samples* are as good. `python benchmarks/bench_samplers.py` measured
# that on the pretrained checkpoint: 2,000 class-balanced samples per setting at the course's guidance
# w = 1.2, FID-LeNet (notebook 07) and class accuracy, each setting run with several sampling seeds.
# For one seed every setting starts from the same x_T, so each setting is compared with DDIM 25
# seed by seed (a paired t-test), which removes the part of the noise that comes from the draw of x_T.
# The rule for the default, written before the runs: the setting with the fewest model evaluations
# whose mean FID-LeNet is within DDIM 25's mean + one SD over seeds; the issue's target was such a
# setting at 10 steps or fewer. The cell reads the stored runs, prints the table and the verdict,
# draws FID-LeNet against model evaluations, and checks that the library's default is the one the
# runs support.

# %%
import json

from diffussm_lib.diffusion import DEFAULT_SAMPLER, DEFAULT_STEPS
from diffussm_lib.evaluation.sampler_study import apply_timing, chosen_default, markdown, plot, summarise

study = json.loads((ROOT / "benchmarks" / "results" / "samplers.json").read_text())
study_summary = apply_timing(summarise(study["runs"], 2000, 1.2), study.get("timing"), 2000)
print(markdown(study_summary, study, study.get("timing"), 2000, 1.2))
plot(study_summary, OUT / "samplers.png", 2000, 1.2)
plt.figure(figsize=(6, 4)); plt.imshow(plt.imread(OUT / "samplers.png")); plt.axis("off"); plt.show()
print(f"the library's default: {DEFAULT_SAMPLER} with {DEFAULT_STEPS} steps")
assert chosen_default(study_summary) == (DEFAULT_SAMPLER, DEFAULT_STEPS)

# %% [markdown]
# ## Summary
#
# * Sampling costs one forward pass per step (with guidance w other than 0 and 1, one pass on a
#   batch of 2B). DDPM needs many more steps (the paper's ImageNet FIDs use 250) and draws fresh
#   noise at each one; DDIM and DPM-Solver++ are deterministic given x_T. The course's default
#   (`diffussm_lib.diffusion.DEFAULT_SAMPLER`, `DEFAULT_STEPS`) is the cheapest setting the measured
#   curve puts within DDIM 25's sampling noise; stored evaluations name the sampler they used.
# * The predicted x_0 shows what the model is aiming at from the first steps on; the viewer puts it
#   beside x_t. Its frames come from the sampler's own trajectory, so the last one *is* the sample.
# * Guidance pushes samples towards their class and, at large w, thickens the strokes; its cost in
#   variety is measured in notebook 07 (section 9: recall and coverage on LeNet features, over
#   seeds), which this notebook's pixel distance is too crude to show.
# * Deterministic DDIM is the first-order exponential integrator of the probability-flow ODE written
#   with the data prediction $\hat x_0$. DPM-Solver++(2M) adds a second-order correction built from the
#   previous step's $\hat x_0$, at no extra model call: sampler `"dpm_solver++"` everywhere a sampler
#   is chosen; `benchmarks/bench_samplers.py` measures its FID-LeNet against DDIM's per model evaluation.
#
# The viewer lives in the library: `from diffussm_lib.sampling import denoising_viewer, compute_frames,
# save_gif, strip_figure` works in any notebook with any denoiser of the course's interface.
#
# Next: **07 · Evaluation**, where we measure sample quality with FID on a LeNet's features.

# %% [markdown]
# ## Exercises
#
# **Exercise 1.** *When does the prediction settle?* Compute the frames of one DDIM run (25 steps,
# all ten digits, w = 1) with `compute_frames`. For each step, measure how much the predicted x_0
# changed since the step before (the root-mean-square pixel change, averaged over the batch), and
# find the first frame after which every change stays below 0.02 (1% of the [-1, 1] range). At which
# timestep is that, and how far through the run? Is it earlier or later with w = 4?
# *Hint:* `frames.x0_preds` has shape (number of frames, B, C, H, W); `(x0[1:] - x0[:-1]).flatten(2).pow(2).mean(2).sqrt()`
# is the change per step and digit; `frames.timesteps[k]` is the timestep of frame k.
#
# **Exercise 2.** *How many DDIM steps?* From one fixed x_T (ten digits, w = 1), sample with DDIM at
# 10, 25 and 50 steps and time each run. Take a 100-step run from the same x_T as the reference and
# measure each sample's distance to it. How does the time grow with the steps, and how fast does the
# distance shrink? Look at the three grids: where does quality start to drop?
# *Hint:* pass the same `x_T=` to `compute_frames` (or the same `seed` to `generate`, which draws
# x_T from it); `frames.final` is the sample.
#
# **Exercise 3.** *Guidance measured.* For w in 0, 0.5, 1, 2 and 4, sample 50 digits (5 of each
# class) from the pretrained model with DDIM 25 steps and measure the class accuracy: the fraction
# that the fixed classifier of notebook 07 reads as the class asked for. From which w on does the
# model draw the right digit almost always, and what does w = 0 give?
# *Hint:* `from diffussm_lib.evaluation import classify, load_lenet`; `classify(load_lenet(), images)`
# returns (features, predicted classes); labels `torch.arange(50) % 10`.

# %% [markdown]
# ## Check your understanding
#
# 1. Why does a guided step with w = 2 cost about twice a step with w = 1 or w = 0, and how does the
#    library avoid running two separate forward passes?
# 2. From the same x_T, DDIM with eta = 0 gives the same image whatever the seed, DDPM does not.
#    Why?
# 3. The viewer computes all frames once and the step slider only picks one. Why does that make the
#    slider instant, and what has to be computed again when you change the class or w?

# %% [markdown]
# ## References
#
# * J. Ho, A. Jain, P. Abbeel. *Denoising Diffusion Probabilistic Models* (DDPM). 2020, arXiv 2006.11239.
# * A. Nichol, P. Dhariwal. *Improved Denoising Diffusion Probabilistic Models* (respaced sampling). 2021, arXiv 2102.09672.
# * J. Song, C. Meng, S. Ermon. *Denoising Diffusion Implicit Models* (DDIM). 2020, arXiv 2010.02502.
# * J. Ho, T. Salimans. *Classifier-Free Diffusion Guidance*. 2022, arXiv 2207.12598.
# * Y. Song, J. Sohl-Dickstein, D. P. Kingma, A. Kumar, S. Ermon, B. Poole. *Score-Based Generative Modeling through Stochastic Differential Equations* (the probability-flow ODE). 2021, arXiv 2011.13456.
# * C. Lu, Y. Zhou, F. Bao, J. Chen, C. Li, J. Zhu. *DPM-Solver: A Fast ODE Solver for Diffusion Probabilistic Model Sampling in Around 10 Steps*. 2022, arXiv 2206.00927.
# * C. Lu, Y. Zhou, F. Bao, J. Chen, C. Li, J. Zhu. *DPM-Solver++: Fast Solver for Guided Sampling of Diffusion Probabilistic Models*. 2022, arXiv 2211.01095.
# * T. Salimans, J. Ho. *Progressive Distillation for Fast Sampling of Diffusion Models* (v-prediction). 2022, arXiv 2202.00512.
# * J. N. Yan, J. Gu, A. M. Rush. *Diffusion Models Without Attention* (DiffuSSM). 2023, arXiv 2311.18257 (CVPR 2024).

# %%
print(f"notebook 06 ran in {(time.perf_counter() - T_START) / 60:.1f} min (fast mode: {fast_mode()})")

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
# 3. use the denoising viewer: step through a run, change the class and the guidance scale, play it as an animation;
# 4. save the same frames as a GIF and a static strip for readers without widgets;
# 5. explain what classifier-free guidance does as its scale w goes from 0 to 6;
# 6. compare DDPM and DDIM trajectories started from the same noise.
#
# *Outputs shown: executed in full mode on 2026-12-02, CPU AMD EPYC, 2 torch threads, in 0.9 min.*

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
from diffussm_lib.diffusion import NoiseSchedule, ddim_step, guided_eps, sampling_timesteps
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
# * **DDIM** (eta = 0) is deterministic and tolerates far fewer steps: 25 here, the setting of every
#   number the course reports (the README, the model card and notebook 07 all use DDIM with 25
#   steps).
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
ts = sampling_timesteps(T, S_demo).tolist()
with torch.no_grad():
    for i, t in enumerate(ts):
        t_prev = ts[i + 1] if i + 1 < len(ts) else -1                  # the last step goes to the clean image
        tb = torch.full((n_demo,), t, dtype=torch.long, device=device)
        out = guided_eps(model, x, tb, y_demo, w_demo, model.null_class)  # one pass on 2B images: v or eps (PRED)
        step = ddim_step(schedule, out, t, x, t_prev=t_prev, prediction=PRED, clip_x0=True)
        xs.append(x.cpu()); x0s.append(step.x0_pred.cpu())
        x = step.x_prev
print(f"{len(xs)} steps recorded; x_T: mean {xs[0].mean():+.3f}, std {xs[0].std():.3f} (pure noise: 0 and 1)")

# %% [markdown]
# The library does exactly this (the samplers record it with `return_trajectory=True`), and
# `diffussm_lib.sampling.compute_frames` turns the record into **frames**: one per step, plus a last
# frame holding the final sample. The first frame is pure noise, the last is what the sampler
# returns. We check both against the loop above:

# %%
from diffussm_lib.sampling import compute_frames, denoising_viewer, save_gif, strip_figure

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
# `denoising_viewer(model, schedule, ...)` returns a widget. For a batch of 10 digits it shows
# **x_t on the left** and the **predicted x_0 on the right**.
#
# * Move the **step** slider, or press **play** (the triangle) to animate the run. All frames were
#   computed once, when the viewer was built, and encoded as PNG images; the slider only picks one,
#   so it responds instantly.
# * Pick a **class** (or all digits 0-9) and a **guidance** scale w: the viewer samples the frames
#   for that setting (a few seconds), always from the same initial noise, so the differences you see
#   come from the setting alone. Settings you have seen are cached.
#
# Things to look for: how early the predicted x_0 shows a recognisable digit while x_t still looks
# like noise, and after which step it stops changing (Exercise 1 measures that step); with w = 0
# (unconditional: the model is given the null class) the class selector has no effect on what is
# drawn.
#
# *No widgets?* (GitHub's renderer, or a frontend without ipywidgets) The next section shows the
# same frames as a GIF and a static strip.

# %% tags=["nbval-ignore-output"]
viewer = denoising_viewer(model, schedule, n=10, guidance=GUIDANCE, sampler="ddim", steps=DDIM_STEPS,
                          image_size=IMAGE, channels=CHANNELS, prediction=PRED, seed=0, scale=3)
viewer

# %% [markdown]
# ## The same frames as a GIF and a strip
#
# `save_gif` writes the viewer's current frames as an animated GIF (one GIF frame per frame, the
# final sample held a little longer), and `strip_figure` draws a few of them in a row: x_t on top,
# the predicted x_0 below.

# %%
from IPython.display import Image as ShowImage, display
from PIL import Image as PILImage

gif = save_gif(viewer.viewer.frames, OUT / "denoising_ddim.gif", fps=8, scale=1)   # 1 pixel per pixel: small
print(f"wrote {gif.relative_to(ROOT)} ({gif.stat().st_size / 1024:.0f} KiB, {len(viewer.viewer.frames)} frames)")
display(ShowImage(filename=str(gif), width=2 * PILImage.open(gif).width))       # shown twice as large
fig = strip_figure(viewer.viewer.frames, num=8, digits=range(4), schedule=schedule,
                   title="DDIM: x_t (top) and predicted x_0 (bottom)")
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
# guidance making the digits less varied. FID-LeNet, which compares the spread of the samples'
# features with that of real digits, is the measure for that: notebook 07 (section 8) reports it for
# this checkpoint and an earlier one of the same run at several w, and it climbs as w grows.
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
# ## Summary
#
# * Sampling costs one forward pass per step (with guidance w other than 0 and 1, one pass on a
#   batch of 2B). DDIM with 25 steps is the sampler behind every number the course reports (the
#   README, the model card, notebook 07); DDPM needs many more steps (the paper's ImageNet FIDs use
#   250) and draws fresh noise at each one.
# * The predicted x_0 shows what the model is aiming at from the first steps on; the viewer puts it
#   beside x_t. Its frames come from the sampler's own trajectory, so the last one *is* the sample.
# * Guidance pushes samples towards their class and, at large w, thickens the strokes; its cost in
#   diversity is measured by FID-LeNet in notebook 07, which this notebook's pixel distance is too
#   crude to show.
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
# * T. Salimans, J. Ho. *Progressive Distillation for Fast Sampling of Diffusion Models* (v-prediction). 2022, arXiv 2202.00512.
# * J. N. Yan, J. Gu, A. M. Rush. *Diffusion Models Without Attention* (DiffuSSM). 2023, arXiv 2311.18257 (CVPR 2024).

# %%
print(f"notebook 06 ran in {(time.perf_counter() - T_START) / 60:.1f} min (fast mode: {fast_mode()})")

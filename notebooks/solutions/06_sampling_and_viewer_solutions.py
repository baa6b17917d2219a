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
# # 06 · Solutions: Sampling and the denoising viewer
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/diffussm-course/diffussm-course/blob/main/notebooks/solutions/06_sampling_and_viewer_solutions.ipynb)
#
# Solutions to the exercises of notebook 06, each checked with `assert`s, and answers to its
# "Check your understanding" questions. They use the pretrained checkpoint; in fast mode
# (`DIFFUSSM_FAST=1`, CI) with fewer digits and sampling steps. The full sizes take about a minute
# on a 2-core CPU.
#
# *Outputs shown: executed in full mode on 2026-12-03, CPU AMD EPYC, 2 torch threads, in 58 s.*

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
import time
from pathlib import Path

import matplotlib.pyplot as plt
import torch

import diffussm_lib
from diffussm_lib.diffusion import NoiseSchedule
from diffussm_lib.evaluation import class_accuracy, classify, load_lenet
from diffussm_lib.sampling import compute_frames, generate, make_grid
from diffussm_lib.training import load_model

seed_everything(0)
torch.set_num_threads(by_mode(full=torch.get_num_threads(), fast=1))
ROOT = Path(diffussm_lib.__file__).resolve().parents[1]
model, cfg, ckpt = load_model(ROOT / "checkpoints" / "mnist_diffussm")
schedule = NoiseSchedule.from_config(cfg.diffusion)
PRED, IMAGE = cfg.diffusion.prediction, cfg.model.image_size
STEPS = by_mode(full=25, fast=10)
print(f"pretrained DiffuSSM, step {ckpt.step}; DDIM with {STEPS} steps")

# %% [markdown]
# ## Solution 1
#
# The root-mean-square change of the predicted x_0 between consecutive frames, averaged over the
# ten digits, and the first frame after which it stays below 0.02.

# %%
THRESHOLD = 0.02


def settling(frames, threshold=THRESHOLD):
    """(RMS change of the predicted x_0 per step, averaged over the batch; the first frame k after
    which every change is below ``threshold``)."""
    x0 = frames.x0_preds                                               # (frames, B, C, H, W)
    change = (x0[1:] - x0[:-1]).flatten(2).pow(2).mean(2).sqrt().mean(1)
    below = change < threshold
    k = next(i for i in range(len(change)) if bool(below[i:].all()))
    return change, k


labels = torch.arange(10)
settle = {}
for w in (1.0, 4.0):
    frames = compute_frames(model, schedule, labels, image_size=IMAGE, sampler="ddim", steps=STEPS, guidance=w,
                            prediction=PRED, seed=0)
    change, k = settling(frames)
    settle[w] = (change, k, frames)
    print(f"w = {w:g}: change per step " + " ".join(f"{v:.3f}" for v in change.tolist()))
    print(f"        below {THRESHOLD} from frame {k} on, {100 * k / (len(frames) - 1):.0f}% through the run: "
          f"{frames.caption(k, schedule)}")
    assert 0 < k < len(frames) - 1 and change[0] > THRESHOLD > change[-2]
    first_guess = classify(load_lenet(), frames.x0_preds[0])[1]
    print(f"        the classifier reads the first frame's predicted x_0 as the class asked for in "
          f"{int((first_guess == labels).sum())} of 10 digits")
    assert (first_guess == labels).float().mean() >= 0.8

plt.figure(figsize=(6, 3))
for w, (change, k, frames) in settle.items():
    plt.semilogy(frames.timesteps[:-1].tolist(), change.clamp_min(1e-4).tolist(), marker="o", label=f"w = {w:g}")
plt.axhline(THRESHOLD, color="gray", ls="--")
plt.gca().invert_xaxis()
plt.xlabel("timestep t"); plt.ylabel("RMS change of predicted x_0"); plt.legend(); plt.tight_layout(); plt.show()

# %% [markdown]
# **Reading it.** The predicted x_0 changes most in the first, noisiest steps and then less and
# less; it falls below 1% of the pixel range before the middle of the run, while x_t still carries
# about as much noise as signal (the printed sqrt(alpha_bar) and sqrt(1 - alpha_bar)). With
# w = 4 the early changes are larger (guidance pushes harder), and the prediction settles at about
# the same frame or a little later, not earlier: stronger guidance moves the prediction further, it
# does not decide it sooner. (The class itself is decided at once here: the fixed classifier of
# notebook 07 already reads the predicted x_0 of the first frame as the class asked for.)

# %% [markdown]
# ## Solution 2
#
# The same seed gives `generate` the same x_T, and DDIM with eta = 0 uses no other randomness, so
# the runs differ only in their number of steps.

# %%
n_digits = by_mode(full=10, fast=4)
step_counts = by_mode(full=[10, 25, 50], fast=[5, 10, 20])
reference_steps = by_mode(full=100, fast=40)
y = torch.arange(n_digits) % 10
kw = dict(image_size=IMAGE, channels=1, sampler="ddim", guidance=1.0, seed=0, prediction=PRED)
reference = generate(model, schedule, n_digits, y, steps=reference_steps, **kw)
samples, seconds, distance = {}, {}, {}
for s in step_counts:
    seconds[s] = float("inf")
    for _ in range(2):                    # the faster of two runs: less disturbed by other jobs
        t0 = time.perf_counter()
        samples[s] = generate(model, schedule, n_digits, y, steps=s, **kw)
        seconds[s] = min(seconds[s], time.perf_counter() - t0)
    distance[s] = float((samples[s] - reference).flatten(1).norm(dim=1).mean())
    rms = float((samples[s] - reference).pow(2).mean().sqrt())
    print(f"DDIM {s:3d} steps: {seconds[s]:5.2f} s ({1000 * seconds[s] / s:.0f} ms per step), distance to the "
          f"{reference_steps}-step sample {distance[s]:.2f} ({rms:.3f} per pixel, RMS, of a [-1, 1] range)")
print(f"time ratio {step_counts[-1]} / {step_counts[0]} steps: {seconds[step_counts[-1]] / seconds[step_counts[0]]:.1f}x "
      f"(steps ratio {step_counts[-1] / step_counts[0]:.0f}x)")
d = [distance[s] for s in step_counts]
assert d == sorted(d, reverse=True), "more steps: closer to the many-step sample"

fig, axes = plt.subplots(1, len(step_counts) + 1, figsize=(3 * (len(step_counts) + 1), 2))
for ax, (name, imgs) in zip(axes, [*((f"{s} steps", samples[s]) for s in step_counts),
                                   (f"{reference_steps} steps", reference)]):
    ax.imshow(make_grid(imgs, ncol=5)[..., 0], cmap="gray"); ax.set_title(name, fontsize=9); ax.axis("off")
plt.tight_layout(); plt.show()

# %% [markdown]
# **Reading it.** The time grows in proportion to the number of steps (one forward pass each; on a
# machine shared with other jobs the measured times scatter); the distance to the many-step sample
# shrinks as the steps grow (the printed RMS distances), because DDIM with eta = 0 follows an ordinary
# differential equation and more steps follow it more closely. The samples stay the same digits; the
# printed distance at 10 steps is more than twice that at 25, visible in the strokes of the grids.
# 25 steps, the course's evaluation setting, is a compromise between the two.

# %% [markdown]
# ## Solution 3

# %%
count = by_mode(full=50, fast=10)
sweep_steps = by_mode(full=25, fast=8)
lenet = load_lenet()
y = torch.arange(count) % 10
accuracy = {}
for w in (0.0, 0.5, 1.0, 2.0, 4.0):
    imgs = generate(model, schedule, count, y, image_size=IMAGE, channels=1, sampler="ddim", steps=sweep_steps,
                    guidance=w, seed=0, prediction=PRED)
    _, pred = classify(lenet, imgs)
    accuracy[w] = class_accuracy(pred, y)
    print(f"w = {w:3g}: class accuracy {100 * accuracy[w]:5.1f}% of {count} samples")
assert accuracy[0.0] < 0.5 and accuracy[2.0] >= 0.8 and accuracy[2.0] > accuracy[0.0]

# %% [markdown]
# **Reading it.** w = 0 is the unconditional model (the null class): it draws a digit of whatever
# class, so about one in ten matches the label by chance. w = 0.5 gets some right, and from w = 1 on
# (the plain conditional model) nearly all are right. Guidance above 1 adds little accuracy for
# this model; what it costs shows in FID (notebook 07, section 8).

# %% [markdown]
# ## Answers
#
# 1. With w not in {0, 1} the guided prediction needs both the conditional and the unconditional
#    output at the same x_t, that is two evaluations of the network. `guided_output` runs them as one
#    forward pass on a batch of 2B (x twice; the labels, then the null class), so the cost is that
#    of a batch twice as large, about twice the time on a CPU, but not two separate calls. w = 1
#    needs only the conditional output and w = 0 only the unconditional one: one pass on B.
# 2. DDIM with eta = 0 is a deterministic function of x_T: each step computes x_{t_prev} from x_t and
#    the model's prediction only, so the seed (which only draws noise) plays no part once x_T is
#    given. DDPM adds fresh Gaussian noise at every step, drawn from the seeded generator, so the
#    trajectory and the final sample depend on the seed as well as on x_T.
# 3. Encoding a frame (a grid of 10 digits, twice, as a PNG) and, before that, sampling the whole
#    run take far longer than displaying a PNG that already exists, so the slider only swaps
#    images. A new class or w changes the model's predictions at every step, so the viewer samples
#    a whole new run from the same x_T and encodes its frames (a few seconds); settings seen before
#    come from its cache.

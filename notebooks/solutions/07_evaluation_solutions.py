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
# # 07 · Solutions: Evaluation: measuring samples honestly
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/diffussm-course/diffussm-course/blob/main/notebooks/solutions/07_evaluation_solutions.ipynb)
#
# Solutions to the exercises of notebook 07, each checked with `assert`s, and answers to its
# "Check your understanding" questions. In fast mode (`DIFFUSSM_FAST=1`, CI) every solution runs
# at smaller sizes; the full sizes take about a minute on a 2-core CPU (Solution 3 the longest).
#
# *Outputs shown: executed in full mode on 2026-12-02, CPU AMD EPYC, 2 torch threads, in 1.0 min.*

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
import json
from pathlib import Path

import torch

import diffussm_lib
from diffussm_lib.data import mnist_dataset
from diffussm_lib.env import fast_mode
from diffussm_lib.evaluation import classify, evaluate_images, load_lenet, real_floor, sample_and_evaluate
from diffussm_lib.training import load_model

seed_everything(0)
torch.set_num_threads(by_mode(full=torch.get_num_threads(), fast=1))
ROOT = Path(diffussm_lib.__file__).resolve().parents[1]

# %% [markdown]
# ## Solution 1
#
# The floor at several counts and seeds, a least-squares fit of `a + b / n` to the mean over seeds,
# and a prediction checked at a count the fit has not seen (10,000 samples; 2,000 in fast mode).

# %%
COUNTS = by_mode(full=[250, 500, 1000, 2000, 4000], fast=[250, 500, 1000])
SEEDS = by_mode(full=[0, 1, 2], fast=[0, 1])
TARGET = by_mode(full=10000, fast=2000)

floors = torch.tensor([[real_floor(n, seed) for seed in SEEDS] for n in COUNTS], dtype=torch.float64)
mean = floors.mean(1)
for n, row in zip(COUNTS, floors):
    print(f"  {n:>6,} samples: floor {row.mean():6.2f}  (seeds: {', '.join(f'{v:.2f}' for v in row.tolist())}; "
          f"spread {row.max() - row.min():.2f})")

inv = 1.0 / torch.tensor(COUNTS, dtype=torch.float64)
A = torch.stack([torch.ones_like(inv), inv], dim=1)                  # columns [1, 1/n]
a, b = torch.linalg.lstsq(A, mean[:, None]).solution.flatten().tolist()
predicted = a + b / TARGET
measured = sum(real_floor(TARGET, seed) for seed in SEEDS) / len(SEEDS)
print(f"fit: floor(n) = {a:.2f} + {b:.0f} / n; at {TARGET:,} samples predicted {predicted:.2f}, measured {measured:.2f}")
assert b > 0 and a > 0
assert abs(predicted - measured) < by_mode(full=0.15, fast=0.25) * measured
spread = floors.max(1).values - floors.min(1).values
assert spread[0] > spread[-1], "the seeds agree better at larger counts"

# %% [markdown]
# **Reading it.** b / n is the bias that comes from estimating a 128-d mean and covariance from n
# samples: it falls like 1/n and dominates at small counts. a is what is left at very large n: the
# real difference between the training and test digits plus the bias of the test set's own 10,000
# samples, which is the same in every measurement. The fit predicts the floor at a count it has not
# seen to within a few percent. The seeds also disagree much more at small counts: at a few hundred
# samples the floor itself moves by several points from one draw to the next, so two models'
# FIDs at that count must differ by more than that before they say anything.

# %% [markdown]
# ## Solution 2
#
# Three sets of 1,000 real training digits: unaltered, without any 7, and with half the 7s removed
# (each removed 7 replaced by the next digit of the same seeded draw, so the other classes keep
# their natural proportions).

# %%
train = mnist_dataset("train", pad_to=32)
SIZE = 1000
perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))


def draw(keep_sevens):
    """The first SIZE digits of the seeded draw, keeping only every ``keep_sevens``-th 7 (0: none)."""
    chosen, sevens = [], 0
    for i in perm.tolist():
        if int(train.y[i]) == 7:
            sevens += 1
            if keep_sevens == 0 or sevens % keep_sevens:
                continue
        chosen.append(i)
        if len(chosen) == SIZE:
            break
    return torch.tensor(chosen)


sets = {"unaltered": perm[:SIZE], "half of the 7s removed": draw(2), "no 7 at all": draw(0)}
lenet = load_lenet()
results = {}
for name, ids in sets.items():
    report = evaluate_images(train.x[ids], train.y[ids], floor=False)
    _, pred = classify(lenet, train.x[ids])
    hist = torch.bincount(pred, minlength=10)
    results[name] = (report, hist)
    print(f"{name:24s} FID-LeNet {report.fid:6.2f}  histogram deviation {report.histogram_deviation:.3f}  "
          f"least frequent predicted class: {int(hist.argmin())} ({int(hist.min())} of {SIZE})")
full_, half, none = (results[k][0] for k in sets)
assert int(results["no 7 at all"][1].argmin()) == 7, "the histogram names the missing class"
assert none.histogram_deviation > 0.08 > full_.histogram_deviation
assert none.histogram_deviation > half.histogram_deviation > full_.histogram_deviation
assert none.fid > half.fid > full_.fid

# %% [markdown]
# **Reading it.** With no 7 at all, the predicted-class histogram has a hole at 7 (a few digits are
# still read as 7s, the classifier's mistakes) and the deviation jumps to about 0.1; with half the
# 7s removed it sits about halfway. FID-LeNet rises too, but by a number that says nothing about
# *what* went wrong: a rise of that size could as well come from noisy strokes (notebook 07,
# section 4).
# The histogram names the dropped class.

# %% [markdown]
# ## Solution 3
#
# 200 samples (20 per class) of the pretrained model at w = 1 and w = 3, DDIM 25 steps, each
# measured with `sample_and_evaluate` (fast mode: 20 samples and 5 steps, which only runs the code).

# %%
model, cfg, ckpt = load_model(ROOT / "checkpoints" / "mnist_diffussm")
COUNT = by_mode(full=200, fast=20)
STEPS = by_mode(full=25, fast=5)
reports = {}
for w in (1.0, 3.0):
    reports[w], _ = sample_and_evaluate(model, cfg, COUNT, guidance=w, sampler="ddim", steps=STEPS)
    r = reports[w]
    print(f"w = {w:g}: {r.n} samples, FID-LeNet {r.fid:6.2f} (floor {r.floor:.2f}), class accuracy "
          f"{100 * r.class_accuracy:.1f}%, histogram deviation {r.histogram_deviation:.3f}")
print("\nthe stored reports of the step-8,361 checkpoint (10,000 samples each):")
stored = {}
for p in sorted((ROOT / "benchmarks" / "results").glob("pretrained_step8361_w*.json")):
    s = json.loads(p.read_text())
    stored[s["guidance"]] = s
    print(f"  w = {s['guidance']}: FID-LeNet {s['fid']:.2f} (floor {s['floor']:.2f}), class accuracy "
          f"{100 * s['class_accuracy']:.1f}%")
print(f"FID-LeNet at w = 3 over w = 1: {reports[3.0].fid / reports[1.0].fid:.1f}x here, "
      f"{stored[3.0]['fid'] / stored[1.0]['fid']:.1f}x in the stored reports; floor at {COUNT} samples over the "
      f"floor at 10,000: {reports[1.0].floor / stored[1.0]['floor']:.1f}x")
assert reports[3.0].class_accuracy >= reports[1.0].class_accuracy
if not fast_mode():
    assert reports[3.0].fid > reports[1.0].fid > reports[1.0].floor

# %% [markdown]
# **Reading it.** Stronger guidance makes the right digit more certain (class accuracy up) and the
# set less like the real digits (FID-LeNet up), as in the stored 10,000-sample reports, where w = 3
# costs many times the FID of w = 1 (the ratios are printed above). At 200 samples both FIDs sit on
# a floor that is itself many times the floor at 10,000 samples, so the absolute values are not
# comparable with the model card's; their order is.

# %% [markdown]
# ## Answers
#
# 1. FID estimates a mean and a covariance of 128-d features from a finite sample, and the estimate's
#    error adds a positive bias that depends on the number of samples: two sets of real digits score
#    several points at 1,000 samples and about 1.3 at 10,000. A model's FID is therefore only
#    meaningful against the real-vs-real value at the same count; the bias falls like 1/n as the
#    sample grows (Solution 1).
# 2. At a budget of a few minutes every model is in its first few hundred steps, where the loss
#    still falls fast with every step, so the variant that takes the most steps in the budget is
#    ahead, whatever its design. To learn what a choice buys a trained model, train each variant
#    to convergence (or at least far past the warm-up, at equal and large compute), with several
#    seeds, and evaluate at a large number of samples.
# 3. The histogram deviation: five classes at about 0.2 and five at 0 give a deviation of about 0.1,
#    and the histogram shows which classes are missing. FID rises too, but a rise in FID can come
#    from any difference between the two feature distributions (noise, blur, missing classes), so it
#    signals that something is wrong without saying what. Class accuracy of conditional samples
#    would also catch it if the generator were asked for 5-9 and drew 0-4; an unconditional
#    generator has no class accuracy at all.

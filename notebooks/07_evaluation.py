# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 07 · Evaluation: measuring samples honestly
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/diffussm-course/diffussm-course/blob/main/notebooks/07_evaluation.ipynb)
#
# Pictures of samples persuade; numbers decide. This notebook defines the course's metric and
# learns to read it before we use it to compare models.
#
# **Objectives.** By the end of this notebook you can
# 1. explain FID-LeNet: the Fréchet distance between Gaussian fits of a fixed MNIST classifier's
#    128-d features, and why we do not use Inception-based FID on MNIST;
# 2. read an FID value next to its *real-vs-real floor* at the same sample count;
# 3. see how the metric reacts to noise, blur and dropped classes, and why class accuracy and the
#    predicted-class histogram are reported beside it.
#
# *Still to come in this notebook (issue 8): DiffuSSM vs DiT at equal training compute, the ablations,
# and the scaling study; they need the pretrained checkpoint.*

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
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from diffussm_lib.data import mnist_dataset
from diffussm_lib.evaluate import evaluate_images
from diffussm_lib.fid import FeatureStats, frechet_distance
from diffussm_lib.lenet import classify, lenet_card, load_lenet

seed_everything(0)
N = by_mode(full=10000, fast=1000)          # samples per measurement (FID is compared at equal N only)
test = mnist_dataset("test", pad_to=32)
train = mnist_dataset("train", pad_to=32)
print(f"N = {N} images per measurement")

# %% [markdown]
# ## 1. The feature extractor
#
# FID compares two sets of images through the features a network extracts from them: fit a Gaussian
# to each set's features and measure the Fréchet (2-Wasserstein) distance between the two Gaussians,
#
# $$\mathrm{FD} = \lVert m_1 - m_2 \rVert^2 + \operatorname{tr} S_1 + \operatorname{tr} S_2
#   - 2 \operatorname{tr}\big( (S_1^{1/2} S_2 S_1^{1/2})^{1/2} \big).$$
#
# The usual extractor, Inception-v3 trained on ImageNet, needs downloaded weights and sees MNIST
# digits as odd grey textures. We use a small LeNet trained on MNIST by `scripts/train_fid_lenet.py`
# (seeded; its weights are committed: values are comparable only with the *same* extractor).

# %%
lenet = load_lenet()
print(lenet_card())
feats_test, pred_test = classify(lenet, test.x)
print("features:", tuple(feats_test.shape), "| test accuracy:", float((pred_test == test.y).float().mean()))

# %% [markdown]
# Before trusting the library, compute one distance by hand: fit both Gaussians, take the matrix
# square root by an eigendecomposition, and compare with `frechet_distance`.

# %%
def fd_by_hand(f1, f2):
    m1, m2 = f1.mean(0), f2.mean(0)
    s1, s2 = torch.cov(f1.T), torch.cov(f2.T)
    w, v = torch.linalg.eigh(s1)
    s1_half = v @ torch.diag(w.clamp_min(0).sqrt()) @ v.T
    tr_sqrt = torch.linalg.eigvalsh(s1_half @ s2 @ s1_half).clamp_min(0).sqrt().sum()
    return float((m1 - m2) @ (m1 - m2) + s1.trace() + s2.trace() - 2 * tr_sqrt)

idx = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:N]
feats_train, _ = classify(lenet, train.x[idx])
by_hand = fd_by_hand(feats_test, feats_train)
library = frechet_distance(FeatureStats.of(feats_test), FeatureStats.of(feats_train))
print(f"test vs {N} training images: by hand {by_hand:.4f}, library {library:.4f}")
assert abs(by_hand - library) < 1e-6 * max(1.0, library)

# %% [markdown]
# ## 2. The floor: real against real
#
# Two sets of *real* digits do not score 0: a Gaussian fitted to N samples is itself noisy, and the
# error shrinks as N grows. So FID is biased by N, and a model's value means something only beside
# the floor at the same N. Here is the floor for several N:

# %%
floors = {}
for n in by_mode(full=[1000, 2000, 5000, 10000], fast=[500, 1000]):
    f, _ = classify(lenet, train.x[idx[:n]])                 # every n here is <= N
    floors[n] = frechet_distance(FeatureStats.of(feats_test), FeatureStats.of(f))
    print(f"  N = {n:>5}: real-vs-real FID-LeNet {floors[n]:.2f}")
assert list(floors.values()) == sorted(floors.values(), reverse=True), "the floor falls as N grows"

# %% [markdown]
# ## 3. How the metric reacts to damage
#
# We damage N real training digits in ways a generator might, and measure each set with
# `evaluate_images`, which reports FID-LeNet, the floor, the classifier's accuracy on the labels the
# images *should* have, and the largest deviation of the predicted-class histogram from uniform.

# %%
def gaussian_blur(x, sigma):
    """x (N, 1, H, W) -> the same blurred by a separable Gaussian of std ``sigma`` pixels."""
    r = int(3 * sigma + 0.5)
    k = torch.exp(-torch.arange(-r, r + 1).float() ** 2 / (2 * sigma ** 2))
    k = (k / k.sum()).view(1, 1, 1, -1)
    x = F.conv2d(F.pad(x, (r, r, 0, 0), value=-1.0), k)
    return F.conv2d(F.pad(x, (0, 0, r, r), value=-1.0), k.transpose(2, 3))

g = torch.Generator().manual_seed(1)
x, y = train.x[idx], train.y[idx]
keep = torch.nonzero(train.y < 5).flatten()[:N]
corrupted = {
    "real digits": (x, y),
    "Gaussian noise, std 0.1 (of [0, 1])": ((x + 0.2 * torch.randn(x.shape, generator=g)).clamp(-1, 1), y),
    "Gaussian noise, std 0.3": ((x + 0.6 * torch.randn(x.shape, generator=g)).clamp(-1, 1), y),
    "blur, sigma 1 pixel": (gaussian_blur(x, 1.0), y),
    "only digits 0-4": (train.x[keep], train.y[keep]),
    "uniform noise": (torch.rand(x.shape, generator=g) * 2 - 1, y),
}
rows = {}
for name, (imgs, labels) in corrupted.items():
    rows[name] = evaluate_images(imgs, labels, floor=False)
floor = floors[N]
print(f"{'images':40s} {'FID-LeNet':>10s} {'class acc':>10s} {'hist dev':>9s}   (floor at N={N}: {floor:.2f})")
for name, r in rows.items():
    print(f"{name:40s} {r.fid:10.2f} {r.class_accuracy:10.3f} {r.histogram_deviation:9.3f}")

# %%
fig, axes = plt.subplots(1, len(corrupted), figsize=(2 * len(corrupted), 2.3))
for ax, (name, (imgs, _)) in zip(axes, corrupted.items()):
    ax.imshow(torch.cat(list(imgs[:4, 0]), dim=1), cmap="gray", vmin=-1, vmax=1)
    ax.set_title(name.split(",")[0] if len(name) > 20 else name, fontsize=8)
    ax.set_xticks([]); ax.set_yticks([])
plt.tight_layout(); plt.show()
assert rows["real digits"].fid < rows["Gaussian noise, std 0.1 (of [0, 1])"].fid < rows["Gaussian noise, std 0.3"].fid
assert rows["only digits 0-4"].histogram_deviation > 0.05 > rows["real digits"].histogram_deviation

# %% [markdown]
# **Reading the table.**
# * Real digits sit at the floor; mild noise already moves FID-LeNet by an order of magnitude, heavy
#   noise and blur by far more, while the classifier still recognises most damaged digits: class
#   accuracy alone would call them fine.
# * Dropping half the classes gives perfectly clean digits, high class accuracy on the classes that
#   remain, and a large FID *and* a histogram deviation near 0.1: the histogram names the failure
#   (mode dropping) that FID only signals.
#
# So every model in this course is reported with four numbers at the same N: FID-LeNet, the floor,
# class accuracy on class-conditional samples, and the histogram deviation.
# `diffussm evaluate --checkpoint CKPT` prints all four for a trained model.

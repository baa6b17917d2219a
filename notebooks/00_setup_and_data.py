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
# # 00 · Setup and data
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/diffussm-course/diffussm-course/blob/main/notebooks/00_setup_and_data.ipynb)
#
# This course builds **DiffuSSM** ("Diffusion Models Without Attention", Yan, Gu & Rush, CVPR 2024)
# from first principles and trains it on MNIST. Every notebook derives one piece, checks it against
# the library `diffussm_lib`, and then imports the library version, so the next notebook can build on it.
#
# **Objectives.** By the end of this notebook you can
# 1. set up the course in a clone or in Colab and read the one-line environment report;
# 2. load MNIST with the course's own loader (no torchvision), and know how it verifies the files;
# 3. describe the data: classes, counts, pixel statistics;
# 4. explain what padding 28x28 to 32x32 and scaling to [-1, 1] do, and why diffusion wants them.

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

# %% [markdown]
# The report says which **torch** you run, on which **device**, and whether the **fused SSM kernels**
# of `mamba-ssm` / `causal-conv1d` are usable. They exist only for CUDA GPUs; on a CPU (or without
# them installed) the course runs its own pure-PyTorch implementations, which notebooks 01-02 derive.
# *Fast mode* is the one knob that shrinks training and sampling so that CI can execute every
# notebook in minutes: set `DIFFUSSM_FAST=1` for that, leave it unset for the real sizes.

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch

from diffussm_lib import data as D

seed_everything(0)
print("data root:", D.data_root(), "| MNIST folder:", D.data_root() / "mnist")

# %% [markdown]
# ## Loading MNIST without torchvision
#
# MNIST ships as four *IDX* files: a tiny header (a magic number, then the size of each dimension,
# big-endian) followed by raw `uint8` bytes. The loader looks in a data root (argument `root=`,
# else `$DIFFUSSM_DATA_DIR`, else `~/.cache/diffussm`), downloads any missing file from public
# mirrors, and **verifies every file by the md5 of its decompressed bytes** before using it: a
# truncated download or a flipped byte raises an error that names the file; it is never used.
#
# Here is the header of the test images, parsed by hand, and the same thing through the library:

# %%
import gzip, struct
folder = D.data_root() / "mnist"
path = next(p for p in [folder / "t10k-images-idx3-ubyte.gz", folder / "t10k-images-idx3-ubyte"] if p.exists()) \
    if folder.exists() else None
if path is not None:
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    magic, n, h, w = struct.unpack(">IIII", raw[:16])
    print(f"magic 0x{magic:08x} (0x0803 = unsigned bytes, 3 dimensions), {n} images of {h}x{w}")
    print("md5 of the decompressed bytes:", D.md5_of(raw), "| expected:", D.MNIST_MD5["t10k-images-idx3-ubyte"])
    assert np.array_equal(np.frombuffer(raw, np.uint8, offset=16).reshape(n, h, w), D.parse_idx(raw))

# %%
train_x, train_y = D.load_mnist("train")
test_x, test_y = D.load_mnist("test")
print("train", tuple(train_x.shape), train_x.dtype, "| test", tuple(test_x.shape), "| labels", tuple(train_y.shape), train_y.dtype)
assert train_x.shape == (60000, 28, 28) and test_x.shape == (10000, 28, 28)

# %% [markdown]
# ## A tour of the digits
# Eight examples of each class:

# %%
fig, axes = plt.subplots(10, 8, figsize=(6, 7.5))
for c in range(10):
    idx = torch.nonzero(train_y == c).flatten()[:8]
    for j, i in enumerate(idx):
        ax = axes[c, j]
        ax.imshow(train_x[i], cmap="gray")
        ax.set_xticks([]); ax.set_yticks([])
    axes[c, 0].set_ylabel(str(c), rotation=0, labelpad=10)
fig.suptitle("MNIST: 8 training digits per class")
plt.tight_layout(); plt.show()

# %% [markdown]
# ### Class counts
# The classes are close to balanced, but not exactly (1 is the most common, 5 the least). A model
# that draws digits *unconditionally* should reproduce these proportions; a class-conditional model
# with uniform labels should not. Notebook 07 checks exactly this with a classifier.

# %%
train_counts = torch.bincount(train_y, minlength=10)
test_counts = torch.bincount(test_y, minlength=10)
print("class :", " ".join(f"{c:>5d}" for c in range(10)))
print("train :", " ".join(f"{int(n):>5d}" for n in train_counts))
print("test  :", " ".join(f"{int(n):>5d}" for n in test_counts))
assert int(train_counts.sum()) == 60000 and int(test_counts.sum()) == 10000
fig, ax = plt.subplots(figsize=(6, 2.5))
ax.bar(np.arange(10) - 0.2, train_counts / 60000, width=0.4, label="train")
ax.bar(np.arange(10) + 0.2, test_counts / 10000, width=0.4, label="test")
ax.axhline(0.1, color="k", lw=0.8, ls="--"); ax.set_xticks(range(10)); ax.set_ylabel("fraction"); ax.legend()
plt.show()

# %% [markdown]
# ### Pixel statistics
# MNIST is mostly background: about 80% of pixels are exactly 0, and the strokes are close to 255.
# The mean image is a blurry "average digit" in the centre; the outer 4 pixels are almost always black.

# %%
xf = train_x.float() / 255
print(f"mean {xf.mean():.4f}  std {xf.std():.4f}  fraction of zero pixels {(train_x == 0).float().mean():.3f}"
      f"  fraction > 0.5 {(xf > 0.5).float().mean():.3f}")
fig, axes = plt.subplots(1, 3, figsize=(10, 2.8))
axes[0].hist(train_x[:5000].flatten().numpy(), bins=64, log=True); axes[0].set_title("pixel values (log count)")
axes[1].imshow(xf.mean(0), cmap="magma"); axes[1].set_title("mean image")
axes[2].imshow(xf.std(0), cmap="magma"); axes[2].set_title("per-pixel std")
for a in axes[1:]:
    a.set_xticks([]); a.set_yticks([])
plt.tight_layout(); plt.show()

# %% [markdown]
# ## Padding to 32x32 and scaling to [-1, 1]
#
# * **Scaling.** Diffusion adds Gaussian noise of unit variance; the data should live on a comparable,
#   symmetric scale, so pixels go from `[0, 255]` to `[-1, 1]` (background = -1, ink = +1). Samplers
#   can then clip their prediction of the clean image to `[-1, 1]`.
# * **Padding.** DiffuSSM's hourglass shortens the sequence by M, and patching (when used) needs
#   H and W divisible by p; 32 = 2^5 is divisible by everything we will try, while 28 is not
#   divisible by 8 or 16. We **pad** with background (2 pixels each side), rather than *resize* as the
#   public lesson does: padding keeps every original pixel, resizing blurs the strokes.

# %%
ds = D.mnist_dataset("train", pad_to=32)
x, y = ds[0]
print("one item:", tuple(x.shape), x.dtype, f"range [{x.min():.0f}, {x.max():.0f}]", "label", int(y))
manual = D.pad_images(train_x[:1].float() / 127.5 - 1, 32)[0]
assert torch.equal(manual, x[0]), "padding and scaling by hand equals the dataset's"
assert torch.equal(D.to_uint8(x[0, 2:30, 2:30]), train_x[0]), "the original 28x28 pixels survive exactly"
fig, axes = plt.subplots(1, 2, figsize=(5, 2.6))
axes[0].imshow(train_x[0], cmap="gray"); axes[0].set_title("original 28x28, [0, 255]")
im = axes[1].imshow(x[0], cmap="gray", vmin=-1, vmax=1); axes[1].set_title("padded 32x32, [-1, 1]")
plt.colorbar(im, ax=axes[1], fraction=0.046); plt.tight_layout(); plt.show()

# %% [markdown]
# ### The same API for colour images
# `ImageDataset` takes any `uint8` array of shape (N, H, W) or (N, H, W, C) with C = 1 or 3, and
# `load_image_folder` reads a folder with one sub-folder per class. The loaders for CIFAR-10
# (`load_cifar10`) and MNIST both end in the same dataset type, so every later notebook works on
# 1- and 3-channel data alike. A quick check on random colour images:

# %%
rgb = np.random.default_rng(0).integers(0, 256, size=(4, 28, 28, 3), dtype=np.uint8)
rgb_ds = D.ImageDataset(rgb, [0, 1, 2, 3], pad_to=32)
print("3-channel item:", tuple(rgb_ds[0][0].shape), "channels:", rgb_ds.channels)

# %% [markdown]
# ## The course map
#
# | # | notebook | builds | library folder |
# |---|---|---|---|
# | 00 | setup and data | the loader, this tour | `diffussm_lib/data.py`, `config.py`, `env.py` |
# | 01 | state space models | continuous SSM, discretisation, S4D kernel, FFT convolution | `diffussm_lib/ssm/` |
# | 02 | selective and bidirectional SSM | Mamba's selective scan, a fast CPU scan, the bidirectional layer | `diffussm_lib/ssm/` |
# | 03 | the hourglass DiffuSSM block | block, adaLN-Zero conditioning, the denoiser, the DiT baseline | `diffussm_lib/models/` (start reading at `models/diffussm.py`) |
# | 04 | diffusion | schedules, loss, DDPM/DDIM samplers, guidance | `diffussm_lib/diffusion/` |
# | 05 | training | the training loop, EMA, checkpoints, the CLI | `diffussm_lib/training/`, `cli.py` |
# | 06 | sampling | the denoising viewer with sliders | `diffussm_lib/sampling/` |
# | 07 | evaluation | FID-LeNet, DiffuSSM vs DiT at equal compute, ablations | `diffussm_lib/evaluation/` |
#
# Next: **01 · State space models**, where we build the long-range layer that replaces attention.

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
# 4. explain what scaling to [-1, 1] does and why diffusion wants it, and where padding 28x28 to 32x32
#    is used (FID-LeNet's input, an option) while the course's models train on 28x28;
# 5. state in one page what the paper does, how the course's setting differs from it, and the letters
#    every notebook uses.
#
# *Outputs shown: executed in full mode on 2026-12-04, CPU Intel(R) Xeon(R) Processor, 2 torch threads, in 8 s.*

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

# %% [markdown]
# The report says which **torch** you run, on which **device**, and whether the **fused SSM kernels**
# of `mamba-ssm` / `causal-conv1d` are usable. They exist only for CUDA GPUs; on a CPU (or without
# them installed) the course runs its own pure-PyTorch implementations, which notebooks 01-02 derive.
# *Fast mode* is the one knob that shrinks training and sampling so that CI can execute every
# notebook in minutes: set `DIFFUSSM_FAST=1` for that, leave it unset for the real sizes.

# %%
import json
import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

import diffussm_lib
from diffussm_lib import data

seed_everything(0)
ROOT = Path(diffussm_lib.__file__).resolve().parents[1]        # the course folder (clone or Colab)
print("data root:", data.data_root(), "| MNIST folder:", data.data_root() / "mnist")

# %% [markdown]
# ## The paper on one page
#
# **What DiffuSSM replaces, and why.** A DiT-style diffusion backbone (Peebles & Xie 2022) mixes
# information between positions with self-attention, whose cost grows as $L^2$ in the number of
# tokens $L$. DiT keeps $L$ small by cutting its input into patches (DiT-XL/2: 2x2 patches), and the
# DiffuSSM paper argues that patching throws away high-frequency detail. DiffuSSM (Yan, Gu & Rush,
# CVPR 2024) removes attention and patching from the long-range path: a **bidirectional state space
# model** mixes all positions at a cost that grows about linearly in $L$.
#
# **Input.** The noised latent of a frozen Stable Diffusion VAE: 32x32x4 for a 256x256 image,
# flattened in raster order to $L = 32 \cdot 32 = 1024$ positions, with no patching.
#
# **The block** (notebook 03 builds it, and states the course's reading of a figure and equations
# that, as reviewers noted, do not match exactly). An **hourglass** with ratio $M = 2$: dense layers
# work on the shortened sequence of $J = L/M$ tokens (in the course's reading, this shortened sequence
# is also the residual stream between blocks; the paper does not state it, and notebook 03 discusses
# the alternative); they expand it to the full length $L$; a **bidirectional SSM** (S4D, in the
# gated style of BiGS, "Pretraining Without Attention") runs on all $L$ positions in both
# directions; dense layers shrink the result back to $J$ tokens; a **gate** (the elementwise product
# of this branch with a second dense branch of the block's input) and a skip connection close the
# block. Class and timestep condition every position, as in DiT.
#
# **Size and results.** DiffuSSM-XL has 29 layers of width $D = 1152$ (about 673 M parameters).
# ImageNet 256x256, FID-50K with 250 DDPM steps; "guidance" is classifier-free guidance (the paper's
# "-G" rows):
#
# | | DiT-XL/2 | DiffuSSM-XL |
# |---|---|---|
# | long-range mixing | attention over L = 256 tokens (2x2 patches) | bidirectional S4D over L = 1,024 positions |
# | layers, width D, parameters | 28, 1152, 675 M | 29, 1152, about 673 M |
# | GFLOPs per forward pass | 119 | about 280 |
# | training images | 1,792 M | 660 M |
# | FID / sFID / IS, no guidance | 9.62 / 6.85 / 121.5 | **9.07** / **5.52** / 118.32 |
# | FID / sFID / IS, guidance | **2.27** / 4.60 / **278.24** | 2.28 / **4.49** / 259.13 |
# | precision / recall, guidance | 0.83 / 0.57 | 0.86 / 0.56 |
#
# Read the cost row carefully: **one forward pass of DiffuSSM-XL costs more than one of DiT-XL/2**
# (about 280 against 119 GFLOPs). Its total training compute is lower only because it was trained on
# about 2.7x fewer images; the paper's compute column is the forward cost times the images seen, as
# the next cell checks. At 512x512 the guided DiffuSSM-XL is behind (FID 3.41 against DiT-XL/2's 3.04,
# with 302 M training images against 768 M). Against a DiT *without* patching (L = 1,024 tokens of
# attention) DiffuSSM is the cheaper network, increasingly so as the resolution grows; notebook 07
# measures that scaling for the course's two backbones (same patch size, inputs from 28x28 to 256x256).
# For such a DiT (DiT-XL/1: 1,024 tokens instead of DiT-XL/2's 256) the attention term alone grows
# 16x, as $L^2$; its dense layers, most of DiT-XL/2's FLOPs at 256 tokens, grow only 4x, as $L$; so
# the whole network costs about 4.4x DiT-XL/2, not 16x. The next cell prints both ratios from the
# course's closed-form FLOP count of a DiT block (`dit_block_flops_formula`, notebook 03), after
# checking that 28 such blocks of width 1152 at 256 tokens give the paper's 119 GFLOPs (counted, as
# DiT counts them, in multiply-adds; the embedders and the output layer add little).

# %%
from diffussm_lib.models import dit_block_flops_formula   # FLOPs (2 x multiply-adds) of one DiT block, per image

paper = {"DiT-XL/2": dict(gflops=119, images=1792e6, total_gflops=2.13e11),
         "DiffuSSM-XL": dict(gflops=280, images=660e6, total_gflops=1.85e11)}
L_paper, M_paper = 32 * 32, 2
print(f"SD-VAE latent 32x32x4, no patches: L = {L_paper} positions; hourglass M = {M_paper}: J = {L_paper // M_paper} tokens")
D_xl, depth_xl, L_xl2 = 1152, 28, L_paper // 4                # DiT-XL: width, blocks; 2x2 patches: 256 tokens
attention = lambda L: 4 * L * L * D_xl                        # the L^2 term of a block: Q K^T and the weighted sum of V
xl2_gmacs = depth_xl * dit_block_flops_formula(L_xl2, D_xl) / 2e9
print(f"DiT-XL/2: {depth_xl} blocks at L = {L_xl2}: {xl2_gmacs:.1f} G multiply-adds (the paper: "
      f"{paper['DiT-XL/2']['gflops']} GFLOPs)")
assert abs(xl2_gmacs / paper["DiT-XL/2"]["gflops"] - 1) < 0.02
print(f"DiT-XL/1 (no patches, L = {L_paper}) against DiT-XL/2: the attention term costs "
      f"{attention(L_paper) / attention(L_xl2):.0f}x as much, a whole block "
      f"{dit_block_flops_formula(L_paper, D_xl) / dit_block_flops_formula(L_xl2, D_xl):.1f}x")
for name, r in paper.items():
    total = r["gflops"] * r["images"]
    print(f"{name:12s}: {r['gflops']} GFLOPs x {r['images'] / 1e6:,.0f} M images = {total:.3g} GFLOPs "
          f"(the paper's column: {r['total_gflops']:.3g})")
    assert abs(total / r["total_gflops"] - 1) < 0.01
ratio_fwd = paper["DiffuSSM-XL"]["gflops"] / paper["DiT-XL/2"]["gflops"]
ratio_img = paper["DiT-XL/2"]["images"] / paper["DiffuSSM-XL"]["images"]
print(f"DiffuSSM-XL: {ratio_fwd:.2f}x the FLOPs per forward pass, trained on {ratio_img:.2f}x fewer images")
assert ratio_fwd > 1 and 2.6 < ratio_img < 2.8

# %% [markdown]
# ## The course's notation
#
# One meaning per letter in every notebook and in the library's docstrings (the glossary at the top
# of `diffussm_lib/__init__.py`); the paper's name is in brackets where it has one. The last column
# is the value in the course's main model, `configs/mnist_diffussm.yaml`, computed in the next cell.
#
# | letter | meaning | course model |
# |---|---|---|
# | B | batch size | 64 (training) |
# | C | image channels | 1 |
# | H, W | image height and width | 28, 28 |
# | p | patch size (the paper uses none: p = 1) | 2 |
# | L | sequence length the SSM sees, L = HW/p² [L] | 196 |
# | M | hourglass ratio: the dense layers see J = L/M tokens [M] | 2 |
# | J | shortened length, J = L/M: the residual stream of DiffuSSM [J] | 98 |
# | D | model width (`hidden_dim`) [D] | 128 |
# | G | channels of an S4D bank: D, or 2D when one bank holds both directions | 256 |
# | N | SSM state size (`ssm_state`; S4D keeps N/2 complex modes) [N] | 64 |
# | T | diffusion steps of the noise schedule | 1000 |
# | S | sampling steps of one sampler run (DDIM: 50 by default) | 25 for the reported numbers |
# | F | feature width of a token, F = C p² after patchify | 4 |
# | K | an SSM's convolution kernel $K_0, \dots, K_{L-1}$ | |
# | E | the SSM's skip term, $y = K * u + E\,u$ (the code keeps the S4 / mamba-ssm name `D`) | |
# | Q | a block length: $\lceil\sqrt L\,\rceil$ in the S4D kernel (notebook 01); in the selective scan, sized to about $2^{18}$ numbers per block (notebook 02) | 14 (kernel, L = 196) |
#
# Lower-case $k, l, j, n, t$ are indices. DiT's residual stream has L tokens, so the shapes written
# (B, J, D) read (B, L, D) there. Counts of samples are written out ("1,000 samples"), never with a
# letter of this table.

# %%
from diffussm_lib import build_model, count_params, load_config
from diffussm_lib.diffusion.samplers import DDIM_DEFAULT_STEPS
from diffussm_lib.ssm import S4D

cfg = load_config(ROOT / "configs" / "mnist_diffussm.yaml")
m = cfg.model
model = build_model(m)
n_state = {mod.ssm_state for mod in model.modules() if isinstance(mod, S4D)}
letters = dict(B=cfg.train.batch_size, C=m.in_channels, H=m.image_size, W=m.image_size, p=m.patch_size,
               L=(m.image_size // m.patch_size) ** 2, M=m.hourglass_ratio, D=m.hidden_dim,
               N=n_state.pop(), T=cfg.diffusion.timesteps, F=m.in_channels * m.patch_size ** 2)
letters["J"] = letters["L"] // letters["M"]
letters["Q"] = math.isqrt(letters["L"] - 1) + 1            # ceil(sqrt(L)), the kernel's block length (notebook 01)
print(" ".join(f"{k}={v}" for k, v in letters.items()), f"| DDIM default S={DDIM_DEFAULT_STEPS}")
assert letters == dict(B=64, C=1, H=28, W=28, p=2, L=196, M=2, D=128, N=64, T=1000, F=4, J=98, Q=14)
assert model.check_size(28, 28) == letters["L"]            # the model agrees: 196 tokens
print(f"parameters: {count_params(model):,}")

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
folder = data.data_root() / "mnist"
path = next(p for p in [folder / "t10k-images-idx3-ubyte.gz", folder / "t10k-images-idx3-ubyte"] if p.exists()) \
    if folder.exists() else None
if path is not None:
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    magic, count, h, w = struct.unpack(">IIII", raw[:16])
    print(f"magic 0x{magic:08x} (0x0803 = unsigned bytes, 3 dimensions), {count} images of {h}x{w}")
    print("md5 of the decompressed bytes:", data.md5_of(raw), "| expected:", data.MNIST_MD5["t10k-images-idx3-ubyte"])
    assert np.array_equal(np.frombuffer(raw, np.uint8, offset=16).reshape(count, h, w), data.parse_idx(raw))

# %%
train_x, train_y = data.load_mnist("train")
test_x, test_y = data.load_mnist("test")
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
# The classes are close to balanced, but not exactly (1 is the most common, 5 the least, in both
# splits). A model that draws digits *unconditionally* should reproduce these proportions; a
# class-conditional model sampled with uniform labels should give each class a tenth. Notebook 07
# checks the second with a classifier: its *histogram deviation* is the largest gap between the
# frequency of a predicted class and 1/10.

# %%
train_counts = torch.bincount(train_y, minlength=10)
test_counts = torch.bincount(test_y, minlength=10)
print("class :", " ".join(f"{c:>5d}" for c in range(10)))
print("train :", " ".join(f"{int(n):>5d}" for n in train_counts))
print("test  :", " ".join(f"{int(n):>5d}" for n in test_counts))
assert int(train_counts.sum()) == 60000 and int(test_counts.sum()) == 10000
assert int(train_counts.argmax()) == int(test_counts.argmax()) == 1
assert int(train_counts.argmin()) == int(test_counts.argmin()) == 5
fig, ax = plt.subplots(figsize=(6, 2.5))
ax.bar(np.arange(10) - 0.2, train_counts / 60000, width=0.4, label="train")
ax.bar(np.arange(10) + 0.2, test_counts / 10000, width=0.4, label="test")
ax.axhline(0.1, color="k", lw=0.8, ls="--"); ax.set_xticks(range(10)); ax.set_ylabel("fraction"); ax.legend()
ax.set_xlabel("digit class"); ax.set_title("class frequencies (dashed: 1/10)", fontsize=10)
plt.tight_layout(); plt.show()

# %% [markdown]
# ### Pixel statistics
# MNIST is mostly background: about 80% of pixels are exactly 0, and the strokes are close to 255.
# The mean image is a blurry "average digit" in the centre; the outer 4 pixels are almost always black.

# %%
xf = train_x.float() / 255
ring = torch.ones(28, 28, dtype=torch.bool)
ring[4:24, 4:24] = False                                   # the outer 4 pixels of each side
print(f"mean {xf.mean():.4f}  std {xf.std():.4f}  fraction of zero pixels {(train_x == 0).float().mean():.3f}"
      f"  fraction > 0.5 {(xf > 0.5).float().mean():.3f}")
print(f"outer 4-pixel ring: {(train_x[:, ring] == 0).float().mean():.3f} of its pixels are 0")
assert 0.78 < (train_x == 0).float().mean() < 0.82 and (train_x[:, ring] == 0).float().mean() > 0.98
fig, axes = plt.subplots(1, 3, figsize=(10, 2.8))
axes[0].hist(train_x[:5000].flatten().numpy(), bins=64, log=True); axes[0].set_title("pixel values (log count)")
axes[0].set_xlabel("uint8 value, first 5,000 images")
axes[1].imshow(xf.mean(0), cmap="magma"); axes[1].set_title("mean image")
axes[2].imshow(xf.std(0), cmap="magma"); axes[2].set_title("per-pixel std")
for a in axes[1:]:
    a.set_xticks([]); a.set_yticks([])
plt.tight_layout(); plt.show()

# %% [markdown]
# ## Scaling to [-1, 1]; 28x28 for the models, 32x32 for FID-LeNet
#
# * **Scaling.** Diffusion adds Gaussian noise of unit variance; the data should live on a comparable,
#   symmetric scale, so pixels go from `[0, 255]` to `[-1, 1]` (background = -1, ink = +1). Samplers
#   can then clip their prediction of the clean image to `[-1, 1]`.
# * **The models train on 28x28.** The course's model configs keep MNIST's own size (`data.pad_to: null`,
#   `model.image_size: 28`): with 2x2 patches that is 14 x 14 = 196 tokens, and the hourglass's
#   $M = 2$ divides 196. A size only has to be divisible by the patch size $p$, and $L$ by $M$
#   (Exercise 4 lists what fits). The one exception is the laptop recipe of notebook 05
#   (`configs/mnist_speedrun.yaml`): it pads to 32x32 so that 4x4 patches fit, 8 x 8 = 64 tokens.
# * **Padding to 32x32** adds 2 pixels of background on each side. It is what the FID-LeNet feature
#   extractor of notebook 07 takes (`evaluation/lenet.py` pads 28x28 images before classifying them),
#   and it is an option for training: `data.pad_to: 32` in a config (also the value a config gets when
#   it leaves `pad_to` out, and `mnist_dataset`'s default unless you pass `pad_to=None`; notebook 04's
#   small stand-in denoiser, which is not one of the course's models, trains on it). Where the
#   course pads, it pads rather than *resizes* (the public MNIST lesson resizes to 32x32): padding
#   keeps every original pixel, resizing blurs the strokes.
#
# The dataset the shipped configs build, and its padded variant:

# %%
from diffussm_lib.config import DataConfig
from diffussm_lib.evaluation.lenet import as_classifier_input

for f in sorted((ROOT / "configs").glob("*.yaml")):       # every shipped MNIST config: its size and tokens
    conf = load_config(f)
    if conf.data.name == "mnist":
        mc = conf.model
        assert (mc.image_size, conf.data.pad_to) in ((28, None), (32, 32)), f.name   # 28x28, or padded for 4x4 patches
        L = (mc.image_size // mc.patch_size) ** 2
        assert mc.image_size % mc.patch_size == 0 and L % mc.hourglass_ratio == 0, f.name
        print(f"{f.name:<24} {mc.image_size}x{mc.image_size}, pad_to {conf.data.pad_to}, patch {mc.patch_size}: L = {L}")
ds28 = data.dataset_from_config(cfg.data, split="test")   # what configs/mnist_diffussm.yaml trains on
x, y = ds28[0]
print("config's dataset:", tuple(x.shape), x.dtype, f"range [{x.min():.0f}, {x.max():.0f}]", "label", int(y))
assert cfg.data.pad_to is None and x.shape == (1, 28, 28)
assert torch.equal(x[0], test_x[0].float() / 127.5 - 1), "scaling by hand equals the dataset's"
assert torch.equal(data.to_uint8(x[0]), test_x[0]), "and it maps back to the same bytes"

ds32 = data.mnist_dataset("test")                          # its default: pad_to=32, FID-LeNet's input size
assert DataConfig(name="mnist").pad_to == 32, "a config without data.pad_to pads (as the text says)"
x32 = ds32[0][0]
assert x32.shape == (1, 32, 32)
manual = data.pad_images(x[None], 32)[0]
assert torch.equal(manual, x32), "padding by hand equals the dataset's"
assert torch.equal(as_classifier_input(x[None])[0], x32), "FID-LeNet pads 28x28 images the same way"
assert torch.equal(x32[0, 2:30, 2:30], x[0]), "the original 28x28 pixels survive exactly"
print("padded:", tuple(x32.shape), "| border values:", torch.unique(torch.cat([x32[0, :2].flatten(), x32[0, -2:].flatten()])).tolist())
fig, axes = plt.subplots(1, 3, figsize=(7.5, 2.6))
axes[0].imshow(test_x[0], cmap="gray"); axes[0].set_title("uint8 28x28, [0, 255]")
axes[1].imshow(x[0], cmap="gray", vmin=-1, vmax=1); axes[1].set_title("training input 28x28, [-1, 1]")
im = axes[2].imshow(x32[0], cmap="gray", vmin=-1, vmax=1); axes[2].set_title("padded 32x32 (FID-LeNet)")
plt.colorbar(im, ax=axes[2], fraction=0.046); plt.tight_layout(); plt.show()

# %% [markdown]
# ### The same API for colour images
# `ImageDataset` takes any `uint8` array of shape (count, H, W) or (count, H, W, C) with C = 1 or 3,
# and `load_image_folder` reads a folder with one sub-folder per class. The loaders for CIFAR-10
# (`load_cifar10`) and MNIST both end in the same dataset type, so every later notebook works on
# 1- and 3-channel data alike. A quick check on random colour images:

# %%
rgb = np.random.default_rng(0).integers(0, 256, size=(4, 28, 28, 3), dtype=np.uint8)
rgb_ds = data.ImageDataset(rgb, [0, 1, 2, 3])
print("3-channel item:", tuple(rgb_ds[0][0].shape), "channels:", rgb_ds.channels)
assert rgb_ds[0][0].shape == (3, 28, 28) and rgb_ds.channels == 3

# %% [markdown]
# ## What the course does differently from the paper, and why
#
# The course keeps the paper's architecture (the hourglass with $M = 2$, bidirectional S4D at full
# length $L$, gating, DiT's conditioning) and changes what a CPU or a free Colab GPU cannot afford,
# plus a few training choices. The course's column holds the values of `configs/mnist_diffussm.yaml`
# (the CPU model) and, for the pretrained checkpoint, `configs/mnist_diffussm_long.yaml`; the cell
# after the table reads them and checks every row.
#
# | | paper (ImageNet 256x256) | course (MNIST) | why |
# |---|---|---|---|
# | data | latents of a frozen Stable Diffusion VAE, 32x32x4 | pixels of 28x28x1 MNIST digits (`model.image_size: 28`, `in_channels: 1`, `data.pad_to: null`) | no VAE to download or run; MNIST is small enough to model in pixel space |
# | patches | none (p = 1): L = 1,024 | 2x2 (`model.patch_size: 2`): L = 196; p = 1 would give L = 784 | p = 1 costs several times more per image on a CPU: README's ablation table and notebook 07 section 6 (the cell below prints the recorded ratio) |
# | hourglass | M = 2: J = 512 | M = 2 (`hourglass_ratio: 2`): J = 98 | the same |
# | width, depth | D = 1152, 29 layers, about 673 M parameters | D = 128, 4 blocks (`hidden_dim`, `depth`), 1.41 M parameters | trains on a 2-core CPU in about an hour (the cell below prints the recorded speed's estimate) |
# | SSM | bidirectional S4D in the style of BiGS (whose state size is 64) | bidirectional S4D (`ssm_core: s4d`), N = 64 (`ssm_state: null`: S4D's default), S4D-Lin initialisation (`ssm_init: lin`, the default) | the same layer; notebook 01 derives S4D-Lin and S4D-Inv |
# | diffusion | DiT's recipe (ε-prediction, linear β schedule, learned variance); the paper says it trains following DiT | v-prediction (`prediction: v`), cosine schedule (`schedule: cosine`), fixed variance (`learn_sigma: false`) | at high noise an error in ε reaches the predicted image multiplied by a factor that grows without bound as the signal vanishes (about 2·10⁴ at the cosine schedule's last, clipped step), an error in v by at most 1; the linear schedule spends its last few hundred steps on nearly pure noise (both measured in notebook 04). The library implements the learned variance (notebook 04, section 12); the shipped configs leave it off |
# | class embedding init | DiT: normal, std 0.02 | normal, std 1 (`LabelEmbedder` in `models/diffussm.py`) | with 0.02, small CPU-budget models ignored their labels |
# | sampler for reported numbers | 250 DDPM steps | DDIM, 25 steps | 10x fewer network calls |
# | metric | FID-50K on Inception features | FID-LeNet on 10,000 samples, with its real-vs-real floor (notebook 07) | Inception features need downloaded weights and suit MNIST poorly |
# | training | batch 256 on 8 GPUs, EMA; 660 M images for XL | CPU config: batch 64, 4,000 steps, EMA; the pretrained checkpoint: batch 128, 15,671 steps (about 2.0 M images) on one GPU | minutes, not days |

# %%
from diffussm_lib.models.diffussm import LABEL_INIT_STD

cfg_long = load_config(ROOT / "configs" / "mnist_diffussm_long.yaml")

for conf in (cfg, cfg_long):                               # the same model in both configs
    mc = conf.model
    assert (mc.arch, mc.image_size, mc.in_channels, conf.data.name, conf.data.pad_to) == ("diffussm", 28, 1, "mnist", None)
    assert (mc.patch_size, mc.hourglass_ratio, mc.hidden_dim, mc.depth) == (2, 2, 128, 4)
    assert (mc.ssm_core, mc.bidirectional, mc.ssm_state, mc.ssm_init, mc.learn_sigma) == ("s4d", True, None, "lin", False)
    assert (conf.diffusion.prediction, conf.diffusion.schedule) == ("v", "cosine")
assert letters["N"] == 64 and LABEL_INIT_STD == 1.0
assert round(count_params(model) / 1e6, 2) == 1.41
assert (cfg.train.batch_size, cfg.train.max_steps, cfg_long.train.batch_size) == (64, 4000, 128)

card = ROOT / "checkpoints" / "mnist_diffussm" / "evaluations"
reports = [json.loads(p.read_text()) for p in sorted(card.glob("*.json"))]
for r in reports:
    print(f"pretrained, {r['sampler']} {r['steps']} steps, w = {r['guidance']}: FID-LeNet {r['fid']:.2f} "
          f"(floor {r['floor']:.2f}) on {r['n']:,} samples, class accuracy {100 * r['class_accuracy']:.1f}%")
    assert (r["sampler"], r["steps"], r["n"]) == ("ddim", 25, 10000)
step = reports[0]["step"]
print(f"pretrained: {step:,} steps x batch {cfg_long.train.batch_size} = {step * cfg_long.train.batch_size / 1e6:.2f} M images")
assert abs(step * cfg_long.train.batch_size / 1e6 - 2.0) < 0.05

abl = json.loads((ROOT / "benchmarks" / "results" / "ablations.json").read_text())["results"]
speed = {r["name"]: r["images_per_sec"] for r in abl}
base, p1 = speed["DiffuSSM (S4D, M=2, patch 2, bidirectional)"], speed["patch 1 (L = 784)"]
print(f"recorded on a 2-core CPU (README, ablations): patch 2 trains {base} images/s, patch 1 {p1}: "
      f"{base / p1:.1f}x the time per image")
print(f"the CPU config's {cfg.train.max_steps:,} steps of batch {cfg.train.batch_size} at {base} images/s: "
      f"about {cfg.train.max_steps * cfg.train.batch_size / base / 60:.0f} min")
assert base / p1 > 3

# %% [markdown]
# ## The course map
#
# | # | notebook | builds | library folder |
# |---|---|---|---|
# | 00 | setup and data | the loader, this tour, the notation | `diffussm_lib/data.py`, `config.py`, `env.py`, `atomic.py` |
# | 01 | state space models | continuous SSM, ZOH, recurrence = convolution, S4D kernel, FFT convolution | `diffussm_lib/ssm/` |
# | 02 | selective and bidirectional SSM | Mamba's selective scan, a fast CPU scan, causal conv1d, the bidirectional layer | `diffussm_lib/ssm/` |
# | 03 | the hourglass DiffuSSM block | block, adaLN-Zero conditioning, the denoiser, the DiT baseline, FLOPs | `diffussm_lib/models/` (start reading at `models/diffussm.py`) |
# | 04 | diffusion | forward process, schedules, loss, DDPM/DDIM samplers, guidance, learned variance | `diffussm_lib/diffusion/` |
# | 05 | training | the training loop, EMA, checkpoints, the CLI | `diffussm_lib/training/`, `cli.py` |
# | 06 | sampling | DDPM vs DDIM, the denoising viewer with sliders, guidance sweeps | `diffussm_lib/sampling/` |
# | 07 | evaluation | FID-LeNet and its floor, DiffuSSM vs DiT at equal training time, ablations, scaling | `diffussm_lib/evaluation/` |
# | 08 | scan orders | raster, snake, column, Hilbert, random orders; the paper's claims at course scale | `diffussm_lib/models/scan_orders.py` |
#
# Each notebook ends with exercises; their worked solutions are in `notebooks/solutions/`.
#
# ### How long each notebook takes
#
# Measured by `scripts/execute_notebooks.py`, which executes a notebook top to bottom in a fresh kernel
# and stores the time in `benchmarks/results/notebook_times.json` (fast mode is what CI and `pytest`
# run; full mode is what you get when you open a notebook). The machine is named in each row.

# %%
from diffussm_lib.env import measured_on   # the machine, or one per mode where they differ

times = json.loads((ROOT / "benchmarks" / "results" / "notebook_times.json").read_text())
minutes = lambda row, mode: f"{row[mode]['seconds'] / 60:.1f} min" if mode in row else "not measured"
print(f"{'notebook':<36} {'fast mode':>12} {'full mode':>12}   measured on")
for name, row in sorted(times.items()):
    print(f"{name:<36} {minutes(row, 'fast'):>12} {minutes(row, 'full'):>12}   {measured_on(row)}")

# %% [markdown]
# ## Exercises
#
# **Exercise 1.** Verify an MNIST file yourself. Read `t10k-labels-idx1-ubyte.gz` (or its
# uncompressed copy) from the MNIST folder, decompress it, compute the md5 of the bytes with
# `hashlib` and compare it with `data.MNIST_MD5`. Parse its 8-byte header (magic number, count) and
# check that the labels equal `test_y`. Then change one byte and show that the md5 no longer matches.
# *Hint:* `hashlib.md5(raw).hexdigest()`; `struct.unpack(">II", raw[:8])`; `bytearray(raw)` can be changed.
#
# **Exercise 2.** Pixel statistics after scaling. Predict the mean and the standard deviation of the
# training pixels in [-1, 1] from the [0, 1] statistics printed above, then check with
# `data.to_model_range`. Predict the mean after padding to 32x32 as well, and check it.
# *Hint:* $x \mapsto 2x - 1$ doubles the standard deviation; padding adds $32^2 - 28^2 = 240$
# background pixels (value $-1$) to every image's 784.
#
# **Exercise 3.** Padding keeps the digit; resizing does not. Pad the first 100 test digits (in
# [-1, 1]) to 32x32 with `data.pad_images`, crop the centre back and check that it equals the original
# exactly and that the 2-pixel border is all -1. Then resize 28 -> 32 -> 28 with
# `torch.nn.functional.interpolate(..., mode="bilinear")` and measure how far the round trip lands
# from the original.
# *Hint:* the centre of a 32x32 pad is `[..., 2:30, 2:30]`; report the largest absolute error, in
# [-1, 1] units, over the 100 digits.
#
# **Exercise 4.** Which sizes fit? With $L = HW/p^2$ and $J = L/M$, list every pair $(p, M)$ with
# $p \in \{1, 2, 4, 7, 8\}$ and $M \in \{1, 2, 4\}$ that a DiffuSSM accepts on 28x28 images and on
# 32x32 images (H and W divisible by p, L divisible by M), with L and J. Check your list against
# `check_image_size` from `diffussm_lib.models.diffussm`, which raises `ValueError` for the others.
# Which pairs does the paper's choice (no patches, M = 2) leave on each size?
# *Hint:* loop over the 15 pairs per size, predict, then call
# `check_image_size(H, H, patch_size=p, hourglass_ratio=M)` inside `try` / `except ValueError`.
#
# ## Check your understanding
#
# 1. One forward pass of DiffuSSM-XL costs more FLOPs than one of DiT-XL/2. How does it end up with
#    less training compute in the paper's table, and what would an equal number of training images
#    do to that comparison?
# 2. The paper feeds every latent position to the SSM, without patches; the course uses 2x2 patches.
#    What does the course give up, and why does it accept that?
# 3. Why does the loader check the md5 of the *decompressed* bytes rather than of the downloaded
#    `.gz` file?
#
# ## References
#
# * J. N. Yan, J. Gu, A. M. Rush. *Diffusion Models Without Attention* (DiffuSSM). 2023,
#   arXiv 2311.18257 (CVPR 2024).
# * W. Peebles, S. Xie. *Scalable Diffusion Models with Transformers* (DiT). 2022, arXiv 2212.09748.
# * J. Wang, J. N. Yan, A. Gu, A. M. Rush. *Pretraining Without Attention* (BiGS). 2022, arXiv 2212.10544.
# * A. Gu, A. Gupta, K. Goel, C. Ré. *On the Parameterization and Initialization of Diagonal State
#   Space Models* (S4D). 2022, arXiv 2206.11893.
# * J. Ho, A. Jain, P. Abbeel. *Denoising Diffusion Probabilistic Models* (DDPM). 2020, arXiv 2006.11239.
# * A. Nichol, P. Dhariwal. *Improved Denoising Diffusion Probabilistic Models*. 2021, arXiv 2102.09672
#   (the cosine schedule and the learned variance).
# * J. Song, C. Meng, S. Ermon. *Denoising Diffusion Implicit Models* (DDIM). 2020, arXiv 2010.02502.
# * T. Salimans, J. Ho. *Progressive Distillation for Fast Sampling of Diffusion Models*
#   (v-prediction). 2022, arXiv 2202.00512.
# * J. Ho, T. Salimans. *Classifier-Free Diffusion Guidance*. 2022, arXiv 2207.12598.
# * M. Heusel, H. Ramsauer, T. Unterthiner, B. Nessler, S. Hochreiter. *GANs Trained by a Two
#   Time-Scale Update Rule Converge to a Local Nash Equilibrium* (FID). 2017, arXiv 1706.08500.
# * Y. LeCun, L. Bottou, Y. Bengio, P. Haffner. *Gradient-Based Learning Applied to Document
#   Recognition* (LeNet, MNIST). Proceedings of the IEEE, 1998.
#
# Next: **01 · State space models**, where we build the long-range layer that replaces attention.

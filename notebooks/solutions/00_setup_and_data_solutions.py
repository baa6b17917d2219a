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
# # 00 · Solutions: Setup and data
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/diffussm-course/diffussm-course/blob/main/notebooks/solutions/00_setup_and_data_solutions.ipynb)
#
# Worked solutions to the exercises of notebook 00, each checked with `assert`s, and answers to its
# three questions.
#
# *Outputs shown: executed in full mode on 2026-12-03, CPU AMD EPYC, 2 torch threads, in 5 s.*

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
import gzip
import hashlib
import struct

import torch
import torch.nn.functional as F

from diffussm_lib import data
from diffussm_lib.models.diffussm import check_image_size

seed_everything(0)
train_x, train_y = data.load_mnist("train")
test_x, test_y = data.load_mnist("test")

# %% [markdown]
# ## Solution 1
#
# The loader keeps either the `.gz` file or the raw one; we read whichever is there (calling
# `load_mnist` above made sure one is).

# %%
folder = data.data_root() / "mnist"
name = "t10k-labels-idx1-ubyte"
path = next(p for p in (folder / (name + ".gz"), folder / name) if p.exists())
raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
digest = hashlib.md5(raw).hexdigest()
print(path.name, "md5", digest, "| expected", data.MNIST_MD5[name])
assert digest == data.MNIST_MD5[name]

magic, count = struct.unpack(">II", raw[:8])
print(f"magic 0x{magic:08x} (0x0801: unsigned bytes, 1 dimension), {count} labels")
assert magic == 0x0801 and count == 10000 and len(raw) == 8 + count
assert torch.equal(torch.frombuffer(bytearray(raw[8:]), dtype=torch.uint8).long(), test_y)

damaged = bytearray(raw)
damaged[100] ^= 1                                          # flip one bit of one label
print("after flipping one bit:", hashlib.md5(damaged).hexdigest())
assert hashlib.md5(damaged).hexdigest() != data.MNIST_MD5[name]

# %% [markdown]
# ## Solution 2
#
# $x \mapsto 2x - 1$ maps the mean $\mu$ to $2\mu - 1$ and the standard deviation $\sigma$ to
# $2\sigma$. Padding adds 240 pixels of value $-1$ to each image's 784, so the padded mean is the
# weighted average $(784\,\mu' + 240 \cdot (-1)) / 1024$.

# %%
x01 = train_x.float() / 255                                # float32: 188 MB for 60,000 digits
mu, sigma = x01.mean().item(), x01.std().item()
scaled = data.to_model_range(train_x)
pred_mean, pred_std = 2 * mu - 1, 2 * sigma
print(f"[0, 1]: mean {mu:.4f} std {sigma:.4f} -> predicted [-1, 1]: mean {pred_mean:.4f} std {pred_std:.4f}; "
      f"measured {scaled.mean():.4f} {scaled.std():.4f}")
assert abs(scaled.mean().item() - pred_mean) < 1e-4 and abs(scaled.std().item() - pred_std) < 1e-4

padded = data.pad_images(scaled[:, None], 32)
pred_pad = (784 * pred_mean + 240 * (-1.0)) / 1024
print(f"padded to 32x32: predicted mean {pred_pad:.4f}, measured {padded.mean():.4f}")
assert abs(padded.mean().item() - pred_pad) < 1e-4

# %% [markdown]
# ## Solution 3

# %%
x = data.to_model_range(test_x[:100])[:, None]            # (100, 1, 28, 28) in [-1, 1]
p32 = data.pad_images(x, 32)
border = torch.ones(32, 32, dtype=torch.bool)
border[2:30, 2:30] = False
assert torch.equal(p32[..., 2:30, 2:30], x), "the digit is unchanged"
assert (p32[..., border] == -1).all(), "the border is background"

up = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
back = F.interpolate(up, size=(28, 28), mode="bilinear", align_corners=False)
err = (back - x).abs()
print(f"resize 28 -> 32 -> 28: largest error {err.max():.3f}, mean error {err.mean():.4f} (in [-1, 1] units; "
      f"padding and cropping: exactly 0)")
assert err.max() > 0.1                                    # resizing changes strokes visibly

# %% [markdown]
# ## Solution 4
#
# A pair fits when $p$ divides $H$ (here $H = W$) and $M$ divides $L = (H/p)^2$.

# %%
def fits(H, p, M):
    return H % p == 0 and ((H // p) ** 2) % M == 0


for H in (28, 32):
    accepted = []
    for p in (1, 2, 4, 7, 8):
        for M in (1, 2, 4):
            try:
                L = check_image_size(H, H, patch_size=p, hourglass_ratio=M)
                ok = True
            except ValueError:
                ok = False
            assert ok == fits(H, p, M), (H, p, M)
            if ok:
                assert L == (H // p) ** 2
                accepted.append(f"p={p} M={M} (L={L}, J={L // M})")
    print(f"{H}x{H}:", "; ".join(accepted))

# the course's choice and the paper's choice
assert fits(28, 2, 2) and fits(28, 1, 2) and fits(32, 1, 2)
assert not fits(28, 4, 2) and not fits(28, 8, 1) and not fits(32, 7, 1)

# %% [markdown]
# On 28x28, $p = 4$ gives $L = 49$, which only $M = 1$ divides; $p = 7$ gives $L = 16$ (every $M$ fits)
# and $p = 8$ does not divide 28. On 32x32 every power of two fits and $p = 7$ does not. The paper's
# setting ($p = 1$, $M = 2$) fits both: $L = 784$, $J = 392$ on 28x28 and $L = 1024$, $J = 512$ on 32x32.
#
# ## Answers
#
# 1. Training compute is the cost per image times the number of images seen. DiffuSSM-XL costs about
#    280 GFLOPs per forward pass against DiT-XL/2's 119 (2.35x), but was trained on 660 M images
#    against 1,792 M (2.7x fewer), so its total (about 1.85e11 against 2.13e11 GFLOPs in the paper's
#    column) is lower. At an equal number of training images DiffuSSM-XL would need about 2.35x the
#    compute of DiT-XL/2; whether it would then also be ahead in FID the paper's table does not say.
# 2. With 2x2 patches a token holds 4 pixels, so the SSM sees L = 196 positions instead of 784:
#    the course gives up the paper's point that every pixel enters the long-range path unmerged (the
#    paper argues patching loses high-frequency detail). It accepts that because 1x1 patches cost
#    about 5x the time per training image on a 2-core CPU (README's ablation table, notebook 07), so
#    a model trained for an hour would see about a fifth of the images; the architecture is otherwise
#    the paper's, and `patch_size: 1` restores the paper's setting (`configs/gpu_diffussm.yaml`).
# 3. What must be right is the content. Two `.gz` files with identical content can differ in their
#    bytes (the gzip header stores a timestamp and a file name, and compressors differ), so an md5
#    of the compressed file would reject good copies from other mirrors; and the loader accepts both
#    compressed and uncompressed copies, which only a hash of the decompressed bytes can check the
#    same way.

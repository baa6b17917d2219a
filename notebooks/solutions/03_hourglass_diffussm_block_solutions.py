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
# # 03 · Solutions: The DiffuSSM block
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/diffussm-course/diffussm-course/blob/main/notebooks/solutions/03_hourglass_diffussm_block_solutions.ipynb)
#
# Solutions to the exercises of notebook 03, each checked with `assert`s, and answers to its
# "Check your understanding" questions.
#
# *Outputs shown: executed in full mode on 2026-12-03, CPU AMD EPYC, 2 torch threads, in 6 s.*

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
import dataclasses
import math
from pathlib import Path

import torch

import diffussm_lib
from diffussm_lib.config import load_config
from diffussm_lib.models import (DiffuSSMBlock, build_model, count_flops, count_params,
                                 diffussm_block_flops_formula, flop_counts)
from diffussm_lib.ssm import BidirectionalSSM
from diffussm_lib.ssm import fft_length

_ = seed_everything(0)

# %% [markdown]
# ## Solution 1

# %%
D, M, J = 16, 2, 8
block = DiffuSSMBlock(D, M, BidirectionalSSM(D, core="s4d"))
x, c, target = torch.randn(2, J, D), torch.randn(2, D), torch.randn(2, J, D)
assert torch.equal(block(x, c), x)                          # exactly the identity at init

opt = torch.optim.Adam(block.parameters(), lr=1e-3)
loss = (block(x, c) - target).square().mean()
loss.backward()
moved = {}
for name, p in block.named_parameters():
    if name.startswith("ada.linear"):                       # rows: shift, scale, gate (D each)
        for part, rows in zip(("shift", "scale", "gate"), p.grad.chunk(3, dim=0)):
            moved[f"{name} [{part}]"] = rows.abs().max().item()
    else:
        moved[name] = p.grad.abs().max().item()
opt.step()
nonzero = [k for k, v in moved.items() if v > 0]
print("parameters with a non-zero gradient in step 1:", nonzero)
assert nonzero == ["ada.linear.weight [gate]", "ada.linear.bias [gate]"]
with torch.no_grad():
    change = (block(x, c) - x).abs().max().item()
print(f"after one Adam step: max |block(x, c) - x| = {change:.2e}")
assert change > 0

# %% [markdown]
# At initialisation the gate α is 0 and multiplies the hourglass output, so the gradient of every
# parameter *inside* the hourglass, and of the shift and scale rows that only act through it, is
# multiplied by 0. Only the gate rows of the adaLN Linear see a non-zero gradient: ∂h/∂α equals the
# hourglass output, which is not zero. After one step α ≠ 0, the block stops being the identity, and
# from the next step on the gradient reaches everything else. (Adam moves a parameter with zero
# gradient by exactly 0; AdamW's weight decay would still shrink the others a little.)
#
# ## Solution 2
#
# Per block, with N the S4D state size:
#
# * hourglass weights: W⁰ D², W↑ M D², W↓ M (2D/M)(2D) = 4D², W¹ 2D², W² 4D², W³ 2D²: (13 + M) D²;
# * hourglass biases: D + MD + 2D + 2D + 2D + D = (8 + M) D;
# * adaLN: Linear(D -> 3D), 3D² + 3D;
# * S4D bank of 2D channels, 2N + 2 each: 2D (2N + 2).

# %%
def block_params(D, M, N=64):
    return (13 + M) * D * D + (8 + M) * D + 3 * D * D + 3 * D + 2 * D * (2 * N + 2)


D = 128
per_M = {}
for M in (1, 2, 4):
    counted = count_params(DiffuSSMBlock(D, M, BidirectionalSSM(D, core="s4d")))
    per_M[M] = counted
    print(f"M = {M}: one block {counted:,d} parameters (formula {block_params(D, M):,d})")
    assert counted == block_params(D, M)
    assert per_M[M] - per_M[1] == (M - 1) * (D * D + D)             # each unit of M adds one W↑_k: D² + D

CONFIGS = Path(diffussm_lib.__file__).resolve().parents[1] / "configs"   # the course folder (clone or Colab)
base = load_config(CONFIGS / "mnist_diffussm.yaml").model
parts = {}
for M in (1, 2, 4):
    model = build_model(dataclasses.replace(base, hourglass_ratio=M))
    parts[M] = {"input projection": count_params(model.embed), "conditioning": count_params(model.cond),
                "blocks": count_params(model.blocks), "output head": count_params(model.final),
                "total": count_params(model)}
print(f"\n{'':18s}" + "".join(f"{'M = ' + str(M):>12s}" for M in parts))
for k in parts[1]:
    print(f"{k:18s}" + "".join(f"{parts[M][k]:12,d}" for M in parts))
Dm, F_ = base.hidden_dim, base.in_channels * base.patch_size ** 2
for M in (1, 2, 4):
    assert parts[M]["input projection"] == M * F_ * Dm + Dm                   # Linear(M C p² -> D)
    assert parts[M]["output head"] == 2 * Dm * Dm + 2 * Dm + Dm * M * F_ + M * F_   # adaLN(2) + Linear(D -> M C p²)
    assert parts[M]["conditioning"] == parts[1]["conditioning"]
    assert parts[M]["blocks"] == base.depth * block_params(Dm, M)
share = (parts[4]["total"] - parts[1]["total"]) / parts[1]["total"]
print(f"\nfrom M = 1 to M = 4 the model grows by {parts[4]['total'] - parts[1]['total']:,d} parameters ({100 * share:.1f}%)")

# %% [markdown]
# Among the block's matrices only W↑ depends on M (one D x D matrix and bias per offset); W↓ keeps
# 4D² weights because its M matrices shrink to 2D/M outputs each. So each unit of M adds D² + D per
# block, and the input projection and output head add C p² D (plus C p² for the head's bias) each:
# almost all of the growth printed above is in the blocks' W↑. What M changes far more is the
# **cost**: every dense layer except W↑ and W↓ runs on J = L/M tokens.
#
# ## Solution 3

# %%
D, M, L, N = 64, 2, 256, 64
J = L // M
block = DiffuSSMBlock(D, M, BidirectionalSSM(D, core="s4d", ssm_state=N))
x, c = torch.randn(1, J, D), torch.randn(1, D)
with torch.no_grad():
    by_op = flop_counts(block, x, c)
    total = count_flops(block, x, c)

n = fft_length(L)                                   # 512 for L = 256: log2 n = 9
Q = math.isqrt(L - 1) + 1                           # ceil(sqrt(L)) = 16
n_a = -(-L // Q)                                    # ceil(L / Q) = 16
dense = 2 * (13 * J * D * D + L * D * D)            # the hourglass's Linears (paper's formula)
ada = 2 * D * (3 * D)                               # adaLN Linear(D -> 3D), once per sample
kernel = 2 * (2 * D) * n_a * N * Q                  # s4d_kernel_fast: (2D, n_a, N) @ (2D, N, Q)
fft = lambda channels: 2.5 * channels * n * math.log2(n)
r2c = fft(D) + fft(2 * D)                           # rfft of the input (D channels) and of the 2D kernels
c2r = fft(2 * D)                                    # irfft of the 2D outputs

by_hand = {"addmm": dense + ada, "bmm": kernel, "_fft_r2c": int(r2c), "_fft_c2r": int(c2r)}   # W↓_k: M addmm calls
for op in by_hand:
    print(f"{op:9s}: by hand {by_hand[op]:>12,d}   counted {by_op.get(op, 0):>12,d}")
print(f"{'total':9s}: by hand {sum(by_hand.values()):>12,d}   counted {total:>12,d}")
assert dense == diffussm_block_flops_formula(L, D, M)
assert by_hand == by_op and sum(by_hand.values()) == total
print(f"shares: dense {dense / total:.1%}, adaLN {ada / total:.1%}, S4D kernel {kernel / total:.1%}, "
      f"FFTs {(r2c + c2r) / total:.1%}")

# %% [markdown]
# The dense layers are 2 (13 J D² + L D²) as in the paper; the SSM adds its kernel product (which
# does not depend on the batch) and the FFTs, 2.5 n log₂ n per channel and transform: linear in L up
# to the log. At this small width the kernel product is a large share; it grows like D N L while the
# dense layers grow like D² L, so at the paper's widths the dense layers dominate.
#
# ## Answers
#
# 1. The dense layers cost D² or more per token, so running them on J = L/M tokens divides the
#    largest cost by M; the SSM costs only O(D log L + D N) per token (its FFTs and its kernel), so it
#    can afford all L tokens. On J tokens the SSM would mix sequences of merged pixels: the long-range
#    path itself would be patched, which is what DiffuSSM avoids (the paper argues that patching
#    loses high-frequency detail). The per-offset W↑_k and W↓_k keep the L positions distinct on the
#    way in and out.
# 2. The zero-initialised Linear of adaLN-Zero: it makes the gate α = 0 (and shift and scale 0), so
#    h = I + 0 · Hourglass(...) = I. A deep stack then starts as a plain residual path: the signal
#    and the gradient pass through unchanged, and each block's contribution grows from zero as the
#    gate learns (Exercise 1).
# 3. Count FLOPs per pixel (per token of the SSM). DiffuSSM with M = 2 spends 2 (13/2 + 1) D² = 15 D²
#    in its dense layers (the 13 D² multiply-adds of the J-token layers are shared by M = 2 pixels),
#    plus the SSM's O(D log L + D N). DiT with patch 1 spends 24 D² per pixel in its dense layers
#    alone, plus 4 L D in attention: more than DiffuSSM at every L (at D = 256 the notebook checks it
#    with the SSM's cost included). A DiT with 2x2 patches has L/4 tokens, so per pixel it spends a
#    quarter of that: 6 D² dense and L D / 4 attention (4 (L/4)² D spread over L pixels). That stays
#    below DiffuSSM's 15 D² until L D / 4 = 9 D², i.e. L = 36 D (a little later with the SSM's cost).

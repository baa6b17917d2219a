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
# # 03 · The DiffuSSM block: a gated hourglass around a bidirectional SSM
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/diffussm-course/diffussm-course/blob/main/notebooks/03_hourglass_diffussm_block.ipynb)
#
# Notebooks 01-02 built the bidirectional SSM: a layer that mixes a sequence of L tokens in
# O(L log L) time, in both directions. This notebook wraps it into the **DiffuSSM block** of
# "Diffusion Models Without Attention" (Yan, Gu & Rush, 2023), conditions it on the timestep and
# the class, stacks it into a full denoiser, and builds the **DiT** baseline it replaces.
#
# **Objectives.** By the end of this notebook you can
# 1. turn the paper's four equations (up, SSM, down, gate) into code, with the shape of every tensor;
# 2. explain the hourglass: why the dense layers run on J = L/M tokens while the SSM sees all L;
# 3. state where the paper is ambiguous, which reading this course takes, and how it is tested;
# 4. condition a block on timestep and class with adaLN-Zero, and show every block starts as the identity;
# 5. assemble the DiffuSSM denoiser and a DiT of the same interface from shared pieces;
# 6. count parameters and FLOPs of both blocks from 64 to 16384 tokens and find where they cross.
#
# *Outputs shown: executed in full mode on 2026-12-03, CPU AMD EPYC, 2 torch threads, in 18 s.*

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
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from torch import nn
from torch.nn import functional as F

from diffussm_lib.ssm import BidirectionalSSM

seed_everything(0)
torch.set_printoptions(precision=4, sci_mode=False)

# %% [markdown]
# ## 1. From pixels to a sequence
#
# A diffusion backbone maps a noisy image x (B, C, H, W), a timestep t and a class y to a
# prediction of the same shape as x (the noise, or the "v" target the course's configs use;
# notebook 04). Both backbones here first turn the image into a sequence: cut it into p x p patches
# (p = 1: every pixel is a token, the paper's setting) and read them in **raster order**, row by row:
# patch (r, s) becomes token l = r (W/p) + s, a vector of C p^2 values. A 4 x 6 image with numbered
# pixels makes the order visible:

# %%
def my_patchify(x, p):
    """x (B, C, H, W) -> (B, L, C p^2), raster order over the (H/p) x (W/p) grid of patches."""
    B, C, H, W = x.shape
    tokens = []
    for r in range(H // p):
        for s in range(W // p):
            tokens.append(x[:, :, r * p:(r + 1) * p, s * p:(s + 1) * p].reshape(B, C * p * p))
    return torch.stack(tokens, dim=1)

img = torch.arange(24.0).reshape(1, 1, 4, 6)
print(img[0, 0])
print("p = 1 ->", my_patchify(img, 1).shape, "  first tokens:", my_patchify(img, 1)[0, :8, 0].tolist())
print("p = 2 ->", my_patchify(img, 2).shape, "  token 1 = patch (0, 1):", my_patchify(img, 2)[0, 1].tolist())

# %% [markdown]
# The library's `patchify` does the same with one reshape and one permute (no Python loop); it and
# its inverse `unpatchify` are shared by both backbones.
#
# **Where the code lives.** The whole DiffuSSM model is one file,
# [`diffussm_lib/models/diffussm.py`](../diffussm_lib/models/diffussm.py), read from top to bottom
# smallest layer first: conditioning (timestep, class, adaLN-Zero), tokens (`patchify`, the input
# projection, the output head), the hourglass and `DiffuSSMBlock`, then the `DiffuSSM` denoiser. Keep
# it open beside this notebook; every piece below is imported from it.

# %%
from diffussm_lib.models import check_image_size, group_tokens, patchify, unpatchify

x = torch.randn(2, 3, 8, 12)
for p in (1, 2, 4):
    assert torch.equal(patchify(x, p), my_patchify(x, p))
    assert torch.equal(unpatchify(patchify(x, p), p, 8, 12), x)
print("patchify == my_patchify for p = 1, 2, 4, and unpatchify inverts it")

# %% [markdown]
# ## 2. The block, as the paper writes it
#
# Let the block input be I with J tokens of width D, the ratio be M (2 in the paper), L = J M, and
# index a long-sequence position as l = jM + k (stream token j, offset k = 0..M-1). With σ an
# activation:
#
# | step | equation | shape |
# |---|---|---|
# | up   | U_l = σ(W↑_k σ(W⁰ I_j)) | L x D |
# | SSM  | Y = BidirectionalSSM(U) (two directions side by side) | L x 2D |
# | down | I'_j = concat_k σ(W↓_k Y_{jM+k}), each W↓_k: 2D -> 2D/M | J x 2D |
# | gate | O_j = W³ (σ(W² I'_j) ⊙ σ(W¹ I_j)) | J x D |
#
# plus a skip connection around the block. An hourglass: the **dense layers (W⁰, W¹, W², W³) act on
# J tokens**, the **SSM on all L**. The up step gives every one of the M positions inside stream
# token j its own matrix W↑_k, so the SSM sees L distinct tokens; the down step gives each position
# its own matrix W↓_k and concatenates the M results, so nothing is averaged away.
#
# ### Around the hourglass: norm, skip and conditioning (adaLN-Zero)
#
# The paper's equations say only "plus a skip connection"; its text says that timestep and class are
# injected following DiT. This course uses DiT's **adaLN-Zero** for the norm, the skip and the conditioning: a condition
# vector c (B, D), made from the timestep and the class (section 4), enters every block so:
#
# * a Linear layer of SiLU(c) produces three vectors per block, each of width D: a **shift** β, a
#   **scale** γ and a **gate** α;
# * the block normalises its input (LayerNorm without learned affine), **modulates** it,
#   LN(I) ⊙ (1 + γ) + β, runs the hourglass on that, and adds the result to the skip path **scaled by
#   the gate**:
#
#     h = I + α(c) ⊙ Hourglass( LN(I) ⊙ (1 + γ(c)) + β(c) );
#
# * that Linear layer is **initialised to zero** ("-Zero"): at initialisation β = γ = α = 0, so
#   every block returns its input exactly. A deep stack starts as a clean residual path, and each
#   block's contribution grows only as training moves α away from 0.
#
# The figure puts the pieces together (drawn by the next cell, for M = 2).

# %%
from matplotlib.patches import FancyBboxPatch

def draw_block(M=2):
    """The DiffuSSM block as boxes and arrows: J-token layers blue, the L-token SSM orange."""
    fig, ax = plt.subplots(figsize=(7.2, 6.6))
    ax.set_xlim(0, 10); ax.set_ylim(-0.7, 11.5); ax.axis("off")
    fill = {"J": "#dbe8f6", "L": "#fbe3c8", "c": "#e4f2de", "op": "white"}

    def box(x, y, text, kind="J", w=3.2, h=0.62):
        ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.04",
                                    fc=fill[kind], ec="0.25", lw=1))
        ax.text(x, y, text, ha="center", va="center", fontsize=8.5)

    def line(points):
        """A polyline through `points`, with an arrow head on its last segment."""
        xs, ys = zip(*points)
        ax.plot(xs[:-1], ys[:-1], color="0.25", lw=1)
        ax.annotate("", xy=points[-1], xytext=points[-2],
                    arrowprops=dict(arrowstyle="-|>", lw=1, color="0.25", shrinkA=0, shrinkB=0))

    xm, xg, xc = 3.4, 7.3, 8.5                   # main column, gate column, conditioning column
    box(xm, 10.9, "stream I  (J x D)", w=2.6)
    box(xm, 9.8, "LayerNorm, then modulate\nLN(I) ⊙ (1 + γ) + β", h=0.8)
    box(xm, 8.55, r"$W^0$, σ  (J x D)")
    box(xm, 7.5, rf"$W^\uparrow_k$, σ for each offset k = 0..{M - 1};" "\ninterleave l = jM + k  (L x D)", h=0.8)
    box(xm, 6.25, "bidirectional SSM on all L tokens:\nforward, reversed, concatenated  (L x 2D)", kind="L", w=3.6, h=0.8)
    box(xm, 5.0, r"$W^\downarrow_k$, σ for each offset k;" "\nconcatenate the M chunks  (J x 2D)", h=0.8)
    box(xm, 3.85, r"$W^2$, σ  (J x 2D)")
    box(xg, 3.85, r"$W^1$, σ  (J x 2D)", w=2.2)
    box(5.35, 2.85, "⊙", kind="op", w=0.5, h=0.5)
    box(5.35, 1.95, r"$W^3$  (J x D)", w=2.0)
    box(5.35, 1.05, "× gate α", w=1.5, h=0.5)
    box(1.0, 1.05, "+", kind="op", w=0.5, h=0.5)
    box(1.0, 0.1, "output  (J x D)", w=1.9, h=0.5)
    box(xc, 10.9, "c = embed(t) + embed(y)", kind="c", w=2.7)
    box(xc, 9.8, "SiLU, Linear (zero init)\n→ β, γ, α", kind="c", w=2.5, h=0.8)

    for y0, y1 in ((10.55, 10.24), (9.36, 8.9), (8.2, 7.94), (7.06, 6.69), (5.81, 5.44), (4.56, 4.2)):
        line([(xm, y0), (xm, y1)])
    line([(xm, 9.08), (xg, 9.08), (xg, 4.2)])                        # W¹ reads the modulated input too
    ax.plot([xm], [9.08], "o", ms=3, color="0.25")
    line([(xm, 3.5), (xm, 2.85), (5.05, 2.85)]); line([(xg, 3.5), (xg, 2.85), (5.65, 2.85)])
    line([(5.35, 2.56), (5.35, 2.3)]); line([(5.35, 1.6), (5.35, 1.34)])
    line([(4.56, 1.05), (1.3, 1.05)])
    line([(1.0, 0.76), (1.0, 0.39)])
    line([(xm - 1.34, 10.9), (1.0, 10.9), (1.0, 1.34)])                # the skip
    ax.text(0.85, 6.0, "skip", rotation=90, fontsize=8, color="0.3", va="center", ha="right")
    line([(xc, 10.55), (xc, 10.24)])
    line([(xc - 1.29, 9.8), (xm + 1.66, 9.8)])
    ax.text((xc - 1.29 + xm + 1.66) / 2, 9.92, "β, γ", fontsize=8, color="0.3", ha="center", va="bottom")
    line([(9.5, 9.36), (9.5, 1.05), (6.14, 1.05)])
    ax.text(9.58, 5.0, "α", fontsize=9, color="0.3")
    ax.text(5, -0.55, "blue: J = L/M tokens    orange: all L tokens    green: conditioning (adaLN-Zero)",
            ha="center", fontsize=8, color="0.3")
    ax.set_title(f"One DiffuSSM block (M = {M})", fontsize=10)
    fig.tight_layout()
    return fig

draw_block(M=2)
plt.show()

# %% [markdown]
# We now build the hourglass step by step with small sizes, printing shapes, with our own weights.

# %%
D, M, J, B = 8, 2, 4, 1
L = J * M
gen = torch.Generator().manual_seed(0)
def rnd(*shape):
    return torch.randn(*shape, generator=gen) / math.sqrt(shape[-1])

W0, b0 = rnd(D, D), rnd(D)
Wup, bup = [rnd(D, D) for _ in range(M)], [rnd(D) for _ in range(M)]          # one matrix per offset k
Wdown, bdown = [rnd(2 * D // M, 2 * D) for _ in range(M)], [rnd(2 * D // M) for _ in range(M)]
W1, b1 = rnd(2 * D, D), rnd(2 * D)
W2, b2 = rnd(2 * D, 2 * D), rnd(2 * D)
W3, b3 = rnd(D, 2 * D), rnd(D)
sigma = F.gelu                     # our reading of σ: GELU (as in BiGS, the paper's SSM block)

I = torch.randn(B, J, D, generator=gen)
print("I   (block input)   ", tuple(I.shape), "= (B, J, D)")

a = sigma(I @ W0.T + b0)
print("σ(W⁰ I)             ", tuple(a.shape), "= (B, J, D)   dense layer on J tokens")
U = torch.stack([sigma(a @ Wup[k].T + bup[k]) for k in range(M)], dim=2)       # (B, J, M, D)
U = U.reshape(B, L, D)                                                         # l = jM + k
print("U   (up)            ", tuple(U.shape), "= (B, L, D)   offset k of token j -> position jM + k")

ssm = BidirectionalSSM(D, core="s4d")
Y = ssm(U)
print("Y   (SSM)           ", tuple(Y.shape), "= (B, L, 2D)  forward half, then reversed half;",
      "backend:", ssm.backend_used)

Yk = Y.reshape(B, J, M, 2 * D)                                                 # Yk[:, j, k] = Y_{jM+k}
Ip = torch.cat([sigma(Yk[:, :, k] @ Wdown[k].T + bdown[k]) for k in range(M)], dim=-1)
print("I'  (down)          ", tuple(Ip.shape), "= (B, J, 2D)  M chunks of 2D/M, concatenated")

O = (sigma(Ip @ W2.T + b2) * sigma(I @ W1.T + b1)) @ W3.T + b3
print("O   (gate)          ", tuple(O.shape), "= (B, J, D)")

# %% [markdown]
# The library's `Hourglass` stores the M matrices W↑_k as one `Linear(D, M D)` (output chunk k is
# W↑_k, one matrix product instead of M) and the W↓_k in an `OffsetLinear` of shape (M, 2D/M, 2D).
# We copy our weights into it and check that it computes exactly the same O, and that it accepts
# any length (no parameter depends on L: the defect of a dense L x J token-mixing matrix is gone).

# %%
from diffussm_lib.models import Hourglass

hg = Hourglass(D, M, ssm)
with torch.no_grad():
    hg.w0.weight.copy_(W0); hg.w0.bias.copy_(b0)
    hg.w_up.weight.copy_(torch.cat(Wup, dim=0)); hg.w_up.bias.copy_(torch.cat(bup))
    hg.w_down.weight.copy_(torch.stack(Wdown)); hg.w_down.bias.copy_(torch.stack(bdown))
    for lin, (W_, b_) in zip((hg.w1, hg.w2, hg.w3), ((W1, b1), (W2, b2), (W3, b3))):
        lin.weight.copy_(W_); lin.bias.copy_(b_)
torch.testing.assert_close(hg.up(I), U)
torch.testing.assert_close(hg.down(Y), Ip)
torch.testing.assert_close(hg(I), O)
print("library Hourglass == our step-by-step block; max |diff| =", (hg(I) - O).abs().max().item())
for J_other in (3, 50):
    print(f"J = {J_other:3d}: Hourglass output {tuple(hg(torch.randn(1, J_other, D)).shape)}")

# %% [markdown]
# ## 3. Where does the sequence get shorter? Our reading of the paper
#
# The equations index the block's input and output by j, so **a block maps J tokens to J tokens**.
# Reviewers noted that the paper's figure and equations do not match exactly, and the paper does
# not say how the image's L tokens become the J tokens of the first block. This course reads it so:
#
# | question | our choice | why / where tested |
# |---|---|---|
# | where L -> J happens | once, in the input projection: stream token j holds the M raster tokens jM..jM+M-1 (concatenated, then a Linear to D); the residual stream has J tokens | the equations' I_j, O_j; the paper's FLOP count (below); `test_hourglass_matches_the_equations_loop_by_loop` |
# | width of the gate | W¹: D -> 2D, W²: 2D -> 2D, W³: 2D -> D | reproduces "13 (L/M) D² + L D²" exactly (below) |
# | σ | GELU everywhere; no activation after W³ | BiGS, the block the paper adapts |
# | down step | **concatenates** the M offsets (each W↓_k: 2D -> 2D/M) | the equation's feature index D_m k : D_m (k+1) |
# | two directions | forward and truly reversed SSM, concatenated (forward first) | notebook 02; `test_first_pixel_sees_last_pixel_only_when_bidirectional` |
# | norm, skip, conditioning | DiT's adaLN-Zero (section 2): h = I + α(c) ⊙ Hourglass(LN(I) ⊙ (1 + γ(c)) + β(c)); both gate branches read the modulated input | identity at init: `test_every_block_is_identity_at_init` |
# | positions | no positional embedding: the SSM already knows the order (DiT needs one) | |
#
# The alternative, a residual stream of L tokens with a shorten-then-expand inside every block,
# needs two extra matrices per block that the equations do not have, and runs the skip path on L.
# The paper's Figure 2 caption leans towards that alternative: it describes the model as "repeated
# layers alternating long-range SSM cores with hour-glass feed-forward networks", which reads most
# naturally as a full-length sequence passing through SSMs and through feed-forward networks that
# shrink it and expand it again. We follow the equations instead, because they, not the caption,
# fix the indices (I_j in, O_j out) and the FLOP count that the check below reproduces; but the
# caption is a fair argument for the other reading, and the paper does not settle it.
#
# **The FLOP check.** In multiply-adds per token of the stream, W⁰ costs D², W¹ 2D², W² 4D², W³
# 2D², the down step 4D² (M matrices 2D x 2D/M, applied to M positions), and the up step M D² (one
# D x D per position). Per block: (1 + 2 + 4 + 2 + 4) J D² + L D² = **13 J D² + L D²**, the
# paper's formula. torch's FLOP counter, run on the library's hourglass with the SSM replaced by a
# free stand-in, agrees (FLOPs = 2 x multiply-adds):

# %%
from diffussm_lib.models import count_flops, diffussm_block_flops_formula

class FreeBidirectional(nn.Module):
    """A zero-cost stand-in for the SSM, (B, L, D) -> (B, L, 2D): to count the dense layers alone."""
    def __init__(self, d):
        super().__init__()
        self.out_dim = 2 * d
    def forward(self, u):
        return torch.cat([u, u], dim=-1)

for (D_, M_, L_) in [(64, 2, 256), (96, 4, 1024), (32, 1, 100)]:
    counted = count_flops(Hourglass(D_, M_, FreeBidirectional(D_)), torch.randn(1, L_ // M_, D_))
    J_ = L_ // M_
    paper = 2 * (13 * J_ * D_**2 + L_ * D_**2)
    print(f"D={D_:3d} M={M_} L={L_:5d}: FlopCounterMode {counted:>12,d}   2(13 J D² + L D²) {paper:>12,d}")
    assert counted == paper == diffussm_block_flops_formula(L_, D_, M_)

# %% [markdown]
# ## 4. Conditioning: timestep, class and adaLN-Zero in code
#
# Following DiT, the timestep becomes sinusoidal features then a small MLP, the class looks up a
# table with **num_classes + 1 rows** (the last row is the *null* class used for classifier-free
# guidance: `y = None` means "all null"), and their sum is the condition c (B, D) that feeds every
# block's adaLN-Zero layer (section 2).
#
# One departure from DiT, found by measurement: DiT starts the class table at std 0.02. On a CPU
# budget that was fatal. A class row then has norm about $0.02\sqrt D$, which the timestep embedding
# soon outgrows in training, so c is almost pure timestep; the zero-initialised modulation layers
# only learn timestep directions, and our first MNIST models ignored their labels (their class
# accuracy stayed near chance; those runs are not stored with the course, but `tests/test_train.py`
# keeps a regression test: a task that only the label can solve, which the 0.02 table failed).
# Starting the table at std 1 (torch's default for `nn.Embedding`) does not put the two signals on
# the same scale at step 0: at the course's width, a class row's norm is about $\sqrt D$, far larger
# than that of the freshly initialised timestep embedding, whose MLP starts with weights of std 0.02
# as in DiT (the cell prints both, and the row norm with DiT's 0.02), so c starts out mostly class.
# What it does is keep the class from being swamped as the timestep embedding grows in training;
# with it, the course's models learn to use their labels (notebook 07 measures their class accuracy).

# %%
from diffussm_lib.models import LabelEmbedder, TimestepEmbedder, modulate, timestep_features

def my_timestep_features(t, dim, max_period=10_000.0):
    half = dim // 2
    w = torch.exp(-math.log(max_period) * torch.arange(half) / half)
    return torch.cat([torch.cos(t.float()[:, None] * w), torch.sin(t.float()[:, None] * w)], dim=-1)

t = torch.tensor([0, 10, 999])
torch.testing.assert_close(timestep_features(t, 256), my_timestep_features(t, 256))
labels = LabelEmbedder(num_classes=10, hidden_dim=D)
print("label table rows:", labels.table.num_embeddings, "| null class:", labels.null_class,
      f"| init std {labels.table.weight.std().item():.2f}")
torch.testing.assert_close(labels(None, batch=2), labels(torch.tensor([10, 10])))
print("timestep features match; y = None is the null class")

D_course = 128                                           # the course's width (configs/mnist_diffussm.yaml)
with torch.random.fork_rng(), torch.no_grad():           # fresh modules; the notebook's random stream stays as it was
    torch.manual_seed(0)
    t_norm = TimestepEmbedder(D_course)(torch.arange(1000)).norm(dim=1)     # (1000,): every t, at init
    row_norm = LabelEmbedder(10, D_course).table.weight.norm(dim=1)         # (11,): every row, std 1
    row_norm_dit = LabelEmbedder(10, D_course, init_std=0.02).table.weight.norm(dim=1)
print(f"at init, D = {D_course}: timestep embedding norm {t_norm.mean():.2f} (from {t_norm.min():.2f} to "
      f"{t_norm.max():.2f} over t = 0..999); class row norm {row_norm.mean():.1f} (std 1), "
      f"{row_norm_dit.mean():.2f} (DiT's std 0.02)")
assert row_norm.min() > 10 * t_norm.max()                # c starts out mostly class

# %% [markdown]
# `DiffuSSMBlock(hidden_dim, hourglass_ratio, ssm)` takes its SSM module as an argument: any module mapping
# (B, L, D) to (B, L, out_dim) that exposes `out_dim` fits, e.g. `BidirectionalSSM(D, core="s4d")`
# (the paper's choice), `BidirectionalSSM(D, core="selective")`, a causal
# `BidirectionalSSM(D, bidirectional=False)`, or the free stand-in above. We check it against the
# formula of section 2, and that it is the identity at initialisation:

# %%
from diffussm_lib.models import DiffuSSMBlock

block = DiffuSSMBlock(D, M, BidirectionalSSM(D, core="s4d"))
x_stream, c = torch.randn(2, J, D), torch.randn(2, D)

def my_block(x, c):
    shift, scale, gate = block.ada.linear(F.silu(c)).chunk(3, dim=-1)
    h = F.layer_norm(x, (D,), eps=1e-6) * (1 + scale[:, None]) + shift[:, None]
    return x + gate[:, None] * block.hourglass(h)

print("at init: block(x, c) == x ?", torch.equal(block(x_stream, c), x_stream))
assert torch.equal(block(x_stream, c), x_stream)
with torch.no_grad():                                # pretend training moved the modulation
    block.ada.linear.weight.normal_(0, 0.3)
torch.testing.assert_close(block(x_stream, c), my_block(x_stream, c))
print("after moving the modulation: max |block(x, c) - x| =", (block(x_stream, c) - x_stream).abs().max().item(),
      "| matches our formula")

# %% [markdown]
# ## 5. The denoiser, and its DiT twin
#
# The full model (class `DiffuSSM`, at the end of `diffussm_lib/models/diffussm.py`):
#
#     x (B, C, H, W) -> patchify -> group M tokens -> Linear -> stream (B, J, D)
#                    -> depth x DiffuSSMBlock(., c)
#                    -> adaLN + Linear to M patches per stream token -> (B, C, H, W)
#
# The output head is zero-initialised too, so the untrained model predicts 0. Its output has the
# image's shape: the noise or the v target (notebook 04), and with `learn_sigma` also a variance
# (2C output channels). Images of any H, W work as long as H and W are multiples of p and
# L = HW/p² is a multiple of M; otherwise the error names the sizes.
#
# The **DiT baseline** (class `DiT`, in `diffussm_lib/models/dit.py`) shares the conditioning, the
# input projection (with M = 1) and the output head; its blocks are DiT blocks (attention + MLP,
# each with adaLN-Zero) on all L tokens, plus a fixed 2-D sin-cos positional embedding. Same
# interface, width and depth, so notebook 07 can compare them at matched parameters or FLOPs. The
# course's MNIST configs:

# %%
import diffussm_lib
from diffussm_lib.config import ModelConfig, load_config
from diffussm_lib.models import build_model, count_params

CONFIGS = Path(diffussm_lib.__file__).resolve().parents[1] / "configs"   # the course folder (clone or Colab)
cfg_ssm = load_config(CONFIGS / "mnist_diffussm.yaml").model
cfg_dit = load_config(CONFIGS / "mnist_dit.yaml").model
for cfg in (cfg_ssm, cfg_dit):
    print(f"{cfg.arch:9s}: image {cfg.image_size}x{cfg.image_size}, patch {cfg.patch_size}, "
          f"width {cfg.hidden_dim}, depth {cfg.depth}")
seed_everything(0)
model = build_model(cfg_ssm)
dit = build_model(cfg_dit)

xb = torch.randn(4, 1, 28, 28)
tb, yb = torch.randint(0, 1000, (4,)), torch.tensor([0, 3, 7, model.null_class])
print("patch tokens L :", tuple(patchify(xb, cfg_ssm.patch_size).shape))
h = model.embed(xb)
print("stream J       :", tuple(h.shape), " (M = 2 patches per stream token)")
cb = model.cond(tb, yb)
print("condition c    :", tuple(cb.shape))
print("first block    :", tuple(model.blocks[0](h, cb).shape), "  its SSM runs on",
      model.blocks[0].hourglass.up(h).shape[1], "tokens")
out = model(xb, tb, yb)
print("output         :", tuple(out.shape), " all zero at init:", bool(torch.all(out == 0)))
print("DiT output     :", tuple(dit(xb, tb, None).shape))
try:
    model(torch.randn(1, 1, 30, 30), tb[:1], None)
except ValueError as e:
    print("30x30 image    : ValueError:", e)

# %%
def param_table(m):
    parts = {"input projection": m.embed, "conditioning": m.cond, "blocks": m.blocks, "output head": m.final}
    return {k: count_params(v) for k, v in parts.items()} | {"total": count_params(m)}

rows = {"DiffuSSM": param_table(model), "DiT": param_table(dit)}
print(f"{'':18s}{'DiffuSSM':>12s}{'DiT':>12s}")
for k in rows["DiffuSSM"]:
    print(f"{k:18s}{rows['DiffuSSM'][k]:12,d}{rows['DiT'][k]:12,d}")
blk = model.blocks[0]
print("\none DiffuSSM block:", f"{count_params(blk):,d}", "= hourglass dense",
      f"{count_params(blk.hourglass) - count_params(blk.hourglass.ssm):,d}", "+ SSM",
      f"{count_params(blk.hourglass.ssm):,d}", "+ adaLN", f"{count_params(blk.ada):,d}")
print("one DiT block     :", f"{count_params(dit.blocks[0]):,d}")
Dm = cfg_ssm.hidden_dim
print(f"dense weights per block / D²: DiffuSSM {(count_params(blk.hourglass) - count_params(blk.hourglass.ssm)) / Dm**2:.2f}"
      f" (13 + M = {13 + cfg_ssm.hourglass_ratio} plus biases), adaLN {count_params(blk.ada) / Dm**2:.2f}")

# %% [markdown]
# Per block the dense weights are (13 + M) D² for DiffuSSM against 12 D² for DiT (4 D² attention
# + 8 D² MLP), plus adaLN: 3D² against 6D². At M = 2 the two blocks have nearly the same size
# (18 D² each, plus biases and, for DiffuSSM, the SSM's parameters).
#
# ### Does the first pixel see the last one?
#
# A causal SSM on a raster-ordered image lets a pixel see only the rows above it; the reversed
# direction adds the rows below. We make the zero-initialised layers random (as after some
# training) and plot |∂ output(first pixel) / ∂ input| over the image for a bidirectional model and
# for the causal ablation (one direction only). With M = 2 the first stream token holds pixels 0
# and 1; every other pixel can reach the first output only through the SSM.

# %%
def randomize_zero_init(m, std=0.3):
    with torch.no_grad():
        for mod in m.modules():
            if hasattr(mod, "ada"):
                mod.ada.linear.weight.normal_(0, std); mod.ada.linear.bias.normal_(0, std)
        m.final.linear.weight.normal_(0, std)
    return m

side = by_mode(full=28, fast=12)
fig, axes = plt.subplots(1, 2, figsize=(8, 3.6))
reach, peak = {}, {}
for ax, bidirectional in zip(axes, (True, False)):
    seed_everything(0)
    small = randomize_zero_init(build_model(ModelConfig(arch="diffussm", hidden_dim=32, depth=2, patch_size=1,
                                                        image_size=side, bidirectional=bidirectional)))
    xg = torch.randn(1, 1, side, side, requires_grad=True)
    small(xg, torch.tensor([500]), torch.tensor([3]))[0, 0, 0, 0].backward()
    g = xg.grad[0, 0].abs()
    reach[bidirectional] = g.flatten()[2:].max().item()         # beyond the first stream token
    peak[bidirectional] = g.max().item()
    im = ax.imshow(torch.log10(g + 1e-30).clamp(min=-12), cmap="magma", vmin=-12)
    ax.set_title(f"{'bidirectional' if bidirectional else 'causal'}: last pixel {g[-1, -1]:.1e}")
    ax.axis("off")
fig.colorbar(im, ax=axes, label="log10 |grad| (clipped at -12)")
plt.show()
for bidirectional in (True, False):
    print(f"{'bidirectional' if bidirectional else 'causal':13s}: max |grad| beyond the first stream token "
          f"{reach[bidirectional]:.1e} (largest |grad| anywhere {peak[bidirectional]:.1e})")
assert reach[True] > 1e-3 * peak[True] and reach[False] < 1e-6 * peak[False]

# %% [markdown]
# The bidirectional model's first output depends on every pixel; the causal one only on its own
# stream token: beyond it the gradient is float32 round-off of the FFT convolution (printed above),
# not information. With the selective scan it is exactly 0, as the tests check.
#
# ## 6. Cost: linear against quadratic
#
# We count FLOPs with **torch's own FLOP counter** (`torch.utils.flop_counter.FlopCounterMode`).
# It counts matrix products (FLOPs = 2 x multiply-adds), not element-wise ops. The library's
# `count_flops` adds two formulas it lacks: the CPU flash-attention kernel behind
# `scaled_dot_product_attention` (counted as torch counts the CUDA ones) and FFTs (2.5 n log₂ n per
# real transform of length n), so the SSM's convolutions are counted too. DiT blocks are counted on
# the `meta` device (shapes only, so the L² attention at L = 16384 costs nothing to count), DiffuSSM
# blocks on the CPU with batch 1 (cheap: linear in L). Width D = 256 as in the benchmark.

# %%
from diffussm_lib.models import block_flops, build_block, dit_block_flops_formula

Dw = 256
Ls = by_mode(full=[64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384], fast=[64, 256, 1024, 4096, 16384])
cfg_m2 = ModelConfig(arch="diffussm", hidden_dim=Dw, hourglass_ratio=2)
cfg_m1 = ModelConfig(arch="diffussm", hidden_dim=Dw, hourglass_ratio=1)
cfg_dit_w = ModelConfig(arch="dit", hidden_dim=Dw, num_heads=4)
flops = {"DiffuSSM (M=2)": [], "DiffuSSM (M=1, no hourglass)": [], "DiT, patch 1 (L tokens)": [],
         "DiT, patch 2 (L/4 tokens)": []}
t0 = time.perf_counter()
for L_ in Ls:
    flops["DiffuSSM (M=2)"].append(block_flops(cfg_m2, L_))
    flops["DiffuSSM (M=1, no hourglass)"].append(block_flops(cfg_m1, L_))
    flops["DiT, patch 1 (L tokens)"].append(block_flops(cfg_dit_w, L_))
    flops["DiT, patch 2 (L/4 tokens)"].append(block_flops(cfg_dit_w, L_ // 4))
print(f"counted in {time.perf_counter() - t0:.1f} s")
print(f"{'L':>6s}" + "".join(f"{k[:22]:>24s}" for k in flops))
for i, L_ in enumerate(Ls):
    print(f"{L_:6d}" + "".join(f"{v[i] / 1e9:21.2f} GF" for v in flops.values()))
assert flops["DiT, patch 1 (L tokens)"][0] == dit_block_flops_formula(Ls[0], Dw) + 2 * 6 * Dw * Dw

# %%
def crossing(Ls, a, b):
    """Log-log interpolated L where curve a (cheaper at small L) meets b, or None in this range."""
    for i in range(1, len(Ls)):
        r0, r1 = math.log(a[i - 1] / b[i - 1]), math.log(a[i] / b[i])
        if (r0 < 0) != (r1 < 0):
            f = r0 / (r0 - r1)
            return math.exp(math.log(Ls[i - 1]) + f * math.log(Ls[i] / Ls[i - 1]))
    return None

def slope(Ls, ys):
    return (math.log(ys[-1]) - math.log(ys[-2])) / (math.log(Ls[-1]) - math.log(Ls[-2]))

fig, ax = plt.subplots(figsize=(7.5, 5))
styles = {"DiffuSSM (M=2)": "C0-o", "DiffuSSM (M=1, no hourglass)": "C0:s", "DiT, patch 1 (L tokens)": "C3-o",
          "DiT, patch 2 (L/4 tokens)": "C3--^"}
for k, v in flops.items():
    ax.loglog(Ls, v, styles[k], label=f"{k}: slope {slope(Ls, v):.2f}")
pairs = {("DiffuSSM (M=2)", "DiT, patch 1 (L tokens)"): "DiffuSSM M=2 / DiT p=1",
         ("DiffuSSM (M=1, no hourglass)", "DiT, patch 1 (L tokens)"): "DiffuSSM M=1 / DiT p=1",
         ("DiT, patch 2 (L/4 tokens)", "DiffuSSM (M=2)"): "DiT p=2 / DiffuSSM M=2"}
crossovers = {}
for (a_, b_), name in pairs.items():
    Lx = crossing(Ls, flops[a_], flops[b_])
    crossovers[(a_, b_)] = Lx
    if Lx is not None:
        ax.axvline(Lx, color="gray", lw=0.8, ls="--")
        ax.annotate(f"crossover\n{name}\nL ≈ {Lx:,.0f}", (Lx, flops[b_][0]), xytext=(4, 0),
                    textcoords="offset points", fontsize=8)
ax.set_xlabel("L: pixels (tokens of the SSM; p = 1)")
ax.set_ylabel("forward FLOPs of one block (batch 1)")
ax.set_title(f"One block, D = {Dw}: linear (DiffuSSM) against quadratic (DiT)")
ax.legend(fontsize=8)
plt.show()
for (a_, b_), Lx in crossovers.items():
    where = f"L ≈ {Lx:,.0f}" if Lx else f"none in [{Ls[0]}, {Ls[-1]}]"
    print(f"{a_} vs {b_}: crossover {where}")
# the sentences below rest on these three facts
assert all(s < d for s, d in zip(flops["DiffuSSM (M=2)"], flops["DiT, patch 1 (L tokens)"]))
assert Dw < crossovers[("DiffuSSM (M=1, no hourglass)", "DiT, patch 1 (L tokens)")] < 4 * Dw
assert 36 * Dw < crossovers[("DiT, patch 2 (L/4 tokens)", "DiffuSSM (M=2)")] < Ls[-1]

# %% [markdown]
# What the curves say, at D = 256:
#
# * **DiT with patch 1** (full attention over every pixel) grows like L² (slope -> 2): its
#   attention, 4 L² D FLOPs, overtakes its dense layers, 24 L D², at L = 6D = 1536.
# * **DiffuSSM** grows like L (slope ≈ 1; the FFTs add the log L). With the hourglass (M = 2) its
#   dense cost, 2 (13 L/2 + L) D² = 15 L D², is *below* DiT's 24 L D² even before attention, so it
#   is cheaper at every L in FLOPs: the two curves never cross. Without the hourglass
#   (M = 1: 28 L D²), the block costs more than a DiT block at short sequences and wins from
#   28 L D² = 24 L D² + 4 L² D, i.e. L = D (the SSM's FFTs and kernel move the counted crossover a
#   little later, printed above): this is the crossover "linear against quadratic".
# * The paper's own comparison is against **DiT with 2x2 patches** (L/4 tokens). That DiT is cheaper
#   at small images and loses only at long sequences (15 L D² = 6 L D² + L² D / 4 at L = 36 D,
#   about 9,200 pixels at D = 256; the SSM's own cost moves the counted crossover later, printed
#   above): the reason the paper finds DiffuSSM-XL costlier per forward pass than DiT-XL/2 at 256 px
#   (L = 1024 latent pixels), and the gap closing at higher resolution.
#
# FLOPs are not time. On a CPU the SSM's FFTs and element-wise work run far below matrix-product
# speed, so the measured crossover is later; `benchmarks/bench_blocks.py` measures forward+backward
# time of the two blocks at D = 256, batch 8 for L = 256 ... 16384. A quick version here (batch 2,
# short lengths in fast mode; compare with the benchmark's numbers in the README's table of benchmarks,
# `bench_blocks.py` row, taken on a quiet machine):

# %%
def fwd_bwd_seconds(block, n_tokens, width, batch=2, reps=2):
    x_ = torch.randn(batch, n_tokens, width, requires_grad=True)
    c_ = torch.randn(batch, width)
    best = float("inf")
    for _ in range(reps + 1):
        t_ = time.perf_counter()
        block(x_, c_).square().mean().backward()
        best = min(best, time.perf_counter() - t_)
    return best

D_time = by_mode(full=256, fast=64)
L_time = by_mode(full=[256, 1024, 4096], fast=[256, 1024])
b_ssm = build_block(ModelConfig(arch="diffussm", hidden_dim=D_time))
b_dit = build_block(ModelConfig(arch="dit", hidden_dim=D_time, num_heads=4))
print(f"D = {D_time}, batch 2, forward+backward, {torch.get_num_threads()} threads")
for L_ in L_time:
    ts_, td_ = fwd_bwd_seconds(b_ssm, L_ // 2, D_time), fwd_bwd_seconds(b_dit, L_, D_time)
    print(f"L = {L_:5d}: DiffuSSM {ts_ * 1e3:8.1f} ms   DiT {td_ * 1e3:8.1f} ms   DiT/DiffuSSM {td_ / ts_:5.2f}")

# %% [markdown]
# ## Summary
#
# * The DiffuSSM block is an **hourglass**: dense layers on J = L/M tokens, a bidirectional SSM on
#   all L tokens in between, reached through one up-projection and one down-projection **per
#   offset k**, so nothing depends on the resolution.
# * **adaLN-Zero**: a zero-initialised Linear of SiLU(c) gives shift, scale and gate; every block
#   starts as the identity.
# * Our reading: the residual stream has J tokens (the input projection groups M neighbours);
#   GELU; the down step concatenates; the gate has width 2D. It reproduces the paper's
#   13 (L/M) D² + L D² exactly.
# * `DiffuSSMBlock(hidden_dim, hourglass_ratio, ssm)` takes its SSM module
#   (`DiffuSSMBlock.from_config(cfg)` builds one from a config); the whole model,
#   `DiffuSSM(cfg.model)`, is `diffussm_lib/models/diffussm.py`, smallest layer first.
# * The denoiser and its DiT baseline share conditioning (timestep + class, with a null class for
#   guidance), input projection and output head; they differ only in their blocks.
# * FLOPs: DiffuSSM linear in L, DiT with full attention quadratic; the crossover depends on what
#   you compare against (patching, hourglass ratio).
#
# Next: the diffusion objective and samplers that train and use this denoiser.

# %% [markdown]
# ## Exercises
#
# **Exercise 1.** (Identity at init, and after one step.) Build
# `DiffuSSMBlock(D, M, BidirectionalSSM(D, core="s4d"))`, check that `block(x, c)` equals `x`
# exactly for random `x` (B, J, D) and `c` (B, D), then take **one** optimiser step
# (`torch.optim.Adam`, learning rate 1e-3) on the loss `(block(x, c) - target).square().mean()` for a
# random target. Show that the block is no longer the identity. Which parameters received a non-zero
# gradient in that first step, and why only those?
#
# *Hint:* loop over `block.named_parameters()` and print `p.grad.abs().max()`. The Linear of
# `block.ada` produces shift, scale and gate in that order (`chunk(3)`): look at its rows one third
# at a time. What multiplies the hourglass output at initialisation?
#
# **Exercise 2.** (Parameters for M = 1, 2, 4.) Write the number of parameters of one block as a
# formula in D, M and the S4D state size N (dense weights and biases of the hourglass, adaLN, the
# S4D bank of 2D channels), and check it with `count_params` at D = 128 for M = 1, 2, 4. Then
# build the whole MNIST model (`configs/mnist_diffussm.yaml` with `hourglass_ratio` = 1, 2, 4):
# which other parts of the model change with M, and by how much?
#
# *Hint:* section 5 printed the dense weights as (13 + M) D²; the biases are one per output feature
# of each Linear. An S4D channel holds 2N + 2 numbers (notebook 02). The input projection reads
# M C p² values per stream token, and the output head writes as many.
#
# **Exercise 3.** (One block's FLOPs, by hand.) For D = 64, M = 2, L = 256 (S4D core, state 64,
# batch 1), add up the forward FLOPs (2 x multiply-adds) of one `DiffuSSMBlock`: the hourglass's
# dense layers, 2 (13 J D² + L D²) (`diffussm_block_flops_formula`); the adaLN Linear; the S4D
# kernel's matrix product; and the three real FFTs of the one-FFT bidirectional convolution. Match
# `count_flops(block, x, c)` exactly, and each entry of the per-operation breakdown
# `flop_counts(block, x, c)`.
#
# *Hint:* read `s4d_kernel_fast` in `diffussm_lib/ssm/kernels/s4d_kernel.py` (the kernel the model
# runs by default): its product is a batched
# (2D, ⌈L/Q⌉, N) @ (2D, N, Q) with Q = ⌈√L⌉. `count_flops` charges 2.5 n log₂ n per channel for a
# real FFT of length n = `fft_length(L)`: one transform of the D input channels, one of the 2D
# kernels, one inverse of the 2D outputs. Every Linear runs as `addmm` (`OffsetLinear`, the W↓_k,
# as M of them, `ssm/kernels/offset_linear.py`); the kernel's product is the one `bmm`.

# %% [markdown]
# ## Check your understanding
#
# 1. Why does the hourglass run its dense layers on J = L/M tokens but the SSM on all L? What
#    would be lost if the SSM also ran on J tokens?
# 2. At initialisation every DiffuSSM block is the identity. Which single design choice makes
#    this so, and why is it useful for a deep stack?
# 3. In FLOPs, DiffuSSM with M = 2 is cheaper than a DiT with patch 1 at every L, yet costlier than a
#    DiT with 2x2 patches until L ≈ 36 D. Explain both facts from the per-token costs.

# %% [markdown]
# ## References
#
# * J. N. Yan, J. Gu, A. M. Rush. *Diffusion Models Without Attention* (DiffuSSM). 2023, arXiv
#   2311.18257 (CVPR 2024).
# * W. Peebles, S. Xie. *Scalable Diffusion Models with Transformers* (DiT: adaLN-Zero, the
#   baseline). 2022, arXiv 2212.09748.
# * J. Wang, J. N. Yan, A. Gu, A. M. Rush. *Pretraining Without Attention* (BiGS: GELU, the gated
#   SSM block the paper adapts). 2022, arXiv 2212.10544.
# * A. Gu, A. Gupta, K. Goel, C. Ré. *On the Parameterization and Initialization of Diagonal State
#   Space Models* (S4D, the SSM core). 2022, arXiv 2206.11893.
# * A. Gu, T. Dao. *Mamba: Linear-Time Sequence Modeling with Selective State Spaces* (the selective
#   core). 2023, arXiv 2312.00752.
# * J. Ho, A. Jain, P. Abbeel. *Denoising Diffusion Probabilistic Models* (the noise target).
#   2020, arXiv 2006.11239.
# * T. Salimans, J. Ho. *Progressive Distillation for Fast Sampling of Diffusion Models* (the v
#   target). 2022, arXiv 2202.00512.
# * A. Nichol, P. Dhariwal. *Improved Denoising Diffusion Probabilistic Models* (the learned variance
#   of `learn_sigma`). 2021, arXiv 2102.09672.
# * J. Ho, T. Salimans. *Classifier-Free Diffusion Guidance* (the null class). 2022, arXiv 2207.12598.

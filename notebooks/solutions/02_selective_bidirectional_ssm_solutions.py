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
# # 02 · Solutions: Selective and bidirectional SSMs
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/diffussm-course/diffussm-course/blob/main/notebooks/solutions/02_selective_bidirectional_ssm_solutions.ipynb)
#
# Solutions to the exercises of notebook 02, each checked with `assert`s, and answers to its
# "Check your understanding" questions.
#
# *Outputs shown: executed in full mode on 2026-12-03, CPU AMD EPYC, 2 torch threads, in 4 s.*

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
import math
import time

import torch
import torch.nn.functional as F

from diffussm_lib import ssm
from diffussm_lib.ssm.fft_conv import bidirectional_fft_conv, fft_length
from diffussm_lib.ssm.kernels.scan import default_block

_ = seed_everything(0)


def count(module):
    return sum(p.numel() for p in module.parameters())

# %% [markdown]
# ## Solution 1
#
# With $D_\text{in} = eD$ and $R = \lceil D/16\rceil$, the selective layer holds
# $2D_\text{in}D$ (`in_proj`) $+ 4D_\text{in} + D_\text{in}$ (conv) $+ D_\text{in}(R + 2N)$ (`x_proj`)
# $+ RD_\text{in}$ (`dt_proj`) $+ D_\text{in}$ (`dt_bias`) $+ D_\text{in}N$ (`A_log`) $+ D_\text{in}$
# (skip $E$) $+ DD_\text{in}$ (`out_proj`). The bidirectional S4D bank has $2D$ channels of
# $1 + N/2 + N/2 + N + 1 = 2N + 2$ parameters each.

# %%
def selective_params(D, N, expand=1, width=4):
    Din, R = expand * D, math.ceil(D / 16)
    return (2 * Din * D                 # in_proj: x and the gate z
            + width * Din + Din         # conv weight and bias
            + Din * (R + 2 * N)         # x_proj: step-size code, B_t, C_t
            + R * Din                   # dt_proj
            + Din                       # dt_bias
            + Din * N                   # A_log
            + Din                       # the skip E (parameter `D`)
            + D * Din)                  # out_proj


def s4d_bidirectional_params(D, N=64):
    return 2 * D * (1 + N // 2 + N // 2 + N + 1)    # log_dt, log_A_real, A_imag, C (N reals), skip


for e in (1, 2):
    layer = ssm.SelectiveSSM(hidden_dim=32, ssm_state=16, expand=e)
    print(f"SelectiveSSM(32, 16, expand={e}): formula {selective_params(32, 16, e):,d}, counted {count(layer):,d}")
    assert count(layer) == selective_params(32, 16, e)

D = 128
n_sel = count(ssm.BidirectionalSSM(D, core="selective"))
n_s4d = count(ssm.BidirectionalSSM(D, core="s4d"))
assert n_sel == 2 * selective_params(D, 16) and n_s4d == s4d_bidirectional_params(D)
print(f"D = {D}: bidirectional selective {n_sel:,d} parameters, bidirectional S4D {n_s4d:,d} "
      f"({n_sel / n_s4d:.1f}x)")
assert n_sel > n_s4d

# %% [markdown]
# At $D = 128$ the selective core has about 3.5 times the parameters of the S4D core: its projections
# are $D\times D$ matrices, while an S4D channel has only $2N + 2$ numbers.
#
# ## Solution 2

# %%
g = torch.Generator().manual_seed(0)
Bsz, Dc, L = 2, 3, by_mode(full=64, fast=20)
u = torch.randn(Bsz, Dc, L, dtype=torch.float64, generator=g)
k = torch.randn(2, Dc, L, dtype=torch.float64, generator=g)

lag = torch.arange(L)[None, :] - torch.arange(L)[:, None]                 # lag[t, s] = s - t
corr = torch.where(lag >= 0, k[1][:, lag.clamp(min=0)], torch.zeros((), dtype=k.dtype))   # (D, t, s)
y_def = torch.einsum("dts,bds->bdt", corr, u)                              # sum_{s >= t} k_{s-t} u_s
y_loop = torch.zeros_like(u)
for t in range(L):
    for s in range(t, L):
        y_loop[:, :, t] += k[1][:, s - t] * u[:, :, s]
assert torch.allclose(y_def, y_loop, atol=1e-12)

n = fft_length(L)
y_fft = torch.fft.irfft(torch.fft.rfft(u, n=n) * torch.fft.rfft(k[1], n=n).conj(), n=n)[..., :L]
y_lib = bidirectional_fft_conv(u, k)
assert torch.allclose(y_fft, y_def, atol=1e-12) and torch.allclose(y_lib[:, 1], y_def, atol=1e-12)
assert torch.allclose(y_lib[:, 0], ssm.fft_causal_conv(u, k[0]), atol=1e-12)
print(f"L = {L}, n = {n}: definition == irfft(U conj(K_b)) == bidirectional_fft_conv, "
      f"max |diff| {(y_lib[:, 1] - y_def).abs().max().item():.1e}")

y_short = torch.fft.irfft(torch.fft.rfft(u, n=L) * torch.fft.rfft(k[1], n=L).conj(), n=L)   # n = L: wraps
err = (y_short - y_def).abs().amax(dim=(0, 1))                             # per output position t
print("n = L: error at t = 0:", f"{err[0].item():.1e}", "| smallest error over t >= 1:", f"{err[1:].min().item():.1e}")
assert err[0] < 1e-12 and (err[1:] > 1e-6).all()

# %% [markdown]
# With $n = L$ the transform computes $\sum_m k_m u_{(t+m)\bmod L}$: for every $t \ge 1$ the terms
# with $t + m \ge L$ wrap around and add inputs from the *start* of the sequence. Only $t = 0$ (where
# $t + m \le L - 1$) is right. With $n \ge 2L - 1$, $t + m \le 2L - 2 < n$ never wraps.
#
# ## Solution 3

# %%
L, width = by_mode(full=32, fast=16), 4
torch.manual_seed(0)
core_a, core_b = ssm.SelectiveSSM(width), ssm.SelectiveSSM(width)
true_bi = ssm.BidirectionalSSM(width, core="selective")
x = torch.randn(1, L, width)
future = torch.arange(L)[None, :] > torch.arange(L)[:, None]               # future[t, s] = s > t


def no_flip(x):
    """The defect: two causal SSMs on the same, un-flipped sequence."""
    return torch.cat([core_a(x), core_b(x)], dim=-1)


def leak(f):
    """(max |d y_t / d x_s| over s > t, over s <= t), y_t summed over its features: one backward
    pass per output position t (cheaper than the full Jacobian, which has one per output number)."""
    xr = x.clone().requires_grad_()
    y = f(xr)                                                               # (1, L, out)
    m = torch.stack([torch.autograd.grad(y[0, t].sum(), xr, retain_graph=True)[0][0].abs().amax(-1)
                     for t in range(L)])                                    # (t, s)
    return m[future].max().item(), m[~future].max().item()


results = {"selective, no flip": leak(no_flip), "selective, BidirectionalSSM": leak(true_bi)}

bank = ssm.S4D(2 * width, 64)
K = bank.kernel_with_skip(L).detach()


def s4d_no_flip(x):
    u_ = x.transpose(1, 2)
    return torch.cat([ssm.fft_causal_conv(u_, K[:width]), ssm.fft_causal_conv(u_, K[width:])], 1).transpose(1, 2)


def s4d_bi(x):
    return bank.bidirectional(x.transpose(1, 2)).flatten(1, 2).transpose(1, 2)


results["s4d, no flip"] = leak(s4d_no_flip)
results["s4d, one-FFT bidirectional"] = leak(s4d_bi)
for name, (fut, past) in results.items():
    print(f"{name:28s}: max |dy_t/dx_s| over s > t {fut:.1e}, over s <= t {past:.1e}")
assert results["selective, no flip"][0] == 0.0                        # exactly nothing from the future
assert results["selective, BidirectionalSSM"][0] > 1e-3 * results["selective, BidirectionalSSM"][1]
assert results["s4d, no flip"][0] < 1e-5 * results["s4d, no flip"][1]          # float32 round-off only
assert results["s4d, one-FFT bidirectional"][0] > 1e-2 * results["s4d, one-FFT bidirectional"][1]

# %% [markdown]
# Concatenating two causal SSMs gives a wider causal layer, not a bidirectional one: two sets of
# parameters, the same blindness to the future. The flip of the second input (and of its output)
# is the whole difference.
#
# ## Solution 4

# %%
def scan_sequential(u, delta, A, B, C):
    b, d, L = u.shape
    h = torch.zeros(b, d, A.shape[1], dtype=u.dtype)
    ys = []
    for t in range(L):
        h = torch.exp(delta[:, :, t, None] * A) * h + (delta[:, :, t] * u[:, :, t])[..., None] * B[:, None, :, t]
        ys.append(torch.einsum("bdn,bn->bd", h, C[:, :, t]))
    return torch.stack(ys, dim=-1)


def scan_blocked(u, delta, A, B, C, Q=32):
    b, d, L = u.shape
    dT, BT, CT = delta.permute(2, 0, 1), B.permute(2, 0, 1), C.permute(2, 0, 1)
    duT = (delta * u).permute(2, 0, 1)
    h = torch.zeros(b, d, A.shape[1], dtype=u.dtype)
    ys = []
    for s in range(0, L, Q):
        decay = torch.exp(dT[s:s + Q, ..., None] * A)
        states = duT[s:s + Q, ..., None] * BT[s:s + Q, :, None, :]
        for i in range(states.shape[0]):
            h = states[i].addcmul_(decay[i], h)
        ys.append(torch.einsum("tbdn,tbn->bdt", states, CT[s:s + Q]))
    return torch.cat(ys, dim=-1)


def best_of(fn, reps=3):
    best = math.inf
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


Ls = by_mode(full=[256, 1024], fast=[64, 256])
methods = {"loop": scan_sequential, **{f"blocked Q={q}": (lambda q: lambda *a: scan_blocked(*a, Q=q))(q)
                                       for q in (8, 32, 128)},
           "library": lambda *a: ssm.selective_scan(*a)}
timing = {name: [] for name in methods}
with torch.no_grad():
    for L in Ls:
        gen = torch.Generator().manual_seed(L)
        u = torch.randn(2, 32, L, generator=gen)
        delta = F.softplus(torch.randn(2, 32, L, generator=gen) - 1)
        A = -torch.arange(1, 17, dtype=torch.float32).repeat(32, 1)
        B, C = torch.randn(2, 16, L, generator=gen), torch.randn(2, 16, L, generator=gen)
        ref = None
        for name, fn in methods.items():
            sec, out = best_of(lambda: fn(u, delta, A, B, C))
            timing[name].append(sec)
            ref = out if ref is None else ref
            assert torch.allclose(out, ref, atol=1e-4, rtol=1e-4), name
print(f"forward, batch 2, 32 channels, state 16 (library block: {default_block(2, 32, 16)} steps); "
      f"{torch.get_num_threads()} threads")
for name, ts in timing.items():
    slope = math.log(ts[1] / ts[0]) / math.log(Ls[1] / Ls[0])
    cells = "  ".join(f"L={L}: {1e3 * t:7.1f} ms ({timing['loop'][i] / t:5.1f}x)" for i, (L, t) in enumerate(zip(Ls, ts)))
    print(f"{name:14s} {cells}   slope {slope:.2f}")
fastest = min((n_ for n_ in timing if n_.startswith("blocked")), key=lambda n_: timing[n_][-1])
print("fastest block length at L =", Ls[-1], "->", fastest)

# %% [markdown]
# All methods agree (float32 rounding). Where the time goes: the loop launches seven small
# operations per time step (an `exp`, products, an `einsum`); the blocked scan launches one in-place
# `addcmul_` per step plus a few vectorised operations per block, so a larger $Q$ only saves the
# per-block overhead ($L/Q$ blocks) until a block no longer fits in cache, which is why the library sizes
# $Q$ by `default_block`. Every method does work linear in $L$, so on a quiet machine its slope is near
# 1; a slope far from 1, or speed-ups that jump between runs, mean other jobs share the CPU. Compare
# ratios, and rerun before drawing conclusions.
#
# ## Answers
#
# 1. S4D uses the same $\bar A, \bar B, C$ at every position, so output $t$ weighs input $s$ by
#    $K_{t-s} = C\bar A^{t-s}\bar B$, a function of $t - s$ only: a convolution with one kernel, which
#    an FFT computes. In the selective SSM $\Delta_t$, $B_t$, $C_t$ depend on the input, so the weight of
#    $u_s$ in $y_t$ is $C_t\big(\prod_{r=s+1}^{t}\bar A_r\big)\Delta_s B_s$: it depends on $s$ and $t$
#    separately, there is no single kernel, and the recurrence (a scan, linear in $L$) is the way to
#    compute it.
# 2. Only on inputs $0, \dots, t$: both SSMs are causal and concatenation does not change what each
#    half sees (Exercise 3 measures exactly 0 for $s > t$). Flipping the second SSM's input along the
#    length, and its output back, makes that half depend on $t, \dots, L-1$.
# 3. Flip, causal convolution, flip back is a correlation, $y^b_t = \sum_{s\ge t}K^b_{s-t}u_s$, and a
#    correlation's spectrum is $\hat u\,\overline{\hat K^b}$: the same $\hat u$ the forward direction
#    multiplies by $\hat K^f$. The DFT computes *circular* convolutions and correlations; the indices
#    $t \pm m$ reach up to $2L - 2$ in size, so a length below $2L - 1$ folds some terms onto the wrong
#    outputs (with $n = L$ only $y_0$ survives, Exercise 2).

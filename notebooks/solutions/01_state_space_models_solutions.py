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
# # 01 · Solutions: State space models
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/diffussm-course/diffussm-course/blob/main/notebooks/solutions/01_state_space_models_solutions.ipynb)
#
# Worked solutions to the exercises of notebook 01, each checked with `assert`s, and answers to its
# three questions. The small helpers of the notebook (`causal_conv_direct`, `fft_conv`,
# `kernel_vandermonde`, `s4d_lin`, `s4d_inv`) are repeated here so that this notebook runs on its own.
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
import math
import time

import matplotlib.pyplot as plt
import numpy as np
import torch

from diffussm_lib import ssm

_ = seed_everything(0)
torch.set_default_dtype(torch.float64)


def causal_conv_direct(K, u):
    """y_k = sum_{j<=k} K_{k-j} u_j. K, u: (L,)."""
    y = torch.zeros_like(u)
    for i in range(u.shape[0]):
        y[i:] += K[i] * u[: u.shape[0] - i]
    return y


def fft_conv(u, K):
    """Causal convolution of u (..., L) with K (..., L) by FFT of length 2L."""
    L = u.shape[-1]
    return torch.fft.irfft(torch.fft.rfft(u, n=2 * L) * torch.fft.rfft(K, n=2 * L), n=2 * L)[..., :L]


def kernel_vandermonde(a, Cn, dt, L):
    """Kernel (L,) of one S4D channel: modes a (N/2,), C (N/2,), step dt."""
    z = torch.exp(dt * a)
    return 2 * ((Cn * (z - 1) / a) @ (z[:, None] ** torch.arange(L))).real


def s4d_lin(N):
    n = torch.arange(N // 2, dtype=torch.float64)
    return torch.complex(torch.full_like(n, -0.5), math.pi * n)


def s4d_inv(N):
    n = torch.arange(N // 2, dtype=torch.float64)
    return torch.complex(torch.full_like(n, -0.5), N / math.pi * (N / (2 * n + 1) - 1))


# %% [markdown]
# ## Solution 1
#
# The circular product of length $n$ adds to $y_t$ the terms $K_j u_{t-j+n}$ with $j > t$ (the index
# wrapped around) whenever $t - j + n \le L - 1$. The largest $j$ is $L - 1$, so output $t$ is polluted
# exactly when $t \le 2L - 2 - n$: for $n \le 2L - 2$ the first $2L - 1 - n$ outputs are wrong, and from
# $n = 2L - 1$ on none is.

# %%
L = 50
u, K = torch.randn(L), torch.randn(L)
exact = causal_conv_direct(K, u)
for n in range(L, 2 * L + 1):
    y = torch.fft.irfft(torch.fft.rfft(u, n=n) * torch.fft.rfft(K, n=n), n=n)[:L]
    wrong = ((y - exact).abs() > 1e-9).nonzero().flatten()
    predicted = torch.arange(max(0, 2 * L - 1 - n))
    assert torch.equal(wrong, predicted), (n, wrong)
    if n in (L, L + 1, 2 * L - 2, 2 * L - 1, 2 * L):
        print(f"n = {n:3d}: wrong outputs {wrong.tolist() if len(wrong) < 4 else f'0..{int(wrong[-1])}'}")
print("smallest exact length:", 2 * L - 1)

# %% [markdown]
# ## Solution 2

# %%
def diagonal_recurrence(a, Cn, dt, E, u):
    """x_k = z x_{k-1} + Bbar u_k, y_k = 2 Re(C x_k) + E u_k; a, Cn complex (N/2,), u (L,)."""
    z = torch.exp(dt * a)
    Bbar = (z - 1) / a
    x = torch.zeros_like(a)
    ys = []
    for k in range(u.shape[0]):
        x = z * x + Bbar * u[k]
        ys.append(2 * (Cn * x).sum().real + E * u[k])
    return torch.stack(ys)


gen = torch.Generator().manual_seed(0)
modes = 8                                                  # N/2 complex modes, N = 16
a = torch.complex(-torch.rand(modes, generator=gen) - 0.05, 10 * torch.randn(modes, generator=gen))
Cn = torch.complex(torch.randn(modes, generator=gen), torch.randn(modes, generator=gen))
dt, E = 0.05, torch.randn((), generator=gen)
assert (a.real < 0).all()
for L in (1, 7, 300):
    u = torch.randn(L, generator=gen)
    y_rec = diagonal_recurrence(a, Cn, dt, E, u)
    y_conv = fft_conv(u, kernel_vandermonde(a, Cn, dt, L)) + E * u
    err = (y_rec - y_conv).abs().max().item()
    print(f"L = {L:3d}: max |recurrence - convolution| = {err:.1e}")
    assert err < 1e-10

# %% [markdown]
# ## Solution 3
#
# First our kernels against the library's, for one channel with its $C$ and $\Delta$; then the
# measurements over 256 random channels per setting (the library computes those kernels quickly): the
# decay, and the sign changes over all 2,048 lags and within the memory, the lags $k \le 2/\Delta$ where
# the envelope $e^{-\Delta k/2}$ is above $1/e$. The cell also counts the modes whose frequency
# $\Delta \operatorname{Im} a_n$ passes $\pi$ radians per step, where it aliases.

# %%
N = 64
for init, modes_fn in (("lin", s4d_lin), ("inv", s4d_inv)):
    ours = modes_fn(N)
    lay = ssm.S4D(channels=1, ssm_state=N, init=init).double()
    lib_a = torch.complex(-torch.exp(lay.log_A_real[0]), lay.A_imag[0]).detach()
    assert torch.allclose(lib_a, ours, rtol=1e-6)           # the library stores the init in float32
    with torch.no_grad():                                  # give the layer our float64 modes exactly
        lay.log_A_real.copy_(torch.log(-ours.real)[None])
        lay.A_imag.copy_(ours.imag[None])
        K_lib = lay.kernel(500)[0]
        _, _, _, C_lib = lay.discrete()
        K_own = kernel_vandermonde(ours, C_lib[0], torch.exp(lay.log_dt)[0].item(), 500)
    print(f"S4D-{init}: max |own kernel - library kernel| = {(K_own - K_lib).abs().max():.1e}")
    assert torch.allclose(K_own, K_lib, atol=1e-10), init


def measure(init, dt, L=2048, channels=256):
    """Over ``channels`` random C: the median lag by which 99% of the energy has arrived, the mean number
    of sign changes over L lags and within the memory (lags k <= 2/dt), and the first kernel (L,)."""
    torch.manual_seed(0)                                   # the same random C for both inits
    lay = ssm.S4D(channels=channels, ssm_state=N, init=init).double()
    with torch.no_grad():
        lay.log_dt.fill_(math.log(dt))
        K = lay.kernel(L)                                  # (channels, L)
    energy = (K ** 2).cumsum(-1)
    k99 = ((energy / energy[:, -1:]) < 0.99).sum(-1).double().median().item()
    flips = (K[:, 1:] * K[:, :-1]) < 0                     # (channels, L - 1): sign change from lag k to k + 1
    memory = round(2 / dt)                                 # e^{-dt k / 2} >= 1/e for k <= 2 / dt
    sign_changes = flips.sum(-1).double().mean().item()
    in_memory = flips[:, :memory].sum(-1).double().mean().item()
    return k99, sign_changes, in_memory, K[0]


rows = {}
for dt_value in (1e-3, 1e-2, 1e-1):
    for init, modes_fn in (("lin", s4d_lin), ("inv", s4d_inv)):
        rows[init, dt_value] = measure(init, dt_value)
        k99, sc, sc_mem, _ = rows[init, dt_value]
        aliased = int((dt_value * modes_fn(N).imag > math.pi).sum())
        print(f"dt = {dt_value:g}, S4D-{init}: 99% of the energy by lag {k99:5.0f} | sign changes: {sc:6.1f} in "
              f"2,048 lags, {sc_mem:6.1f} within the memory (k <= {round(2 / dt_value)}) | {aliased:2d} of "
              f"{N // 2} modes above pi rad/step")
    # decay: set by dt alone (the same for both inits), about proportional to 1/dt
    lin, inv = rows["lin", dt_value][0], rows["inv", dt_value][0]
    assert abs(lin - inv) <= 0.05 * lin
# 10x smaller dt -> memory about 10x longer (as long as it fits in the 2,048 lags)
assert 8 < rows["lin", 1e-2][0] / rows["lin", 1e-1][0] < 12
# oscillation: dt sets its time scale too. S4D-Lin (no mode aliases at dt <= 1e-2) changes sign about 10x
# as often per lag at dt = 1e-2 as at 1e-3, and about as often per memory length
per_lag = rows["lin", 1e-2][1] / rows["lin", 1e-3][1]
per_memory = rows["lin", 1e-2][2] / rows["lin", 1e-3][2]
print(f"S4D-Lin, dt = 1e-2 against 1e-3: {per_lag:.1f}x the sign changes over 2,048 lags, "
      f"{per_memory:.2f}x those within the memory")
assert 8 < per_lag < 12 and abs(per_memory - 1) < 0.1
# the initialisation sets the oscillations per memory length: at dt = 1e-3 (no mode aliases) S4D-Inv's
# large imaginary parts make it change sign several times as often within its memory as S4D-Lin
inv_over_lin = rows["inv", 1e-3][2] / rows["lin", 1e-3][2]
print(f"dt = 1e-3, sign changes within the memory: S4D-Inv / S4D-Lin = {inv_over_lin:.1f}")
assert inv_over_lin > 3
# frequencies: S4D-Lin's are evenly spread, S4D-Inv's reach 1283 but most lie low (HiPPO-like)
low_lin, low_inv = int((s4d_lin(N).imag < 30).sum()), int((s4d_inv(N).imag < 30).sum())
print(f"modes with imaginary part below 30: S4D-Lin {low_lin} of 32, S4D-Inv {low_inv} of 32")
assert (low_lin, low_inv) == (10, 19)
# every mode of both inits decays by the same factor per step
for init_fn in (s4d_lin, s4d_inv):
    assert torch.allclose(torch.exp(0.01 * init_fn(N)).abs(), torch.full((N // 2,), math.exp(-0.005)))

fig, axes = plt.subplots(1, 3, figsize=(13, 3))
for ax, dt_value in zip(axes, (1e-3, 1e-2, 1e-1)):
    for init in ("lin", "inv"):
        ax.plot(rows[init, dt_value][3][:600].numpy(), label=f"S4D-{init}", lw=0.8)
    ax.set_title(f"dt = {dt_value:g}"); ax.set_xlabel("lag k"); ax.legend()
plt.tight_layout(); plt.show()

# %% [markdown]
# $\Delta$ sets the time scale of both the decay and the oscillation. Every mode of both
# initialisations has $|z_n| = e^{-\Delta/2}$, so the energy arrives by the same lag for both (about 10x
# later for a 10x smaller $\Delta$, until the memory no longer fits in the window). And every frequency
# is $\Delta \operatorname{Im} a_n$ radians per step, so a 10x smaller $\Delta$ also oscillates 10x more
# slowly: S4D-Lin changes sign about 10x as often over the 2,048 lags at $\Delta = 10^{-2}$ as at
# $10^{-3}$ (printed above).
#
# Measured in units of the memory, $\Delta$ cancels: mode $n$ turns by $2\operatorname{Im} a_n$ radians
# over the $2/\Delta$ lags of the memory, so S4D-Lin changes sign about as often within its memory at
# $\Delta = 10^{-3}$ as at $10^{-2}$. That count, the oscillations per memory length, is what the
# initialisation sets. S4D-Lin's frequencies are $\pi n \le 31\pi$ per unit of time, evenly spread;
# S4D-Inv's reach 1283, yet 19 of its 32 modes lie below 30 (S4D-Lin: 10), the HiPPO-like shape; at
# $\Delta = 10^{-3}$ S4D-Inv changes sign within its memory about four times as often as S4D-Lin (the
# printed ratio).
#
# That holds while $\Delta \operatorname{Im} a_n$ stays below $\pi$. Above it a mode aliases (a discrete
# signal cannot turn faster than $\pi$ per step), and its ZOH weight $|\bar B_n| = |e^{\Delta a_n} - 1| /
# |a_n| \le 2/|a_n|$ falls below $\Delta$ once $\Delta |a_n| > 2$, so it counts for less in the kernel. The
# printed counts of modes above $\pi$ show it: S4D-Inv's fastest modes alias from $\Delta = 10^{-2}$ on,
# where its sign changes within the memory fall to about S4D-Lin's, and at $\Delta = 10^{-1}$ the
# fastest modes of both alias and both counts fall.
#
# ## Solution 4
#
# Three ways to compute the same causal convolution, for 4 channels (the Toeplitz matrices take
# $4 L^2$ numbers: 268 MB in float32 at $L = 4096$, and building them needs about three times that;
# fast mode stops at 1,024).

# %%
torch.set_default_dtype(torch.float32)
channels = 4
layer = ssm.S4D(channels=channels, ssm_state=64)
Ls = by_mode(full=[256, 512, 1024, 2048, 4096], fast=[256, 512, 1024])
times = {"recurrence": [], "FFT": [], "Toeplitz": []}
for L in Ls:
    u = torch.randn(4, channels, L)
    with torch.no_grad():
        K = layer.kernel_with_skip(L)                      # (channels, L): K_0 + E, K_1, ...
        i = torch.arange(L)
        lag = i[:, None] - i[None, :]
        toeplitz = torch.where(lag >= 0, K[:, lag.clamp(min=0)], torch.zeros(()))   # (channels, L, L)
        runs = {
            "recurrence": lambda: ssm.s4d_recurrence(u, *layer.discrete()[1:]) + layer.D[:, None] * u,
            "FFT": lambda: layer(u),
            "Toeplitz": lambda: torch.einsum("dij,bdj->bdi", toeplitz, u),
        }
        outs = {}
        for name, f in runs.items():
            best = math.inf
            for _ in range(2):
                t0 = time.perf_counter()
                outs[name] = f()
                best = min(best, time.perf_counter() - t0)
            times[name].append(best)
        del toeplitz
    assert torch.allclose(outs["recurrence"], outs["FFT"], atol=1e-4, rtol=1e-4)
    assert torch.allclose(outs["Toeplitz"], outs["FFT"], atol=1e-4, rtol=1e-4)
    print(f"L = {L:5d}: " + " | ".join(f"{k} {1e3 * v[-1]:8.1f} ms" for k, v in times.items()))
slopes = {k: np.polyfit(np.log(Ls), np.log(v), 1)[0] for k, v in times.items()}
print("log-log slopes:", {k: round(float(s), 2) for k, s in slopes.items()})
speedup = times["recurrence"][-1] / times["FFT"][-1]
print(f"L = {Ls[-1]}: the recurrence takes {speedup:.0f}x the time of the FFT path")

# %% [markdown]
# The Toeplitz product does $L^2$ work per channel: its slope (printed above) is about 2 once $L$ is
# large, and more once its matrices no longer fit in the cache. The FFT path grows as $L \log L$ (plus
# the $O(N\sqrt L)$ kernel), and at these sizes by less than that: fixed per-call costs still
# dominate, so its printed slope is well below 1. The recurrence's work is only $O(NL)$, so its slope
# is also about 1, and yet it is the slowest by the factor printed above: it is $L$ *sequential*
# steps, each a handful of tiny tensor operations whose fixed cost (microseconds in Python and
# PyTorch) dominates. The Toeplitz product wins at small $L$ (one large matrix multiply) and loses to
# the FFT as $L$ grows. Timings on a shared machine are noisy, so the checks above assert only that
# the three forms agree; the timings are printed, not asserted.
#
# ## Answers
#
# 1. The convolution applies one kernel to all $L$ positions at once, in $O(L \log L)$ with a few large
#    vectorised FFTs, which is what a training step over whole images needs; the recurrence takes $L$
#    sequential steps. The recurrence is the better choice when the outputs are produced one step at a
#    time and each needs only the previous state (autoregressive generation: $O(N)$ work and memory per
#    new step), or when the SSM's parameters change with the input, as in Mamba's selective SSM
#    (notebook 02), where there is no single kernel to convolve with.
# 2. The SSM is real, so the eigenvalues of its (real) $A$ and the matching entries of $B$ and $C$
#    in the eigenbasis come in complex-conjugate pairs, and the two members of a pair contribute
#    complex-conjugate terms to every $K_k$. Their sum is twice the real part of one of them, so
#    storing one mode of each pair ($N/2$ complex numbers for $N$ real state dimensions) and taking
#    $2\operatorname{Re}$ gives the same real kernel at half the cost.
# 3. The channel with $\Delta = 10^{-3}$. Every mode shrinks by $|z_n| = e^{\Delta \operatorname{Re} a_n}
#    = e^{-\Delta/2}$ per step, so its memory is about $2/\Delta$ steps: about 2,000 steps for
#    $\Delta = 10^{-3}$ (more than a flattened 28x28 image) and about 20 for $\Delta = 10^{-1}$.

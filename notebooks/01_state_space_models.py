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
# # 01 · State space models
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/diffussm-course/diffussm-course/blob/main/notebooks/01_state_space_models.ipynb)
#
# DiffuSSM replaces attention with a **state space model** (SSM): a layer that mixes information along
# a long sequence (here: the pixels of an image, flattened) in memory linear in its length and time
# close to linear ($L \log L$ with the FFT used here, against attention's $L^2$).
# This notebook builds the SSM the paper uses, **S4D**, from the continuous equations up, and checks
# every step with numbers.
#
# **Objectives.** By the end of this notebook you can
# 1. write down a continuous SSM and discretise it with the zero-order hold (ZOH);
# 2. run it as a recurrence and as a convolution with kernel $K_k = C\bar A^k \bar B$, and show they agree;
# 3. explain S4D's diagonal complex parameterisation and its initialisations S4D-Lin and S4D-Inv;
# 4. compute the S4D kernel with a Vandermonde product, and faster, with a factored one;
# 5. apply a causal convolution by FFT, and say why the FFT must be zero-padded to length $2L$;
# 6. read an impulse response as a memory, and measure why the FFT beats the loop.
#
# *Outputs shown: executed in full mode on 2026-12-03, CPU AMD EPYC, 2 torch threads, in 10 s.*

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

import matplotlib.pyplot as plt
import torch

from diffussm_lib import ssm

_ = seed_everything(0)
torch.set_default_dtype(torch.float64)   # this notebook checks identities to ~1e-12: float64 throughout

# %% [markdown]
# ## 1. The continuous SSM
#
# A state space model maps an input signal $u(t)\in\mathbb R$ to an output $y(t)\in\mathbb R$ through
# a hidden state $x(t)\in\mathbb R^N$:
#
# $$x'(t) = A\,x(t) + B\,u(t), \qquad y(t) = C\,x(t) + E\,u(t),$$
#
# with $A\in\mathbb R^{N\times N}$, $B\in\mathbb R^{N\times 1}$, $C\in\mathbb R^{1\times N}$, $E\in\mathbb R$.
# It is linear and time-invariant: the same $A, B, C, E$ at every instant. If every eigenvalue of
# $A$ has a negative real part, the state forgets old inputs exponentially: the SSM is *stable*.
#
# Two words on names. $A, B, C$ are the SSM's matrices, as in every SSM paper; where the course
# writes a tensor's shape, B is the batch and C the image channels, and context tells them apart.
# The skip (feed-through) term is called $D$ in the S4 papers and in `mamba-ssm`, and the library's
# parameter keeps that name (`S4D.D`); the course writes $E$, because $D$ is the model width (the
# glossary in `diffussm_lib/__init__.py`).
#
# A small random stable SSM to play with ($N = 4$):

# %%
N = 4
G = torch.randn(N, N)
R = torch.randn(N, N)
A = -(G @ G.T) / N - 0.2 * torch.eye(N) + (R - R.T)   # negative definite symmetric part => stable
B = torch.randn(N, 1)
C = torch.randn(1, N)
E = torch.randn(())
print("eigenvalues of A:", torch.linalg.eigvals(A))
assert (torch.linalg.eigvals(A).real < 0).all()

# %% [markdown]
# ## 2. Discretisation: the zero-order hold
#
# A sequence $u_0, u_1, \dots$ is a signal sampled every $\Delta$ seconds. The **zero-order hold**
# assumes the input is constant between samples. Then the ODE can be solved exactly over one step:
#
# $$x_k = e^{\Delta A} x_{k-1} + \Big(\int_0^\Delta e^{sA}\,ds\Big) B\,u_k
#      = \bar A\,x_{k-1} + \bar B\,u_k,\qquad
#   \bar A = e^{\Delta A},\quad \bar B = A^{-1}(e^{\Delta A} - I)\,B .$$
#
# We check the formula against a brute-force numerical integration of the ODE (classic Runge-Kutta
# with many small sub-steps, input held constant over each step).

# %%
def zoh_dense(A, B, dt):
    """ZOH for a dense SSM: (Abar (N, N), Bbar (N, 1))."""
    Abar = torch.linalg.matrix_exp(dt * A)
    Bbar = torch.linalg.solve(A, (Abar - torch.eye(A.shape[0])) @ B)
    return Abar, Bbar


def rk4_step(A, B, x, u, h):
    f = lambda x: A @ x + B * u
    k1 = f(x); k2 = f(x + h / 2 * k1); k3 = f(x + h / 2 * k2); k4 = f(x + h * k3)
    return x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)


dt, L = 0.1, 50
u = torch.randn(L)
Abar, Bbar = zoh_dense(A, B, dt)
x_zoh, x_ode = torch.zeros(N, 1), torch.zeros(N, 1)
for k in range(L):
    x_zoh = Abar @ x_zoh + Bbar * u[k]
    for _ in range(100):                                  # 100 RK4 sub-steps of dt/100
        x_ode = rk4_step(A, B, x_ode, u[k], dt / 100)
print("max |ZOH - ODE| after", L, "steps:", (x_zoh - x_ode).abs().max().item())
assert torch.allclose(x_zoh, x_ode, atol=1e-9)

# %% [markdown]
# ## 3. Two views of the same layer: recurrence and convolution
#
# **Recurrent view.** Start from $x_{-1} = 0$ and step: $x_k = \bar A x_{k-1} + \bar B u_k$,
# $y_k = C x_k + E u_k$. Cost: $L$ sequential steps; memory: one state. Good for generation one step
# at a time, bad for a parallel machine.
#
# **Convolutional view.** Unroll the recurrence: $x_k = \sum_{j\le k} \bar A^{k-j}\bar B u_j$, so
#
# $$y_k = \sum_{j=0}^{k} K_{k-j}\,u_j + E u_k, \qquad K_i = C\bar A^{i}\bar B \quad (i = 0,\dots,L-1).$$
#
# The whole layer is one long **causal convolution** with kernel $K\in\mathbb R^L$, which can be
# computed once and applied to all positions in parallel.

# %%
def ssm_recurrence(Abar, Bbar, C, E, u):
    """u: (L,) -> y: (L,), one step at a time."""
    x, ys = torch.zeros(Abar.shape[0], 1), []
    for k in range(u.shape[0]):
        x = Abar @ x + Bbar * u[k]
        ys.append((C @ x).squeeze() + E * u[k])
    return torch.stack(ys)


def ssm_kernel_dense(Abar, Bbar, C, L):
    """K_i = C Abar^i Bbar, i = 0..L-1, by repeated multiplication. Returns (L,)."""
    K, v = [], Bbar
    for _ in range(L):
        K.append((C @ v).squeeze())
        v = Abar @ v
    return torch.stack(K)


def causal_conv_direct(K, u):
    """y_k = sum_{j<=k} K_{k-j} u_j, written as a loop over lags. K, u: (L,)."""
    y = torch.zeros_like(u)
    for i in range(u.shape[0]):
        y[i:] += K[i] * u[: u.shape[0] - i]
    return y


K_dense = ssm_kernel_dense(Abar, Bbar, C, L)
y_rec = ssm_recurrence(Abar, Bbar, C, E, u)
y_conv = causal_conv_direct(K_dense, u) + E * u
print("max |recurrence - convolution|:", (y_rec - y_conv).abs().max().item())
assert torch.allclose(y_rec, y_conv, atol=1e-12)

# %% [markdown]
# ## 4. S4D: make $A$ diagonal (and complex)
#
# Computing $\bar A^i$ for a dense $N\times N$ matrix is expensive. But almost every real matrix is
# diagonalisable over the complex numbers, $A = P\Lambda P^{-1}$, and changing the state's basis
# ($\tilde x = P^{-1}x$, $\tilde B = P^{-1}B$, $\tilde C = CP$) gives the *same* input-output map with
# a diagonal $\Lambda$. The eigenvalues of a real matrix come in **conjugate pairs**, and the two members
# of a pair contribute complex-conjugate terms to $y$: so we keep one of each pair and take twice the
# real part. Let us verify on our dense SSM that the diagonal form has the same kernel.

# %%
lam, P = torch.linalg.eig(A)
Bt = torch.linalg.solve(P, B.to(lam.dtype)).squeeze(-1)    # (N,)
Ct = (C.to(lam.dtype) @ P).squeeze(0)                      # (N,)
z = torch.exp(dt * lam)                                    # diagonal Abar
Bbar_t = (z - 1) / lam * Bt                                # diagonal ZOH: (e^{dt lam} - 1) / lam * B
k = torch.arange(L)
K_diag = (Ct[:, None] * Bbar_t[:, None] * z[:, None] ** k).sum(0)
print("imaginary part of the kernel (should vanish):", K_diag.imag.abs().max().item())
assert torch.allclose(K_diag.real, K_dense, atol=1e-10)
# keep one eigenvalue of each conjugate pair (positive imaginary part), double the real part
keep = lam.imag > 0
K_half = 2 * (Ct[keep, None] * Bbar_t[keep, None] * z[keep, None] ** k).sum(0).real
if keep.sum() * 2 == N:                                    # every eigenvalue has a partner
    assert torch.allclose(K_half, K_dense, atol=1e-10)
print("eigenvalues kept:", lam[keep])

# %% [markdown]
# **S4D** ("On the Parameterization and Initialization of Diagonal State Space Models", Gu et al. 2022)
# learns the diagonal directly: per channel, $N$ real state dimensions held as $N/2$ complex modes
# $a_n$ with $\operatorname{Re} a_n < 0$, a complex $C$, a step size $\Delta$ and a skip $E$; $B$ is fixed
# to 1 because it is redundant with $C$. The ZOH for a diagonal is elementwise:
# $z_n = e^{\Delta a_n}$, $\bar B_n = (e^{\Delta a_n} - 1)/a_n$.
#
# Two initialisations from the paper ($n = 0,\dots,N/2-1$, with $N$ the **full** state size):
#
# * **S4D-Lin:** $a_n = -\tfrac12 + i\pi n$: frequencies on a regular grid (a damped Fourier basis);
# * **S4D-Inv:** $a_n = -\tfrac12 + i\,\tfrac{N}{\pi}\big(\tfrac{N}{2n+1} - 1\big)$: an approximation of the
#   HiPPO-LegS spectrum of S4. For $N = 64$ the imaginary parts fall from 1283.4 at $n = 0$ to 0.32 at
#   $n = 31$, all positive. (A tempting slip is to write $N/2$, the number of modes, for $N$: the
#   values come out about 4x too small and turn negative from $n = N/4$ on. The S4D paper and its
#   reference code use $N$.)
#
# The real part $-\tfrac12$ sets how fast each mode decays, the imaginary part how fast it oscillates.
# We build both and check them against the library (which stores them with one row per channel,
# shape (channels, N/2)). **The course's models use S4D-Lin** (the default of `model.ssm_init` in
# every config; set `ssm_init: inv` to try S4D-Inv), with $N = 64$ as in BiGS.

# %%
def s4d_lin(N):
    n = torch.arange(N // 2, dtype=torch.float64)
    return torch.complex(torch.full_like(n, -0.5), math.pi * n)


def s4d_inv(N):
    n = torch.arange(N // 2, dtype=torch.float64)
    return torch.complex(torch.full_like(n, -0.5), N / math.pi * (N / (2 * n + 1) - 1))


for name, ours in (("lin", s4d_lin(64)), ("inv", s4d_inv(64))):
    a_re, a_im = ssm.s4d.s4d_init_A(3, 64, name)      # library: (3 channels, N/2 = 32), float32
    assert torch.allclose(ours.real, a_re[1].double()) and torch.allclose(ours.imag, a_im[1].double(), rtol=1e-6)
inv = s4d_inv(64).imag
assert abs(inv[0] - 1283.4) < 0.1 and abs(inv[31] - 0.32) < 0.01 and (inv > 0).all()
print("S4D-Lin imag parts:", s4d_lin(64).imag[:5].numpy().round(2), "...")
print("S4D-Inv imag parts:", inv[:5].numpy().round(2), "...", inv[-2:].numpy().round(2))

# %% [markdown]
# ## 5. The kernel as a Vandermonde product
#
# With a diagonal state the kernel is a sum of $N/2$ damped complex exponentials,
#
# $$K_k = 2\,\operatorname{Re}\sum_{n} (C_n \bar B_n)\, z_n^{k},$$
#
# i.e. the vector $(C\bar B)$ times the **Vandermonde matrix** $V_{n,k} = z_n^k$. That costs
# $O(NL)$ time and memory per channel ($N/2 \times L$ powers), with no matrix powers.
#
# The library goes one step further. Write $k = Qa + b$ with $Q = \lceil\sqrt L\,\rceil$, $0\le b<Q$.
# Then $z^k = z^b\,z^{Qa}$, so $K_{Qa+b} = 2\operatorname{Re}\sum_n \big(C_n\bar B_n z_n^b\big)\big(z_n^{Qa}\big)$
# is a small matrix product of an $(N/2\times Q)$ and an $(N/2\times \lceil L/Q\rceil)$ table: about
# $N\sqrt L$ complex exponentials instead of $NL/2$, and a matrix multiply that runs at full speed.
# Every power is computed as $\exp(\Delta a_n k)$ directly (never by repeated multiplication), so no
# rounding error accumulates.
#
# The library keeps both: `ssm.s4d_kernel_vandermonde` in `diffussm_lib/ssm/s4d.py` is the
# Vandermonde product as written above, and the factored product, with a hand-written backward,
# is `s4d_kernel_fast` in `diffussm_lib/ssm/kernels/s4d_kernel.py`. `S4D.kernel` runs the fast one
# by default and the readable one with `backend="reference"` (in a config: `ssm_backend: reference`).

# %%
def kernel_vandermonde(a, Cn, dt, L):
    """Kernel (L,) of one S4D channel: modes a (N/2,), C (N/2,), step dt."""
    z = torch.exp(dt * a)
    Bb = (z - 1) / a
    Vm = z[:, None] ** torch.arange(L)                     # (N/2, L) Vandermonde matrix
    return 2 * ((Cn * Bb) @ Vm).real


layer = ssm.S4D(channels=2, ssm_state=64).double()          # library module: 2 channels
dtA, zl, Bbar_l, C_l = layer.discrete()                    # complex (channels, N/2) each
a_l = -torch.exp(layer.log_A_real) + 1j * layer.A_imag
dt_l = torch.exp(layer.log_dt)
L = 300                                                    # not a power of two on purpose
with torch.no_grad():
    K_ours = torch.stack([kernel_vandermonde(a_l[h], C_l[h], dt_l[h], L) for h in range(2)])
    K_lib_v = ssm.s4d_kernel_vandermonde(zl, C_l * Bbar_l, L)
    K_lib = layer.kernel(L)                                # the fast factored product (default)
Q = math.isqrt(L - 1) + 1
print(f"L = {L}: Q = {Q}, tables of {Q} and {-(-L // Q)} powers per mode instead of {L}")
print("ours vs library Vandermonde:", (K_ours - K_lib_v).abs().max().item())
print("Vandermonde vs factored    :", (K_lib_v - K_lib).abs().max().item())
assert torch.allclose(K_ours, K_lib_v, atol=1e-12) and torch.allclose(K_lib_v, K_lib, atol=1e-12)

# %% [markdown]
# ## 6. Causal convolution by FFT, zero-padded to $2L$
#
# The FFT turns convolution into a pointwise product, but a **circular** one: indices wrap around
# modulo the FFT length $n$. With $n = L$, the end of the sequence would leak into its beginning.
# Padding $u$ and $K$ with zeros to $n = 2L$ makes every wrapped term multiply a zero, so the first
# $L$ outputs are exactly the causal (linear) convolution. Cost: $O(L\log L)$ instead of $O(L^2)$.

# %%
def fft_conv(u, K):
    """Causal convolution of u (..., L) with K (..., L) by FFT of length 2L."""
    L = u.shape[-1]
    return torch.fft.irfft(torch.fft.rfft(u, n=2 * L) * torch.fft.rfft(K, n=2 * L), n=2 * L)[..., :L]


u = torch.randn(L)
K = K_lib[0]
y_direct = causal_conv_direct(K, u)
y_fft = fft_conv(u, K)
y_wrapped = torch.fft.irfft(torch.fft.rfft(u) * torch.fft.rfft(K), n=L)   # no padding: circular
print("2L padding, max error :", (y_fft - y_direct).abs().max().item())
print("no padding, max error :", (y_wrapped - y_direct).abs().max().item(), "(wrap-around)")
assert torch.allclose(y_fft, y_direct, atol=1e-12)
assert not torch.allclose(y_wrapped, y_direct, atol=1e-3)
assert torch.allclose(ssm.fft_causal_conv(u[None, None], K[None]).squeeze(), y_fft, atol=1e-12)

# %% [markdown]
# Any length $n \ge 2L - 1$ works (the full linear convolution has $2L - 1$ terms; Exercise 1 shows
# that $2L - 2$ does not). The library takes the smallest $n \ge 2L - 1$ of the form $2^a 3^b 5^c$,
# because FFT libraries are fastest on lengths with small prime factors: for the course's $L = 196$,
# $2L = 392 = 2^3 \cdot 7^2$ while `fft_length(196)` $= 400 = 2^4 \cdot 5^2$. How much that buys depends
# on the FFT library and the CPU: the cell below measures it on yours, at about the size of one
# block's transforms in the course's model (a batch of 64 images, 256 channels: both directions of
# the width-128 model).

# %%
fft_length = ssm.fft_length
print("fft_length(196) =", fft_length(196), "  fft_length(1024) =", fft_length(1024))
assert fft_length(196) == 400 and fft_length(1024) == 2048

x_t = torch.randn(by_mode(full=64, fast=8), 256, 196, dtype=torch.float32)
fft_time = {}
for n in (392, 400):
    best = math.inf
    for _ in range(by_mode(full=10, fast=3)):
        t0 = time.perf_counter()
        torch.fft.irfft(torch.fft.rfft(x_t, n=n), n=n)
        best = min(best, time.perf_counter() - t0)
    fft_time[n] = best
print(f"rfft + irfft: n = 392 {1e3 * fft_time[392]:.1f} ms, n = 400 {1e3 * fft_time[400]:.1f} ms "
      f"(n = 400 is {fft_time[392] / fft_time[400]:.2f}x as fast on this machine)")

# %% [markdown]
# ### The backward pass: a correlation, from the saved spectra
#
# The library's `ssm.fft_causal_conv` is this convolution (at length `fft_length(L)`), left to
# autograd like ours. Its fast twin, `fft_causal_conv_fast` in `diffussm_lib/ssm/kernels/fft_conv.py`
# (what the models run by default), computes the same with a hand-written
# backward pass. The gradient of a convolution is a *correlation*: with $\hat g$ the spectrum of the
# incoming gradient, $\partial u = \mathrm{irfft}(\hat g\,\overline{\hat K})$ and
# $\partial K = \mathrm{irfft}(\sum_\text{batch} \hat g\,\overline{\hat u})$, using the spectra
# $\hat u, \hat K$ that the forward pass saved. That is **three transforms** (one rfft of the
# gradient, one irfft per input), and autograd, differentiating through the forward, also does three.
# The hand-written backward gains elsewhere: all its transforms are real ones (rfft / irfft), while
# PyTorch's autograd turns the backward of each forward rfft into a complex-to-complex transform of
# the full length $n$. The cell lists the FFT kernels each backward calls, checks that both give the
# same gradients, and times them. To see the calls it records every ATen operation the backward
# dispatches, with a `TorchDispatchMode` (the hook torch's `FlopCounterMode`, used from notebook 03 on,
# is built on); unlike `torch.profiler`, it starts no tracing machinery that could print to stderr.

# %%
from torch.utils._python_dispatch import TorchDispatchMode

from diffussm_lib.ssm.kernels.fft_conv import fft_causal_conv_fast


def fft_conv_autograd(u, K):
    """ssm.fft_causal_conv written out: the convolution at length fft_length(L), left to autograd.
    u (B, D, L), K (D, L)."""
    L = u.shape[-1]
    n = fft_length(L)
    return torch.fft.irfft(torch.fft.rfft(u, n=n) * torch.fft.rfft(K, n=n), n=n)[..., :L]


class OpRecorder(TorchDispatchMode):
    """Inside ``with OpRecorder() as rec:``, ``rec.names`` lists every ATen operation run, e.g. "aten::_fft_r2c"."""

    def __init__(self):
        super().__init__()
        self.names = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(f"aten::{func.overloadpacket.__name__}")
        return func(*args, **(kwargs or {}))


def backward_ffts(conv, u, K, g):
    """Gradients (du, dK) of <conv(u, K), g>, and the names of the FFT kernels the backward called."""
    u, K = u.clone().requires_grad_(), K.clone().requires_grad_()
    y = conv(u, K)
    with OpRecorder() as rec:
        y.backward(g)
    names = sorted(n for n in rec.names if n.startswith("aten::_fft_"))
    return u.grad, K.grad, names


u3, K3 = torch.randn(2, 4, 196), torch.randn(4, 196)
g3 = torch.randn(2, 4, 196)
du_a, dK_a, ffts_a = backward_ffts(fft_conv_autograd, u3, K3, g3)
du_h, dK_h, ffts_h = backward_ffts(fft_causal_conv_fast, u3, K3, g3)
print("autograd backward    :", ffts_a)
print("hand-written backward:", ffts_h)
assert torch.allclose(du_a, du_h, atol=1e-10) and torch.allclose(dK_a, dK_h, atol=1e-10)
assert len(ffts_a) == len(ffts_h) == 3 and "aten::_fft_c2c" not in ffts_h

uf, Kf = torch.randn(8, 128, 784, dtype=torch.float32), torch.randn(128, 784, dtype=torch.float32)
for name, conv in (("autograd", fft_conv_autograd), ("hand-written", fft_causal_conv_fast)):
    best = math.inf
    for _ in range(by_mode(full=5, fast=2)):
        u_, K_ = uf.clone().requires_grad_(), Kf.clone().requires_grad_()
        t0 = time.perf_counter()
        conv(u_, K_).sum().backward()
        best = min(best, time.perf_counter() - t0)
    print(f"{name:12s}: forward + backward at batch 8, 128 channels, L = 784: {1e3 * best:.1f} ms")

# %% [markdown]
# The bidirectional version (`bidirectional_fft_conv`, notebook 02) goes further: both directions
# share one FFT of the input, and its backward again reuses the saved spectra.
#
# ## 7. The S4D layer: recurrence equals FFT convolution
#
# Now the whole library layer, `S4D(channels=D, ssm_state=N)`: it maps (B, D, L) to (B, D, L) with an
# independent SSM per channel (in DiffuSSM the channels are the model width $D$, or $2D$ for the two
# directions). We compare its FFT path with the step-by-step recurrence for several lengths, including
# lengths that are not powers of two and a one-step sequence. The skip $E$ is the parameter `layer.D`.

# %%
layer = ssm.S4D(channels=4, ssm_state=64, dt_max=0.5).double()
for L in [1, 7, 100, 196, 784, 1000]:
    u = torch.randn(2, 4, L)
    with torch.no_grad():
        _, zl, Bbar_l, C_l = layer.discrete()
        y_rec = ssm.s4d_recurrence(u, zl, Bbar_l, C_l) + layer.D[:, None] * u     # + E u
        y_fft = layer(u)
    err = (y_rec - y_fft).abs().max().item()
    print(f"L = {L:5d}: max |recurrence - FFT| = {err:.1e}")
    assert err < 1e-10

# %% [markdown]
# ## 8. Impulse responses: the step size is the memory
#
# The kernel *is* the impulse response: feed $u = (1, 0, 0, \dots)$ and $y = K$ (plus $E$ at $k=0$).
# Each mode decays like $e^{-\Delta k/2}$, so the layer remembers roughly $2/\Delta$ steps: a small
# $\Delta$ gives a long, slowly oscillating memory, a large one a short memory. S4D initialises
# $\Delta$ log-uniformly in $[10^{-3}, 10^{-1}]$ so that different channels look at different ranges.
#
# Read the kernel's *shape*, not its size. Its **amplitude** scales with $\Delta$: the ZOH gives
# $\bar B_n = (e^{\Delta a_n} - 1)/a_n \approx \Delta$ while $\Delta |a_n| \ll 1$, because each input is
# held for one step of length $\Delta$ and the state integrates it over that step; a small $\Delta$
# puts little of each sample into the state, so its whole kernel is small (the printed $\max_k |K_k|$
# grows about 10x from $\Delta = 10^{-3}$ to $10^{-2}$, and less from $10^{-2}$ to $10^{-1}$, where
# $\Delta |a_n|$ is no longer small for the faster modes). Its **memory** is how fast
# $|K_k|$ falls relative to its own largest value. The plots therefore show $K_k / \max_k |K_k|$ with
# the decay $e^{-\Delta k/2}$ that every mode follows (the library initialises
# $\operatorname{Re} a_n = -\tfrac12$ for every mode, so $|z_n|^k = e^{-\Delta k/2}$; the cell checks it),
# drawn as the envelope $\pm c\,e^{-\Delta k/2}$ with the smallest $c$ that keeps it above the curve,
# and title each with the relative tail $\max_{k \ge 200} |K_k| / \max_k |K_k|$. The cell prints these
# and the absolute $\max_k |K_k|$.

# %%
L = 784                                                    # one 28x28 image, flattened
lags = torch.arange(L)
fig, axes = plt.subplots(1, 3, figsize=(13, 3), sharey=True)
torch.manual_seed(1)
base = ssm.S4D(channels=1, ssm_state=64).double()
assert torch.allclose(-torch.exp(base.log_A_real), torch.full_like(base.log_A_real, -0.5))   # Re a_n = -1/2
tails = {}
for ax, dt_value in zip(axes, [1e-3, 1e-2, 1e-1]):
    with torch.no_grad():
        base.log_dt.fill_(math.log(dt_value))
        Kd = base.kernel(L)[0]
    peak = Kd.abs().max().item()
    tails[dt_value] = Kd[200:].abs().max().item() / peak
    decay = torch.exp(-dt_value * lags / 2)
    near = decay > 1e-8                                    # beyond, |K_k| is at the level of rounding errors
    c = (Kd.abs() / peak / decay)[near].max().item()       # the smallest c with |K_k| / max|K| <= c e^{-dt k/2}
    envelope = (c * decay).numpy()
    ax.plot(Kd.numpy() / peak, lw=0.8, label="K_k / max |K|")
    ax.plot(envelope, "k--", lw=0.8, label=r"$\pm c\,e^{-\Delta k/2}$")
    ax.plot(-envelope, "k--", lw=0.8)
    ax.set_title(f"dt = {dt_value:g}: max|K[200:]| / max|K| = {tails[dt_value]:.1e}", fontsize=9)
    ax.set_xlabel("lag k")
    print(f"dt = {dt_value:g}: max|K| = {peak:.2e} | max|K[200:]| / max|K| = {tails[dt_value]:.2e} "
          f"| e^(-dt k/2) at k = 200: {math.exp(-dt_value * 200 / 2):.2e} | c = {c:.2f}")
axes[0].set_ylabel("K_k / max_k |K_k|")
axes[0].legend(fontsize=8, loc="lower right")
plt.tight_layout()
plt.show()
assert tails[1e-3] > tails[1e-2] > tails[1e-1]               # the smaller dt, the longer the memory
with torch.no_grad():
    base.log_dt.fill_(math.log(0.1))
    K01 = base.kernel(L)[0]
assert K01[400:].abs().max() < 1e-6 * K01.abs().max()       # dt = 0.1: forgotten after a few hundred steps

# %% [markdown]
# ## 9. The loop against the FFT
#
# Same layer, same numbers, very different cost: the recurrence makes $L$ sequential small steps;
# the FFT path computes the kernel once and does three FFTs of length `fft_length(L)` $\ge 2L - 1$,
# all vectorised. (Timings are from this machine and vary; the ratio is what matters.)

# %%
torch.set_default_dtype(torch.float32)
D = 64                                                     # channels (a model of width D = 64)
layer = ssm.S4D(channels=D, ssm_state=64)
for L in by_mode(full=[196, 784, 1024, 4096], fast=[196, 784]):
    u = torch.randn(4, D, L)
    t_rec = t_fft = math.inf
    with torch.no_grad():
        for _ in range(2):                                 # best of 2: the first run warms up
            t0 = time.perf_counter()
            _, zl, Bbar_l, C_l = layer.discrete()
            y_rec = ssm.s4d_recurrence(u, zl, Bbar_l, C_l) + layer.D[:, None] * u
            t1 = time.perf_counter()
            y_fft = layer(u)
            t2 = time.perf_counter()
            t_rec, t_fft = min(t_rec, t1 - t0), min(t_fft, t2 - t1)
    assert torch.allclose(y_rec, y_fft, atol=1e-4, rtol=1e-4)
    print(f"L = {L:5d}: recurrence {1e3 * t_rec:8.1f} ms | FFT {1e3 * t_fft:6.1f} ms | speed-up {t_rec / t_fft:6.1f}x")
print("(on a machine shared with other jobs, timings are noisy)")

# %% [markdown]
# ## Summary
#
# * A continuous SSM, discretised with the zero-order hold, is both a **recurrence** (one state,
#   $L$ steps) and a **convolution** with kernel $K_k = C\bar A^k\bar B$; we checked they agree.
# * **S4D** diagonalises $A$ (complex, conjugate pairs, $N/2$ modes per channel) so the kernel is a
#   Vandermonde product, computed by the library as a factored product $z^{Qa+b} = z^b z^{Qa}$.
# * The convolution is applied by FFT **zero-padded to at least $2L - 1$**, which removes the circular
#   wrap-around; its hand-written backward computes the correlations from the saved spectra with
#   real transforms only.
# * The library pieces: `ssm.S4D`, `ssm.s4d_kernel_vandermonde`, `ssm.fft_causal_conv`,
#   `ssm.s4d_recurrence` (in `diffussm_lib/ssm/s4d.py` and `fft_conv.py`, written as this notebook
#   derives them); the fast factored kernel and the hand-written backward beside them in
#   `diffussm_lib/ssm/kernels/`, which the models run unless `ssm_backend: reference` asks for the
#   readable forms.
#
# Next (notebook 02): the *selective* SSM of Mamba, whose $\Delta$, $B$, $C$ depend on the input, so
# it cannot be a convolution; a fast scan for it; and the **bidirectional** layer that lets every pixel
# see the whole image.
#
# ## Exercises
#
# **Exercise 1.** How long must the FFT be? For $L = 50$ and a random $u$ and $K$, compute
# `irfft(rfft(u, n) * rfft(K, n), n)[:L]` for every $n$ from $L$ to $2L$ and compare it with
# `causal_conv_direct`. Show that $n = 2L - 1$ is the smallest exact length, and find which outputs
# are wrong for each $n < 2L - 1$.
# *Hint:* the circular product adds $K_j u_{t - j + n}$ to $y_t$ whenever $t - j + n \le L - 1$; work
# out for which $t$ such a $j \le L - 1$ exists.
#
# **Exercise 2.** Recurrence equals convolution for a random diagonal SSM. Draw $N/2 = 8$ complex modes
# $a_n$ with negative real parts, a complex $C$, a step $\Delta$ and a skip $E$. Run the recurrence
# $x_k = z\,x_{k-1} + \bar B u_k$, $y_k = 2\operatorname{Re}(C x_k) + E u_k$ with your own loop, and
# compare it with `fft_conv(u, kernel_vandermonde(a, C, dt, L)) + E * u` for $L = 1, 7, 300$.
# *Hint:* the state is a complex vector of 8 entries, $z = e^{\Delta a}$ and $\bar B = (z - 1)/a$; the
# two must agree to about $10^{-10}$ in float64.
#
# **Exercise 3.** S4D-Inv against S4D-Lin. For one channel with the same random $C$ and each
# $\Delta \in \{10^{-3}, 10^{-2}, 10^{-1}\}$, compute both kernels with your own `s4d_lin` / `s4d_inv`
# and `kernel_vandermonde` (check one against `S4D(..., init="inv").kernel`), then measure over many
# random $C$ and 2,048 lags: the **decay** (the lag by which 99% of the energy $\sum_k K_k^2$ has
# arrived) and the **oscillation**, counted two ways: the sign changes of $K$ over all 2,048 lags, and
# those within the memory, the lags $k \le 2/\Delta$ where the envelope $e^{-\Delta k/2}$ is above
# $1/e$. What does $\Delta$ change in each count, and what does the initialisation change?
# *Hint:* both initialisations have $\operatorname{Re} a_n = -\tfrac12$, so $|z_n| = e^{-\Delta/2}$ for
# every mode. Mode $n$ turns by $\Delta \operatorname{Im} a_n$ radians per step, so by
# $2 \operatorname{Im} a_n$ over the $2/\Delta$ lags of the memory, whatever $\Delta$ is, as long as
# $\Delta \operatorname{Im} a_n$ stays below $\pi$ (above it the frequency aliases).
#
# **Exercise 4.** How the cost grows with $L$. For $L$ from 256 to 4,096 (doubling), time (a) the
# recurrence `ssm.s4d_recurrence`, (b) the FFT path `layer(u)` and (c) the convolution as a dense
# $L\times L$ lower-triangular (Toeplitz) matrix product, check that the three agree, and fit the slope
# of $\log(\text{time})$ against $\log L$ for each. Which is quadratic, and why is the linear
# recurrence still the slowest?
# *Hint:* build the matrix with `K[..., (i - j).clamp(min=0)]` masked to $i \ge j$; use a few channels
# so that it fits in memory; `numpy.polyfit(np.log(Ls), np.log(times), 1)[0]` is the slope.
#
# ## Check your understanding
#
# 1. The recurrence and the convolution give the same outputs. Why does the course train with the
#    convolution, and when would you rather run the recurrence?
# 2. Why can S4D store only $N/2$ complex modes for $N$ real state dimensions, and take twice the
#    real part of their sum?
# 3. Two channels have the same modes $a_n$ but $\Delta = 10^{-3}$ and $\Delta = 10^{-1}$. Which
#    remembers farther back, roughly how many steps each, and why?
#
# ## References
#
# * A. Gu, K. Goel, C. Ré. *Efficiently Modeling Long Sequences with Structured State Spaces* (S4).
#   2021, arXiv 2111.00396.
# * A. Gu, A. Gupta, K. Goel, C. Ré. *On the Parameterization and Initialization of Diagonal State
#   Space Models* (S4D: S4D-Lin, S4D-Inv). 2022, arXiv 2206.11893.
# * A. Gu, T. Dao, S. Ermon, A. Rudra, C. Ré. *HiPPO: Recurrent Memory with Optimal Polynomial
#   Projections*. 2020, arXiv 2008.07669 (the LegS spectrum that S4D-Inv approximates).
# * J. Wang, J. N. Yan, A. Gu, A. M. Rush. *Pretraining Without Attention* (BiGS). 2022,
#   arXiv 2212.10544 (the S4D layer and state size DiffuSSM builds on).
# * J. N. Yan, J. Gu, A. M. Rush. *Diffusion Models Without Attention* (DiffuSSM). 2023,
#   arXiv 2311.18257 (CVPR 2024).

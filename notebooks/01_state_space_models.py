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
# # 01 · State space models
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/diffussm-course/diffussm-course/blob/main/notebooks/01_state_space_models.ipynb)
#
# DiffuSSM replaces attention with a **state space model** (SSM): a layer that mixes information along
# a long sequence (here: the pixels of an image, flattened) in time and memory linear in its length.
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
# $$x'(t) = A\,x(t) + B\,u(t), \qquad y(t) = C\,x(t) + D\,u(t),$$
#
# with $A\in\mathbb R^{N\times N}$, $B\in\mathbb R^{N\times 1}$, $C\in\mathbb R^{1\times N}$, $D\in\mathbb R$.
# It is linear and time-invariant: the same $A, B, C, D$ at every instant. If every eigenvalue of
# $A$ has a negative real part, the state forgets old inputs exponentially: the SSM is *stable*.
#
# A small random stable SSM to play with ($N = 4$):

# %%
N = 4
M = torch.randn(N, N)
S = torch.randn(N, N)
A = -(M @ M.T) / N - 0.2 * torch.eye(N) + (S - S.T)   # negative definite symmetric part => stable
B = torch.randn(N, 1)
C = torch.randn(1, N)
D = torch.randn(())
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
# $y_k = C x_k + D u_k$. Cost: $L$ sequential steps; memory: one state. Good for generation one step
# at a time, bad for a parallel machine.
#
# **Convolutional view.** Unroll the recurrence: $x_k = \sum_{j\le k} \bar A^{k-j}\bar B u_j$, so
#
# $$y_k = \sum_{j=0}^{k} K_{k-j}\,u_j + D u_k, \qquad K_i = C\bar A^{i}\bar B \quad (i = 0,\dots,L-1).$$
#
# The whole layer is one long **causal convolution** with kernel $K\in\mathbb R^L$, which can be
# computed once and applied to all positions in parallel.

# %%
def ssm_recurrence(Abar, Bbar, C, D, u):
    """u: (L,) -> y: (L,), one step at a time."""
    x, ys = torch.zeros(Abar.shape[0], 1), []
    for k in range(u.shape[0]):
        x = Abar @ x + Bbar * u[k]
        ys.append((C @ x).squeeze() + D * u[k])
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
y_rec = ssm_recurrence(Abar, Bbar, C, D, u)
y_conv = causal_conv_direct(K_dense, u) + D * u
print("max |recurrence - convolution|:", (y_rec - y_conv).abs().max().item())
assert torch.allclose(y_rec, y_conv, atol=1e-12)

# %% [markdown]
# ## 4. S4D: make $A$ diagonal (and complex)
#
# Computing $\bar A^i$ for a dense $N\times N$ matrix is expensive. But almost every real matrix is
# diagonalisable over the complex numbers, $A = V\Lambda V^{-1}$, and changing the state's basis
# ($\tilde x = V^{-1}x$, $\tilde B = V^{-1}B$, $\tilde C = CV$) gives the *same* input-output map with
# a diagonal $\Lambda$. The eigenvalues of a real matrix come in **conjugate pairs**, and the two members
# of a pair contribute complex-conjugate terms to $y$: so we keep one of each pair and take twice the
# real part. Let us verify on our dense SSM that the diagonal form has the same kernel.

# %%
lam, V = torch.linalg.eig(A)
Bt = torch.linalg.solve(V, B.to(lam.dtype)).squeeze(-1)    # (N,)
Ct = (C.to(lam.dtype) @ V).squeeze(0)                      # (N,)
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
# $a_n$ with $\operatorname{Re} a_n < 0$, a complex $C$, a step size $\Delta$ and a skip $D$; $B$ is fixed
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
# We build both and check them against the library (which stores them per channel, shape (H, N/2)).
# **The course's models use S4D-Lin** (the default of `model.ssm_init` in every config; set
# `ssm_init: inv` to try S4D-Inv).

# %%
def s4d_lin(N):
    n = torch.arange(N // 2, dtype=torch.float64)
    return torch.complex(torch.full_like(n, -0.5), math.pi * n)


def s4d_inv(N):
    n = torch.arange(N // 2, dtype=torch.float64)
    return torch.complex(torch.full_like(n, -0.5), N / math.pi * (N / (2 * n + 1) - 1))


for name, ours in (("lin", s4d_lin(64)), ("inv", s4d_inv(64))):
    re, im = ssm.s4d.s4d_init_A(3, 64, name)          # library: (H=3, N/2=32), float32
    assert torch.allclose(ours.real, re[1].double()) and torch.allclose(ours.imag, im[1].double(), rtol=1e-6)
inv = s4d_inv(64).imag
assert abs(inv[0] - 1283.4) < 0.1 and abs(inv[31] - 0.32) < 0.01 and (inv > 0).all()
print("S4D-Lin imag parts:", s4d_lin(64).imag[:5].numpy().round(2), "...")
print("S4D-Inv imag parts:", inv[:5].numpy().round(2), "...", inv[-2:].numpy().round(2))

# %% [markdown]
# ## 5. The kernel as a Vandermonde product
#
# With a diagonal state the kernel is a sum of $M$ damped complex exponentials,
#
# $$K_k = 2\,\operatorname{Re}\sum_{n} (C_n \bar B_n)\, z_n^{k},$$
#
# i.e. the vector $(C\bar B)$ times the **Vandermonde matrix** $V_{n,k} = z_n^k$. That costs
# $O(ML)$ time and memory per channel, with no matrix powers.
#
# The library goes one step further. Write $k = Ta + b$ with $T\approx\sqrt L$, $0\le b<T$. Then
# $z^k = z^b\,z^{Ta}$, so $K_{Ta+b} = 2\operatorname{Re}\sum_n \big(C_n\bar B_n z_n^b\big)\big(z_n^{Ta}\big)$ is a
# small matrix product of an $(M\times T)$ and an $(M\times L/T)$ table: about $2M\sqrt L$ complex
# exponentials instead of $ML$, and a matrix multiply that runs at full speed. Every power is computed
# as $\exp(\Delta a_n k)$ directly (never by repeated multiplication), so no rounding error accumulates.

# %%
def kernel_vandermonde(a, Cn, dt, L):
    """Kernel (L,) of one S4D channel: modes a (M,), C (M,), step dt."""
    z = torch.exp(dt * a)
    Bb = (z - 1) / a
    Vm = z[:, None] ** torch.arange(L)                     # (M, L) Vandermonde matrix
    return 2 * ((Cn * Bb) @ Vm).real


layer = ssm.S4D(d_model=2, d_state=64).double()             # library module: 2 channels
dtA, zl, Bbar_l, C_l = layer.discrete()                    # complex (H, M) each
a_l = -torch.exp(layer.log_A_real) + 1j * layer.A_imag
dt_l = torch.exp(layer.log_dt)
L = 300                                                    # not a power of two on purpose
with torch.no_grad():
    K_ours = torch.stack([kernel_vandermonde(a_l[h], C_l[h], dt_l[h], L) for h in range(2)])
    K_lib_v = ssm.s4d_kernel_vandermonde(zl, C_l * Bbar_l, L)
    K_lib = layer.kernel(L)                                # the fast factored product
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
# Any length $n \ge 2L - 1$ works (the full linear convolution has $2L - 1$ terms). The library takes
# the smallest $n$ of the form $2^a 3^b 5^c$, because the FFT is fastest on such lengths: for the
# course's $L = 196$, $2L = 392 = 2^3 \cdot 7^2$ while `fft_length(196)` $= 400 = 2^4 \cdot 5^2$,
# about 1.8x faster on a laptop CPU.

# %%
fft_length = ssm.s4d.fft_length
print("fft_length(196) =", fft_length(196), "  fft_length(1024) =", fft_length(1024))
assert fft_length(196) == 400 and fft_length(1024) == 2048

# %% [markdown]
# The library's `fft_causal_conv` is this function with a hand-written backward pass: the gradient of
# a convolution is a *correlation*, computed from the same saved spectra (multiply by the complex
# conjugate instead), so training does one extra FFT instead of differentiating through two.
#
# ## 7. The S4D layer: recurrence equals FFT convolution
#
# Now the whole library layer, `S4D(d_model=H, d_state=N)`: it maps (B, H, L) to (B, H, L) with an
# independent SSM per channel. We compare its FFT path with the step-by-step recurrence for several
# lengths, including lengths that are not powers of two and a one-step sequence.

# %%
layer = ssm.S4D(d_model=4, d_state=64, dt_max=0.5).double()
for L in [1, 7, 100, 196, 784, 1000]:
    u = torch.randn(2, 4, L)
    with torch.no_grad():
        _, zl, Bbar_l, C_l = layer.discrete()
        y_rec = ssm.s4d_recurrence(u, zl, Bbar_l, C_l) + layer.D[:, None] * u
        y_fft = layer(u)
    err = (y_rec - y_fft).abs().max().item()
    print(f"L = {L:5d}: max |recurrence - FFT| = {err:.1e}")
    assert err < 1e-10

# %% [markdown]
# ## 8. Impulse responses: the step size is the memory
#
# The kernel *is* the impulse response: feed $u = (1, 0, 0, \dots)$ and $y = K$ (plus $D$ at $k=0$).
# Each mode decays like $e^{-\Delta k/2}$, so the layer remembers roughly $2/\Delta$ steps: a small
# $\Delta$ gives a long, slowly oscillating memory, a large one a short memory. S4D initialises
# $\Delta$ log-uniformly in $[10^{-3}, 10^{-1}]$ so that different channels look at different ranges.

# %%
L = 784                                                    # one 28x28 image, flattened
fig, axes = plt.subplots(1, 3, figsize=(13, 3), sharey=False)
torch.manual_seed(1)
base = ssm.S4D(d_model=1, d_state=64).double()
for ax, dt_value in zip(axes, [1e-3, 1e-2, 1e-1]):
    with torch.no_grad():
        base.log_dt.fill_(math.log(dt_value))
        Kd = base.kernel(L)[0]
    ax.plot(Kd.numpy())
    ax.set_title(f"dt = {dt_value:g}: |K| beyond k=200 is {Kd[200:].abs().max():.1e}")
    ax.set_xlabel("lag k")
axes[0].set_ylabel("K_k")
plt.tight_layout()
plt.show()
with torch.no_grad():
    base.log_dt.fill_(math.log(0.1))
    assert base.kernel(L)[0][400:].abs().max() < 1e-6       # dt = 0.1: forgotten after a few hundred steps

# %% [markdown]
# ## 9. The loop against the FFT
#
# Same layer, same numbers, very different cost: the recurrence makes $L$ sequential small steps;
# the FFT path computes the kernel once and does three FFTs of length $2L$, all vectorised.
# (Timings are from this machine and vary; the ratio is what matters.)

# %%
torch.set_default_dtype(torch.float32)
H = 64
layer = ssm.S4D(d_model=H, d_state=64)
for L in by_mode(full=[196, 784, 1024, 4096], fast=[196, 784]):
    u = torch.randn(4, H, L)
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
    print(f"L = {L:5d}: recurrence {1e3 * t_rec:8.1f} ms | FFT {1e3 * t_fft:6.1f} ms | speed-up {t_rec / t_fft:6.0f}x")
print("(on a machine shared with other jobs, timings are noisy)")

# %% [markdown]
# ## Summary
#
# * A continuous SSM, discretised with the zero-order hold, is both a **recurrence** (one state,
#   $L$ steps) and a **convolution** with kernel $K_k = C\bar A^k\bar B$; we checked they agree.
# * **S4D** diagonalises $A$ (complex, conjugate pairs, $N/2$ modes per channel) so the kernel is a
#   Vandermonde product, computed by the library as a factored product $z^{Ta+b} = z^b z^{Ta}$.
# * The convolution is applied by FFT **zero-padded to $2L$**, which removes the circular wrap-around.
# * The library pieces: `ssm.S4D`, `ssm.s4d_kernel`, `ssm.s4d_kernel_vandermonde`,
#   `ssm.fft_causal_conv`, `ssm.s4d_recurrence`.
#
# Next (notebook 02): the *selective* SSM of Mamba, whose $\Delta$, $B$, $C$ depend on the input, so
# it cannot be a convolution; a fast scan for it; and the **bidirectional** layer that lets every pixel
# see the whole image.

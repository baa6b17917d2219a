"""S4D: a diagonal, time-invariant state space model, applied as a long convolution by FFT.

One SSM per channel h (H channels here: the S4D bank of a model of width D has H = D, or 2D for both
directions; the image height is never meant), each with N real state dimensions held as N/2 complex modes
that come in conjugate pairs (so only one of each pair is stored and the output is twice the real
part). For mode n of channel h, with step size dt_h:

    continuous:  x'(t) = A x(t) + B u(t),  y(t) = Re(C x(t)) * 2 + D u(t),   A = diag(a_n), Re a_n < 0
    ZOH:         z_n = exp(dt a_n),  Bbar_n = (exp(dt a_n) - 1) / a_n * B_n
    recurrence:  x_k = z x_{k-1} + Bbar u_k,       y_k = 2 Re(C x_k) + D u_k
    convolution: y = K * u + D u,   K_k = 2 Re(sum_n C_n Bbar_n z_n^k)   (k = 0..L-1)

B is fixed to 1 (it is redundant with C). Initialisations of a_n (n = 0..N/2-1), as in the S4D
paper (Gu et al. 2022, Sec. 4) and its reference code, N the full state size (``d_state``):

    S4D-Lin: a_n = -1/2 + i pi n
    S4D-Inv: a_n = -1/2 + i (N/pi) (N/(2n+1) - 1)          (for N = 64: 1283.4 at n = 0, 0.32 at n = 31)

The kernel is a Vandermonde product (the matrix z_n^k). We evaluate it without forming the full
(N/2, L) matrix of powers: writing k = Q a + b (Q about sqrt(L)), z^k = z^b z^(Q a), so the kernel
is one real matrix product of an (N/2, Q) and an (N/2, ceil(L/Q)) table of exponentials. Every power is
``exp(dt a_n * k)`` computed directly, never by repeated multiplication, so no error accumulates.

The causal convolution is done by FFT zero-padded to a fast length of at least 2L - 1 (so the
circular convolution does not wrap around), with a hand-written backward that reuses the saved spectra.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

INITS = ("lin", "inv")


def s4d_init_A(d_model: int, d_state: int, init: str = "lin") -> tuple[torch.Tensor, torch.Tensor]:
    """Diagonal A for ``d_model`` channels and ``d_state`` real state dims (d_state/2 complex modes).

    Returns ``(A_real, A_imag)``, both (H, N/2) float32 with N = d_state; A = A_real + i A_imag.
    """
    if init not in INITS:
        raise ValueError(f"S4D init must be one of {INITS}, got {init!r}")
    if d_state < 2 or d_state % 2:
        raise ValueError(f"d_state must be an even number >= 2 (conjugate pairs), got {d_state}")
    N = d_state
    n = torch.arange(N // 2, dtype=torch.float64)
    imag = math.pi * n if init == "lin" else (N / math.pi) * (N / (2 * n + 1) - 1)
    real = torch.full((N // 2,), -0.5)
    return real.repeat(d_model, 1).float(), imag.repeat(d_model, 1).float()


def zoh(dtA: torch.Tensor, A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-order hold for a diagonal SSM with B = 1: ``z = exp(dt A)``, ``Bbar = (z - 1) / A``.

    dtA, A: complex (H, N/2). Returns (z, Bbar), complex (H, N/2).
    """
    z = torch.exp(dtA)
    return z, (z - 1) / A


def s4d_kernel_vandermonde(z: torch.Tensor, CB: torch.Tensor, L: int) -> torch.Tensor:
    """The definition: K_k = 2 Re(sum_n CB_n z_n^k) with the full (H, N/2, L) Vandermonde matrix.

    z, CB: complex (H, N/2). Returns the real kernel (H, L). O(H N L) memory; for teaching and tests.
    """
    k = torch.arange(L, device=z.device, dtype=z.real.dtype)
    V = torch.exp(torch.log(z)[..., None] * k)                               # (H, N/2, L)
    return 2 * torch.einsum("hm,hml->hl", CB, V).real


def s4d_kernel(dtA: torch.Tensor, CB: torch.Tensor, L: int) -> torch.Tensor:
    """Fast kernel K_k = 2 Re(sum_n CB_n exp(dtA_n k)), k = 0..L-1, via z^(Qa+b) = z^b z^(Qa).

    dtA, CB: complex (H, N/2). Returns (H, L) real, in the real dtype of ``dtA``.
    """
    if L < 1:
        raise ValueError(f"kernel length must be >= 1, got {L}")
    Q = math.isqrt(L - 1) + 1                                                 # ceil(sqrt(L)), >= 1
    nA = -(-L // Q)
    rdt = dtA.real.dtype
    b = torch.arange(Q, device=dtA.device, dtype=rdt)
    a = torch.arange(nA, device=dtA.device, dtype=rdt) * Q
    # exp(dtA k) from real exp / cos / sin: vectorised, and much faster on CPU than complex exp
    re, im = dtA.real[..., None], dtA.imag[..., None]
    mag_b, ang_b = torch.exp(re * b), im * b                                  # (H, N/2, Q)
    Pb_re, Pb_im = mag_b * torch.cos(ang_b), mag_b * torch.sin(ang_b)
    mag_a, ang_a = torch.exp(re * a), im * a                                  # (H, N/2, nA)
    Pa_re, Pa_im = mag_a * torch.cos(ang_a), mag_a * torch.sin(ang_a)
    cr, ci = CB.real[..., None], CB.imag[..., None]
    W_re, W_im = cr * Pb_re - ci * Pb_im, cr * Pb_im + ci * Pb_re             # CB z^b, (H, N/2, Q)
    # Re(sum_m z_m^(Qa) W_m,b) = sum_m (Re Pa Re W - Im Pa Im W): one real batched matmul
    # (H, nA, N) @ (H, N, Q) on contiguous operands
    Pri = torch.cat([Pa_re, -Pa_im], dim=1).transpose(1, 2).contiguous()
    Wri = torch.cat([W_re, W_im], dim=1)
    K = torch.bmm(Pri, Wri)                                                   # (H, nA, Q)
    return 2 * K.reshape(K.shape[0], nA * Q)[:, :L]


def s4d_recurrence(u: torch.Tensor, z: torch.Tensor, Bbar: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """The recurrent view, one step at a time: x_k = z x_{k-1} + Bbar u_k, y_k = 2 Re(C x_k).

    u: (B, H, L) real; z, Bbar, C: complex (H, N/2). Returns y (B, H, L) (no D term). For tests.
    """
    x = torch.zeros(u.shape[0], *z.shape, dtype=z.dtype, device=u.device)    # (B, H, N/2)
    ys = []
    for k in range(u.shape[-1]):
        x = z * x + Bbar * u[:, :, k, None]
        ys.append(2 * (C * x).sum(-1).real)
    return torch.stack(ys, dim=-1)


def fft_length(L: int) -> int:
    """The FFT length for a causal convolution of two length-L signals: the smallest 5-smooth
    number (2^a 3^b 5^c) that is at least 2L - 1, the length of their full linear convolution, so
    that nothing wraps around. FFT libraries are fastest on such lengths; 2L itself can have large
    prime factors (L = 196 gives 392 = 8 * 7^2; the next 5-smooth length is 400 = 2^4 5^2).
    """
    n = max(1, 2 * L - 1)
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


class _FFTConv(torch.autograd.Function):
    """y = causal_conv(u, k) by FFT of length ``fft_length(L)`` >= 2L - 1. u: (B, H, L); k: (H, L) -> (B, H, L)."""

    @staticmethod
    def forward(ctx, u, k):
        L = u.shape[-1]
        n = fft_length(L)
        Uf = torch.fft.rfft(u.contiguous(), n=n)                              # (B, H, n/2 + 1)
        Kf = torch.fft.rfft(k, n=n)                                           # (H, L+1)
        y = torch.fft.irfft(Uf * Kf, n=n)[..., :L]
        ctx.save_for_backward(Uf, Kf)
        ctx.L = L
        return y

    @staticmethod
    def backward(ctx, gy):
        Uf, Kf = ctx.saved_tensors
        L, n = ctx.L, fft_length(ctx.L)
        Gf = torch.fft.rfft(gy.contiguous(), n=n)
        # correlations: du[s] = sum_t gy[t] k[t-s], dk[j] = sum_b sum_t gy[t] u[t-j]
        gu = torch.fft.irfft(Gf * Kf.conj(), n=n)[..., :L] if ctx.needs_input_grad[0] else None
        gk = torch.fft.irfft((Gf * Uf.conj()).sum(0), n=n)[..., :L] if ctx.needs_input_grad[1] else None
        return gu, gk


def fft_causal_conv(u: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Causal convolution y_t = sum_{s<=t} k_{t-s} u_s per channel, by FFT zero-padded to ``fft_length(L)``.

    u: (B, H, L) real; k: (H, L) real, same dtype. Returns (B, H, L).
    """
    if u.dim() != 3 or k.shape != u.shape[1:]:
        raise ValueError(f"fft_causal_conv wants u (B, H, L) and k (H, L); got {tuple(u.shape)}, {tuple(k.shape)}")
    return _FFTConv.apply(u, k)


SPECTRUM_CHUNK_ELEMENTS = 2 ** 18   # complex elements of one chunk's (b, 2, D, F) spectra: 2 MiB


def batch_chunk(B: int, D: int, F: int, device: torch.device | str = "cpu") -> int:
    """Images per chunk for the bidirectional FFT convolution. On a CPU: as many as keep one chunk's
    spectra (b, 2, D, F) complex64 within ``SPECTRUM_CHUNK_ELEMENTS`` (5 images at D = 128, L = 196),
    so that the FFTs and the products between them stay in cache; on a GPU the whole batch (small
    chunks would only add kernel launches). Measured on the 2-core CPU, a guided forward of
    ``mnist_diffussm`` at batch 128, one interleaved run, medians of 8: 16 MiB chunks 499 ms, 2 MiB
    464 ms, one image 562 ms; the whole batch at once (52 MiB of spectra, which glibc maps afresh at
    every call) 680 ms in a run beside 16 MiB chunks' 513 ms. The result is the same whatever the chunk."""
    if torch.device(device).type != "cpu":
        return max(1, B)
    most = max(1, SPECTRUM_CHUNK_ELEMENTS // (2 * D * F))
    return -(-B // -(-B // most))           # chunks as equal as they go: B = 64, at most 5 -> 12 x 5 + 4


class _BiFFTConv(torch.autograd.Function):
    """Both directions of a bidirectional SSM from ONE FFT of the input (see ``bidirectional_fft_conv``).

    With U, K_f, K_b the length-n spectra (n >= 2L - 1): the causal direction is irfft(U K_f), the
    anti-causal one the correlation irfft(U conj(K_b)). The batch goes in chunks of ``batch_chunk``
    images through work buffers made once per call; the output is written straight into (B, L, 2, D)
    memory (returned as a (B, 2, D, L) view), the layout the next layer reads. U is kept (a tensor per
    chunk) only when the kernels need a gradient. The backward: one real FFT of the gradient, one
    inverse for the input's gradient and one for the kernels' (real transforms throughout).
    """

    @staticmethod
    def forward(ctx, u, k):
        B, D, L = u.shape
        n = fft_length(L)
        Kf = torch.fft.rfft(k, n=n)                                           # (2, D, F), F = n/2 + 1
        Kc = torch.stack([Kf[0], Kf[1].conj()])                               # causal, anti-causal
        out = u.new_empty(B, L, 2, D)
        step = batch_chunk(B, D, n // 2 + 1, u.device)
        # a zero-padded, contiguous input buffer (an FFT over a strided axis runs ~2x slower): its
        # tail stays zero, so each chunk costs one copy, with no padding pass
        buf = u.new_zeros(step, D, n)
        prod = Kc.new_empty(step, 2, D, n // 2 + 1)
        keep, spectra = ctx.needs_input_grad[1], []                           # U: for the kernels' gradient
        for i in range(0, B, step):
            b = min(step, B - i)
            buf[:b, :, :L] = u[i:i + b]
            Uf = torch.fft.rfft(buf[:b])                                      # (b, D, F)
            torch.mul(Uf[:, None], Kc, out=prod[:b])                          # (b, 2, D, F)
            out[i:i + b] = torch.fft.irfft(prod[:b], n=n)[..., :L].permute(0, 3, 1, 2)   # (b, L, 2, D)
            spectra += [Uf] if keep else []
        ctx.save_for_backward(Kc, *spectra)
        ctx.step = step
        return out.permute(0, 2, 3, 1)                                        # (B, 2, D, L) view

    @staticmethod
    def backward(ctx, gy):
        Kc, *spectra = ctx.saved_tensors
        B, _, D, L = gy.shape
        n, F = fft_length(L), Kc.shape[-1]
        step = ctx.step
        need_u, need_k = ctx.needs_input_grad[:2]
        gu = gy.new_empty(B, L, D) if need_u else None                       # (B, L, D): u's usual layout
        P = torch.zeros_like(Kc) if need_k else None                          # (2, D, F)
        Kb = Kc.conj().resolve_conj()                                         # (2, D, F)
        buf = gy.new_zeros(step, 2, D, n)
        Gu, prod = Kc.new_empty(step, D, F), Kc.new_empty(step, 2, D, F)    # work buffers
        for c, i in enumerate(range(0, B, step)):
            b = min(step, B - i)
            buf[:b, ..., :L] = gy[i:i + b]
            Gf = torch.fft.rfft(buf[:b])                                      # (b, 2, D, F)
            if need_u:                                                        # sum over the two directions
                torch.mul(Gf[:, 0], Kb[0], out=Gu[:b]).addcmul_(Gf[:, 1], Kb[1])
                gu[i:i + b] = torch.fft.irfft(Gu[:b], n=n)[..., :L].transpose(1, 2)
            if need_k:
                P += torch.mul(Gf, spectra[c][:, None].conj(), out=prod[:b]).sum(0)
        gk = torch.fft.irfft(torch.stack([P[0], P[1].conj()]), n=n)[..., :L] if need_k else None
        return (gu.transpose(1, 2) if need_u else None), gk


def bidirectional_fft_conv(u: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Causal and anti-causal convolution of the same input, by one FFT of it.

    u: (B, D, L) real (any strides); k: (2, D, L) real, the forward and the backward kernel. Returns
    (B, 2, D, L): ``[:, 0]`` is y_t = sum_{s<=t} k0_{t-s} u_s (the causal SSM), ``[:, 1]`` is
    y_t = sum_{s>=t} k1_{s-t} u_s (the SSM run on the reversed sequence, reversed back). The result
    is a view of (B, L, 2, D) memory, so ``y.permute(0, 3, 1, 2).reshape(B, L, 2 * D)`` copies nothing.
    """
    if u.dim() != 3 or k.shape != (2, *u.shape[1:]):
        raise ValueError(f"bidirectional_fft_conv wants u (B, D, L) and k (2, D, L); got {tuple(u.shape)}, "
                         f"{tuple(k.shape)}")
    return _BiFFTConv.apply(u, k)


class S4D(nn.Module):
    """A bank of ``d_model`` independent diagonal SSMs (one per channel), applied by FFT convolution.

    Args:
        d_model: H, the number of channels.
        d_state: N real state dims per channel (N/2 complex modes); 64 as in BiGS.
        init: ``"lin"`` (S4D-Lin, default) or ``"inv"`` (S4D-Inv).
        dt_min, dt_max: step sizes are initialised log-uniformly in [dt_min, dt_max].
    Forward: u (B, H, L) -> y (B, H, L), y = K * u + D u. Computed in float32 (float64 if the module
    or input is float64), outside autocast; returned in ``u``'s dtype.
    Parameters: ``log_dt`` (H,), ``log_A_real`` (H, N/2), ``A_imag`` (H, N/2), ``C`` (H, N/2, 2) (real
    and imaginary parts), ``D`` (H,).
    """

    def __init__(self, d_model: int, d_state: int = 64, init: str = "lin", dt_min: float = 1e-3,
                 dt_max: float = 1e-1):
        super().__init__()
        if d_model < 1:
            raise ValueError(f"d_model must be >= 1, got {d_model}")
        if not 0 < dt_min <= dt_max:
            raise ValueError(f"need 0 < dt_min <= dt_max, got dt_min={dt_min}, dt_max={dt_max}")
        self.d_model, self.d_state, self.init = d_model, d_state, init
        A_real, A_imag = s4d_init_A(d_model, d_state, init)
        log_dt = torch.rand(d_model) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        self.log_dt = nn.Parameter(log_dt)
        self.log_A_real = nn.Parameter(torch.log(-A_real))
        self.A_imag = nn.Parameter(A_imag)
        self.C = nn.Parameter(torch.randn(d_model, d_state // 2, 2) * math.sqrt(0.5))
        self.D = nn.Parameter(torch.randn(d_model))

    def discrete(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(dtA, z, Bbar, C): the ZOH-discretised SSM, each complex (H, N/2). Computed in float64 when
        the parameters are float64, else in float32 (also for bfloat16 / float16 parameters, which
        complex arithmetic does not take)."""
        dtype = torch.float64 if self.log_dt.dtype == torch.float64 else torch.float32
        A = torch.complex(-torch.exp(self.log_A_real.to(dtype)), self.A_imag.to(dtype))
        dtA = torch.exp(self.log_dt.to(dtype))[:, None] * A
        z, Bbar = zoh(dtA, A)
        return dtA, z, Bbar, torch.view_as_complex(self.C.to(dtype).contiguous())

    def kernel(self, L: int) -> torch.Tensor:
        """The convolution kernel K (H, L), by the fast factored Vandermonde product."""
        dtA, _, Bbar, C = self.discrete()
        return s4d_kernel(dtA, C * Bbar, L)

    def kernel_with_skip(self, L: int) -> torch.Tensor:
        """K with the skip folded in: K_0 + D, K_1, ..., K_{L-1} (H, L), since K * u + D u = (K + D delta) * u."""
        k = self.kernel(L)
        return torch.cat([k[:, :1] + self.D.to(k.dtype)[:, None], k[:, 1:]], dim=1)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        if u.dim() != 3 or u.shape[1] != self.d_model:
            raise ValueError(f"S4D expects u of shape (B, H={self.d_model}, L), got {tuple(u.shape)}")
        dtype_in = u.dtype
        with torch.autocast(u.device.type, enabled=False):
            dtype = torch.float64 if torch.float64 in (u.dtype, self.log_dt.dtype) else torch.float32
            u = u.to(dtype)
            y = fft_causal_conv(u, self.kernel_with_skip(u.shape[-1]).to(dtype))
        # bfloat16 / float16 parameters or inputs: computed in float32 above, returned in u's dtype
        return y.to(dtype_in)

    def bidirectional(self, u: torch.Tensor) -> torch.Tensor:
        """Both directions at once: u (B, D, L) with ``d_model = 2D`` -> (B, 2, D, L). Channels [0, D)
        run forward (causal), channels [D, 2D) on the reversed sequence; equal to ``forward`` of
        ``[u, u.flip(-1)]`` with the second half flipped back, at half the input FFTs and no copies."""
        if u.dim() != 3 or 2 * u.shape[1] != self.d_model:
            raise ValueError(f"S4D.bidirectional expects u of shape (B, D={self.d_model // 2}, L), got {tuple(u.shape)}")
        dtype_in = u.dtype
        with torch.autocast(u.device.type, enabled=False):
            dtype = torch.float64 if torch.float64 in (u.dtype, self.log_dt.dtype) else torch.float32
            u = u.to(dtype)
            B, D, L = u.shape
            y = bidirectional_fft_conv(u, self.kernel_with_skip(L).to(dtype).reshape(2, D, L))   # (B, 2, D, L)
        return y.to(dtype_in)

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

The convolution itself is an FFT convolution (``fft_conv.py``: zero-padded to a fast length of at
least 2L - 1, with hand-written backwards that reuse the saved spectra).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from .fft_conv import bidirectional_fft_conv, fft_causal_conv, fft_length

__all__ = ["INITS", "s4d_init_A", "zoh", "s4d_kernel_vandermonde", "s4d_kernel", "s4d_recurrence", "S4D",
           "fft_length", "fft_causal_conv", "bidirectional_fft_conv"]   # the last three from fft_conv.py

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


class _FactoredKernel(torch.autograd.Function):
    """K_{Qa+b} = 2 Re(sum_n CB_n z_n^(Qa) z_n^b), z_n^k = exp(dtA_n k), with a hand-written backward
    (two batched matmuls and a few products on the (H, N/2, Q) tables, instead of autograd's dozens)."""

    @staticmethod
    def forward(ctx, dtA, CB, L):
        Q = math.isqrt(L - 1) + 1                                             # ceil(sqrt(L)), >= 1
        nA = -(-L // Q)
        rdt = dtA.real.dtype
        b = torch.arange(Q, device=dtA.device, dtype=rdt)
        a = torch.arange(nA, device=dtA.device, dtype=rdt) * Q
        # exp(dtA k) from real exp / cos / sin: vectorised, and much faster on CPU than complex exp
        re, im = dtA.real[..., None], dtA.imag[..., None]
        mag_b, ang_b = torch.exp(re * b), im * b                              # (H, N/2, Q)
        Pb_re, Pb_im = mag_b * torch.cos(ang_b), mag_b * torch.sin(ang_b)
        mag_a, ang_a = torch.exp(re * a), im * a                              # (H, N/2, nA)
        Pa_re, Pa_im = mag_a * torch.cos(ang_a), mag_a * torch.sin(ang_a)
        cr, ci = CB.real[..., None], CB.imag[..., None]
        W_re, W_im = cr * Pb_re - ci * Pb_im, cr * Pb_im + ci * Pb_re         # CB z^b, (H, N/2, Q)
        # Re(sum_n z_n^(Qa) W_n,b) = sum_n (Re Pa Re W - Im Pa Im W): one real batched matmul
        # (H, nA, N) @ (H, N, Q) on contiguous operands
        Pri = torch.cat([Pa_re, -Pa_im], dim=1).transpose(1, 2).contiguous()  # (H, nA, N)
        Wri = torch.cat([W_re, W_im], dim=1)                                  # (H, N, Q)
        K = torch.bmm(Pri, Wri)                                               # (H, nA, Q)
        if any(ctx.needs_input_grad[:2]):
            ctx.save_for_backward(CB, Pri, Wri, torch.complex(Pb_re, Pb_im), b, a)
        ctx.L = L
        return 2 * K.reshape(K.shape[0], nA * Q)[:, :L]

    @staticmethod
    def backward(ctx, g):
        # complex gradients in torch's convention (dl/dRe + i dl/dIm): for w = f(z) holomorphic,
        # grad_z = conj(f'(z)) grad_w; so W = CB Pb gives grad_CB = sum_b conj(Pb) grad_W and
        # grad_Pb = conj(CB) grad_W, and Pb = exp(dtA b) gives grad_dtA = sum_b b conj(Pb) grad_Pb (Pa: the
        # same over a, the powers Qa)
        CB, Pri, Wri, Pb, b, a = ctx.saved_tensors
        H, nA, N = Pri.shape
        h = N // 2                                                            # N/2 complex modes
        Gq = g.new_zeros(H, nA * Pb.shape[-1])
        Gq[:, :ctx.L] = 2 * g
        Gq = Gq.view(H, nA, -1)                                               # (H, nA, Q)
        gW = torch.bmm(Pri.transpose(1, 2), Gq)                               # (H, N, Q): [grad Re W; grad Im W]
        gP = torch.bmm(Gq, Wri.transpose(1, 2))                               # (H, nA, N): [grad Re Pa, -grad Im Pa]
        gW = torch.complex(gW[:, :h], gW[:, h:])                              # (H, N/2, Q)
        gPa = torch.complex(gP[..., :h], -gP[..., h:]).transpose(1, 2)        # (H, N/2, nA)
        Pa = torch.complex(Pri[..., :h], -Pri[..., h:]).transpose(1, 2)       # (H, N/2, nA)
        gWPb = gW * Pb.conj()                                                 # (H, N/2, Q)
        g_dtA = CB.conj() * (gWPb * b).sum(-1) + (gPa * Pa.conj() * a).sum(-1)
        return g_dtA, gWPb.sum(-1), None


def s4d_kernel(dtA: torch.Tensor, CB: torch.Tensor, L: int) -> torch.Tensor:
    """Fast kernel K_k = 2 Re(sum_n CB_n exp(dtA_n k)), k = 0..L-1, via z^(Qa+b) = z^b z^(Qa)
    (``_FactoredKernel`` above: a table of each factor, then one batched matmul).

    dtA, CB: complex (H, N/2). Returns (H, L) real, in the real dtype of ``dtA``.
    """
    if L < 1:
        raise ValueError(f"kernel length must be >= 1, got {L}")
    return _FactoredKernel.apply(dtA, CB, L)


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

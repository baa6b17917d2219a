"""S4D: a diagonal, time-invariant state space model, applied as a long convolution by FFT.

One SSM per channel g of a bank of G channels (G = D, or 2D when one bank holds both directions of
the bidirectional layer), each with N real state dimensions held as N/2 complex modes that come in
conjugate pairs (so only one of each pair is stored and the output is twice the real part). For
mode n of channel g, with step size dt_g:

    continuous:  x'(t) = A x(t) + B u(t),  y(t) = 2 Re(C x(t)) + E u(t),  A = diag(a_n), Re a_n < 0
    ZOH:         z_n = exp(dt a_n),  Bbar_n = (exp(dt a_n) - 1) / a_n * B_n
    recurrence:  x_k = z x_{k-1} + Bbar u_k,       y_k = 2 Re(C x_k) + E u_k
    convolution: y = K * u + E u,   K_k = 2 Re(sum_n C_n Bbar_n z_n^k)   (k = 0..L-1)

B is fixed to 1 (it is redundant with C); the skip E is the parameter ``D`` (the S4 / mamba-ssm
name). Initialisations of a_n (n = 0..N/2-1), as in the S4D paper (Gu et al. 2022, Sec. 4) and its
reference code, N the full state size (``ssm_state``):

    S4D-Lin: a_n = -1/2 + i pi n
    S4D-Inv: a_n = -1/2 + i (N/pi) (N/(2n+1) - 1)      (for N = 64: 1283.4 at n = 0, 0.32 at n = 31)

The kernel is a Vandermonde product (the matrix z_n^k): ``s4d_kernel_vandermonde`` below, as
notebook 01 derives it. The convolution is an FFT convolution (``fft_conv.py``). With
``backend="torch"`` (the default, through ``"auto"``) both run as the fast kernels of
``kernels/``: the kernel as a factored product z^(Qa+b) = z^b z^(Qa) (``kernels/s4d_kernel.py``),
the convolutions with hand-written backwards (``kernels/fft_conv.py``); ``backend="reference"``
runs the readable forms of this file and ``fft_conv.py``.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from .backend import check_backend_name, torch_form
from .fft_conv import bidirectional_fft_conv, fft_causal_conv
from .kernels.fft_conv import bidirectional_fft_conv_fast, fft_causal_conv_fast
from .kernels.s4d_kernel import s4d_kernel_fast

__all__ = ["INITS", "s4d_init_A", "zoh", "s4d_kernel_vandermonde", "s4d_recurrence", "S4D"]

INITS = ("lin", "inv")


def s4d_init_A(
    channels: int, ssm_state: int, init: str = "lin"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Diagonal A for G = ``channels`` channels and N = ``ssm_state`` real state dims (N/2 complex
    modes). Returns ``(A_real, A_imag)``, both (G, N/2) float32; A = A_real + i A_imag.
    """
    if init not in INITS:
        raise ValueError(f"S4D init must be one of {INITS}, got {init!r}")
    if ssm_state < 2 or ssm_state % 2:
        raise ValueError(
            f"ssm_state must be an even number >= 2 (conjugate pairs), got {ssm_state}"
        )
    N = ssm_state
    n = torch.arange(N // 2, dtype=torch.float64)
    imag = math.pi * n if init == "lin" else (N / math.pi) * (N / (2 * n + 1) - 1)
    real = torch.full((N // 2,), -0.5)
    return real.repeat(channels, 1).float(), imag.repeat(channels, 1).float()  # (G, N/2) each


def zoh(dtA: torch.Tensor, A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-order hold for a diagonal SSM with B = 1: ``z = exp(dt A)``, ``Bbar = (z - 1) / A``.

    dtA, A: complex (G, N/2). Returns (z, Bbar), complex (G, N/2).
    """
    z = torch.exp(dtA)
    return z, (z - 1) / A


def s4d_kernel_vandermonde(z: torch.Tensor, CB: torch.Tensor, L: int) -> torch.Tensor:
    """The kernel K_k = 2 Re(sum_n CB_n z_n^k), k = 0..L-1: CB times the Vandermonde matrix z_n^k.

    z, CB: complex (G, N/2). Returns the real kernel (G, L). Each power is exp(k log z), computed
    directly, never by repeated multiplication, so no rounding error accumulates.
    """
    k = torch.arange(L, device=z.device, dtype=z.real.dtype)
    V = torch.exp(torch.log(z)[..., None] * k)  # (G, N/2, L)
    return 2 * torch.einsum("gn,gnl->gl", CB, V).real  # (G, L)


def s4d_recurrence(
    u: torch.Tensor, z: torch.Tensor, Bbar: torch.Tensor, C: torch.Tensor
) -> torch.Tensor:
    """The recurrent view, one step at a time: x_k = z x_{k-1} + Bbar u_k, y_k = 2 Re(C x_k).

    u: (B, G, L) real; z, Bbar, C: complex (G, N/2). Returns y (B, G, L) (no skip term). For tests.
    """
    x = torch.zeros(u.shape[0], *z.shape, dtype=z.dtype, device=u.device)  # (B, G, N/2)
    ys = []
    for k in range(u.shape[-1]):
        x = z * x + Bbar * u[:, :, k, None]
        ys.append(2 * (C * x).sum(-1).real)  # (B, G)
    return torch.stack(ys, dim=-1)  # (B, G, L)


class S4D(nn.Module):
    """A bank of ``channels`` independent diagonal SSMs, one per channel, applied by FFT.

    Args:
        channels: G, the number of channels (D, or 2D for both directions of a bidirectional layer).
        ssm_state: N real state dims per channel (N/2 complex modes); 64 as in BiGS.
        init: ``"lin"`` (S4D-Lin, default) or ``"inv"`` (S4D-Inv).
        dt_min, dt_max: step sizes are initialised log-uniformly in [dt_min, dt_max].
        backend: ``"reference"`` runs the readable forms of this file; ``"auto"`` or ``"torch"`` the
            fast kernels of ``kernels/`` (S4D has no fused CUDA kernel: ``"cuda"`` is an error).
    Forward: u (B, G, L) -> y (B, G, L), y = K * u + E u. Computed in float32 (float64 if the module
    or input is float64), outside autocast; returned in ``u``'s dtype.
    Parameters: ``log_dt`` (G,), ``log_A_real`` (G, N/2), ``A_imag`` (G, N/2), ``C`` (G, N/2, 2)
    (real and imaginary parts), ``D`` (G,): the skip E.
    """

    def __init__(
        self,
        channels: int,
        ssm_state: int = 64,
        init: str = "lin",
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        backend: str = "auto",
    ):
        super().__init__()
        if check_backend_name(backend) == "cuda":
            raise ValueError(
                "S4D has no fused CUDA kernel (it is an FFT convolution in PyTorch "
                "and runs on any device); use backend 'auto', 'torch' or 'reference', "
                "or the selective core"
            )
        if not 0 < dt_min <= dt_max:
            raise ValueError(f"need 0 < dt_min <= dt_max, got dt_min={dt_min}, dt_max={dt_max}")
        self.channels, self.ssm_state, self.init = channels, ssm_state, init
        self.form = torch_form(backend)  # "reference" or "torch": what runs
        A_real, A_imag = s4d_init_A(channels, ssm_state, init)
        log_dt = torch.rand(channels) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        self.log_dt = nn.Parameter(log_dt)
        self.log_A_real = nn.Parameter(torch.log(-A_real))
        self.A_imag = nn.Parameter(A_imag)
        self.C = nn.Parameter(torch.randn(channels, ssm_state // 2, 2) * math.sqrt(0.5))
        self.D = nn.Parameter(torch.randn(channels))

    def discrete(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(dtA, z, Bbar, C): the ZOH-discretised SSM, each complex (G, N/2). Computed in float64
        when the parameters are float64, else in float32 (also for bfloat16 / float16 parameters,
        which complex arithmetic does not take)."""
        dtype = torch.float64 if self.log_dt.dtype == torch.float64 else torch.float32
        A = torch.complex(-torch.exp(self.log_A_real.to(dtype)), self.A_imag.to(dtype))
        dtA = torch.exp(self.log_dt.to(dtype))[:, None] * A  # (G, N/2)
        z, Bbar = zoh(dtA, A)
        return dtA, z, Bbar, torch.view_as_complex(self.C.to(dtype).contiguous())

    def kernel(self, L: int) -> torch.Tensor:
        """The convolution kernel K (G, L): the Vandermonde product (or its fast factored form)."""
        dtA, z, Bbar, C = self.discrete()
        if self.form == "reference":
            return s4d_kernel_vandermonde(z, C * Bbar, L)
        return s4d_kernel_fast(dtA, C * Bbar, L)

    def kernel_with_skip(self, L: int) -> torch.Tensor:
        """K with the skip folded in: K_0 + E, K_1, ..., K_{L-1} (G, L), since
        K * u + E u = (K + E delta) * u."""
        k = self.kernel(L)
        return torch.cat([k[:, :1] + self.D.to(k.dtype)[:, None], k[:, 1:]], dim=1)

    def _compute_dtype(self, u: torch.Tensor) -> torch.dtype:
        return torch.float64 if torch.float64 in (u.dtype, self.log_dt.dtype) else torch.float32

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """u (B, G, L) -> y = K * u + E u (B, G, L)."""
        with torch.autocast(u.device.type, enabled=False):
            x = u.to(self._compute_dtype(u))
            k = self.kernel_with_skip(x.shape[-1]).to(x.dtype)  # (G, L)
            conv = fft_causal_conv if self.form == "reference" else fft_causal_conv_fast
            y = conv(x, k)  # (B, G, L)
        # bfloat16 / float16 parameters or inputs: computed in float32 above, returned in u's dtype
        return y.to(u.dtype)

    def bidirectional(self, u: torch.Tensor) -> torch.Tensor:
        """Both directions at once: u (B, D, L) with ``channels = 2D`` -> (B, 2, D, L). Channels
        [0, D) run forward (causal), channels [D, 2D) on the reversed sequence; equal to ``forward``
        of ``[u, u.flip(-1)]`` with the second half flipped back, at half the input FFTs."""
        with torch.autocast(u.device.type, enabled=False):
            x = u.to(self._compute_dtype(u))
            B, D, L = x.shape
            k = self.kernel_with_skip(L).to(x.dtype).reshape(2, D, L)  # (2, D, L)
            conv = (
                bidirectional_fft_conv if self.form == "reference" else bidirectional_fft_conv_fast
            )
            y = conv(x, k)  # (B, 2, D, L)
        return y.to(u.dtype)

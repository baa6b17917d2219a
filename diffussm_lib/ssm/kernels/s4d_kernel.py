"""The S4D kernel as a factored Vandermonde product, with a hand-written backward.

Readable form: ``ssm.s4d.s4d_kernel_vandermonde`` (the full (G, N/2, L) table of powers z^k, then an
einsum). Here, writing k = Q a + b with Q = ceil(sqrt(L)), z^k = z^b z^(Qa), so

    K_{Qa+b} = 2 Re(sum_n (CB_n z_n^b) z_n^(Qa))

is one real batched matrix product of a (G, N/2, Q) and a (G, N/2, ceil(L/Q)) table of powers:
about N sqrt(L) exponentials instead of N L / 2. Every power is exp(dtA_n k) computed directly,
never by repeated multiplication, so no error accumulates. The backward is two batched matmuls and
a few products on the same tables, where autograd through the forward records dozens of ops.
Shapes: G channels of the S4D bank, N state size (N/2 complex modes), L length, Q block.
"""

from __future__ import annotations

import math

import torch


class _FactoredKernel(torch.autograd.Function):
    """K_{Qa+b} = 2 Re(sum_n CB_n z_n^(Qa) z_n^b), z_n^k = exp(dtA_n k), hand-written backward."""

    @staticmethod
    def forward(ctx, dtA, CB, L):
        Q = math.isqrt(L - 1) + 1  # ceil(sqrt(L)), >= 1
        nA = -(-L // Q)
        rdt = dtA.real.dtype
        b = torch.arange(Q, device=dtA.device, dtype=rdt)
        a = torch.arange(nA, device=dtA.device, dtype=rdt) * Q
        # exp(dtA k) from real exp / cos / sin: vectorised, and much faster on CPU than complex exp
        re, im = dtA.real[..., None], dtA.imag[..., None]
        mag_b, ang_b = torch.exp(re * b), im * b  # (G, N/2, Q)
        Pb_re, Pb_im = mag_b * torch.cos(ang_b), mag_b * torch.sin(ang_b)
        mag_a, ang_a = torch.exp(re * a), im * a  # (G, N/2, nA)
        Pa_re, Pa_im = mag_a * torch.cos(ang_a), mag_a * torch.sin(ang_a)
        cr, ci = CB.real[..., None], CB.imag[..., None]
        W_re, W_im = cr * Pb_re - ci * Pb_im, cr * Pb_im + ci * Pb_re  # CB z^b, (G, N/2, Q)
        # Re(sum_n z_n^(Qa) W_n,b) = sum_n (Re Pa Re W - Im Pa Im W): one real batched matmul
        # (G, nA, N) @ (G, N, Q) on contiguous operands
        Pri = torch.cat([Pa_re, -Pa_im], dim=1).transpose(1, 2).contiguous()  # (G, nA, N)
        Wri = torch.cat([W_re, W_im], dim=1)  # (G, N, Q)
        K = torch.bmm(Pri, Wri)  # (G, nA, Q)
        if any(ctx.needs_input_grad[:2]):
            ctx.save_for_backward(CB, Pri, Wri, torch.complex(Pb_re, Pb_im), b, a)
        ctx.L = L
        return 2 * K.reshape(K.shape[0], nA * Q)[:, :L]  # (G, L)

    @staticmethod
    def backward(ctx, g):
        # complex gradients in torch's convention (dl/dRe + i dl/dIm): for w = f(z) holomorphic,
        # grad_z = conj(f'(z)) grad_w; so W = CB Pb gives grad_CB = sum_b conj(Pb) grad_W and
        # grad_Pb = conj(CB) grad_W, and Pb = exp(dtA b) gives grad_dtA = sum_b b conj(Pb) grad_Pb
        # (Pa: the same over a, the powers Qa)
        CB, Pri, Wri, Pb, b, a = ctx.saved_tensors
        G, nA, N = Pri.shape
        h = N // 2  # N/2 complex modes
        Gq = g.new_zeros(G, nA * Pb.shape[-1])
        Gq[:, : ctx.L] = 2 * g
        Gq = Gq.view(G, nA, -1)  # (G, nA, Q)
        gW = torch.bmm(Pri.transpose(1, 2), Gq)  # (G, N, Q): [grad Re W; grad Im W]
        gP = torch.bmm(Gq, Wri.transpose(1, 2))  # (G, nA, N): [grad Re Pa, -grad Im Pa]
        gW = torch.complex(gW[:, :h], gW[:, h:])  # (G, N/2, Q)
        gPa = torch.complex(gP[..., :h], -gP[..., h:]).transpose(1, 2)  # (G, N/2, nA)
        Pa = torch.complex(Pri[..., :h], -Pri[..., h:]).transpose(1, 2)  # (G, N/2, nA)
        gWPb = gW * Pb.conj()  # (G, N/2, Q)
        g_dtA = CB.conj() * (gWPb * b).sum(-1) + (gPa * Pa.conj() * a).sum(-1)
        return g_dtA, gWPb.sum(-1), None


def s4d_kernel_fast(dtA: torch.Tensor, CB: torch.Tensor, L: int) -> torch.Tensor:
    """K_k = 2 Re(sum_n CB_n exp(dtA_n k)), k = 0..L-1, by the factored product above.

    dtA, CB: complex (G, N/2). Returns (G, L) real, in the real dtype of ``dtA``. The same kernel as
    ``s4d_kernel_vandermonde(exp(dtA), CB, L)``.
    """
    if L < 1:
        raise ValueError(f"kernel length must be >= 1, got {L}")
    return _FactoredKernel.apply(dtA, CB, L)

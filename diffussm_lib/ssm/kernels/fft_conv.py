"""S4D's FFT convolutions with hand-written backwards, the bidirectional one in cache-sized chunks.

Readable forms: ``ssm.fft_conv.fft_causal_conv`` and ``ssm.fft_conv.bidirectional_fft_conv``, left
to autograd. What these add:

* **Real transforms in the backward.** The gradient of a convolution is a correlation:
  du = irfft(G conj(K)), dk = irfft(sum_batch G conj(U)), from the spectra the forward saved.
  That is one rfft of the gradient and one irfft per input, all real; autograd turns the backward
  of each forward rfft into a complex-to-complex transform of the full length.
* **Batch chunks** (bidirectional): the batch goes through the FFTs ``batch_chunk`` images at a
  time, so that one chunk's spectra stay in a CPU cache, through work buffers made once per call.
* **The next layer's layout**: the bidirectional output is written straight into (B, L, 2, D)
  memory, so the (B, L, 2D) view the bidirectional layer returns copies nothing.

Shapes: B batch, G channels of the S4D bank, D model width, L length, F = n/2 + 1 frequencies of an
FFT of length n = ``fft_length(L)``.
"""

from __future__ import annotations

import torch

from ..fft_conv import fft_length


class _FFTConv(torch.autograd.Function):
    """y = causal_conv(u, k) by FFT of length n = fft_length(L): u (B, G, L), k (G, L) ->
    (B, G, L)."""

    @staticmethod
    def forward(ctx, u, k):
        L = u.shape[-1]
        n = fft_length(L)
        Uf = torch.fft.rfft(u.contiguous(), n=n)  # (B, G, F)
        Kf = torch.fft.rfft(k, n=n)  # (G, F)
        y = torch.fft.irfft(Uf * Kf, n=n)[..., :L]  # (B, G, L)
        ctx.save_for_backward(Uf, Kf)
        ctx.L = L
        return y

    @staticmethod
    def backward(ctx, gy):
        Uf, Kf = ctx.saved_tensors
        L, n = ctx.L, fft_length(ctx.L)
        Gf = torch.fft.rfft(gy.contiguous(), n=n)  # (B, G, F)
        # correlations: du[s] = sum_t gy[t] k[t-s], dk[j] = sum_b sum_t gy[t] u[t-j]
        gu = gk = None
        if ctx.needs_input_grad[0]:
            gu = torch.fft.irfft(Gf * Kf.conj(), n=n)[..., :L]  # (B, G, L)
        if ctx.needs_input_grad[1]:
            gk = torch.fft.irfft((Gf * Uf.conj()).sum(0), n=n)[..., :L]  # (G, L)
        return gu, gk


def fft_causal_conv_fast(u: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``ssm.fft_conv.fft_causal_conv`` with a hand-written backward: y_t = sum_{s<=t} k_{t-s} u_s.

    u: (B, G, L) real; k: (G, L) real, same dtype. Returns (B, G, L).
    """
    return _FFTConv.apply(u, k)


SPECTRUM_CHUNK_ELEMENTS = 2**18  # complex elements of one chunk's (b, 2, D, F) spectra: 2 MiB


def batch_chunk(B: int, D: int, F: int, device: torch.device | str = "cpu") -> int:
    """Images per chunk for the bidirectional FFT convolution. On a CPU: as many as keep one chunk's
    spectra (b, 2, D, F) complex64 within ``SPECTRUM_CHUNK_ELEMENTS`` (5 images at D = 128,
    L = 196), so that the FFTs and the products between them stay in cache; on a GPU the whole batch
    (small chunks would only add kernel launches). Measured on the 2-core CPU, a guided forward of
    ``mnist_diffussm`` at batch 128, one interleaved run, medians of 8: 16 MiB chunks 499 ms, 2 MiB
    464 ms, one image 562 ms; the whole batch at once (52 MiB of spectra, which glibc maps afresh
    at every call) 680 ms in a run beside 16 MiB chunks' 513 ms. The result is the same whatever
    the chunk."""
    if torch.device(device).type != "cpu":
        return max(1, B)
    most = max(1, SPECTRUM_CHUNK_ELEMENTS // (2 * D * F))
    return -(-B // -(-B // most))  # chunks as equal as they go: B = 64, at most 5 -> 12 x 5 + 4


class _BiFFTConv(torch.autograd.Function):
    """Both directions of a bidirectional SSM from ONE FFT of the input.

    With U, K_f, K_b the length-n spectra (n >= 2L - 1): the causal direction is irfft(U K_f), the
    anti-causal one the correlation irfft(U conj(K_b)). The batch goes in chunks of ``batch_chunk``
    images through work buffers made once per call; the output is written straight into
    (B, L, 2, D) memory (returned as a (B, 2, D, L) view), the layout the next layer reads. U is
    kept (a tensor per chunk) only when the kernels need a gradient. The backward: one real FFT of
    the gradient, one inverse for the input's gradient and one for the kernels'.
    """

    @staticmethod
    def forward(ctx, u, k):
        B, D, L = u.shape
        n = fft_length(L)
        Kf = torch.fft.rfft(k, n=n)  # (2, D, F)
        Kc = torch.stack([Kf[0], Kf[1].conj()])  # causal, anti-causal
        out = u.new_empty(B, L, 2, D)
        step = batch_chunk(B, D, n // 2 + 1, u.device)
        # a zero-padded, contiguous input buffer (an FFT over a strided axis runs ~2x slower): its
        # tail stays zero, so each chunk costs one copy, with no padding pass
        buf = u.new_zeros(step, D, n)
        prod = Kc.new_empty(step, 2, D, n // 2 + 1)
        keep, spectra = ctx.needs_input_grad[1], []  # U: for dk
        for i in range(0, B, step):
            b = min(step, B - i)
            buf[:b, :, :L] = u[i : i + b]
            Uf = torch.fft.rfft(buf[:b])  # (b, D, F)
            torch.mul(Uf[:, None], Kc, out=prod[:b])  # (b, 2, D, F)
            y = torch.fft.irfft(prod[:b], n=n)[..., :L]  # (b, 2, D, L)
            out[i : i + b] = y.permute(0, 3, 1, 2)  # (b, L, 2, D)
            spectra += [Uf] if keep else []
        ctx.save_for_backward(Kc, *spectra)
        ctx.step = step
        return out.permute(0, 2, 3, 1)  # (B, 2, D, L) view

    @staticmethod
    def backward(ctx, gy):
        Kc, *spectra = ctx.saved_tensors
        B, _, D, L = gy.shape
        n, F = fft_length(L), Kc.shape[-1]
        step = ctx.step
        need_u, need_k = ctx.needs_input_grad[:2]
        gu = gy.new_empty(B, L, D) if need_u else None  # u's usual layout
        P = torch.zeros_like(Kc) if need_k else None  # (2, D, F)
        Kb = Kc.conj().resolve_conj()  # (2, D, F)
        buf = gy.new_zeros(step, 2, D, n)
        Gu, prod = Kc.new_empty(step, D, F), Kc.new_empty(step, 2, D, F)  # work buffers
        for c, i in enumerate(range(0, B, step)):
            b = min(step, B - i)
            buf[:b, ..., :L] = gy[i : i + b]
            Gf = torch.fft.rfft(buf[:b])  # (b, 2, D, F)
            if need_u:  # both directions
                torch.mul(Gf[:, 0], Kb[0], out=Gu[:b]).addcmul_(Gf[:, 1], Kb[1])
                gu[i : i + b] = torch.fft.irfft(Gu[:b], n=n)[..., :L].transpose(1, 2)  # (b, L, D)
            if need_k:
                P += torch.mul(Gf, spectra[c][:, None].conj(), out=prod[:b]).sum(0)
        gk = torch.fft.irfft(torch.stack([P[0], P[1].conj()]), n=n)[..., :L] if need_k else None
        return (gu.transpose(1, 2) if need_u else None), gk  # (B, D, L), (2, D, L)


def bidirectional_fft_conv_fast(u: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``ssm.fft_conv.bidirectional_fft_conv`` in batch chunks, with a hand-written backward.

    u: (B, D, L) real (any strides); k: (2, D, L) real. Returns (B, 2, D, L), a view of (B, L, 2, D)
    memory, so ``y.permute(0, 3, 1, 2).reshape(B, L, 2 * D)`` copies nothing.
    """
    return _BiFFTConv.apply(u, k)

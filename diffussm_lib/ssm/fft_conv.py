"""FFT convolutions (notebooks 01-02): a long causal convolution, and both directions of a
bidirectional SSM from one FFT of the input. Left to autograd, as the notebooks derive them.

    fft_causal_conv(u (B, G, L), k (G, L)) -> (B, G, L):            y_t = sum_{s<=t} k_{t-s} u_s
    bidirectional_fft_conv(u (B, D, L), k (2, D, L)) -> (B, 2, D, L): causal with k[0],
                                                                      anti-causal with k[1]

The FFT computes a *circular* convolution; zero-padding both signals to a length n >= 2L - 1 (the
length of the full linear convolution) leaves nothing to wrap around, so the first L outputs are the
causal convolution. ``fft_length(L)`` picks the smallest such n that FFT libraries are fast at.
S4D (``s4d.py``) builds its kernels and calls these; ``kernels/fft_conv.py`` holds the same two
convolutions with hand-written backwards, in cache-sized batch chunks (``backend="torch"``).
G: channels of the S4D bank (D, or 2D for both directions).
"""

from __future__ import annotations

import torch


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


def fft_causal_conv(u: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Causal convolution y_t = sum_{s<=t} k_{t-s} u_s per channel, by FFT of length fft_length(L).

    u: (B, G, L) real; k: (G, L) real, same dtype. Returns (B, G, L).
    """
    L = u.shape[-1]
    n = fft_length(L)
    U = torch.fft.rfft(u, n=n)  # (B, G, n/2 + 1)
    K = torch.fft.rfft(k, n=n)  # (G, n/2 + 1)
    return torch.fft.irfft(U * K, n=n)[..., :L]  # (B, G, L)


def bidirectional_fft_conv(u: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Causal and anti-causal convolution of the same input, by one FFT of it.

    u: (B, D, L) real; k: (2, D, L) real, the forward and the backward kernel. Returns (B, 2, D, L):
    ``[:, 0]`` is y_t = sum_{s<=t} k0_{t-s} u_s (the causal SSM), ``[:, 1]`` is
    y_t = sum_{s>=t} k1_{s-t} u_s (the SSM run on the reversed sequence, reversed back): flip,
    convolve, flip back is a correlation, a product with the *conjugate* spectrum of its kernel.
    """
    L = u.shape[-1]
    n = fft_length(L)
    U = torch.fft.rfft(u, n=n)  # (B, D, F): once
    K = torch.fft.rfft(k, n=n)  # (2, D, F)
    y_fwd = torch.fft.irfft(U * K[0], n=n)[..., :L]  # (B, D, L) causal
    y_bwd = torch.fft.irfft(U * K[1].conj(), n=n)[..., :L]  # (B, D, L) reversed
    return torch.stack([y_fwd, y_bwd], dim=1)  # (B, 2, D, L)

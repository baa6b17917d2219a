"""The short causal depthwise convolution that Mamba puts in front of its selective scan.

Each channel ``d`` is convolved with its own ``width``-tap filter, looking only at the present and
the past::

    out[b, d, t] = bias[d] + sum_{k=0}^{width-1} weight[d, k] * x[b, d, t - (width - 1) + k]

(``x`` is zero before t = 0), optionally followed by SiLU. The layout is causal-conv1d's
``causal_conv1d_fn``: x (B, D, L), weight (D, width), bias (D,). The readable form is also the
fast one on a CPU (one grouped ``F.conv1d``), so ``backend`` "reference", "torch" and "auto" on a
CPU all run ``causal_conv1d_torch``; "cuda" runs causal-conv1d's fused kernel.
"""

from __future__ import annotations

import torch.nn.functional as F

from .backend import cuda_kernel, resolve_backend

ACTIVATIONS = (None, "silu", "swish")


def _check(x, weight, bias, activation):
    """Raise a ValueError naming a bad activation or a shape that does not fit (shapes only)."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    if x.dim() != 3:
        raise ValueError(f"x must be (batch, dim, length), got shape {tuple(x.shape)}")
    if weight.dim() != 2 or weight.shape[0] != x.shape[1]:
        raise ValueError(
            f"weight must be (dim={x.shape[1]}, width), got shape {tuple(weight.shape)}"
        )
    if bias is not None and bias.shape != (x.shape[1],):
        raise ValueError(f"bias must be (dim={x.shape[1]},), got shape {tuple(bias.shape)}")


def causal_conv1d_torch(x, weight, bias=None, activation=None):
    """Our implementation: left-pad by ``width - 1`` zeros, then a grouped (depthwise) convolution.

    x: (B, D, L); weight: (D, W); bias: (D,) or None. Returns (B, D, L) in ``x``'s dtype.
    """
    width = weight.shape[1]
    xp = F.pad(x.to(weight.dtype), (width - 1, 0))  # (B, D, L + W - 1)
    out = F.conv1d(xp, weight.unsqueeze(1), bias, groups=weight.shape[0])  # (B, D, L)
    if activation is not None:
        out = F.silu(out)
    return out.to(x.dtype)


def causal_conv1d(x, weight, bias=None, activation=None, backend: str = "auto"):
    """Causal depthwise conv1d with the layout of causal-conv1d's ``causal_conv1d_fn``.

    Args:
        x: (B, D, L).  weight: (D, W) one filter per channel.  bias: (D,) or None.
        activation: None, ``"silu"`` or ``"swish"`` (the same thing).
        backend: ``"reference"`` or ``"torch"`` (``causal_conv1d_torch``), ``"cuda"``
            (causal-conv1d's kernel; an error if unavailable) or ``"auto"``.
    Returns:
        (B, D, L).
    """
    _check(x, weight, bias, activation)
    if resolve_backend(backend, "causal_conv1d", x, weight, bias) == "cuda":
        return cuda_kernel("causal_conv1d")(x, weight, bias, activation=activation)
    return causal_conv1d_torch(x, weight, bias, activation)

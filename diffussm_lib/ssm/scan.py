"""The selective scan of Mamba (notebook 02): its definition, a loop over time, and the dispatcher.

The recurrence, per batch element ``b``, channel ``d`` and state index ``n``::

    h_t = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t        (h_{-1} = 0)
    y_t = sum_n C_t[n] h_t[n]  (+ D * u_t)  (then * silu(z_t))

with ``delta = softplus(delta + delta_bias)`` when asked; ``D`` is the skip (the glossary's E). The
argument layout is exactly that of mamba-ssm's ``selective_scan_fn`` (real ``A``, input-dependent
``B`` and ``C``):

    u, delta, z: (B, D, L)    A: (D, N)    B, C: (B, N, L)    D, delta_bias: (D,)

``selective_scan`` runs the definition below (``backend="reference"``), our fast blocked scan with a
hand-written backward (``"torch"``, in ``kernels/scan.py``) or mamba-ssm's fused kernel
(``"cuda"``); ``"auto"`` picks the fused kernel for CUDA tensors when it imports, else ``"torch"``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .backend import cuda_kernel, resolve_backend
from .kernels.scan import selective_scan_torch


def check_scan_args(u, delta, A, B, C, D=None, z=None, delta_bias=None) -> None:
    """Raise a ValueError naming the first tensor whose shape does not fit the layout (shapes only:
    no tensor value is read)."""
    if u.dim() != 3:
        raise ValueError(f"u must be (batch, dim, length), got shape {tuple(u.shape)}")
    b, d, L = u.shape
    if delta.shape != u.shape:
        raise ValueError(f"delta must have u's shape {tuple(u.shape)}, got {tuple(delta.shape)}")
    if A.dim() != 2 or A.shape[0] != d:
        raise ValueError(f"A must be (dim={d}, state), got shape {tuple(A.shape)}")
    if A.is_complex():
        raise NotImplementedError("the selective scan takes a real A (complex A: use S4D)")
    n = A.shape[1]
    for name, t in (("B", B), ("C", C)):
        if t.shape != (b, n, L):
            raise ValueError(
                f"{name} must be (batch={b}, state={n}, length={L}), got shape {tuple(t.shape)}"
            )
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is not None and t.shape != (d,):
            raise ValueError(f"{name} must be (dim={d},), got shape {tuple(t.shape)}")
    if z is not None and z.shape != u.shape:
        raise ValueError(f"z must have u's shape {tuple(u.shape)}, got {tuple(z.shape)}")


def selective_scan_sequential(
    u,
    delta,
    A,
    B,
    C,
    D=None,
    z=None,
    delta_bias=None,
    delta_softplus=False,
    return_last_state=False,
):
    """The definition: one step of the recurrence per time step, differentiated by autograd.

    Slow (its backward stores L states); it is the specification the fast scans are tested against.
    Shapes as in the module docstring. Computes in float64 if any input is float64, else float32.
    Returns ``y`` (B, D, L) in ``u``'s dtype, and the last state (B, D, N) in the compute dtype if
    ``return_last_state``.
    """
    dtype = (
        torch.float64
        if torch.float64 in (u.dtype, delta.dtype, A.dtype, B.dtype, C.dtype)
        else torch.float32
    )
    x, dt = u.to(dtype), delta.to(dtype)  # (B, D, L) each
    A, B, C = A.to(dtype), B.to(dtype), C.to(dtype)
    if delta_bias is not None:
        dt = dt + delta_bias.to(dtype)[:, None]
    if delta_softplus:
        dt = F.softplus(dt)
    h = x.new_zeros(x.shape[0], x.shape[1], A.shape[1])  # (B, D, N)
    ys = []
    for t in range(x.shape[2]):
        decay = torch.exp(dt[:, :, t, None] * A)  # (B, D, N)
        h = decay * h + (dt[:, :, t] * x[:, :, t])[:, :, None] * B[:, None, :, t]
        ys.append((h * C[:, None, :, t]).sum(-1))  # (B, D)
    y = torch.stack(ys, dim=-1)  # (B, D, L)
    if D is not None:
        y = y + x * D.to(dtype)[:, None]  # the skip E u
    if z is not None:
        y = y * F.silu(z.to(dtype))  # the gate
    y = y.to(u.dtype)
    return (y, h) if return_last_state else y


def selective_scan(
    u,
    delta,
    A,
    B,
    C,
    D=None,
    z=None,
    delta_bias=None,
    delta_softplus=False,
    return_last_state=False,
    backend: str = "auto",
):
    """Selective scan with the argument layout of mamba-ssm's ``selective_scan_fn``.

    Args:
        u: (B, D, L) input.  delta: (B, D, L) step sizes (before ``delta_bias`` / softplus).
        A: (D, N) real, negative for a stable scan.  B, C: (B, N, L) input-dependent projections.
        D: optional (D,) skip weight.  z: optional (B, D, L) gate, applied as ``* silu(z)``.
        delta_bias: optional (D,) added to delta.  delta_softplus: apply softplus to delta.
        return_last_state: also return the final state (B, D, N).
        backend: ``"reference"`` (``selective_scan_sequential``), ``"torch"`` (our fast scan),
            ``"cuda"`` (mamba-ssm's fused kernel; an error if unavailable) or ``"auto"`` (cuda when
            the tensors are on CUDA and mamba-ssm imports, else torch). See ``backend.py``.
    Returns:
        y (B, D, L) in ``u``'s dtype, and the last state (B, D, N) if ``return_last_state``.
    """
    check_scan_args(u, delta, A, B, C, D, z, delta_bias)
    which = resolve_backend(backend, "selective_scan", u, delta, A, B, C)
    scan = {"reference": selective_scan_sequential, "torch": selective_scan_torch}.get(which)
    if scan is None:  # "cuda"
        scan = cuda_kernel("selective_scan")
    return scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)

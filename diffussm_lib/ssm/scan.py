"""The selective scan of Mamba: its definition (a loop over time) and a fast exact CPU version.

The recurrence, per batch element ``b``, channel ``d`` and state index ``n``::

    h_t = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t        (h_{-1} = 0)
    y_t = sum_n C_t[n] h_t[n]  (+ D * u_t)  (then * silu(z_t))

with ``delta = softplus(delta + delta_bias)`` when asked. The argument layout is exactly that of
mamba-ssm's ``selective_scan_fn`` (real ``A``, input-dependent ``B`` and ``C``):

    u, delta, z: (B, D, L)    A: (D, N)    B, C: (B, N, L)    D, delta_bias: (D,)

Why the fast scan is a *blocked sequential* scan
------------------------------------------------
A parallel (associative) scan does O(L log L) work or several passes over (B, D, L, N) tensors; on
a 2-core CPU that memory traffic costs more than the Python loop it removes, and the log-space
trick (cumulative sums of ``delta*A``, then ``exp`` of differences) loses accuracy when the decays
are large. So we keep the loop over time, but make every step one fused in-place ``addcmul`` on a
small contiguous (B, D, N) slab, and do all the other work (the ``exp`` of the decays, the input
term, the contraction with ``C``) vectorised over blocks of ``block`` time steps. Only one block of
states is alive at a time, plus one state per block boundary ("checkpoints") for the backward.

The backward is hand-written: it walks the blocks in reverse, recomputes the block's decays and
states from its checkpoint, runs the adjoint recurrence ``g_t = C_t dy_t + exp(delta_{t+1} A)
g_{t+1}`` backwards, and turns ``g`` into the gradients of every input with vectorised products.
Every step multiplies by decays ``exp(delta*A) <= 1`` (A < 0, delta >= 0) and adds: no division,
no subtraction of large numbers, so the scan is as accurate as the plain loop.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .backend import cuda_kernel, resolve_backend

DEFAULT_BLOCK = 32


def _check_args(u, delta, A, B, C, D, z, delta_bias):
    """Raise a ValueError naming the first tensor whose shape does not fit the layout."""
    if u.dim() != 3:
        raise ValueError(f"u must be (batch, dim, length), got shape {tuple(u.shape)}")
    b, d, L = u.shape
    if delta.shape != u.shape:
        raise ValueError(f"delta must have u's shape {tuple(u.shape)}, got {tuple(delta.shape)}")
    if A.dim() != 2 or A.shape[0] != d:
        raise ValueError(f"A must be (dim={d}, state), got shape {tuple(A.shape)}")
    if A.is_complex():
        raise NotImplementedError("the torch selective scan takes a real A (complex A: use the S4D module)")
    n = A.shape[1]
    for name, t in (("B", B), ("C", C)):
        if t.shape != (b, n, L):
            raise ValueError(f"{name} must be (batch={b}, state={n}, length={L}), got shape {tuple(t.shape)}")
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is not None and t.shape != (d,):
            raise ValueError(f"{name} must be (dim={d},), got shape {tuple(t.shape)}")
    if z is not None and z.shape != u.shape:
        raise ValueError(f"z must have u's shape {tuple(u.shape)}, got {tuple(z.shape)}")


def _compute_dtype(*tensors) -> torch.dtype:
    """float64 if any input is float64, else float32 (half inputs are computed in float32)."""
    return torch.float64 if any(t is not None and t.dtype == torch.float64 for t in tensors) else torch.float32


def _pre(u, delta, delta_bias, delta_softplus, dtype):
    """Cast to the compute dtype and apply ``delta_bias`` / softplus (ordinary autograd ops)."""
    u = u.to(dtype)
    delta = delta.to(dtype)
    if delta_bias is not None:
        delta = delta + delta_bias.to(dtype)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    return u, delta


def _post(y, u, D, z, dtype_in):
    """Skip term ``D * u`` and gate ``* silu(z)``, then back to the input dtype. y, u, z: (B, D, L)."""
    if D is not None:
        y = y + u * D.to(y.dtype)[:, None]
    if z is not None:
        y = y * F.silu(z.to(y.dtype))
    return y.to(dtype_in)


def selective_scan_sequential(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                              return_last_state=False):
    """The definition: one step of the recurrence per time step, differentiated by autograd.

    Slow (its backward stores L states); it is the specification the fast scan is tested against.
    Shapes as in ``selective_scan``. Returns ``y`` (B, D, L) in ``u``'s dtype, and the last state
    (B, D, N) in the compute dtype if ``return_last_state``.
    """
    _check_args(u, delta, A, B, C, D, z, delta_bias)
    dtype_in, dtype = u.dtype, _compute_dtype(u, delta, A, B, C)
    u, delta = _pre(u, delta, delta_bias, delta_softplus, dtype)
    A, B, C = A.to(dtype), B.to(dtype), C.to(dtype)
    h = u.new_zeros(u.shape[0], u.shape[1], A.shape[1])                      # (B, D, N)
    ys = []
    for t in range(u.shape[2]):
        decay = torch.exp(delta[:, :, t, None] * A)                          # (B, D, N)
        h = decay * h + (delta[:, :, t] * u[:, :, t])[:, :, None] * B[:, None, :, t]
        ys.append((h * C[:, None, :, t]).sum(-1))                            # (B, D)
    y = _post(torch.stack(ys, dim=-1), u, D, z, dtype_in)
    return (y, h) if return_last_state else y


def _block_states(h0, delta_t, du_t, A, B_t):
    """States of one block, computed in place. Time-major inputs for a block of T steps:

    h0: (B, D, N) state before the block; delta_t, du_t (= delta*u): (T, B, D); A: (D, N);
    B_t: (T, B, N). Returns ``S`` (T, B, D, N), the states h_s..h_{s+T-1}, and ``dA`` (T, B, D, N),
    the decays exp(delta*A).
    """
    dA = torch.exp(delta_t.unsqueeze(-1) * A)                                 # (T, B, D, N)
    S = du_t.unsqueeze(-1) * B_t.unsqueeze(2)                                 # input terms
    S[0].addcmul_(dA[0], h0)
    for i in range(1, S.shape[0]):
        S[i].addcmul_(dA[i], S[i - 1])                                        # h_t = dA_t h_{t-1} + x_t
    return S, dA


def _tmajor(x):
    """(B, K, L) -> contiguous (L, B, K)."""
    return x.permute(2, 0, 1).contiguous()


class _BlockedScan(torch.autograd.Function):
    """y, last = scan(u, delta, A, B, C): the core recurrence without D, z, bias or softplus.

    u, delta: (B, D, L); A: (D, N); B, C: (B, N, L), all in one float dtype. Returns y (B, D, L)
    and the last state (B, D, N).
    """

    @staticmethod
    def forward(ctx, u, delta, A, B, C, block):
        with torch.autocast(u.device.type, enabled=False):
            b, d, L = u.shape
            n = A.shape[1]
            dT, BT, CT = _tmajor(delta), _tmajor(B), _tmajor(C)               # (L,B,D), (L,B,N) x2
            duT = dT * _tmajor(u)                                             # (L, B, D)
            nblk = math.ceil(L / block)
            ckpt = u.new_empty(nblk, b, d, n)                                 # state before each block
            yT = u.new_empty(L, b, d)
            h = u.new_zeros(b, d, n)
            for k in range(nblk):
                s, e = k * block, min(L, (k + 1) * block)
                ckpt[k] = h
                S, _ = _block_states(h, dT[s:e], duT[s:e], A, BT[s:e])
                # y_t[d] = sum_n S_t[d, n] C_t[n]: one batched mat-vec over (T*B)
                torch.bmm(S.view(-1, d, n), CT[s:e].reshape(-1, n, 1), out=yT[s:e].view(-1, d, 1))
                h = S[-1]
            last = h.clone()
        ctx.save_for_backward(u, delta, A, B, C, ckpt)
        ctx.block = block
        return yT.permute(1, 2, 0).contiguous(), last

    @staticmethod
    def backward(ctx, gy, glast):
        u, delta, A, B, C, ckpt = ctx.saved_tensors
        block = ctx.block
        with torch.autocast(u.device.type, enabled=False):
            b, d, L = u.shape
            n = A.shape[1]
            if gy is None:
                gy = torch.zeros_like(u)
            dT, uT, BT, CT, gyT = (_tmajor(x) for x in (delta, u, B, C, gy.to(u.dtype)))
            duT = dT * uT
            g_delta, g_u = torch.empty_like(dT), torch.empty_like(uT)
            g_B, g_C = torch.empty_like(BT), torch.empty_like(CT)
            g_A = torch.zeros_like(A)
            # carry = dL/dh_{e-1} flowing in from the future of the current block
            carry = glast.to(u.dtype) if glast is not None else None
            for k in reversed(range(ckpt.shape[0])):
                s, e = k * block, min(L, (k + 1) * block)
                h0 = ckpt[k]
                S, dA = _block_states(h0, dT[s:e], duT[s:e], A, BT[s:e])     # recompute (T, B, D, N)
                S2 = S.view(-1, d, n)
                # dC_t[n] = sum_d dy_t[d] h_t[d, n]
                torch.bmm(S2.transpose(1, 2), gyT[s:e].reshape(-1, d, 1), out=g_C[s:e].view(-1, n, 1))
                # adjoint: G_t = dy_t C_t + dA_{t+1} G_{t+1}, run backwards in place
                G = gyT[s:e].unsqueeze(-1) * CT[s:e].unsqueeze(2)            # (T, B, D, N)
                if carry is not None:
                    G[-1].add_(carry)
                for i in range(G.shape[0] - 2, -1, -1):
                    G[i].addcmul_(dA[i + 1], G[i + 1])
                carry = dA[0] * G[0]
                G2 = G.view(-1, d, n)
                # input term x_t = du_t B_t: dB_t[n] = sum_d G_t[d,n] du_t[d]; d(du_t)[d] = sum_n G_t[d,n] B_t[n]
                torch.bmm(G2.transpose(1, 2), duT[s:e].reshape(-1, d, 1), out=g_B[s:e].view(-1, n, 1))
                GB = torch.bmm(G2, BT[s:e].reshape(-1, n, 1)).view(e - s, b, d)
                # decay term: d(delta_t A)[d,n] = G_t h_{t-1} dA_t   (S becomes the previous states)
                gX = G.mul_(dA)
                gX[1:].mul_(S[:-1])
                gX[0].mul_(h0)
                g_delta[s:e] = (gX * A).sum(-1).add_(GB * uT[s:e])
                g_u[s:e] = GB.mul_(dT[s:e])
                g_A += gX.mul_(dT[s:e].unsqueeze(-1)).sum((0, 1))
        back = lambda x: x.permute(1, 2, 0)  # (L, B, K) -> (B, K, L) view
        return back(g_u), back(g_delta), g_A, back(g_B), back(g_C), None


def selective_scan_torch(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                         return_last_state=False, block: int = DEFAULT_BLOCK):
    """Our fast exact scan in pure PyTorch (any device). Shapes and semantics as ``selective_scan``.

    Computes in float64 if any input is float64, else float32; returns ``y`` in ``u``'s dtype.
    ``block`` is the number of time steps processed together (a speed knob; results do not depend on it).
    """
    _check_args(u, delta, A, B, C, D, z, delta_bias)
    if block < 1:
        raise ValueError(f"block must be >= 1, got {block}")
    dtype_in, dtype = u.dtype, _compute_dtype(u, delta, A, B, C)
    u, delta = _pre(u, delta, delta_bias, delta_softplus, dtype)
    y, last = _BlockedScan.apply(u, delta, A.to(dtype), B.to(dtype).contiguous(), C.to(dtype).contiguous(), block)
    y = _post(y, u, D, z, dtype_in)
    return (y, last) if return_last_state else y


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                   return_last_state=False, backend: str = "auto"):
    """Selective scan with the argument layout of mamba-ssm's ``selective_scan_fn``.

    Args:
        u: (B, D, L) input.  delta: (B, D, L) step sizes (before ``delta_bias`` / softplus).
        A: (D, N) real, negative for a stable scan.  B, C: (B, N, L) input-dependent projections.
        D: optional (D,) skip weight.  z: optional (B, D, L) gate, applied as ``* silu(z)``.
        delta_bias: optional (D,) added to delta.  delta_softplus: apply softplus to delta.
        return_last_state: also return the final state (B, D, N).
        backend: ``"torch"`` (ours), ``"cuda"`` (mamba-ssm fused kernel; error if unavailable) or
            ``"auto"`` (cuda when the tensors are on CUDA and mamba-ssm imports, else torch).
    Returns:
        y (B, D, L) in ``u``'s dtype, and the last state (B, D, N) if ``return_last_state``.
    """
    _check_args(u, delta, A, B, C, D, z, delta_bias)
    if resolve_backend(backend, "selective_scan", u, delta, A, B, C) == "cuda":
        return cuda_kernel("selective_scan")(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                                             return_last_state)
    return selective_scan_torch(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)

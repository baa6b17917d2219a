"""The selective scan, fast and exact on a CPU: blocked, sequential inside, hand-written backward.

Readable form: ``ssm.scan.selective_scan_sequential`` (one step of the recurrence per time step,
differentiated by autograd), with the same argument layout (mamba-ssm's ``selective_scan_fn``):

    u, delta, z: (B, D, L)    A: (D, N)    B, C: (B, N, L)    D, delta_bias: (D,)

Why a *blocked sequential* scan
-------------------------------
A parallel (associative) scan does O(L log L) work or several passes over (B, D, L, N) tensors; on
a 2-core CPU that memory traffic costs more than the Python loop it removes, and the log-space
trick (cumulative sums of ``delta*A``, then ``exp`` of differences) loses accuracy when the decays
are large. So we keep the loop over time, but make every step one fused in-place ``addcmul`` on a
small contiguous (B, D, N) slab, and do all the other work (the ``exp`` of the decays, the input
term, the contraction with ``C``) vectorised over blocks of Q time steps. Only one block of
states is alive at a time, plus one state per block boundary ("checkpoints") for the backward.
``delta_bias``, softplus, the skip ``D * u`` and the gate ``silu(z)`` are fused into the same pass
over each block, so every input is read once and the output written once: the time grows linearly
with L even when the tensors no longer fit in cache.

The backward is hand-written: it walks the blocks in reverse, recomputes the block's decays and
states from its checkpoint, runs the adjoint recurrence ``g_t = C_t dy_t + exp(delta_{t+1} A)
g_{t+1}`` backwards, and turns ``g`` into the gradients of every input with vectorised products.
Every step multiplies by decays ``exp(delta*A) <= 1`` (A < 0, delta >= 0) and adds: no division,
no subtraction of large numbers, so the scan is as accurate as the plain loop.

(``selective_scan_torch`` is named after the backend that runs it, ``"torch"``.)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# A block's (Q, B, D, N) tensors hold about this many elements (1 MiB in float32): small enough to
# stay in cache, large enough that the vectorised work amortises its per-operation overhead.
BLOCK_ELEMENTS = 2**18
MIN_BLOCK, MAX_BLOCK = 8, 512


def default_block(b: int, d: int, n: int) -> int:
    """Time steps per block for a (b, d, n) state: BLOCK_ELEMENTS / (b*d*n), clamped to [8, 512]."""
    return max(MIN_BLOCK, min(MAX_BLOCK, BLOCK_ELEMENTS // max(1, b * d * n)))


def _block_states(h0, delta_t, du_t, A, B_t):
    """States of one block, computed in place. Time-major inputs for a block of Q steps:

    h0: (B, D, N) state before the block; delta_t, du_t (= delta*u): (Q, B, D); A: (D, N);
    B_t: (Q, B, N). Returns ``S`` (Q, B, D, N), the states h_s..h_{s+Q-1}, and ``dA`` (Q, B, D, N),
    the decays exp(delta*A).
    """
    dA = torch.exp(delta_t.unsqueeze(-1) * A)  # (Q, B, D, N)
    S = du_t.unsqueeze(-1) * B_t.unsqueeze(2)  # input terms
    Sl, dAl = S.unbind(0), dA.unbind(0)  # views, in one call
    Sl[0].addcmul_(dAl[0], h0)
    for i in range(1, len(Sl)):
        Sl[i].addcmul_(dAl[i], Sl[i - 1])  # h_t = dA_t h_{t-1} + x_t
    return S, dA


def _blk(x, s, e):
    """Time steps s..e-1 of a (B, K, L) tensor as a contiguous time-major (e-s, B, K) block.

    May be a view of ``x`` (when no copy is needed): never modify it in place.
    """
    return x[:, :, s:e].permute(2, 0, 1).contiguous()


def _softplus_grad(x):
    """d softplus(x) / dx, matching torch's softplus (beta 1, threshold 20)."""
    return torch.where(x > 20, torch.ones_like(x), torch.sigmoid(x))


class _BlockedScan(torch.autograd.Function):
    """The whole fused selective scan, one block of time steps at a time.

    u, delta: (B, D, L); A: (D, N); B, C: (B, N, L); D_skip, delta_bias: (D,) or None; z: (B, D, L)
    or None; all in one float dtype. Returns out (B, D, L) and the last state (B, D, N).

    Per block, everything happens on cache-sized, time-major copies: delta + bias and softplus, the
    scan, y = C.h, the skip D*u and the gate silu(z); each input is read once and the output
    written once. The backward recomputes all of it from the block's checkpoint state.
    """

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D_skip, z, delta_bias, softplus, block):
        with torch.autocast(u.device.type, enabled=False):
            b, d, L = u.shape
            n = A.shape[1]
            nblk = math.ceil(L / block)
            ckpt = u.new_empty(nblk, b, d, n)  # the state before each block
            out = u.new_empty(b, d, L)
            h = u.new_zeros(b, d, n)
            for k in range(nblk):
                s, e = k * block, min(L, (k + 1) * block)
                ckpt[k] = h
                dT = _blk(delta, s, e)  # (Q, B, D)
                if delta_bias is not None:
                    dT = dT + delta_bias  # (never in place: may be a view)
                if softplus:
                    dT = F.softplus(dT)
                uT = _blk(u, s, e)
                S, _ = _block_states(h, dT, dT * uT, A, _blk(B, s, e))
                # y_t[d] = sum_n C_t[n] S_t[d, n], batched over (Q*B) as row-vector x matrix
                # products ((1, n) @ (n, d) is much faster on CPU than the same (d, n) @ (n, 1))
                yT = torch.bmm(_blk(C, s, e).view(-1, 1, n), S.view(-1, d, n).transpose(1, 2))
                yT = yT.view(e - s, b, d)  # (Q, B, D)
                if D_skip is not None:
                    yT.addcmul_(uT, D_skip)
                if z is not None:
                    yT.mul_(F.silu(_blk(z, s, e)))
                out[:, :, s:e] = yT.permute(1, 2, 0)
                h = S[-1]
            last = h.clone()
        ctx.save_for_backward(u, delta, A, B, C, D_skip, z, delta_bias, ckpt)
        ctx.softplus, ctx.block = softplus, block
        return out, last

    @staticmethod
    def backward(ctx, gout, glast):
        u, delta, A, B, C, D_skip, z, delta_bias, ckpt = ctx.saved_tensors
        softplus, block = ctx.softplus, ctx.block
        with torch.autocast(u.device.type, enabled=False):
            b, d, L = u.shape
            n = A.shape[1]
            if gout is None:
                gout = torch.zeros_like(u)
            gout = gout.to(u.dtype)
            g_delta, g_u = torch.empty_like(delta), torch.empty_like(u)
            g_B, g_C = torch.empty_like(B), torch.empty_like(C)
            g_z = torch.empty_like(z) if z is not None else None
            g_A = torch.zeros_like(A)
            g_D = torch.zeros_like(D_skip) if D_skip is not None else None
            g_bias = torch.zeros_like(delta_bias) if delta_bias is not None else None
            # carry = dL/dh_{e-1} flowing in from the future of the current block
            carry = glast.to(u.dtype) if glast is not None else None
            for k in reversed(range(ckpt.shape[0])):
                s, e = k * block, min(L, (k + 1) * block)
                T = e - s
                h0 = ckpt[k]
                # recompute the block's forward: step sizes, states, decays
                draw = _blk(delta, s, e)  # (Q, B, D)
                if delta_bias is not None:
                    draw = draw + delta_bias
                dT = F.softplus(draw) if softplus else draw
                uT, BT, CT, gT = (_blk(x, s, e) for x in (u, B, C, gout))
                duT = dT * uT
                S, dA = _block_states(h0, dT, duT, A, BT)  # (Q, B, D, N)
                S2 = S.view(-1, d, n)
                # through the gate and the skip: gT becomes dL/dy for y = C.h
                if z is not None:
                    zT = _blk(z, s, e)
                    sig = torch.sigmoid(zT)
                    pre = torch.bmm(CT.view(-1, 1, n), S2.transpose(1, 2)).view(T, b, d)
                    if D_skip is not None:
                        pre.addcmul_(uT, D_skip)
                    # d silu(z)/dz = sig * (1 + z (1 - sig))
                    g_z[:, :, s:e] = (gT * pre * sig * (1 + zT * (1 - sig))).permute(1, 2, 0)
                    gT = gT * (zT * sig)
                if D_skip is not None:
                    g_D += (gT * uT).sum((0, 1))
                # dC_t[n] = sum_d dy_t[d] h_t[d, n]
                g_C[:, :, s:e] = torch.bmm(gT.view(-1, 1, d), S2).view(T, b, n).permute(1, 2, 0)
                # adjoint: G_t = dy_t C_t + dA_{t+1} G_{t+1}, run backwards in place
                G = gT.unsqueeze(-1) * CT.unsqueeze(2)  # (Q, B, D, N)
                if carry is not None:
                    G[-1].add_(carry)
                Gl, dAl = G.unbind(0), dA.unbind(0)
                for i in range(T - 2, -1, -1):
                    Gl[i].addcmul_(dAl[i + 1], Gl[i + 1])
                carry = dA[0] * G[0]
                G2 = G.view(-1, d, n)
                # input term x_t = du_t B_t: dB_t[n] = sum_d G_t[d,n] du_t[d];
                # d(du_t)[d] = sum_n G_t[d,n] B_t[n]
                g_B[:, :, s:e] = torch.bmm(duT.view(-1, 1, d), G2).view(T, b, n).permute(1, 2, 0)
                GB = torch.bmm(BT.view(-1, 1, n), G2.transpose(1, 2)).view(T, b, d)
                # decay term: d(delta_t A)[d,n] = G_t h_{t-1} dA_t   (S holds the states h_t)
                gX = G.mul_(dA)
                gX[1:].mul_(S[:-1])
                gX[0].mul_(h0)
                g_dT = (gX * A).sum(-1).add_(GB * uT)  # dL/d(step size)
                gu = GB.mul_(dT)
                if D_skip is not None:
                    gu.addcmul_(gT, D_skip)
                g_u[:, :, s:e] = gu.permute(1, 2, 0)
                g_A += gX.mul_(dT.unsqueeze(-1)).sum((0, 1))
                if softplus:
                    g_dT.mul_(_softplus_grad(draw))
                if delta_bias is not None:
                    g_bias += g_dT.sum((0, 1))
                g_delta[:, :, s:e] = g_dT.permute(1, 2, 0)
        return g_u, g_delta, g_A, g_B, g_C, g_D, g_z, g_bias, None, None


def selective_scan_torch(
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
    block: int | None = None,
):
    """The fast exact scan; arguments, shapes and results as ``ssm.scan.selective_scan`` (which
    checks the shapes and calls this for ``backend="torch"``).

    Computes in float64 if any input is float64, else float32; returns ``y`` (B, D, L) in ``u``'s
    dtype (and the last state (B, D, N) if ``return_last_state``). ``block`` is the number of time
    steps processed together (a speed knob; results do not depend on it); default
    ``default_block(B, D, N)``, e.g. 32 for (4, 128, 16).
    """
    if block is None:
        block = default_block(u.shape[0], u.shape[1], A.shape[1])
    if block < 1:
        raise ValueError(f"block must be >= 1, got {block}")
    dtype = (
        torch.float64
        if torch.float64 in (u.dtype, delta.dtype, A.dtype, B.dtype, C.dtype)
        else torch.float32
    )  # half inputs: computed in float32
    cast = lambda t: t.to(dtype) if t is not None else None  # noqa: E731
    y, last = _BlockedScan.apply(
        cast(u),
        cast(delta),
        cast(A),
        cast(B),
        cast(C),
        cast(D),
        cast(z),
        cast(delta_bias),
        bool(delta_softplus),
        block,
    )
    y = y.to(u.dtype)
    return (y, last) if return_last_state else y

"""The M per-offset linear maps of the hourglass without copies, with a hand-written backward.

Readable form: the einsum of ``models.diffussm.OffsetLinear``:

    x (N, M, F_in), weight (M, F_out, F_in), bias (M, F_out) -> y (N, M, F_out),
    y[:, k] = x[:, k] @ weight[k]^T + bias[k]

``torch.einsum`` first copies x into (M, N, F_in) order and the result back into (N, M, F_out),
and adds the bias in a third pass. Here every product is one BLAS call on strided views (row stride
M F, which BLAS takes as its leading dimension), writing straight into the output, with the bias
folded in; the backward does the same. About 10% of a forward of ``mnist_diffussm`` went into those
copies (``benchmarks/bench_train.py`` prints the profile). N here counts rows (tokens), not states.
"""

from __future__ import annotations

import torch


class _OffsetLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias):
        N, M, _ = x.shape
        y = x.new_empty(N, M, weight.shape[1])  # (N, M, F_out)
        for k in range(M):
            torch.addmm(bias[k], x[:, k], weight[k].t(), out=y[:, k])  # (N, F_out), strided
        ctx.save_for_backward(x, weight)
        return y

    @staticmethod
    def backward(ctx, gy):
        x, weight = ctx.saved_tensors
        gx = gw = gb = None
        M = x.shape[1]
        if ctx.needs_input_grad[0]:
            gx = torch.empty_like(x)
            for k in range(M):
                torch.mm(gy[:, k], weight[k], out=gx[:, k])  # (N, F_in)
        if ctx.needs_input_grad[1]:
            gw = torch.empty_like(weight)
            for k in range(M):
                torch.mm(gy[:, k].t(), x[:, k], out=gw[k])  # (F_out, F_in)
        if ctx.needs_input_grad[2]:
            gb = gy.sum(0)  # (M, F_out)
        return gx, gw, gb


def offset_linear_fast(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """x (N, M, F_in), weight (M, F_out, F_in), bias (M, F_out) -> (N, M, F_out) (see the module).
    Under autocast the weights are cast to ``x``'s dtype, as ``nn.Linear`` would compute."""
    if not (x.dtype == weight.dtype == bias.dtype):
        weight, bias = weight.to(x.dtype), bias.to(x.dtype)
    return _OffsetLinear.apply(x, weight, bias)

"""FLOP counting (notebook 03): what a forward (and backward) pass costs, counted and in closed
form.

* ``count_flops(fn, *inputs)``: torch's own ``FlopCounterMode`` (FLOPs = 2 x multiply-adds of the
  matrix products), extended with formulas for two kinds of op it does not know: the CPU
  flash-attention kernel that ``scaled_dot_product_attention`` uses on CPU (counted exactly like
  the CUDA kernels torch does know) and FFTs (the conventional 2.5 n log2 n per real transform of
  length n, 5 n log2 n per complex one). Element-wise ops are not counted, as in torch.
* ``block_flops(cfg, L)``: one block of a config on L tokens.
* ``flop_split(model, *inputs)``: a model's forward FLOPs by part: attention (QK^T and AV, the part
  that grows as L^2), the SSM, and the dense layers (everything else).
* ``diffussm_block_flops_formula`` / ``dit_block_flops_formula``: the closed forms, for comparison.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch.utils import flop_counter as _fc
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..config import ModelConfig
from ..ssm import BidirectionalSSM
from .dit import Attention
from .factory import build_block

aten = torch.ops.aten


# --------------------------------------------------------------------------------------------
def _cpu_sdpa_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return _fc.sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_sdpa_backward_flop(
    grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs
) -> int:
    return _fc.sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


def _fft_cost(shape, dims, per_point: float) -> int:
    n = math.prod(shape[d] for d in dims)
    if n <= 1:
        return 0
    return int(per_point * (math.prod(shape) // n) * n * math.log2(n))


def _fft_r2c_flop(x_shape, dim, normalization, onesided, out_shape=None, **kwargs) -> int:
    return _fft_cost(x_shape, dim, 2.5)


def _fft_c2r_flop(x_shape, dim, normalization, last_dim_size, out_shape=None, **kwargs) -> int:
    return _fft_cost(out_shape, dim, 2.5)


def _fft_c2c_flop(x_shape, dim, normalization, forward, out_shape=None, **kwargs) -> int:
    return _fft_cost(x_shape, dim, 5.0)


EXTRA_FLOP_FORMULAS = {
    aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flop,
    aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_sdpa_backward_flop,
}
FFT_FLOP_FORMULAS = {
    aten._fft_r2c: _fft_r2c_flop,
    aten._fft_c2r: _fft_c2r_flop,
    aten._fft_c2c: _fft_c2c_flop,
}


def flop_counts(fn: Callable, *inputs, backward: bool = False, fft: bool = True) -> dict[str, int]:
    """Run ``fn(*inputs)`` (and the backward of ``out.sum()`` if ``backward``) under
    FlopCounterMode.

    Returns ``{op name: FLOPs}`` (FLOPs = 2 x multiply-adds). Works on real tensors and on the
    ``meta`` device (shapes only, no compute: the cheap way to count large L).
    """
    mapping = dict(EXTRA_FLOP_FORMULAS)
    if fft:
        mapping.update(FFT_FLOP_FORMULAS)
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        out = fn(*inputs)
        if backward:
            out.float().sum().backward()
    counts = counter.get_flop_counts().get("Global", {})
    return {str(k).split(".")[-1]: int(v) for k, v in counts.items()}


def count_flops(fn: Callable, *inputs, backward: bool = False, fft: bool = True) -> int:
    """Total FLOPs of ``fn(*inputs)`` (see ``flop_counts``)."""
    return sum(flop_counts(fn, *inputs, backward=backward, fft=fft).values())


def flop_split(model: nn.Module, *inputs) -> dict[str, int]:
    """Forward FLOPs of ``model(*inputs)`` (no grad), by part, as ``count_flops`` counts them:

    * ``attention``: inside every ``Attention`` module but outside its linear layers (qkv, proj):
      the products QK^T and AV, 4 L^2 D per sample and block, the part that grows as L^2;
    * ``ssm``: inside every ``BidirectionalSSM`` module: the FFT convolutions (per sample) and
      the S4D kernel (once per forward, whatever the batch);
    * ``dense``: the rest: every linear layer (patch embedding, conditioning, adaLN, the DiT's
      qkv / proj / MLP, the hourglass's projections, the output head);
    * ``total``: their sum (= ``count_flops``).
    """
    mapping = {**EXTRA_FLOP_FORMULAS, **FFT_FLOP_FORMULAS}
    root = type(model).__name__
    attention, ssm = [], []  # the counter's module names: "DiT.blocks.0.attn", ...
    for name, m in model.named_modules():
        if isinstance(m, Attention):
            linears = [
                f"{root}.{name}.{c}" for c, sub in m.named_children() if len(list(sub.parameters()))
            ]
            attention.append((f"{root}.{name}", linears))
        elif isinstance(m, BidirectionalSSM):
            ssm.append(f"{root}.{name}")
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        model(*inputs)
    by_module = {k: sum(v.values()) for k, v in counter.get_flop_counts().items()}
    total = by_module.get("Global", 0)
    missing = [n for n, _ in attention if n not in by_module] + [
        n for n in ssm if n not in by_module
    ]
    if missing:  # a module that ran must appear: else the counter names modules differently
        raise RuntimeError(f"flop_split: the FLOP counter has no entry for modules {missing}")
    att = sum(by_module[n] - sum(by_module.get(c, 0) for c in cs) for n, cs in attention)
    s = sum(by_module[n] for n in ssm)
    return {"attention": att, "ssm": s, "dense": total - att - s, "total": total}


def block_flops(
    cfg: ModelConfig,
    L: int,
    batch: int = 1,
    device: str | torch.device | None = None,
    fft: bool = True,
) -> int:
    """Forward FLOPs of one block of ``cfg`` on a sequence of ``L`` tokens (DiffuSSM: J = L/M
    stream tokens).

    Built and run on ``device``. Default: ``meta`` for DiT (shapes only: the L^2 attention costs
    nothing to count) and ``cpu`` for DiffuSSM (the SSM enters ``torch.autocast``, which the meta
    device does not support; its cost is linear in L, so running it is cheap).
    """
    if device is None:
        device = "meta" if cfg.arch == "dit" else "cpu"
    with torch.device(device):
        block = build_block(cfg)
        S = L // cfg.hourglass_ratio if cfg.arch == "diffussm" else L
        x = torch.zeros(batch, S, cfg.hidden_dim)
        c = torch.zeros(batch, cfg.hidden_dim)
    with torch.no_grad():
        return count_flops(block, x, c, fft=fft)


def diffussm_block_flops_formula(L: int, D: int, M: int = 2, bidirectional: bool = True) -> int:
    """Closed-form FLOPs (2 x multiply-adds) of the hourglass's dense layers, per sample.

    ``2 (9 J D^2 + L D^2 + L * out * 2D/M)`` with out = 2D (bidirectional) or D, which is the
    paper's ``2 (13 J D^2 + L D^2)`` when bidirectional. The SSM itself is not included.
    """
    J = L // M
    out = 2 * D if bidirectional else D
    return 2 * (9 * J * D * D + L * D * D + L * out * (2 * D // M))


def dit_block_flops_formula(L: int, D: int, mlp_ratio: float = 4.0) -> int:
    """Closed-form FLOPs of a DiT block per sample: ``2 (4 + 2 r) L D^2`` dense + ``4 L^2 D``
    attention."""
    return int(2 * (4 + 2 * mlp_ratio) * L * D * D + 4 * L * L * D)

"""Model factory, parameter counting and FLOP counting.

* ``build_model(cfg)``: a ``ModelConfig`` -> ``DiffuSSM`` or ``DiT`` (same interface).
* ``build_block(cfg)``: one block of that architecture (for benchmarks and FLOP curves).
* ``count_params(module)``.
* ``count_flops(fn, *inputs)``: torch's own ``FlopCounterMode`` (FLOPs = 2 x multiply-adds of the
  matrix products), extended with formulas for two kinds of op it does not know:
  the CPU flash-attention kernel that ``scaled_dot_product_attention`` uses on CPU (counted exactly
  like the CUDA kernels torch does know) and FFTs (the conventional 2.5 n log2 n per real transform
  of length n, 5 n log2 n per complex one). Element-wise ops are not counted, as in torch.
* ``diffussm_block_flops_formula`` / ``dit_block_flops_formula``: the closed forms, for comparison.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch
from torch import nn
from torch.utils import flop_counter as _fc
from torch.utils.flop_counter import FlopCounterMode

from .config import ModelConfig
from .diffussm import DiffuSSM
from .dit import DiT, DiTBlock
from .hourglass import DiffuSSMBlock, make_ssm

aten = torch.ops.aten


# --------------------------------------------------------------------------------------------
# Factory
# --------------------------------------------------------------------------------------------
def build_model(cfg: ModelConfig, ssm_factory: Optional[Callable[[int], nn.Module]] = None) -> nn.Module:
    """ModelConfig -> ``DiffuSSM`` (arch "diffussm") or ``DiT`` (arch "dit").

    ``ssm_factory(dim) -> module`` replaces the library's BidirectionalSSM (DiffuSSM only; tests).
    The model is checked against ``cfg.image_size`` (H = W) so a bad config fails here, not mid-training.
    """
    if cfg.arch == "diffussm":
        model = DiffuSSM(in_channels=cfg.in_channels, hidden_dim=cfg.hidden_dim, depth=cfg.depth,
                         patch_size=cfg.patch_size, hourglass_ratio=cfg.hourglass_ratio,
                         num_classes=cfg.num_classes, learn_sigma=cfg.learn_sigma, ssm_core=cfg.ssm_core,
                         ssm_state=cfg.ssm_state, bidirectional=cfg.bidirectional, ssm_backend=cfg.ssm_backend,
                         ssm_factory=ssm_factory)
    elif cfg.arch == "dit":
        model = DiT(in_channels=cfg.in_channels, hidden_dim=cfg.hidden_dim, depth=cfg.depth,
                    patch_size=cfg.patch_size, num_classes=cfg.num_classes, learn_sigma=cfg.learn_sigma,
                    num_heads=cfg.num_heads, mlp_ratio=cfg.mlp_ratio)
    else:
        raise ValueError(f"model.arch must be 'diffussm' or 'dit', got {cfg.arch!r}")
    try:
        model.check_size(cfg.image_size, cfg.image_size)
    except ValueError as e:
        raise ValueError(f"model.image_size={cfg.image_size}: {e}") from None
    return model


def build_block(cfg: ModelConfig, ssm_factory: Optional[Callable[[int], nn.Module]] = None) -> nn.Module:
    """One block of ``cfg.arch`` at width ``cfg.hidden_dim``: ``block(x (B, S, D), c (B, D))``."""
    D = cfg.hidden_dim
    if cfg.arch == "diffussm":
        ssm = ssm_factory(D) if ssm_factory else make_ssm(D, cfg.ssm_core, cfg.bidirectional, cfg.ssm_state,
                                                             cfg.ssm_backend)
        return DiffuSSMBlock(D, cfg.hourglass_ratio, ssm)
    if cfg.arch == "dit":
        return DiTBlock(D, cfg.num_heads, cfg.mlp_ratio)
    raise ValueError(f"model.arch must be 'diffussm' or 'dit', got {cfg.arch!r}")


def count_params(module: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


# --------------------------------------------------------------------------------------------
# FLOP counting
# --------------------------------------------------------------------------------------------
def _cpu_sdpa_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return _fc.sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_sdpa_backward_flop(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None,
                            **kwargs) -> int:
    return _fc.sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


def _fft_cost(shape, dims, per_point: float) -> int:
    n = math.prod(shape[d] for d in dims)
    if n <= 1:
        return 0
    return int(per_point * (math.prod(shape) // n) * n * math.log2(n))


def _fft_r2c_flop(x_shape, dim, normalization, onesided, out_shape=None) -> int:
    return _fft_cost(x_shape, dim, 2.5)


def _fft_c2r_flop(x_shape, dim, normalization, last_dim_size, out_shape=None) -> int:
    return _fft_cost(out_shape, dim, 2.5)


def _fft_c2c_flop(x_shape, dim, normalization, forward, out_shape=None) -> int:
    return _fft_cost(x_shape, dim, 5.0)


EXTRA_FLOP_FORMULAS = {
    aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flop,
    aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_sdpa_backward_flop,
}
FFT_FLOP_FORMULAS = {aten._fft_r2c: _fft_r2c_flop, aten._fft_c2r: _fft_c2r_flop, aten._fft_c2c: _fft_c2c_flop}


def flop_counts(fn: Callable, *inputs, backward: bool = False, fft: bool = True) -> dict[str, int]:
    """Run ``fn(*inputs)`` (and the backward of ``out.sum()`` if ``backward``) under FlopCounterMode.

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
    return {str(k).split(".")[-1]: int(v) for k, v in counter.get_flop_counts().get("Global", {}).items()}


def count_flops(fn: Callable, *inputs, backward: bool = False, fft: bool = True) -> int:
    """Total FLOPs of ``fn(*inputs)`` (see ``flop_counts``)."""
    return sum(flop_counts(fn, *inputs, backward=backward, fft=fft).values())


def block_flops(cfg: ModelConfig, L: int, batch: int = 1, device: str | torch.device | None = None,
                ssm_factory: Optional[Callable[[int], nn.Module]] = None, fft: bool = True) -> int:
    """Forward FLOPs of one block of ``cfg`` on a sequence of ``L`` tokens (DiffuSSM: J = L/M stream tokens).

    Built and run on ``device``. Default: ``meta`` for DiT (shapes only: the L^2 attention costs
    nothing to count) and ``cpu`` for DiffuSSM (the SSM enters ``torch.autocast``, which the meta
    device does not support; its cost is linear in L, so running it is cheap).
    """
    if device is None:
        device = "meta" if cfg.arch == "dit" else "cpu"
    with torch.device(device):
        block = build_block(cfg, ssm_factory)
        S = L // cfg.hourglass_ratio if cfg.arch == "diffussm" else L
        x = torch.zeros(batch, S, cfg.hidden_dim)
        c = torch.zeros(batch, cfg.hidden_dim)
    with torch.no_grad():
        return count_flops(block, x, c, fft=fft)


def diffussm_block_flops_formula(L: int, D: int, M: int = 2, bidirectional: bool = True) -> int:
    """Closed-form FLOPs (2 x multiply-adds) of the hourglass's dense layers, per sample.

    ``2 (9 J D^2 + L D^2 + L * out * 2D/M)`` with out = 2D (bidirectional) or D, which is the paper's
    ``2 (13 J D^2 + L D^2)`` when bidirectional. The SSM itself is not included.
    """
    J = L // M
    out = 2 * D if bidirectional else D
    return 2 * (9 * J * D * D + L * D * D + L * out * (2 * D // M))


def dit_block_flops_formula(L: int, D: int, mlp_ratio: float = 4.0) -> int:
    """Closed-form FLOPs of a DiT block per sample: ``2 (4 + 2 r) L D^2`` dense + ``4 L^2 D`` attention."""
    return int(2 * (4 + 2 * mlp_ratio) * L * D * D + 4 * L * L * D)

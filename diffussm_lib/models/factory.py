"""Model factory: a ``ModelConfig`` -> the model (or one of its blocks), and parameter counts.

* ``build_model(cfg)``: ``DiffuSSM`` (arch "diffussm") or ``DiT`` (arch "dit"), same interface.
* ``build_block(cfg)``: one block of that architecture (benchmarks and FLOP curves).
* ``count_params(module)``.
"""
from __future__ import annotations

from torch import nn

from ..config import ModelConfig
from .diffussm import DiffuSSM, DiffuSSMBlock, block_ssm
from .scan_orders import layer_orders
from .dit import DiT, DiTBlock

ARCHS = ("diffussm", "dit")


def _check_arch(cfg: ModelConfig) -> None:
    if cfg.arch not in ARCHS:
        raise ValueError(f"model.arch must be one of {ARCHS}, got {cfg.arch!r}")


def build_model(cfg: ModelConfig) -> nn.Module:
    """ModelConfig -> ``DiffuSSM`` or ``DiT``, checked against ``cfg.image_size`` (H = W) so that a
    bad config fails here, not mid-training."""
    _check_arch(cfg)
    if cfg.arch == "diffussm":
        model = DiffuSSM(in_channels=cfg.in_channels, hidden_dim=cfg.hidden_dim, depth=cfg.depth,
                         patch_size=cfg.patch_size, hourglass_ratio=cfg.hourglass_ratio,
                         num_classes=cfg.num_classes, learn_sigma=cfg.learn_sigma, ssm_core=cfg.ssm_core,
                         ssm_state=cfg.ssm_state, bidirectional=cfg.bidirectional, ssm_backend=cfg.ssm_backend,
                         ssm_init=cfg.ssm_init, scan_order=cfg.scan_order)
    else:
        model = DiT(in_channels=cfg.in_channels, hidden_dim=cfg.hidden_dim, depth=cfg.depth,
                    patch_size=cfg.patch_size, num_classes=cfg.num_classes, learn_sigma=cfg.learn_sigma,
                    num_heads=cfg.num_heads, mlp_ratio=cfg.mlp_ratio)
    try:
        model.check_size(cfg.image_size, cfg.image_size)
    except ValueError as e:
        raise ValueError(f"model.image_size={cfg.image_size}, model.patch_size={cfg.patch_size}"
                         + (f", model.hourglass_ratio={cfg.hourglass_ratio}" if cfg.arch == "diffussm" else "")
                         + f": {e}") from None
    return model


def build_block(cfg: ModelConfig) -> nn.Module:
    """One block of ``cfg.arch`` at width D = ``cfg.hidden_dim``: ``block(x (B, J, D), c (B, D))`` (J = L for DiT)."""
    _check_arch(cfg)
    D = cfg.hidden_dim
    if cfg.arch == "diffussm":
        ssm = block_ssm(D, cfg.ssm_core, cfg.bidirectional, cfg.ssm_state, cfg.ssm_backend, cfg.ssm_init)
        return DiffuSSMBlock(D, cfg.hourglass_ratio, ssm, layer_orders(cfg.scan_order, 1)[0])
    return DiTBlock(D, cfg.num_heads, cfg.mlp_ratio)


def count_params(module: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)

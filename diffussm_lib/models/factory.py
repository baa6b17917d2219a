"""Model factory: a ``ModelConfig`` -> the model (or one of its blocks), and parameter counts.

* ``build_model(cfg)``: ``DiffuSSM(cfg)`` (arch "diffussm") or ``DiT(cfg)`` (arch "dit"), the same
  interface; each model turns its config section into layers itself.
* ``build_block(cfg)``: one block of that architecture (benchmarks and FLOP curves).
* ``count_params(module)``.
"""

from __future__ import annotations

from torch import nn

from ..config import ConfigError, ModelConfig
from .diffussm import DiffuSSM, DiffuSSMBlock
from .dit import DiT, DiTBlock

ARCHS = {"diffussm": DiffuSSM, "dit": DiT}


def _check_arch(cfg: ModelConfig) -> None:
    if cfg.arch not in ARCHS:
        raise ConfigError(f"model.arch must be one of {tuple(ARCHS)}, got {cfg.arch!r}")


def build_model(cfg: ModelConfig) -> nn.Module:
    """ModelConfig -> ``DiffuSSM`` or ``DiT``, checked against ``cfg.image_size`` (H = W) so that a
    bad config fails here, not mid-training."""
    _check_arch(cfg)
    model = ARCHS[cfg.arch](cfg)
    try:
        model.check_size(cfg.image_size, cfg.image_size)
    except ValueError as e:
        ratio = f", model.hourglass_ratio={cfg.hourglass_ratio}" if cfg.arch == "diffussm" else ""
        raise ConfigError(
            f"model.image_size={cfg.image_size}, model.patch_size={cfg.patch_size}{ratio}: {e}"
        ) from None
    return model


def build_block(cfg: ModelConfig) -> nn.Module:
    """One block of ``cfg.arch`` at width D = ``cfg.hidden_dim``: ``block(x (B, J, D), c (B, D))``
    (J = L for DiT)."""
    _check_arch(cfg)
    if cfg.arch == "diffussm":
        return DiffuSSMBlock.from_config(cfg)
    return DiTBlock(cfg.hidden_dim, cfg.num_heads, cfg.mlp_ratio)


def count_params(module: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)

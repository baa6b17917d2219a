"""The denoisers (notebook 03). Start reading at ``diffussm.py``: the DiffuSSM model, smallest
layer first.

Modules
-------
diffussm    conditioning (timestep, class, adaLN-Zero), patchify and the output head, the hourglass
            block, the ``Denoiser`` skeleton and ``DiffuSSM``
dit         the DiT baseline of the same interface
factory     ``build_model(cfg)``, ``build_block(cfg)``, ``count_params``
flops       ``count_flops``, ``block_flops``, ``flop_split`` and the closed-form FLOP counts
scan_orders ``scan_order(name, h, w)``: raster, snake, column, column_snake, hilbert, random
            (notebook 08)

A model is built from its config section: ``DiffuSSM(cfg.model)`` / ``DiT(cfg.model)``, or
``build_model(cfg.model)``, which picks the architecture and checks the image size.
"""

from .diffussm import (
    AdaLNZero,
    ConditionEmbedder,
    Denoiser,
    DiffuSSM,
    DiffuSSMBlock,
    FinalLayer,
    Hourglass,
    LabelEmbedder,
    OffsetLinear,
    PatchEmbed,
    TimestepEmbedder,
    act,
    check_image_size,
    gated_residual,
    group_tokens,
    modulate,
    patchify,
    timestep_features,
    ungroup_tokens,
    unpatchify,
)
from .dit import Attention, DiT, DiTBlock, sincos_1d, sincos_2d
from .factory import ARCHS, build_block, build_model, count_params
from .flops import (
    block_flops,
    count_flops,
    diffussm_block_flops_formula,
    dit_block_flops_formula,
    flop_counts,
    flop_split,
)
from .scan_orders import ORDERS, layer_orders, scan_order

__all__ = [
    "AdaLNZero",
    "ConditionEmbedder",
    "Denoiser",
    "DiffuSSM",
    "DiffuSSMBlock",
    "FinalLayer",
    "Hourglass",
    "LabelEmbedder",
    "OffsetLinear",
    "PatchEmbed",
    "TimestepEmbedder",
    "act",
    "check_image_size",
    "gated_residual",
    "group_tokens",
    "modulate",
    "patchify",
    "timestep_features",
    "ungroup_tokens",
    "unpatchify",
    "Attention",
    "DiT",
    "DiTBlock",
    "sincos_1d",
    "sincos_2d",
    "ARCHS",
    "build_block",
    "build_model",
    "count_params",
    "ORDERS",
    "layer_orders",
    "scan_order",
    "block_flops",
    "count_flops",
    "diffussm_block_flops_formula",
    "dit_block_flops_formula",
    "flop_counts",
    "flop_split",
]

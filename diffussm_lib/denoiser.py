"""The denoiser skeleton shared by DiffuSSM and the DiT baseline.

    x (B, C, H, W) --PatchEmbed--> tokens (B, S, D) [+ positions] --N blocks(., c)--> (B, S, D)
                    --FinalLayer(., c)--> (B, C or 2C, H, W)
    c = TimestepEmbedder(t) + LabelEmbedder(y)   (B, D)

``S`` is the length of the residual stream: ``J = L / M`` for DiffuSSM, ``L`` for DiT. The two
models differ only in their blocks (and DiT's positional embedding); everything else is this class.
The output predicts the noise (epsilon or v, per the diffusion config); with ``learn_sigma`` the
second half of the channels is the variance interpolation of improved DDPM / DiT.
"""
from __future__ import annotations

import torch
from torch import nn

from .conditioning import ConditionEmbedder
from .patches import FinalLayer, PatchEmbed, check_image_size


class Denoiser(nn.Module):
    """Base class: subclasses fill ``self.blocks`` (each ``block(x (B,S,D), c (B,D)) -> (B,S,D)``).

    Attributes: ``in_channels`` C, ``out_channels`` (C or 2C), ``num_classes``, ``null_class``
    (= num_classes), ``patch_size`` p, ``group`` (tokens per stream token: M or 1), ``hidden_dim`` D.
    """

    def __init__(self, *, in_channels: int, hidden_dim: int, patch_size: int, group: int, num_classes: int,
                 learn_sigma: bool):
        super().__init__()
        if in_channels < 1 or hidden_dim < 1:
            raise ValueError(f"in_channels={in_channels} and hidden_dim={hidden_dim} must be >= 1")
        self.in_channels = in_channels
        self.out_channels = 2 * in_channels if learn_sigma else in_channels
        self.learn_sigma = learn_sigma
        self.hidden_dim = hidden_dim
        self.patch_size = patch_size
        self.group = group
        self.num_classes = num_classes
        self.null_class = num_classes
        self.embed = PatchEmbed(in_channels, hidden_dim, patch_size, group)
        self.cond = ConditionEmbedder(hidden_dim, num_classes)
        self.blocks = nn.ModuleList()
        self.final = FinalLayer(hidden_dim, self.out_channels, patch_size, group)

    def check_size(self, H: int, W: int) -> int:
        """Raise a clear ValueError if (H, W) does not fit p and M; return L."""
        return check_image_size(H, W, self.patch_size, self.group)

    def add_positions(self, tokens: torch.Tensor, H: int, W: int) -> torch.Tensor:
        """Hook for positional information: tokens (B, S, D) -> (B, S, D). Default: none."""
        return tokens

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, C, H, W), t (B,) long or float, y (B,) long in [0, num_classes] or None (= all null)
        -> (B, C_out, H, W) with C_out = C, or 2C when ``learn_sigma``."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected x of shape (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        B, _, H, W = x.shape
        if t.ndim == 0:
            t = t.expand(B)
        if t.shape != (B,):
            raise ValueError(f"expected timesteps t of shape ({B},), got {tuple(t.shape)}")
        self.check_size(H, W)
        c = self.cond(t, y)                                   # (B, D)
        h = self.add_positions(self.embed(x), H, W)           # (B, S, D)
        for block in self.blocks:
            h = block(h, c)
        return self.final(h, c, H, W)

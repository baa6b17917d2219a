"""The DiT baseline (Peebles & Xie 2023) with the same interface, width and depth as DiffuSSM.

A DiT block (adaLN-Zero, 6 modulation vectors):

    x = x + gate1 * Attention(modulate(LN(x), shift1, scale1))
    x = x + gate2 * MLP(modulate(LN(x), shift2, scale2))

Attention is full (every token sees every token) through ``F.scaled_dot_product_attention``; its
cost grows as L^2 D, against DiffuSSM's L D^2 + L log L D. Tokens are p x p patches in raster order
(p = 1: one token per pixel, the "no patching" comparison of the paper) plus a fixed 2-D sin-cos
positional embedding computed for the actual grid, so any H, W divisible by p works.

Conditioning, input projection and output head are DiffuSSM's (``Denoiser`` in ``diffussm.py``).
Dimension letters: the glossary in ``diffussm_lib/__init__.py``; ``h`` heads.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .diffussm import AdaLNZero, Denoiser, gated_residual, modulate


def sincos_1d(pos: torch.Tensor, dim: int) -> torch.Tensor:
    """pos (n,) float -> (n, dim): ``[sin(pos w_i), cos(pos w_i)]``, ``w_i = 10000^(-2i/dim)``."""
    omega = 1.0 / 10_000 ** (torch.arange(dim // 2, dtype=torch.float32, device=pos.device) / (dim / 2))
    args = pos.float()[:, None] * omega[None]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=-1)


def sincos_2d(h: int, w: int, dim: int, device=None) -> torch.Tensor:
    """Fixed 2-D positional embedding of an h x w grid in raster order -> (h w, dim).

    The first dim/2 features encode the row, the last dim/2 the column (``dim`` divisible by 4).
    """
    if dim % 4:
        raise ValueError(f"the 2-D sin-cos positional embedding needs a width divisible by 4, got D={dim}")
    rows = torch.arange(h, device=device).repeat_interleave(w)      # (h w,)
    cols = torch.arange(w, device=device).repeat(h)                 # (h w,)
    return torch.cat([sincos_1d(rows, dim // 2), sincos_1d(cols, dim // 2)], dim=-1)


class Attention(nn.Module):
    """Multi-head self-attention: x (B, L, D) -> (B, L, D), through SDPA (no mask)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width D={dim} must be divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, L, D) -> (B, L, D)."""
        B, L, D = x.shape
        q, k, v = self.qkv(x).reshape(B, L, 3, self.num_heads, D // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)                  # (B, h, L, D/h)
        return self.proj(out.transpose(1, 2).reshape(B, L, D))


class DiTBlock(nn.Module):
    """x (B, L, D), c (B, D) -> (B, L, D); the identity at initialisation (adaLN-Zero)."""

    def __init__(self, dim: int, num_heads: int = 4, mlp_ratio: float = 4.0):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))
        self.ada = AdaLNZero(dim, 6)

    def forward(self, x: torch.Tensor, c: torch.Tensor, grid=None) -> torch.Tensor:
        """x (B, L, D), c (B, D) -> (B, L, D) (``grid``: unused, attention has no order)."""
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(c)
        x = gated_residual(x, gate1, self.attn(modulate(self.norm1(x), shift1, scale1)))
        return gated_residual(x, gate2, self.mlp(modulate(self.norm2(x), shift2, scale2)))


class DiT(Denoiser):
    """DiT denoiser: x (B, C, H, W), t (B,), y (B,) or None -> (B, C or 2C, H, W).

    Same skeleton as ``DiffuSSM`` (conditioning, input projection, final layer), with ``depth``
    DiT blocks on L = H W / p^2 tokens and a fixed 2-D sin-cos positional embedding.
    """

    def __init__(self, in_channels: int = 1, hidden_dim: int = 128, depth: int = 6, patch_size: int = 1,
                 num_classes: int = 10, learn_sigma: bool = False, num_heads: int = 4, mlp_ratio: float = 4.0):
        super().__init__(in_channels=in_channels, hidden_dim=hidden_dim, patch_size=patch_size, group=1,
                         num_classes=num_classes, learn_sigma=learn_sigma)
        if hidden_dim % 4:
            raise ValueError(f"DiT needs hidden_dim divisible by 4 (2-D positional embedding), got {hidden_dim}")
        self.blocks = nn.ModuleList(DiTBlock(hidden_dim, num_heads, mlp_ratio) for _ in range(depth))
        for block in self.blocks:
            for m in block.modules():
                if isinstance(m, nn.Linear) and m not in (block.ada.linear,):
                    nn.init.xavier_uniform_(m.weight)
                    nn.init.zeros_(m.bias)

    def add_positions(self, tokens: torch.Tensor, H: int, W: int) -> torch.Tensor:
        """tokens (B, L, D) -> tokens + sincos_2d(H/p, W/p, D)."""
        p = self.patch_size
        return tokens + sincos_2d(H // p, W // p, self.hidden_dim, tokens.device).to(tokens.dtype)

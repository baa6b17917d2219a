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

from ..config import ModelConfig
from .diffussm import AdaLNZero, Denoiser, gated_residual, modulate


def sincos_1d(pos: torch.Tensor, width: int) -> torch.Tensor:
    """pos (n,) float -> (n, width): ``[sin(pos w_i), cos(pos w_i)]``,
    ``w_i = 10000^(-2i/width)``."""
    i = torch.arange(width // 2, dtype=torch.float32, device=pos.device)
    omega = 1.0 / 10_000 ** (i / (width / 2))  # (width/2,)
    args = pos.float()[:, None] * omega[None]  # (n, width/2)
    return torch.cat([torch.sin(args), torch.cos(args)], dim=-1)  # (n, width)


def sincos_2d(h: int, w: int, hidden_dim: int, device=None) -> torch.Tensor:
    """Fixed 2-D positional embedding of an h x w grid in raster order -> (h w, D).

    The first D/2 features encode the row, the last D/2 the column (D divisible by 4).
    """
    D = hidden_dim
    if D % 4:
        raise ValueError(
            f"the 2-D sin-cos positional embedding needs a width divisible by 4, got D={D}"
        )
    rows = torch.arange(h, device=device).repeat_interleave(w)  # (h w,)
    cols = torch.arange(w, device=device).repeat(h)  # (h w,)
    return torch.cat([sincos_1d(rows, D // 2), sincos_1d(cols, D // 2)], dim=-1)  # (h w, D)


class Attention(nn.Module):
    """Multi-head self-attention: x (B, L, D) -> (B, L, D), through SDPA (no mask)."""

    def __init__(self, hidden_dim: int, num_heads: int):
        super().__init__()
        if hidden_dim % num_heads:
            raise ValueError(f"width D={hidden_dim} must be divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(hidden_dim, 3 * hidden_dim)
        self.proj = nn.Linear(hidden_dim, hidden_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, L, D) -> (B, L, D)."""
        B, L, D = x.shape
        qkv = self.qkv(x).reshape(B, L, 3, self.num_heads, D // self.num_heads)  # (B,L,3,h,D/h)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # 3 x (B, h, L, D/h)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, h, L, D/h)
        return self.proj(out.transpose(1, 2).reshape(B, L, D))  # (B, L, D)


class DiTBlock(nn.Module):
    """x (B, L, D), c (B, D) -> (B, L, D); the identity at initialisation (adaLN-Zero)."""

    def __init__(self, hidden_dim: int, num_heads: int = 4, mlp_ratio: float = 4.0):
        super().__init__()
        D = hidden_dim
        self.norm1 = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(D, num_heads)
        self.norm2 = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(
            nn.Linear(D, int(D * mlp_ratio)),
            nn.GELU(approximate="tanh"),
            nn.Linear(int(D * mlp_ratio), D),
        )
        self.ada = AdaLNZero(D, 6)

    def forward(self, x: torch.Tensor, c: torch.Tensor, grid=None) -> torch.Tensor:
        """x (B, L, D), c (B, D) -> (B, L, D) (``grid``: unused, attention has no order)."""
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(c)  # (B, D) each
        x = gated_residual(x, gate1, self.attn(modulate(self.norm1(x), shift1, scale1)))
        return gated_residual(x, gate2, self.mlp(modulate(self.norm2(x), shift2, scale2)))


class DiT(Denoiser):
    """DiT denoiser from its config section: x (B, C, H, W), t (B,), y (B,) or None ->
    (B, C or 2C, H, W).

    Same skeleton as ``DiffuSSM`` (conditioning, input projection, final layer; M = 1), with
    ``cfg.depth`` DiT blocks (``cfg.num_heads`` heads, MLP width ``cfg.mlp_ratio`` D) on
    L = H W / p^2 tokens and a fixed 2-D sin-cos positional embedding.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg, hourglass_ratio=1)
        if cfg.hidden_dim % 4:
            raise ValueError(
                f"DiT needs hidden_dim divisible by 4 (2-D positional embedding), "
                f"got {cfg.hidden_dim}"
            )
        self.blocks = nn.ModuleList(
            DiTBlock(cfg.hidden_dim, cfg.num_heads, cfg.mlp_ratio) for _ in range(cfg.depth)
        )
        for block in self.blocks:
            for m in block.modules():
                if isinstance(m, nn.Linear) and m not in (block.ada.linear,):
                    nn.init.xavier_uniform_(m.weight)
                    nn.init.zeros_(m.bias)

    def add_positions(self, tokens: torch.Tensor, H: int, W: int) -> torch.Tensor:
        """tokens (B, L, D) -> tokens + sincos_2d(H/p, W/p, D)."""
        p = self.patch_size
        pos = sincos_2d(H // p, W // p, self.hidden_dim, tokens.device)  # (L, D)
        return tokens + pos.to(tokens.dtype)
